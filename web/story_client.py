"""``run.py story``: submit a storybook to a running Chorus, follow it, write its outputs.

Three ways in: a book file (``POST /v1/storybooks`` with the same JSON as the API; ``-`` reads
stdin), ``--resume ID`` (an existing book, nothing submitted) and ``--retry ID`` (a new retry
round, ``POST /v1/storybooks/{id}/retry``). The book is then followed through its server-sent
events (``GET /v1/storybooks/{id}/events``), with ``GET /v1/storybooks/{id}`` polled whenever
that stream cannot be had or ends early; a server restarting mid-book is waited for a while,
since the book goes on after it. Once the book has ended its outputs are written into a
directory (``./<book id>/`` by default): ``book.<ext>``, ``page-<n>.<ext>`` (n as in the API,
from 0), ``captions.vtt``, ``captions.srt``, ``chapters.json`` and ``book.json`` (the view).

A submit carries an idempotency key derived from the book's JSON (unless it has its own), so
running the same command again after a crash follows the same book instead of making another.
Exit codes: 0 the book succeeded; 2 it ended partial, failed or cancelled (what exists is
written and the failed lines are listed); 1 an error, printed as ``error: <code>: <detail>``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

from protocols.domain.storybooks import PERMANENT_ERRORS
from protocols.settings import Settings
from web.client import SSE_READ_TIMEOUT_S, api_key, base_url, iter_sse
from web.story_progress import Progress

POLL_S = 1.0
#: a server restarting in the middle of a book: keep asking this long before giving up
UNREACHABLE_S = 30.0
#: the first request for a long book's audio assembles it
OUTPUT_TIMEOUT = httpx.Timeout(10, read=300)
FINAL = frozenset({"succeeded", "partial", "failed", "cancelled"})
BOOK_ENDS = frozenset(f"storybook.{status}" for status in FINAL)
LINE_ENDS = frozenset({"storybook.line.succeeded", "storybook.line.failed"})
OK, ERROR, INCOMPLETE = 0, 1, 2


class StoryError(Exception):
    """What the command prints as ``error: <code>: <detail>`` before it exits 1."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def checked(response: httpx.Response) -> httpx.Response:
    """The response, or its RFC 9457 problem raised as a ``StoryError``."""
    if not response.is_error:
        return response
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("code"):
        detail = body.get("detail") or body.get("title") or ""
        raise StoryError(str(body["code"]), str(detail))
    text = response.text.strip()[:200] or response.reason_phrase
    raise StoryError(f"http_{response.status_code}", text)


