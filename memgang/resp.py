"""Script calls packed ahead, in parts: RESP bulk strings that can be kept and joined.

A write.lua call has some thirty KEYS and ARGV, and most of them are the same from one
write to the next: the swarm's keys, the writer, the options, and an object's own four keys
on every write of that object. Packing every argument again on every call (hiredis's
``pack_command`` formats each one's length with ``sprintf``) was a third of a write's
client instructions. Here the parts that repeat are packed once, kept, and joined with the
parts that do not (the value and its digest).

Sans-I/O: this builds bytes; ``memgang._async.wire`` sends them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, NamedTuple, TypeVar

import hiredis
import redis.exceptions


def bulk(arg: Any) -> bytes:
    """``arg`` (str, bytes, int or float, as redis-py would send it) as a RESP bulk
    string; anything else is a caller's bug, named before anything is sent."""
    if isinstance(arg, str):
        try:
            data = arg.encode()
        except UnicodeEncodeError as exc:
            raise redis.exceptions.DataError(f"cannot send {arg!r}: {exc}") from exc
    elif isinstance(arg, bytes):
        data = arg
    elif isinstance(arg, int) and not isinstance(arg, bool):
        data = b"%d" % arg
    elif isinstance(arg, float):
        data = repr(arg).encode()
    else:
        raise redis.exceptions.DataError(
            f"cannot send arguments of type {type(arg).__name__}: only str, bytes, int and "
            f"float go to Redis")
    return b"$%d\r\n%b\r\n" % (len(data), data)


def bulk_pair(first: bytes, second: bytes) -> bytes:
    """Two bytes arguments as bulk strings, as ``bulk`` makes each, in one step: a write's
    value and its digest, on every write."""
    return b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(first), first, len(second), second)


def bulks(args: Iterable[Any]) -> bytes:
    """The bulk strings of ``args``, one after the other."""
    return b"".join([bulk(arg) for arg in args])


def command(*parts: Any) -> bytes:
    """One command: the RESP array of ``parts`` (str, bytes, int and float), packed by
    hiredis; anything else is a caller's bug, named before anything is sent."""
    try:
        packed: bytes = hiredis.pack_command(parts)
    except TypeError as exc:  # as redis-py says it
        kinds = sorted({type(p).__name__ for p in parts
                        if not isinstance(p, (str, bytes, int, float)) or isinstance(p, bool)})
        raise redis.exceptions.DataError(f"cannot send arguments of type {', '.join(kinds)}: "
                                         f"{exc}") from exc
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 for it
        raise redis.exceptions.DataError(f"cannot send {exc.object!r}: {exc}") from exc
    return packed


class Packed(NamedTuple):
    """The KEYS and ARGV of one script call, packed: ``nkeys`` keys then ``nargs`` args,
    as RESP bulk strings (``body``). A named tuple: one is made per write."""

    nkeys: int
    nargs: int
    body: bytes

    def evalsha(self, sha: bytes) -> bytes:
        """The whole ``EVALSHA sha nkeys ...`` command (``sha``: the 40 hex digits)."""
        what = (sha, self.nkeys, self.nargs)
        head = _HEADS.get(what) or _HEADS.put(what, _evalsha_head(*what))
        return head + self.body


def _evalsha_head(sha: bytes, nkeys: int, nargs: int) -> bytes:
    return b"*%d\r\n$7\r\nEVALSHA\r\n%b%b" % (nkeys + nargs + 3, bulk(sha), bulk(nkeys))


Part = TypeVar("Part")


class PartCache(Generic[Part]):
    """Packed parts by what they were packed from; emptied when it holds ``limit`` (the
    parts are cheap to make again, and a long-lived process must not grow without end)."""

    __slots__ = ("_parts", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._parts: dict[Any, Part] = {}

    def get(self, what: Any) -> Part | None:
        return self._parts.get(what)

    def put(self, what: Any, part: Part) -> Part:
        if len(self._parts) >= self.limit:
            self._parts.clear()
        self._parts[what] = part
        return part


# EVALSHA's first parts, by (sha, nkeys, nargs): a handful of shapes per script
_HEADS: PartCache[bytes] = PartCache(1024)

__all__ = ["Packed", "PartCache", "bulk", "bulk_pair", "bulks", "command"]
