"""``memgang bench ...``: the benchmarks of a source checkout, from the command line.

``benchmarks/`` is not inside the wheel: these commands work from a source checkout (or with
its root on ``PYTHONPATH``) and say so clearly otherwise.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import click

from .cli import EXIT_USAGE, fail, main

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True,
                 "help_option_names": []}


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks.<name>``, looked up on sys.path, then next to this package's checkout."""
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", f"benchmarks.{name}"):
            raise
    root = Path(__file__).resolve().parent.parent
    if (root / "benchmarks" / f"{name}.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
        return importlib.import_module(f"benchmarks.{name}")
    fail(f"benchmarks.{name} is not installed: the benchmarks ship with the source checkout, "
         f"not the wheel. Run this from a checkout of memgang (or put its root on PYTHONPATH), "
         f"e.g. `python -m benchmarks.{name}`", EXIT_USAGE)
    raise AssertionError("unreachable")


@main.group()
def bench() -> None:
    """Benchmarks (from a source checkout): memgang side by side with its peers."""


@bench.command(context_settings=_PASS_THROUGH, add_help_option=False)
@click.pass_context
def locks(ctx: click.Context) -> None:
    """Lock benchmark: memgang's read/write/exclusive leases against the BLPOP token floor,
    redis-py Lock, python-redis-lock and pottery, in one run. Takes the options of
    `python -m benchmarks.locks` (--json, --quick, --workers, --impl, ...; --help lists them).
    """
    module = load_benchmark("locks")
    sys.exit(module.main(list(ctx.args)))
