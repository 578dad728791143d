"""Deprecated name of :mod:`physmem.analysis.physmap`, kept for one release."""
import warnings

from ..analysis.physmap import *  # noqa: F403
from ..analysis.physmap import __all__  # noqa: F401

warnings.warn("physmem.physmap moved to physmem.analysis.physmap; the old name goes in the next "
              "release", DeprecationWarning, stacklevel=2)
