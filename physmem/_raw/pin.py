"""Raw long-term pins through io_uring fixed buffers (csrc/pin.h): ``-errno`` on failure."""
from __future__ import annotations

from typing import Final

from . import ffi, lib

MAX_SLOT_BYTES: Final[int] = lib.PM_PIN_MAX_SLOT_BYTES


def ring(slots: int) -> int:
    """A ring with ``slots`` empty buffer slots: its fd, or -errno."""
    ret: int = lib.pm_pin_ring(slots)
    return ret


def update(ring_fd: int, first: int, spans: list[tuple[int, int]]) -> int:
    """Set slots ``first``, ``first + 1``, ... to the ``(address, length)`` spans (length 0
    empties a slot, unpinning its pages): 0 or -errno, nothing changed on error."""
    n = len(spans)
    addr = ffi.new("uint64_t[]", [a for a, _ in spans])
    length = ffi.new("uint64_t[]", [s for _, s in spans])
    ret: int = lib.pm_pin_update(ring_fd, first, addr, length, n)
    return ret
