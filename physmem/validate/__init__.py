"""The kernel validator: is this machine set up for low-latency DMA work, and what to fix.

``run(sections=None)`` runs the sections (memory, numa, isolation, access, cpuidle; one
module each)
and returns a :class:`Report` of :class:`Finding`::

    from physmem import validate
    validate.run(["isolation"]).to_json()

``validate.validate`` is the same function under its old name.
"""
from __future__ import annotations

from typing import Iterable

from ..errors import InvalidArgument, PhysmemError
from . import access, cpuidle, isolation, memory, numa
from .context import Context
from .findings import Finding, Report, Severity

__all__ = ["SECTIONS", "Finding", "Report", "Severity", "run", "validate"]

SECTIONS = {"memory": memory.check, "numa": numa.check, "isolation": isolation.check,
            "access": access.check, "cpuidle": cpuidle.check}


def run(sections: Iterable[str] | str | None = None, *, sys_root: str = "/sys",
        proc_root: str = "/proc") -> Report:
    """Run ``sections`` (default: all). A section that cannot read its files yields a finding."""
    names = list(SECTIONS) if sections is None else (
        [sections] if isinstance(sections, str) else list(sections))
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise InvalidArgument(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    ctx = Context(sys_root, proc_root)
    findings: list[Finding] = []
    for name in names:
        try:
            findings.extend(SECTIONS[name](ctx))
        except (PhysmemError, OSError) as exc:
            findings.append(Finding(f"{name}.unreadable", name, Severity.ERROR,
                                    f"the {name} checks could not read the system: {exc}"))
    return Report(tuple(findings), tuple(names))


# The name the CLI, benchmarks and earlier README used. The module used to be callable as
# well (its class swapped at import), which type checkers reject: call run() instead.
validate = run
