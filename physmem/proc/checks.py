"""Consistency rules for a process's mappings, reported as findings rather than raised."""
from __future__ import annotations

from typing import Iterable

from ..findings import Finding, Severity
from ._maps import Prot, Vma

__all__ = ["check_maps"]

S = "maps"


# name -> (expected prot, shared, must exist). [heap] may be absent (static or brk-less
# processes); [vdso]/[vvar] are absent in kernel threads and with vdso=0.
_RULES = {
    "[stack]": (Prot.READ | Prot.WRITE, False, True),
    "[vdso]": (Prot.READ | Prot.EXEC, False, True),
    "[vvar]": (Prot.READ, False, True),
    "[heap]": (Prot.READ | Prot.WRITE, False, False),
}


def check_maps(vmas: Iterable[Vma]) -> list[Finding]:
    """Check the design-notes rules: one ``[stack]`` rw-p, one ``[vdso]`` r-xp, ``[vvar]``
    r--p, ``[heap]`` rw-p (may be absent); also ordering and overlap of the ranges."""
    vmas = list(vmas)
    out: list[Finding] = []
    if not vmas:
        return [Finding("maps.empty", S, Severity.INFO, "no mappings (kernel thread or zombie)")]
    for name, (prot, shared, required) in _RULES.items():
        found = [v for v in vmas if v.path == name]
        if not found:
            if required:
                out.append(Finding("maps.missing", S, Severity.WARNING, f"no {name} mapping"))
            continue
        if len(found) > 1:
            out.append(Finding("maps.duplicate", S, Severity.ERROR,
                               f"{len(found)} {name} mappings, expected one", subject=found[1]))
        for v in found:
            if v.prot != prot or v.shared != shared:
                out.append(Finding("maps.permissions", S, Severity.ERROR,
                                   f"{name} is {_perms(v)}, expected "
                                   f"{_perms(v._replace(prot=prot, shared=shared))}", subject=v))
    prev = None
    for v in vmas:
        if v.start >= v.end:
            out.append(Finding("maps.empty-range", S, Severity.ERROR, "start >= end", subject=v))
        if prev is not None and v.start < prev.end:
            out.append(Finding("maps.overlap", S, Severity.ERROR,
                               f"{v.start:#x} overlaps or precedes {prev.end:#x}", subject=v))
        prev = v
    return out


def _perms(v: Vma) -> str:
    return "".join((c if v.prot & f else "-") for c, f in
                   (("r", Prot.READ), ("w", Prot.WRITE), ("x", Prot.EXEC))) + (
        "s" if v.shared else "p")
