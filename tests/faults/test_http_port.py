"""A busy HTTP port, seen by a real ``run.py serve``: it exits non-zero at once with a message
naming the address and saying it is in use, not as a Redis failure and not after a restart loop.
"""

from __future__ import annotations

import socket
import time

import trio

from tests.support.procs import chorus_process, unique_prefix


async def test_busy_http_port_is_reported_as_a_busy_port(redis_url, database_url, store,
                                                         tmp_path):
    with socket.socket() as holder:  # the port is taken for the whole test
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with trio.fail_after(60):
            async with chorus_process(
                data_dir=tmp_path, redis_url=redis_url, database_url=database_url,
                consumer="worker-a", prefix=unique_prefix(), env={"CHORUS_PORT": str(port)},
                ready=None,
            ) as proc:
                started = time.monotonic()
                rc = await proc.wait_exit(45)
                took = time.monotonic() - started
                line = await proc.wait_for_line("giving up", 5)
    print(f"exit {rc} after {took:.1f} s: {line}")
    assert rc != 0, proc.output
    assert f"127.0.0.1:{port}" in line and "in use" in line, proc.output
    assert "QueueUnavailable" not in proc.output and "Redis connection" not in proc.output
    assert proc.find("listening on") is None
    assert not [x for x in proc.lines if "restart http" in x], proc.output  # no restart loop
