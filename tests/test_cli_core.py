"""``physmem v2p`` and ``physmem kpageflags``: JSON output against raw preads of pagemap and
kpageflags."""
from __future__ import annotations

import json
import os
import re

import pytest

from physmem import KPageFlags, PageMap
from physmem.kpageflags import describe
from physmem.cli import main

from conftest import PAGE, anonymous, kernel_thread, kpageflags_frames, run_physmem


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_v2p_json_matches_translate(is_root, capsys):
    buf, addr = anonymous(3 * PAGE)
    code, out, _ = run_cli(capsys, "v2p", "--pid", str(os.getpid()), "--json", hex(addr + 5), str(addr + PAGE))
    assert code == 0
    rows = json.loads(out)
    # Independent: this process's own pagemap entries, by plain pread.
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        entries = [int.from_bytes(os.pread(fd, 8, (a // PAGE) * 8), "little")
                   for a in (addr + 5, addr + PAGE)]
    finally:
        os.close(fd)
    assert all(e >> 63 for e in entries)
    assert [r["paddr"] for r in rows] == [(e & ((1 << 55) - 1)) * PAGE + a % PAGE
                                          for e, a in zip(entries, (addr + 5, addr + PAGE))]
    assert [r["vaddr"] for r in rows] == [addr + 5, addr + PAGE] and all(r["present"] for r in rows)
    buf.close()


def test_v2p_not_present_and_bad_input(is_root, capsys):
    buf, addr = anonymous(PAGE, touch=False)
    code, out, err = run_cli(capsys, "v2p", "--json", hex(addr))
    assert code == 5 and json.loads(out)[0]["present"] is False  # not found
    code, _, err = run_cli(capsys, "v2p", "nonsense")
    assert code == 2 and "not an address" in err  # usage
    code, _, err = run_cli(capsys, "v2p", "--pid", str(2**22 - 1), "0x1000")
    assert code == 5 and "does not exist" in err  # not found
    for bad in ("0", "-3", str(2**22 + 999), "1.5"):
        code, _, err = run_cli(capsys, "v2p", "--pid", bad, "0x1000")
        assert code == 2 and "--pid" in err and "not a process id" in err  # usage
    buf.close()


def _raw_kpageflags(start: int, count: int) -> list[int]:
    fd = os.open("/proc/kpageflags", os.O_RDONLY)
    try:
        data = os.pread(fd, count * 8, start * 8)
    finally:
        os.close(fd)
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]


def test_kpageflags_pfns_and_summary(is_root, capsys):
    from collections import Counter

    from conftest import settled

    def check() -> None:
        # Live frames change between any two reads (a kernel page freed, a slab reused):
        # compared with a raw pread taken right after, retried when memory moved in between.
        code, out, _ = run_cli(capsys, "kpageflags", "--json", "1", "0x10")
        rows = json.loads(out)
        raw = _raw_kpageflags(0, 17)
        assert [r["flags"] for r in rows] == [raw[1], raw[16]]
        assert rows[0]["names"] == list(describe(rows[0]["flags"]))
        code, out, _ = run_cli(capsys, "kpageflags", "--summary", "--json", "--count", "50000")
        assert code == 0
        summary = json.loads(out)
        counts = Counter(_raw_kpageflags(0, 50_000))
        assert {r["flags"]: r["pages"] for r in summary} == dict(counts)
        # Rows in descending page count, as page-types prints them.
        pages = [r["pages"] for r in summary]
        assert pages == sorted(pages, reverse=True)

    settled(check, attempts=5)
    code, _, err = run_cli(capsys, "kpageflags")
    assert code == 2 and "PFNs or --summary" in err


def test_entry_point_runs_as_a_program(is_root):
    proc = run_physmem("kpageflags", "--summary", "--count", "4096")
    assert proc.returncode == 0, proc.stderr
    assert "total: 4096 frames" in proc.stdout
    proc = run_physmem("v2p", "--help")
    assert "example: physmem v2p" in proc.stdout
    bad = run_physmem("frobnicate")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_progress_bar_draws_only_after_the_delay_and_cleans_up():
    import io

    from physmem.cli._output import Progress

    now = [0.0]
    out = io.StringIO()
    with Progress("scanning", 100, stream=out, clock=lambda: now[0], force=True) as bar:
        bar(10)
        assert out.getvalue() == "", "quick work draws nothing"
        now[0] = 2.5
        bar(50)
        assert "scanning [###############" in out.getvalue() and "50.0%" in out.getvalue()
    assert out.getvalue().endswith("\r")
    quiet = io.StringIO()  # not a terminal: never drawn
    with Progress("x", 10, stream=quiet, clock=lambda: 99.0) as bar:
        bar(5)
    assert quiet.getvalue() == ""


def test_summary_reports_progress_up_to_the_total(is_root):
    seen = []
    with KPageFlags() as kf:
        kf.summary(0, 200_000, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (200_000, 200_000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_every_subcommand_has_an_example_json_and_bytes_where_it_prints_sizes():
    from physmem.cli import NO_SIZES, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"v2p", "kpageflags", "alloc", "hugepages", "topo", "plan",
                                "doctor", "maps", "smaps", "numa-maps", "meminfo", "buddyinfo",
                                "map", "frag"}
    for name, command in sub.choices.items():
        text = command.format_help()
        assert "example" in text, f"physmem {name} --help shows no example"
        options = {o for a in command._actions for o in a.option_strings}
        assert "--json" in options, f"physmem {name} lacks --json"
        # --bytes only where it changes something: a command whose text has no sizes
        # (NO_SIZES says why, for each) does not offer an option that would do nothing.
        assert ("--bytes" in options) == (name not in NO_SIZES), f"physmem {name} --bytes"
    assert set(NO_SIZES) <= set(sub.choices) and all(NO_SIZES.values())


@pytest.mark.parametrize("argv", [["v2p", hex(os.getpid())], ["plan"], ["doctor"], ["maps"],
                                  ["numa-maps"]])
def test_commands_without_bytes_print_no_sizes(argv):
    r = run_physmem(*argv)
    assert r.returncode in (0, 3, 4, 5), r.stderr
    assert r.stdout.strip()
    assert not re.search(r"\d [KMGT]iB\b|\d B\b", r.stdout), r.stdout
    r = run_physmem(*argv, "--bytes")
    assert r.returncode == 2 and "unrecognized arguments: --bytes" in r.stderr


def test_v2p_of_a_kernel_thread_says_it_has_no_user_address_space(is_root, capsys):
    name = kernel_thread()   # found independently, by PF_KTHREAD in its stat
    if name is None:
        pytest.skip("no kernel thread visible in /proc")
    code, _, err = run_cli(capsys, "v2p", "--pid", name, "0x1000")
    assert code == 2 and "kernel thread" in err and "no user address space" in err  # a pid v2p cannot use
    assert "does not exist" not in err


def test_kpageflags_summary_start_beyond_the_last_pfn(is_root, capsys):
    last = kpageflags_frames() - 1   # independent: where plain preads find the file's end
    for start in ("0xffffffffffffffff", "99999999999999", hex(last + 1)):
        code, out, err = run_cli(capsys, "kpageflags", "--summary", "--start", start, "--count", "10")
        assert code == 2 and out == ""  # usage: an impossible value
        assert f"--start {int(start, 0):#x} is beyond the last PFN ({last:#x})" in err
    for flag in ("--start", "--count"):
        code, _, err = run_cli(capsys, "kpageflags", "--summary", flag, "-5")
        assert code == 2 and f"{flag} -5 is negative" in err
    code, out, _ = run_cli(capsys, "kpageflags", "--summary", "--start", hex(last), "--count", "10")
    assert code == 0 and re.search(r"total: 1 frames? ", out)
