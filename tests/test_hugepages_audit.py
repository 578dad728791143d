"""physmem hugepages audit against the kernel: a child leaves hugetlbfs files and a hugetlb
memfd behind when SIGKILLed; the audit must find exactly the orphan, and --clean must remove
it alone, giving its pages back (checked with the pool's own sysfs counters and os.stat).
--clean must stay on the hugetlbfs (bind mounts, tmpfs in or over it, directories swapped by
another user), refuse in a pid namespace, and never remove a file someone opens meanwhile."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from conftest import python_env, run_physmem, wait_until

POOL = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
MB2 = 2 << 20


def count(name: str) -> int:
    return int((POOL / name).read_text())


@pytest.fixture
def mount(tmp_path: Path, pools_restored: None) -> Iterator[Path]:
    """A 2 MiB hugetlbfs, emptied and unmounted at the end; the pool is put back after it."""
    target = tmp_path / "huge"
    target.mkdir()
    subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", str(target)],
                   check=True)
    try:
        yield target
    finally:
        for f in target.iterdir():
            f.unlink()
        subprocess.run(["umount", str(target)], check=True)


CHILD = """
import mmap, os, sys
d = sys.argv[1]
def make(name, pages, touch):
    fd = os.open(os.path.join(d, name), os.O_CREAT | os.O_RDWR)
    os.ftruncate(fd, pages << 21)
    m = mmap.mmap(fd, pages << 21)
    for i in range(touch):
        m[i << 21] = 1
    return fd, m
