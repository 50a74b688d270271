"""The operator's overview of one Chorus (``GET /v1/admin/overview``, the console's admin page).

Gathered on request, read-only, from where each figure lives: the queue (each lane's stream
length and pending entries, the consumer group's consumers, the dead letters:
``protocols/redis/ops.py``), the provider semaphore (slots in use across every process),
Postgres (jobs by status and the cache hit rate over a recent window, every user together),
every process of the deployment with its supervisors' restarts (the list each process's
``ProcessReporter`` beats into Redis, ``protocols/redis/processes.py``: workers on other hosts
included) and this process's supervisors in detail (each child's state and restarts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol

import msgspec

from actors.pipeline.dead_letters import redrive
from actors.supervision.supervisor import Supervisor
from protocols.messages import DeadLetter
from protocols.processes import ProcessRecord
from protocols.redis.ops import ConsumerFigure, LaneFigure, dead_lane, queue_figures
from protocols.redis.processes import RedisProcesses
from protocols.redis.queue import RedisQueue

if TYPE_CHECKING:
    from actors.service import Service

#: the cache hit rate and job counts cover jobs created this long ago at most
WINDOW_S = 24 * 3600.0
DEAD_SHOWN = 20


class JobFigures(Protocol):
    async def job_figures(self, window_s: float) -> list[tuple[str, int, int]]: ...


class DeadLetterView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    job_id: str
    lane: str
    reason: str
    deliveries: int
    dead_at: float  # unix seconds


class Slots(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    in_use: int
    limit: int


class Cache(msgspec.Struct, frozen=True, kw_only=True):
    window_s: float
    jobs: int
    cached: int
    hit_rate: float | None  # None: no job in the window


class ChildView(msgspec.Struct, frozen=True, kw_only=True):
    supervisor: str
    id: str
    state: str
    restarts: int


class SupervisionView(msgspec.Struct, frozen=True, kw_only=True):
    total_restarts: int
    supervisors: dict[str, int]  # restart decisions per supervisor (outages included)
    children: list[ChildView]


class ChildRestarts(msgspec.Struct, frozen=True, kw_only=True):
    supervisor: str
    id: str
    restarts: int


class ProcessView(msgspec.Struct, frozen=True, kw_only=True):
    """One process of the deployment, as it last reported itself."""

    id: str
    role: str
    consumer: str  # "" for an api process
    host: str
    pid: int
    started_at: float  # unix seconds
    last_seen: float  # unix seconds (Redis' clock)
    restarts: int  # its supervisors' restart decisions since it started
    children: list[ChildRestarts]  # the children restarted at least once
    current: bool  # the process answering this request


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    role: str
    consumer: str
    lanes: list[LaneFigure]
    consumers: list[ConsumerFigure]
    dead_letters: int
    recent_dead: list[DeadLetterView]
    slots: Slots
    cache: Cache
    jobs_by_status: dict[str, int]
    supervision: SupervisionView
    #: every process heard of within 3 heartbeats (CHORUS_PROCESS_HEARTBEAT_S)
    processes: list[ProcessView] = []


def _dead_view(letter: DeadLetter) -> DeadLetterView:
    return DeadLetterView(
        id=letter.dead_id, job_id=letter.job.job_id, lane=dead_lane(letter),
        reason=letter.reason, deliveries=letter.deliveries, dead_at=letter.dead_at,
    )


def process_view(record: ProcessRecord, current_id: str) -> ProcessView:
    info = record.info
    children = []
    for key, n in sorted(record.restarts.items()):
        sup, _, child = key.partition("/")
        children.append(ChildRestarts(supervisor=sup, id=child, restarts=n))
    return ProcessView(
        id=info.id, role=info.role, consumer=info.consumer, host=info.host, pid=info.pid,
        started_at=info.started_at, last_seen=record.last_seen,
        restarts=sum(record.restarts.values()), children=children, current=info.id == current_id,
    )


def supervision(supervisors: Sequence[Supervisor]) -> SupervisionView:
    children, per = [], {}
    for sup in supervisors:
        stats = sup.statistics()
        per[stats.name] = stats.total_restarts
        children += [ChildView(supervisor=stats.name, id=c.id, state=str(c.state.value),
                               restarts=c.restarts) for c in stats.children]
    return SupervisionView(total_restarts=sum(per.values()), supervisors=per, children=children)


async def gather(
    *,
    queue: RedisQueue,
    store: JobFigures,
    slots_in_use: Callable[[], Awaitable[int]],
    provider: str,
    slot_limit: int,
    supervisors: Sequence[Supervisor],
    role: str,
    consumer: str,
    processes: Callable[[], Awaitable[list[ProcessRecord]]] | None = None,
    process_id: str = "",
    window_s: float = WINDOW_S,
) -> Overview:
    """Raises ``QueueUnavailable`` / ``StoreUnavailable`` when Redis or Postgres is away."""
    q = await queue_figures(queue, dead_shown=DEAD_SHOWN)
    in_use = await slots_in_use()
    rows = await store.job_figures(window_s)
    jobs = sum(n for _, n, _ in rows)
    cached = sum(c for _, _, c in rows)
    listed = await processes() if processes is not None else []
    return Overview(
        role=role, consumer=consumer, lanes=q.lanes, consumers=q.consumers,
        dead_letters=q.dead_letters, recent_dead=[_dead_view(d) for d in q.recent_dead],
        slots=Slots(provider=provider, in_use=in_use, limit=slot_limit),
        cache=Cache(window_s=window_s, jobs=jobs, cached=cached,
                    hit_rate=round(cached / jobs, 4) if jobs else None),
        jobs_by_status={status: n for status, n, _ in sorted(rows)},
        supervision=supervision(supervisors),
        processes=[process_view(r, process_id) for r in listed],
    )


async def of_service(service: Service, queue: RedisQueue) -> Overview:
    """The overview as ``service``'s process sees it, on ``queue`` (the front door's client)."""
    sups = [sup for sup in (service.supervisor, service.tts_pool) if sup is not None]
    return await gather(
        queue=queue, store=service.store,  # type: ignore[arg-type]
        slots_in_use=service.coordinator(queue.client).slots_in_use,
        provider=service.provider.name, slot_limit=service.settings.provider_concurrency,
        supervisors=sups, role=str(service.role.value), consumer=service.consumer,
        processes=partial(RedisProcesses(queue.client, service.keys).processes,
                          service.reporter.stale_s),
        process_id=service.reporter.info.id,
    )


async def redrive_one(service: Service, queue: RedisQueue, letter_id: str) -> list[str]:
    """Redrive the dead letter with this dead-letter id or job id (``run.py dead-letters
    redrive``'s code path); the job ids put back (empty: no such letter)."""
    done = await redrive(queue, service.store, {letter_id})
    return [d.job.job_id for d in done]
