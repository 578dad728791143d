# The cffi extension built from csrc/ (setup.py): untyped to mypy; the wrappers type it.
from typing import Any

ffi: Any
lib: Any
