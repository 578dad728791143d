"""CPU idle section: how long an idle CPU takes to wake up.

On a VM guest, a vCPU that halts when idle leaves the guest: waking it again (an IPI from the
CPU that made a thread runnable) goes through the hypervisor and costs tens of microseconds.
The ``haltpoll`` cpuidle driver and governor (KVM guests) avoid that by polling for up to
``guest_halt_poll_ns`` before halting; at 0 every cross-CPU wake-up pays the full exit. That
dominates anything that hands work between threads: a userfaultfd server answering faults,
a completion thread, a futex wake-up. Measured on the 2-vCPU test VM (kernel 6.18), the native
userfaultfd server (``serve_zero``, 128 MiB) answered a median 81k faults/s with it at 0 and
135k/s at 200000.
"""
from __future__ import annotations

from typing import NamedTuple

from .._sysfs import read_optional
from ..errors import PhysmemError
from .context import Context
from ..findings import Finding, Severity

__all__ = ["IdleSetup", "read_idle", "check", "HALT_POLL_NS"]

S = "cpuidle"
# The kernel's default guest_halt_poll_ns (drivers/cpuidle/governors/haltpoll.c): long enough
# to catch a wake-up that follows within a fault or a syscall round trip.
HALT_POLL_NS = 200000


class IdleSetup(NamedTuple):
    """What decides an idle CPU's wake-up latency; a field is None when its file is absent
    (no cpuidle, or not a haltpoll guest)."""

    driver: str | None
    governor: str | None
    guest_halt_poll_ns: int | None
    poll_path: str

    @property
    def haltpoll(self) -> bool:
        """The haltpoll governor runs (guest_halt_poll_ns only matters to it)."""
        return self.governor == "haltpoll"

    def describe(self) -> str:
        """One line, e.g. for a benchmark header."""
        if self.driver is None and self.governor is None:
            return "cpuidle: not available"
        text = f"cpuidle driver {self.driver or '?'}, governor {self.governor or '?'}"
        if self.guest_halt_poll_ns is not None:
            text += f", guest_halt_poll_ns {self.guest_halt_poll_ns}"
        return text


def _text(path: str) -> str | None:
    try:
        data = read_optional(path)
    except (PhysmemError, OSError):
        return None
    text = data.decode(errors="replace").strip() if data is not None else ""
    return text if text and text != "(null)" else None


def read_idle(sys_root: str = "/sys") -> IdleSetup:
    """The cpuidle driver and governor, and the haltpoll governor's poll limit."""
    base = f"{sys_root}/devices/system/cpu/cpuidle"
    poll_path = f"{sys_root}/module/haltpoll/parameters/guest_halt_poll_ns"
    # current_governor_ro is all that kernels before 5.8 offer without cpuidle_sysfs_switch.
    governor = _text(f"{base}/current_governor") or _text(f"{base}/current_governor_ro")
    poll = _text(poll_path)
    return IdleSetup(_text(f"{base}/current_driver"), governor,
                     int(poll) if poll is not None and poll.isdigit() else None, poll_path)


def check(ctx: Context) -> list[Finding]:
    idle = read_idle(ctx.sys_root)
    if idle.driver is None and idle.governor is None:
        return []
    if idle.haltpoll and idle.guest_halt_poll_ns == 0:
        return [Finding(
            "cpuidle.haltpoll_no_poll", S, Severity.WARNING,
            f"idle vCPUs halt at once ({idle.describe()}): every wake-up of a thread on an "
            "idle CPU exits to the hypervisor and costs tens of microseconds, which caps "
            "thread-to-thread hand-offs (on a 2-vCPU VM a userfaultfd server answered 40% "
            "fewer faults/s than with polling on)",
            f"echo {HALT_POLL_NS} > {idle.poll_path} "
            f"(boot: haltpoll.guest_halt_poll_ns={HALT_POLL_NS})")]
    if idle.haltpoll and idle.guest_halt_poll_ns is not None:
        return [Finding("cpuidle.haltpoll", S, Severity.INFO,
                        f"idle vCPUs poll up to {idle.guest_halt_poll_ns / 1000:g} us before "
                        f"halting ({idle.describe()})")]
    return [Finding("cpuidle.driver", S, Severity.INFO, idle.describe())]
