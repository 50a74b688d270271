"""The progress of ``run.py story`` on stderr: lines done / failed / total and an ETA.

On a terminal one line is redrawn in place (a bar); otherwise (a log file, a CI job) a plain
line is printed each time the figures change, so the output stays readable. Drawn by hand: the
project has no progress-bar dependency, and a bar of ``#`` and ``x`` needs nothing one adds.

The figures come from two sources: snapshots (the book's counts, from a ``storybook.progress``
or final event or from ``GET /v1/storybooks/{id}``) and, between snapshots, one
``storybook.line.*`` event per line that ended (progress events are throttled). The ETA is the
rate of lines ended since this client started watching, applied to the lines left.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TextIO

import trio

WIDTH = 30
ENDED = ("succeeded", "failed", "cancelled")


def format_eta(seconds: float | None) -> str:
    """``35s``, ``4m05s``, ``2h03m``; ``--`` while there is no rate yet."""
    if seconds is None:
        return "--"
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def bar(done: int, failed: int, total: int, width: int = WIDTH) -> str:
    """``[####x.....]``: succeeded lines as ``#``, failed (and cancelled) ones as ``x``."""
    if total <= 0:
        return "[" + "." * width + "]"
    ok = min(width, done * width // total)
    bad = min(width - ok, (done + failed) * width // total - ok)
    return "[" + "#" * ok + "x" * bad + "." * (width - ok - bad) + "]"


class Progress:
    """One book's figures, shown on ``stream`` (stderr by default) as they change."""

    def __init__(
        self,
        book_id: str,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.book_id = book_id
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._clock = clock
        self.status = "queued"
        self.total = 0
        self.counts: dict[str, int] = {}
        self._since_snapshot: set[str] = set()  # lines counted from their own events
        self._start: tuple[float, int] | None = None  # (when, lines ended) at the first figures
        self._shown: tuple[object, ...] | None = None
        self._drawn = ""

    @property
    def done(self) -> int:
        return self.counts.get("succeeded", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def cancelled(self) -> int:
        return self.counts.get("cancelled", 0)

    @property
    def ended(self) -> int:
        return min(self.total, self.done + self.failed + self.cancelled)

    def snapshot(self, *, status: str | None, total: int, counts: Mapping[str, int]) -> None:
        """The book's figures as the server counts them."""
        if status:
            self.status = status
        self.total = int(total)
        self.counts = {str(k): int(v) for k, v in counts.items()}
        self._since_snapshot.clear()
        self._show()

    def line_ended(self, line_id: str | None, status: str | None) -> None:
        """A ``storybook.line.succeeded | failed`` event (counted once until the next snapshot)."""
        if not line_id or status not in ENDED or line_id in self._since_snapshot:
            return
        self._since_snapshot.add(line_id)
        self.counts[status] = self.counts.get(status, 0) + 1
        if self.status == "queued":
            self.status = "running"
        self._show()

    def eta(self) -> float | None:
        """Seconds left at the rate seen so far (None: nothing ended yet, or the book has)."""
        if self._start is None or self.status in ("succeeded", "partial", "failed", "cancelled"):
            return None
        since, ended_then = self._start
        gained, elapsed = self.ended - ended_then, self._clock() - since
        if gained <= 0 or elapsed <= 0:
            return None
        return (self.total - self.ended) / (gained / elapsed)

    def text(self) -> str:
        figures = f"{self.done}/{self.total} done, {self.failed} failed"
        if self.cancelled:
            figures += f", {self.cancelled} cancelled"
        eta = self.eta()
        tail = "" if self.ended >= self.total else f", ETA {format_eta(eta)}"
        drawn = f" {bar(self.done, self.failed + self.cancelled, self.total)}" if self._tty else ""
        return f"storybook {self.book_id} {self.status}{drawn} {figures}{tail}"

    def _show(self) -> None:
        if self._start is None:
            self._start = (self._clock(), self.ended)
        figures = (self.status, self.total, self.done, self.failed, self.cancelled)
        if self._tty:
            text = self.text()
            if text != self._drawn:
                self._stream.write("\r" + text + "\x1b[K")
                self._stream.flush()
                self._drawn = text
        elif figures != self._shown:
            self._stream.write(self.text() + "\n")
            self._stream.flush()
        self._shown = figures

    def close(self) -> None:
        """End the redrawn line (a terminal), so what is printed next starts on its own."""
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = ""
