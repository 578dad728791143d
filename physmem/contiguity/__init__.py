"""Deprecated name of :mod:`physmem.analysis.contiguity`, kept for one release."""
import warnings

from ..analysis.contiguity import *  # noqa: F403
from ..analysis.contiguity import __all__  # noqa: F401

warnings.warn("physmem.contiguity moved to physmem.analysis.contiguity; the old name goes in the next "
              "release", DeprecationWarning, stacklevel=2)
