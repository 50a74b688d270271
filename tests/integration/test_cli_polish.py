"""The real ``run.py`` as a user runs it: ``--version``, no command (help, not a server), help
text naming the environment, ``say`` from a file or stdin to a file or stdout (the format
from the extension), errors naming the path looked in, and ``users`` keys on real Postgres."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import trio

from run import build_parser
from tests.support.harness import make_settings, running_service

ROOT = Path(__file__).resolve().parents[2]
CAP_S = 60


async def run_py(*argv: str, stdin: bytes = b"", env: dict[str, str] | None = None):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("CHORUS_", "REDIS_URL", "DATABASE_URL", "ELEVENLABS_"))}
    base |= {"PYTHONPATH": str(ROOT), "CHORUS_LOG_LEVEL": "WARNING"} | (env or {})
    with trio.fail_after(CAP_S):
        return await trio.run_process(
            [sys.executable, str(ROOT / "run.py"), *argv], stdin=stdin, capture_stdout=True,
            capture_stderr=True, check=False, env=base,
        )


def test_every_command_and_option_has_help_and_service_commands_name_their_variables():
    def walk(parser: argparse.ArgumentParser, path: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{path} {choice.dest} has no help"
                for name, child in action.choices.items():
                    yield f"{path} {name}", child
                    yield from walk(child, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction):
                assert action.help, f"{path}: {action.option_strings or action.dest} has no help"

    commands = dict(walk(build_parser(), "run.py"))
    assert {"run.py serve", "run.py say", "run.py users rotate-key"} <= set(commands)
    for name in ("serve", "api", "worker", "doctor"):
        assert "REDIS_URL" in commands[f"run.py {name}"].format_help()
    assert "CHORUS_API_KEY" in commands["run.py say"].format_help()
    assert "DATABASE_URL" in commands["run.py users create"].format_help()


async def test_version_and_no_command_prints_help_instead_of_serving(tmp_path) -> None:
    r = await run_py("--version")
    assert r.returncode == 0 and r.stdout.decode().strip() == "chorus 0.1.0"
    r = await run_py(env={"CHORUS_DATA_DIR": str(tmp_path)})  # returns: no server started
    assert r.returncode == 2 and b"COMMAND" in r.stderr and b"serve" in r.stderr
    assert not (tmp_path / "valkey").exists() and list(tmp_path.iterdir()) == []


async def test_say_reads_files_and_stdin_and_writes_files_and_stdout(
    redis_url, store, tmp_path
) -> None:
    settings = make_settings(tmp_path / "srv")
    with trio.fail_after(CAP_S):
        async with running_service(redis_url=redis_url, store=store, settings=settings) as svc:
            env = {"CHORUS_DATA_DIR": str(tmp_path / "empty")}
            conn = ["--url", str(svc.client.base_url).rstrip("/"), "--key", svc.api_key]
            # stdin to stdout: mp3 by default
            r = await run_py("say", "-", "-o", "-", *conn, stdin=b"Read from stdin.", env=env)
            assert r.returncode == 0, r.stderr
            assert r.stdout[:3] == b"ID3" or r.stdout[:2] in (b"\xff\xfb", b"\xff\xf3")
            assert b"to stdout" in r.stderr
            # a file to a file: the format follows the extension (.wav)
            text = tmp_path / "line.txt"
            text.write_text("Read from a file.", encoding="utf-8")
            out = tmp_path / "line.wav"
            r = await run_py("say", "--file", str(text), "-o", str(out), *conn, env=env)
            assert r.returncode == 0, r.stderr
            assert out.read_bytes()[:4] == b"RIFF"
            texts = [req.text for req in svc.service.provider.requests]
            assert texts == ["Read from stdin.", "Read from a file."]
            # errors name the path looked in, and nothing is submitted
            missing = tmp_path / "nope.txt"
            r = await run_py("say", "--file", str(missing), "-o", str(out), *conn, env=env)
            assert r.returncode == 2 and str(missing) in r.stderr.decode()
            r = await run_py("say", "hi", "-o", str(tmp_path / "no" / "x.mp3"), *conn, env=env)
            assert r.returncode == 2 and str(tmp_path / "no") in r.stderr.decode()
            r = await run_py("say", "hi", "-o", str(out), "--url", conn[1], env=env)
            assert r.returncode == 2
            assert str(tmp_path / "empty" / "local-api-key") in r.stderr.decode()
            assert len(svc.service.provider.requests) == 2


async def test_users_keys_commands_share_the_store_methods(database_url, store) -> None:
    env = {"DATABASE_URL": database_url}
    r = await run_py("users", "create", "erin", env=env)
    assert r.returncode == 0, r.stderr
    first = r.stdout.decode().strip()
    r = await run_py("users", "add-key", "erin", "--label", "ci", env=env)
    assert r.returncode == 0, r.stderr
    second = r.stdout.decode().strip()
    erin = await store.authenticate(second)
    assert erin is not None and erin.name == "erin"
    rows = await store.list_api_keys(erin.id)
    r = await run_py("users", "revoke-key", rows[0].id, env=env)
    assert r.returncode == 0, r.stderr
    assert await store.authenticate(first) is None
    r = await run_py("users", "keys", "erin", env=env)
    listed = r.stdout.decode()
    assert rows[0].id in listed and "revoked" in listed and "ci" in listed
    assert first not in listed and second not in listed
