"""A helper process for the /proc parser tests: many mappings, odd file names, a deleted file."""
from __future__ import annotations


HELPER = r'''
import ctypes, mmap, os, sys, tempfile
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
n = int(sys.argv[1])
P = mmap.PAGESIZE
m = mmap.mmap(-1, n * P, prot=mmap.PROT_READ | mmap.PROT_WRITE)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
for i in range(0, n, 2):   # alternate protections: one VMA per page
    m[i * P] = 1
    libc.mprotect(addr + i * P, P, mmap.PROT_READ)
d = tempfile.mkdtemp()
keep = []
for name in ("with space", "new\nline", "gone"):
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(b"x" * 2 * P)
    f = open(path, "rb")
    keep.append(mmap.mmap(f.fileno(), 2 * P, prot=mmap.PROT_READ))
    keep[-1][0]
os.unlink(os.path.join(d, "gone"))
libc.prctl(15, ctypes.cast(ctypes.c_char_p(b"a) (b c"), ctypes.c_void_p).value, 0, 0, 0)
print(d, flush=True)
sys.stdin.read()
'''


def start_helper(n_pages: int = 600):
    """A child with >= n_pages/2 VMAs, files named with a space, a newline and a deleted one."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-c", HELPER, str(n_pages)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    tmpdir = proc.stdout.readline().decode().strip()
    return proc, tmpdir
