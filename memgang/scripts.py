"""Loads ``lua/*.lua`` and maps the small codes the scripts return to typed errors.

Each script is the shared helpers of ``_lib.lua`` followed by the script's own file; the I/O
shells send them by SHA-1 (``EVALSHA``, reloading on NOSCRIPT) on memgang's own call path,
``memgang/_async/wire.py``. A reply code that is not known here is a bug and raises
:class:`memgang.ScriptError`, never a silent ``None``.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from .codec import loads_json
from .errors import (
    ConflictError,
    Forbidden,
    InvalidValue,
    Locked,
    NotFound,
    ScriptError,
    StaleFence,
)

OK = 0
CONFLICT = 1
MANUAL_CONFLICT = 2
LOCKED = 3
STALE_FENCE = 4
FORBIDDEN = 5
NOT_MAPPING = 7
NOT_FOUND = 9


def lua_dir() -> Path:
    """Where the scripts are: inside the installed package, else the source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "lua", here.parent / "lua"):
        if (candidate / "write.lua").is_file():
            return candidate
    raise FileNotFoundError(f"memgang's Lua scripts are missing (looked in {here / 'lua'} and "
                            f"{here.parent / 'lua'}); reinstall memgang")


_DEFINES = re.compile(r"^local function (\w+)", re.M)
_COMMENT = re.compile(r"--[^\n]*")  # the scripts use line comments only


# A script may start with a fast path (its "prelude") that runs before most helpers exist:
# everything above this line in its file. See _assemble.
PRELUDE_END = "-- @helpers"


def _kept(blocks: list[str], names: list[list[str]], body: str) -> list[bool]:
    """Which of ``blocks`` (of helper files, separated by blank lines; ``names``: the local
    functions each defines) ``body`` needs: a block that defines local functions is kept
    only if one of them is used by the body or by a kept block, every other block
    (constants, comments) always. Lua creates each local function anew on every call of a
    script, so an unused helper costs every call."""
    keep = [not defined for defined in names]
    used = _COMMENT.sub("", body)  # a helper named in a comment is not a use of it
    changed = True
    while changed:
        changed = False
        for i, defined in enumerate(names):
            if not keep[i] and any(re.search(rf"\b{name}\b", used) for name in defined):
                keep[i] = changed = True
                used += _COMMENT.sub("", blocks[i])
    return keep


def _assemble(helpers: list[str], own: str) -> str:
    """A script's full source: the helper files' blocks it needs (see _kept), in file
    order, then its own file. If its file has a line ``-- @helpers``, what is above that
    line (the prelude: a fast path, say) comes right after the constants and the helpers it
    needs itself, and every other helper is defined only after it: a prelude that returns
    does not pay for making them (each is a closure made anew on every call)."""
    blocks = [block for text in helpers if text for block in text.split("\n\n")]
    lines = own.splitlines(keepends=True)
    cut = next((i for i, line in enumerate(lines) if line.rstrip() == PRELUDE_END), None)
    prelude = "".join(lines[:cut]) if cut is not None else ""
    rest = "".join(lines[cut + 1:]) if cut is not None else own
    names = [_DEFINES.findall(block) for block in blocks]
    needed, early = _kept(blocks, names, own), _kept(blocks, names, prelude)
    functions = [bool(defined) for defined in names]
    first = [b for b, f, e in zip(blocks, functions, early, strict=True) if not f or e]
    later = [b for b, f, e, n in zip(blocks, functions, early, needed, strict=True)
             if f and n and not e]
    parts = ["\n\n".join(first), prelude, "\n\n".join(later), rest]
    return "\n".join(part for part in parts if part.strip())


@cache
def sources() -> dict[str, str]:
    """Script name -> full source: ``_lib.lua`` first, then for a script of a family
    (``<family>_*.lua``) that family's helpers ``_<family>.lua`` if there are any (e.g.
    ``_lock.lua`` for ``lock_acquire.lua``); of both, only the helper functions the script
    uses, so no script pays for helpers it never calls (and a prelude, see _assemble, not
    even for those only the rest of the script calls)."""
    root = lua_dir()
    lib = (root / "_lib.lua").read_text()
    families = {p.stem[1:]: p.read_text() for p in root.glob("_*.lua") if p.stem != "_lib"}
    out = {}
    for path in sorted(root.glob("[!_]*.lua")):
        family = families.get(path.stem.partition("_")[0], "") if "_" in path.stem else ""
        out[path.stem] = _assemble([lib, family], path.read_text())
    return out


@cache
def shas() -> dict[str, str]:
    """Script name -> the SHA-1 (hex) Redis knows its source by (``EVALSHA``)."""
    return {name: hashlib.sha1(src.encode()).hexdigest() for name, src in sources().items()}


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def server_ms(time_reply: Any) -> int:
    """Server time in ms from the reply of Redis's TIME (seconds, microseconds)."""
    seconds, micros = time_reply
    return int(seconds) * 1000 + int(micros) // 1000


def raise_refusal(script: str, reply: list[Any], *, key: str, agent: str,
                  expected: int | None = None, fence: int | None = None) -> NoReturn:
    """Raise the typed error for a non-OK reply of write/delete/read."""
    code = reply[0]
    if code == CONFLICT:
        raise ConflictError(key, expected=expected, current=int(reply[1]), agent=agent)
    if code == LOCKED:
        raise Locked(key, holder=text(reply[1]), mode=text(reply[2]))
    if code == STALE_FENCE:
        raise StaleFence(key, fence=-1 if fence is None else fence, newest=int(reply[1]))
    if code == FORBIDDEN:
        try:
            allowed = list(loads_json(reply[1]))
        except ValueError:  # a list another tool broke: the script refused, fail closed
            allowed = [f"(unreadable: {text(reply[1])!r})"]
        raise Forbidden(key, agent, allowed)
    if code == NOT_MAPPING:
        raise InvalidValue(f"cannot merge into {key}: {text(reply[1])}", key=key)
    if code == NOT_FOUND:
        raise NotFound(key)
    raise ScriptError(script, reply)


__all__ = [
    "CONFLICT",
    "FORBIDDEN",
    "LOCKED",
    "MANUAL_CONFLICT",
    "NOT_FOUND",
    "NOT_MAPPING",
    "OK",
    "STALE_FENCE",
    "lua_dir",
    "raise_refusal",
    "server_ms",
    "shas",
    "sources",
    "text",
]
