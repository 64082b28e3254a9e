"""An in-process MQTT broker (amqtt) for a single box or a demo: ``mqtt.url = "embedded"``.

Production configs point at a real broker (Mosquitto). The embedded one binds to loopback by
default and allows anonymous clients, which is why it must never listen beyond localhost
unless the operator says so.
"""

from __future__ import annotations

import logging
from typing import Any

from amqtt.broker import Broker

from gatewayd.errors import GatewayError


class EmbeddedBroker:
    def __init__(self, listen: str = "127.0.0.1:1883") -> None:
        self.listen = listen
        self._broker: Broker | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": self.listen}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    async def start(self) -> None:
        # amqtt logs every packet at INFO; keep its chatter out of the gateway's log.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        self._broker = Broker(self._config())
        try:
            await self._broker.start()
        except Exception as exc:
            raise GatewayError(f"embedded broker cannot listen on {self.listen}: {exc}") from exc

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
