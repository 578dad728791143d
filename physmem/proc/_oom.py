"""OOM killer view of a process: oom_score, oom_score_adj and the legacy oom_adj."""
from __future__ import annotations

from typing import NamedTuple

from .._args import as_int
from ..errors import ParseError
from ._read import pid_path, read_bytes, write_bytes

__all__ = ["Oom", "oom", "set_oom_score_adj"]


class Oom(NamedTuple):
    score: int      # 0..2000: what the OOM killer would pick by (higher dies first)
    score_adj: int  # -1000 (never kill) .. 1000
    adj: int        # legacy -17..15 view of score_adj


def _int(path: str, pid: int | None) -> int:
    data = read_bytes(path, pid)
    try:
        return int(data)
    except ValueError:
        raise ParseError("expected an integer", path=path, lineno=1, line=data) from None


def oom(pid: int | None = None, proc_root: str = "/proc") -> Oom:
    return Oom(*(_int(pid_path(proc_root, pid, n), pid)
                 for n in ("oom_score", "oom_score_adj", "oom_adj")))


def set_oom_score_adj(pid: int | None, value: int, proc_root: str = "/proc") -> None:
    """Set ``oom_score_adj`` (-1000..1000). Lowering it needs CAP_SYS_RESOURCE."""
    value = as_int(value, "oom_score_adj", lo=-1000, hi=1000)
    path = pid_path(proc_root, pid, "oom_score_adj")
    write_bytes(path, b"%d\n" % value, "cannot set oom_score_adj", pid=pid)
