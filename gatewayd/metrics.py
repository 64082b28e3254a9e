"""Prometheus metrics of one gateway, in its own registry (tests run several gateways).

Latencies are histograms in seconds; HTTP requests are labelled by route template
(``/v1/devices/{device}/actions/{action}``), never by the raw path, so a token or a card
number in a URL never becomes a label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Central answers within ``central.timeout_ms`` (800 ms by default) or the event is unresolved.
IDENTIFY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 2.0, 5.0)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


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
        self.events_by_phase = Counter(
            "gatewayd_events_total",
            "Identify events published, by method, token kind and phase (detected, resolved…)",
            ["method", "kind", "phase"],
            registry=self.registry,
        )
        self.identify_latency = Histogram(
            "gatewayd_identify_latency_seconds",
            "From a detected input to its resolution phase, by phase and source",
            ["phase", "source"],
            buckets=IDENTIFY_BUCKETS,
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "gatewayd_outbox_depth",
            "Records in the durable outbox waiting for central",
            registry=self.registry,
        )
        self.central_reachable = Gauge(
            "gatewayd_central_reachable",
            "1 when central answered the last request",
            registry=self.registry,
        )
        self.sse_clients = Gauge(
            "gatewayd_sse_clients",
            "Connected server-sent-event clients (POS and kiosk pages)",
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "gatewayd_http_request_duration_seconds",
            "Local HTTP API request latency, by route template, method and status",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
