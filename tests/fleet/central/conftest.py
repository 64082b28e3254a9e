"""Central's fleet endpoints on both databases: the fixtures of ``tests/central``."""

from tests.central.conftest import (  # noqa: F401 - fixtures
    alipay,
    backend,
    central,
    clock,
    db_url,
    pg_cluster,
    wechat,
)
