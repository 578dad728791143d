"""Output helpers shared by subcommands: JSON to stdout, tables for people."""
from __future__ import annotations

import json
import sys
from typing import Any, Sequence


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _default(obj: Any) -> Any:
    if hasattr(obj, "_asdict"):
        return obj._asdict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
                align: str | None = None) -> None:
    """Columns padded to their widest cell; ``align`` is one 'l'/'r' per column."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" * len(headers)
    for row in cells:
        parts = [c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(row, widths, align)]
        print("  ".join(parts).rstrip())


# Set from the common --bytes option: sizes in text output as plain byte counts.
RAW_BYTES = False


def size_text(n: int) -> str:
    """A size for people (``64.0 MiB``), or exact bytes under ``--bytes``."""
    return str(int(n)) if RAW_BYTES else human_bytes(n)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def parse_int(text: str) -> int:
    """Decimal or 0x-prefixed hexadecimal, as people paste addresses."""
    return int(text, 0)
