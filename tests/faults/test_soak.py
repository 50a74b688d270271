"""``run.py soak`` in small (issue 13, item 7): the command's own function against a fresh
Chorus, with a real ``run.py serve`` child that owns the embedded Valkey and Postgres.

60 jobs (half of them repeats, one idempotency key each) against the noisy stand-in ElevenLabs
(5 % 429, 3 % 500), two SIGKILLs of serve, one of the embedded Valkey, one of the embedded
Postgres, bounded to 80 s: nothing lost, stuck, dead or charged twice, one job per idempotency
key, at most one duplicate provider call per kill, and ready again after every kill (serve
starting the dead servers again by itself). Real processes and the real clock, as every test in
``tests/faults/`` that kills processes.
"""

from __future__ import annotations

from pathlib import Path

import trio

from actors.soak.command import SoakOptions, soak
from actors.soak.figures import render
from actors.soak.serve import postmaster, valkey_server

ROOT = Path(__file__).resolve().parents[2]


async def test_a_small_soak_loses_nothing_and_pays_at_most_once_per_kill(tmp_path):
    opts = SoakOptions(jobs=60, kills=2, valkey_kills=1, postgres_kills=1, seconds=80.0)
    with trio.fail_after(150):  # the soak's own limit, serve's stop and the count
        fig = await soak(opts, ROOT / "run.py", tmp_path)
    print(render(fig))
    assert fig.drained and fig.notes == [], fig.notes
    assert (fig.accepted, fig.refused, fig.unanswered) == (60, 0, 0)
    assert (fig.lost, fig.stuck, fig.dead, fig.failed) == (0, 0, 0, 0)
    assert fig.succeeded == 60
    assert fig.double_charges == 0
    assert fig.jobs_per_key_client == fig.jobs_per_key_db == 1
    assert fig.distinct_texts == 30
    assert fig.duplicate_calls <= fig.duplicate_bound == 4
    assert [r["kind"] for r in fig.recoveries] == ["valkey", "serve", "postgres", "serve"]
    assert all(r["ready_s"] is not None for r in fig.recoveries), fig.recoveries
    assert sum(fig.injected.values()) > 0  # the provider did answer 429 / 500
    assert fig.failures() == []
    # the soak's servers are gone with it, whoever started them last
    assert valkey_server(tmp_path) is None and postmaster(tmp_path) is None
