"""In-process counters, rendered in Prometheus' text format by the web view."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.n += 1


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of the inbound pipeline as the metrics show it (declared in
    ``bridge.inbound.steps``; this layer cannot import it)."""

    event: str
    """The kind of event whose pipeline it starts in: posted, edited, deleted, rejected."""
    name: str
    description: str
    reasons: tuple[str, ...]
    """The reasons it may drop an event with."""
    kept: tuple[str, ...] = ()
    """The reasons whose drops the store keeps too (``status`` counts them
    across restarts)."""


@dataclass(frozen=True, slots=True)
class HeldFigures:
    """Posts held over their author's rate, as the store counts them (across
    restarts): held now, released (their slot came, or an admin released
    them), discarded by an admin, refused over the cap on held posts."""

    held: int = 0
    released: int = 0
    discarded: int = 0
    refused: int = 0


@dataclass
class Metrics:
    inbound_steps: tuple[StepInfo, ...] = ()
    """The inbound pipeline, in order: every (step, reason) is exported, from 0."""
    posts_in: Counter[str] = field(default_factory=Counter)
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Inbound events not relayed, by (channel, reason text): the legacy
    ``hashbridge_posts_dropped_total``, in memory since the start."""
    step_drops: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Inbound events a step stopped, by (step, reason), in memory since the start."""
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Inbound events that could not be read or relayed, by (channel, kind)."""
    held_in: Counter[str] = field(default_factory=Counter)
    """Posts held over their author's rate, by channel, since the start."""
    posts_out: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    dead_total: Counter[str] = field(default_factory=Counter)
    rate_limit_wait: dict[str, float] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    """Extra gauges adapters publish (``x_spend_usd{account="x"}``...)."""

    def ingested(self, channel: str, accepted: int, dropped: dict[str, int]) -> None:
        self.posts_in[channel] += accepted
        for why, n in dropped.items():
            self.dropped[(channel, why)] += n

    def ingested_page(self, counts: Mapping[tuple[str, str, str], int],
                      steps: Mapping[tuple[str, str], int] | None = None) -> None:
        """One page's ``(channel, what, reason)`` counts (``IngestResult.counts``)
        and ``(step, reason)`` drops (``IngestResult.steps``)."""
        if steps:
            self.step_drops.update(steps)
        for (channel, what, why), n in counts.items():
            if what == "accepted":
                self.posts_in[channel] += n
            elif what == "held":
                self.held_in[channel] += n
            elif what == "dropped":
                self.dropped[(channel, why)] += n
            else:
                self.rejected[(channel, why)] += n

    def delivered(self, channel: str, op: str, latency: float) -> None:
        self.posts_out[(channel, op)] += 1
        h = self.latency.get(channel)
        if h is None:  # not setdefault: that would build a histogram every time
            h = self.latency[channel] = Histogram()
        h.observe(latency)

    def retried(self, channel: str) -> None:
        self.retries[channel] += 1

    def dead(self, channel: str) -> None:
        self.dead_total[channel] += 1

    def rate_limited(self, channel: str, seconds: float) -> None:
        self.rate_limit_wait[channel] = self.rate_limit_wait.get(channel, 0.0) + seconds

    def prometheus(self, queue_depth: dict[str, dict[str, int]] | None = None,
                   held: HeldFigures | None = None) -> str:
        out: list[str] = []

        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        def counter(name: str, help_: str, rows: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} counter")
            out.extend(f"{name}{{{labels}}} {value:g}" if labels else f"{name} {value:g}"
                       for labels, value in rows)

        counter("hashbridge_posts_in_total", "Posts accepted from a channel",
                [(f'channel="{esc(c)}"', n) for c, n in sorted(self.posts_in.items())])
        counter("hashbridge_posts_dropped_total", "Inbound events not relayed, by reason",
                [(f'channel="{esc(c)}",reason="{esc(r)}"', n)
                 for (c, r), n in sorted(self.dropped.items())])
        declared = [(st.name, r) for st in self.inbound_steps for r in st.reasons]
        counter("hashbridge_inbound_dropped_total",
                "Inbound events a step of the inbound pipeline stopped, by step and reason "
                "(every declared pair, from 0)",
                [(f'step="{esc(st)}",reason="{esc(r)}"', self.step_drops[(st, r)])
                 for st, r in [*declared, *sorted(set(self.step_drops) - set(declared))]])
        if self.inbound_steps:
            out.append("# HELP hashbridge_inbound_step_info The inbound pipeline's steps, "
                       "in the order they run for each event kind")
            out.append("# TYPE hashbridge_inbound_step_info gauge")
            out.extend(f'hashbridge_inbound_step_info{{event="{esc(st.event)}",'
                       f'step="{esc(st.name)}",position="{i}",'
                       f'description="{esc(st.description)}"}} 1'
                       for i, st in enumerate(self.inbound_steps, 1))
        counter("hashbridge_inbound_rejected_total",
                "Inbound events recorded as rejected because they could not be read "
                "(unreadable, too large) or relayed (relay error), by kind",
                [(f'channel="{esc(c)}",reason="{esc(r)}"', n)
                 for (c, r), n in sorted(self.rejected.items())])
        counter("hashbridge_posts_held_in_total",
                "Posts held over their author's rate (not dropped), by the channel they "
                "came from, since the start",
                [(f'channel="{esc(c)}"', n) for c, n in sorted(self.held_in.items())])
        if held is not None:
            out.append("# HELP hashbridge_posts_held Posts held now over their author's rate, "
                       "waiting for their slot")
            out.append("# TYPE hashbridge_posts_held gauge")
            out.append(f"hashbridge_posts_held {held.held}")
            counter("hashbridge_posts_held_released_total",
                    "Held posts released (their slot came, or an admin released them)",
                    [("", held.released)])
            counter("hashbridge_posts_held_discarded_total",
                    "Held posts an admin discarded (never sent)", [("", held.discarded)])
            counter("hashbridge_posts_held_refused_total",
                    "Posts refused because their author had the most posts held already "
                    "(10 minutes of author_rate_per_minute)", [("", held.refused)])
        counter("hashbridge_posts_out_total", "Deliveries sent to a channel",
                [(f'channel="{esc(c)}",op="{esc(o)}"', n)
                 for (c, o), n in sorted(self.posts_out.items())])
        counter("hashbridge_delivery_retries_total", "Deliveries deferred for a retry",
                [(f'channel="{esc(c)}"', n) for c, n in sorted(self.retries.items())])
        counter("hashbridge_deliveries_dead_total", "Deliveries parked as dead",
                [(f'channel="{esc(c)}"', n) for c, n in sorted(self.dead_total.items())])
        counter("hashbridge_rate_limit_wait_seconds_total", "Time held by platform rate limits",
                [(f'channel="{esc(c)}"', n) for c, n in sorted(self.rate_limit_wait.items())])
        out.append("# HELP hashbridge_delivery_latency_seconds From ingest to delivered")
        out.append("# TYPE hashbridge_delivery_latency_seconds histogram")
        for ch, h in sorted(self.latency.items()):
            acc = 0
            for bound, n in zip((*BUCKETS, float("inf")), h.counts, strict=True):
                acc += n
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                out.append(f'hashbridge_delivery_latency_seconds_bucket{{channel="{esc(ch)}",'
                           f'le="{le}"}} {acc}')
            out.append(f'hashbridge_delivery_latency_seconds_sum{{channel="{esc(ch)}"}} '
                       f'{h.total:g}')
            out.append(f'hashbridge_delivery_latency_seconds_count{{channel="{esc(ch)}"}} {h.n}')
        if queue_depth is not None:
            out.append("# HELP hashbridge_queue_depth Deliveries waiting, by state")
            out.append("# TYPE hashbridge_queue_depth gauge")
            for ch, states in sorted(queue_depth.items()):
                for state, n in sorted(states.items()):
                    out.append(f'hashbridge_queue_depth{{channel="{esc(ch)}",'
                               f'state="{state}"}} {n}')
        for name, value in sorted(self.gauges.items()):
            out.append(f"{name} {value:g}")
        return "\n".join(out) + "\n"
