"""The ProcessReporter on an in-memory registry and trio's MockClock: restarts noted while the
registry is away are written once it answers (totals, never doubled), a hung write is cut by
its deadline without holding up the supervisor's ``note``, an ordered stop removes the entry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import trio
import trio.testing

from actors.ops.reporter import ProcessReporter
from actors.supervision.supervisor import SupervisorEvent
from protocols.errors import QueueUnavailable
from protocols.processes import ProcessInfo, ProcessRecord

INFO = ProcessInfo(id="h:1:ab", role="worker", consumer="worker-a", host="h", pid=1,
                   started_at=0.0)
HEARTBEAT_S, TIMEOUT_S = 5.0, 2.0


class Registry:
    """Our ProcessRegistry Protocol in memory: ``up`` / ``hang`` switch an outage."""

    def __init__(self) -> None:
        self.up, self.hang = True, False
        self.rows: dict[str, dict[str, int]] = {}
        self.writes: list[tuple[float, dict[str, int]]] = []
        self.removed: list[str] = []

    async def beat(self, info: ProcessInfo, restarts: Mapping[str, int], ttl_s: float) -> None:
        assert ttl_s == 3 * HEARTBEAT_S
        await trio.lowlevel.checkpoint()
        if self.hang:
            await trio.sleep_forever()
        if not self.up:
            raise QueueUnavailable("process heartbeat failed: ConnectionError")
        self.rows[info.id] = dict(restarts)
        self.writes.append((trio.current_time(), dict(restarts)))

    async def remove(self, process_id: str) -> None:
        await trio.lowlevel.checkpoint()  # a real call can be cancelled here
        self.rows.pop(process_id, None)
        self.removed.append(process_id)

    async def processes(self, stale_s: float) -> list[ProcessRecord]:
        raise NotImplementedError


def restart(child: str, supervisor: str = "tts-pool") -> SupervisorEvent:
    return SupervisorEvent("restart", child, trio.current_time(), None, supervisor)


async def test_restarts_during_an_outage_are_written_once_it_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    registry = Registry()

    @asynccontextmanager
    async def open_registry() -> AsyncIterator[Registry]:
        yield registry

    reporter = ProcessReporter(open_registry, INFO, heartbeat_s=HEARTBEAT_S, timeout_s=TIMEOUT_S)
    stop = trio.Event()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(reporter.run, stop)
            await trio.testing.wait_all_tasks_blocked()
            assert registry.rows == {INFO.id: {}}  # listed at once, no restarts yet

            registry.up = False
            reporter.note(restart("tts-0"))
            reporter.note(SupervisorEvent("crash", "tts-1", 0.0, "boom", "tts-pool"))  # not one
            reporter.note(restart("tts-0"))
            reporter.note(restart("stream-reader", "root"))
            await trio.sleep(3 * HEARTBEAT_S)  # several failed beats
            stats = reporter.statistics()
            assert stats.restarts == stats.pending == 3 and stats.failed_beats >= 2
            assert registry.rows == {INFO.id: {}}

            registry.up = True
            back = trio.current_time()
            await trio.sleep(HEARTBEAT_S + 0.1)  # the next heartbeat flushes
            want = {"tts-pool/tts-0": 2, "root/stream-reader": 1}
            assert registry.rows == {INFO.id: want}
            first = next(t for t, w in registry.writes if w)
            assert back <= first <= back + HEARTBEAT_S
            assert reporter.statistics().pending == 0

            await trio.sleep(2 * HEARTBEAT_S)  # more beats: the same totals, never doubled
            assert [w for _, w in registry.writes if w][-1] == want
            assert all(w in ({}, want) for _, w in registry.writes)

            # a restart with Redis up goes out at once, not at the next heartbeat
            noted = trio.current_time()
            reporter.note(restart("tts-0"))
            await trio.testing.wait_all_tasks_blocked()
            assert registry.writes[-1] == (noted, {**want, "tts-pool/tts-0": 3})

            # a hung Redis: the write is cut by its deadline, note() never waits for it
            registry.hang = True
            reporter.note(restart("tts-1"))
            assert reporter.statistics().pending == 1
            await trio.sleep(TIMEOUT_S + 0.1)
            assert reporter.statistics().failed_beats == stats.failed_beats + 1
            registry.hang = False
            await trio.sleep(HEARTBEAT_S)
            assert registry.rows[INFO.id]["tts-pool/tts-1"] == 1
            assert reporter.statistics().pending == 0

            stop.set()  # an ordered stop: off the list at once
    assert registry.removed == [INFO.id] and registry.rows == {}
