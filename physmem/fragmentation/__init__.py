"""Deprecated name of :mod:`physmem.analysis.fragmentation`, kept for one release."""
import warnings

from ..analysis.fragmentation import *  # noqa: F403
from ..analysis.fragmentation import __all__  # noqa: F401

warnings.warn("physmem.fragmentation moved to physmem.analysis.fragmentation; the old name goes in the next "
              "release", DeprecationWarning, stacklevel=2)
