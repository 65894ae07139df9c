"""How scripts.py assembles each Lua script from its helpers (no server needed)."""

import re

from memgang import scripts
from memgang.scripts import _needed

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
    kept = _needed(LIB, "return d() + K")
    assert "function d(" in kept and "function b(" in kept and "function a(" in kept
    assert "function c(" not in kept
    assert "-- header comment" in kept and "local K = 3" in kept
    assert "function c(" in _needed(LIB, "return c()")
    assert "function a(" not in _needed(LIB, "return c()")


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
