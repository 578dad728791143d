"""Run every benchmark in this folder and print one table of the lines that state a target.

``python benchmarks/run_all.py [--markdown]``: each benchmark runs as its own process (they
reserve hugepages and spawn helpers, and must not disturb one another); its full output is
kept in ``benchmarks/results/NAME.txt``. Needs root for the physical-address benchmarks.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = re.compile(r"target", re.IGNORECASE)


def benchmarks() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")


def run(path: Path) -> tuple[int, str, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    rows: list[tuple[str, str]] = []
    failed = 0
    for path in benchmarks():
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        code, output, seconds = run(path)
        (results / f"{path.stem}.txt").write_text(output)
        lines = [line.strip() for line in output.splitlines()
                 if TARGET.search(line) and "no target" not in line]
        if code != 0:
            failed += 1
            lines.append(f"FAILED (exit {code}); see benchmarks/results/{path.stem}.txt")
        rows.extend((path.stem, line) for line in lines or ["(no target lines)"])
        print(f"  done in {seconds:.1f} s", file=sys.stderr)
    width = max(len(name) for name, _ in rows)
    if args.markdown:
        print("| benchmark | result |\n| --- | --- |")
        for name, line in rows:
            print(f"| {name} | {' '.join(line.split())} |")
    else:
        for name, line in rows:
            print(f"{name:<{width}}  {' '.join(line.split())}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
