"""``physmem nfd`` and ``physmem exporter --nfd``: Node Feature Discovery feature files.

The format is checked against NFD's documented rules for its local feature source
(docs/usage/customization-guide.md, "Local feature source"), restated by ``nfd_parse``
below: ``#`` comments; a ``# +expiry-time=`` directive in RFC 3339 that applies to the lines
after it; ``<namespace>/<name>[=<value>]`` lines, value ``true`` when left out; files of 64 kB
or more ignored; dotfiles ignored (so writers rename a dotfile into place). Kubernetes' own
label rules (a value at most 63 characters of ``[A-Za-z0-9._-]``, alphanumeric at both ends)
hold for every value."""
from __future__ import annotations

import datetime as dt
import errno
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from physmem import nfd
from physmem.errors import InvalidArgument

from conftest import RAW_PIN, python_env, run_physmem, settled

GOLDEN = Path(__file__).parent / "data" / "nfd" / "physmem.golden"
MIB2, GIB = 2 << 20, 1 << 30
HUGEPAGES = Path("/sys/kernel/mm/hugepages")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def nfd_parse(data: bytes, now: dt.datetime) -> dict[str, str]:
    """The labels NFD's local source would take from a feature file at ``now``."""
    if len(data) >= 64 * 1024:
        return {}
    labels: dict[str, str] = {}
    expiry: dt.datetime | None = None
    for line in data.decode().splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.fullmatch(r"#\s*\+expiry-time=(\S+)", line)
            if m:
                expiry = dt.datetime.fromisoformat(m[1].replace("Z", "+00:00"))
                assert expiry.tzinfo is not None, line
            continue
        if expiry is not None and expiry < now:
            continue
        key, _, value = line.partition("=")
        labels[key] = value if "=" in line else "true"
    return labels


def check_labels(labels: dict[str, str]) -> None:
    """Kubernetes' rules for label keys and values, which NFD passes on."""
    for key, value in labels.items():
        prefix, sep, name = key.partition("/")
        assert sep and DNS_SUBDOMAIN.fullmatch(prefix) and len(prefix) <= 253, key
        assert LABEL_NAME.fullmatch(name) and len(name) <= 63, key
        assert LABEL_VALUE.fullmatch(value) and len(value) <= 63, (key, value)


FIGURES = (nfd.Obtainable(MIB2, 1200, 3000, 256 << 20, 2 * GIB),
           nfd.Obtainable(GIB, 0, 2, 0, GIB))
EXPIRES = dt.datetime(2031, 2, 3, 4, 8, 6, tzinfo=dt.timezone.utc)


def test_the_file_matches_the_golden_copy():
    data = nfd.render(nfd.labels(FIGURES, dma=False), EXPIRES)
    assert data == GOLDEN.read_bytes()


def test_the_golden_file_follows_nfds_documented_format():
    data = GOLDEN.read_bytes()
    before = nfd_parse(data, EXPIRES - dt.timedelta(seconds=1))
    check_labels(before)
    assert before == {
        "physmem.io/hugepages-2M-obtainable-now": "1200",
        "physmem.io/hugepages-2M-obtainable-after-compaction": "3000",
        "physmem.io/hugepages-1G-obtainable-now": "0",
        "physmem.io/hugepages-1G-obtainable-after-compaction": "2",
        "physmem.io/longest-contiguous": str(256 << 20),
        "physmem.io/longest-contiguous-after-compaction": str(2 * GIB),
        "physmem.io/dma-pinning": "false",
    }
    # Past its expiry NFD drops every label of the file.
    assert nfd_parse(data, EXPIRES + dt.timedelta(seconds=1)) == {}
    # The parser follows NFD's rules, not just our output: later directives, default values.
    assert nfd_parse(b"# +expiry-time=2000-01-01T00:00:00Z\na.io/x=1\n"
                     b"# +expiry-time=2100-01-01T00:00:00Z\na.io/y\n", EXPIRES) == {"a.io/y": "true"}


def test_labels_nfd_or_kubernetes_would_refuse_are_refused_here():
    for bad in ({"physmem.io/x": "a" * 64}, {"physmem.io/x": "-1"}, {"physmem.io/x": "a b"},
                {"nonamespace": "1"}, {"physmem.io/" + "n" * 64: "1"}, {"physmem.io/x.": "1"}):
        with pytest.raises(InvalidArgument):
            nfd.render(bad, EXPIRES)
    with pytest.raises(InvalidArgument):   # NFD would ignore the whole file
        nfd.render({f"physmem.io/l{i}": "x" * 63 for i in range(1000)}, EXPIRES)
    with pytest.raises(InvalidArgument):
        nfd.render({"physmem.io/x": "1"}, EXPIRES.replace(tzinfo=None))
    with pytest.raises(InvalidArgument):
        nfd.write("/nonexistent", {}, interval=float("nan"))


def test_expiry_follows_the_refresh_interval():
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert nfd.expiry_after(60, now) == now + dt.timedelta(minutes=3)
    assert nfd.expiry_after(300, now) == now + dt.timedelta(minutes=15)
    # NFD rereads the file every 60 s: shorter intervals would let labels lapse in between.
    assert nfd.expiry_after(1, now) == now + dt.timedelta(minutes=3)


def _free_pool(size_kb: int) -> int:
    return int((HUGEPAGES / f"hugepages-{size_kb}kB" / "free_hugepages").read_text())


def _buddy_blocks(order: int) -> int:
    total = 0
    for line in Path("/proc/buddyinfo").read_text().splitlines():
        counts = [int(v) for v in line.split()[4:]]
        total += sum(c << (k - order) for k, c in enumerate(counts) if k >= order)
    return total


