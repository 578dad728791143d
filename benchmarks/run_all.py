"""Run every benchmark in this folder; collect each target's verdict into one table.

``python benchmarks/run_all.py [--report-only] [--only NAME ...] [--rounds N]
[--quiet-wait [SECONDS]]``: each benchmark runs as its own process (they reserve hugepages and
spawn helpers, and must not disturb one another); its full output is kept in
``benchmarks/results/NAME.txt``, and the Markdown table README shows, with the machine, date,
commit, the physmem measured and the load each benchmark ran under, in
``benchmarks/results/table.md``.

The load: before and after each benchmark the 1-minute load average (and its highest value
while the benchmark ran), the share of CPU time the hypervisor stole (/proc/stat), and the
CPUs other processes kept busy (all busy time less the benchmark's own). Rows of a benchmark
during which the load average exceeded the number of CPUs are marked ``(busy)``.
``--quiet-wait`` first waits, before each benchmark and for at most SECONDS in all (default
600), until the machine is quiet: other processes using under a tenth of its CPUs over 5 s and
a load average under half the CPU count; a wait that runs out is reported, and the benchmark
runs anyway.

Exit status: 0 when every target is met; 1 when any is MISSED, a benchmark fails, or a
benchmark states no verdict at all (``--report-only``: 0 unless a benchmark crashed). A pool
size, overcommit ceiling or hugetlbfs/tracefs mount that differs after a benchmark from before
it (a SIGKILL leaves a benchmark no chance to restore them) is reported as an error row;
run_all.py does not undo it, since another process may have made the change.
Run ``benchmarks/peers/setup.sh`` first so the real peers (page-types, DPDK, psutil) exist.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench import ROUNDS_ENV  # noqa: E402
VERDICT = re.compile(r"^\s+(?P<label>\S.*?)\s{2,}(?P<value>\S.*?)\s+target\s+(?P<target>.+?)\s+"
                     r"(?P<word>met|MISSED)$")
TIMEOUT = 1200
QUIET_WINDOW = 5.0     # seconds over which other processes' CPU use is measured
QUIET_CPU = 0.10       # of the machine's CPUs: at most this busy to count as quiet
CPUS = os.cpu_count() or 1


def benchmarks() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py")
                  if not p.name.startswith("_") and p.name != "run_all.py")


# -- load --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU time so far (all CPUs, seconds): busy, stolen, and all of it."""

    busy: float
    steal: float
    total: float

    @staticmethod
    def now() -> CpuTimes:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal (guest time is inside user).
        user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        hz = os.sysconf("SC_CLK_TCK")
        return CpuTimes((user + nice + system + irq + softirq) / hz, steal / hz,
                        (user + nice + system + idle + iowait + irq + softirq + steal) / hz)


def load_average() -> float:
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


