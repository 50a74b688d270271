"""An Erlang/OTP-style supervisor on trio nurseries.

A :class:`Supervisor` owns one nursery and starts its children (:class:`ChildSpec`, data) in
order, each through ``nursery.start`` so a child is *ready* before the next one starts. A child is
``async def child(stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED)``: it calls
``task_status.started()`` once its resources are live and returns soon after ``stop`` is set.

Semantics follow OTP's ``supervisor`` (docs/ARCHITECTURE.md, "The supervision tree"):

- restart ``permanent`` (always), ``transient`` (only after a crash), ``temporary`` (never, not
  even when a sibling's failure stopped it); strategies ``one_for_one``, ``one_for_all`` and
  ``rest_for_one``; as in OTP a strategy restarts every non-temporary child of its group.
- Restart intensity is counted per supervisor on ``trio.current_time()``: one restart per failure
  however many siblings the strategy restarts; more than ``intensity`` within ``period`` seconds
  and the supervisor stops its children in reverse start order and raises
  :class:`SupervisorGaveUp` *outside* its nursery (a bare exception, never an ExceptionGroup).
- Between a failure (and the stops its strategy needs) and the restart waits
  ``min(backoff_max, backoff_base * 2**(n-1)) * (1 - jitter * U[0, 1))``, n = that child's restarts
  within ``period``; the supervisor keeps handling other exits and shutdown requests meanwhile.
- A crash is an ``Exception`` out of a child (an ExceptionGroup of Exceptions is one crash);
  ``Cancelled``, ``KeyboardInterrupt`` and groups holding them propagate and never count.
- An *outage* is a crash whose errors are all instances of ``policy.outages`` (a dependency
  is away, e.g. Redis or Postgres): the child is restarted with the same backoff (up to
  ``outage_backoff_max``), but the restart does not count toward the intensity, so a long
  outage is waited out instead of ending the tree, while a crash loop of anything else still
  gives up. Restarting (rather than retrying in place) gives the child fresh clients.
- Stopping a child: set its ``stop`` event, wait up to ``shutdown`` seconds, then cancel its own
  cancel scope (``shutdown=0``/:data:`BRUTAL` cancels at once, :data:`INFINITY` waits forever).
  A child stopped by the supervisor never counts as a crash; a late crash report of a child the
  supervisor is already stopping is dropped (OTP flushes the EXIT signal the same way).
- Initial start fails fast (OTP ``start_link``): a child that raises before ``started()`` stops the
  children already started, in reverse order, and :class:`SupervisorStartFailed` is raised. During
  a restart the same failure counts as a crash.
- ``run(stop)`` has the child signature, so a supervisor nests as a child of another
  (:func:`supervisor_child`); giving up is then one crash of that child in the parent.

Every start, restart, crash, exit, stop, give-up and shutdown is a :class:`SupervisorEvent` passed
to ``on_event`` (default: :func:`log_event`, logger ``chorus.supervisor``; it must not raise).
:func:`run_with_signals` maps SIGTERM/SIGINT to an ordered shutdown, a second one to a cancel.

Limits (trio has no untrappable kill): a child that shields itself from cancellation can hold up
its stop, and starting is synchronous as in OTP, so a child that never becomes ready holds up the
supervisor (give start-up its own ``fail_after``).
"""

from __future__ import annotations

import enum
import logging
import math
import random
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import trio

__all__ = [
    "BRUTAL",
    "INFINITY",
    "ChildSpec",
    "ChildStart",
    "ChildState",
    "ChildStatistics",
    "Restart",
    "ShutdownForced",
    "Strategy",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorGaveUp",
    "SupervisorPolicy",
    "SupervisorStartFailed",
    "SupervisorStatistics",
    "log_event",
    "run_with_signals",
    "supervisor_child",
]

log = logging.getLogger("chorus.supervisor")

BRUTAL: float = 0.0  #: shutdown: cancel at once
INFINITY: float = math.inf  #: shutdown: wait for the child however long it takes

