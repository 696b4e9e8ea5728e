"""Prometheus metrics through ``prometheus_client``: one :class:`Metrics` per gateway process.

Hot-path counting is cheap: label children are bound once per label combination and kept in
a dict, and a request only adds to plain numbers (:class:`Tally`); they move into
``prometheus_client`` in one pass per child when ``/metrics`` is read (:meth:`Metrics.flush`;
prometheus_client's own ``inc``/``observe`` take a lock and, for a histogram, scan its buckets
in Python: ~4 µs a request, 8% of the gateway's CPU at c=32, bench/README.md). With several
gateway processes (``serve --workers N``) set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
shared by them (before start): every process writes its values there as it counts
(:class:`Direct`) and ``/metrics``, whichever process answers it, reads them all
(``prometheus_client.multiprocess``).
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from ..inference import TokenUsage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)

MAX_DYNAMIC_NAMES = 100  # ``provider::model`` names not in the config, before they count as "other"
OTHER = "other"


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, when set (read at import by prometheus_client)."""
    return os.environ.get(MULTIPROC_ENV) or None


class Tally:
    """Counts and observations not yet handed to prometheus_client, keyed by label child."""

    __slots__ = ("counts", "histograms")

    def __init__(self) -> None:
        self.counts: dict[Any, float] = {}
        self.histograms: dict[Any, list[float]] = {}  # child -> per-bucket counts, then the sum

    def add(self, child: Any, amount: float = 1) -> None:
        counts = self.counts
        counts[child] = counts.get(child, 0) + amount

    def observe(self, child: Any, bounds: tuple[float, ...], value: float) -> None:
        slots = self.histograms.get(child)
        if slots is None:
            slots = self.histograms[child] = [0.0] * (len(bounds) + 2)  # + the +Inf bucket, the sum
        slots[bisect_left(bounds, value)] += 1
        slots[-1] += value

    def flush(self) -> None:
        """Hand everything to prometheus_client (one ``inc`` per child and bucket)."""
        counts, self.counts = self.counts, {}
        for child, amount in counts.items():
            child.inc(amount)
        histograms, self.histograms = self.histograms, {}
        for child, slots in histograms.items():
            for i, n in enumerate(slots[:-1]):
                if n:
                    child._buckets[i].inc(n)  # prometheus_client's per-bucket values (not cumulative)
            child._sum.inc(slots[-1])


class Direct(Tally):
    """Several processes: straight into prometheus_client's shared files, so a scrape answered by
    any process counts what every other one has done up to that moment."""

    __slots__ = ()

    def add(self, child: Any, amount: float = 1) -> None:
        child.inc(amount)

    def observe(self, child: Any, bounds: tuple[float, ...], value: float) -> None:
        child.observe(value)


