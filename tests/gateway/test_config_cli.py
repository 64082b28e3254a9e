"""Configuration errors name the file and key, exit 2, and never print a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.cli import main
from gatewayd.config import load_settings

GOOD = """
[gateway]
id = "gw1"
store = "s1"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[devices]]
id = "a"
driver = "serial_scanner"
terminal = "pos1"
port = "/dev/ttyACM0"
[[devices]]
id = "b"
driver = "serial_scanner"
terminal = "pos2"
port = "/dev/ttyACM1"
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gatewayd", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('port = "/dev/ttyACM1"', ""), "devices[1].port: required"),
        (('url = "mqtt://127.0.0.1:1883"', 'url = "http://x"'), "mqtt.url: must be mqtt://"),
        (('store = "s1"', ""), "gateway.store: required"),
        (
            ('driver = "serial_scanner"\nterminal = "pos2"', 'driver = "nope"\nterminal = "pos2"'),
            "devices[1].driver: unknown driver 'nope'",
        ),
        (
            ('port = "/dev/ttyACM0"', 'port = "/dev/ttyACM0"\nbaudrate = "fast"'),
            "devices[0].baudrate: Input should be a valid integer",
        ),
        (("[mqtt]", '[mqtt]\ncolour = "red"'), "mqtt.colour: unknown key"),
        (
            ("[gateway]", '[http]\nlisten = "0.0.0.0:8765"\n[gateway]'),
            "http.token: required when http.listen is not a loopback address",
        ),
    ],
)
def test_config_check_names_the_key(tmp_path: Path, capsys, change, expected) -> None:
    path = tmp_path / "gatewayd.toml"
    path.write_text(GOOD.replace(*change, 1))
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err
    assert expected in err
    assert "Traceback" not in err


def test_good_config_checks_ok(tmp_path: Path, capsys) -> None:
    path = tmp_path / "gatewayd.toml"
    path.write_text(GOOD)
    assert main(["config", "check", str(path)]) == 0
    assert "ok (2 devices" in capsys.readouterr().out


def test_run_with_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.toml"
    path.write_text("[gateway\nid=")
    result = run_cli("run", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: invalid TOML" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_cli("run", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 2 and "file not found" in missing.stderr


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.toml"
    path.write_text(GOOD)
    env = {"GATEWAYD_MQTT__URL": "mqtt://env-host:1884", "GATEWAYD_HTTP__LISTEN": "127.0.0.1:9"}
    settings = load_settings(path, environ=env, overrides={"http": {"listen": "127.0.0.1:7"}})
    assert settings.mqtt.host_port() == ("env-host", 1884)
    assert settings.http.listen == "127.0.0.1:7"
    assert load_settings(path, environ={}).mqtt.url == "mqtt://127.0.0.1:1883"


def test_schema_event_is_generated_from_the_code() -> None:
    result = run_cli("schema", "event")
    schema = json.loads(result.stdout)
    assert result.returncode == 0
    assert set(schema["required"]) >= {
        "event_id",
        "ts",
        "store",
        "gateway",
        "terminal",
        "device",
        "method",
        "token",
    }
    assert schema["$defs"]["Phase"]["enum"] == ["detected", "resolved", "unknown", "unresolved"]
    assert "id_card" in schema["$defs"]["Method"]["enum"]


def test_decode_token_lines(tmp_path: Path) -> None:
    source = tmp_path / "codes.txt"
    source.write_text("134567890123456789\n13800138000\r\n\n" + "9" * 600 + "\n04A1B2C3\n")
    result = run_cli("decode", "token", str(source))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["kind"] for line in lines] == ["wechat_payment_code", "phone", "card_number"]
    assert result.returncode == 1
    assert result.stderr.startswith("error: line 4:")
    assert "Traceback" not in result.stderr
    ic = subprocess.run(
        [sys.executable, "-m", "gatewayd", "decode", "token", "-", "--method", "ic_card"],
        input="04a1b2c3\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(ic.stdout) == {"kind": "ic_uid", "value": "04A1B2C3"}
