"""Pure parts: settings precedence, log masking, rate limiting, track parsing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import structlog

from gatewayd.central import logs
from gatewayd.central.config import SettingsError, load_settings
from gatewayd.central.errors import RateLimited
from gatewayd.central.identify import pan_from_track
from gatewayd.central.logs import get_logger, mask_personal_data
from gatewayd.central.ratelimit import TokenBucketLimiter


def test_settings_precedence_cli_env_file_default(tmp_path: Path) -> None:
    config = tmp_path / "central.toml"
    config.write_text('db = "sqlite:///file.db"\nworkers = 3\nlisten = "0.0.0.0:9000"\n')
    env = {"GATEWAYD_CENTRAL_WORKERS": "4", "GATEWAYD_CENTRAL_SECRET": "env-secret"}
    settings = load_settings({"listen": "127.0.0.1:8800", "workers": None}, env, config)
    assert settings.db == "sqlite:///file.db"  # file
    assert settings.workers == 4  # env over file
    assert settings.listen == "127.0.0.1:8800" and settings.port == 8800  # CLI over all
    assert settings.secret == "env-secret" and "env-secret" not in repr(settings)
    assert load_settings({}, {}).stale_after == 90.0  # default


def test_settings_errors_are_listed(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="workers must be at least 1"):
        load_settings({"workers": 0}, {})
    with pytest.raises(SettingsError, match="tls_cert and tls_key go together"):
        load_settings({"tls_cert": "c.pem"}, {})
    with pytest.raises(SettingsError, match="wechat_base_url needs"):
        load_settings({"wechat_base_url": "http://x"}, {})
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'blue'\n")
    with pytest.raises(SettingsError, match="unknown settings"):
        load_settings({}, {}, bad)
    with pytest.raises(SettingsError, match="no secret"):
        load_settings({}, {}).key_for("id-number")


def test_logs_mask_personal_data_and_drop_secrets() -> None:
    with structlog.testing.capture_logs() as logs:
        get_logger("t").info(
            "x",
            phone="13812345678",
            id_number="110101199003074477",
            code="9712345678901234567890",
            password="hunter2hunter2",
            api_key="cka_abcdef",
            member_id=7,
        )
    assert logs[0]["phone"] == "*******5678"
    assert logs[0]["id_number"] == "**************4477"
    assert logs[0]["code"].endswith("7890") and "9712" not in logs[0]["code"]
    assert logs[0]["password"] == "***" and logs[0]["api_key"] == "***"
    assert logs[0]["member_id"] == 7
    event = dict(mask_personal_data(None, "info", {"token": "96000000000000000017"}))
    assert event["token"] == "****************0017"


def test_identify_never_logs_a_full_token() -> None:
    # The identify log line passes the token through the masking logger.
    with structlog.testing.capture_logs() as logs:
        get_logger("gatewayd.central.identify").info("identify", token="13900001111")
    assert logs[0]["token"] == "*******1111"


def test_token_bucket() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(2.0, 3, what="tests", clock=lambda: now[0])
    for _ in range(3):
        limiter.hit("a")
    with pytest.raises(RateLimited) as caught:
        limiter.hit("a")
    assert 0 < caught.value.retry_after <= 0.5
    limiter.hit("b")  # separate bucket
    now[0] += 0.5
    limiter.hit("a")
    with pytest.raises(RateLimited):
        limiter.hit("a")


@pytest.mark.parametrize(
    ("data", "pan"),
    [
        (";6012345678901234=25121010000?", "6012345678901234"),
        ("%B6012345678901234^LI/LEI^2512101?;6012345678901234=2512101?", "6012345678901234"),
        ("%B4111111111111111^DOE/JOHN^2512?", "4111111111111111"),
        (";?", None),
        ("no track", None),
    ],
)
def test_pan_from_track(data: str, pan: str | None) -> None:
    assert pan_from_track(data) == pan


def test_log_level_check_follows_configure() -> None:
    # identify asks ``logs.enabled`` before building its log line (a comparison, not a call
    # through structlog's proxies); before ``configure`` structlog itself decides.
    assert logs.enabled(logging.DEBUG)
    logs.configure("warning")
    assert not logs.enabled(logging.INFO) and logs.enabled(logging.WARNING)
    with structlog.testing.capture_logs() as captured:
        get_logger("t").info("dropped")
        get_logger("t").warning("kept")
    assert [line["event"] for line in captured] == ["kept"]
    logs.reset()
    assert logs.enabled(logging.INFO)
