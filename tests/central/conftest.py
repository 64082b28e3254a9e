"""Fixtures: central on a real socket over SQLite files and a throwaway PostgreSQL cluster.

``backend`` is parametrised over both databases; every fixture built on ``db_url`` runs
each test twice. The PostgreSQL cluster is started once per session from the installed
binaries (never the machine's own server) and each test gets a fresh database copied from
a migrated template.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gatewayd.central.api import SERVICES, Services
from gatewayd.central.app import build_app
from gatewayd.central.auth import create_admin_key
from gatewayd.central.clock import ManualClock
from gatewayd.central.config import CentralSettings
from gatewayd.central.db import Database
from gatewayd.central.migrate import upgrade
from gatewayd.central.testing import (
    FakeAlipayBridge,
    FakeWeChatPay,
    ThrowawayPostgres,
    start_app,
)

SECRET = "test-secret-not-for-production"
TEMPLATE = "central_template"
_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ThrowawayPostgres]:
    cluster = ThrowawayPostgres()
    cluster.start()
    try:
        cluster.create_database(TEMPLATE)

        async def migrate_template() -> None:
            db = Database.from_url(cluster.url(TEMPLATE))
            try:
                await upgrade(db)
            finally:
                await db.close()

        # Requested lazily from inside a running loop: migrate on a thread of its own.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, migrate_template()).result()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'central.db'}"


@pytest.fixture
async def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of the current backend."""
    if backend == "postgresql":
        cluster: ThrowawayPostgres = request.getfixturevalue("pg_cluster")
        name = f"t{next(_db_numbers)}"
        await asyncio.to_thread(cluster.create_database, name, TEMPLATE)
        return cluster.url(name)
    url = _sqlite_url(tmp_path)
    db = Database.from_url(url)
    try:
        await upgrade(db)
    finally:
        await db.close()
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def wechat() -> AsyncIterator[tuple[FakeWeChatPay, str]]:
    fake = FakeWeChatPay()
    runner, url = await start_app(fake.app())
    yield fake, url
    await runner.cleanup()


@pytest.fixture
async def alipay() -> AsyncIterator[tuple[FakeAlipayBridge, str]]:
    fake = FakeAlipayBridge()
    runner, url = await start_app(fake.app())
    yield fake, url
    await runner.cleanup()


def make_settings(
    db_url: str, wechat_url: str, alipay_url: str, **overrides: Any
) -> CentralSettings:
    values: dict[str, Any] = {
        "db": db_url,
        "secret": SECRET,
        "identify_rate": 1000.0,
        "identify_burst": 1000,
        "code_issue_rate": 1000.0,
        "code_issue_burst": 1000,
        "wechat_base_url": wechat_url,
        "wechat_appid": FakeWeChatPay.appid,
        "wechat_mch_id": FakeWeChatPay.mch_id,
        "wechat_api_key": FakeWeChatPay.api_key,
        "alipay_base_url": alipay_url,
        "alipay_app_id": FakeAlipayBridge.app_id,
        "alipay_key": FakeAlipayBridge.key,
    }
    values.update(overrides)
    return CentralSettings(**values)


@dataclass
class Central:
    """A running central plus what tests need to talk to it."""

    url: str
    app: Any
    clock: ManualClock
    http: aiohttp.ClientSession
    admin_key: str
    gateway_keys: dict[str, str] = field(default_factory=dict)
    wechat: FakeWeChatPay | None = None
    alipay: FakeAlipayBridge | None = None

    @property
    def services(self) -> Services:
        return self.app[SERVICES]  # type: ignore[no-any-return]

    async def call(
        self, method: str, path: str, key: str | None = "admin", json: Any = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            token = self.admin_key if key == "admin" else self.gateway_keys.get(key, key)
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method, self.url + path, json=json, headers=headers, **kw
        ) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, body, resp

    async def ok(self, method: str, path: str, key: str | None = "admin", json: Any = None) -> Any:
        status, body, _ = await self.call(method, path, key, json)
        assert status < 300, (status, body)
        return body

    async def identify(self, token: str, key: str = "gw-1", **fields: Any) -> tuple[int, Any]:
        payload = {"token": token, "store": "store-1", "terminal": "pos-1", **fields}
        status, body, _ = await self.call("POST", "/v1/identify", key, payload)
        return status, body

    async def member(self, **fields: Any) -> dict[str, Any]:
        """Create a member with a main barcode card."""
        fields.setdefault("name", "Li Lei")
        member = await self.ok("POST", "/v1/members", json=fields)
        card = await self.ok("POST", f"/v1/members/{member['id']}/cards", json={"kind": "barcode"})
        member["cards"] = [card]
        return dict(member)


async def start_central(
    settings: CentralSettings,
    clock: ManualClock,
    *,
    wechat: FakeWeChatPay | None = None,
    alipay: FakeAlipayBridge | None = None,
) -> tuple[Central, Any]:
    """Start central on a free port with two stores, terminals and gateways."""
    app = build_app(settings, clock=clock)
    runner, url = await start_app(app)
    http = aiohttp.ClientSession()
    db = app[SERVICES].db
    _, admin_key = await create_admin_key(db, "test admin", clock)
    central = Central(
        url=url, app=app, clock=clock, http=http, admin_key=admin_key, wechat=wechat, alipay=alipay
    )
    for store in ("store-1", "store-2"):
        await central.ok("POST", "/v1/stores", json={"id": store, "name": store.title()})
        for terminal in ("pos-1", "pos-2"):
            await central.ok(
                "POST", f"/v1/stores/{store}/terminals", json={"id": terminal, "name": terminal}
            )
    for n, store in ((1, "store-1"), (2, "store-2")):
        created = await central.ok(
            "POST", "/v1/gateways", json={"id": f"gw-{n}", "store": store, "name": f"GW {n}"}
        )
        central.gateway_keys[f"gw-{n}"] = created["api_key"]

    async def stop() -> None:
        await http.close()
        await runner.cleanup()

    return central, stop


@pytest.fixture
async def central(
    db_url: str,
    clock: ManualClock,
    wechat: tuple[FakeWeChatPay, str],
    alipay: tuple[FakeAlipayBridge, str],
) -> AsyncIterator[Central]:
    settings = make_settings(db_url, wechat[1], alipay[1])
    running, stop = await start_central(settings, clock, wechat=wechat[0], alipay=alipay[0])
    yield running
    await stop()


@pytest.fixture
async def central_with(
    db_url: str,
    clock: ManualClock,
    wechat: tuple[FakeWeChatPay, str],
    alipay: tuple[FakeAlipayBridge, str],
) -> AsyncIterator[Any]:
    """``await central_with(setting=value, …)``: a central like ``central``, other settings."""
    stops: list[Any] = []

    async def start(**overrides: Any) -> Central:
        settings = make_settings(db_url, wechat[1], alipay[1], **overrides)
        running, stop = await start_central(settings, clock, wechat=wechat[0], alipay=alipay[0])
        stops.append(stop)
        return running

    yield start
    for stop in reversed(stops):
        await stop()
