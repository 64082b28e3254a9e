"""Prometheus metrics of central: request latency per route, identifications by method.

With ``--workers N`` the kernel hands a scrape to any one worker, so the values must be the
sum over all of them: ``server.serve`` then points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
folder before it starts the workers, prometheus_client keeps every worker's values in files
there, and ``/metrics`` adds them up (``MultiProcessCollector``). One process keeps its values
in memory, in a registry of its own (tests run several apps in one process).

Routes are labelled by template (``/v1/members/{member_id}``), never by raw path, so a card
number or a code in a URL never becomes a label.

Requests and identifications are tallied in plain lists first (a bucket index from
``bisect``, two additions) and folded into the prometheus metrics before every scrape and
once a second (``fold``; with several workers the scrape may reach another worker, whose
figures are then at most a second old). Observing through prometheus_client directly, a
locked update per bucket and per sum, cost identify about 7 % of its instructions.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any, Final

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from .models import gateways

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
METRICS_FOLD_SECONDS: Final = 1.0  # with several workers: how often each folds its tallies
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
        # Not yet folded: per label set, a count per bucket (the last one: +Inf), then the sum.
        self._http: dict[tuple[str, str, int], list[float]] = {}
        self._identify: dict[tuple[str, str, int], list[float]] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        tally = self._http.get((route, method, status))
        if tally is None:
            tally = self._http[(route, method, status)] = [0.0] * _TALLY_SIZE
        tally[bisect_left(HTTP_BUCKETS, seconds)] += 1
        tally[-1] += seconds

    def identified(self, kind: str, via: str, status: int, seconds: float) -> None:
        tally = self._identify.get((kind, via, status))
        if tally is None:
            tally = self._identify[(kind, via, status)] = [0.0] * _TALLY_SIZE
        tally[bisect_left(HTTP_BUCKETS, seconds)] += 1
        tally[-1] += seconds

    def fold(self) -> None:
        """Move the tallies into the prometheus metrics (before a scrape, and every second)."""
        http, self._http = self._http, {}
        identify, self._identify = self._identify, {}
        for (route, method, status), tally in http.items():
            _fold(self.http_duration.labels(route, method, str(status)), tally)
        for (kind, via, status), tally in identify.items():
            _fold(self.identify_duration.labels(kind), tally)
            self.identifications.labels(kind, via, str(status)).inc(sum(tally[:-1]))

    def exposition(self, extra: CollectorRegistry | None = None) -> bytes:
        """The text format: every worker's values when several share the port."""
        self.fold()
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            body = generate_latest(registry)
        else:
            body = generate_latest(self.registry)
        if extra is not None:
            body += generate_latest(extra)
        return body


_TALLY_SIZE: Final = len(HTTP_BUCKETS) + 2  # the buckets, +Inf, the sum


def _fold(histogram: Histogram, tally: list[float]) -> None:
    """Add a tally to a labelled histogram: what ``observe`` would have added, in bulk.

    prometheus_client has no bulk observe; its children keep one value per bucket (not
    cumulative; the exposition adds them up) and one for the sum.
    """
    for index, count in enumerate(tally[:-1]):
        if count:
            histogram._buckets[index].inc(count)
    histogram._sum.inc(tally[-1])


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
