"""Generate memgang/_sync from memgang/_async, or check that the generated copy is current.

    python tools/gen_sync.py          # regenerate
    python tools/gen_sync.py --check  # exit 1, naming the files, if _sync is out of date

The async shell is the one hand-written implementation; the sync shell is this script's
output (the httpcore way), so the two can never drift apart.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

import unasync

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "memgang" / "_async"
DST = ROOT / "memgang" / "_sync"
HEADER = "# Generated from memgang/_async/{name} by tools/gen_sync.py: do not edit.\n"
REPLACEMENTS = {
    "_async": "_sync",
    "aclose": "close",
    "anext": "next",
    "aiter": "iter",
    "AsyncExitStack": "ExitStack",
    "async_no_retry": "sync_no_retry",
}


def generate(out_dir: Path) -> dict[Path, str]:
    """Return {relative path: generated source} for every module of the async shell."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_src = Path(tmp) / "_async"
        tmp_dst = Path(tmp) / "_sync"
        tmp_src.mkdir()
        files = []
        for path in sorted(SRC.glob("*.py")):
            (tmp_src / path.name).write_text(path.read_text())
            files.append(str(tmp_src / path.name))
        rule = unasync.Rule(fromdir="/_async/", todir="/_sync/",
                            additional_replacements=REPLACEMENTS)
        unasync.unasync_files(files, [rule])
        out = {}
        for path in sorted(tmp_dst.glob("*.py")):
            out[Path(path.name)] = HEADER.format(name=path.name) + path.read_text()
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    args = parser.parse_args(argv)
    generated = generate(DST)
    stale = []
    for rel, text in generated.items():
        target = DST / rel
        current = target.read_text() if target.exists() else ""
        if current != text:
            stale.append(rel)
            if args.check:
                diff = difflib.unified_diff(current.splitlines(), text.splitlines(),
                                            str(target), "generated", lineterm="", n=1)
                print("\n".join(list(diff)[:40]), file=sys.stderr)
            else:
                target.write_text(text)
    extra = [p.name for p in DST.glob("*.py") if Path(p.name) not in generated]
    if args.check and (stale or extra):
        print(f"memgang/_sync is out of date: {[str(p) for p in stale] + extra}; "
              f"run: python tools/gen_sync.py", file=sys.stderr)
        return 1
    if not args.check:
        for name in extra:
            (DST / name).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
