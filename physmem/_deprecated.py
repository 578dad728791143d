"""Public names that were renamed, kept one release (0.1.x) behind a DeprecationWarning.

A module lists its old names and calls :func:`renamed` from a module ``__getattr__`` that
type checkers do not see (``if not TYPE_CHECKING``): old code keeps running, typed code is
told to move.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable


def renamed(module: str, name: str, old_names: dict[str, str],
            load: Callable[[str], Any]) -> Any:
    """``load(new)`` for the old ``module.name``, with a warning; AttributeError otherwise."""
    new = old_names.get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    # stacklevel 3: past this helper and the module __getattr__, at the caller's line.
    warnings.warn(f"{module}.{name} is deprecated and goes in the next release: use "
                  f"{module}.{new}", DeprecationWarning, stacklevel=3)
    return load(new)
