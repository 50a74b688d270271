"""Coalescer: concurrent calls go to the batch function together; alone, a call goes at once;
a leader cancelled mid-batch does not take the others' results with it."""

from __future__ import annotations

import outcome
import trio
import trio.testing

from protocols.postgres.coalesce import Coalescer


async def test_calls_made_while_a_batch_is_on_its_way_go_together_in_the_next():
    batches: list[list[int]] = []
    gate = trio.Event()

    async def double(args: list[int]) -> list[outcome.Outcome[int]]:
        batches.append(list(args))
        if len(batches) == 1:
            await gate.wait()  # the first batch is slow: the others pile up meanwhile
        return [outcome.Value(2 * a) for a in args]

    call = Coalescer(double)
    results: dict[int, int] = {}

    async def one(n: int) -> None:
        results[n] = await call(n)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 0)
            await trio.testing.wait_all_tasks_blocked()
            for n in range(1, 6):
                nursery.start_soon(one, n)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
    assert [sorted(b) for b in batches] == [[0], [1, 2, 3, 4, 5]]
    assert results == {n: 2 * n for n in range(6)}


async def test_an_error_of_the_batch_reaches_every_call_and_a_cancelled_leader_finishes_it():
    gate = trio.Event()

    async def slow(args: list[str]) -> list[outcome.Outcome[str]]:
        await gate.wait()
        if "boom" in args:
            raise ValueError("batch failed")
        return [outcome.Value(a.upper()) for a in args]

    call = Coalescer(slow)
    got: dict[str, object] = {}

    async def one(arg: str, scope: trio.CancelScope | None = None) -> None:
        try:
            with scope or trio.CancelScope():
                got[arg] = await call(arg)
        except ValueError as exc:
            got[arg] = exc

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            leader = trio.CancelScope()
            nursery.start_soon(one, "a", leader)
            await trio.testing.wait_all_tasks_blocked()
            leader.cancel()  # the leader's caller goes away while its batch is running
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(one, "b")
            nursery.start_soon(one, "boom")
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
    assert "a" not in got  # cancelled: its caller gets Cancelled, not a result ...
    assert got["b"] == got["boom"]  # ... the next batch ran, and its error reached both
    assert isinstance(got["b"], ValueError)
