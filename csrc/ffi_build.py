"""cffi build script for physmem._native (API mode, out of line).

Each C prototype is written once, in its concern's header csrc/NAME.h; the cffi declarations
are generated from the parts of those headers between ``/* cffi:begin */`` and
``/* cffi:end */``:

- declarations (prototypes, structs, typedefs) are taken as written;
- ``#define NAME value`` becomes ``#define NAME ...``, so the compiler takes every constant's
  value from the real headers (ours, or the kernel's where it defines the name first);
  ``#if``/``#ifndef``/``#endif``/``#include`` lines are dropped;
- ``/* cffi:const NAME NAME ... */`` declares constants that come from system headers
  (``sys/mman.h``, ``linux/userfaultfd.h``, ...), also as ``...``;
- a constant used as an array length is replaced by its literal value, which cffi needs to
  lay the struct out (and the compiled module checks against the real layout).

Adding a concern means adding NAME.c and NAME.h with a marked block.
"""
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADERS = sorted(HERE.glob("*.h"))
SOURCES = sorted(HERE.glob("*.c"))

_BLOCK = re.compile(r"/\*\s*cffi:begin\s*\*/(.*?)/\*\s*cffi:end\s*\*/", re.S)
_CONST = re.compile(r"/\*\s*cffi:const\b(.*?)\*/", re.S)
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DEFINE = re.compile(r"#\s*define\s+([A-Za-z_]\w*)(\(?)\s*(.*)")
_INT = re.compile(r"\(?(\d+)[uUlL]*\)?$")


def cdef_of(text: str, path: str = "<header>") -> str:
    """The cffi declarations of the marked blocks of one header's text."""
    out: list[str] = []
    seen: set[str] = set()
    literal: dict[str, str] = {}

    def const(name: str) -> None:
        if name not in seen:
            seen.add(name)
            out.append(f"#define {name} ...")

    blocks = _BLOCK.findall(text)
    if "cffi:begin" in text and not blocks:
        raise ValueError(f"{path}: cffi:begin without cffi:end")
    for block in blocks:
        for names in _CONST.findall(block):
            for name in names.replace("*", " ").split():
                const(name)
        body = _COMMENT.sub(" ", block)
        body = re.sub(r"\\\n", " ", body)  # continued preprocessor lines
        for line in body.splitlines():
            stripped = line.strip()
            if not stripped.startswith("#"):
                if stripped:
                    out.append(line.rstrip())
                continue
            m = _DEFINE.match(stripped)
            if m and not m.group(2):  # object-like macro; function-like ones are not API
                const(m.group(1))
                lit = _INT.match(m.group(3).strip())
                if lit:
                    literal[m.group(1)] = lit.group(1)
    cdef = "\n".join(out)
    for name, value in literal.items():
        cdef = re.sub(r"\[\s*" + name + r"\s*\]", f"[{value}]", cdef)
    return cdef + "\n" if cdef else ""


def cdef() -> str:
    """The cffi declarations of every csrc/*.h."""
    return "".join(cdef_of(p.read_text(), str(p)) for p in HEADERS)


ffi = FFI()
ffi.cdef(cdef())
ffi.set_source(
    "physmem._native",
    "".join(f'#include "{p.name}"\n' for p in HEADERS),
    # Relative paths keep setuptools happy when it builds from a copied tree.
    sources=[str(p.relative_to(HERE.parent)) for p in SOURCES],
    include_dirs=[str(HERE)],
    define_macros=[("_GNU_SOURCE", None), ("_FILE_OFFSET_BITS", "64")],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffi.compile(tmpdir=str(HERE.parent), verbose=True)
