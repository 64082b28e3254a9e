"""Prometheus metrics of central: request latency per route, identifications by method.

With ``--workers N`` the kernel hands a scrape to any one worker, so the values must be the
sum over all of them: ``server.serve`` then points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
folder before it starts the workers, prometheus_client keeps every worker's values in files
there, and ``/metrics`` adds them up (``MultiProcessCollector``). One process keeps its values
in memory, in a registry of its own (tests run several apps in one process).

Routes are labelled by template (``/v1/members/{member_id}``), never by raw path, so a card
number or a code in a URL never becomes a label. Recording costs about a microsecond: the
labelled children are looked up once and kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Final

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from .models import gateways

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
HTTP_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
UNMATCHED: Final = "unmatched"


class CentralMetrics:
    """The metric families central records; one instance per application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_duration = Histogram(
            "central_http_request_duration_seconds",
            "Time from routing to the response, by route template, method and status",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.identify_duration = Histogram(
            "central_identify_duration_seconds",
            "Time to resolve and record one identification, by token kind",
            ["kind"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.identifications = Counter(
            "central_identifications_total",
            "Identifications answered, by token kind, input method and HTTP status",
            ["kind", "via", "status"],
            registry=self.registry,
        )
        self.outbox_items = Counter(
            "central_gateway_records_total",
            "Items forwarded by gateways from their outboxes, by kind",
            ["kind"],
            registry=self.registry,
        )
        self._http: dict[tuple[str, str, int], Histogram] = {}
        self._identify: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._http.get(key)
        if child is None:
            child = self._http[key] = self.http_duration.labels(route, method, str(status))
        child.observe(seconds)

    def identified(self, kind: str, via: str, status: int, seconds: float) -> None:
        key = (kind, via, status)
        children = self._identify.get(key)
        if children is None:
            children = self._identify[key] = (
                self.identify_duration.labels(kind),
                self.identifications.labels(kind, via, str(status)),
            )
        children[0].observe(seconds)
        children[1].inc()

    def exposition(self, extra: CollectorRegistry | None = None) -> bytes:
        """The text format: every worker's values when several share the port."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            body = generate_latest(registry)
        else:
            body = generate_latest(self.registry)
        if extra is not None:
            body += generate_latest(extra)
        return body


class GatewayStates:
    """A scrape-time collector: gateways per state, read from the database (all workers agree)."""

    def __init__(self, counts: dict[str, int]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "central_gateways", "Registered gateways by heartbeat state", labels=["state"]
        )
        for state, count in sorted(self._counts.items()):
            family.add_metric([state], count)
        yield family


def gateway_state_registry(counts: dict[str, int]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(GatewayStates(counts))
    return registry


def state_counts_query(now_ms: int, stale_ms: int, offline_ms: int) -> sa.Select[Any]:
    """Gateways per state, as the dashboard names them: silent longer than ``stale_ms`` is
    stale, longer than ``offline_ms`` offline; ``never_seen`` sent no heartbeat yet."""
    last = gateways.c.last_seen_at
    state = sa.case(
        (last.is_(None), "never_seen"),
        (last < now_ms - offline_ms, "offline"),
        (last < now_ms - stale_ms, "stale"),
        else_="online",
    )
    return sa.select(state.label("state"), sa.func.count()).group_by(state)
