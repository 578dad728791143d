"""Isolation section: isolcpus vs nohz_full vs rcu_nocbs, housekeeping, cpuset, IRQ affinity."""
from __future__ import annotations

from ..proc._read import listdir, read_optional
from .._syntax import format_cpulist, parse_cpulist, parse_cpumask
from ..errors import ParseError
from .context import Context
from ..findings import Finding, Severity

__all__ = ["check"]

S = "isolation"


def _irq_cpus(ctx: Context) -> dict[str, frozenset[int]]:
    base = f"{ctx.proc_root}/irq"
    out = {}
    for name in listdir(base, missing_ok=True):
        if not name.isdigit():
            continue
        # effective_affinity_list is where the IRQ really fires (4.15+); fall back to the mask.
        for fname in ("effective_affinity_list", "smp_affinity_list"):
            data = read_optional(f"{base}/{name}/{fname}")
            if data:
                try:
                    out[name] = parse_cpulist(data, f"{base}/{name}/{fname}")
                except ParseError:
                    continue  # one odd IRQ file costs that IRQ, not the section
                break
    return out


def check(ctx: Context) -> list[Finding]:
    topo = ctx.topology
    out: list[Finding] = []
    valid = topo.valid_cpus
    online = topo.cpu_sets.online
    isolated = topo.isolated_cpus & online
    nohz = topo.cpu_sets.nohz_full & online
    cmd = topo.cmdline
    # The kernel offloads RCU callbacks from every nohz_full CPU even without rcu_nocbs=.
    rcu = ((cmd.rcu_nocbs if cmd and cmd.rcu_nocbs else frozenset()) | nohz) & online
    quiet = isolated | nohz
    if not quiet:
        spare = sorted(online)[1:] if len(online) > 1 else []
        lst = format_cpulist(spare)
        out.append(Finding("isolation.none", S, Severity.INFO,
                           "no CPU is isolated: control loops will share CPUs with the kernel and "
                           "other processes",
                           f"boot with isolcpus=managed_irq,domain,{lst} nohz_full={lst} "
                           f"rcu_nocbs={lst}" if spare else None))
        return out
    if not online - quiet:
        out.append(Finding("isolation.no_housekeeping", S, Severity.ERROR,
                           "every online CPU is isolated or nohz_full: the kernel has no "
                           "housekeeping CPU (the boot CPU is forced back to housekeeping)",
                           "leave at least one core out of isolcpus=/nohz_full="))
    if nohz - isolated:
        lst = format_cpulist(nohz - isolated)
        out.append(Finding("isolation.nohz_not_isolated", S, Severity.WARNING,
                           f"CPUs {lst} are nohz_full but not isolated: the scheduler still "
                           "balances other tasks onto them",
                           f"isolcpus=managed_irq,domain,{format_cpulist(nohz | isolated)}"))
    if isolated - nohz:
        lst = format_cpulist(isolated - nohz)
        out.append(Finding("isolation.isolated_tick", S, Severity.WARNING,
                           f"CPUs {lst} are isolated but not nohz_full: the scheduler tick still "
                           "interrupts them",
                           f"nohz_full={format_cpulist(isolated | nohz)}"))
    if isolated - rcu:
        lst = format_cpulist(isolated - rcu)
        out.append(Finding("isolation.rcu_callbacks", S, Severity.WARNING,
                           f"isolated CPUs {lst} still run RCU callbacks",
                           f"rcu_nocbs={format_cpulist(isolated | rcu)}"))
    mine = isolated & valid
    if isolated and not mine:
        out.append(Finding("isolation.not_in_cpuset", S, Severity.WARNING,
                           f"isolated CPUs {format_cpulist(isolated)} are outside this process's "
                           f"CPUs ({format_cpulist(topo.allowed_cpus)}): it cannot use them",
                           "run it in a cpuset/affinity that includes them (taskset -c "
                           f"{format_cpulist(isolated)} ...)"))
    elif mine:
        out.append(Finding("isolation.in_cpuset", S, Severity.INFO,
                           f"this process may use isolated CPUs {format_cpulist(mine)}"))
    housekeeping = online - quiet
    default = read_optional(f"{ctx.proc_root}/irq/default_smp_affinity")
    try:
        dmask = parse_cpumask(default) & isolated if default is not None else frozenset()
    except ParseError:
        dmask = frozenset()
    if dmask:
        out.append(Finding("isolation.irq_default_affinity", S, Severity.WARNING,
                           f"new IRQs may land on isolated CPUs {format_cpulist(dmask)}",
                           f"irqaffinity={format_cpulist(housekeeping)}"))
    hit = sorted((int(irq) for irq, cpus in _irq_cpus(ctx).items() if cpus & isolated))
    if hit:
        shown = ",".join(map(str, hit[:10])) + ("..." if len(hit) > 10 else "")
        out.append(Finding("isolation.irq_on_isolated", S, Severity.WARNING,
                           f"IRQs {shown} can fire on isolated CPUs",
                           f"for i in {' '.join(map(str, hit[:10]))}; do echo "
                           f"{format_cpulist(housekeeping)} > /proc/irq/$i/smp_affinity_list; done "
                           "(boot: isolcpus=managed_irq,...)"))
    return out
