"""Run every benchmark and print one line per figure: name, ratio, goal, pass/fail.

    python -m benchmarks            # all of them
    python -m benchmarks store      # only benchmarks/bench_store.py
    python -m benchmarks --quick    # smaller sizes, for a smoke run
    python -m benchmarks --json out.json

Exit status is 0 when every figure meets its goal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _modules(selected: list[str]) -> list[str]:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if selected:
        names = [n for n in names if n.removeprefix("bench_") in selected or n in selected]
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("only", nargs="*", help="benchmark names (the part after bench_)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    args = parser.parse_args(argv)

    figures = []
    for name in _modules(args.only):
        module = importlib.import_module(f"benchmarks.{name}")
        started = time.perf_counter()
        print(f"# {name} ...", flush=True)
        results = module.run(quick=args.quick)
        for figure in results:
            print(figure.line(), flush=True)
        print(f"# {name} took {time.perf_counter() - started:.1f} s", flush=True)
        figures.extend(results)
    if args.json:
        args.json.write_text(json.dumps([f.to_dict() for f in figures], indent=2))
    failed = [f for f in figures if not f.passed]
    print(f"{len(figures) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
