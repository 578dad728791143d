"""cffi build script for physmem._native (API mode, out of line).

Each C prototype is written once, in its concern's header csrc/NAME.h; the cffi declarations
are generated from the parts of those headers between ``/* cffi:begin */`` and
``/* cffi:end */``:

- comments are removed as the compiler removes them (a ``/*`` comment ends at the first
  ``*/``), then continued lines are joined;
- declarations (prototypes, structs, typedefs) are taken as written, except array lengths
  that are not plain numbers: a struct field's or a global's becomes ``[...]`` (the compiler
  supplies it, however it is derived), a parameter's becomes ``[]`` (it is a pointer);
- ``#define NAME value`` becomes ``#define NAME ...``, so the compiler takes every constant's
  value from the real headers (ours, or the kernel's where it defines the name first);
  function-like and valueless macros are not API and are dropped, as are ``#if``,
  ``#ifndef``, ``#endif``, ``#include`` and every other directive;
- ``/* cffi:const NAME NAME ... */`` declares constants that come from system headers
  (``sys/mman.h``, ``linux/userfaultfd.h``, ...), also as ``...``.

cffi then compiles the declarations against the headers themselves, so a declaration the
translation got wrong fails the build; tests/test_ffi_build.py feeds it the tricky cases.
Adding a concern means adding NAME.c and NAME.h with a marked block.
"""
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADERS = sorted(HERE.glob("*.h"))
SOURCES = sorted(HERE.glob("*.c"))
# The C core's flags, here and in .ci/cross-compile (which reads them from here): a warning
# on any compiler fails the build.
CFLAGS = ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-Werror"]
DEFINES = [("_GNU_SOURCE", None), ("_FILE_OFFSET_BITS", "64")]

_BLOCK = re.compile(r"/\*\s*cffi:begin\s*\*/(.*?)/\*\s*cffi:end\s*\*/", re.S)
_CONST = re.compile(r"/\*\s*cffi:const\b(.*?)\*/", re.S)
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_CONTINUED = re.compile(r"\\[ \t]*\n")
_DEFINE = re.compile(r"#\s*define\s+([A-Za-z_]\w*)(\(?)\s*(.*)")
_PAREN_OR_LENGTH = re.compile(r"[()]|\[([^\[\]]*)\]")
_NUMBER = re.compile(r"\s*(0[xX][0-9a-fA-F]+|[0-9]+)[uUlL]*\s*")


def _array_lengths(decls: str, path: str) -> str:
    """``decls`` with every array length cffi cannot read as a number replaced: ``[...]``
    outside parentheses (struct fields, globals), ``[]`` for a parameter's outermost
    length. A parameter's inner length has to be a number (cffi needs the element size)."""
    out: list[str] = []
    depth = pos = 0
    after = -1  # where the last length ended: the next one right there is an inner one
    for m in _PAREN_OR_LENGTH.finditer(decls):
        token, length = m.group(0), m.group(1)
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif length.strip() and not _NUMBER.fullmatch(length):
            if depth == 0:
                token = "[...]"
            elif m.start() != after:
                token = "[]"
            else:
                raise ValueError(f"{path}: a parameter's inner array length must be a "
                                 f"number for cffi, not {length.strip()!r}")
        if length is not None:
            after = m.end()
        out += [decls[pos:m.start()], token]
        pos = m.end()
    return "".join(out) + decls[pos:]


def cdef_of(text: str, path: str = "<header>") -> str:
    """The cffi declarations of the marked blocks of one header's text."""
    out: list[str] = []
    seen: set[str] = set()

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
        body = _CONTINUED.sub(" ", _COMMENT.sub(" ", block))
        for line in body.splitlines():
            stripped = line.strip()
            if not stripped.startswith("#"):
                if stripped:
                    out.append(line.rstrip())
                continue
            m = _DEFINE.match(stripped)
            # A constant has a value; function-like macros are not API.
            if m and not m.group(2) and m.group(3).strip():
                const(m.group(1))
    cdef = _array_lengths("\n".join(out), path)
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
    define_macros=DEFINES,
    extra_compile_args=CFLAGS,
)

if __name__ == "__main__":
    ffi.compile(tmpdir=str(HERE.parent), verbose=True)
