"""``run.py say``: submit text to a running Chorus over HTTP, follow the job, save the audio."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx
import trio

from protocols.settings import Settings

POLL_S = 0.2


def _api_key(args: argparse.Namespace, settings: Settings) -> str | None:
    if args.key:
        return args.key
    if os.environ.get("CHORUS_API_KEY"):
        return os.environ["CHORUS_API_KEY"]
    path = Path(settings.data_dir) / "local-api-key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('code')}: {body.get('detail')}"
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"


async def say(args: argparse.Namespace, settings: Settings) -> int:
    key = _api_key(args, settings)
    if not key:
        print("no API key: pass --key, set CHORUS_API_KEY, or run `run.py serve` once",
              file=sys.stderr)
        return 2
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = args.url or f"http://{host}:{settings.port}"
    body = {"text": args.text, "output_format": args.format}
    if args.voice:
        body["voice_id"] = args.voice
    if args.language:
        body["language"] = args.language
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
                while job["status"] not in ("succeeded", "failed", "dead"):
                    if job["status"] != last:
                        last = job["status"]
                        print(f"job {job['id']}: {last}", file=sys.stderr)
                    await trio.sleep(POLL_S)
                    r = await client.get(f"/v1/jobs/{job['id']}")
                    r.raise_for_status()
                    job = r.json()
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
    out = Path(args.output)
    await trio.Path(out).write_bytes(audio.content)
    print(f"wrote {len(audio.content)} bytes ({audio.headers.get('content-type')}) to {out}",
          file=sys.stderr)
    return 0
