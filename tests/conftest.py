"""Shared fixtures: real buffers, hugepage pools restored afterwards, unprivileged runs."""
from __future__ import annotations

import ctypes
import mmap
import os
import resource
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

PAGE = mmap.PAGESIZE
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def address_of(buf: mmap.mmap) -> int:
    """Virtual address of a Python mmap, without keeping a buffer export alive."""
    c = ctypes.c_char.from_buffer(buf)
    try:
        return ctypes.addressof(c)
    finally:
        del c


def anonymous(size: int, *, touch: bool = True, private: bool = True) -> tuple[mmap.mmap, int]:
    """A private anonymous mapping (every page written once when ``touch``)."""
    flags = (mmap.MAP_PRIVATE if private else mmap.MAP_SHARED) | mmap.MAP_ANONYMOUS
    m = mmap.mmap(-1, size, flags=flags)
    if touch:
        for off in range(0, size, PAGE):
            m[off] = 1
    return m, address_of(m)


def own_pfns(address: int, size: int) -> list[int]:
    """The independent reading: raw pagemap entries of every base page, via plain os.pread."""
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        data = os.pread(fd, (size // PAGE) * 8, (address // PAGE) * 8)
    finally:
        os.close(fd)
    entries = struct.unpack(f"<{size // PAGE}Q", data)
    assert all(e >> 63 for e in entries), "every page must be present"
    return [e & ((1 << 55) - 1) for e in entries]


def own_pfns_at(addresses: list[int]) -> list[int]:
    """PFN of the page at each address, one plain pread of pagemap each."""
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        out = []
        for a in addresses:
            (e,) = struct.unpack("<Q", os.pread(fd, 8, a // PAGE * 8))
            assert e >> 63, f"{a:#x} not present"
            out.append(e & ((1 << 55) - 1))
        return out
    finally:
        os.close(fd)


def registered_buffers(pid: str = "self") -> set[tuple[int, int]]:
    """(address, length) of every io_uring fixed buffer of a process, from a plain read of
    /proc/PID/fdinfo of each fd that is a ring."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[io_uring]":
                continue
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except FileNotFoundError:
            continue
        for line in text.split("UserBufs:", 1)[1].splitlines()[1:]:
            if not line.startswith((" ", "\t")):
                break
            value = line.split(":", 1)[1].strip()
            if value != "<none>":
                address, length = value.split("/")
                found.add((int(address, 16), int(length)))
    return found


# Python source that defines raw_pin(): whether this process can pin memory, found without
# physmem: a new io_uring (raw syscalls through ctypes) registers one page of anonymous
# memory as a fixed buffer. Returns 0, or the errno of the call that failed.
RAW_PIN = """
import ctypes as _ct, mmap as _mm, os as _os
def raw_pin():
    libc = _ct.CDLL(None, use_errno=True)
    libc.syscall.restype = _ct.c_long
    params = _ct.create_string_buffer(120)          # struct io_uring_params
    fd = libc.syscall(_ct.c_long(425), _ct.c_long(1), params)   # io_uring_setup
    if fd < 0:
        return _ct.get_errno()
    page = _mm.mmap(-1, 4096)
    page[0] = 1
    cell = _ct.c_char.from_buffer(page)
    iov = (_ct.c_uint64 * 2)(_ct.addressof(cell), 4096)
    # io_uring_register(fd, IORING_REGISTER_BUFFERS, &iov, 1)
    ret = libc.syscall(_ct.c_long(427), _ct.c_long(fd), _ct.c_long(0), iov, _ct.c_long(1))
    err = _ct.get_errno() if ret < 0 else 0
    _os.close(fd)
    del cell
    return err
"""


def settled(check: Callable[[], None], attempts: int = 6) -> None:
    """Run ``check`` until it passes. Two readings of free memory taken moments apart can
    straddle a burst (hugepages an earlier test gave back are freed by a kernel worker);
    memory that keeps disagreeing still fails on the last attempt."""
    for attempt in range(attempts):
        try:
            check()
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)


def wait_until(check: Callable[[], object], seconds: float = 15.0, interval: float = 0.005) -> bool:
    """Poll ``check`` until it returns true (True) or ``seconds`` pass (False): the one way the
    tests wait for something the kernel or another process does on its own time (a dead
    process's pages freed, a guardian's restore, a thread started)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def kill_and_wait(pid: int, seconds: float = 15.0) -> bool:
    """SIGKILL process ``pid`` (a child or not) and wait until it has exited: its pidfd,
    opened before the signal so that a reused pid cannot be mistaken for it, becomes readable
    then. False if it is still there after ``seconds``."""
    import select
    import signal

    fd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return bool(select.select([fd], [], [], seconds)[0])
    finally:
        os.close(fd)


def kernel_thread() -> str | None:
    """The pid of a kernel thread, found by PF_KTHREAD (0x00200000) in stat field 9 (read
    here, not through physmem); None if /proc shows none (a pid namespace)."""
    for name in sorted((n for n in os.listdir("/proc") if n.isdigit()), key=int):
        try:
            data = open(f"/proc/{name}/stat", "rb").read()
        except OSError:
            continue
        if int(data[data.rindex(b")") + 2:].split()[6]) & 0x00200000:
            return name
    return None


def python_env() -> tuple[dict[str, str], str]:
    """Environment and working directory for a child Python that imports this very physmem.

    ``python -m`` puts the working directory first on sys.path; from a source checkout whose
    extension is built elsewhere (``pip install .``) that would shadow the installed package.
    """
    import physmem

    env = dict(os.environ, PYTHONPATH=str(Path(physmem.__file__).resolve().parent.parent))
    return env, "/"


def run_physmem(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m physmem.cli ARGS`` as a separate program; text output captured."""
    env, cwd = python_env()
    return subprocess.run([sys.executable, "-m", "physmem.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, **kwargs)


def kept_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             name: str) -> Path:
    """A directory kept across runs for what is costly to remake (a built wheel, mypy's
    cache): pytest's cache directory where it can be written, else the runner's own pytest
    temporary root (per user, kept across runs), else this run's."""
    cache = getattr(request.config, "cache", None)   # absent under -p no:cacheprovider
    if cache is not None:
        try:
            return Path(cache.mkdir(name))
        except OSError:   # a checkout of someone else's
            pass
    base = tmp_path_factory.getbasetemp()
    if request.config.option.basetemp is None:   # pytest's per-user root, not this run's
        base = base.parent
    (base / name).mkdir(exist_ok=True)
    return base / name


ROOT_REASON = "needs root: PFNs and /proc/kpage* are visible to CAP_SYS_ADMIN only"
_MARK_REASONS = {
    "root": ROOT_REASON,
    "hugepages": "needs root: changes hugepage pools (nr_hugepages is writable by root only)",
}


# Fixtures that need root. Every other fixture that needs it asks for is_root; the
# session-wide snapshot cannot (is_root is per test) and is named here.
ROOT_FIXTURES = frozenset({"is_root", "kpageflags_snapshot"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The markers follow the fixtures, so that ``-m "not root"`` leaves out every test that
    needs root or changes the system: a test that uses a ``ROOT_FIXTURES`` fixture (directly
    or through another: every fixture here that needs root asks for is_root) is ``root``;
    one that uses ``pools_restored`` changes pools and is ``hugepages``, which implies root."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "pools_restored" in names and item.get_closest_marker("hugepages") is None:
            item.add_marker(pytest.mark.hugepages)
        if (names & ROOT_FIXTURES or item.get_closest_marker("hugepages") is not None) \
                and item.get_closest_marker("root") is None:
            item.add_marker(pytest.mark.root)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """The ``root``/``hugepages`` markers (pyproject.toml) skip the test when not root."""
    if os.geteuid() == 0:
        return
    for name, reason in _MARK_REASONS.items():
        mark = item.get_closest_marker(name)
        if mark is not None:
            pytest.skip(mark.kwargs.get("reason", reason))


@pytest.fixture
def is_root() -> None:
    """Ask for this (or a fixture built on it) in every test that needs root: it makes the
    test ``root`` (pytest_collection_modifyitems) and skips it for anyone else."""
    if os.geteuid() != 0:
        pytest.skip(ROOT_REASON)


def _read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


HUGEPAGES = Path("/sys/kernel/mm/hugepages")


def pool_counts(pool: Path) -> dict[str, int]:
    """Every counter of a pool directory, read with plain open(): no physmem involved."""
    return {f.name: _read_int(f) for f in pool.iterdir()
            if f.name.endswith("hugepages") and f.name != "demote"}


def restore_pool(pool: Path, persistent: int, overcommit: int | None) -> None:
    """Put a pool's persistent size (and overcommit ceiling) back. The current total goes
    first where surplus pages exist: a lone write of the size would make the kernel count
    free pages as surplus ones, which it then never frees."""
    nr = pool / "nr_hugepages"
    if _read_int(pool / "surplus_hugepages"):
        nr.write_text(str(_read_int(nr)))
    nr.write_text(str(persistent))
    ceiling = pool / "nr_overcommit_hugepages"
    # Written only if changed: gigantic pools refuse any write of it (EINVAL).
    if overcommit is not None and _read_int(ceiling) != overcommit:
        ceiling.write_text(str(overcommit))


@pytest.fixture
def pools_restored(is_root: None) -> Iterator[None]:
    """Every hugepage pool's persistent size and overcommit ceiling as they were before the
    test, put back when it ends (pass or fail). The one pool-restoring fixture.

    It starts once no surplus page is left: a process killed by an earlier test may hold
    pinned pages a moment after it is reaped (io_uring lets go of them from a kernel worker),
    and a pool written meanwhile would count them as its own."""
    wait_until(lambda: not any(pool_counts(p)["surplus_hugepages"] for p in HUGEPAGES.iterdir()),
               seconds=10)
    before = {}
    for pool in sorted(HUGEPAGES.iterdir()):
        c = pool_counts(pool)
        before[pool] = (c["nr_hugepages"] - c["surplus_hugepages"], c.get("nr_overcommit_hugepages"))
    yield
    for pool, (persistent, overcommit) in before.items():
        restore_pool(pool, persistent, overcommit)


@pytest.fixture
def hugepage_pool(pools_restored: None) -> Callable[..., Path]:
    """``reserve(count, size_kb=2048, required=True)`` makes the pool hold at least ``count``
    free pages (``required=False``: skip the test if the kernel cannot).

    Every pool is put back when the test ends, pass or fail (``pools_restored``).
    """

    def reserve(count: int, size_kb: int = 2048, *, required: bool = True) -> Path:
        pool = HUGEPAGES / f"hugepages-{size_kb}kB"
        if not pool.is_dir():
            pytest.skip(f"this kernel has no {size_kb} kB hugepage pool")
        nr = pool / "nr_hugepages"
        total = _read_int(nr)
        free = _read_int(pool / "free_hugepages")
        nr.write_text(str(total + max(0, count - free)))
        got = _read_int(pool / "free_hugepages")
        if got < count:
            message = f"could reserve only {got} of {count} {size_kb} kB hugepages"
            if required:
                pytest.fail(message)
            pytest.skip(message + " (memory too fragmented on this machine now)")
        return pool

    return reserve


POOL_2M = HUGEPAGES / "hugepages-2048kB"


@pytest.fixture
def empty_2m_pool(pools_restored: None) -> int:
    """The 2 MiB pool shrunk to the pages in use, with no free page to give and no overcommit
    ceiling; every pool is put back when the test ends. Returns the pool's total, read back
    from sysfs. Pages of a process that just exited reach the free list a moment late, so
    the shrinking is repeated until none is left (or the test fails, saying so)."""
    pool = HUGEPAGES / "hugepages-2048kB"
    if not pool.is_dir():
        pytest.skip("this kernel has no 2048 kB hugepage pool")
    if _read_int(pool / "nr_overcommit_hugepages"):
        (pool / "nr_overcommit_hugepages").write_text("0")
    deadline = time.monotonic() + 10
    while (spare := _read_int(pool / "free_hugepages") - _read_int(pool / "resv_hugepages")) > 0:
        if time.monotonic() > deadline:
            pytest.fail(f"the 2 MiB pool keeps {spare} free pages after shrinking for 10 s")
        (pool / "nr_hugepages").write_text(str(_read_int(pool / "nr_hugepages") - spare))
        time.sleep(0.05)
    return _read_int(pool / "nr_hugepages")


@pytest.fixture
def sysctl_restored(is_root: None) -> Iterator[Callable[..., None]]:
    """``sysctl(name, value=None)``: remember /proc/sys/NAME (dots or slashes) as it is and
    write ``value`` if given (the test is skipped where the kernel has no such file); every
    file remembered is put back when the test ends, pass or fail, with plain open() (so a broken physmem cannot break the restore). Files that change
    each other (vm.overcommit_ratio and _kbytes zero each other) are put back until all
    read as before."""
    saved: dict[Path, str] = {}

    def sysctl(name: str, value: object = None) -> None:
        path = Path("/proc/sys") / name.replace(".", "/")
        if not path.exists():
            pytest.skip(f"this kernel has no {name}")
        if path not in saved:
            saved[path] = path.read_text()
        if value is not None:
            path.write_text(str(value))

    yield sysctl
    for _ in range(2):
        for path, text in saved.items():
            if path.read_text() != text:
                path.write_text(text)
    changed = [str(p) for p, text in saved.items() if p.read_text() != text]
    assert not changed, f"could not restore {changed}"


def snapshot_proc_file(name: str, dest: Path) -> Path:
    """A byte copy of /proc/NAME at ``dest``, read in large chunks to its end (procfs shows
    no size) with plain os.read: no physmem involved. A link at ``dest`` (``frozen_proc``'s)
    is replaced, never written through. Returns ``dest``."""
    if dest.is_symlink():
        dest.unlink()
    fd = os.open(f"/proc/{name}", os.O_RDONLY)
    try:
        with open(dest, "xb") as out:
            while chunk := os.read(fd, 1 << 20):
                out.write(chunk)
    finally:
        os.close(fd)
    return dest


def kpageflags_frames() -> int:
    """Frames /proc/kpageflags covers, found with plain preads at doubling offsets and then
    a bisection: the first PFN whose entry reads empty."""
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        lo, hi = 0, 1   # lo reads, hi may not
        while len(os.pread(fd, 8, hi * 8)) == 8:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if len(os.pread(fd, 8, mid * 8)) == 8 else (lo, mid)
        return hi
    finally:
        os.close(fd)


def kpageflags_marks_free_tails() -> bool:
    """kpageflags flags every frame of a free block BUDDY since Linux 4.6, before that only
    the block's first frame."""
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    return (major, minor) >= (4, 6)


@pytest.fixture(scope="session")
def kpageflags_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One byte copy of /proc/kpageflags for the session (``snapshot_proc_file``). Compared
    with a reading of itself, a snapshot's age does not matter; a copy costs a second."""
    if os.geteuid() != 0:
        pytest.skip(ROOT_REASON)
    return snapshot_proc_file("kpageflags", tmp_path_factory.mktemp("snapshot") / "kpageflags")


@pytest.fixture
def frozen_proc(tmp_path: Path, is_root: None, kpageflags_snapshot: Path) -> Path:
    """A proc root whose kpageflags is a snapshot (``kpageflags_snapshot``) and every other
    entry a link to the live /proc. Live frames change between any two reads (a page freed
    and reused in between); read from here, physmem and the test's own reading of
    ``frozen_proc / "kpageflags"`` see the same bytes and can be compared exactly. Another
    file is frozen with ``snapshot_proc_file(name, frozen_proc / name)``."""
    root = tmp_path / "proc"
    root.mkdir()
    for name in os.listdir("/proc"):
        if name != "kpageflags":
            (root / name).symlink_to(f"/proc/{name}")
    (root / "kpageflags").symlink_to(kpageflags_snapshot)
    return root


def run_physmem_frozen(frozen: dict[str, Path], *args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m physmem.cli ARGS`` in a private mount namespace in which each
    ``/proc/NAME`` of ``frozen`` is the snapshot file given (bind-mounted over it): the
    command reads /proc as always, and the test reads the same bytes from the snapshots.
    Root only; nothing outside the child's namespace changes."""
    import shlex

    env, cwd = python_env()
    binds = " && ".join(f"mount --bind {shlex.quote(str(src))} /proc/{name}"
                        for name, src in frozen.items())
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", binds + ' && exec "$@"',
         "sh", sys.executable, "-m", "physmem.cli", *args],
        capture_output=True, text=True, env=env, cwd=cwd, **kwargs)


def _grant_traverse(path: Path, changed: dict[Path, int]) -> None:
    """Give 'others' search permission on every directory above ``path``."""
    for parent in [*reversed(path.parents)]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            changed.setdefault(parent, stat.S_IMODE(mode))
            os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)


@pytest.fixture
def run_unprivileged(request: pytest.FixtureRequest,
                     is_root: None) -> Callable[..., subprocess.CompletedProcess]:
    """Run Python code as uid/gid 65534 with no capabilities, importing this physmem.

    The interpreter and the package may live under a 0700 home (pyenv under /root): search
    permission is granted on the way to them for the test's duration and then restored.
    """
    import physmem

    changed: dict[Path, int] = {}

    def restore() -> None:
        for path, mode in changed.items():
            os.chmod(path, mode)

    request.addfinalizer(restore)
    package_parent = Path(physmem.__file__).resolve().parent.parent
    for target in (Path(sys.executable).resolve(), Path(os.__file__).resolve(), package_parent / "physmem"):
        _grant_traverse(target, changed)

    def run(code: str, *, caps: str = "", memlock: int | None = None, timeout: float = 60,
            reach: tuple[Path, ...] = (), cwd: str = "/") -> subprocess.CompletedProcess:
        """``caps``: capabilities the process keeps, in setpriv's words (``+sys_admin``);
        ``memlock``: the RLIMIT_MEMLOCK (bytes, soft and hard) it runs under; ``reach``: more
        paths the child must get to (granted and restored the same way)."""
        for target in reach:
            _grant_traverse(Path(target).resolve() / "x", changed)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(package_parent),
               "HOME": "/", "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [*NOBODY]
        if caps:
            argv += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
        if memlock is not None:
            value = "unlimited" if memlock == resource.RLIM_INFINITY else memlock
            argv = ["prlimit", f"--memlock={value}:{value}", *argv]
        return subprocess.run([*argv, sys.executable, "-c", textwrap.dedent(code)],
                              capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)

    return run


@pytest.fixture
def swapfile(tmp_path: Path, is_root: None) -> Iterator[Path]:
    """A 64 MiB swap file, switched on for the test, then off and removed, pass or fail."""
    path = tmp_path / "physmem-test.swap"
    with open(path, "wb") as f:
        f.write(b"\0" * (64 << 20))
    os.chmod(path, 0o600)
    subprocess.run(["mkswap", str(path)], check=True, capture_output=True)
    subprocess.run(["swapon", str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["swapoff", str(path)], check=True, capture_output=True)
        path.unlink()


@pytest.fixture
def child_process() -> Iterator[Callable[[], int]]:
    """Start helper processes (python sleeping on stdin); all are killed at the end."""
    procs: list[subprocess.Popen] = []

    def start() -> int:
        p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
        procs.append(p)
        return p.pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


# -- the whole session leaves the pools as it found them ----------------------------------------

def _persistent_pools() -> dict[str, tuple[int, int]]:
    """Each pool's persistent size and overcommit ceiling, read with plain open()."""
    if not HUGEPAGES.is_dir():
        return {}
    return {p.name: (_read_int(p / "nr_hugepages") - _read_int(p / "surplus_hugepages"),
                     _read_int(p / "nr_overcommit_hugepages"))
            for p in sorted(HUGEPAGES.iterdir())}


_SESSION_POOLS: dict[str, tuple[int, int]] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _SESSION_POOLS.update(_persistent_pools())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Per-test fixtures restore what each test changes; this catches what no fixture saw (a
    # child process, a guardian, a benchmark run alongside) before it reaches the next user
    # of the machine. Surplus pages of exiting processes are freed a moment late: waited for.
    if os.geteuid() != 0 or not _SESSION_POOLS:
        return
    deadline = time.monotonic() + 15
    while (now := _persistent_pools()) != _SESSION_POOLS and time.monotonic() < deadline:
        time.sleep(0.2)
    if now != _SESSION_POOLS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nthe test session changed hugepage pools (persistent size, overcommit): "
              f"{_SESSION_POOLS} at the start, {now} at the end", file=sys.stderr)
