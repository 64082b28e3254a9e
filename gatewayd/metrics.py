"""Prometheus metrics of one gateway, in its own registry (tests run several gateways)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "gatewayd_identify_events_total",
            "Identify events produced, by method and token kind",
            ["method", "kind"],
            registry=self.registry,
        )
        self.suppressed = Counter(
            "gatewayd_repeats_suppressed_total",
            "Repeats of a code from the same device within the dedupe window",
            registry=self.registry,
        )
        self.device_errors = Counter(
            "gatewayd_device_errors_total",
            "Device failures and rejected inputs, by device",
            ["device"],
            registry=self.registry,
        )
        self.device_state = Gauge(
            "gatewayd_device_up",
            "1 when the device is online",
            ["device"],
            registry=self.registry,
        )
        self.mqtt_connected = Gauge(
            "gatewayd_mqtt_connected", "1 while connected to the broker", registry=self.registry
        )
        self.mqtt_queue = Gauge(
            "gatewayd_mqtt_queue_depth", "Messages waiting for the broker", registry=self.registry
        )
        self.mqtt_dropped = Gauge(
            "gatewayd_mqtt_dropped_total",
            "Messages dropped because the broker queue was full",
            registry=self.registry,
        )
