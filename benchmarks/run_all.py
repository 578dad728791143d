"""Run every benchmark in this folder; collect each target's verdict into one table.

``python benchmarks/run_all.py [--report-only] [--only NAME ...]``: each benchmark runs as its
own process (they reserve hugepages and spawn helpers, and must not disturb one another); its
full output is kept in ``benchmarks/results/NAME.txt``, and the Markdown table README shows,
with the machine, date and commit, in ``benchmarks/results/table.md``.

Exit status: 0 when every target is met; 1 when any is MISSED, a benchmark fails, or a
benchmark states no verdict at all (``--report-only``: 0 unless a benchmark crashed).
Run ``benchmarks/peers/setup.sh`` first so the real peers (page-types, DPDK, psutil) exist.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERDICT = re.compile(r"^\s+(?P<label>\S.*?)\s{2,}(?P<value>\S.*?)\s+target\s+(?P<target>.+?)\s+"
                     r"(?P<word>met|MISSED)$")


def benchmarks() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py")
                  if not p.name.startswith("_") and p.name != "run_all.py")


def run(path: Path) -> tuple[int, str, float]:
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                              timeout=1200)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, out = 124, f"{exc.stdout or ''}{exc.stderr or ''}\nTIMEOUT after 1200 s"
    return code, out, time.monotonic() - start


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def machine() -> str:
    """CPU model, cores, kernel, hypervisor and the halt-poll setting the figures ran under."""
    model = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                  if line.startswith("model name")), platform.machine())
    hyper = "none"
    if "hypervisor" in _read("/proc/cpuinfo"):
        # lscpu asks CPUID for the vendor; the kernel command line names Firecracker.
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
            hyper = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                          if line.startswith("Hypervisor vendor")), "unknown")
        except OSError:
            hyper = "unknown"
        if "firecracker" in _read("/proc/cmdline"):
            hyper += " (Firecracker)"
    poll = _read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") or "n/a"
    idle = _read("/sys/devices/system/cpu/cpuidle/current_driver") or "n/a"
    return (f"{model}, {os.cpu_count()} CPUs, kernel {os.uname().release}, hypervisor {hyper}, "
            f"cpuidle {idle}, guest_halt_poll_ns {poll}")


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true",
                        help="print the table; exit 0 even when targets are missed")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    args = parser.parse_args()
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    rows: list[tuple[str, str, str, str, str]] = []
    problems: list[str] = []
    for path in benchmarks():
        if args.only and path.stem not in args.only:
            continue
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        code, output, seconds = run(path)
        (results / f"{path.stem}.txt").write_text(output)
        found = [m for m in map(VERDICT.match, output.splitlines()) if m]
        for m in found:
            rows.append((path.stem, m["label"], " ".join(m["value"].split()), m["target"],
                         m["word"]))
        if not found:
            problems.append(f"{path.stem}: stated no verdict (exit {code}); see "
                            f"benchmarks/results/{path.stem}.txt")
        elif code not in (0, 1):
            problems.append(f"{path.stem}: failed (exit {code}); see "
                            f"benchmarks/results/{path.stem}.txt")
        print(f"  done in {seconds:.1f} s", file=sys.stderr)
    header = (f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}. "
              f"Commit: {commit()}. Medians of interleaved rounds; spread in brackets.")
    table = [header, "", "| benchmark | measure | result | target | verdict |",
             "| --- | --- | --- | --- | --- |"]
    table += [f"| {b} | {label} | {value} | {target} | {word} |"
              for b, label, value, target, word in rows]
    table += [f"| {p.split(':')[0]} | {p.split(':', 1)[1].strip()} | | | ERROR |"
              for p in problems]
    text = "\n".join(table) + "\n"
    (results / "table.md").write_text(text)
    print(text)
    missed = sum(1 for r in rows if r[4] == "MISSED")
    print(f"{len(rows) - missed} met, {missed} missed, {len(problems)} errors")
    if args.report_only:
        return 1 if any("failed" in p for p in problems) else 0
    return 1 if missed or problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