def children_cpu() -> float:
    """CPU seconds of this process's waited-for children (a benchmark and all it ran)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class Load:
    """The load one benchmark ran under."""

    before: float
    highest: float = 0.0
    after: float = 0.0
    steal: float = 0.0          # share of all CPU time
    others: float = 0.0         # CPUs other processes kept busy, on average
    waited: str = ""            # what --quiet-wait found

    @property
    def busy(self) -> bool:
        return max(self.before, self.highest, self.after) > CPUS

    def row(self, name: str) -> str:
        return (f"| {name} | {self.before:.2f} / {self.highest:.2f} / {self.after:.2f} | "
                f"{self.steal:.1%} | {self.others:.2f} | {self.waited or '-'} |"
                + (" busy |" if self.busy else " |"))


def quiet_wait(budget: float) -> tuple[str, float]:
    """Wait (at most ``budget`` s) until other processes use under QUIET_CPU of the CPUs over
    QUIET_WINDOW s and the load average is under half the CPUs; (what happened, s used)."""
    start = time.monotonic()
    while True:
        t0, own0 = CpuTimes.now(), children_cpu()
        time.sleep(QUIET_WINDOW)
        t1 = CpuTimes.now()
        # This process only sleeps here: the busy time is everyone else's.
        others = (t1.busy - t0.busy - (children_cpu() - own0)) / QUIET_WINDOW
        load = load_average()
        used = time.monotonic() - start
        if others < QUIET_CPU * CPUS and load < CPUS / 2:
            return f"quiet after {used:.0f} s", used
        if used + QUIET_WINDOW > budget:
            return (f"TIMEOUT after {used:.0f} s (others {others:.2f} CPUs, "
                    f"load {load:.2f})"), used


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a benchmark so that it restores what it changed: SIGTERM (which it turns into
    unwinding through its finally blocks), and SIGKILL only if that takes over a minute."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stopping(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run(path: Path, load: Load) -> tuple[int, str, float]:
    """Run one benchmark, sampling the load average while it runs; fills ``load``."""
    start = time.monotonic()
    cpu0, own0 = CpuTimes.now(), children_cpu()
    load.highest = load.before
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, str(path)], stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        code = None
        try:
            while code is None:
                try:
                    code = proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    load.highest = max(load.highest, load_average())
                    if time.monotonic() - start > TIMEOUT:
                        stop(proc)
                        code = 124
        finally:
            if code is None:  # this process is stopping (a signal): so does the benchmark
                stop(proc)
        out.seek(0)
        output = out.read() + (f"\nTIMEOUT after {TIMEOUT} s" if code == 124 else "")
    seconds = time.monotonic() - start
    cpu1 = CpuTimes.now()
    load.after = load_average()
    load.highest = max(load.highest, load.after)
    total = cpu1.total - cpu0.total
    load.steal = (cpu1.steal - cpu0.steal) / total if total > 0 else 0.0
    load.others = max(0.0, (cpu1.busy - cpu0.busy - (children_cpu() - own0)) / seconds)
    return code, output, seconds


# -- what a benchmark must leave as it found it ---------------------------------------------
POOLS = Path("/sys/kernel/mm/hugepages")
POOL_FILES = ("nr_hugepages", "nr_overcommit_hugepages")
MOUNT_TYPES = ("hugetlbfs", "tracefs")


def machine_state() -> dict[str, object]:
    """Pool sizes, overcommit ceilings and hugetlbfs/tracefs mounts."""
    state: dict[str, object] = {}
    for d in sorted(POOLS.glob("hugepages-*")):
        for name in POOL_FILES:
            state[f"{d}/{name}"] = int(_read(f"{d}/{name}") or 0)
    state["mounts"] = frozenset(
        (f[2], f[1]) for f in (line.split() for line in _read("/proc/mounts").splitlines())
        if len(f) > 2 and f[2] in MOUNT_TYPES)
    return state


def changed(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """What differs between two machine_state() readings. Reported, never undone here: a
    change may be another process's (a test run beside the benchmarks), and only the one
    that made it knows what to put back."""
    out = []
    for key, was in before.items():
        now = after.get(key)
        if now == was:
            continue
        if key == "mounts":
            assert isinstance(was, frozenset) and isinstance(now, frozenset)
            out += [f"{kind} mounted on {where}" for kind, where in sorted(now - was)]
            out += [f"{kind} on {where} unmounted" for kind, where in sorted(was - now)]
        else:
            out.append(f"{key} {was} -> {now}")
    return out


# -- the header --------------------------------------------------------------------------
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
    return (f"{model}, {CPUS} CPUs, kernel {os.uname().release}, hypervisor {hyper}, "
            f"cpuidle {idle}, guest_halt_poll_ns {poll}")


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def measured() -> str:
    """The physmem the benchmarks import (from an empty directory, as they run it)."""
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run([sys.executable, "-c", "import os, physmem; print(physmem.__version__,"
                            " os.path.dirname(physmem.__file__))"], capture_output=True,
                           text=True, cwd=cwd)
    if r.returncode:
        return "physmem: cannot be imported (pip install . first)"
    version, where = r.stdout.split(None, 1)
    return f"physmem {version} from {where.strip()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true",
                        help="print the table; exit 0 even when targets are missed")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="every benchmark runs N rounds (a quick check; default: each "
                             "benchmark's own)")
    parser.add_argument("--quiet-wait", type=float, nargs="?", const=600.0, metavar="SECONDS",
                        help="before each benchmark, wait for a quiet machine (at most SECONDS "
                             "in all, default 600)")
    args = parser.parse_args()
    # SIGTERM unwinds through run(), which stops the running benchmark the same way.
    signal.signal(signal.SIGTERM, _stopping)
    signal.signal(signal.SIGHUP, _stopping)
    names = {p.stem for p in benchmarks()}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)} (there are: {', '.join(sorted(names))})")
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        os.environ[ROUNDS_ENV] = str(args.rounds)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    rows: list[tuple[str, str, str, str, str]] = []
    loads: dict[str, Load] = {}
    problems: list[str] = []
    budget = args.quiet_wait
    for path in benchmarks():
        if args.only and path.stem not in args.only:
            continue
        waited = ""
        if budget is not None:
            waited, used = quiet_wait(budget)
            budget = max(0.0, budget - used)
            print(f"{path.stem}: {waited}", file=sys.stderr, flush=True)
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        load = loads[path.stem] = Load(before=load_average(), waited=waited)
        state = machine_state()
        code, output, seconds = run(path, load)
        left = changed(state, machine_state())
        if left:
            output += "\nTHE MACHINE CHANGED WHILE IT RAN: " + "; ".join(left)
            problems.append(f"{path.stem}: the machine changed while it ran "
                            f"({'; '.join(left)}): left by it, or changed by another process")
        (results / f"{path.stem}.txt").write_text(output)
        found = [m for m in map(VERDICT.match, output.splitlines()) if m]
        for m in found:
            word = m["word"] + (" (busy)" if load.busy else "")
            rows.append((path.stem, m["label"], " ".join(m["value"].split()), m["target"], word))
        if not found:
            problems.append(f"{path.stem}: stated no verdict (exit {code}); see "
                            f"benchmarks/results/{path.stem}.txt")
        elif code not in (0, 1):
            problems.append(f"{path.stem}: failed (exit {code}); see "
                            f"benchmarks/results/{path.stem}.txt")
        print(f"  done in {seconds:.1f} s; load {load.before:.2f} -> {load.after:.2f} "
              f"(highest {load.highest:.2f}), steal {load.steal:.1%}, others' CPU "
              f"{load.others:.2f}", file=sys.stderr)
    rounds = f" Rounds: {args.rounds} for every benchmark (--rounds)." if args.rounds else ""
    header = (f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}. "
              f"Commit: {commit()}. {measured()}.{rounds} Medians of interleaved rounds; "
              "spread in brackets.")
    table = [header, "",
             f"Load while each benchmark ran: 1-minute load average before / highest / after, "
             f"the CPU time the hypervisor stole, and the CPUs that other processes kept busy "
             f"on average ({CPUS} CPUs; \"busy\": the load average exceeded them, and that "
             "benchmark's rows below say so).", "",
             "| benchmark | load average | steal | others' CPUs | quiet wait | |",
             "| --- | --- | --- | --- | --- | --- |"]
    table += [load.row(name) for name, load in loads.items()]
    table += ["", "| benchmark | measure | result | target | verdict |",
              "| --- | --- | --- | --- | --- |"]
    table += [f"| {b} | {label} | {value} | {target} | {word} |"
              for b, label, value, target, word in rows]
    table += [f"| {p.split(':')[0]} | {p.split(':', 1)[1].strip()} | | | ERROR |"
              for p in problems]
    text = "\n".join(table) + "\n"
    (results / "table.md").write_text(text)
    print(text)
    missed = sum(1 for r in rows if r[4].startswith("MISSED"))
    busy = sum(1 for r in rows if r[4].endswith("(busy)"))
    print(f"{len(rows) - missed} met, {missed} missed, {len(problems)} errors; "
          f"{busy} rows measured on a busy machine")
    if args.report_only:
        return 1 if any("failed" in p for p in problems) else 0
    return 1 if missed or problems else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
