"""The procfs CLI: JSON output agrees with the library, errors go to stderr."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import physmem.proc as proc

from conftest import run_physmem


def cli(*args):
    return run_physmem(*args)


def test_maps_json_matches_library():
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
    try:
        out = cli("maps", "--pid", str(p.pid), "--json")
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert [(d["start"], d["end"], d["path"]) for d in data] == \
            [(v.start, v.end, v.path) for v in proc.maps(p.pid)]
        sm = json.loads(cli("smaps", "--pid", str(p.pid), "--json").stdout)
        assert [d["start"] for d in sm] == [d["start"] for d in data]
        assert all("Rss" in d["fields"] for d in sm)
    finally:
        p.kill()
        p.wait()


def test_system_commands_json():
    mi = json.loads(cli("meminfo", "--json").stdout)
    assert mi["MemTotal"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    bi = json.loads(cli("buddyinfo", "--json").stdout)
    assert {(b["node"], b["zone"]) for b in bi} == {(b.node, b.zone) for b in proc.buddyinfo()}
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
