"""Keeps the embedded Valkey and Postgres alive while a process serves.

``keep_alive`` checks each :class:`~protocols.embedded.servers.EmbeddedServer` every
``CHORUS_EMBEDDED_WATCH_S``; one that missed two checks in a row (a single slow answer is not a
death) is started again on the same data dir and address, in a worker thread, with backoff
while it cannot start. Meanwhile the actors that need it wait the outage out (restarted with
backoff by their supervisor, not counted toward its intensity) and ``/readyz`` names it.

It runs beside the supervision tree, owned by ``run.py``'s ``_serve`` (not a child of the tree):
the servers outlive every actor, the store is opened before the tree starts, and a server's
restarts must never count toward the tree's restart intensity.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from protocols.embedded.servers import EmbeddedServer

__all__ = ["keep_alive"]

log = logging.getLogger("chorus.embedded")

MISSES = 2  # consecutive failed checks before a server is restarted
BACKOFF_MAX_S = 5.0


async def keep_alive(
    servers: Sequence[EmbeddedServer],
    every_s: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Watch ``servers`` until cancelled; restart any that died."""
    misses = {server.name: 0 for server in servers}
    waits = {server.name: 0.0 for server in servers}  # next try not before (after a failure)
    failures = {server.name: 0 for server in servers}
    task_status.started()
    while True:
        await trio.sleep(every_s)
        for server in servers:
            if await trio.to_thread.run_sync(server.alive, abandon_on_cancel=True):
                misses[server.name] = failures[server.name] = 0
                continue
            misses[server.name] += 1
            if misses[server.name] < MISSES or trio.current_time() < waits[server.name]:
                continue
            log.warning("embedded %s is not answering: starting it again", server.name)
            try:
                restarted = await trio.to_thread.run_sync(server.revive, abandon_on_cancel=True)
            except Exception as exc:  # any start failure: tried again later
                failures[server.name] += 1
                delay = min(BACKOFF_MAX_S, every_s * 2 ** failures[server.name])
                waits[server.name] = trio.current_time() + delay
                log.error("embedded %s did not start again (next try in %.1f s): %s",
                          server.name, delay, exc)
                continue
            misses[server.name] = failures[server.name] = 0
            if restarted:
                log.warning("embedded %s is running again", server.name)
