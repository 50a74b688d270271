"""``run.py say``: submit text to a running Chorus over HTTP, follow the job, save the audio.

Progress comes from the job's server-sent events (``GET /v1/jobs/{id}/events``); if that stream
cannot be had or ends early, the job is polled instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from protocols.settings import Settings

POLL_S = 0.2
#: an SSE stream sends a comment at least every 15 s; silence much longer means it is dead
SSE_READ_TIMEOUT_S = 40.0
TERMINAL = ("succeeded", "failed", "dead", "cancelled")
#: events of one job may arrive out of order across processes (api and worker roles)
RANK = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "dead": 2, "cancelled": 2}
#: ``say -o FILE.EXT`` without ``--format``: the format its extension names
FORMAT_BY_EXTENSION = {
    ".mp3": "mp3_44100_128", ".wav": "wav_44100", ".opus": "opus_48000_128",
    ".ogg": "opus_48000_128", ".pcm": "pcm_24000", ".raw": "pcm_24000", ".ulaw": "ulaw_8000",
    ".alaw": "alaw_8000",
}
DEFAULT_FORMAT = "mp3_44100_128"


class CliError(Exception):
    """A usage problem found before anything is submitted (exit 2); the message names the
    path or variable looked at."""


def output_format(args: argparse.Namespace) -> str:
    """``--format``, else the one the output file's extension names, else mp3."""
    if args.format:
        return args.format
    if args.output == "-":
        return DEFAULT_FORMAT
    return FORMAT_BY_EXTENSION.get(Path(args.output).suffix.lower(), DEFAULT_FORMAT)


def read_text(args: argparse.Namespace) -> str:
    """The text to speak: the argument, ``--file FILE``, or stdin for ``-`` (either way)."""
    if args.text is not None and args.file is not None:
        raise CliError("give the text or --file, not both")
    if args.text is None and args.file is None:
        raise CliError("no text: give it as an argument, --file FILE, or '-' for stdin")
    if args.file is None and args.text != "-":
        return args.text
    source = args.file if args.file is not None else "-"
    if source == "-":
        return sys.stdin.read()
    path = Path(source).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"cannot read the text from {path.resolve()}: not UTF-8") from None
    except OSError as exc:
        raise CliError(
            f"cannot read the text from {path.resolve()}: {exc.strerror or exc}"
        ) from None


def check_output(target: str) -> None:
    """Fail before submitting when the output file's folder does not exist."""
    if target == "-":
        return
    folder = Path(target).expanduser().resolve().parent
    if not folder.is_dir():
        raise CliError(f"cannot write the audio to {Path(target).expanduser().resolve()}:"
                       f" no folder {folder}")


@dataclass(frozen=True)
class SSEvent:
    """One server-sent event: ``id`` (None when the frame had none), ``event``, decoded ``data``."""

    id: str | None
    event: str
    data: Any


async def iter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SSEvent]:
    """Parse ``text/event-stream`` lines into events (comments and ``retry:`` are skipped)."""
    event_id: str | None = None
    kind = "message"
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SSEvent(event_id, kind, json.loads("\n".join(data)))
            event_id, kind, data = None, "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)


async def _follow_events(client: httpx.AsyncClient, job_id: str, last: str | None) -> str | None:
    """Print the job's state changes from its event stream; the last status seen (None: the
    stream could not be opened)."""
    timeout = httpx.Timeout(10, read=SSE_READ_TIMEOUT_S)
    async with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=timeout) as r:
        if r.status_code != 200:
            return None
        async for event in iter_sse(r.aiter_lines()):
            if not event.event.startswith("job."):
                continue
            status = event.event.removeprefix("job.")
            if RANK.get(status, -1) <= RANK.get(last or "", -1):
                continue
            last = status
            print(f"job {job_id}: {status}", file=sys.stderr)
            if status in TERMINAL:
                break
    return last


def api_key(args: argparse.Namespace, settings: Settings) -> str | None:
    """``--key``, else ``CHORUS_API_KEY``, else the local admin's key file in the data dir."""
    if args.key:
        return args.key
    if os.environ.get("CHORUS_API_KEY"):
        return os.environ["CHORUS_API_KEY"]
    path = Path(settings.data_dir) / "local-api-key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def base_url(args: argparse.Namespace, settings: Settings) -> str:
    """``--url``, else the address ``run.py serve`` listens on (``CHORUS_HOST:CHORUS_PORT``)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return args.url or f"http://{host}:{settings.port}"


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('code')}: {body.get('detail')}"
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"


async def say(args: argparse.Namespace, settings: Settings) -> int:
    key = api_key(args, settings)
    if not key:
        looked = (Path(settings.data_dir) / "local-api-key").resolve()
        print("no API key: pass --key, set CHORUS_API_KEY, or run `run.py serve` once"
              f" (looked in {looked})", file=sys.stderr)
        return 2
    try:
        text = read_text(args)
        check_output(args.output)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base = base_url(args, settings)
    body = {"text": text, "output_format": output_format(args)}
    if args.voice:
        body["voice_id"] = args.voice
    if args.language:
        body["language"] = args.language
    if getattr(args, "model", None):
        body["model_id"] = args.model
    if getattr(args, "preference", None):
        body["preference"] = args.preference
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            with trio.fail_after(args.timeout):
                r = await client.post("/v1/jobs", json=body)
                if r.status_code not in (200, 202):
                    print(f"submit failed: {_problem(r)}", file=sys.stderr)
                    return 1
                job = r.json()
                last = None
                if job["status"] not in TERMINAL:
                    try:
                        last = await _follow_events(client, job["id"], None)
                    except (httpx.HTTPError, ValueError):
                        pass  # polling takes over
                    if last is not None:  # fetch the job as it is now (its final view)
                        r = await client.get(f"/v1/jobs/{job['id']}")
                        r.raise_for_status()
                        job = r.json()
                while job["status"] not in TERMINAL:
                    if job["status"] != last:
                        last = job["status"]
                        print(f"job {job['id']}: {last}", file=sys.stderr)
                    await trio.sleep(POLL_S)
                    r = await client.get(f"/v1/jobs/{job['id']}")
                    r.raise_for_status()
                    job = r.json()
                if job["status"] != last:
                    print(f"job {job['id']}: {job['status']}", file=sys.stderr)
                if job["status"] != "succeeded":
                    err = job.get("error") or {}
                    print(f"failed: {err.get('code')}: {err.get('message')}", file=sys.stderr)
                    return 1
                audio = await client.get(f"/v1/audio/{job['audio_id']}")
                audio.raise_for_status()
    except trio.TooSlowError:
        print(f"gave up waiting after {args.timeout:.0f} s", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"cannot reach Chorus at {base}: {type(exc).__name__}", file=sys.stderr)
        return 1
    kind = audio.headers.get("content-type")
    if args.output == "-":
        sys.stdout.buffer.write(audio.content)
        sys.stdout.buffer.flush()
        print(f"wrote {len(audio.content)} bytes ({kind}) to stdout", file=sys.stderr)
        return 0
    out = await trio.Path(args.output).expanduser()
    try:
        await out.write_bytes(audio.content)
    except OSError as exc:
        print(f"error: cannot write the audio to {await out.resolve()}:"
              f" {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(audio.content)} bytes ({kind}) to {out}", file=sys.stderr)
    return 0