def test_physmem_nfd_writes_the_forecast_as_labels(is_root, tmp_path, hugepage_pool):
    hugepage_pool(8)
    interval = 120
    t0 = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    def check() -> None:
        r = run_physmem("nfd", "--dir", str(tmp_path), "--interval", str(interval), timeout=120)
        assert r.returncode == 0, r.stderr
        path = tmp_path / "physmem"
        assert r.stdout.strip() == str(path)
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o644
        assert [p.name for p in tmp_path.iterdir()] == ["physmem"]   # no dotfile left
        data = path.read_bytes()
        assert len(data) < 64 * 1024
        labels = nfd_parse(data, dt.datetime.now(dt.timezone.utc))
        check_labels(labels)
        expiry = dt.datetime.fromisoformat(
            re.search(rb"# \+expiry-time=(\S+)", data)[1].decode().replace("Z", "+00:00"))
        assert t0 + dt.timedelta(seconds=3 * interval) <= expiry <= (
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3 * interval))
        # Against the kernel's own counts, read a moment later (free memory churns): the
        # pool's free pages are obtainable now, and so is every free 2 MiB buddy block.
        now_2m = int(labels["physmem.io/hugepages-2M-obtainable-now"])
        want = _free_pool(2048) + _buddy_blocks((MIB2 // os.sysconf("SC_PAGE_SIZE")).bit_length() - 1)
        assert abs(now_2m - want) <= max(32, want // 50) or now_2m >= want, (now_2m, want)
        assert int(labels["physmem.io/hugepages-2M-obtainable-after-compaction"]) >= now_2m - 32
        mem_total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        assert now_2m * MIB2 <= mem_total
        longest = int(labels["physmem.io/longest-contiguous"])
        assert longest % MIB2 == 0 and MIB2 <= longest <= now_2m * MIB2 + 64 * MIB2
        if (HUGEPAGES / "hugepages-1048576kB").is_dir():
            assert "physmem.io/hugepages-1G-obtainable-now" in labels
        assert labels["physmem.io/dma-pinning"] in ("true", "false")

    settled(check, attempts=4)


def test_physmem_nfd_json_and_directory_errors(is_root, tmp_path):
    r = run_physmem("nfd", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    labels = json.loads(r.stdout)
    check_labels(labels)
    assert "physmem.io/longest-contiguous" in labels
    r = run_physmem("nfd", "--dir", str(tmp_path / "missing"))
    assert r.returncode == 2 and "--dir" in r.stderr and "Traceback" not in r.stderr


def test_physmem_nfd_needs_root(run_unprivileged, tmp_path):
    tmp_path.chmod(0o777)
    r = run_unprivileged(f"""
        import sys
        from physmem.cli import main
        sys.exit(main(["nfd", "--dir", {str(tmp_path)!r}]))
    """)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.root
def test_dma_pinning_follows_the_io_uring_switch(set_sysctl, run_unprivileged):
    """The capability as the kernel decides it, against a pin made without physmem (raw
    io_uring syscalls): io_uring_disabled=2 refuses everyone, 1 processes without
    CAP_SYS_ADMIN outside kernel.io_uring_group, 0 nobody. Each answer comes from a new
    process: a ring made earlier keeps working after the switch."""
    probe = RAW_PIN + "from physmem.nfd import dma_pinning\nprint(dma_pinning(), raw_pin())"
    env, cwd = python_env()

    def as_root() -> tuple[str, str]:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env=env, cwd=cwd, timeout=60).stdout.split()
        return out[0], out[1]

    def as_nobody() -> tuple[str, str]:
        out = run_unprivileged(probe).stdout.split()
        return out[0], out[1]

    set_sysctl("kernel.io_uring_disabled", 0)
    assert as_root() == ("True", "0") and as_nobody() == ("True", "0")
    set_sysctl("kernel.io_uring_disabled", 1)
    assert as_root() == ("True", "0")
    set_sysctl("kernel.io_uring_group", -1)
    assert as_nobody() == ("False", str(errno.EPERM))
    set_sysctl("kernel.io_uring_group", 65534)   # nobody's group (setpriv --regid=65534)
    assert as_nobody() == ("True", "0")
    set_sysctl("kernel.io_uring_disabled", 2)
    assert as_root() == ("False", str(errno.EPERM)) and as_nobody() == ("False", str(errno.EPERM))


def test_exporter_rewrites_the_nfd_file_every_interval(is_root, tmp_path):
    env, cwd = python_env()
    p = subprocess.Popen([sys.executable, "-m", "physmem.cli", "exporter", "--listen",
                          "127.0.0.1:0", "--interval", "1", "--nfd", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    try:
        path = tmp_path / "physmem"
        inodes: set[int] = set()
        deadline = time.monotonic() + 60
        while len(inodes) < 3:
            assert time.monotonic() < deadline, f"{len(inodes)} versions in 60 s"
            assert p.poll() is None, p.stderr.read()  # type: ignore[union-attr]
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                assert not inodes, "the file vanished between two rewrites"
                time.sleep(0.05)
                continue
            with os.fdopen(fd, "rb") as f:
                inodes.add(os.fstat(f.fileno()).st_ino)
                data = f.read()
            labels = nfd_parse(data, dt.datetime.now(dt.timezone.utc))
            check_labels(labels)
            assert len(labels) >= 5 and data.endswith(b"\n"), data   # whole, never half
            time.sleep(0.05)
    finally:
        p.terminate()
        p.wait(10)
    assert p.returncode == 0
    assert os.listdir(tmp_path) == ["physmem"]
