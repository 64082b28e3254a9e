"""What "healthy again" means after a bundle is applied: the gateway is back where it was.

Separate from ``fleet_apply`` so the rule reads on its own: the devices that were online are
online (unless the bundle removed them), MQTT is connected if it was, central is reachable if
it was. ``health_baseline`` is taken before the files change; ``health_problems`` is polled
by the watch until it is empty or the deadline passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gatewayd.events import DeviceState

if TYPE_CHECKING:
    from gatewayd.daemon import Gateway


def health_baseline(gateway: Gateway) -> dict[str, Any]:
    """The state to return to: online devices, MQTT and central connectivity."""
    central = gateway.central
    return {
        "devices": sorted(
            d for d, drv in gateway.devices.items() if drv.state is DeviceState.ONLINE
        ),
        "mqtt": gateway.mqtt.connected,
        "central": bool(central and central.central_up),
    }


def health_problems(gateway: Gateway, baseline: dict[str, Any]) -> list[str]:
    """What is not (yet) back: empty when the gateway is healthy."""
    problems = []
    configured = set(gateway._specs)
    for device_id in baseline["devices"]:
        if device_id not in configured:
            continue  # the bundle removed or disabled it
        driver = gateway.devices.get(device_id)
        if driver is None or driver.state is not DeviceState.ONLINE:
            problems.append(f"device {device_id} not online")
    if baseline["mqtt"] and not gateway.mqtt.connected:
        problems.append("MQTT not connected")
    central = gateway.central
    if baseline["central"] and not (central and central.central_up):
        problems.append("central not reachable")
    return problems
