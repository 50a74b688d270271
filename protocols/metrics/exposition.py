"""What ``GET /metrics`` answers: the counters and histograms of every process on this host
(multi-process mode) or of this process, then the gauges read from Redis for this scrape
(``QueueFigures``), in Prometheus' text format."""

from __future__ import annotations

import msgspec
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from protocols.metrics import instruments as _instruments  # noqa: F401  # registers them
from protocols.metrics.process import multiprocess

#: the classic text format, which every Prometheus reads (names here are plain ASCII)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class QueueFigures(msgspec.Struct, frozen=True, kw_only=True):
    """Read from Redis at scrape time (shared by every process: no sum needed)."""

    lanes: dict[str, tuple[int, int]]  # lane -> (entries in its stream, of which pending)
    dead_letters: int
    slots_in_use: int | None = None  # provider slots held (all processes); None: not known


class _Figures:
    """A collector that yields the figures of one scrape."""

    def __init__(self, figures: QueueFigures | None) -> None:
        self.figures = figures

    def collect(self):  # type: ignore[no-untyped-def]
        f = self.figures
        up = GaugeMetricFamily("chorus_redis_up", "Whether Redis answered this scrape (1/0)")
        up.add_metric([], 0.0 if f is None else 1.0)
        yield up
        if f is None:
            return
        length = GaugeMetricFamily(
            "chorus_stream_length", "Entries in a job stream (waiting + pending)", labels=["lane"]
        )
        pending = GaugeMetricFamily(
            "chorus_stream_pending", "Entries delivered to a worker and not acked yet",
            labels=["lane"],
        )
        for lane, (n, p) in sorted(f.lanes.items()):
            length.add_metric([lane], float(n))
            pending.add_metric([lane], float(p))
        yield length
        yield pending
        dead = GaugeMetricFamily("chorus_dead_letters", "Entries in the dead-letter stream")
        dead.add_metric([], float(f.dead_letters))
        yield dead
        if f.slots_in_use is not None:
            slots = GaugeMetricFamily(
                "chorus_provider_slots_in_use",
                "Provider slots held now (the account's concurrency, every process)",
            )
            slots.add_metric([], float(f.slots_in_use))
            yield slots


def render(figures: QueueFigures | None) -> bytes:
    """The text of one scrape. ``figures`` None: Redis did not answer (``chorus_redis_up 0``)."""
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(_Figures(figures))
    return counted + generate_latest(scraped)
