"""protocols/redis/scripts.py: every Lua script lives there, each documented (KEYS, ARGV, reply)
where ``help()`` shows it."""

from __future__ import annotations

import pydoc
from pathlib import Path

import pytest

from protocols.redis import scripts
from protocols.redis.scripts import LuaScript

REDIS_PACKAGE = Path(scripts.__file__).parent


def test_all_holds_every_script_of_the_module_once():
    defined = [v for v in vars(scripts).values() if isinstance(v, LuaScript)]
    assert len(scripts.ALL) == len(set(scripts.ALL)) == len(defined) == 17
    assert set(scripts.ALL) == set(defined)
    assert len({s.name for s in scripts.ALL}) == len(scripts.ALL)


@pytest.mark.parametrize("script", scripts.ALL, ids=lambda s: s.name)
def test_each_script_says_its_keys_argv_and_reply_in_help(script: LuaScript):
    for part in ("KEYS", "ARGV", "Reply"):
        assert part in script.doc, (script.name, part)
    assert script.__doc__ == script.doc
    assert "KEYS:" in pydoc.render_doc(script, renderer=pydoc.plaintext)
    assert "redis.call" in script.source


def test_no_lua_outside_the_scripts_module():
    for path in REDIS_PACKAGE.glob("*.py"):
        if path.name != "scripts.py":
            assert "redis.call" not in path.read_text(), path
