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


def _needed(helpers: str, body: str) -> str:
    """The blocks of a helper file (separated by blank lines) that ``body`` needs: a block
    that defines local functions is kept only if one of them is used by the body or by a
    kept block, every other block (constants, comments) always. Lua creates each local
    function anew on every call of a script, so an unused helper costs every call."""
    blocks = helpers.split("\n\n")
    names = [_DEFINES.findall(block) for block in blocks]
    keep = [not defined for defined in names]
    used = _COMMENT.sub("", body)  # a helper named in a comment is not a use of it
    changed = True
    while changed:
        changed = False
        for i, defined in enumerate(names):
            if not keep[i] and any(re.search(rf"\b{name}\b", used) for name in defined):
                keep[i] = changed = True
                used += _COMMENT.sub("", blocks[i])
    return "\n\n".join(block for block, k in zip(blocks, keep, strict=True) if k)


@cache
def sources() -> dict[str, str]:
    """Script name -> full source: ``_lib.lua`` first, then for a script of a family
    (``<family>_*.lua``) that family's helpers ``_<family>.lua`` if there are any (e.g.
    ``_lock.lua`` for ``lock_acquire.lua``); of both, only the helper functions the script
    uses, so no script pays for helpers it never calls."""
    root = lua_dir()
    lib = (root / "_lib.lua").read_text()
    families = {p.stem[1:]: p.read_text() for p in root.glob("_*.lua") if p.stem != "_lib"}
    out = {}
    for path in sorted(root.glob("[!_]*.lua")):
        own = path.read_text()
        helpers = families.get(path.stem.partition("_")[0], "") if "_" in path.stem else ""
        helpers = _needed(helpers, own)
        lib_part = _needed(lib, helpers + own)
        out[path.stem] = "\n".join(part for part in (lib_part, helpers, own) if part)
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
