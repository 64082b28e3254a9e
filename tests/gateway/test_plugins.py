"""The README's plugin example, loaded from plugins_dir by a gateway running in-process."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp

from gatewayd.config import load_settings
from gatewayd.daemon import Gateway
from gatewayd.plugin_manager import Plugins
from tests.support.broker import Mosquitto
from tests.support.gateway import ROOT, write_config
from tests.support.mqtt import subscribed

MARKER = "<!-- example: plugins_dir/vip_cards.py -->"


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    after = readme.split(MARKER, 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match, "the README's plugin example is missing"
    return match.group(1)


async def test_readme_plugin_example_loads_and_works(tmp_path: Path, broker: Mosquitto) -> None:
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "vip_cards.py").write_text(readme_example())
    config = write_config(
        tmp_path / "gw.toml",
        mqtt_url=broker.url,
        top={"plugins_dir": str(plugins_dir)},
        devices=[
            {
                "id": "kiosk",
                "driver": "serial_scanner",
                "terminal": "k1",
                "port": str(tmp_path / "absent"),
            }
        ],
    )
    gateway = Gateway(load_settings(config), config_path=config)
    assert "vip_cards" in gateway.plugins.names()
    task = asyncio.create_task(gateway.run(install_signals=False))
    try:
        async with subscribed(broker.port, "gatewayd/v1/s1/terminals/k1/identify") as sub:
            async with asyncio.timeout(5):
                while gateway.http_port is None:
                    await asyncio.sleep(0.02)
            async with aiohttp.ClientSession(f"http://127.0.0.1:{gateway.http_port}") as http:
                async with http.post(
                    "/v1/inputs", json={"device": "kiosk", "text": "VIP-12345"}
                ) as response:
                    assert response.status == 201
            event = (await sub.get()).json()
    finally:
        gateway.request_stop()
        await asyncio.wait_for(task, 10)
    assert event["token"] == {"kind": "card_number", "value": "12345", "legacy": "vip"}
    assert sys.modules["gatewayd_local_plugins.vip_cards"].TALLY == {"k1": 1}


def test_disabled_plugins_are_blocked_by_name(tmp_path: Path) -> None:
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    (plugins_dir / "vip_cards.py").write_text(readme_example())
    plugins = Plugins(disabled=["vip_cards", "serial_scanner"])
    plugins.load(plugins_dir)
    assert "vip_cards" not in plugins.names()
    assert "serial_scanner" not in plugins.driver_classes()
