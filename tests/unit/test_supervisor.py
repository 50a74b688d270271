"""Supervisor semantics, after OTP's supervisor_SUITE, on virtual time (autojump_clock).

Children are scripted: incarnation n of a ``Child`` runs the n-th behaviour of its script (the last
one repeats). Assertions are on the emitted events as ``(kind, child_id, virtual time)``.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from actors.supervision.supervisor import (
    BRUTAL,
    INFINITY,
    ChildSpec,
    ChildState,
    Restart,
    ShutdownForced,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorGaveUp,
    SupervisorPolicy,
    SupervisorStartFailed,
    run_with_signals,
    supervisor_child,
)

CAP = 1000  # virtual seconds: a hang fails the test instead of blocking it

Behaviour = Callable[[trio.Event, Any], Awaitable[None]]


class Boom(Exception):
    pass


def serve(*, ready_after: float = 0.0, cleanup: float = 0.0) -> Behaviour:
    """Become ready after ``ready_after``; on stop, take ``cleanup`` seconds and return."""

    async def run(stop: trio.Event, task_status: Any) -> None:
        await trio.sleep(ready_after)
        task_status.started()
        await stop.wait()
        await trio.sleep(cleanup)

    return run


def crash(after: float, make: Callable[[], BaseException] = lambda: Boom("boom")) -> Behaviour:
    """Raise ``after`` seconds after becoming ready, unless stopped before."""

    async def run(stop: trio.Event, task_status: Any) -> None:
        task_status.started()
        with trio.move_on_after(after):
            await stop.wait()
            return
        raise make()

    return run


def leave(after: float) -> Behaviour:
    """Return normally ``after`` seconds after becoming ready."""

    async def run(stop: trio.Event, task_status: Any) -> None:
        task_status.started()
        await trio.sleep(after)

    return run


def fail_start(after: float = 0.0) -> Behaviour:
    async def run(stop: trio.Event, task_status: Any) -> None:
        await trio.sleep(after)
        raise Boom("cannot start")

    return run


def never_ready(after: float) -> Behaviour:
    """Return normally without ever calling ``task_status.started()``."""

    async def run(stop: trio.Event, task_status: Any) -> None:
        await trio.sleep(after)

    return run


def deaf() -> Behaviour:
    """Ready at once, never looks at ``stop``."""

    async def run(stop: trio.Event, task_status: Any) -> None:
        task_status.started()
        await trio.sleep_forever()

    return run


class Child:
    def __init__(self, *script: Behaviour) -> None:
        self.script = script or (serve(),)
        self.runs = 0
        self.called_at: list[float] = []
        self.cancelled = 0

    async def __call__(
        self, stop: trio.Event, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        behaviour = self.script[min(self.runs, len(self.script) - 1)]
        self.runs += 1
        self.called_at.append(trio.current_time())
        try:
            await behaviour(stop, task_status)
        except trio.Cancelled:
            self.cancelled += 1
            raise


class Recorder:
    def __init__(self) -> None:
        self.events: list[SupervisorEvent] = []

    def __call__(self, event: SupervisorEvent) -> None:
        self.events.append(event)

    def log(self, *kinds: str) -> list[tuple[str, str | None, float]]:
        return [(e.kind, e.child_id, e.time) for e in self.events if not kinds or e.kind in kinds]


def policy(
    strategy: Strategy = Strategy.one_for_one,
    *,
    intensity: int = 3,
    period: float = 10.0,
    backoff: float = 0.0,
    backoff_max: float = 60.0,
    jitter: float = 0.0,
) -> SupervisorPolicy:
    return SupervisorPolicy(strategy, intensity, period, backoff, backoff_max, jitter)


def make(
    children: dict[str, Child], pol: SupervisorPolicy | None = None, **restart: Restart
) -> tuple[Supervisor, Recorder]:
    rec = Recorder()
    specs = [
        ChildSpec(id=cid, start=c, restart=restart.get(cid, Restart.permanent), shutdown=5.0)
        for cid, c in children.items()
    ]
    return Supervisor(specs, pol or policy(), on_event=rec, rng=random.Random(0)), rec


def states(sup: Supervisor) -> dict[str, tuple[ChildState, int]]:
    return {c.id: (c.state, c.restarts) for c in sup.statistics().children}


# -- start and ordered shutdown -----------------------------------------------------------------


async def test_children_start_in_order_each_ready_before_the_next(autojump_clock):
    with trio.fail_after(CAP):
        a, b, c = Child(serve(ready_after=1)), Child(serve(ready_after=2)), Child()
        sup, rec = make({"a": a, "b": b, "c": c})
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            assert trio.current_time() == 3  # run is ready only once every child is
            assert (a.called_at, b.called_at, c.called_at) == ([0], [1], [3])
            assert rec.log() == [("start", "a", 1), ("start", "b", 3), ("start", "c", 3)]
            assert sup.statistics().state == "running"
            sup.request_shutdown()


async def test_ordered_shutdown_stops_children_in_reverse_start_order(autojump_clock):
    with trio.fail_after(CAP):
        a, b, c = Child(serve(cleanup=1)), Child(serve(cleanup=2)), Child(serve(cleanup=4))
        sup, rec = make({"a": a, "b": b, "c": c})
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(5)
            sup.request_shutdown()
        assert trio.current_time() == 12  # one after the other: 5 + 4 + 2 + 1
        assert rec.log()[3:] == [
            ("shutdown", None, 5),
            ("stop", "c", 9),
            ("stop", "b", 11),
            ("stop", "a", 12),
        ]
        assert all(e.error is None for e in rec.events)
        assert (a.cancelled, b.cancelled, c.cancelled) == (0, 0, 0)
        assert sup.statistics().state == "stopped"
        assert {s for s, _ in states(sup).values()} == {ChildState.terminated}


async def test_shutdown_times_brutal_timeout_and_infinity(autojump_clock):
    with trio.fail_after(CAP):
        patient, ignoring, brutal = (
            Child(serve(cleanup=100)),
            Child(deaf()),
            Child(serve(cleanup=1)),
        )
        rec = Recorder()
        sup = Supervisor(
            [
                ChildSpec("patient", patient, shutdown=INFINITY),
                ChildSpec("ignoring", ignoring, shutdown=3),
                ChildSpec("brutal", brutal, shutdown=BRUTAL),
            ],
            policy(),
            on_event=rec,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(1)
            sup.request_shutdown()
        assert rec.log("shutdown", "stop") == [
            ("shutdown", None, 1),
            ("stop", "brutal", 1),  # cancelled at once: its 1 s cleanup never ran
            ("stop", "ignoring", 4),  # cancelled exactly at its shutdown time
            ("stop", "patient", 104),  # waited for, however long
        ]
        errors = {e.child_id: e.error for e in rec.events if e.kind == "stop"}
        assert errors == {
            "brutal": "killed at once (brutal)",
            "ignoring": "killed after 3 s",
            "patient": None,
        }
        assert (brutal.cancelled, ignoring.cancelled, patient.cancelled) == (1, 1, 0)
        assert "crash" not in {e.kind for e in rec.events}


async def test_shutdown_during_backoff_does_not_wait_for_it(autojump_clock):
    with trio.fail_after(CAP):
        a, x = Child(), Child(crash(1))
        sup, rec = make({"a": a, "x": x}, policy(backoff=50))
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(2)
            assert states(sup)["x"] == (ChildState.restarting, 0)
            sup.request_shutdown()
        assert trio.current_time() == 2
        assert rec.log()[2:] == [
            ("crash", "x", 1),
            ("shutdown", None, 2),
            ("stop", "a", 2),
        ]
        assert x.runs == 1
        assert states(sup)["x"] == (ChildState.terminated, 0)


# -- restart types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "crashes", "restarted"),
    [
        (Restart.permanent, False, True),
        (Restart.permanent, True, True),
        (Restart.transient, False, False),
        (Restart.transient, True, True),
        (Restart.temporary, False, False),
        (Restart.temporary, True, False),
    ],
)
async def test_restart_type_by_exit_kind(autojump_clock, restart, crashes, restarted):
    with trio.fail_after(CAP):
        x = Child(crash(1) if crashes else leave(1), serve())
        sup, rec = make({"x": x}, policy(backoff=0.5), x=restart)
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(10)
            down = ("crash" if crashes else "exit", "x", 1)
            if restarted:
                assert rec.log() == [("start", "x", 0), down, ("restart", "x", 1.5)]
                assert x.runs == 2
                assert states(sup) == {"x": (ChildState.running, 1)}
                assert sup.statistics().total_restarts == 1
            else:
                assert rec.log() == [("start", "x", 0), down]
                assert x.runs == 1
                assert states(sup) == {"x": (ChildState.terminated, 0)}
                assert sup.statistics().total_restarts == 0
            sup.request_shutdown()
        assert rec.events[1].error == ("Boom: boom" if crashes else None)


# -- strategies ---------------------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_failed_child(autojump_clock):
    with trio.fail_after(CAP):
        a, b, c = Child(), Child(crash(1), serve()), Child()
        sup, rec = make({"a": a, "b": b, "c": c}, policy(backoff=0.5))
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(10)
            sup.request_shutdown()
        assert rec.log("crash", "stop", "restart") == [
            ("crash", "b", 1),
            ("restart", "b", 1.5),
            ("stop", "c", 10),
            ("stop", "b", 10),
            ("stop", "a", 10),
        ]
        assert (a.runs, b.runs, c.runs) == (1, 2, 1)


async def test_one_for_all_stops_the_others_in_reverse_and_restarts_all(autojump_clock):
    with trio.fail_after(CAP):
        a, b, c = Child(serve(cleanup=0.25)), Child(crash(1), serve()), Child(serve(cleanup=0.25))
        sup, rec = make({"a": a, "b": b, "c": c}, policy(Strategy.one_for_all, backoff=0.5))
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(10)
            assert states(sup) == {k: (ChildState.running, 1) for k in "abc"}
            sup.request_shutdown()
        assert rec.log()[3:8] == [
            ("crash", "b", 1),
            ("stop", "c", 1.25),
            ("stop", "a", 1.5),
            ("restart", "a", 2),  # backoff counted from the end of the stops
            ("restart", "b", 2),
        ]
        assert rec.log()[8] == ("restart", "c", 2)
        assert (a.runs, b.runs, c.runs) == (2, 2, 2)
        assert sup.statistics().total_restarts == 1  # one failure, however many restarts
        assert [e.error for e in rec.events if e.kind == "restart"] == ["Boom: boom"] * 3


async def test_rest_for_one_restarts_the_failed_child_and_those_after_it(autojump_clock):
    with trio.fail_after(CAP):
        a, b, c, d = Child(), Child(crash(1), serve()), Child(), Child()
        sup, rec = make({"a": a, "b": b, "c": c, "d": d}, policy(Strategy.rest_for_one))
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(10)
            sup.request_shutdown()
        assert rec.log()[4:10] == [
            ("crash", "b", 1),
            ("stop", "d", 1),
            ("stop", "c", 1),
            ("restart", "b", 1),
            ("restart", "c", 1),
            ("restart", "d", 1),
        ]
        assert (a.runs, b.runs, c.runs, d.runs) == (1, 2, 2, 2)


async def test_one_for_all_temporary_bystander_is_not_restarted(autojump_clock):
    # OTP: a temporary child stopped for a sibling is gone; a transient child that had ended
    # normally is part of the group again.
    with trio.fail_after(CAP):
        a, b, tmp, tr = Child(), Child(crash(1), serve()), Child(), Child(leave(0.5), serve())
        sup, rec = make(
            {"a": a, "b": b, "tmp": tmp, "tr": tr},
            policy(Strategy.one_for_all),
            tmp=Restart.temporary,
            tr=Restart.transient,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(10)
            assert states(sup) == {
                "a": (ChildState.running, 1),
                "b": (ChildState.running, 1),
                "tmp": (ChildState.terminated, 0),
                "tr": (ChildState.running, 1),
            }
            sup.request_shutdown()
        assert rec.log()[4:11] == [
            ("exit", "tr", 0.5),
            ("crash", "b", 1),
            ("stop", "tmp", 1),
            ("stop", "a", 1),
            ("restart", "a", 1),
            ("restart", "b", 1),
            ("restart", "tr", 1),
        ]
        assert (a.runs, b.runs, tmp.runs, tr.runs) == (2, 2, 1, 2)


# -- restart intensity ----------------------------------------------------------------------


async def test_intensity_exceeded_gives_up_bare_at_the_exact_time_with_backoff(autojump_clock):
    with trio.fail_after(CAP):
        steady, x = Child(serve(cleanup=0.5)), Child(crash(1))
        sup, rec = make(
            {"steady": steady, "x": x},
            policy(intensity=3, period=10, backoff=1, backoff_max=3),
        )
        with pytest.raises(SupervisorGaveUp) as info:
            await sup.run()
        assert type(info.value) is SupervisorGaveUp  # bare, not an ExceptionGroup
        assert isinstance(info.value.__cause__, Boom)
        assert info.value.child_id == "x"
        # backoff 1, 2, then capped at 3: crashes at 1, 3, 6, 10 -> the 4th restart in 10 s
        assert rec.log() == [
            ("start", "steady", 0),
            ("start", "x", 0),
            ("crash", "x", 1),
            ("restart", "x", 2),
            ("crash", "x", 3),
            ("restart", "x", 5),
            ("crash", "x", 6),
            ("restart", "x", 9),
            ("crash", "x", 10),
            ("give_up", "x", 10),
            ("stop", "steady", 10.5),
        ]
        assert trio.current_time() == 10.5  # raised once the children are stopped
        assert steady.cancelled == 0
        assert sup.statistics().state == "stopped"


async def test_restarts_older_than_the_period_do_not_count(autojump_clock):
    # OTP counts restarts strictly within the period: one every 5 s with period 5 is fine.
    with trio.fail_after(CAP):
        x = Child(crash(5))
        sup, rec = make({"x": x}, policy(intensity=1, period=5))
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(22)
            assert rec.log("crash") == [("crash", "x", t) for t in (5, 10, 15, 20)]
            assert sup.statistics().total_restarts == 4
            sup.request_shutdown()
        assert "give_up" not in {e.kind for e in rec.events}


class Away(Exception):
    """Stands for QueueUnavailable / StoreUnavailable: a dependency is away."""


def outage_policy(**kw: Any) -> SupervisorPolicy:
    return SupervisorPolicy(
        Strategy.one_for_one, intensity=3, period=10, backoff_base=1, backoff_max=2,
        jitter=0, outages=(Away,), outage_backoff_max=4, **kw,
    )


async def test_an_outage_is_waited_out_and_never_uses_up_the_intensity(autojump_clock):
    # a child that fails on a dependency away for 100 s (far more than 3 restarts in 10 s):
    # restarted with backoff capped at outage_backoff_max, no give-up, running again after it
    with trio.fail_after(CAP):
        x = Child(*[crash(0, lambda: Away("redis away"))] * 30, serve())
        sup, rec = make({"x": x}, outage_policy())
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(200)
            assert "give_up" not in {e.kind for e in rec.events}
            assert len(rec.log("outage")) == 30 and not rec.log("crash")
            assert states(sup)["x"] == (ChildState.running, 30)
            gaps = [b - a for a, b in zip(x.called_at, x.called_at[1:], strict=False)]
            assert gaps[:3] == [1, 2, 4] and max(gaps) == 4  # doubling, capped
            sup.request_shutdown()


async def test_a_crash_loop_still_gives_up_between_outages(autojump_clock):
    # outages before it do not count; four real crashes within the period still give up,
    # and a group mixing an outage with a real crash is a real crash
    def mixed() -> BaseException:
        return ExceptionGroup("child nursery", [Away("pg away"), Boom("bug")])

    with trio.fail_after(CAP):
        x = Child(*[crash(0, lambda: Away("pg away"))] * 5,
                  crash(0, lambda: ExceptionGroup("n", [Away("a"), Away("b")])),
                  crash(0, mixed), crash(0))
        sup, rec = make({"x": x}, outage_policy())
        with pytest.raises(SupervisorGaveUp) as info:
            await sup.run()
        assert len(rec.log("outage")) == 6
        assert len(rec.log("crash")) == 4
        assert isinstance(info.value.__cause__, Boom)


async def test_intensity_is_counted_per_supervisor_not_per_child(autojump_clock):
    # a crashes at 2, 4, 6, ...; b at 3, 5, 7, ...: neither alone exceeds 3 in 10 s before
    # t=8, together they do at t=5.
    with trio.fail_after(CAP):
        a, b = Child(crash(2)), Child(crash(3), crash(2))
        sup, rec = make({"a": a, "b": b}, policy(intensity=3, period=10))
        with pytest.raises(SupervisorGaveUp) as info:
            await sup.run()
        assert trio.current_time() == 5
        assert info.value.child_id == "b"
        assert rec.log("crash", "give_up") == [
            ("crash", "a", 2),
            ("crash", "b", 3),
            ("crash", "a", 4),
            ("crash", "b", 5),
            ("give_up", "b", 5),
        ]


async def test_permanent_child_exiting_normally_in_a_loop_escalates(autojump_clock):
    with trio.fail_after(CAP):
        x = Child(leave(0))
        sup, rec = make({"x": x}, policy(intensity=2))
        with pytest.raises(SupervisorGaveUp) as info:
            await sup.run()
        assert info.value.__cause__ is None
        assert [k for k, _, _ in rec.log()] == [
            "start",
            "exit",
            "restart",
            "exit",
            "restart",
            "exit",
            "give_up",
        ]
        assert x.runs == 3


async def test_backoff_jitter_comes_from_the_seeded_rng(autojump_clock):
    with trio.fail_after(CAP):
        x = Child(crash(1), serve())
        rec = Recorder()
        sup = Supervisor(
            [ChildSpec("x", x)],
            policy(backoff=2, jitter=0.5),
            on_event=rec,
            rng=random.Random(7),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(10)
            sup.request_shutdown()
        delay = 2 * (1 - 0.5 * random.Random(7).random())
        assert 1 <= delay < 2
        assert rec.log("restart") == [("restart", "x", pytest.approx(1 + delay, abs=1e-9))]


# -- what is (not) a crash ------------------------------------------------------------------


async def test_exception_group_from_a_childs_own_nursery_is_one_crash(autojump_clock):
    async def two_failures(stop: trio.Event, task_status: Any) -> None:
        async def fail() -> None:
            await trio.sleep(1)
            raise Boom("inner")

        async def fail_on_cancel() -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                raise Boom("cleanup") from None

        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
            nursery.start_soon(fail_on_cancel)

    with trio.fail_after(CAP):
        x = Child(two_failures, serve())
        sup, rec = make({"x": x}, policy(intensity=1))  # a second count would give up
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(5)
            sup.request_shutdown()
        assert rec.log()[:3] == [("start", "x", 0), ("crash", "x", 1), ("restart", "x", 1)]
        crash_event = rec.events[1]
        assert isinstance(crash_event.exception, ExceptionGroup)
        assert len(crash_event.exception.exceptions) == 2
        assert sup.statistics().total_restarts == 1


async def test_cancellation_from_outside_is_not_a_crash(autojump_clock):
    with trio.fail_after(CAP):
        a, b = Child(), Child()
        sup, rec = make({"a": a, "b": b})
        with trio.move_on_after(2) as scope:
            await sup.run()
        assert scope.cancelled_caught
        assert trio.current_time() == 2
        assert rec.log() == [("start", "a", 0), ("start", "b", 0)]  # no crash, no restart
        assert (a.runs, b.runs) == (1, 1)
        assert (a.cancelled, b.cancelled) == (1, 1)


async def test_keyboard_interrupt_propagates_and_is_not_a_crash(autojump_clock):
    with trio.fail_after(CAP):
        x = Child(crash(1, KeyboardInterrupt), serve())
        sup, rec = make({"x": x})
        with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
            await sup.run()
        assert rec.log() == [("start", "x", 0)]
        assert x.runs == 1


async def test_a_child_stopped_by_the_supervisor_is_never_a_crash(autojump_clock):
    async def fails_when_stopped(stop: trio.Event, task_status: Any) -> None:
        task_status.started()
        await stop.wait()
        raise RuntimeError("cleanup failed")

    with trio.fail_after(CAP):
        a, b = Child(fails_when_stopped, serve()), Child(crash(1), serve())
        sup, rec = make({"a": a, "b": b}, policy(Strategy.one_for_all, intensity=1))
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(5)
            sup.request_shutdown()
        assert rec.log()[2:6] == [
            ("crash", "b", 1),
            ("stop", "a", 1),
            ("restart", "a", 1),
            ("restart", "b", 1),
        ]
        assert rec.events[3].error == "RuntimeError: cleanup failed"
        assert sup.statistics().total_restarts == 1


async def test_simultaneous_crashes_under_one_for_all_count_once(autojump_clock):
    # The second crash report arrives for a child the restart already stopped: OTP drops it.
    with trio.fail_after(CAP):
        a, b = Child(crash(1), serve()), Child(crash(1), serve())
        sup, rec = make({"a": a, "b": b}, policy(Strategy.one_for_all, intensity=1))
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(5)
            sup.request_shutdown()
        first, second = rec.events[2:4]
        assert (first.kind, first.time, second.kind, second.time) == ("crash", 1, "stop", 1)
        assert {first.child_id, second.child_id} == {"a", "b"}
        assert second.error == "Boom: boom"
        assert rec.log()[4:6] == [("restart", "a", 1), ("restart", "b", 1)]
        assert sup.statistics().total_restarts == 1


# -- start failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "cause"),
    [(fail_start(2), Boom), (never_ready(2), RuntimeError)],
    ids=["raises", "returns-before-started"],
)
async def test_initial_start_failure_fails_fast_and_stops_earlier_children(
    autojump_clock, behaviour, cause
):
    with trio.fail_after(CAP):
        a, b, c = Child(serve(cleanup=0.5)), Child(behaviour), Child()
        sup, rec = make({"a": a, "b": b, "c": c})
        async with trio.open_nursery() as nursery:
            with pytest.raises(SupervisorStartFailed) as info:
                await nursery.start(sup.run)  # bare, straight out of nursery.start
        assert info.value.child_id == "b"
        assert isinstance(info.value.__cause__, cause)
        assert rec.log() == [
            ("start", "a", 0),
            ("start_failed", "b", 2),
            ("give_up", "b", 2),
            ("stop", "a", 2.5),
        ]
        assert c.runs == 0
        assert a.cancelled == 0


async def test_start_failure_during_a_restart_counts_as_a_crash(autojump_clock):
    with trio.fail_after(CAP):
        x = Child(crash(1), fail_start())
        sup, rec = make({"x": x}, policy(intensity=2, backoff=1))
        with pytest.raises(SupervisorGaveUp) as info:
            await sup.run()
        assert isinstance(info.value.__cause__, Boom)
        assert rec.log() == [
            ("start", "x", 0),
            ("crash", "x", 1),
            ("crash", "x", 2),  # restart attempt after 1 s fails
            ("crash", "x", 4),  # next one after 2 s too: a third restart would exceed 2
            ("give_up", "x", 4),
        ]
        assert rec.events[2].error == "Boom: cannot start"
        assert x.runs == 3


# -- nesting and signals --------------------------------------------------------------------


async def test_nested_supervisor_giving_up_is_one_crash_in_its_parent(autojump_clock):
    with trio.fail_after(CAP):
        inner_rec, outer_rec = Recorder(), Recorder()
        worker = Child(crash(1), crash(1), serve())
        inner = Supervisor(
            [ChildSpec("worker", worker)], policy(intensity=1), name="inner", on_event=inner_rec
        )
        db = Child(serve(cleanup=1))
        outer = Supervisor(
            [ChildSpec("db", db), supervisor_child("inner", inner)],
            policy(intensity=5),
            name="outer",
            on_event=outer_rec,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(outer.run)
            await trio.sleep(2.5)
            outer.request_shutdown()
        assert trio.current_time() == 3.5
        assert outer_rec.log() == [
            ("start", "db", 0),
            ("start", "inner", 0),
            ("crash", "inner", 2),  # inner: crash 1 -> restart, crash 2 -> more than 1
            ("restart", "inner", 2),  # a fresh inner run, with a fresh restart history
            ("shutdown", None, 2.5),
            ("stop", "inner", 2.5),
            ("stop", "db", 3.5),
        ]
        escalation = outer_rec.events[2].exception
        assert type(escalation) is SupervisorGaveUp
        assert escalation.supervisor == "inner"
        assert outer.statistics().total_restarts == 1
        assert inner_rec.log()[-3:] == [
            ("start", "worker", 2),
            ("shutdown", None, 2.5),  # the parent's stop became an ordered shutdown
            ("stop", "worker", 2.5),
        ]
        assert worker.runs == 3
        assert worker.cancelled == 0


async def kill_later(*steps: tuple[float, int]) -> None:
    for delay, signum in steps:
        await trio.sleep(delay)
        os.kill(os.getpid(), signum)


async def test_first_signal_shuts_down_in_order(autojump_clock):
    with trio.fail_after(CAP):
        a, b = Child(serve(cleanup=1)), Child(serve(cleanup=2))
        sup, rec = make({"a": a, "b": b})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_later, (1, signal.SIGUSR1))
            await run_with_signals(sup, signals=(signal.SIGUSR1, signal.SIGUSR2))
        assert trio.current_time() == 4
        assert rec.log()[2:] == [("shutdown", None, 1), ("stop", "b", 3), ("stop", "a", 4)]
        assert (a.cancelled, b.cancelled) == (0, 0)


async def test_second_signal_cancels_everything(autojump_clock):
    with trio.fail_after(CAP):
        a, b = Child(serve(cleanup=10)), Child(serve(cleanup=10))
        sup, rec = make({"a": a, "b": b})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_later, (1, signal.SIGUSR1), (2, signal.SIGUSR2))
            with pytest.raises(ShutdownForced):
                await run_with_signals(sup, signals=(signal.SIGUSR1, signal.SIGUSR2))
        assert trio.current_time() == 3
        assert rec.log()[2:] == [("shutdown", None, 1)]
        assert (a.cancelled, b.cancelled) == (1, 1)


async def test_give_up_under_signals_is_raised_bare(autojump_clock):
    with trio.fail_after(CAP):
        sup, rec = make({"x": Child(crash(1))}, policy(intensity=0))
        with pytest.raises(SupervisorGaveUp) as info:
            await run_with_signals(sup, signals=(signal.SIGUSR1,))
        assert type(info.value) is SupervisorGaveUp
        assert trio.current_time() == 1


# -- data ----------------------------------------------------------------------------------


def test_specs_and_policies_are_validated():
    with pytest.raises(ValueError):
        ChildSpec("x", Child(), shutdown=-1)
    with pytest.raises(ValueError):
        ChildSpec("", Child())
    with pytest.raises(ValueError):
        SupervisorPolicy(jitter=1.5)
    with pytest.raises(ValueError):
        SupervisorPolicy(period=0)
    with pytest.raises(ValueError):
        Supervisor([ChildSpec("x", Child()), ChildSpec("x", Child())])
