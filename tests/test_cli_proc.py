"""The procfs CLI: JSON output agrees with the raw /proc files, errors go to stderr."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import run_physmem


def cli(*args):
    return run_physmem(*args)


def raw_maps(pid: int) -> list[tuple[int, int, str, int, int, str]]:
    """(start, end, perms, offset, inode, path) of each line of /proc/PID/maps, split here."""
    out = []
    for line in open(f"/proc/{pid}/maps"):
        fields = line.rstrip("\n").split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        out.append((start, end, fields[1], int(fields[2], 16), int(fields[4]),
                    fields[5] if len(fields) > 5 else ""))
    return out


def test_maps_and_smaps_json_agree_with_the_raw_files():
    # A child blocked reading stdin: its mappings do not change while the command runs.
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
    try:
        out = cli("maps", "--pid", str(p.pid), "--json")
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert [(d["start"], d["end"], d["prot"] + ("s" if d["shared"] else "p"), d["offset"],
                 d["inode"], d["path"]) for d in data] == raw_maps(p.pid)
        sm = json.loads(cli("smaps", "--pid", str(p.pid), "--json").stdout)
        assert [(d["start"], d["end"]) for d in sm] == [(d["start"], d["end"]) for d in data]
        # The fields of each mapping are the names /proc/PID/smaps lists under it.
        names = [line.split(":")[0] for line in open(f"/proc/{p.pid}/smaps")
                 if ":" in line.split()[0] and not line.split()[0].endswith("VmFlags:")]
        per_vma = len(names) // len(sm)
        assert all(set(d["fields"]) == set(names[:per_vma]) for d in sm)
    finally:
        p.kill()
        p.wait()


def test_system_commands_json():
    mi = json.loads(cli("meminfo", "--json").stdout)
    assert mi["MemTotal"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    bi = json.loads(cli("buddyinfo", "--json").stdout)
    raw = [line.replace(",", " ").split() for line in open("/proc/buddyinfo")]
    assert [(b["node"], b["zone"]) for b in bi] == [(int(w[1]), w[3]) for w in raw]
    assert all(len(b["free"]) == len(w) - 4 for b, w in zip(bi, raw))
    assert json.loads(cli("numa-maps", "--json").stdout)


def test_errors_and_help():
    free = next(p for p in range(2**22 - 1, 1, -1) if not os.path.exists(f"/proc/{p}"))
    out = cli("maps", "--pid", str(free))
    assert out.returncode == 5 and "error" in out.stderr and not out.stdout  # no such process
    for command in ("maps", "smaps", "numa-maps"):   # beyond PID_MAX: no process can have it
        out = cli(command, "--pid", "999999999")
        assert out.returncode == 2 and "--pid: '999999999' is not a process id" in out.stderr
    h = cli("smaps", "--help")
    assert h.returncode == 0 and "example:" in h.stdout
