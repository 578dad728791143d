"""``physmem exporter`` against real components: a real Prometheus server scraping it, promtool
linting its output and the alert rules, node_exporter-style textfile readers, the kernel's own
files read directly as the reference."""
from __future__ import annotations

import json
import mmap
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="prometheus-client is not installed (pip install '.[test]')")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from physmem.exporter import Exporter, HolderReading, read_holders  # noqa: E402
from physmem.hugepages import audit  # noqa: E402

from conftest import python_env, settled  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "contrib" / "prometheus" / "physmem.rules.yml"
HUGEPAGES = Path("/sys/kernel/mm/hugepages")
MIB2 = 2 << 20
STARTUP = 20.0     # seconds any process gets to come up before the test fails


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = (f"{name} is not installed (Debian package 'prometheus'; .ci/run installs it)")
        print(f"SKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _read_line(p: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of ``p``, or fail after ``timeout`` (a thread: no hang)."""
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(timeout)
    if not box or not box[0]:
        _stop(p)
        raise AssertionError(f"no start-up line within {timeout} s; stderr: {p.stderr.read() if p.stderr else ''}")
    return box[0].strip()


@pytest.fixture
def start_exporter(request: pytest.FixtureRequest) -> Callable[..., tuple[subprocess.Popen, str]]:
    """``start(*args)`` runs ``physmem exporter ARGS`` as a separate program; stopped at the end.
    Returns the process and, for HTTP mode, the /metrics URL it printed."""
    procs: list[subprocess.Popen] = []
    request.addfinalizer(lambda: [_stop(p) for p in procs])

    def start(*args: str) -> tuple[subprocess.Popen, str]:
        env, cwd = python_env()
        p = subprocess.Popen([sys.executable, "-m", "physmem.cli", "exporter", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, cwd=cwd)
        procs.append(p)
        line = _read_line(p, STARTUP)
        return p, line.rpartition(" ")[2]

    return start


def _wait_for(check: Callable[[], object], what: str, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r})")


@pytest.fixture
def prometheus(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """``start(metrics_url, rules=None)``: a real Prometheus scraping that URL every second
    (and evaluating the rule file ``rules`` every second); returns its base URL once the
    target is up. Stopped at the end of the test."""
    binary = _tool("prometheus")
    procs: list[subprocess.Popen] = []
    request.addfinalizer(lambda: [_stop(p) for p in procs])

    def start(metrics_url: str, rules: Path | None = None) -> str:
        target = urllib.parse.urlsplit(metrics_url)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files: ['{rules}']\n" if rules else "")
            + "scrape_configs:\n  - job_name: physmem\n"
            f"    metrics_path: {target.path}\n"
            f"    static_configs:\n      - targets: ['{target.netloc}']\n")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        p = subprocess.Popen([binary, f"--config.file={config}",
                              f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                              f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        procs.append(p)

        def target_up() -> bool:
            if p.poll() is not None:
                raise AssertionError(f"prometheus exited: {p.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            targets = json.loads(_get(f"{base}/api/v1/targets"))["data"]["activeTargets"]
            return any(t["health"] == "up" for t in targets)

        _wait_for(target_up, "the exporter target up in Prometheus", STARTUP)
        return base

    return start


def _query(base: str, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
    body = json.loads(_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    assert body["status"] == "success", body
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("job", "instance", "__name__"))):
            float(r["value"][1]) for r in body["data"]["result"]}


def _sysfs_pool(size_kb: int, name: str) -> int:
    return int((HUGEPAGES / f"hugepages-{size_kb}kB" / name).read_text())


def test_prometheus_scrapes_the_pools_and_sees_them_change(is_root, start_exporter, prometheus,
                                                           hugepage_pool):
    _, url = start_exporter("--listen", "127.0.0.1:0", "--interval", "30")
    base = prometheus(url)
    sizes = sorted(int(d.name[10:-2]) for d in HUGEPAGES.iterdir())

    def matches_sysfs() -> bool:
        got = _query(base, 'physmem_hugepages_pages{node="all",state=~"free|total"}')
        want = {(("node", "all"), ("size_bytes", str(kb * 1024)), ("state", state)):
                float(_sysfs_pool(kb, f"{'free' if state == 'free' else 'nr'}_hugepages"))
                for kb in sizes for state in ("free", "total")}
        return got == want or print(got, want) or False   # type: ignore[func-returns-value]

    _wait_for(matches_sysfs, "Prometheus's pools equal to sysfs", 10)
    before = _sysfs_pool(2048, "free_hugepages")
    hugepage_pool(before + 3)
    after = _sysfs_pool(2048, "free_hugepages")
    assert after >= before + 3
    expr = 'physmem_hugepages_pages{node="all",state="free",size_bytes="2097152"}'
    seen = _wait_for(lambda: _query(base, expr).get(
        (("node", "all"), ("size_bytes", "2097152"), ("state", "free"))) == after,
        f"Prometheus reporting {after} free 2 MiB pages after the next scrape", 10)
    assert seen
    _wait_for(matches_sysfs, "Prometheus's pools equal to sysfs after the change", 10)


def test_promtool_accepts_a_scrape_and_the_rules(is_root, start_exporter, tmp_path):
    promtool = _tool("promtool")
    _, url = start_exporter("--listen", "127.0.0.1:0", "--interval", "30")
    # Wait for the background readings so the lint sees every metric family.
    _wait_for(lambda: b'physmem_reading_age_seconds{reading="frames"}' in _get(url),
              "the first background scan", STARTUP)
    scrape = _get(url)
    r = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, timeout=30)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    # The rules' own unit tests: each alert fires on the series it is meant for, only those.
    r = subprocess.run([promtool, "test", "rules", "physmem.rules.test.yml"], capture_output=True,
                       text=True, timeout=30, cwd=RULES.parent)
    assert r.returncode == 0, r.stdout + r.stderr


def test_textfile_is_replaced_atomically(is_root, start_exporter, tmp_path):
    proc, _ = start_exporter("--textfile", str(tmp_path), "--interval", "0.01")
    path = tmp_path / "physmem.prom"
    rewrites, reads = 0, 0
    last_inode = None
    deadline = time.monotonic() + 40
    while rewrites < 100:
        assert time.monotonic() < deadline, f"only {rewrites} rewrites seen in 40 s"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            assert last_inode is None, "the file vanished between two rewrites"
            continue
        try:
            inode = os.fstat(fd).st_ino
            data = b""
            while chunk := os.read(fd, 1 << 16):
                data += chunk
        finally:
            os.close(fd)
        reads += 1
        text = data.decode()
        # Whole: ends with the family written last, and every line parses.
        assert text.endswith("\n") and "\nphysmem_scrape_duration_seconds " in text, text[-300:]
        names = {f.name for f in text_string_to_metric_families(text)}
        # The first version already has the background readings (frames: a kpageflags scan).
        assert {"physmem_hugepages_pages", "physmem_frames_bytes",
                "physmem_scrape_duration_seconds"} <= names
        if inode != last_inode:
            rewrites += last_inode is not None
            last_inode = inode
    assert proc.poll() is None
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "physmem.prom"]
    _stop(proc)
    assert proc.returncode == 0
    # Temporary files never end in .prom (node_exporter would read them); none stays behind.
    assert not [n for n in leftovers if n.endswith(".prom")]
    assert not [p.name for p in tmp_path.iterdir() if p.name != "physmem.prom"]


def test_textfile_once_parses(is_root, tmp_path):
    env, cwd = python_env()
    r = subprocess.run([sys.executable, "-m", "physmem.cli", "exporter", "--textfile", str(tmp_path),
                        "--once"], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "physmem.prom").read_text()
    s = _samples(text)
    for kb in sorted(int(d.name[10:-2]) for d in HUGEPAGES.iterdir()):
        assert _value(s, "physmem_hugepages_pages", size_bytes=str(kb * 1024), node="all",
                      state="total") == _sysfs_pool(kb, "nr_hugepages")
    # --once takes the background readings too, synchronously.
    for reading in ("contiguity", "frames", "holders", "doctor"):
        assert _value(s, "physmem_reading_errors_total", reading=reading) == 0
        assert _value(s, "physmem_reading_age_seconds", reading=reading) is not None


def test_textfile_directory_without_write_permission(run_unprivileged, tmp_path, request):
    import tempfile

    def cli(directory: Path) -> subprocess.CompletedProcess:
        return run_unprivileged(f"""
            import sys
            from physmem.cli import main
            sys.exit(main(["exporter", "--textfile", {str(directory)!r}, "--once"]))
        """)

    # Under a 0700 directory: uid 65534 cannot even reach it.
    r = cli(tmp_path)
    assert r.returncode == 1 and "--textfile" in r.stderr and "cannot be reached" in r.stderr, r.stderr
    # Reachable and readable but not writable.
    shared = Path(tempfile.mkdtemp(prefix="physmem-exporter-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o755)
    r = cli(shared)
    assert r.returncode == 1, r.stderr   # the system refused: exit status 1
    assert "--textfile" in r.stderr and "Permission denied" in r.stderr and "Traceback" not in r.stderr
    assert list(shared.iterdir()) == []   # no temporary file left behind


def test_json_is_one_scrape(is_root):
    env, cwd = python_env()
    r = subprocess.run([sys.executable, "-m", "physmem.cli", "exporter", "--json"],
                       capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    assert r.returncode == 0, r.stderr
    families = {f["name"]: f for f in json.loads(r.stdout)}
    pools = {(x["labels"]["size_bytes"], x["labels"]["state"]): x["value"]
             for x in families["physmem_hugepages_pages"]["samples"] if x["labels"]["node"] == "all"}
    for kb in sorted(int(d.name[10:-2]) for d in HUGEPAGES.iterdir()):
        assert pools[(str(kb * 1024), "total")] == _sysfs_pool(kb, "nr_hugepages")
        assert pools[(str(kb * 1024), "free")] == _sysfs_pool(kb, "free_hugepages")
    assert families["physmem_vmstat_thp_fault_alloc"]["type"] == "counter"
    assert "physmem_frames_bytes" in families   # the background readings ran once


def test_scrape_is_fast_while_a_whole_machine_scan_runs(is_root, start_exporter):
    proc, url = start_exporter("--listen", "127.0.0.1:0", "--interval", "0.05")
    timings: list[float] = []
    scans: list[float] = []
    deadline = time.monotonic() + 30
    while len(timings) < 10 or not scans:
        assert time.monotonic() < deadline, f"caught a scan in progress only {len(timings)} times"
        t0 = time.perf_counter()
        text = _get(url).decode()
        elapsed = time.perf_counter() - t0
        s = _samples(text)
        running = [r for r in ("frames", "contiguity")
                   if _value(s, "physmem_reading_running", reading=r) == 1]
        # The first scan has no duration yet: its scrapes count once one has finished.
        if running:
            timings.append(elapsed)
            scans += [d for r in running
                      if (d := _value(s, "physmem_reading_duration_seconds", reading=r))]
            assert _value(s, "physmem_scrape_errors_total", section="hugepages") == 0
    proc.terminate()   # SIGTERM: a clean stop, exit status 0
    assert proc.wait(10) == 0
    print(f"scrape during a kpageflags scan: max {max(timings) * 1000:.1f} ms, "
          f"median {sorted(timings)[len(timings) // 2] * 1000:.1f} ms; "
          f"scans took {min(scans) * 1000:.0f}-{max(scans) * 1000:.0f} ms")
    # Served from the last result, not after the scan: a scrape that waited for the scan would
    # take about as long as it. Measured against the scan's own time on the same machine, so
    # a busy machine (which slows both) does not decide the outcome.
    assert scans and max(timings) < 0.25 * min(scans), (timings, scans)


def test_unprivileged_leaves_root_metrics_out_and_says_why(run_unprivileged):
    r = run_unprivileged("""
        from physmem.exporter import Exporter
        e = Exporter()
        e.refresh()
        print(e.exposition().decode())
    """)
    assert r.returncode == 0, r.stderr
    s = _samples(r.stdout)
    names = {name for name, _ in s}
    # Readable by anyone: present. Root-only sources: absent, not zero.
    assert "physmem_hugepages_pages" in names and "physmem_buddyinfo_free_blocks" in names
    for gone in ("physmem_pagetypeinfo_free_blocks", "physmem_frames_bytes",
                 "physmem_contiguity_longest_free_run_bytes"):
        assert gone not in names
        info = [dict(labels) for (name, labels) in s
                if name == "physmem_metric_unavailable_info" and dict(labels)["metric"] == gone]
        assert info and "permission denied" in info[0]["reason"].lower(), (gone, info)
    # The sources really are closed to uid 65534 (mode 0400 root / CAP_SYS_ADMIN).
    assert os.stat("/proc/pagetypeinfo").st_mode & 0o077 == 0
    assert os.stat("/proc/kpageflags").st_mode & 0o077 == 0
    # Unprivileged is not an error, and 2 MiB figures from buddyinfo are still there.
    assert _value(s, "physmem_reading_errors_total", reading="frames") == 0
    assert any(name == "physmem_contiguity_blocks" and dict(labels)["size_bytes"] == str(MIB2)
               for name, labels in s)


def test_failed_reading_is_an_error_metric_and_the_last_result_stays(is_root):
    calls = {"n": 0}

    def holders() -> HolderReading:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("the audit broke")
        return HolderReading((), {MIB2: 12345}, 0)

    e = Exporter(holders=holders)
    e.readings["holders"].run()
    assert e.readings["holders"].last_error is None
    first = _samples(e.exposition().decode())
    e.readings["holders"].run()
    second = _samples(e.exposition().decode())
    assert _value(first, "physmem_reading_errors_total", reading="holders") == 0
    assert _value(second, "physmem_reading_errors_total", reading="holders") == 1
    # Served from the last good result, older now.
    assert _value(second, "physmem_hugepages_orphaned_bytes", size_bytes=str(MIB2)) == 12345
    assert e.readings["holders"].last_error == "OSError: the audit broke"
    assert (_value(second, "physmem_reading_age_seconds", reading="holders")
            > _value(first, "physmem_reading_age_seconds", reading="holders"))
    assert _value(second, "physmem_hugepages_pages", size_bytes=str(MIB2), node="all",
                  state="total") is not None


def _raw_buddyinfo() -> dict[tuple[str, str], list[int]]:
    fd = os.open("/proc/buddyinfo", os.O_RDONLY)
    try:
        data = os.pread(fd, 1 << 16, 0).decode()
    finally:
        os.close(fd)
    out = {}
    for line in data.splitlines():
        w = line.replace(",", " ").split()
        out[(w[1], w[3])] = [int(v) for v in w[4:]]
    return out


def test_buddy_figures_match_the_kernel_files(is_root):
    e = Exporter()

    def check() -> None:
        s = _samples(e.exposition().decode())
        raw = _raw_buddyinfo()
        order_2m = (MIB2 // mmap.PAGESIZE).bit_length() - 1
        for (node, zone), counts in raw.items():
            for order, n in enumerate(counts):
                assert _value(s, "physmem_buddyinfo_free_blocks", node=node, zone=zone,
                              order=str(order)) == n
                # pagetypeinfo splits the same free blocks by migrate type.
                by_type = [v for (name, labels), v in s.items()
                           if name == "physmem_pagetypeinfo_free_blocks"
                           and {("node", node), ("zone", zone), ("order", str(order))} <= labels]
                assert by_type and sum(by_type) == n
            want = sum(c << (k - order_2m) for k, c in enumerate(counts) if k >= order_2m)
            assert _value(s, "physmem_contiguity_blocks", node=node, zone=zone,
                          size_bytes=str(MIB2), state="free_now") == want

    settled(check, attempts=10)


GIB = 1 << 30


def _forecast_samples(e: Exporter) -> dict:
    e.readings["contiguity"].run()
    assert e.readings["contiguity"].last_error is None
    return _samples(e.exposition().decode())


def test_forecast_figures_follow_the_forecast_and_the_buddy_allocator(is_root):
    from physmem.analysis.contiguity import forecast

    e = Exporter()

    def check() -> None:
        # The exporter's reading is taken between two forecasts: free memory churns (after a
        # busy test run, hundreds of blocks' pages leave LRU batches within a second), so the
        # exporter must agree with the state before it or after it, or lie between the two.
        before = forecast()
        s = _forecast_samples(e)
        fc = forecast()
        assert fc.zones
        earlier = {(z.node, z.zone, z.size): z for z in before.zones}
        for z in fc.zones:
            labels = {"node": str(z.node), "zone": z.zone, "size_bytes": str(z.size)}
            z0 = earlier.get((z.node, z.zone, z.size), z)
            # Blocks are naturally aligned and counted from the same frames; a few 2 MiB
            # blocks may change state between the scans, a 1 GiB one hardly ever.
            tol = 1 if z.size >= GIB else max(16, z.blocks // 50)
            for state, want, want0 in (
                    ("free_now", z.free_now, z0.free_now),
                    ("after_compaction", z.free_now + z.after_compaction,
                     z0.free_now + z0.after_compaction),
                    ("blocked", z.blocked, z0.blocked)):
                got = _value(s, "physmem_contiguity_blocks", state=state, **labels)
                lo, hi = min(want, want0) - tol, max(want, want0) + tol
                assert got is not None and lo <= got <= hi, (labels, state, want0, got, want)
            for state, want in (("now", z.longest_run_now),
                                ("after_compaction", z.longest_run_after_compaction)):
                got = _value(s, "physmem_contiguity_longest_obtainable_run_bytes", state=state,
                             **labels)
                assert got is not None and got % z.size == 0, (labels, state, got)
                # One block turning busy between the two scans splits a run in two, the
                # longer part at least half of it: the readings agree within the block
                # tolerance, or up to such a split.
                lo, hi = sorted((got, want))
                assert (hi - lo <= tol * z.size or lo >= hi // 2 - tol * z.size), (
                    labels, state, got, want)
        # Independent of physmem: the kernel's buddyinfo, read raw. A wholly free aligned
        # 2 MiB block is a free buddy block of order >= 9 (or part of a larger one).
        raw = _raw_buddyinfo()
        order_2m = (MIB2 // mmap.PAGESIZE).bit_length() - 1
        for (node, zone), counts in raw.items():
            blocks_2m = sum(c << (k - order_2m) for k, c in enumerate(counts) if k >= order_2m)
            got = _value(s, "physmem_contiguity_blocks", node=node, zone=zone,
                         size_bytes=str(MIB2), state="free_now")
            if got is None:   # a zone too small for a 2 MiB block
                assert blocks_2m == 0
                continue
            assert abs(got - blocks_2m) <= max(16, blocks_2m // 50), (zone, got, blocks_2m)
            # A free 1 GiB block is 512 free 2 MiB blocks: no more 1 GiB blocks than that.
            gig = _value(s, "physmem_contiguity_blocks", node=node, zone=zone,
                         size_bytes=str(GIB), state="free_now")
            if gig is not None:
                assert gig <= (blocks_2m + 16) // (GIB // MIB2), (zone, gig, blocks_2m)
            # The longest free run fits in the zone's free memory.
            free_bytes = sum(c << k for k, c in enumerate(counts)) * mmap.PAGESIZE
            run = _value(s, "physmem_contiguity_longest_free_run_bytes", node=node, zone=zone)
            assert run is not None and run <= free_bytes + 64 * MIB2, (zone, run, free_bytes)

    settled(check, attempts=4)


def test_vmstat_counters_follow_the_kernel(is_root):
    def raw() -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in
                                         Path("/proc/vmstat").read_text().splitlines())}
    before = raw()
    s = _samples(Exporter().exposition().decode())
    after = raw()
    names = [k for k in before if k.startswith(("thp_", "compact_", "htlb_"))]
    assert "thp_fault_alloc" in names and "compact_stall" in names
    for k in names:
        v = _value(s, f"physmem_vmstat_{k}_total")
        assert v is not None and before[k] <= v <= after[k], k


def test_frames_count_the_hugetlb_pool(is_root, hugepage_pool):
    hugepage_pool(4)
    e = Exporter()

    def check() -> None:
        e.readings["frames"].run()
        s = _samples(e.exposition().decode())
        pool_bytes = sum(int((d / "nr_hugepages").read_text()) * int(d.name[10:-2]) * 1024
                         for d in HUGEPAGES.iterdir())
        assert _value(s, "physmem_frames_bytes", **{"class": "hugetlb"}) == pool_bytes >= 4 * MIB2

    settled(check)


_HOLDER = r"""
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, b"pm-holder-test", 0, 0, 0)          # PR_SET_NAME: the comm the exporter reports
m = mmap.mmap(-1, 2 * 2097152, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40000)  # MAP_HUGETLB
m[0] = 1; m[2097152] = 1
f = open(sys.argv[1], "r+b")
shared = mmap.mmap(f.fileno(), 2097152)
shared[0] = 1
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def hugetlbfs(request: pytest.FixtureRequest, tmp_path: Path, is_root: None) -> Path:
    """A private hugetlbfs mount of 2 MiB pages, unmounted at the end."""
    where = tmp_path / "huge"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", str(where)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount hugetlbfs: {r.stderr.strip()}")

    def unmount() -> None:
        for p in where.iterdir():
            p.unlink()
        subprocess.run(["umount", str(where)], check=False)

    request.addfinalizer(unmount)
    return where


def test_holders_and_orphaned_hugetlbfs_files(is_root, hugepage_pool, hugetlbfs, request):
    hugepage_pool(4)
    baseline = read_holders().orphaned.get(MIB2, 0)
    # An orphan: a file whose page stays in the pool after its writer is gone.
    orphan = hugetlbfs / "orphan"
    with open(orphan, "w+b") as f:
        f.truncate(MIB2)
        m = mmap.mmap(f.fileno(), MIB2)
        m[0] = 1
        m.close()
    assert os.stat(orphan).st_blocks * 512 == MIB2   # the kernel's own count for the file
    used = hugetlbfs / "used"
    used.write_bytes(b"")
    os.truncate(used, MIB2)
    env, cwd = python_env()
    child = subprocess.Popen([sys.executable, "-c", _HOLDER, str(used)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    request.addfinalizer(lambda: _stop(child))
    assert _read_line(child, STARTUP) == "ready"
    e = Exporter()
    e.readings["holders"].run()
    s = _samples(e.exposition().decode())
    # The child maps 2 private pages and 1 page of the shared file: 3 pages of 2 MiB.
    assert _value(s, "physmem_hugepages_mapped_bytes", process="pm-holder-test",
                  size_bytes=str(MIB2)) == 3 * MIB2
    # Only the unmapped file counts as orphaned.
    assert _value(s, "physmem_hugepages_orphaned_bytes", size_bytes=str(MIB2)) == baseline + MIB2
    # The same figure as the audit's orphan list, each orphan's size from the kernel's own
    # count for the file (st_blocks), not from physmem.
    orphans = [f for f in audit().orphans if f.page_size == MIB2]
    assert str(orphan) in {f.path for f in orphans} and str(used) not in {f.path for f in orphans}
    assert (_value(s, "physmem_hugepages_orphaned_bytes", size_bytes=str(MIB2))
            == sum(f.bytes for f in orphans) == sum(os.stat(f.path).st_blocks * 512
                                                    for f in orphans))
    _stop(child)
    # Its writer gone, the shared file's page is orphaned too.
    assert read_holders().orphaned[MIB2] == baseline + 2 * MIB2
    e.readings["holders"].run()
    s = _samples(e.exposition().decode())
    assert _value(s, "physmem_hugepages_orphaned_bytes", size_bytes=str(MIB2)) == \
        sum(os.stat(f.path).st_blocks * 512 for f in audit().orphans if f.page_size == MIB2)


def test_cli_arguments_are_checked_and_a_missing_library_is_explained(tmp_path):
    env, cwd = python_env()

    def cli(*args: str, code: str = "") -> subprocess.CompletedProcess:
        prog = (code + "import sys; from physmem.cli import main; sys.exit(main(sys.argv[1:]))")
        return subprocess.run([sys.executable, "-c", prog, "exporter", *args], capture_output=True,
                              text=True, env=env, cwd=cwd, timeout=60)

    for args, flag in ((["--interval", "0"], "--interval"), (["--interval", "nan"], "--interval"),
                       (["--listen", "localhost"], "--listen"),
                       (["--listen", "127.0.0.1:70000"], "--listen"),
                       (["--listen", "127.0.0.1:\u00b2"], "--listen"),
                       (["--textfile", str(tmp_path / "missing"), "--once"], "--textfile"),
                       (["--json", "--textfile", str(tmp_path)], "--json"),
                       (["--nfd", str(tmp_path / "missing"), "--once"], "--nfd")):
        r = cli(*args)
        assert r.returncode == 2 and flag in r.stderr, (args, r.stderr)   # usage error
        assert "Traceback" not in r.stderr
    # A port another program holds: a clear refusal, not a traceback.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = cli("--listen", f"127.0.0.1:{s.getsockname()[1]}")
    assert r.returncode == 1 and "--listen" in r.stderr and "Traceback" not in r.stderr
    r = cli("--textfile", str(tmp_path), "--once", code="import sys; sys.modules['prometheus_client'] = None; ")
    assert r.returncode == 6 and "pip install 'physmem[exporter]'" in r.stderr, r.stderr
    assert not (tmp_path / "physmem.prom").exists()


def test_a_broken_file_is_a_scrape_error_not_a_failed_scrape(tmp_path):
    # A captured /proc whose vmstat is garbage and which has no pagetypeinfo at all.
    (tmp_path / "buddyinfo").write_bytes(Path("/proc/buddyinfo").read_bytes())
    (tmp_path / "vmstat").write_text("thp_fault_alloc lots\n")
    e = Exporter(proc_root=str(tmp_path))
    first = _samples(e.exposition().decode())
    second = _samples(e.exposition().decode())
    assert _value(first, "physmem_scrape_errors_total", section="vmstat") == 1
    assert _value(second, "physmem_scrape_errors_total", section="vmstat") == 2
    assert _value(second, "physmem_scrape_errors_total", section="pagetypeinfo") == 2
    assert _value(second, "physmem_scrape_errors_total", section="buddyinfo") == 0
    assert _value(second, "physmem_scrape_errors_total", section="hugepages") == 0
    raw = _raw_buddyinfo()
    node, zone = next(iter(raw))
    assert _value(second, "physmem_buddyinfo_free_blocks", node=node, zone=zone, order="0") is not None
    assert not any(name.startswith("physmem_vmstat_") for name, _ in second)


# --- hardening: a shared textfile directory, slow and hostile HTTP clients -------------------

def test_textfile_never_follows_a_planted_symlink(is_root, tmp_path):
    """A local user who can write to DIR plants symlinks at the temporary name a writer would
    use (prometheus-client's was ``physmem.prom.<pid>.<thread id>``) and at the file itself:
    root must overwrite neither target."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's secret\n")
    victim.chmod(0o600)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    e = Exporter()
    planted = shared / f"physmem.prom.{os.getpid()}.{threading.current_thread().ident}"
    planted.symlink_to(victim)
    path = e.write_textfile(str(shared))
    assert victim.read_bytes() == b"root's secret\n" and victim.stat().st_mode & 0o777 == 0o600
    st = os.lstat(path)
    # A regular file readable by node_exporter running as another user, whole.
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o644, oct(st.st_mode)
    assert "physmem_hugepages_pages" in {f.name for f in
                                         text_string_to_metric_families(Path(path).read_text())}
    # A symlink at the file's own name is replaced, not written through.
    os.unlink(path)
    os.symlink(victim, path)
    e.write_textfile(str(shared))
    assert victim.read_bytes() == b"root's secret\n"
    assert stat.S_ISREG(os.lstat(path).st_mode)
    # Nothing left behind but the planted link and the file.
    assert sorted(p.name for p in shared.iterdir()) == sorted(["physmem.prom", planted.name])


def test_textfile_temporary_names_are_unpredictable_dotfiles(tmp_path, monkeypatch):
    """Each write takes a fresh name that node_exporter (``*.prom``) and NFD (dotfiles) skip."""
    from physmem._replace import replace_file

    seen: list[str] = []
    real_rename = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: (seen.append(os.path.basename(a)),
                                                     real_rename(a, b))[1])
    for _ in range(3):
        replace_file(str(tmp_path), "physmem.prom", b"x 1\n")
    assert len(set(seen)) == 3, seen
    assert all(n.startswith(".physmem.prom.") and not n.endswith(".prom") for n in seen), seen
    assert [p.name for p in tmp_path.iterdir()] == ["physmem.prom"]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _port_of(url: str) -> int:
    return urllib.parse.urlsplit(url).port  # type: ignore[return-value]


SLOW_CLIENTS = 300


def test_scrapes_are_served_while_300_slow_clients_hang_on(is_root, start_exporter):
    """300 clients each send half a request and wait. Scrapes are still answered within a
    deadline, the exporter holds no thread per client and its memory stays put; and it
    closes the silent connections itself, after its timeout."""
    proc, url = start_exporter("--listen", "127.0.0.1:0", "--interval", "30")
    port = _port_of(url)
    _get(url)
    # The first background readings allocate their arrays: measure after them.
    _wait_for(lambda: b"physmem_frames_bytes{" in (text := _get(url))
              and b"physmem_contiguity_longest_free_run_bytes{" in text,
              "the first background scans", 60)
    _get(url)
    rss0, threads0 = _rss_mib(proc.pid), _threads(proc.pid)
    clients: list[socket.socket] = []
    try:
        for _ in range(SLOW_CLIENTS):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Half: ")
            clients.append(c)
        t0 = time.monotonic()
        for _ in range(5):
            text = _get(url, timeout=5).decode()
            assert "physmem_hugepages_pages" in text
        five = time.monotonic() - t0
        rss, threads = _rss_mib(proc.pid), _threads(proc.pid)
        print(f"{SLOW_CLIENTS} slow clients: 5 scrapes in {five * 1000:.0f} ms; "
              f"RSS {rss0:.1f} -> {rss:.1f} MiB; threads {threads0} -> {threads}")
        assert five < 5.0
        # A thread per client costs the old server ~0.2 MiB and a thread each (60 MiB and
        # 300 threads here); an event loop a few KiB each.
        assert threads <= threads0 + 2, (threads0, threads)
        assert rss - rss0 < 16, (rss0, rss)
        # Silent for HTTP_TIMEOUT s: the exporter closes them (checked every HTTP_TIMEOUT/2).
        from physmem.exporter import HTTP_TIMEOUT

        deadline = time.monotonic() + 2 * HTTP_TIMEOUT + 5
        for c in clients:
            c.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                assert c.recv(4096) == b""
            except socket.timeout:
                raise AssertionError(f"a silent connection still open after {2 * HTTP_TIMEOUT + 5} s")
            except ConnectionResetError:
                pass
    finally:
        for c in clients:
            c.close()
    assert "physmem_hugepages_pages" in _get(url).decode()
    assert _threads(proc.pid) <= threads0 + 2
    assert proc.poll() is None


def test_huge_request_headers_are_refused_without_memory_growth(start_exporter):
    """16 clients each send 6 MiB of request headers (lines of 60 KiB, under the stdlib
    server's line limit) and wait: every connection is refused early, and the exporter's
    memory does not grow with what they sent."""
    proc, url = start_exporter("--listen", "127.0.0.1:0", "--interval", "30")
    _get(url)
    rss0 = _rss_mib(proc.pid)
    line = b"X-Big: " + b"a" * (60 << 10) + b"\r\n"
    clients: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(16):
            c = socket.create_connection(("127.0.0.1", _port_of(url)), timeout=10)
            clients.append(c)
            try:
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: big\r\n")
                for _ in range(100):
                    c.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                refused += 1
        rss = _rss_mib(proc.pid)
        for c in clients:   # whatever was buffered: no metrics came back for it
            try:
                c.settimeout(5)
                assert not c.recv(4096).startswith(b"HTTP/1.1 200")
            except (ConnectionResetError, socket.timeout):
                pass
    finally:
        for c in clients:
            c.close()
    print(f"{refused} of 16 refused while sending 6 MiB of headers; RSS {rss0:.1f} -> {rss:.1f} MiB")
    assert rss - rss0 < 16, (rss0, rss)
    assert "physmem_hugepages_pages" in _get(url).decode()


def test_listen_on_a_name_and_on_every_address(start_exporter):
    """A name that resolves to several addresses listens on one port (the first address);
    ``[::]`` serves IPv4 clients too."""
    _, url = start_exporter("--listen", "localhost:0", "--interval", "30")
    assert "physmem_hugepages_pages" in _get(f"http://127.0.0.1:{_port_of(url)}/metrics").decode()
    if not socket.has_ipv6 or not Path("/proc/net/if_inet6").exists():
        return
    _, url = start_exporter("--listen", "[::]:0", "--interval", "30")
    for host in ("127.0.0.1", "[::1]"):
        assert "physmem_hugepages_pages" in _get(f"http://{host}:{_port_of(url)}/metrics").decode()


def test_once_prints_one_complete_scrape(is_root):
    """``--once`` without --textfile waits for every background reading and prints them."""
    env, cwd = python_env()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "physmem.cli", "exporter", "--once"],
                       capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    s = _samples(r.stdout)
    for reading in ("contiguity", "frames", "holders", "doctor"):
        assert _value(s, "physmem_reading_pending", reading=reading) == 0
        # Read during this run: younger than the run (and so not NaN).
        age = _value(s, "physmem_reading_age_seconds", reading=reading)
        assert age is not None and 0 <= age <= took, (reading, age, took)
    assert "physmem_frames_bytes" in {name for name, _ in s}


def test_pending_readings_say_so_until_their_first_run(is_root):
    """Before its first run a reading's metrics are absent and it says it is pending (age
    NaN); after the run it is not, and its metrics are there."""
    import math

    release = threading.Event()

    def holders() -> HolderReading:
        release.wait(30)
        return HolderReading((), {MIB2: 0}, 0)

    e = Exporter(holders=holders, interval=60)
    e.readings = {"holders": e.readings["holders"]}   # only the slow one
    e.start()
    try:
        s = _samples(e.exposition().decode())
        assert _value(s, "physmem_reading_pending", reading="holders") == 1
        assert math.isnan(_value(s, "physmem_reading_age_seconds", reading="holders"))
        assert _value(s, "physmem_reading_interval_seconds", reading="holders") == 60
        assert _value(s, "physmem_hugepages_orphaned_bytes", size_bytes=str(MIB2)) is None
        assert not e.wait_ready(0.05)
        released = time.monotonic()
        release.set()
        assert e.wait_ready(30)
        s = _samples(e.exposition().decode())
        assert _value(s, "physmem_reading_pending", reading="holders") == 0
        # Finished after the release: no older than the time since.
        age = _value(s, "physmem_reading_age_seconds", reading="holders")
        assert 0 <= age <= time.monotonic() - released, age
        assert _value(s, "physmem_hugepages_orphaned_bytes", size_bytes=str(MIB2)) == 0
    finally:
        release.set()
        e.stop()