class Metrics:
    """Every ``runyard_*`` metric, with pre-bound label children for the hot path.

    ``known_models``: the configured model names (label values are these, ``provider::model``
    names up to :data:`MAX_DYNAMIC_NAMES`, then ``other``: never free text). ``collectors``
    are added to what ``render`` reports (the task figures read from the store: task_metrics.py).
    """

    def __init__(self, known_models: Iterable[str] = (), collectors: Iterable[Collector] = ()) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = reg = CollectorRegistry()
        self._collectors = list(collectors)
        self._known = set(known_models)
        self._dynamic: set[str] = set()
        self.requests = Counter("runyard_requests", "HTTP requests answered", ["route", "status"], registry=reg)
        self.request_duration = Histogram(
            "runyard_request_duration_seconds", "HTTP request latency", ["route"], buckets=REQUEST_BUCKETS, registry=reg
        )
        self.inferences = Counter(
            "runyard_inferences", "inferences", ["kind", "model", "provider", "outcome"], registry=reg
        )
        self.tokens = Counter("runyard_tokens", "tokens", ["model", "provider", "type"], registry=reg)
        self.cost = Counter("runyard_cost_usd", "cost in USD (catalog prices)", ["model", "provider"], registry=reg)
        self.ttft = Histogram(
            "runyard_time_to_first_token_seconds",
            "time to the first streamed token",
            ["model", "provider"],
            buckets=TTFT_BUCKETS,
            registry=reg,
        )
        self.upstream_attempts = Counter(
            "runyard_upstream_attempts", "calls to (or skips of) upstream routes", ["provider", "outcome"], registry=reg
        )
        self.cache_lookups = Counter("runyard_cache_lookups", "response cache lookups", ["result"], registry=reg)
        self.rate_limited = Counter("runyard_rate_limited", "requests refused by a limit", ["limit"], registry=reg)
        self.workers = Gauge(
            "runyard_workers",
            "task worker slots in gateway processes",
            ["pool"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.recorder_backlog = Gauge(
            "runyard_recorder_backlog_rows", "inference rows waiting to be written", registry=reg,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.recorder_backlog_bytes = Gauge(
            "runyard_recorder_backlog_bytes", "what the rows waiting to be written hold (max_buffer_bytes bounds it)",
            registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self.recorder_dropped = Counter(
            "runyard_recorder_dropped_rows", "inference rows dropped (buffer full)", registry=reg
        )
        self.breaker_open = Gauge(
            "runyard_breaker_open", "1 while a route's circuit is open", ["route"], registry=reg,
            multiprocess_mode="livemax",
        )  # fmt: skip
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._inference_children: dict[tuple[str, str, str | None, str], _InferenceChildren] = {}
        self._attempt_children: dict[tuple[str, str], Any] = {}
        self._cache_children = (self.cache_lookups.labels("hit"), self.cache_lookups.labels("miss"))
        self._rate_children: dict[str, Any] = {}
        self._dropped_seen = 0
        self.tally = Direct() if self.multiprocess else Tally()

    # -- the hot path ---------------------------------------------------------------
    def observe_request(self, route: str, status: int, seconds: float) -> None:
        children = self._request_children.get((route, status))
        if children is None:
            children = (self.requests.labels(route, str(status)), self.request_duration.labels(route))
            self._request_children[(route, status)] = children
        tally = self.tally
        tally.add(children[0])
        tally.observe(children[1], REQUEST_BUCKETS, seconds)

    def observe_inference(
        self,
        kind: str,
        model: str,
        provider: str | None,
        outcome: str,
        usage: TokenUsage | None = None,
        cost: float | None = None,
        ttft_s: float | None = None,
    ) -> None:
        """One inference: ``outcome`` ok, error or cache_hit; tokens and cost when it ran."""
        key = (kind, model, provider, outcome)
        children = self._inference_children.get(key)
        if children is None:
            children = self._bind_inference(key)
        add = self.tally.add
        add(children.count)
        if usage is not None:
            if usage.input_tokens:
                add(children.input, usage.input_tokens)
            if usage.output_tokens:
                add(children.output, usage.output_tokens)
            if usage.cached_tokens:
                add(children.cached, usage.cached_tokens)
            if usage.reasoning_tokens:
                add(children.reasoning, usage.reasoning_tokens)
        if cost:
            add(children.cost, cost)
        if ttft_s is not None:
            self.tally.observe(children.ttft, TTFT_BUCKETS, ttft_s)

    def observe_attempt(self, provider: str, outcome: str) -> None:
        """``outcome``: ok, error, timeout, rate_limited, skipped_cost_cap, breaker_open."""
        child = self._attempt_children.get((provider, outcome))
        if child is None:
            child = self._attempt_children[(provider, outcome)] = self.upstream_attempts.labels(provider, outcome)
        self.tally.add(child)

    def observe_cache(self, hit: bool) -> None:
        self.tally.add(self._cache_children[0 if hit else 1])

    def observe_rate_limited(self, limit: str) -> None:
        child = self._rate_children.get(limit)
        if child is None:
            child = self._rate_children[limit] = self.rate_limited.labels(limit)
        self.tally.add(child)

    def flush(self) -> None:
        """Move the hot path's tally into prometheus_client (before a scrape; every second with
        several processes, so the shared directory stays current)."""
        self.tally.flush()

    # -- sampled state ------------------------------------------------------------
    def sample(
        self,
        *,
        backlog: int,
        dropped: int,
        backlog_bytes: int = 0,
        circuits: dict[str, dict[str, Any]],
        workers: dict[str, int],
    ) -> None:
        """Gauges of this process's state, set every few seconds (and before a scrape)."""
        self.flush()
        self.recorder_backlog.set(backlog)
        self.recorder_backlog_bytes.set(backlog_bytes)
        if dropped > self._dropped_seen:
            self.recorder_dropped.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped
        for route, state in circuits.items():
            self.breaker_open.labels(route).set(1 if state.get("state") == "open" else 0)
        for pool, slots in workers.items():
            self.workers.labels(pool).set(slots)

    def mark_process_dead(self) -> None:
        """Drop this process's live gauges from the shared directory (multiprocess mode)."""
        self.flush()
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of all processes in multiprocess mode)."""
        self.flush()
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        text = generate_latest(registry)
        for collector in self._collectors:
            text += generate_latest(_Single(collector))
        return text

    def add_collector(self, collector: Collector) -> None:
        """Report ``collector`` too (the task figures, once the store is up)."""
        self._collectors.append(collector)

    # -- labels -------------------------------------------------------------------
    def label_model(self, name: str) -> str:
        """A model name as a label value: configured names, bounded ``provider::model`` names."""
        if name in self._known or name in self._dynamic:
            return name
        if len(self._dynamic) < MAX_DYNAMIC_NAMES:
            self._dynamic.add(name)
            return name
        return OTHER

    def _bind_inference(self, key: tuple[str, str, str | None, str]) -> _InferenceChildren:
        kind, model, provider, outcome = key
        model_label, provider_label = self.label_model(model), provider or "none"
        tokens = [
            self.tokens.labels(model_label, provider_label, t) for t in ("input", "output", "cached", "reasoning")
        ]
        children = _InferenceChildren(
            self.inferences.labels(kind, model_label, provider_label, outcome),
            tokens,
            self.cost.labels(model_label, provider_label),
            self.ttft.labels(model_label, provider_label),
        )
        if model_label != OTHER:  # unbounded names are bound each time, not remembered
            self._inference_children[key] = children
        return children


class _InferenceChildren:
    __slots__ = ("cached", "cost", "count", "input", "output", "reasoning", "ttft")

    def __init__(self, count: Any, tokens: list[Any], cost: Any, ttft: Any) -> None:
        self.count, self.cost, self.ttft = count, cost, ttft
        self.input, self.output, self.cached, self.reasoning = tokens


class _Single:
    """One collector as a registry-like object for ``generate_latest``."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Metric]:
        return self._collector.collect()
