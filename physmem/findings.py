"""Finding and Report: what a check found (the kernel validator, the maps rules), how bad it
is, and the exact fix."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Severity", "Finding", "Report"]


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2


@dataclass(frozen=True)
class Finding:
    """``id`` is stable (``section.what``) for scripts; ``fix`` is a boot parameter, sysctl or
    command to run, or ``None`` when there is nothing to change; ``subject`` is the object
    found at fault, if there is one (a :class:`~physmem.proc.Vma` for the maps rules; not in
    :meth:`to_dict`)."""

    id: str
    section: str
    severity: Severity
    message: str
    fix: str | None = None
    subject: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "section": self.section, "severity": self.severity.name.lower(),
                "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    sections: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """No warnings and no errors (informational findings are fine)."""
        return all(f.severity == Severity.INFO for f in self.findings)

    @property
    def worst(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.INFO)

    def by_id(self, finding_id: str) -> list[Finding]:
        return [f for f in self.findings if f.id == finding_id]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "worst": self.worst.name.lower(), "sections": list(self.sections),
                "findings": [f.to_dict() for f in self.findings]}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)
