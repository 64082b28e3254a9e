"""Personal data never appears in full in a log line (payment codes, phones, ID numbers)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from gatewayd.logging import mask_personal_data, mask_text
from gatewayd.simulate import PtyDevice
from tests.support.broker import Mosquitto
from tests.support.gateway import GatewayProcess, write_config
from tests.support.mqtt import subscribed

SECRETS = [
    "134567890123456789",  # WeChat payment code
    "284567890123456789",  # Alipay payment code
    "13800138000",  # phone
    "11010519491231002X",  # ID number
    "4111111111111111",  # card number
    "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ",  # legacy member code
]


def test_mask_text_keeps_only_the_last_four() -> None:
    line = "scan 134567890123456789 phone=13800138000 id 11010519491231002X at 18:25:21.123Z"
    masked = mask_text(line)
    assert "134567890123456789" not in masked and masked.count("6789") == 1
    assert "*******8000" in masked and "**************002X" in masked
    assert "18:25:21.123Z" in masked


def test_processor_masks_nested_values() -> None:
    with capture_logs(processors=[mask_personal_data]) as logs:
        import structlog

        structlog.get_logger().info("x", token={"value": "13800138000"}, items=["13900139000"])
    assert logs[0]["token"]["value"] == "*******8000"
    assert logs[0]["items"] == ["*******9000"]


async def test_no_log_line_contains_personal_data(
    tmp_path: Path, broker: Mosquitto, gateways
) -> None:
    scanner = PtyDevice(tmp_path / "scanner")
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        extra={"gateway": {"log_level": "debug"}},
        devices=[
            {"id": "scan1", "driver": "serial_scanner", "terminal": "pos1", "port": scanner.path},
            {
                "id": "idr",
                "driver": "serial_scanner",
                "terminal": "pos1",
                "method": "id_card",
                "port": str(tmp_path / "absent"),
            },
        ],
    )
    gateways.append(gateway := GatewayProcess(config))
    gateway.start()
    async with subscribed(broker.port, "gatewayd/v1/s1/terminals/+/identify") as sub:
        await asyncio.sleep(0.3)
        for secret in SECRETS:
            scanner.write(secret.encode() + b"\r")
        async with aiohttp.ClientSession(gateway.base_url) as http:
            for secret in SECRETS:
                await http.post("/v1/inputs", json={"device": "idr", "text": secret})
            await http.post("/v1/inputs", json={"device": "idr", "text": "x" * 5000})
        events = [(await sub.get()).json() for _ in range(2 * len(SECRETS))]
    gateway.stop()
    # The events themselves carry the full token: the POS needs it.
    assert {e["token"]["value"] for e in events} >= set(SECRETS[:3])
    log = gateway.log()
    assert len([line for line in log.splitlines() if '"identify"' in line]) >= 2 * len(SECRETS)
    for secret in SECRETS:
        assert secret not in log, f"{secret} leaked into the log"
        assert secret[-4:] in log
    for line in log.splitlines():
        json.loads(line)  # every line is JSON off a TTY
    scanner.close()