def idempotency_key(book: dict[str, Any]) -> str:
    """A key from the book's content (key order and spacing aside): the same book, the same key."""
    canonical = json.dumps(book, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "story-cli-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


async def read_book(name: str) -> dict[str, Any]:
    try:
        if name == "-":
            raw = await trio.to_thread.run_sync(sys.stdin.buffer.read)
        else:
            raw = await trio.Path(name).read_bytes()
    except OSError as exc:
        where = await trio.Path(name).resolve()
        raise StoryError("cannot_read", f"{where}: {exc.strerror or exc}") from exc
    label = "stdin" if name == "-" else name
    try:
        book = json.loads(raw)
    except ValueError as exc:
        raise StoryError("malformed_json", f"{label} is not JSON: {exc}") from exc
    if not isinstance(book, dict):
        raise StoryError("invalid_input", f"{label} must hold a JSON object (a storybook)")
    return book


def book_path(book_id: str) -> str:
    return f"/v1/storybooks/{quote(book_id, safe='')}"


async def submit(client: httpx.AsyncClient, book: dict[str, Any]) -> str:
    headers = {} if book.get("idempotency_key") else {"Idempotency-Key": idempotency_key(book)}
    r = checked(await client.post("/v1/storybooks", json=book, headers=headers))
    accepted = r.json()
    book_id = accepted["id"]
    if r.status_code == 202:
        print(f"submitted storybook {book_id}: {accepted['lines_total']} lines, "
              f"{accepted['characters']} characters", file=sys.stderr)
    else:
        print(f"storybook {book_id} was submitted before (same book, {accepted['status']});"
              " following it", file=sys.stderr)
    print(f"(if interrupted: run.py story --resume {book_id})", file=sys.stderr)
    return book_id


async def start_retry(
    client: httpx.AsyncClient, book_id: str, *, force: bool, lines: list[str] | None
) -> None:
    body: dict[str, Any] = {"force": force}
    if lines:
        body["lines"] = lines
    r = checked(await client.post(f"{book_path(book_id)}/retry", json=body))
    started = r.json()
    print(f"storybook {book_id}: retry round {started['round']} of "
          f"{len(started['lines'])} line(s){' (forced)' if started['forced'] else ''}",
          file=sys.stderr)


async def follow_events(client: httpx.AsyncClient, book_id: str, progress: Progress) -> None:
    """Show the book's events until its final one (or until the stream ends or fails)."""
    timeout = httpx.Timeout(10, read=SSE_READ_TIMEOUT_S)
    async with client.stream("GET", f"{book_path(book_id)}/events", timeout=timeout) as r:
        if r.status_code != 200:
            return
        async for event in iter_sse(r.aiter_lines()):
            body = event.data if isinstance(event.data, dict) else {}
            data = body.get("data") if isinstance(body.get("data"), dict) else {}
            if event.event == "storybook.progress" or event.event in BOOK_ENDS:
                if isinstance(data.get("counts"), dict):
                    status = event.event.removeprefix("storybook.")
                    progress.snapshot(
                        status=data.get("status") or ("running" if status == "progress"
                                                      else status),
                        total=data.get("lines_total", progress.total), counts=data["counts"],
                    )
            elif event.event in LINE_ENDS:
                progress.line_ended(data.get("line_id"), data.get("status"))
            if event.event in BOOK_ENDS:
                return


async def follow(
    client: httpx.AsyncClient, book_id: str, progress: Progress, *, reached: bool
) -> dict[str, Any]:
    """Follow the book until it has ended; its final view (``GET /v1/storybooks/{id}``).

    ``reached``: the server has answered before; only then is it waited for when it cannot be
    reached (a restart), for at most ``UNREACHABLE_S`` (a wrong ``--url`` fails at once)."""
    unreachable_since: float | None = None
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):  # a poll takes over
            await follow_events(client, book_id, progress)
        try:
            view = checked(await client.get(book_path(book_id))).json()
            reached = True
        except httpx.TransportError:
            if not reached:
                raise
            now = trio.current_time()
            unreachable_since = now if unreachable_since is None else unreachable_since
            if now - unreachable_since >= UNREACHABLE_S:
                raise
            await trio.sleep(POLL_S)
            continue
        unreachable_since = None
        progress.snapshot(status=view["status"], total=view["lines_total"],
                          counts=view["counts"])
        if view["status"] in FINAL:
            return view
        await trio.sleep(POLL_S)


def extension(response: httpx.Response, output_format: str) -> str:
    """From the file name the server gives the audio, else from the format's name."""
    found = re.search(r'filename="[^"]*\.([A-Za-z0-9]+)"',
                      response.headers.get("content-disposition", ""))
    return found.group(1) if found else output_format.split("_", 1)[0]


async def save(path: trio.Path, data: bytes) -> None:
    """Written whole or not at all (a crash leaves no half file under the real name)."""
    part = path.with_name(path.name + ".part")
    await part.write_bytes(data)
    await part.replace(path)


async def write_outputs(
    client: httpx.AsyncClient, view: dict[str, Any], out: trio.Path
) -> list[str]:
    """The book's files in ``out``: ``book.json`` always; audio, captions and chapters when
    some line has audio (a page's audio when one of its lines has). The names written.
    Not under ``--timeout``: that bounds the wait for the book, not its download."""
    await out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    async def put(name: str, data: bytes) -> None:
        await save(out / name, data)
        written.append(name)

    await put("book.json", json.dumps(view, indent=2, ensure_ascii=False).encode() + b"\n")
    if not view.get("outputs"):
        return written
    base = book_path(view["id"])
    r = checked(await client.get(f"{base}/audio", timeout=OUTPUT_TIMEOUT))
    ext = extension(r, view["output_format"])
    await put(f"book.{ext}", r.content)
    for page in view["pages"]:
        if any(line["status"] == "succeeded" for line in page["lines"]):
            n = page["index"]
            r = checked(await client.get(f"{base}/pages/{n}/audio", timeout=OUTPUT_TIMEOUT))
            await put(f"page-{n}.{ext}", r.content)
    for kind in ("vtt", "srt"):
        r = checked(await client.get(f"{base}/captions.{kind}", timeout=OUTPUT_TIMEOUT))
        await put(f"captions.{kind}", r.content)
    r = checked(await client.get(f"{base}/chapters", timeout=OUTPUT_TIMEOUT))
    await put("chapters.json", json.dumps(r.json(), indent=2, ensure_ascii=False).encode())
    return written