keep = [make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))]
mfd = os.memfd_create("spdk_test", os.MFD_HUGETLB)
os.ftruncate(mfd, 2 << 21)
mm = mmap.mmap(mfd, 2 << 21)
mm[0] = 1
print(os.getpid(), flush=True)
sys.stdin.read()
"""


def start(directory: Path, name: str, pages: int, touch: int) -> subprocess.Popen:
    env, cwd = python_env()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), name, str(pages),
                              str(touch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=env, cwd=cwd)
    assert int(child.stdout.readline()) == child.pid
    return child


def kill(child: subprocess.Popen) -> None:
    child.kill()
    child.wait()


@pytest.mark.root
@pytest.mark.hugepages
def test_audit_finds_the_orphan_and_clean_removes_only_it(mount: Path) -> None:
    from physmem.hugepages import audit

    (POOL / "nr_hugepages").write_text(str(count("nr_hugepages") + 12))
    crashed = start(mount, "rtemap_0", 4, 3)  # 3 pages faulted in a 4-page file
    alive = start(mount, "live_0", 2, 2)
    try:
        report = audit()
        by_pid = {m.pid for m in report.mappings}
        assert {crashed.pid, alive.pid} <= by_pid
        memfds = [f for f in report.fds if f.pid == crashed.pid and "memfd:spdk_test" in f.target]
        assert memfds and memfds[0].pages == 1
        # Rsvd, the kernel's own count: 1 unfaulted page of rtemap_0 and 1 of each child's
        # 2-page memfd; in use: 3 + 1 pages of one child, 2 + 1 of the other.
        pool = next(p for p in report.pools if p.size == MB2 and p.node is None)
        assert pool.reserved == count("resv_hugepages") == 3
        assert pool.reserved_attributed == 3
        assert pool.held == pool.in_use == count("nr_hugepages") - count("free_hugepages") == 7
        kill(crashed)
        free_before = count("free_hugepages")
        report = audit()
        orphans = {f.path: f for f in report.orphans}
        assert list(orphans) == [str(mount / "rtemap_0")]
        # Independent: the file's allocated blocks as stat reports them.
        assert orphans[str(mount / "rtemap_0")].bytes == os.stat(mount / "rtemap_0").st_blocks * 512 == 3 * MB2
        assert orphans[str(mount / "rtemap_0")].pages == 3
        pool = next(p for p in report.pools if p.size == MB2 and p.node is None)
        assert pool.orphaned == 3 and pool.in_use == count("nr_hugepages") - count("free_hugepages")
        live = next(f for f in report.files if f.path == str(mount / "live_0"))
        assert live.holders == (alive.pid,) and not live.orphan

        out = run_physmem("hugepages", "audit", "--clean", "--yes", "--json")
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["removed"] == [{"path": str(mount / "rtemap_0"), "bytes": 3 * MB2}]
        assert data["orphans"] == []
        assert sorted(p.name for p in mount.iterdir()) == ["live_0"]
        assert count("free_hugepages") == free_before + 3, "exactly the orphan's pages came back"
    finally:
        kill(alive)
        if crashed.poll() is None:
            kill(crashed)


@pytest.mark.root
@pytest.mark.hugepages
def test_surplus_held_by_an_orphan_is_reported(mount: Path) -> None:
    from physmem.hugepages import audit

    persistent = count("nr_hugepages") - count("surplus_hugepages")
    (POOL / "nr_hugepages").write_text(str(persistent + 4))
    crashed = start(mount, "spdk_leftover", 2, 2)
    # Shrink the pool under the child's 3 pages in use: they become surplus (the kernel's own
    # count). Down to the pages in use, not to the size found: free pages someone else left
    # in the pool would otherwise absorb the shrink (the fixture puts the size back).
    in_use = count("nr_hugepages") - count("free_hugepages")
    (POOL / "nr_hugepages").write_text(str(in_use - 3))
    kill(crashed)
    # The memfd's surplus page goes back asynchronously.
    assert wait_until(lambda: count("surplus_hugepages") == 2, 5), count("surplus_hugepages")
    pool = next(p for p in audit().pools if p.size == MB2 and p.node is None)
    assert pool.surplus == 2 and pool.surplus_unheld == 2 and pool.orphaned == 2
    text = run_physmem("hugepages", "audit")
    assert "spdk_leftover" in text.stdout and "orphan" in text.stdout
    out = run_physmem("hugepages", "audit", "--json")
    assert [o["path"] for o in json.loads(out.stdout)["orphans"]] == [str(mount / "spdk_leftover")]
    assert json.loads(out.stdout)["orphans"][0]["bytes"] == 2 * MB2


@pytest.mark.root
@pytest.mark.hugepages
def test_clean_without_yes_refuses_off_a_terminal(mount: Path) -> None:
    (POOL / "nr_hugepages").write_text(str(count("nr_hugepages") + 3))  # file + memfd
    crashed = start(mount, "rtemap_9", 1, 1)
    kill(crashed)
    out = run_physmem("hugepages", "audit", "--clean", stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "--yes" in out.stderr   # usage error: --yes missing
    assert (mount / "rtemap_9").exists(), "nothing removed without --yes"
    assert "rtemap_9" in out.stdout  # it said what it would remove
    out = run_physmem("hugepages", "list", "--clean")
    assert out.returncode == 2 and "audit" in out.stderr


# --clean stays on the hugetlbfs, whatever is mounted in, over or above it, and whoever
# may rename the directories on its way.

def _umount_all(targets: list[Path]) -> None:
    failed = []
    for target in reversed(targets):  # the last mounted (the one on top) first
        if subprocess.run(["umount", str(target)]).returncode != 0:
            failed.append(str(target))
    assert not failed, f"could not unmount {failed}"


@pytest.fixture
def mounted(request: pytest.FixtureRequest, is_root: None):
    """``mounted(target, *mount_args)`` mounts at ``target``; every mount made is undone when
    the test ends, pass or fail, the last made first."""
    made: list[Path] = []
    request.addfinalizer(lambda: _umount_all(made))

    def mount(target: Path, *args: str) -> Path:
        if not target.exists():
            target.mkdir()
        subprocess.run(["mount", *args, str(target)], check=True)
        made.append(target)
        return target

    return mount


def clean(*extra: str) -> dict:
    out = run_physmem("hugepages", "audit", "--clean", "--yes", "--json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.root
def test_clean_never_leaves_the_hugetlbfs(tmp_path: Path, mounted) -> None:
    huge = mounted(tmp_path / "huge", "-t", "hugetlbfs", "-o", "pagesize=2M", "none")
    # A directory of ordinary files bind-mounted into the hugetlbfs, and a single file.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "data").write_text("bound dir")
    (huge / "bound").mkdir()
    mounted(huge / "bound", "--bind", str(plain))
    # A tmpfs on a subdirectory of the hugetlbfs.
    (huge / "sub").mkdir()
    mounted(huge / "sub", "-t", "tmpfs", "-o", "size=1m", "none")
    (huge / "sub" / "data").write_text("tmpfs on a subdirectory")
    # A tmpfs mounted over a whole other hugetlbfs.
    covered = tmp_path / "covered"
    covered.mkdir()
    mounted(covered, "-t", "hugetlbfs", "-o", "pagesize=2M", "none")
    mounted(covered, "-t", "tmpfs", "-o", "size=1m", "none")
    (covered / "data").write_text("tmpfs over a hugetlbfs")
    # The one real orphan.
    (huge / "rtemap_0").touch()
    ordinary = {plain / "data": "bound dir", huge / "sub" / "data": "tmpfs on a subdirectory",
                covered / "data": "tmpfs over a hugetlbfs"}

    out = run_physmem("hugepages", "audit", "--clean", "--yes", "--json")
    for path, text in ordinary.items():
        assert path.exists() and path.read_text() == text, f"{path} was touched"
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["removed"] == [{"path": str(huge / "rtemap_0"), "bytes": 0}]
    assert not (huge / "rtemap_0").exists()
    # Independent: every file the audit listed is on a hugetlbfs by the kernel's statfs.
    for f in data["files"]:
        kind = subprocess.run(["stat", "-f", "-c", "%T", f["path"]], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert kind == "hugetlbfs", f
    assert str(covered) in data["unreachable_mounts"]


@pytest.mark.root
def test_clean_passes_over_a_file_mounted_onto_the_hugetlbfs(tmp_path: Path, mounted) -> None:
    huge = mounted(tmp_path / "huge", "-t", "hugetlbfs", "-o", "pagesize=2M", "none")
    (tmp_path / "plainfile").write_text("bound file")
    (huge / "rtemap_bound").touch()
    mounted(huge / "rtemap_bound", "--bind", str(tmp_path / "plainfile"))
    (huge / "rtemap_0").touch()
    data = clean()
    assert data["removed"] == [{"path": str(huge / "rtemap_0"), "bytes": 0}]
    assert (tmp_path / "plainfile").read_text() == "bound file"
    assert str(huge / "rtemap_bound") not in [f["path"] for f in data["files"]]


NS_HOLDER = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR)
os.ftruncate(fd, 2 << 20)
m = mmap.mmap(fd, 2 << 20)
m[0] = 1
os.close(fd)   # held by the mapping alone
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.root
@pytest.mark.hugepages
def test_clean_in_a_pid_namespace_refuses_and_keeps_what_others_hold(mount: Path) -> None:
    (POOL / "nr_hugepages").write_text(str(count("nr_hugepages") + 1))
    env, cwd = python_env()
    holder = subprocess.Popen([sys.executable, "-c", NS_HOLDER, str(mount / "held")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env, cwd=cwd)
    try:
        assert holder.stdout.readline() == "ready\n"
        (mount / "free").touch()
        inner = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m",
                 "physmem.cli", "hugepages", "audit", "--clean", "--yes", "--json"]
        out = subprocess.run(inner, capture_output=True, text=True, env=env, cwd=cwd)
        assert out.returncode == 1 and "--ignore-pid-namespace" in out.stderr, out.stderr
        assert (mount / "held").exists() and (mount / "free").exists()

        # Forced: the holder it cannot see still keeps its file (the kernel refuses the lease).
        out = subprocess.run(inner + ["--ignore-pid-namespace"], capture_output=True,
                             text=True, env=env, cwd=cwd)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert [r["path"] for r in data["removed"]] == [str(mount / "free")]
        assert [k["path"] for k in data["kept"]] == [str(mount / "held")]
        assert data["kept"][0]["reason"].startswith("open or mapped")
        assert os.stat(mount / "held").st_blocks * 512 == MB2  # its page is still there
        assert not (mount / "free").exists()
    finally:
        kill(holder)


@pytest.fixture
def reachable_tmp(request: pytest.FixtureRequest) -> Path:
    """A directory under /tmp that other users may traverse (pytest's own are 0700),
    removed at the end; ask for it before ``mounted`` so that it outlives the mounts."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="physmem-test-", dir="/tmp"))
    path.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(path))
    return path


