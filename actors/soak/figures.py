"""The soak's figures, read back from Postgres and the stand-in, and its verdict.

Every figure counts the jobs the clients were answered with (accepted: 200 or 202 with a job
id). ``stuck``: accepted, still queued or running once the drain ended; ``lost``: accepted but no
row; ``duplicate_calls``: paid TTS calls minus distinct texts paid for (a text generated twice);
``double_charges``: jobs with more than one usage row; ``jobs_per_key``: the most job ids one
idempotency key was answered with (client side) or has rows for (database side).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from actors.soak.drive import Load, Recovery
from protocols.embedded.servers import run_psql

__all__ = ["DEPENDENCY_READY_S", "Figures", "collect", "render"]

DEPENDENCY_READY_S = 5.0  # the bound: ready again within 5 s of a dependency kill


async def rows(database_url: str, sql: str) -> list[list[str]]:
    out = await trio.to_thread.run_sync(lambda: run_psql(database_url, sql, timeout=30))
    return [line.split("|") for line in out.splitlines() if line]


@dataclass
class Figures:
    jobs: int
    kills: dict[str, int]
    accepted: int = 0
    refused: int = 0
    unanswered: int = 0  # never accepted nor refused before the time limit
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0
    stuck: int = 0
    lost: int = 0
    provider_calls: int = 0
    distinct_texts: int = 0
    duplicate_calls: int = 0
    duplicate_bound: int = 0
    history_reuses: int = 0
    double_charges: int = 0
    usage_rows: int = 0
    jobs_per_key_client: int = 0
    jobs_per_key_db: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    submit_retries: dict[str, int] = field(default_factory=dict)
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    drained: bool = False
    seconds: float = 0.0
    serve_exit: int | None = None
    notes: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """The broken invariants (empty: the soak passed)."""
        bad = [f"{name} {value}" for name, value in (
            ("lost", self.lost), ("stuck", self.stuck), ("dead", self.dead),
            ("double charges", self.double_charges), ("unanswered", self.unanswered),
            ("refused", self.refused)) if value]
        if self.duplicate_calls > self.duplicate_bound:
            bad.append(f"duplicate provider calls {self.duplicate_calls} > {self.duplicate_bound}"
                       " (one per kill)")
        if max(self.jobs_per_key_client, self.jobs_per_key_db) > 1:
            bad.append("more than one job for an idempotency key")
        if any(r["ready_s"] is None for r in self.recoveries):
            bad.append("not ready again after a kill")
        return bad + self.notes


async def collect(fig: Figures, load: Load, database_url: str, provider: dict[str, int],
                  recoveries: list[Recovery]) -> Figures:
    """Fill ``fig`` from what the clients were answered, the database and the stand-in."""
    ids = {job_id for got in load.accepted.values() for job_id in got}
    fig.accepted, fig.refused = len(load.accepted), len(load.refused)
    fig.unanswered = fig.jobs - fig.accepted - fig.refused
    status = dict(await rows(database_url, "SELECT id, status FROM jobs"))
    counts = Counter(status[i] for i in ids if i in status)
    fig.succeeded, fig.failed = counts["succeeded"], counts["failed"]
    fig.dead, fig.cancelled = counts["dead"], counts["cancelled"]
    fig.stuck = counts["queued"] + counts["running"]
    fig.lost = len(ids - status.keys())
    fig.double_charges = len(await rows(
        database_url, "SELECT job_id FROM usage GROUP BY job_id HAVING count(*) > 1"))
    fig.usage_rows = int((await rows(database_url, "SELECT count(*) FROM usage"))[0][0])
    per_key = await rows(database_url, "SELECT count(*) FROM jobs WHERE idempotency_key IS NOT"
                                       " NULL GROUP BY owner, idempotency_key")
    fig.jobs_per_key_db = max((int(r[0]) for r in per_key), default=0)
    fig.jobs_per_key_client = max((len(got) for got in load.accepted.values()), default=0)
    fig.provider_calls, fig.distinct_texts = provider["provider_calls"], provider["distinct_texts"]
    fig.duplicate_calls = fig.provider_calls - fig.distinct_texts
    fig.duplicate_bound = sum(fig.kills.values())
    fig.history_reuses = provider["history_downloads"]
    fig.injected = {"429": provider["injected_429"], "500": provider["injected_500"]}
    fig.submit_retries = dict(load.retries)
    fig.recoveries = [asdict(r) for r in recoveries]
    return fig


def render(fig: Figures) -> str:
    """The report printed at the end of ``run.py soak``."""
    lines = [
        f"jobs {fig.jobs} ({fig.jobs - fig.jobs // 2} distinct texts), kills: "
        + ", ".join(f"{n} {kind}" for kind, n in fig.kills.items())
        + f"; {fig.seconds:.0f} s, drained: {'yes' if fig.drained else 'NO'}",
        f"accepted {fig.accepted}  refused {fig.refused}  unanswered {fig.unanswered}",
        f"succeeded {fig.succeeded}  failed {fig.failed}  dead {fig.dead}  cancelled"
        f" {fig.cancelled}  stuck {fig.stuck}  lost {fig.lost}",
        f"provider calls {fig.provider_calls} for {fig.distinct_texts} texts: duplicate calls"
        f" {fig.duplicate_calls} (bound {fig.duplicate_bound}); history reuses"
        f" {fig.history_reuses}; injected 429 {fig.injected.get('429', 0)}, 500"
        f" {fig.injected.get('500', 0)}",
        f"usage rows {fig.usage_rows}, double charges {fig.double_charges}; jobs per idempotency"
        f" key: {fig.jobs_per_key_client} (answers), {fig.jobs_per_key_db} (rows)",
        "submits sent again: " + (", ".join(f"{k} {v}" for k, v in
                                           sorted(fig.submit_retries.items())) or "none"),
        "ready again after each kill:",
    ]
    for r in fig.recoveries:
        took = "not ready" if r["ready_s"] is None else f"{r['ready_s']:.2f} s"
        within = r["ready_s"] is not None and r["ready_s"] <= DEPENDENCY_READY_S
        bound = ("" if r["kind"] == "serve"
                 else f" (bound {DEPENDENCY_READY_S:.0f} s{'' if within else ': OVER'})")
        lines.append(f"  {r['kind']:<9} at {r['at_s']:6.1f} s: {took}{bound}")
    bad = fig.failures()
    lines.append("PASS" if not bad else "FAIL: " + "; ".join(bad))
    return "\n".join(lines)


def dump(fig: Figures) -> str:
    return json.dumps({**asdict(fig), "failures": fig.failures()}, indent=2)
