"""Operator figures from Postgres (``GET /v1/admin/overview``): jobs by status and how many
were answered from the cache, over a recent window, every user together."""

from __future__ import annotations

from typing import Any


async def job_figures(conn: Any, window_s: float) -> list[tuple[str, int, int]]:
    """(status, jobs, of which cached) for jobs created in the last ``window_s`` seconds."""
    rows = await conn.fetch(
        "SELECT status, count(*) AS n, count(*) FILTER (WHERE cached) AS cached FROM jobs"
        " WHERE created_at >= now() - make_interval(secs => $1) GROUP BY status",
        float(window_s),
    )
    return [(row["status"], int(row["n"]), int(row["cached"])) for row in rows]