# A user who owns the directory above the mount swaps it, atomically and over and over,
# with one whose "mnt" is a symlink to a root-owned directory, while planting orphans
# named like the root-owned file.
SWAPPER = """
import ctypes, os, sys
u = sys.argv[1].encode()
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
hugetlbfs = os.open(u + b"/d/mnt", os.O_RDONLY | os.O_DIRECTORY)
print("ready", flush=True)
swaps = 0
while not os.path.exists(u + b"/stop"):
    try:
        os.close(os.open("target", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=hugetlbfs))
    except OSError:
        pass
    if libc.renameat2(AT_FDCWD, u + b"/d", AT_FDCWD, u + b"/f", RENAME_EXCHANGE) == 0:
        swaps += 1
print(swaps, flush=True)
"""


@pytest.mark.root
def test_clean_cannot_be_redirected_by_swapping_directories(
        reachable_tmp: Path, request: pytest.FixtureRequest, run_unprivileged) -> None:
    from conftest import NOBODY

    from physmem.hugepages import audit, remove_orphans

    base = reachable_tmp
    victim = base / "victim"
    victim.mkdir()
    (victim / "target").write_text("root's own file")
    (victim / "target").chmod(0o600)
    victim_inode = os.stat(victim / "target").st_ino
    u = base / "u"
    (u / "d" / "mnt").mkdir(parents=True)
    (u / "f").mkdir()
    (u / "f" / "mnt").symlink_to(victim)
    for path in (u, u / "d", u / "d" / "mnt", u / "f", u / "f" / "mnt"):
        os.lchown(path, 65534, 65534)
    subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M,mode=1777", "none",
                    str(u / "d" / "mnt")], check=True)
    swapper = None

    def undo() -> None:
        if swapper is not None and swapper.poll() is None:
            swapper.kill()
            swapper.wait()
        for side in ("d", "f"):  # wherever the swaps left the mount
            if os.path.ismount(u / side / "mnt"):
                subprocess.run(["umount", str(u / side / "mnt")], check=True)

    request.addfinalizer(undo)
    swapper = subprocess.Popen([*NOBODY, sys.executable, "-c", SWAPPER, str(u)],
                               stdout=subprocess.PIPE, text=True, cwd="/",
                               env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert swapper.stdout.readline() == "ready\n"
    for _ in range(60):  # each round of the former code hit the victim about once in four
        remove_orphans(audit())
        assert (victim / "target").read_text() == "root's own file"
        assert os.stat(victim / "target").st_ino == victim_inode
    (u / "stop").touch()
    assert swapper.wait(timeout=30) == 0
    assert int(swapper.stdout.read()) > 1000, "the directories were swapped all along"


# Opens the file, holds it about 20 ms, closes it for about 20 ms, and again; the times vary
# by a quarter so that its rhythm cannot lock onto the cleaner's.
TOGGLER = """
import os, random, sys, time
path, stop = sys.argv[1], sys.argv[2]
opens = violations = 0
print("ready", flush=True)
while not os.path.exists(stop):
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # removed, or renamed for a moment by the cleaner
        time.sleep(random.uniform(0.015, 0.025))
        continue
    opens += 1
    time.sleep(random.uniform(0.015, 0.025))
    if os.fstat(fd).st_nlink == 0:
        violations += 1  # removed while this process had it open
    os.close(fd)
    time.sleep(random.uniform(0.015, 0.025))
print(opens, violations, flush=True)
"""


@pytest.mark.root
def test_clean_never_removes_a_file_opened_meanwhile(tmp_path: Path, mounted) -> None:
    from physmem.hugepages import audit, remove_orphans

    huge = mounted(tmp_path / "huge", "-t", "hugetlbfs", "-o", "pagesize=2M", "none")
    targets, stop = [huge / f"rtemap_{i}" for i in range(4)], tmp_path / "stop"
    env, cwd = python_env()
    togglers = []
    try:
        for target in targets:
            target.touch()
            togglers.append(subprocess.Popen(
                [sys.executable, "-c", TOGGLER, str(target), str(stop)],
                stdout=subprocess.PIPE, text=True, env=env, cwd=cwd))
        assert all(t.stdout.readline() == "ready\n" for t in togglers)
        removed = 0
        for _ in range(200):  # the former code removed an open file about 8 times in this
            for target in targets:
                if not target.exists():
                    target.touch()
            remove_orphans(audit())
            removed += sum(not target.exists() for target in targets)
        stop.touch()
        assert all(t.wait(timeout=30) == 0 for t in togglers)
        counts = [tuple(map(int, t.stdout.read().split())) for t in togglers]
    finally:
        for t in togglers:
            if t.poll() is None:
                kill(t)
    opens, violations = sum(c[0] for c in counts), sum(c[1] for c in counts)
    assert violations == 0, f"{violations} of {opens} opens saw their file removed"
    assert removed and opens > 200, (removed, opens)  # both sides did their part
    assert not [p for p in huge.iterdir() if p.name.startswith(".physmem-")]


@pytest.mark.root
def test_a_file_opened_while_staged_gets_its_name_back(tmp_path: Path, mounted) -> None:
    import fcntl

    from physmem.hugepages._hugetlbfs import Remover

    huge = mounted(tmp_path / "huge", "-t", "hugetlbfs", "-o", "pagesize=2M", "none")
    (huge / "rtemap_0").touch()
    st = os.stat(huge / "rtemap_0")
    env, cwd = python_env()
    with Remover() as remover:
        staged = remover.stage(str(huge), st.st_dev, st.st_ino, ("rtemap_0",))
        assert not isinstance(staged, str), staged
        assert os.listdir(huge) == [staged.hidden]
        # An open that found the file before it was hidden has to wait for the lease.
        opener = subprocess.Popen(
            [sys.executable, "-c", "import os, sys; st = os.fstat(os.open(sys.argv[1], "
             "os.O_RDONLY)); print(st.st_ino, st.st_nlink)", str(huge / staged.hidden)],
            stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
        assert wait_until(lambda: fcntl.fcntl(staged.fd, fcntl.F_GETLEASE) != fcntl.F_WRLCK,
                          20), "the open never reached the lease"
        assert remover.finish(staged) == "opened meanwhile"
        assert os.listdir(huge) == ["rtemap_0"]
    out, _ = opener.communicate(timeout=30)
    assert out.split() == [str(st.st_ino), "1"], "the opener has the file, under its name"


@pytest.mark.root
def test_without_leases_nothing_is_removed(tmp_path: Path, mounted, sysctl_restored) -> None:
    sysctl_restored("fs.leases-enable", 0)
    huge = mounted(tmp_path / "huge", "-t", "hugetlbfs", "-o", "pagesize=2M", "none")
    (huge / "rtemap_0").touch()
    data = clean()
    assert data["removed"] == [] and (huge / "rtemap_0").exists()
    assert [k["path"] for k in data["kept"]] == [str(huge / "rtemap_0")]
    assert "fs.leases-enable" in data["kept"][0]["reason"]


@pytest.mark.root
def test_names_are_printed_escaped_and_exact_in_json(tmp_path: Path, mounted) -> None:
    huge = mounted(tmp_path / "huge", "-t", "hugetlbfs", "-o", "pagesize=2M", "none")
    raw = b"rtemap_\x1b]0;owned\x07\x1b[2J\xff\xe2\x80\xae"
    os.close(os.open(os.fsencode(huge) + b"/" + raw, os.O_CREAT | os.O_WRONLY))
    escaped = b"rtemap_\\x1b]0;owned\\x07\\x1b[2J\\xff\\u202e"
    env, cwd = python_env()

    def physmem(*args: str) -> bytes:
        out = subprocess.run([sys.executable, "-m", "physmem.cli", "hugepages", "audit", *args],
                             capture_output=True, env=env, cwd=cwd)
        assert out.returncode == 0, out.stderr
        return out.stdout

    data = json.loads(physmem("--json"))
    assert [o["path"] for o in data["orphans"]] == [os.fsdecode(os.fsencode(huge) + b"/" + raw)]
    for text in (physmem(), physmem("--clean", "--yes")):
        assert escaped in text
        assert not {0x1b, 0x07, 0xff} & set(text), "a control byte reached the terminal"
        assert "\u202e".encode() not in text
    assert os.listdir(huge) == []


@pytest.mark.root
def test_clean_as_an_unprivileged_user_removes_only_its_own(reachable_tmp: Path, mounted,
                                                            run_unprivileged) -> None:
    huge = mounted(reachable_tmp / "huge", "-t", "hugetlbfs", "-o", "pagesize=2M,mode=1777",
                   "none")
    (huge / "root_file").touch()
    out = run_unprivileged(f"""
        import json, os
        from physmem.hugepages import audit, remove_orphans
        os.close(os.open({str(huge / "user_file")!r}, os.O_CREAT | os.O_WRONLY))
        done = remove_orphans(audit())
        print(json.dumps({{"removed": [f.path for f in done.removed],
                          "kept": {{k.file.path: k.reason for k in done.kept}}}}))
    """)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["removed"] == [str(huge / "user_file")]
    assert list(data["kept"]) == [str(huge / "root_file")]
    assert sorted(os.listdir(huge)) == ["root_file"]


# The pieces, against the kernel's own files.

def test_mountinfo_names_each_mount_as_stat_and_fdinfo_do() -> None:
    from physmem import proc
    from physmem.proc.fds import mount_id

    mounts = proc.mountinfo()
    assert [(m.path, m.fstype) for m in mounts] == [(m.path, m.fstype) for m in proc.mounts()]
    for path in ("/", "/proc", "/sys"):
        top = [m for m in mounts if m.path == path][-1]
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert os.fstat(fd).st_dev == top.device
            assert mount_id(fd) == top.mount_id
        finally:
            os.close(fd)


def test_mountinfo_parser_undoes_escapes_and_names_a_bad_line() -> None:
    from physmem.errors import ParseError
    from physmem.proc import parse_mountinfo

    line = (b"36 35 98:0 /mnt\\0401 /mnt/a\\040b rw,noatime master:1 shared:2 - ext3 "
            b"/dev/root rw,errors=continue\n40 36 0:45 / /dev/hugepages rw - hugetlbfs "
            b"hugetlbfs rw,pagesize=2M\n")
    a, b = parse_mountinfo(line)
    assert (a.mount_id, a.parent_id, a.device, a.root, a.path, a.fstype, a.source) == (
        36, 35, os.makedev(98, 0), "/mnt 1", "/mnt/a b", "ext3", "/dev/root")
    assert a.options == ("rw", "noatime") and a.super_options == ("rw", "errors=continue")
    assert b.device == os.makedev(0, 45) and b.super_options == ("rw", "pagesize=2M")
    for bad in (b"36 35 98:0 / /mnt rw - ext3\n", b"36 35 98 / /mnt rw - ext3 x rw\n",
                b"x 35 98:0 / /mnt rw - ext3 x rw\n"):
        with pytest.raises(ParseError) as info:
            parse_mountinfo(line + bad, "mountinfo")
        assert info.value.lineno == 3 and info.value.path == "mountinfo"


def test_pid_namespace_as_the_kernel_names_it() -> None:
    from physmem.hugepages import sees_every_process
    from physmem.proc.fds import namespace

    assert namespace("pid") == os.stat("/proc/self/ns/pid").st_ino
    # Independent evidence of the initial pid namespace: kthreadd is pid 2 there only.
    try:
        kthreadd = Path("/proc/2/comm").read_text() == "kthreadd\n"
    except OSError:
        kthreadd = False
    assert sees_every_process() == kthreadd
    assert not sees_every_process(proc_root="/nonexistent")


def test_printable_escapes_what_a_terminal_would_act_on() -> None:
    from physmem.cli._output import printable

    assert printable("rtemap_0 ä") == "rtemap_0 ä"
    assert printable("a\x1b[2Jb\x07\x9b") == "a\\x1b[2Jb\\x07\\x9b"
    assert printable(os.fsdecode(b"x\xffy")) == "x\\xffy"
    assert printable("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert printable("a\\x1b") == "a\\\\x1b"  # a literal backslash is told apart
    assert printable("tab\there\n") == "tab\\x09here\\x0a"
