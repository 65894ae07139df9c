"""How scripts.py assembles each Lua script from its helpers (no server needed)."""

import re

from memgang import scripts
from memgang.scripts import PRELUDE_END, _assemble

LIB = """-- header comment

local function a()
  return 1
end
local function b()
  return a()
end

local function c()
  return 2
end

local function d()
  return b()
end

local K = 3"""


def test_only_the_helpers_a_script_uses_are_kept_with_what_they_use() -> None:
    kept = _assemble([LIB], "return d() + K")
    assert "function d(" in kept and "function b(" in kept and "function a(" in kept
    assert "function c(" not in kept
    assert "-- header comment" in kept and "local K = 3" in kept
    assert "function c(" in _assemble([LIB], "return c()")
    assert "function a(" not in _assemble([LIB], "return c()")


def test_every_helper_a_script_calls_is_defined_in_it() -> None:
    lua = scripts.lua_dir()
    helper_names = set()
    for path in lua.glob("_*.lua"):
        helper_names |= set(re.findall(r"^local function (\w+)", path.read_text(), re.M))
    for name, source in scripts.sources().items():
        defined = set(re.findall(r"^local function (\w+)", source, re.M))
        code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
        called = {h for h in helper_names if re.search(rf"\b{h}\s*\(", code)}
        assert called <= defined, (name, sorted(called - defined))


def test_a_prelude_comes_before_the_helpers_only_the_rest_of_the_script_uses() -> None:
    own = f"local x = d() + K\nif x then return x end\n{PRELUDE_END}\nreturn c()\n"
    source = _assemble([LIB], own)
    prelude = source.index("local x = d()")
    assert source.index("local K = 3") < prelude  # constants first
    for needed_first in ("function a(", "function b(", "function d("):
        assert source.index(needed_first) < prelude
    assert source.index("function c(") > prelude  # made only if the prelude falls through
    assert PRELUDE_END not in source and source.rstrip().endswith("return c()")
    plain = _assemble([LIB], "return c()\n")  # no prelude: every helper first, as before
    assert plain.index("function c(") < plain.index("return c()")


def test_no_prelude_calls_a_helper_defined_after_it() -> None:
    lua = scripts.lua_dir()
    helper_names = set()
    for path in lua.glob("_*.lua"):
        helper_names |= set(re.findall(r"^local function (\w+)", path.read_text(), re.M))
    preludes = 0
    for path in lua.glob("[!_]*.lua"):
        own = path.read_text()
        if f"\n{PRELUDE_END}\n" not in own:
            continue
        preludes += 1
        prelude = own.split(f"\n{PRELUDE_END}\n")[0]
        source = scripts.sources()[path.stem]
        at = source.index(prelude)
        code = "\n".join(line.split("--", 1)[0] for line in prelude.splitlines())
        for name in helper_names:
            if re.search(rf"\b{name}\s*\(", code):
                assert f"local function {name}(" in source[:at], (path.stem, name)
    assert preludes >= 1  # lock_acquire.lua has one
