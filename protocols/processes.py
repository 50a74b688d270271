"""The processes of one deployment, as each reports itself (``GET /v1/admin/overview``'s list).

Every Chorus process (``serve``, ``api``, ``worker``, on any host) beats into a registry shared
by all hosts: who it is (:class:`ProcessInfo`) and its supervisors' restarts so far, per child
(``"<supervisor>/<child id>"`` -> restarts; totals over the process's life, so writing them
again is harmless). A process that stops beating ages out of the list after ``stale_s``.
The actor is ``actors/ops/reporter.py``; the Redis adapter ``protocols/redis/processes.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

__all__ = ["ProcessInfo", "ProcessRecord", "ProcessRegistry"]


class ProcessInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Who a process is: fixed for its life."""

    id: str  # unique per process life: host, pid and a random part
    role: str  # serve | api | worker
    consumer: str  # its stable consumer name ("" for an api process)
    host: str
    pid: int
    started_at: float  # unix seconds


class ProcessRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A process as the registry last heard of it."""

    info: ProcessInfo
    last_seen: float  # unix seconds, the registry's clock
    restarts: dict[str, int]  # "<supervisor>/<child id>" -> restarts in this process's life


class ProcessRegistry(Protocol):
    async def beat(self, info: ProcessInfo, restarts: Mapping[str, int], ttl_s: float) -> None:
        """Say this process lives, with its restart totals; it ages out ``ttl_s`` after the
        last beat. Idempotent (totals, not increments)."""
        ...

    async def remove(self, process_id: str) -> None:
        """Take a process off the list at once (an ordered stop). Idempotent."""
        ...

    async def processes(self, stale_s: float) -> list[ProcessRecord]:
        """The processes heard of within the last ``stale_s`` seconds (of the registry's
        clock), by role, consumer, host and pid."""
        ...
