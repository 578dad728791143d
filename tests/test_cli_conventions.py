"""Conventions every ``physmem`` subcommand keeps: version, exit statuses, help text, JSON
style, sizes, grammar; checked against independent sources (pyproject, /proc, /sys)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from physmem.cli import EXIT_HELP, Exit, build_parser, main
from physmem.errors import InvalidArgument
from physmem.hugepages import parse_size

from conftest import PAGE, anonymous, run_physmem

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_version_is_the_packaged_one():
    import tomllib

    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = run_physmem("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"physmem {want}"


# -- exit statuses ---------------------------------------------------------------------------

def test_exit_statuses_are_distinct_and_documented_in_help_and_readme():
    codes = [e.value for e in Exit]
    assert len(set(codes)) == len(codes) == 10 and codes == list(range(10))
    top = run_physmem("--help").stdout
    readme = (ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d) \| (.+) \|$", readme, re.M))
    assert sorted(int(k) for k in table) == codes, "README's exit-status table"
    for code in codes:
        assert re.search(rf"^  {code}  \S", top, re.M), f"--help does not explain exit {code}"
    assert EXIT_HELP in top


def test_usage_error_is_2_with_the_subcommands_usage(capsys):
    code, out, err = run_cli(capsys, "alloc", "2M", "--bogus")
    assert code == Exit.USAGE == 2 and not out
    assert err.startswith("usage: physmem alloc") and "unrecognized arguments: --bogus" in err
    code, _, err = run_cli(capsys, "kpageflags", "--summary", "--frobnicate")
    assert code == 2 and err.startswith("usage: physmem kpageflags")
    assert run_physmem("nosuchcommand").returncode == 2


def test_refused_by_the_system_is_1_and_not_found_is_5(run_unprivileged, capsys):
    # /proc/kpageflags is mode 0400 root (independent: its mode), so nobody is refused.
    assert os.stat("/proc/kpageflags").st_mode & 0o077 == 0
    r = run_unprivileged("import sys; from physmem.cli import main; "
                         "sys.exit(main(['kpageflags', '1']))")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("physmem: error:") and "Traceback" not in r.stderr
    buf, addr = anonymous(PAGE, touch=False)   # mapped, never touched: no page present
    code, out, err = run_cli(capsys, "v2p", hex(addr))
    assert code == Exit.NOT_FOUND == 5 and "not present" in out
    buf.close()


def test_doctor_status_follows_its_worst_finding():
    r = run_physmem("doctor", "--json")
    worst = json.loads(r.stdout)["worst"]
    assert r.returncode == {"info": 0, "warning": 3, "error": 4}[worst]


# -- help text -------------------------------------------------------------------------------

def test_help_has_a_description_no_markup_and_no_repeated_lines():
    for name, command in subcommands().items():
        assert command.description and len(command.description) > 40, f"{name}: no description"
        text = command.format_help()
        assert "``" not in text and ":func:" not in text, f"{name} --help shows reST markup"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        repeated = {ln for ln in lines if lines.count(ln) > 1}
        assert not repeated, f"physmem {name} --help repeats {repeated}"
    top = run_physmem("--help").stdout
    assert "``" not in top
    for name in subcommands():   # every command on one line with its summary
        assert re.search(rf"^    {re.escape(name)} +\S", top, re.M), name


# -- JSON: one style -------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["meminfo"], ["buddyinfo"], ["maps"], ["numa-maps"], ["smaps"], ["topo"], ["plan"],
    ["doctor", "--section", "memory"], ["hugepages", "list"], ["kpageflags", "1", "2"],
    ["kpageflags", "--summary", "--count", "1000"], ["frag"], ["map", "--cell", "1G"],
])
def test_json_is_one_style_on_every_command(argv, is_root):
    r = run_physmem(*argv, "--json")
    assert r.returncode in (0, 3, 4), r.stderr
    data = json.loads(r.stdout)
    assert r.stdout == json.dumps(data, indent=2) + "\n", f"physmem {argv[0]} --json style"


# -- sizes -----------------------------------------------------------------------------------

def test_sizes_units_are_binary_and_fractions_and_hex_are_accepted():
    mib64 = 64 * 2**20
    assert {parse_size(t) for t in ("64m", "64M", "64MiB", "64MB", "64mb", "0x4000000")} == {mib64}
    assert parse_size("1.5G") == 3 * 2**29 and parse_size("0x100") == 256
    assert parse_size("4KiB") == 4096 and parse_size(".5K") == 512
    with pytest.raises(InvalidArgument, match="negative"):
        parse_size("-5M")
    with pytest.raises(InvalidArgument, match="whole number of bytes"):
        parse_size("1.5")
    for bad in ("4iB", "1e3", "M", "0x", "5 M B", "1.5.1G"):
        with pytest.raises(InvalidArgument, match="not a size"):
            parse_size(bad)


def test_alloc_takes_hex_and_refuses_a_negative_size_by_name(hugepage_pool, capsys):
    hugepage_pool(1)
    code, out, err = run_cli(capsys, "alloc", "0x100", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["size"] == data["page_size"] >= 0x100   # rounded up to one hugepage
    code, out, err = run_cli(capsys, "alloc", "-5M")
    assert code == 2 and "'-5M' is negative" in err and "required" not in err and not out


# -- text output -----------------------------------------------------------------------------

def test_numa_maps_text_is_the_kernels_notation(child_process):
    pid = child_process()
    r = run_physmem("numa-maps", "--pid", str(pid))
    assert r.returncode == 0, r.stderr
    assert "{" not in r.stdout and "'" not in r.stdout
    raw = {}
    for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines():
        w = line.split()
        raw[int(w[0], 16)] = sorted(x for x in w if re.fullmatch(r"N\d+=\d+", x))
    # A sleeping child's mappings do not change between the two reads.
    got = {}
    for line in r.stdout.splitlines():
        w = line.split()
        got[int(w[0], 16)] = sorted(x for x in w if re.fullmatch(r"N\d+=\d+", x))
    assert got == raw


def raw_buddyinfo() -> dict[tuple[int, str], list[int]]:
    out = {}
    for line in open("/proc/buddyinfo"):
        w = line.replace(",", " ").split()
        out[(int(w[1]), w[3])] = [int(v) for v in w[4:]]
    return out


def test_buddyinfo_has_a_header_and_bytes_gives_exact_sizes():
    raw = raw_buddyinfo()
    orders = len(next(iter(raw.values())))
    text = run_physmem("buddyinfo", "--bytes").stdout.splitlines()
    head = text[0].split()
    assert head[:2] == ["node", "zone"] and head[-1] == "free"
    assert [int(h) for h in head[2:-1]] == [PAGE << k for k in range(orders)]
    rows = [ln.split() for ln in text[1:] if ln[:1].isdigit()]
    assert {(int(r[0]), r[1]) for r in rows} == set(raw)
    for r in rows:
        counts = [int(v) for v in r[2:-1]]
        assert int(r[-1]) == sum(c * (PAGE << k) for k, c in enumerate(counts))
    dma = [r for r in rows if r[1] == "DMA"]   # ZONE_DMA hardly ever changes: compare exactly
    if dma:
        assert [int(v) for v in dma[0][2:-1]] == raw[(int(dma[0][0]), "DMA")]
    human = run_physmem("buddyinfo").stdout.splitlines()
    assert human[0].split()[2:4] == [str(PAGE >> 10), "KiB"]
    assert all(re.search(r"[KMG]iB$", ln) for ln in human[1:] if ln[:1].isdigit())


def test_counts_of_one_are_singular(is_root):
    r = run_physmem("kpageflags", "--summary", "--count", "1")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^total: 1 frame \(", r.stdout, re.M), r.stdout


def test_alloc_text_of_one_page_is_singular(hugepage_pool):
    hugepage_pool(1)
    r = run_physmem("alloc", "2M")
    assert r.returncode == 0, r.stderr
    assert "1 x 2.0 MiB page on" in r.stdout or "1 x 2.0 MiB page\n" in r.stdout
    assert "1 pages" not in r.stdout and "verified with pagemap: the page is" in r.stdout


# -- plan --device ---------------------------------------------------------------------------

def test_plan_names_a_missing_device_as_missing():
    present = set(os.listdir("/sys/bus/pci/devices"))
    missing = next(f"0000:{b:02x}:1f.7" for b in range(256) if f"0000:{b:02x}:1f.7" not in present)
    r = run_physmem("plan", "--device", missing)
    assert r.returncode == 2
    assert f"PCI device {missing} does not exist" in r.stderr and "expected e.g." not in r.stderr
    r = run_physmem("plan", "--device", "zz:1")
    assert r.returncode == 2 and "is not a PCI address" in r.stderr
    some = sorted(present)[0].upper()   # sysfs spells addresses in lower case; accept either
    assert run_physmem("plan", "--device", some).returncode == 0


def test_options_refuse_in_cli_words(capsys):
    online = Path("/sys/devices/system/node/online").read_text().strip()
    code, _, err = run_cli(capsys, "alloc", "2M", "--node", "77")
    assert code == 2 and "--node 77: no such NUMA node" in err
    if "-" not in online and "," not in online:   # one node, e.g. "0"
        assert f"(online nodes: {online})" in err
    code, _, err = run_cli(capsys, "kpageflags", "--summary", "--start", "x")
    assert code == 2 and "--start: 'x' is not an integer" in err and "parse_int" not in err


def test_no_traceback_for_any_of_these():
    for argv in (["map", "--cell", "99999999999999G"], ["alloc", "1.5"], ["alloc", "0x"],
                 ["frag", "--node", "-1"], ["v2p", "--pid", "-3", "0x1000"]):
        r = run_physmem(*argv)
        assert r.returncode in (1, 2, 5) and "Traceback" not in r.stderr, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 4, (argv, r.stderr)


# -- errors in CLI words, from one printer ---------------------------------------------------

POOL_2M = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
PYTHON_WORDS = re.compile(r"\b\w+=(True|False|None)\b|\bpass \w+=|\w+_root=|Python int")


def test_speak_cli_rewrites_every_python_spelling_it_knows():
    from physmem.cli._output import speak_cli

    said = speak_cli(
        "Reserve more (physmem.hugepages.reserve(1, 2097152) or `physmem hugepages reserve 1 "
        "--size 2M`), or pass reserve=True. ... or pass force=True to take it anyway. ... "
        "(physmem.hugepages.compact(), or `echo 1 > /proc/sys/vm/compact_memory`) ... grow the "
        "pool (physmem.hugepages.compact(), then reserve) ... a scatter buffer (allocate_scatter)"
        ". Touch or mlock the memory first, or pass strict=False for a masked result. Pass "
        "sys_root= the directory")
    assert not PYTHON_WORDS.search(said) and "physmem.hugepages." not in said, said
    for words in ("(`physmem hugepages reserve 1 --size 2M`)", "pass --reserve", "pass --force",
                  "(--scatter)", "the table shows each such address as 'not present'",
                  "Pass --sys-root the directory", "(`echo 1 > /proc/sys/vm/compact_memory`)"):
        assert words in said, words


def test_alloc_shortage_says_reserve_flag_and_counts_one_page(empty_2m_pool, capsys):
    code, out, err = run_cli(capsys, "alloc", "0x100", "--page-size", "2M")
    assert code == Exit.ERROR and not out
    assert "--reserve" in err and not PYTHON_WORDS.search(err), err
    assert "pages needed: 1," in err and "free pages in the 2M pool: 0" in err
    assert not re.search(r"\b1 pages\b|page\(s\)", err), err


def test_hugepages_reserve_of_one_page_is_singular(empty_2m_pool, capsys):
    if int((POOL_2M / "nr_hugepages").read_text()) != 0:
        pytest.skip("2 MiB pages are in use: the pool cannot start from 0")
    code, out, err = run_cli(capsys, "hugepages", "reserve", "1", "--size", "2M")
    assert code == 0, err
    assert int((POOL_2M / "nr_hugepages").read_text()) == 1   # independent: sysfs
    assert out.strip() == "2M pool: 0 -> 1 page, 1 free"
    code, out, _ = run_cli(capsys, "hugepages", "release", "--size", "2M")
    assert code == 0 and out.strip() == "2M pool: 0 pages, 0 free"


def test_v2p_not_present_points_at_its_table_not_at_strict(is_root, capsys):
    buf, addr = anonymous(PAGE, touch=False)
    try:
        code, out, err = run_cli(capsys, "v2p", hex(addr))
    finally:
        buf.close()
    assert code == Exit.NOT_FOUND and re.search(rf"{addr:#x}\s+not present", out)
    assert err.startswith("physmem: error:") and "the table shows" in err
    assert not PYTHON_WORDS.search(err), err


def test_sys_root_and_interval_are_named_as_flags(capsys):
    code, _, err = run_cli(capsys, "topo", "--sys-root", "/nonexistent")
    assert code == Exit.USAGE and "--sys-root" in err and not PYTHON_WORDS.search(err), err
    code, _, err = run_cli(capsys, "exporter", "--interval", "1e300", "--json")
    assert code == Exit.USAGE and "--interval" in err and "at most 2147483" in err
    assert "None" not in err and "interval=" not in err


@pytest.mark.parametrize("argv", [
    ["v2p", "0x10000000000000000"], ["kpageflags", "0x10000000000000000"],
    ["kpageflags", "--summary", "--count", "0x10000000000000000"],
    ["kpageflags", "--summary", "--start", str(2**64)],
])
def test_numbers_past_64_bits_are_refused_by_the_cli_parser(argv, capsys):
    code, out, err = run_cli(capsys, *argv)
    assert code == Exit.USAGE and not out
    assert "does not fit in 64 bits" in err and not PYTHON_WORDS.search(err), err


def test_alloc_refuses_more_than_the_machines_memory_up_front(capsys):
    mem_total = next(int(ln.split()[1]) * 1024 for ln in open("/proc/meminfo")
                     if ln.startswith("MemTotal:"))
    too_much = mem_total // 2**30 + 1   # whole GiB past MemTotal
    for size in (f"{too_much}G", "100T"):
        code, out, err = run_cli(capsys, "alloc", size, "--reserve")
        assert code == Exit.USAGE and not out
        assert "more than this machine's memory" in err and "hugepages reserve" not in err
    code, _, err = run_cli(capsys, "alloc", "99999999999999999999999999G")
    assert code == Exit.USAGE and "hugepages reserve" not in err


def test_plan_text_prints_cpu_lists_in_range_syntax():
    text = run_physmem("plan", "--loops", "1").stdout
    data = json.loads(run_physmem("plan", "--loops", "1", "--json").stdout)
    line = next(ln for ln in text.splitlines() if ln.startswith("control_loops: "))
    shown = line.split(": ", 1)[1]
    assert "[" not in shown and re.fullmatch(r"-|\d+(-\d+)?(,\d+(-\d+)?)*", shown), line
    cpus: set[int] = set()
    for part in ([] if shown == "-" else shown.split(",")):
        lo, _, hi = part.partition("-")
        cpus |= set(range(int(lo), int(hi or lo) + 1))
    assert cpus == set(data["control_loops"])
    r = run_physmem("plan", "--loops", "-1")
    assert r.returncode == 2 and "--loops" in r.stderr and "control_loops" not in r.stderr


def test_numa_maps_text_keeps_heap_stack_labels_and_no_trailing_space(child_process):
    pid = child_process()
    r = run_physmem("numa-maps", "--pid", str(pid))
    assert r.returncode == 0, r.stderr
    raw = {}
    for line in Path(f"/proc/{pid}/numa_maps").read_text().splitlines():
        w = line.split()
        raw[int(w[0], 16)] = [x for x in w if x in ("heap", "stack", "huge")]
    assert any(raw.values()), "a python process has a heap and a stack"
    for line in r.stdout.splitlines():
        assert line == line.rstrip(), repr(line)
        w = line.split()
        assert [x for x in w if x in ("heap", "stack", "huge")] == raw[int(w[0], 16)], line


@pytest.mark.parametrize("command", ["map", "frag"])
def test_png_file_is_checked_before_the_work(command, capsys):
    code, out, err = run_cli(capsys, command, "--png", "")
    assert code == Exit.USAGE and not out and "--png" in err and "file name" in err
    code, out, err = run_cli(capsys, command, "--png", "/nonexistent/dir/x.png")
    assert code == Exit.USAGE and not out
    assert "--png" in err and "'/nonexistent/dir' does not exist" in err and "Errno" not in err


def test_png_that_cannot_be_written_names_the_flag(is_root, capsys):
    pytest.importorskip("matplotlib")
    assert not os.path.exists("/proc/physmem-test.png")   # procfs takes no new files
    code, out, err = run_cli(capsys, "frag", "--png", "/proc/physmem-test.png")
    assert code == Exit.ERROR
    assert "cannot write --png /proc/physmem-test.png" in err and "Errno" not in err, err


def test_every_node_option_takes_hex_like_every_number(capsys):
    node = int(Path("/sys/devices/system/node/online").read_text().split(",")[0].split("-")[0])
    code, out, err = run_cli(capsys, "frag", "--node", hex(node), "--json")
    assert code == 0, err
    assert {r["node"] for r in json.loads(out)} <= {node}
    code, out, err = run_cli(capsys, "hugepages", "list", "--node", hex(node), "--json")
    assert code == 0, err
    assert {r["node"] for r in json.loads(out)} == {node}
    for command in (["frag"], ["hugepages", "list"], ["alloc", "2M"]):
        code, _, err = run_cli(capsys, *command, "--node", "0x4d")
        assert code == Exit.USAGE and "--node 77: no such NUMA node" in err


@pytest.mark.parametrize("command", [["v2p", "0x1000"], ["map", "--cell", "1G"], ["maps"],
                                     ["smaps"], ["numa-maps"]])
def test_every_pid_option_refuses_in_flag_words(command, capsys):
    for bad in ("0", "-1", str(2**22 + 1), "1.5"):
        code, out, err = run_cli(capsys, *command, "--pid", bad)
        assert code == Exit.USAGE and not out
        assert f"--pid: '{bad}' is not a process id (1 to {2**22})" in err, err
        assert "pid=" not in err


def _stopped_by_sigint(argv: list[str]) -> int:
    """Run ``main(argv)`` in this process and send it SIGINT half a second in: its exit
    status, after checking that the signal handlers are this process's own again."""
    import signal
    import threading

    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code = main(argv)
    finally:
        timer.cancel()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    return code


def test_exporter_stops_on_sigint_and_gives_the_handlers_back(tmp_path: Path) -> None:
    """Commands that run until stopped set SIGINT/SIGTERM handlers for their run only: main()
    called in a program (or this test process) left Ctrl-C doing nothing afterwards."""
    pytest.importorskip("prometheus_client", reason="prometheus-client is not installed")
    assert _stopped_by_sigint(["exporter", "--textfile", str(tmp_path),
                               "--interval", "0.1"]) == Exit.OK
    assert list(tmp_path.glob("*.prom")), "the exporter wrote no file before it stopped"


def test_dma_watch_stops_on_sigint_and_gives_the_handlers_back(is_root: None) -> None:
    buf, address = anonymous(2 * PAGE)
    try:
        assert _stopped_by_sigint(["dma", "watch", "--pid", str(os.getpid()),
                                   "--range", f"{address:#x}:{2 * PAGE}",
                                   "--interval", "0.05"]) == Exit.OK
    finally:
        buf.close()
