"""The header -> cdef translator of csrc/ffi_build.py, on the cases that break naive ones:
derived constants as array lengths, comments that look nested, continued lines,
function-like and valueless macros, parameters' array lengths. A header holding all of them
is translated, compiled with cffi against itself and loaded; the values and layout cffi
then reports are checked against what C says of that header (worked out by hand below)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "csrc" / "ffi_build.py"

TRICKY_H = r"""
#ifndef TRICKY_H
#define TRICKY_H
#include <stdint.h>
#define OUTSIDE 99 /* before the block: not API */
/* cffi:begin */
/* cffi:const INT8_MAX
 * UINT16_MAX */
#define BASE 8
#define DERIVED (BASE * 3) /* 24, only the compiler knows */
#define SHIFTED (1u << BASE)
#define CONTINUED \
    (BASE + \
     2)
#define  SPACED (BASE) /* object-like: the parenthesis is its value */
#define TWICE(x) ((x) * 2)
#define CONTINUED_MACRO(a, b) \
    ((a) + \
     (b))
#define FLAG
#ifndef BASE
#define BASE 8
#endif
/* outer /* C comments do not nest: this one ends here */
int after_nested(void);
// a line comment with /* in it
int after_line_comment(void);
/* a block comment // with a line comment in it */ int after_block_comment(void);
struct lengths {
    char derived[DERIVED];
    char literal[5];
    char grid[BASE][CONTINUED];
    uint32_t flags;
};
int sum(const int values[DERIVED], int n);
int row_sum(const int rows[SPACED][4], int n);
/* cffi:end */
int not_declared(void);
#endif
"""

TRICKY_C = r"""
#include "tricky.h"
int after_nested(void) { return 1; }
int after_line_comment(void) { return 2; }
int after_block_comment(void) { return 3; }
int sum(const int values[DERIVED], int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += values[i];
    return s;
}
int row_sum(const int rows[SPACED][4], int n)
{
    int s = 0;
    for (int i = 0; i < 4; i++)
        s += rows[n][i];
    return s;
}
int not_declared(void) { return 0; }
"""


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build() -> ModuleType:
    if not BUILD.exists():
        pytest.skip("no source tree beside the tests (csrc/ffi_build.py)")
    return _load(BUILD, "physmem_ffi_build")


@pytest.fixture(scope="module")
def tricky(build: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tricky header's cffi module, compiled with the C core's own flags."""
    from cffi import FFI

    where = tmp_path_factory.mktemp("tricky")
    (where / "tricky.h").write_text(TRICKY_H)
    ffi = FFI()
    ffi.cdef(build.cdef_of(TRICKY_H, "tricky.h"))
    # -Wno-comment: the "/*" inside a comment is there on purpose.
    ffi.set_source("_tricky", TRICKY_C, include_dirs=[str(where)],
                   define_macros=build.DEFINES,
                   extra_compile_args=build.CFLAGS + ["-Wno-comment"])
    so = ffi.compile(tmpdir=str(where))
    return _load(Path(so), "_tricky")


def test_the_translation_says_what_the_rules_say(build: ModuleType) -> None:
    cdef = build.cdef_of(TRICKY_H, "tricky.h")
    defined = re.findall(r"^#define (\w+) \.\.\.$", cdef, re.M)
    assert defined == ["INT8_MAX", "UINT16_MAX", "BASE", "DERIVED", "SHIFTED", "CONTINUED",
                       "SPACED"]  # BASE once, though defined twice; no macro, no FLAG
    assert "TWICE" not in cdef and "CONTINUED_MACRO" not in cdef and "(b)" not in cdef
    assert "OUTSIDE" not in cdef and "not_declared" not in cdef and "#if" not in cdef
    assert "/*" not in cdef and "//" not in cdef
    assert re.search(r"char derived\[\.\.\.\];", cdef)
    assert re.search(r"char literal\[5\];", cdef)
    assert re.search(r"char grid\[\.\.\.\]\[\.\.\.\];", cdef)
    assert re.search(r"int sum\(const int values\[\], int n\);", cdef)
    assert re.search(r"int row_sum\(const int rows\[\]\[4\], int n\);", cdef)
    for name in ("after_nested", "after_line_comment", "after_block_comment"):
        assert re.search(rf"^\s*int {name}\(void\);$", cdef, re.M), name


def test_the_compiled_module_has_the_values_and_layout_c_gives(tricky: Any) -> None:
    ffi, lib = tricky.ffi, tricky.lib
    assert (lib.INT8_MAX, lib.UINT16_MAX) == (127, 65535)
    assert (lib.BASE, lib.DERIVED, lib.SHIFTED, lib.CONTINUED, lib.SPACED) == (8, 24, 256, 10, 8)
    for name in ("TWICE", "CONTINUED_MACRO", "FLAG", "OUTSIDE", "not_declared"):
        assert not hasattr(lib, name), name
    assert (lib.after_nested(), lib.after_line_comment(), lib.after_block_comment()) == (1, 2, 3)
    fields = dict(ffi.typeof("struct lengths").fields)
    assert fields["derived"].type == ffi.typeof("char[24]")
    assert fields["literal"].type == ffi.typeof("char[5]")
    assert fields["grid"].type == ffi.typeof("char[8][10]")
    # 24 + 5 + 80 bytes of chars, then the uint32 at the next multiple of 4.
    assert ffi.offsetof("struct lengths", "flags") == 112
    assert ffi.sizeof("struct lengths") == 116
    assert lib.sum(ffi.new("int[]", [1, 2, 3]), 3) == 6
    rows = ffi.new("int[3][4]", [[0] * 4, [1, 2, 3, 4], [0] * 4])
    assert lib.row_sum(rows, 1) == 10


def test_what_cannot_be_translated_is_refused_by_name(build: ModuleType) -> None:
    with pytest.raises(ValueError, match="x.h: cffi:begin without cffi:end"):
        build.cdef_of("/* cffi:begin */\nint f(void);\n", "x.h")
    # cffi must know a parameter's inner length (the size of what the pointer points to).
    with pytest.raises(ValueError, match="x.h: .*inner array length.*'M'"):
        build.cdef_of("/* cffi:begin */\nint f(int a[N][M]);\n/* cffi:end */\n", "x.h")
    assert build.cdef_of("int f(void);\n", "x.h") == ""


def test_every_declaration_of_the_real_headers_reaches_the_module(build: ModuleType) -> None:
    """Read from the headers' text by a pattern of its own (not the translator): each
    function prototyped and each constant defined in a cffi block is in physmem's lib."""
    from physmem._raw import lib

    functions: set[str] = set()
    constants: set[str] = set()
    for header in build.HEADERS:
        for block in re.findall(r"/\* cffi:begin \*/(.*?)/\* cffi:end \*/", header.read_text(),
                                re.S):
            code = re.sub(r"/\*.*?\*/", " ", block, flags=re.S)
            functions |= set(re.findall(r"^[a-z][\w ]*?[ *](\w+)\(", code, re.M))
            constants |= set(re.findall(r"^#define (\w+) ", code, re.M))
            for names in re.findall(r"cffi:const(.*?)\*/", block, re.S):
                constants |= set(names.replace("*", " ").split())
    assert len(functions) > 60 and len(constants) > 200  # the patterns found the API
    assert sorted(functions - set(dir(lib))) == []
    assert sorted(constants - set(dir(lib))) == []
