"""The parts of a diagnostics bundle: the log ring buffer and secret removal."""

from __future__ import annotations

import io
import json
from typing import Any

import structlog
from hypothesis import given
from hypothesis import strategies as st

from gatewayd.config import settings_from_dict
from gatewayd.diagnostics import REDACTED, build_diagnostics, redact_secrets
from gatewayd.logging import configure_logging
from gatewayd.recent_logs import (
    RECENT_ERROR_CAPACITY,
    RECENT_LOG_CAPACITY,
    clear_recent_logs,
    recent_errors,
    recent_logs,
)


def test_the_ring_buffer_keeps_masked_records_and_is_bounded() -> None:
    clear_recent_logs()
    configure_logging("info", io.StringIO())
    log = structlog.get_logger("t")
    log.info("member_seen", phone="13812345678", n=1)
    log.warning("card_refused", id_number="11010519491231002X")
    for n in range(RECENT_LOG_CAPACITY + 10):
        log.info("noise", n=n)
    records = recent_logs(RECENT_LOG_CAPACITY + 100)
    assert len(records) == RECENT_LOG_CAPACITY and records[-1]["n"] == RECENT_LOG_CAPACITY + 9
    errors = recent_errors()
    assert [(e["event"], e["id_number"], e["level"]) for e in errors] == [
        ("card_refused", "**************002X", "warning")
    ]
    assert "13812345678" not in json.dumps(recent_logs(RECENT_LOG_CAPACITY))
    assert recent_logs(3) == records[-3:] and recent_logs(0) == []
    for n in range(RECENT_ERROR_CAPACITY + 5):
        log.error("bad", n=n)
    assert len(recent_errors(10_000)) == RECENT_ERROR_CAPACITY
    clear_recent_logs()


SECRET_KEYS = st.sampled_from(["token", "password", "key", "api_key", "secret", "tls_key"])
PLAIN_KEYS = st.sampled_from(["url", "id", "store", "listen", "state"])
LEAF = st.text(alphabet="abcdefXYZ0123", min_size=1, max_size=12)


@st.composite
def config_trees(draw: st.DrawFn, depth: int = 3) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 4))):
        if depth and draw(st.booleans()):
            tree[draw(PLAIN_KEYS)] = draw(config_trees(depth - 1))
        else:
            tree[draw(st.one_of(SECRET_KEYS, PLAIN_KEYS))] = draw(LEAF)
    return tree


def secrets_in(tree: Any, under_secret: bool = False) -> list[str]:
    if isinstance(tree, dict):
        found = []
        for key, value in tree.items():
            secret = any(word in key for word in ("token", "password", "key", "secret"))
            found += secrets_in(value, secret)
        return found
    return [tree] if under_secret else []


@given(config_trees())
def test_no_secret_value_survives_redaction(tree: dict[str, Any]) -> None:
    redacted = redact_secrets(tree)
    assert secrets_in(redacted) == [REDACTED] * len(secrets_in(tree))


def test_urls_lose_their_credentials() -> None:
    assert redact_secrets({"url": "mqtt://shop:pw@10.0.0.2:1883"}) == {
        "url": "mqtt://***@10.0.0.2:1883"
    }


def test_a_bundle_is_cut_to_size_by_dropping_old_logs(tmp_path: Any) -> None:
    clear_recent_logs()
    configure_logging("info", io.StringIO())
    for n in range(400):
        structlog.get_logger().info("filler", n=n, text="x" * 100)
    settings = settings_from_dict(
        {
            "gateway": {"id": "gw-1", "store": "s", "state_dir": str(tmp_path)},
            "central": {"url": "http://127.0.0.1:1", "key": "gwk_secret_value"},
        }
    )
    status = {"uptime": 5.0, "devices": [], "mqtt": {}, "central": None}
    bundle = build_diagnostics(settings, status, request_id=3, max_bytes=8192)
    text = json.dumps(bundle)
    assert len(text.encode()) <= 8192 and bundle["logs_dropped"] > 0
    assert bundle["logs"][-1]["n"] == 399  # the newest are kept
    assert "gwk_secret_value" not in text and bundle["config"]["central"]["key"] == REDACTED
    clear_recent_logs()
