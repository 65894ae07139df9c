"""Encoding of values (msgpack, bounded) and events (JSON via orjson).

Values are msgpack: compact, binary-safe and readable from any language. They are bounded
in size and nesting depth so that one agent cannot fill Redis or blow another agent's stack;
the bounds are per Gang (``memgang.connect(max_value_bytes=..., max_depth=...)``).
Events are JSON so that ``redis-cli SUBSCRIBE`` and any language can read them. Never pickle.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from .errors import InvalidValue

DEFAULT_MAX_VALUE_BYTES = 1 << 20
DEFAULT_MAX_DEPTH = 32

_SCALARS = (str, int, float, bool, bytes, type(None))


class _Packers(threading.local):
    """One msgpack Packer per thread: ``msgpack.packb`` builds a Packer, and allocates its
    buffer, on every call; a Packer is not safe to share between threads."""

    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True)
        # for pack_strings: bytes as msgpack str, the only string type Redis's cmsgpack reads
        self.strings = msgpack.Packer(use_bin_type=False)


_PACKERS = _Packers()


def pack_strings(values: Iterable[str | bytes | int]) -> bytes:
    """``values`` as a msgpack stream of strings (numbers as their decimal text), for a Lua
    script to read with ``cmsgpack.unpack``: a Lua string each. Bytes are packed as msgpack
    str too: Redis's cmsgpack refuses the bin types."""
    pack = _PACKERS.strings.pack
    return b"".join([pack(v if isinstance(v, (str, bytes)) else str(v)) for v in values])


@dataclass(frozen=True, slots=True)
class Codec:
    """Packs and unpacks memory values within the configured bounds."""

    max_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_depth < 1:
            raise ValueError("max_bytes and max_depth must be positive")

    def pack(self, value: Any, *, key: str | None = None) -> bytes:
        """Encode ``value``; raise :class:`InvalidValue` naming what is wrong."""
        if not isinstance(value, _SCALARS):
            self._check_depth(value, key)
        try:
            data: bytes = _PACKERS.packer.pack(value)
        except (TypeError, ValueError, OverflowError) as exc:  # (the Packer resets itself)
            where = f" for {key}" if key else ""
            raise InvalidValue(f"value{where} cannot be encoded as msgpack: {exc}",
                               key=key) from exc
        if len(data) > self.max_bytes:
            where = f" for {key}" if key else ""
            raise InvalidValue(
                f"value{where} is {len(data)} bytes encoded; the limit is {self.max_bytes}",
                key=key,
            )
        return data

    def pack_patch(self, value: Any, *, key: str | None = None) -> bytes:
        """Encode a merge patch: it must be a mapping with string field names."""
        if not isinstance(value, Mapping):
            raise InvalidValue(
                f"merge needs a mapping, got {type(value).__name__}"
                + (f" for {key}" if key else ""),
                key=key,
            )
        for field in value:
            if not isinstance(field, str):
                raise InvalidValue(f"merge field names must be strings, got {field!r}", key=key)
        return self.pack(dict(value), key=key)

    @staticmethod
    def unpack(data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)

    def _check_depth(self, value: Any, key: str | None) -> None:
        if _depth_exceeds(value, self.max_depth):
            where = f" for {key}" if key else ""
            raise InvalidValue(f"value{where} is nested deeper than {self.max_depth} levels",
                               key=key)


_SCALAR_TYPES = frozenset(_SCALARS)  # exact types, for type(...) in


def _depth_exceeds(value: Any, budget: int) -> bool:
    """True if containers nest more than ``budget`` levels (scalars cost one type check).
    Exact dicts, lists and tuples are recognised by ``type(...) is``, which costs a fraction
    of ``isinstance`` against the ``Mapping`` ABC; other mappings and sequences still count."""
    kind = type(value)
    if kind is dict:
        children: Any = value.values()
    elif kind is list or kind is tuple:
        children = value
    elif kind in _SCALAR_TYPES:
        return False
    elif isinstance(value, Mapping):
        children = value.values()
    elif isinstance(value, (list, tuple)):
        children = value
    else:
        return False  # not a container msgpack nests (it refuses other types itself)
    if budget <= 0:
        return True
    for child in children:  # a loop, not any(<generator>): most values are flat
        if type(child) not in _SCALAR_TYPES and _depth_exceeds(child, budget - 1):
            return True
    return False


def dumps_json(obj: Any) -> bytes:
    """JSON for events and the CLI: bytes are shown as latin-1 text, non-str keys as str."""
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def loads_json(data: bytes | str) -> Any:
    return orjson.loads(data)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("latin-1")
    if isinstance(obj, msgpack.ExtType):  # before tuple: ExtType is a namedtuple
        return {"msgpack_ext": obj.code, "data": obj.data.decode("latin-1")}
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, msgpack.Timestamp):  # what Go and JS encoders write for a date
        return obj.to_datetime().isoformat()
    return repr(obj)  # display only: JSON output must not fail on a value someone stored


__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_VALUE_BYTES", "Codec", "dumps_json", "loads_json",
           "pack_strings"]
