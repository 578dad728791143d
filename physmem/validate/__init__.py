"""The kernel validator: is this machine set up for low-latency DMA work, and what to fix.

``run(sections=None)`` runs the sections (memory, numa, isolation, access, cpuidle, dma; one
module each)
and returns a :class:`Report` of :class:`Finding`::

    from physmem import validate
    validate.run(["isolation"]).to_json()
"""
from __future__ import annotations

from typing import Iterable

from .._args import as_choice, as_iterable
from ..errors import InvalidArgument, PhysmemError
from . import access, cpuidle, dma, isolation, memory, numa
from .context import Context
from ..findings import Finding, Report, Severity

__all__ = ["SECTIONS", "run"]  # the records are physmem.findings'

SECTIONS = {"memory": memory.check, "numa": numa.check, "isolation": isolation.check,
            "access": access.check, "cpuidle": cpuidle.check, "dma": dma.check}


def run(sections: Iterable[str] | str | None = None, *, sys_root: str = "/sys",
        proc_root: str = "/proc") -> Report:
    """Run ``sections`` (default: all). A section that cannot read its files yields a finding."""
    if sections is None:
        names = list(SECTIONS)
    else:
        listed = [sections] if isinstance(sections, str) else as_iterable(
            sections, "sections", "a section name, a list of them or None (all)")
        names = [as_choice(n, "sections", SECTIONS) for n in listed]
    if not names:   # [] would check nothing and report "ok"
        raise InvalidArgument(f"sections is empty: choose from {list(SECTIONS)} or pass None "
                              "for all")
    ctx = Context(sys_root, proc_root)
    findings: list[Finding] = []
    for name in names:
        try:
            findings.extend(SECTIONS[name](ctx))
        except (PhysmemError, OSError) as exc:
            findings.append(Finding(f"{name}.unreadable", name, Severity.ERROR,
                                    f"the {name} checks could not read the system: {exc}"))
    return Report(tuple(findings), tuple(names))
