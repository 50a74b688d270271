"""The persisted consumer name is claimed per live process: two processes sharing a data dir
never share a name (each takes back its name's entries and provider slots at start)."""

from __future__ import annotations

import subprocess
import sys

from protocols.settings import Settings
from tests.support.procs import ROOT

CHILD = "import sys; from protocols.settings import Settings; " \
        "print(Settings(data_dir=sys.argv[1]).consumer_name())"


def _in_child(data_dir: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, data_dir], cwd=ROOT, capture_output=True, text=True,
        timeout=30, check=True,
    )
    return out.stdout.strip()


def test_a_configured_name_wins(tmp_path):
    assert Settings(data_dir=str(tmp_path), consumer="worker-a").consumer_name() == "worker-a"
    assert not list(tmp_path.iterdir())


def test_one_process_keeps_one_name_and_a_restart_gets_it_back(tmp_path):
    first = _in_child(str(tmp_path))  # the child exits: its claim goes with it
    assert _in_child(str(tmp_path)) == first
    mine = Settings(data_dir=str(tmp_path)).consumer_name()
    assert mine == first and Settings(data_dir=str(tmp_path)).consumer_name() == mine
    # while this process holds it, another process gets a name of its own, stable too
    other = _in_child(str(tmp_path))
    assert other != mine and _in_child(str(tmp_path)) == other
    assert (tmp_path / "consumer-name.1").read_text().strip() == other
