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
    import time

    for attempt in range(attempts):
        try:
            check()
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)


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


ROOT_REASON = "needs root: PFNs and /proc/kpage* are visible to CAP_SYS_ADMIN only"
_MARK_REASONS = {
    "root": ROOT_REASON,
    "hugepages": "needs root: changes hugepage pools (nr_hugepages is writable by root only)",
}


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
    import time

    deadline = time.monotonic() + 10
    while any(pool_counts(p)["surplus_hugepages"] for p in HUGEPAGES.iterdir()) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
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


def _grant_traverse(path: Path, changed: dict[Path, int]) -> None:
    """Give 'others' search permission on every directory above ``path``."""
    for parent in [*reversed(path.parents)]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            changed.setdefault(parent, stat.S_IMODE(mode))
            os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)


@pytest.fixture
def run_unprivileged(request: pytest.FixtureRequest, is_root: None) -> Callable[[str], subprocess.CompletedProcess]:
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

    def run(code: str, *, caps: str = "", memlock: int | None = None) -> subprocess.CompletedProcess:
        """``caps``: capabilities the process keeps, in setpriv's words (``+sys_admin``);
        ``memlock``: the RLIMIT_MEMLOCK (bytes, soft and hard) it runs under."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(package_parent),
               "HOME": "/", "PYTHONDONTWRITEBYTECODE": "1"}
        argv = [*NOBODY]
        if caps:
            argv += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
        if memlock is not None:
            value = "unlimited" if memlock == resource.RLIM_INFINITY else memlock
            argv = ["prlimit", f"--memlock={value}:{value}", *argv]
        return subprocess.run([*argv, sys.executable, "-c", textwrap.dedent(code)],
                              capture_output=True, text=True, env=env, cwd="/", timeout=60)

    return run


@pytest.fixture
def set_sysctl(is_root: None) -> Iterator[Callable[[str, object], None]]:
    """``set_sysctl(name, value)`` writes /proc/sys/NAME (skipping the test where the kernel
    has no such sysctl); each one written is put back to exactly the text it had, pass or
    fail, last written first."""
    original: dict[Path, str] = {}

    def write(name: str, value: object) -> None:
        path = Path("/proc/sys") / name.replace(".", "/")
        if not path.exists():
            pytest.skip(f"this kernel has no {name}")
        original.setdefault(path, path.read_text().strip())
        path.write_text(str(value))

    yield write
    for path, text in reversed(original.items()):
        path.write_text(text)


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