#: ``async def child(stop: trio.Event, *, task_status=trio.TASK_STATUS_IGNORED) -> None``
ChildStart = Callable[..., Awaitable[None]]
EventKind = Literal[
    "start", "restart", "crash", "outage", "exit", "stop", "start_failed", "give_up",
    "shutdown",
]


class Restart(enum.StrEnum):
    permanent = "permanent"
    transient = "transient"
    temporary = "temporary"


class Strategy(enum.StrEnum):
    one_for_one = "one_for_one"
    one_for_all = "one_for_all"
    rest_for_one = "rest_for_one"


class ChildState(enum.StrEnum):
    pending = "pending"  # not started yet
    running = "running"
    restarting = "restarting"  # waiting out its backoff
    terminated = "terminated"  # exited, stopped, or failed to start; not scheduled


@dataclass(frozen=True, slots=True)
class ChildSpec:
    id: str
    start: ChildStart
    restart: Restart = Restart.permanent
    shutdown: float = 5.0  # seconds; BRUTAL (0) or INFINITY (math.inf)

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a child needs an id")
        if not self.shutdown >= 0:  # also rejects NaN
            raise ValueError(f"child {self.id!r}: shutdown must be >= 0, got {self.shutdown}")


@dataclass(frozen=True, slots=True)
class SupervisorPolicy:
    strategy: Strategy = Strategy.one_for_one
    intensity: int = 3  # more than this many restarts ...
    period: float = 5.0  # ... within this many seconds -> give up
    backoff_base: float = 0.1  # first restart of a child waits this long, then doubling ...
    backoff_max: float = 2.0  # ... up to this
    jitter: float = 0.1  # each wait is shortened by up to this fraction, at random
    #: crashes made only of these errors are outages: restarted, never counted toward intensity
    outages: tuple[type[Exception], ...] = ()
    outage_backoff_max: float = 5.0  # an outage's restarts wait up to this long

    def __post_init__(self) -> None:
        if self.intensity < 0 or not self.period > 0:
            raise ValueError("intensity must be >= 0 and period > 0")
        if not (self.backoff_base >= 0 and self.backoff_max >= 0 and 0 <= self.jitter <= 1):
            raise ValueError("backoff must be >= 0 and jitter within 0..1")


@dataclass(frozen=True, slots=True)
class SupervisorEvent:
    kind: EventKind
    child_id: str | None
    time: float  # trio.current_time()
    error: str | None = None
    supervisor: str = ""
    exception: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ChildStatistics:
    id: str
    state: ChildState
    restarts: int  # incarnations started after the first


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    name: str
    state: str  # idle | starting | running | stopping | stopped
    children: tuple[ChildStatistics, ...]
    total_restarts: int  # restart decisions (outages included)


class SupervisorGaveUp(Exception):
    """The supervisor stopped its children and itself; ``__cause__`` is the last error."""

    def __init__(self, supervisor: str, child_id: str | None, reason: str) -> None:
        where = f" (child {child_id!r})" if child_id else ""
        super().__init__(f"supervisor {supervisor!r} gave up: {reason}{where}")
        self.supervisor = supervisor
        self.child_id = child_id


class SupervisorStartFailed(SupervisorGaveUp):
    """A child failed during the initial start; the children started before it were stopped."""


class ShutdownForced(SupervisorGaveUp):
    """A second signal cancelled everything during an ordered shutdown (run_with_signals)."""


def log_event(event: SupervisorEvent) -> None:
    level = {
        "crash": logging.ERROR,
        "start_failed": logging.ERROR,
        "give_up": logging.ERROR,
        "restart": logging.WARNING,
        "outage": logging.WARNING,
    }.get(event.kind, logging.INFO)
    exc = event.exception if event.kind in ("crash", "start_failed") else None
    log.log(
        level,
        "%s: %s %s%s",
        event.supervisor,
        event.kind,
        event.child_id or "",
        f": {event.error}" if event.error else "",
        exc_info=exc,
    )


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [error]