def report(view: dict[str, Any], out: Path, written: list[str]) -> int:
    """Say how the book ended (each failed line: id, page and line, error); the exit code."""
    failed = [(page["index"], line) for page in view["pages"] for line in page["lines"]
              if line["status"] == "failed"]
    for page, line in failed:
        error = line.get("error") or {}
        print(f"failed: line {line['id']} (page {page}, line {line['index']}): "
              f"{error.get('code')}: {error.get('message')}", file=sys.stderr)
    counts = view["counts"]
    print(f"storybook {view['id']} {view['status']}: {counts['succeeded']} of "
          f"{view['lines_total']} lines succeeded; wrote {len(written)} files to {out}",
          file=sys.stderr)
    if failed:
        force = any((line.get("error") or {}).get("code") in PERMANENT_ERRORS
                    for _, line in failed)
        print(f"to make the failed lines again: run.py story --retry {view['id']}"
              f"{' --force' if force else ''}", file=sys.stderr)
    print(out)
    return OK if view["status"] == "succeeded" else INCOMPLETE


def _lines(text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise StoryError("usage", "--lines needs line ids, comma-separated")
    return ids


def _check_usage(args: argparse.Namespace) -> None:
    ways = [name for name, given in (("FILE", args.file is not None),
                                     ("--resume", args.resume is not None),
                                     ("--retry", args.retry is not None)) if given]
    if len(ways) != 1:
        raise StoryError("usage", "give one of FILE, --resume ID or --retry ID"
                         + (f" (not {' and '.join(ways)})" if ways else ""))
    if args.retry is None and (args.force or args.lines is not None):
        raise StoryError("usage", "--force and --lines go with --retry ID")
    if args.timeout is not None and not args.timeout > 0:
        raise StoryError("usage", "--timeout must be a positive number of seconds")


async def story(args: argparse.Namespace, settings: Settings) -> int:
    """``run.py story``: the exit code (0 succeeded, 2 ended otherwise, 1 an error)."""
    try:
        return await _story(args, settings)
    except StoryError as exc:
        print(f"error: {exc.code}: {exc.detail}", file=sys.stderr)
        return ERROR


async def _story(args: argparse.Namespace, settings: Settings) -> int:
    _check_usage(args)
    lines = _lines(args.lines)
    key = api_key(args, settings)
    if not key:
        looked = await trio.Path(settings.data_dir, "local-api-key").resolve()
        raise StoryError("no_api_key", "pass --key, set CHORUS_API_KEY, or run `run.py serve`"
                                       f" once (looked in {looked})")
    book = await read_book(args.file) if args.file is not None else None
    base = base_url(args, settings)
    book_id: str | None = args.resume or args.retry
    progress: Progress | None = None

    def again() -> str:
        return f"; `run.py story --resume {book_id}` follows it again" if book_id else ""

    try:
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            with trio.fail_after(args.timeout or math.inf):
                if book is not None:
                    book_id = await submit(client, book)
                elif args.retry is not None:
                    await start_retry(client, args.retry, force=args.force, lines=lines)
                assert book_id is not None
                progress = Progress(book_id)
                view = await follow(client, book_id, progress, reached=args.resume is None)
            progress.close()
            out = Path(args.output) if args.output else Path(view["id"])
            written = await write_outputs(client, view, trio.Path(out))
    except trio.TooSlowError:
        raise StoryError("timeout", f"gave up after {args.timeout:g} s{again()}") from None
    except httpx.HTTPError as exc:
        raise StoryError(
            "unreachable", f"cannot reach Chorus at {base}: {type(exc).__name__}{again()}"
        ) from exc
    except OSError as exc:
        raise StoryError("cannot_write", f"{exc.filename or ''}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError) as exc:  # not a Chorus answer (a proxy's page, another API)
        raise StoryError("bad_response", f"unexpected answer from {base}: {exc!r}") from exc
    finally:
        if progress is not None:
            progress.close()
    return report(view, out, written)
