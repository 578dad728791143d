"""Physical access section: can this process see PFNs and page flags at all?"""
from __future__ import annotations

import os

from ..errors import PhysmemError
from ..proc._read import open_fd
from .context import Context
from ..findings import Finding, Severity

__all__ = ["check"]

S = "access"
CAP_SYS_ADMIN = 21


def check(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    from ..proc import status  # the one /proc/PID/status parser (CapEff as an int)

    try:
        cap: int | None = status(proc_root=ctx.proc_root).get("CapEff")
    except (PhysmemError, OSError):
        cap = None
    if cap is None:
        out.append(Finding("access.capabilities_unknown", S, Severity.WARNING,
                           "cannot read this process's capabilities (/proc/self/status)"))
    elif not cap >> CAP_SYS_ADMIN & 1:
        out.append(Finding("access.no_cap_sys_admin", S, Severity.WARNING,
                           "without CAP_SYS_ADMIN the kernel reports every PFN in pagemap as 0: "
                           "physical addresses are unavailable",
                           "run as root, or: setcap cap_sys_admin+ep $(readlink -f $(which python3))"))
    for name, what in (("kpageflags", "page flags (HUGE, THP, ...)"), ("self/pagemap", "PFNs")):
        path = f"{ctx.proc_root}/{name}"
        try:
            fd = open_fd(path, f"cannot read {name}")
            try:
                os.read(fd, 8)
            finally:
                os.close(fd)
        except FileNotFoundError:
            out.append(Finding(f"access.{name.split('/')[-1]}_missing", S, Severity.ERROR,
                               f"{path} does not exist: no {what}",
                               "use a kernel built with CONFIG_PROC_PAGE_MONITOR=y"))
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            out.append(Finding(f"access.{name.split('/')[-1]}_unreadable", S, Severity.WARNING,
                               f"cannot read {path}: {reason}", "run as root"))
    return out