def _describe(error: BaseException) -> str:
    """The error as people want to read it: a group of one (a crash inside a child's own
    nursery) is described by the error inside it."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"


class _ReadyStatus:
    """The task_status a child sees: notes readiness, then moves the wrapper task over."""

    def __init__(self, outer: trio.TaskStatus[Exception | None]) -> None:
        self._outer = outer
        self.ready = False

    def started(self, value: object = None) -> None:
        if self.ready:
            raise RuntimeError("task_status.started() called twice")
        self.ready = True
        self._outer.started(None)


@dataclass(eq=False, slots=True)
class _Incarnation:
    spec: ChildSpec
    stop: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopping: bool = False  # the supervisor is stopping it: its exit is not a failure
    error: Exception | None = None


@dataclass(eq=False, slots=True)
class _Child:
    spec: ChildSpec
    state: ChildState = ChildState.pending
    incarnation: _Incarnation | None = None
    due: float | None = None  # restart time while restarting
    reason: Exception | None = None  # the failure that scheduled the restart
    recent: list[float] = field(default_factory=list)  # this child's restarts within the period
    restarts: int = 0


class _ShutdownRequest:
    pass


_Message = _Incarnation | _ShutdownRequest  # an incarnation reports its own exit


class Supervisor:
    """Starts, watches and restarts children; see the module docstring."""

    def __init__(
        self,
        children: Iterable[ChildSpec],
        policy: SupervisorPolicy | None = None,
        *,
        name: str = "supervisor",
        on_event: Callable[[SupervisorEvent], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.specs: tuple[ChildSpec, ...] = tuple(children)
        ids = [spec.id for spec in self.specs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate child ids in {ids}")
        self.policy = policy or SupervisorPolicy()
        self.name = name
        self._on_event = on_event or log_event
        self._rng = rng or random.Random()
        self._children = [_Child(spec) for spec in self.specs]
        self._state = "idle"
        self._restart_times: list[float] = []
        self._total_restarts = 0
        self._nursery: trio.Nursery | None = None
        self._send: trio.MemorySendChannel[_Message] | None = None

    # -- public ------------------------------------------------------------------------------

    async def run(
        self,
        stop: trio.Event | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the children, supervise them until shutdown; ready once all have started.

        Returns after an ordered shutdown (``request_shutdown()`` or ``stop`` set); raises
        :class:`SupervisorGaveUp` (or :class:`SupervisorStartFailed` before ``started()``).
        """
        if self._nursery is not None:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._children = [_Child(spec) for spec in self.specs]
        self._restart_times, self._total_restarts, self._state = [], 0, "starting"
        # Unbounded: a dying child reports with send_nowait (no await on its way out); at most a
        # few messages per child, and the loop drains them.
        send, receive = trio.open_memory_channel[_Message](math.inf)
        failure: SupervisorGaveUp | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery, self._send = nursery, send
                if stop is not None:
                    nursery.start_soon(self._relay_stop, stop)
                failure = await self._start_all()
                if failure is None:
                    self._state = "running"
                    task_status.started()
                    failure = await self._supervise(receive)
                nursery.cancel_scope.cancel(reason="supervisor finished")  # only the relay is left
        finally:
            self._nursery = self._send = None
            self._state = "stopped"
            for child in self._children:  # also after a cancellation from outside
                if child.state in (ChildState.running, ChildState.restarting):
                    child.state, child.due = ChildState.terminated, None
            send.close()
            receive.close()
        if failure is not None:
            raise failure  # outside the nursery: a bare exception

    def request_shutdown(self) -> None:
        """Ask for an ordered shutdown (reverse start order), from any trio task.

        Sync and idempotent; during the initial start it takes effect once all have started;
        ignored when the supervisor is not running.
        """
        if self._send is not None:
            self._send.send_nowait(_ShutdownRequest())

    def statistics(self) -> SupervisorStatistics:
        children = tuple(ChildStatistics(c.spec.id, c.state, c.restarts) for c in self._children)
        return SupervisorStatistics(self.name, self._state, children, self._total_restarts)

    # -- starting ----------------------------------------------------------------------------

    async def _relay_stop(self, stop: trio.Event) -> None:
        await stop.wait()
        self.request_shutdown()

    async def _start_all(self) -> SupervisorStartFailed | None:
        for child in self._children:
            error = await self._start(child)
            if error is not None:
                self._emit("start_failed", child.spec.id, error)
                self._emit("give_up", child.spec.id, error)
                await self._stop_all()
                failure = SupervisorStartFailed(
                    self.name, child.spec.id, f"child failed to start: {_describe(error)}"
                )
                failure.__cause__ = error
                return failure
            self._emit("start", child.spec.id)
        return None

    async def _start(self, child: _Child) -> Exception | None:
        assert self._nursery is not None and self._send is not None
        child.incarnation = _Incarnation(child.spec)
        error = await self._nursery.start(self._child_task, child.incarnation, self._send)
        child.state = ChildState.terminated if error is not None else ChildState.running
        return error

    @staticmethod
    async def _child_task(
        inc: _Incarnation,
        send: trio.MemorySendChannel[_Message],
        *,
        task_status: trio.TaskStatus[Exception | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        ready = _ReadyStatus(task_status)
        try:
            with inc.scope:
                await inc.spec.start(inc.stop, task_status=ready)
        except Exception as exc:  # only Exceptions: Cancelled & co. propagate
            inc.error = exc
        finally:
            inc.done.set()
        if ready.ready:
            send.send_nowait(inc)
        else:  # a start failure is the value of nursery.start, not a crash report
            task_status.started(
                inc.error
                or RuntimeError(
                    f"child {inc.spec.id!r} returned before calling task_status.started()"
                )
            )

    # -- supervising -------------------------------------------------------------------------

    async def _supervise(
        self, receive: trio.MemoryReceiveChannel[_Message]
    ) -> SupervisorGaveUp | None:
        while True:
            failure = await self._restart_due()
            if failure is not None:
                return failure
            due = min((c.due for c in self._children if c.due is not None), default=math.inf)
            message: _Message | None = None
            with trio.move_on_at(due):
                message = await receive.receive()
            if isinstance(message, _ShutdownRequest):
                self._emit("shutdown", None)
                await self._stop_all()
                return None
            if isinstance(message, _Incarnation) and not message.stopping:
                # (an incarnation the supervisor is stopping is not a failure: drop its report)
                child = next(c for c in self._children if c.incarnation is message)
                failure = await self._child_down(child, message.error)
                if failure is not None:
                    return failure

    async def _restart_due(self) -> SupervisorGaveUp | None:
        for child in self._children:  # start order
            if child.due is None or child.due > trio.current_time():
                continue
            child.due = None
            error = await self._start(child)
            if error is not None:  # a failed restart is a crash; its handling re-plans the pass
                return await self._child_down(child, error)
            child.restarts += 1
            self._emit("restart", child.spec.id, child.reason)
        return None

    async def _child_down(self, child: _Child, error: Exception | None) -> SupervisorGaveUp | None:
        spec = child.spec
        child.state = ChildState.terminated
        outage = self._is_outage(error)
        self._emit("exit" if error is None else "outage" if outage else "crash", spec.id, error)
        if spec.restart is Restart.temporary or (spec.restart is Restart.transient and not error):
            return None
        now = trio.current_time()
        horizon = now - self.policy.period
        if not outage:  # a dependency away is waited out: it never uses up the intensity
            self._restart_times = [t for t in self._restart_times if t > horizon] + [now]
        if len(self._restart_times) > self.policy.intensity:
            self._emit("give_up", spec.id, error)
            await self._stop_all()
            failure = SupervisorGaveUp(
                self.name,
                spec.id,
                f"more than {self.policy.intensity} restarts within {self.policy.period} s",
            )
            failure.__cause__ = error
            return failure
        self._total_restarts += 1
        child.recent = [t for t in child.recent if t > horizon] + [now]
        delay = self._backoff(len(child.recent), outage)
        group = self._group(child)
        for other in reversed(group):
            if other is not child:
                await self._stop(other)
        due = trio.current_time() + delay
        for member in group:
            if member.spec.restart is not Restart.temporary:
                member.state, member.due, member.reason = ChildState.restarting, due, error
        return None

    def _group(self, child: _Child) -> Sequence[_Child]:
        match self.policy.strategy:
            case Strategy.one_for_one:
                return [child]
            case Strategy.one_for_all:
                return self._children
            case Strategy.rest_for_one:
                return self._children[self._children.index(child) :]

    def _is_outage(self, error: Exception | None) -> bool:
        outages = self.policy.outages
        return bool(error is not None and outages) and all(
            isinstance(leaf, outages) for leaf in _leaves(error)  # type: ignore[arg-type]
        )

    def _backoff(self, recent_restarts: int, outage: bool = False) -> float:
        policy = self.policy
        most = max(policy.backoff_max, policy.outage_backoff_max) if outage else policy.backoff_max
        delay = min(most, policy.backoff_base * 2.0 ** min(recent_restarts - 1, 64))
        return delay * (1.0 - policy.jitter * self._rng.random())

    # -- stopping ----------------------------------------------------------------------------

    async def _stop_all(self) -> None:
        self._state = "stopping"
        for child in reversed(self._children):
            await self._stop(child)

    async def _stop(self, child: _Child) -> None:
        """Stop one child within its shutdown time; leaves it terminated and unscheduled."""
        inc, was_running = child.incarnation, child.state is ChildState.running
        child.state, child.due = ChildState.terminated, None
        if inc is None or not was_running:
            return
        inc.stopping = True
        killed = False
        if not inc.done.is_set():
            if child.spec.shutdown > 0:
                inc.stop.set()
                with trio.move_on_after(child.spec.shutdown):
                    await inc.done.wait()
            if not inc.done.is_set():
                killed = True
                inc.scope.cancel(reason=f"supervisor {self.name!r} stopping {child.spec.id!r}")
                await inc.done.wait()
        timeout = (
            "at once (brutal)" if child.spec.shutdown == 0 else f"after {child.spec.shutdown} s"
        )
        note = f"killed {timeout}" if killed else None
        self._emit("stop", child.spec.id, inc.error or note)

    def _emit(
        self, kind: EventKind, child_id: str | None, error: BaseException | str | None = None
    ) -> None:
        text = _describe(error) if isinstance(error, BaseException) else error
        exc = error if isinstance(error, BaseException) else None
        self._on_event(SupervisorEvent(kind, child_id, trio.current_time(), text, self.name, exc))


def supervisor_child(
    child_id: str,
    supervisor: Supervisor,
    *,
    restart: Restart = Restart.permanent,
    shutdown: float = INFINITY,
) -> ChildSpec:
    """A child spec running ``supervisor`` under another one (OTP's default shutdown: infinity)."""
    return ChildSpec(id=child_id, start=supervisor.run, restart=restart, shutdown=shutdown)


async def run_with_signals(
    supervisor: Supervisor,
    *,
    signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``supervisor``; the first signal asks for an ordered shutdown, a second one cancels
    everything and raises :class:`ShutdownForced`. Main thread only (trio.open_signal_receiver).
    """
    seen: list[int] = []
    failure: SupervisorGaveUp | None = None
    finished = False
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in received:
                    seen.append(signum)
                    if len(seen) == 1:
                        supervisor.request_shutdown()
                    else:
                        nursery.cancel_scope.cancel(reason=f"second signal ({signum})")
                        return

            nursery.start_soon(watch)
            try:
                await supervisor.run(task_status=task_status)
                finished = True
            except SupervisorGaveUp as exc:
                failure = exc
            nursery.cancel_scope.cancel(reason="supervisor finished")
    if failure is not None:
        raise failure
    if not finished:  # our own cancel: a second signal
        raise ShutdownForced(supervisor.name, None, f"forced by a second signal ({seen[-1]})")
