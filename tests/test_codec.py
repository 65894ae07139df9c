"""memgang.codec: the nesting bound counts every kind of container msgpack nests, whatever
its type, at exactly the configured depth (the check has a fast path for plain dicts, lists
and tuples that must not change what it refuses)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgpack
import pytest

import memgang
from memgang.codec import Codec


class Frozen(Mapping[str, Any]):
    """A mapping that is not a dict."""

    def __init__(self, **items: Any) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


WRAPS: dict[str, Callable[[Any], Any]] = {
    "dict": lambda inner: {"k": inner},
    "list": lambda inner: [inner],
    "tuple": lambda inner: (inner,),
    "OrderedDict": lambda inner: OrderedDict(k=inner),
    "dict beside scalars": lambda inner: {"a": 1, "b": "x", "c": None, "k": inner},
}


def nest(wrap: Callable[[Any], Any], levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = wrap(value)
    return value


@pytest.mark.parametrize("kind", WRAPS)
def test_containers_nest_up_to_the_bound_and_not_one_level_more(kind: str) -> None:
    codec = Codec(max_depth=4)
    assert codec.pack(nest(WRAPS[kind], 4))  # exactly at the bound
    with pytest.raises(memgang.InvalidValue, match="deeper than 4"):
        codec.pack(nest(WRAPS[kind], 5), key="k")


def test_a_mapping_that_is_no_dict_counts_as_a_level() -> None:
    # msgpack packs only dicts, so such a value is refused either way; the depth is checked
    # first, and says which bound it broke
    with pytest.raises(memgang.InvalidValue, match="deeper than 4"):
        Codec(max_depth=4).pack(nest(lambda inner: Frozen(k=inner), 5))
    with pytest.raises(memgang.InvalidValue, match="msgpack"):
        Codec(max_depth=4).pack(nest(lambda inner: Frozen(k=inner), 4))


def test_a_deep_branch_behind_flat_ones_is_found() -> None:
    codec = Codec(max_depth=3)
    value = {"flat": [1, 2, 3], "also": {"x": 1}, "deep": [[["too deep"]]]}
    with pytest.raises(memgang.InvalidValue, match="deeper than 3"):
        codec.pack(value)
    value["deep"] = [["fits"]]
    assert msgpack.unpackb(codec.pack(value)) == {"flat": [1, 2, 3], "also": {"x": 1},
                                                   "deep": [["fits"]]}


def test_scalars_and_flat_values_pack_as_msgpack() -> None:
    codec = Codec(max_depth=1)
    for value in ("s", 1, 1.5, None, True, b"\x00", {"a": 1}, [1, "x"], ()):
        assert msgpack.unpackb(codec.pack(value), use_list=True) == (
            list(value) if isinstance(value, tuple) else value)
