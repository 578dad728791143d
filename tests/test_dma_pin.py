"""Long-term pins of DMA buffers against the kernel: each mode of ``pin=``, each cause a pin
can fail for (with its figure and fix), and the pool accounting after every way a pinned
buffer can end. The pin state is read without physmem: io_uring rings and their registered
buffers from /proc/PID/fd and fdinfo, the pinned total from the VmPin line of
/proc/PID/status. Each refusal is set up for real: RLIMIT_MEMLOCK (prlimit) for uid 65534,
the ``kernel.io_uring_disabled`` switch, a seccomp BPF filter installed in the process."""
from __future__ import annotations

import errno
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from physmem.dma import DmaPool, allocate_contiguous, allocate_scatter
from physmem.errors import InvalidArgument

from conftest import RAW_PIN, own_pfns, pool_counts, python_env, registered_buffers, run_physmem

MB2 = 2 << 20
HUGEPAGES = Path("/sys/kernel/mm/hugepages")


def vm_pin(pid: int | str = "self") -> int:
    """Bytes the process has pinned, from a plain read of its status file."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmPin:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmPin line")


def all_pools() -> dict[str, dict[str, int]]:
    return {p.name: pool_counts(p) for p in sorted(HUGEPAGES.iterdir())}


def quiet_pools(seconds: float = 10.0) -> dict[str, dict[str, int]]:
    """The pools once they hold still for 200 ms: pages of a process that just exited reach
    the free list a moment after it was reaped (the kernel frees them late)."""
    deadline = time.monotonic() + seconds
    last, since = all_pools(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = all_pools()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.2:
            break
    return last


def wait_for(check, seconds: float = 10.0):
    """``check()`` until it returns something true, or its last answer after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.005)


def child(code: str, **kwargs) -> subprocess.CompletedProcess:
    """Python ``code`` in a new root process importing this physmem (a new process: rings a
    process made earlier keep working after kernel.io_uring_disabled changes)."""
    env, cwd = python_env()
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60, **kwargs)


