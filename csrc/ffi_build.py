"""cffi build script for physmem._native (API mode, out of line).

The C API is declared once, per concern, in csrc/cdef/*.h; constants are declared as ``...``
so the compiler takes their values from the real kernel headers. The implementations are the
plain C files in csrc/. Adding a concern means adding NAME.c, NAME.h and cdef/NAME.h.
"""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CDEFS = sorted((HERE / "cdef").glob("*.h"))
HEADERS = sorted(p.name for p in HERE.glob("*.h"))
SOURCES = sorted(HERE.glob("*.c"))

ffi = FFI()
ffi.cdef("\n".join(p.read_text() for p in CDEFS))
ffi.set_source(
    "physmem._native",
    "".join(f'#include "{name}"\n' for name in HEADERS),
    # Relative paths keep setuptools happy when it builds from a copied tree.
    sources=[str(p.relative_to(HERE.parent)) for p in SOURCES],
    include_dirs=[str(HERE)],
    define_macros=[("_GNU_SOURCE", None), ("_FILE_OFFSET_BITS", "64")],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffi.compile(tmpdir=str(HERE.parent), verbose=True)
