"""Multi-process mode: every Chorus process on a host writes its metrics into one directory
(``CHORUS_METRICS_DIR``, default ``DATA_DIR/metrics``) and the process that serves ``/metrics``
adds them up (prometheus-client's ``MultiProcessCollector``).

``prepare`` runs in ``run.py`` before anything is counted (the library chooses its mode from
``PROMETHEUS_MULTIPROC_DIR``; every instrument here has labels, so no value exists before its
first count). It removes the files of
processes that are gone: a restarted process counts from zero, as a single process would, and
``rate()`` copes with the reset.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(directory: Path) -> Path:
    """Use ``directory`` for this process' metrics (created if needed), after removing the
    files of dead processes. Call it before anything is counted: raises ``RuntimeError`` once
    a value exists in memory (it would be left out of the sums)."""
    directory.mkdir(parents=True, exist_ok=True)
    remove_dead(directory)
    os.environ[ENV] = str(directory)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported already: choose the mode again (values are made lazily)
        instruments = sys.modules.get("protocols.metrics.instruments")
        if instruments is not None and instruments._children:  # type: ignore[attr-defined]
            raise RuntimeError("metrics were counted before their directory was set")
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return directory


def remove_dead(directory: Path) -> list[Path]:
    """Remove the metric files (``<kind>_<pid>.db``) of processes that no longer run."""
    removed = []
    for path in directory.glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def multiprocess() -> bool:
    return ENV in os.environ
