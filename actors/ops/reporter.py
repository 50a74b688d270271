"""ProcessReporter: this process's entry in the deployment's process list, with its restarts.

``note(event)`` is what every supervisor of the process reports to (through the Service's
``on_event``): synchronous, never blocks, never raises. A ``restart`` adds one to the child's
total (``"<supervisor>/<child id>"``), kept here on the reporter object, so totals outlive a
restart of the reporter itself and any Redis outage. The actor beats into the registry
(``protocols.processes.ProcessRegistry``) every ``heartbeat_s`` and at once after a restart,
each write under a deadline. A beat writes the totals, not increments: a beat that failed or
timed out (outcome unknown) is simply written again by the next one, so a restart during a
Redis outage shows once Redis answers, and is never counted twice. ``pending`` is how many
restarts the registry has not confirmed yet. The entry ages out 3 heartbeats after the last
beat (a process gone without a word); an ordered stop removes it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import msgspec
import trio

from actors.supervision.supervisor import SupervisorEvent
from protocols.errors import ChorusError
from protocols.processes import ProcessInfo, ProcessRegistry

log = logging.getLogger("chorus.processes")

#: a process not heard of for this many heartbeats has aged out
STALE_BEATS = 3


class ReporterStatistics(msgspec.Struct, frozen=True):
    beats: int  # confirmed writes
    failed_beats: int  # writes that failed or ran out of time
    restarts: int  # restart decisions noted in this process
    pending: int  # of those, not yet confirmed written


class ProcessReporter:
    def __init__(
        self,
        open_registry: Callable[[], AbstractAsyncContextManager[ProcessRegistry]],
        info: ProcessInfo,
        *,
        heartbeat_s: float,
        timeout_s: float,
    ) -> None:
        self._open = open_registry
        self.info = info
        self.heartbeat_s = heartbeat_s
        self._timeout = timeout_s
        self._totals: dict[str, int] = {}
        self._written: dict[str, int] = {}  # the totals the registry last confirmed
        self._beats = self._failed = 0
        self._wake = trio.Event()
        self._down = False  # the last beat failed (log once per outage)

    @property
    def stale_s(self) -> float:
        return STALE_BEATS * self.heartbeat_s

    def note(self, event: SupervisorEvent) -> None:
        """A supervisor's event (only restarts count); the next beat goes out at once."""
        if event.kind != "restart":
            return
        child = f"{event.supervisor}/{event.child_id or ''}"
        self._totals[child] = self._totals.get(child, 0) + 1
        self._wake.set()

    def statistics(self) -> ReporterStatistics:
        total = sum(self._totals.values())
        return ReporterStatistics(self._beats, self._failed, total,
                                  total - sum(self._written.values()))

    async def run(self, stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with self._open() as registry:
            async with trio.open_nursery() as nursery:

                async def wake_on_stop() -> None:
                    await stop.wait()
                    self._wake.set()

                nursery.start_soon(wake_on_stop)
                task_status.started()
                while not stop.is_set():
                    self._wake = trio.Event()
                    await self._beat(registry)
                    with trio.move_on_after(self.heartbeat_s):
                        await self._wake.wait()
                nursery.cancel_scope.cancel()
            # an ordered stop: off the list at once (a process that dies ages out instead)
            with trio.move_on_after(self._timeout):
                try:
                    await registry.remove(self.info.id)
                except ChorusError as exc:
                    log.warning("could not take this process off the list: %s", exc)

    async def _beat(self, registry: ProcessRegistry) -> None:
        totals = dict(self._totals)
        try:
            with trio.fail_after(self._timeout):
                await registry.beat(self.info, totals, self.stale_s)
        except (ChorusError, trio.TooSlowError) as exc:
            self._failed += 1
            if not self._down:
                log.warning("process heartbeat failed (restarts kept until it works): %s", exc)
            self._down = True
            return
        self._beats += 1
        self._written = totals
        if self._down:
            log.info("process heartbeat written again")
        self._down = False
