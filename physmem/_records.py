"""Reprs of records and run tables that print addresses in hex, as the kernel prints them
(/proc/<pid>/maps, /proc/iomem), so a repr can be compared with those files by eye."""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, TypeVar

import numpy as np

__all__ = ["hex_fields", "AddressArray", "ADDRESS_FIELDS"]

_C = TypeVar("_C", bound=type)

# The fields of run tables (RUN_DTYPE and the like) that hold addresses.
ADDRESS_FIELDS = frozenset({"vaddr", "paddr", "address", "phys", "start", "end"})


def _show(value: Any, as_hex: bool) -> str:
    if as_hex and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{int(value):#x}"
    return repr(value)


def hex_fields(*names: str) -> Callable[[_C], _C]:
    """Class decorator for a NamedTuple or a dataclass (put it above ``@dataclass``): its
    repr shows the fields ``names`` in hex when they hold an integer, the rest as before."""

    def decorate(cls: _C) -> _C:
        fields: tuple[str, ...] = getattr(cls, "_fields", ()) or tuple(
            f.name for f in dataclasses.fields(cls) if f.repr)
        unknown = set(names) - set(fields)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {sorted(unknown)}")

        def __repr__(self: Any) -> str:
            return f"{type(self).__name__}(" + ", ".join(
                f"{f}={_show(getattr(self, f), f in names)}" for f in fields) + ")"

        cls.__repr__ = __repr__  # type: ignore[assignment]
        return cls

    return decorate


class AddressArray(np.ndarray):
    """A structured array whose address fields (:data:`ADDRESS_FIELDS`) print in hex; its
    data, dtype and behaviour are the plain array's (``.view(np.ndarray)`` gives it back)."""

    def __repr__(self) -> str:
        names = self.dtype.names
        if not names or self.ndim != 1:
            return super().__repr__()

        def row(r: Any) -> str:
            return "(" + ", ".join(f"{n}={_show(r[n].item(), n in ADDRESS_FIELDS)}"
                                   for n in names) + ")"

        items = [row(r) for r in self] if len(self) <= 6 else (
            [row(r) for r in self[:3]] + ["..."] + [row(r) for r in self[-3:]])
        rows = f"{len(self)} row{'' if len(self) == 1 else 's'}"
        return f"{type(self).__name__}([{', '.join(items)}], {rows})"

    __str__ = __repr__