@pytest.mark.root
@pytest.mark.hugepages
def test_pin_true_false_and_auto(hugepage_pool):
    hugepage_pool(4)
    base = vm_pin()
    with allocate_contiguous("2M", pin=True) as pinned, \
            allocate_contiguous("2M", pin=False) as loose, \
            allocate_scatter("4M", pin="auto") as auto:
        listed = registered_buffers()
        assert pinned.pinned and (pinned.address, pinned.size) in listed
        assert auto.pinned and (auto.address, auto.size) in listed
        assert not loose.pinned and (loose.address, loose.size) not in listed
        assert vm_pin() == base + pinned.size + auto.size
        assert pinned.pin_error is None and loose.pin_error is None and auto.pin_error is None
        assert pinned.verify().pinned and not loose.verify().pinned
        assert loose.verification.as_json()["pinned"] is False
        assert "not pinned (not asked to)" in "\n".join(loose.verification.lines())
        assert any(line.startswith("pinned: ") for line in pinned.verification.lines())
        # Pinned and unpinned buffers alike are where the layout says.
        for buf in (pinned, loose, auto):
            pfns = own_pfns(buf.address, buf.size)
            assert [p * 4096 for p in pfns[:: MB2 // 4096]] == \
                [int(buf.virt_to_phys(i * MB2)) for i in range(buf.size // MB2)]

        pinned.unpin()   # returns once the kernel has let go
        assert not pinned.pinned and vm_pin() == base + auto.size
        assert (pinned.address, pinned.size) not in registered_buffers()
        assert pinned.pin_error == "unpinned by unpin()" and not pinned.verify().pinned
        loose.pin()
        assert loose.pinned and loose.pin_error is None and loose.verify().pinned
        assert (loose.address, loose.size) in registered_buffers()
        assert vm_pin() == base + loose.size + auto.size
    assert vm_pin() == base and not {(b.address, b.size) for b in (pinned, loose, auto)} \
        & registered_buffers()


@pytest.mark.root
@pytest.mark.hugepages
@pytest.mark.parametrize("bad", ["yes", "AUTO", 1, 0, None, 1.0, np.array([True]), [True]])
def test_pin_takes_true_false_or_auto_only(bad, hugepage_pool):
    hugepage_pool(1)
    before = quiet_pools()
    for make in (allocate_contiguous, allocate_scatter):
        with pytest.raises(InvalidArgument, match="must be True .*False .*or 'auto'"):
            make("2M", pin=bad)
    with pytest.raises(InvalidArgument, match="must be True .*False .*or 'auto'"):
        DmaPool("2M", pin=bad)
    assert all_pools() == before
    with allocate_contiguous("2M", pin=np.bool_(True)) as buf:
        assert buf.pinned


@pytest.mark.parametrize("name", ["reserve", "force"])
@pytest.mark.parametrize("bad", ["x", "", 1, 0, None])
def test_reserve_and_force_are_switches(name, bad):
    """reserve='x' used to grow the pool (any true value did): now every allocation entry
    point refuses it before touching a pool."""
    before = quiet_pools()
    for make in (allocate_contiguous, allocate_scatter):
        with pytest.raises(InvalidArgument, match=f"^{name} must be True or False"):
            make("2M", **{name: bad})
    if name == "reserve":
        with pytest.raises(InvalidArgument, match=f"^{name} must be True or False"):
            DmaPool("2M", reserve=bad)
    assert all_pools() == before


def test_sizes_beyond_the_machine_are_usage_errors():
    mem_total = next(int(ln.split()[1]) * 1024 for ln in open("/proc/meminfo")
                     if ln.startswith("MemTotal:"))
    for size in (2**64, mem_total + 1, "100T", "16777215T"):
        with pytest.raises(InvalidArgument, match="more than this machine's memory"):
            allocate_contiguous(size)
    with pytest.raises(InvalidArgument, match="more than this machine's memory"):
        allocate_scatter(2**64)
    with pytest.raises(InvalidArgument, match="more than this machine's memory"):
        DmaPool(2**70)
    r = run_physmem("alloc", str(2**63))
    assert r.returncode == 2 and "more than this machine's memory" in r.stderr, r.stderr


MEMLOCK_CHILD = RAW_PIN + """
import json, resource
from physmem.dma import allocate_scatter
from physmem.errors import PinUnavailable, OutOfMemory

def vm_pin():
    return next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status")
                if ln.startswith("VmPin:"))

out = {"limit": resource.getrlimit(resource.RLIMIT_MEMLOCK)[0],
       "cap_eff": next(ln.split()[1] for ln in open("/proc/self/status")
                       if ln.startswith("CapEff:"))}
held = []
for size in SIZES:
    try:
        held.append(allocate_scatter(size, pin=True))
        out.setdefault("pinned", []).append(vm_pin())
    except PinUnavailable as exc:
        out["refused"] = {"size": size, "cause": exc.cause, "message": str(exc),
                          "vm_pin": vm_pin()}
        try:
            buf = allocate_scatter(size, pin="auto")
        except OutOfMemory as exc2:   # mlock's own refusal: the limit is below the buffer
            out["auto"] = {"error": str(exc2)}
        else:
            out["auto"] = {"pinned": buf.pinned, "pin_error": buf.pin_error,
                           "verified": buf.verification.pinned}
        break
print(json.dumps(out))
"""


@pytest.mark.parametrize("limit,sizes,refused", [
    (1 << 20, ["2M"], "2M"),                 # below one buffer: the first pin is refused
    (4 << 20, ["2M", "4M"], "4M"),           # the pins of one process add up
    (None, ["2M", "4M"], None),              # high enough: unprivileged pins succeed
])
@pytest.mark.root
@pytest.mark.hugepages
def test_rlimit_memlock_unprivileged(limit, sizes, refused, hugepage_pool, run_unprivileged):
    """uid 65534 with CAP_SYS_ADMIN (to see its PFNs) but not CAP_IPC_LOCK allocates from
    pool pages root reserved, under RLIMIT_MEMLOCK ``limit`` (prlimit; None: the hard
    limit, which only CAP_SYS_RESOURCE could raise)."""
    if limit is None:
        limit = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
        if limit != resource.RLIM_INFINITY and limit < 8 << 20:
            pytest.skip(f"the hard RLIMIT_MEMLOCK is {limit} bytes, under the 6 MiB to pin "
                        "and the margin the user's other pins may take")
    hugepage_pool(8)
    before = quiet_pools()
    code = MEMLOCK_CHILD.replace("SIZES", repr(sizes))
    r = run_unprivileged(code, caps="+sys_admin", memlock=limit)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["limit"] == limit
    assert int(out["cap_eff"], 16) == 1 << 21   # CAP_SYS_ADMIN only: no CAP_IPC_LOCK
    pinned = out.get("pinned", [])
    if refused is None:
        assert "refused" not in out and pinned == [2 << 20, 6 << 20]
    else:
        got = out["refused"]
        assert got["size"] == refused and got["cause"] == "memlock"
        msg = got["message"]
        human = {1 << 20: "1.0 MiB", 4 << 20: "4.0 MiB"}[limit]
        need = int(refused[:-1]) << 20
        assert f"RLIMIT_MEMLOCK is {human}" in msg, msg
        assert f"pinning {need >> 20}.0 MiB" in msg, msg
        assert f"at least {(need + got['vm_pin']) / 2**20:.1f} MiB" in msg, msg
        assert f"{got['vm_pin'] / 2**20:.1f} MiB pinned by this process" in msg or \
            (got["vm_pin"] == 0 and "0 B pinned by this process" in msg), msg
        assert "ulimit -l" in msg and "LimitMEMLOCK=" in msg and "CAP_IPC_LOCK" in msg
        if need > limit:
            # pin="auto" cannot help either: mlock refuses a buffer over the limit.
            assert "RLIMIT_MEMLOCK" in out["auto"]["error"]
        else:
            assert out["auto"] == {"pinned": False, "pin_error": out["auto"]["pin_error"],
                                   "verified": False}
            assert "RLIMIT_MEMLOCK" in out["auto"]["pin_error"]
    assert wait_for(lambda: all_pools() == before), "the child's pages are not back"


DISABLED_CHILD = RAW_PIN + """
import json
from physmem.dma import allocate_contiguous
from physmem.errors import PinUnavailable
out = {"raw": raw_pin()}
try:
    allocate_contiguous("2M", pin=True)
except PinUnavailable as exc:
    out["cause"], out["message"] = exc.cause, str(exc)
with allocate_contiguous("2M", pin="auto") as buf:
    out["auto"] = [buf.pinned, buf.pin_error, buf.verify().pinned]
print(json.dumps(out))
"""


@pytest.mark.root
@pytest.mark.hugepages
def test_io_uring_disabled_2_refuses_every_pin(sysctl_restored, hugepage_pool):
    hugepage_pool(2)
    sysctl_restored("kernel.io_uring_disabled", 2)
    r = child(DISABLED_CHILD)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["raw"] == errno.EPERM and out["cause"] == "disabled"
    assert "kernel.io_uring_disabled=2 disables io_uring for every process" in out["message"]
    assert "`sysctl kernel.io_uring_disabled=0`" in out["message"]
    pinned, why, verified = out["auto"]
    assert not pinned and not verified and "kernel.io_uring_disabled=2" in why
    # The CLI: --pin yes is refused (the system refused: exit 1), --pin auto says why not.
    r = run_physmem("alloc", "2M", "--pin", "yes")
    assert r.returncode == 1 and "kernel.io_uring_disabled=2" in r.stderr, r.stderr
    assert "pin=" not in r.stderr and "Traceback" not in r.stderr
    r = run_physmem("alloc", "2M", "--json")
    assert r.returncode == 0, r.stderr
    v = json.loads(r.stdout)["verification"]
    assert v["pinned"] is False and "kernel.io_uring_disabled=2" in v["pin_error"]
    r = run_physmem("alloc", "2M")
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("not pinned"))
    assert line.startswith("not pinned (memory offline or migration may move the pages): ")
    assert "kernel.io_uring_disabled=2" in line


UNPRIVILEGED_PIN = RAW_PIN + """
import mmap, ctypes
from physmem.dma import pin
from physmem.errors import PinUnavailable
page = mmap.mmap(-1, 4096)
cell = ctypes.c_char.from_buffer(page)
try:
    pin.unpin(pin.pin_range(ctypes.addressof(cell), 4096))
    print("pinned", raw_pin())
except PinUnavailable as exc:
    print(exc.cause, raw_pin(), exc)
del cell
"""


@pytest.mark.root
@pytest.mark.hugepages
def test_io_uring_disabled_1_allows_admins_and_the_group(sysctl_restored, hugepage_pool,
                                                          run_unprivileged):
    hugepage_pool(2)
    sysctl_restored("kernel.io_uring_disabled", 1)
    sysctl_restored("kernel.io_uring_group", -1)
    r = child(DISABLED_CHILD)   # root: CAP_SYS_ADMIN may
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["raw"] == 0 and "cause" not in out and out["auto"] == [True, None, True]
    # uid 65534 without capabilities (it cannot see PFNs, so it pins anonymous memory).
    r = run_unprivileged(UNPRIVILEGED_PIN)
    cause, raw, message = r.stdout.split(" ", 2)
    assert cause == "disabled" and raw == str(errno.EPERM), r.stdout + r.stderr
    assert "kernel.io_uring_disabled=1 allows io_uring only to CAP_SYS_ADMIN and the group " \
        "in kernel.io_uring_group (-1)" in message
    assert "set kernel.io_uring_group to a group of this user" in message
    sysctl_restored("kernel.io_uring_group", 65534)
    r = run_unprivileged(UNPRIVILEGED_PIN)
    assert r.stdout.split() == ["pinned", "0"], r.stdout + r.stderr


# A seccomp filter as container runtimes' default profiles have it for io_uring: the three
# io_uring syscalls fail with ERRNO (Docker: EPERM; profiles that want a library's fallback:
# ENOSYS), everything else is allowed. Classic BPF over struct seccomp_data (nr at offset 0,
# arch at 4), installed with prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER).
SECCOMP_CHILD = RAW_PIN + """
import ctypes, json, struct
ERRNO = {errno}
def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06
prog = b"".join([
    insn(LD_ABS, 0, 0, 4), insn(JEQ, 0, 5, 0xC000003E),          # AUDIT_ARCH_X86_64
    insn(LD_ABS, 0, 0, 0),
    insn(JEQ, 2, 0, 425), insn(JEQ, 1, 0, 426), insn(JEQ, 0, 1, 427),
    insn(RET, 0, 0, 0x00050000 | ERRNO),                          # SECCOMP_RET_ERRNO
    insn(RET, 0, 0, 0x7FFF0000),                                  # SECCOMP_RET_ALLOW
])
filt = ctypes.create_string_buffer(prog)
fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(filt))
fbuf = ctypes.create_string_buffer(fprog)
libc = ctypes.CDLL(None, use_errno=True)
arg = ctypes.c_ulong
assert libc.prctl(38, arg(1), arg(0), arg(0), arg(0)) == 0       # PR_SET_NO_NEW_PRIVS
# PR_SET_SECCOMP, SECCOMP_MODE_FILTER
assert libc.prctl(22, arg(2), arg(ctypes.addressof(fbuf)), arg(0), arg(0)) == 0, ctypes.get_errno()
from physmem.dma import allocate_contiguous
from physmem.errors import PinUnavailable
out = {{"seccomp": next(ln.split()[1] for ln in open("/proc/self/status")
                         if ln.startswith("Seccomp:")), "raw": raw_pin()}}
try:
    allocate_contiguous("2M", pin=True)
except PinUnavailable as exc:
    out["cause"], out["errno"], out["message"] = exc.cause, exc.errno, str(exc)
with allocate_contiguous("2M") as buf:     # pin="auto", the default
    out["auto"] = [buf.pinned, buf.pin_error, buf.verify().pinned]
print(json.dumps(out))
"""


@pytest.mark.root
@pytest.mark.hugepages
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_seccomp_filter_that_blocks_io_uring(err, hugepage_pool):
    hugepage_pool(2)
    before = quiet_pools()
    r = child(SECCOMP_CHILD.format(errno=err))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["seccomp"] == "2" and out["raw"] == err   # the filter is real and is what refuses
    assert out["cause"] == "seccomp" and out["errno"] == err
    assert "seccomp filter" in out["message"] and "io_uring_setup" in out["message"]
    assert "--security-opt seccomp=" in out["message"]
    pinned, why, verified = out["auto"]
    assert not pinned and not verified and "seccomp filter" in why
    assert wait_for(lambda: all_pools() == before), (all_pools(), before)


@pytest.mark.root
def test_unavailable_reason_and_nfd_agree_with_a_raw_pin(sysctl_restored):
    code = RAW_PIN + ("from physmem.dma.pin import unavailable_reason\n"
                      "from physmem.nfd import dma_pinning\n"
                      "print(repr((raw_pin(), unavailable_reason(), dma_pinning())))")
    for value in (0, 2):
        sysctl_restored("kernel.io_uring_disabled", value)
        raw, reason, dma = eval(child(code).stdout)
        assert (raw == 0) == (reason is None) == dma == (value == 0)
        if value:
            assert "kernel.io_uring_disabled=2" in reason


ACCOUNTING_CHILD = """
import os, sys
from physmem.dma import allocate_contiguous
buf = allocate_contiguous("4M", reserve=True, pin=True)
print(buf.address, buf.size, flush=True)
sys.stdin.readline()
if END == "close":
    buf.close()
    print("closed", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.root
@pytest.mark.hugepages
@pytest.mark.parametrize("end", ["close", "exit", "sigkill"])
def test_pool_accounting_after_a_pinned_buffer_ends(end, pools_restored):
    """reserve=True pages are surplus pages the kernel frees with the buffer: the pools are
    exactly as before once close() returns and once a process that did not close its buffer
    has been reaped. After SIGKILL the io_uring lets go of the pages from a kernel worker a
    moment after the process is gone: that one is waited for, with a deadline."""
    before = quiet_pools()
    env, cwd = python_env()
    p = subprocess.Popen([sys.executable, "-c", ACCOUNTING_CHILD.replace("END", repr(end))],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                         cwd=cwd)
    try:
        address, size = map(int, p.stdout.readline().split())
        assert size == 4 << 20
        # Pinned, by the kernel's account: the ring lists the buffer, VmPin counts it.
        assert (address, size) in registered_buffers(str(p.pid))
        assert vm_pin(p.pid) == size
        # Two pages in use: surplus ones, or free ones the pool already had.
        during, was = all_pools()["hugepages-2048kB"], before["hugepages-2048kB"]
        in_use = lambda c: c["nr_hugepages"] - c["free_hugepages"]   # noqa: E731
        assert in_use(during) == in_use(was) + 2
        if end == "sigkill":
            p.send_signal(signal.SIGKILL)
            p.wait()
            assert wait_for(lambda: all_pools() == before), (all_pools(), before)
            return
        p.stdin.write("\n")
        p.stdin.flush()
        if end == "close":
            assert p.stdout.readline() == "closed\n"
            # close() returned: unpinned and the pages back, with the process still alive.
            assert all_pools() == before
            assert vm_pin(p.pid) == 0 and (address, size) not in registered_buffers(str(p.pid))
            p.stdin.write("\n")
            p.stdin.flush()
        assert p.wait(timeout=60) == 0
        # Reaped: its pages reach the free list from the kernel a moment later.
        assert wait_for(lambda: all_pools() == before), (all_pools(), before)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.root
@pytest.mark.hugepages
def test_dmapool_passes_pin_through(hugepage_pool):
    hugepage_pool(2)
    with DmaPool("2M", pin=False) as loose, DmaPool("2M", pin=True) as pinned:
        assert not loose.buffer.pinned and pinned.buffer.pinned
        listed = registered_buffers()
        assert (pinned.address, pinned.size) in listed
        assert (loose.address, loose.size) not in listed
    with DmaPool("2M") as auto:
        assert auto.buffer.pinned


@pytest.mark.root
@pytest.mark.hugepages
def test_cli_alloc_pin_flag(hugepage_pool):
    hugepage_pool(2)
    for flag, pinned in (("yes", True), ("no", False), ("auto", True)):
        r = run_physmem("alloc", "2M", "--pin", flag, "--json")
        assert r.returncode == 0, r.stderr
        v = json.loads(r.stdout)["verification"]
        assert v["pinned"] is pinned and v["pin_error"] is None
        text = run_physmem("alloc", "2M", "--pin", flag).stdout
        assert ("pinned: io_uring holds the page as a fixed buffer" in text) == pinned
        assert ("not pinned (not asked to)" in text) == (not pinned)
    r = run_physmem("alloc", "2M", "--pin", "maybe")
    assert r.returncode == 2 and "--pin" in r.stderr and "invalid choice" in r.stderr
