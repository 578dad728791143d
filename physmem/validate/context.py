"""What every section needs, read once: roots and the topology (read lazily)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..topology import Topology, discover

__all__ = ["Context"]


@dataclass
class Context:
    sys_root: str = "/sys"
    proc_root: str = "/proc"
    _topology: Topology | None = field(default=None, repr=False)

    @property
    def topology(self) -> Topology:
        if self._topology is None:
            self._topology = discover(self.sys_root, self.proc_root)
        return self._topology
