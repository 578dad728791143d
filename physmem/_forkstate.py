"""State that belongs to one process: kept across calls, made anew in a fork child.

A fork child inherits its parent's file descriptors and objects, but a lock file, a
guardian's socket or an io_uring is the parent's: the child must let go of its copies (so
that, for instance, the parent's death still reaches the parent's guardian) and make its own
when it needs them. Threads of the parent may have held locks at the fork, so the child's
state is a fresh object, never the inherited one reset.
"""
from __future__ import annotations

import os
from typing import Callable, Generic, TypeVar

__all__ = ["ProcessLocal"]

T = TypeVar("T")


class ProcessLocal(Generic[T]):
    """``get()`` is this process's value, made by ``make()`` on first use; in a fork child
    the inherited value is handed to ``forget`` (which closes the parent's descriptors
    without touching what they refer to) and the next ``get()`` makes a new one."""

    def __init__(self, make: Callable[[], T], forget: Callable[[T], None]) -> None:
        self._make = make
        self._forget = forget
        self._value: T | None = None
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def get(self) -> T:
        if self._value is None:
            self._value = self._make()
        return self._value

    def peek(self) -> T | None:
        """The value if this process made one, without making it."""
        return self._value

    def _after_fork_in_child(self) -> None:
        old, self._value = self._value, None
        if old is not None:
            self._forget(old)
