#!/usr/bin/env bash
# Install and build the real peers the benchmarks compare physmem with. Idempotent; apt and
# pip only. Each peer that cannot be had is reported and skipped: the benchmark that uses it
# then prints why, instead of silently dropping the comparison.
#   - page-types: the kernel's own tools/mm/page-types, built from Debian's linux-source
#   - DPDK's EAL: a small program (dpdk_memzone.c) built against Debian's libdpdk-dev
#   - psutil (pip); numactl and lscpu (apt, util-linux)
#   - C loops the benchmarks time physmem against (virt2phy, uffd_ref, dirty_ref), with cc
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/bin"
mkdir -p "$bin"
export DEBIAN_FRONTEND=noninteractive

apt_install() {
    apt-get install -y -q -o DPkg::Lock::Timeout=300 "$@" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q -o DPkg::Lock::Timeout=300 "$@" >/dev/null 2>&1; }
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    src=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -1)
    if [ -z "$src" ]; then
        pkg=$(apt-cache search --names-only '^linux-source-[0-9.]+$' 2>/dev/null | awk '{print $1}' | sort -V | tail -1)
        [ -n "$pkg" ] && apt_install "$pkg"
        src=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -1)
    fi
    pkg-config --exists libdpdk 2>/dev/null || apt_install libdpdk-dev pkg-config
    command -v numactl >/dev/null || apt_install numactl
else
    src=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -1)
fi
python3 -m pip install --quiet psutil >/dev/null 2>&1 || echo "peer psutil: pip install failed"

# page-types is built optimised, as physmem's C is: the kernel's Makefile passes no -O at all
# (10% slower). Its Makefile appends to CFLAGS, so the environment's -O2 comes first. A build
# made otherwise (an older setup.sh) is made again.
page_types_cflags="-O2"
if [ ! -x "$bin/page-types" ] || [ "$(cat "$bin/page-types.cflags" 2>/dev/null)" != "$page_types_cflags" ]; then
    rm -f "$bin/page-types" "$bin/page-types.cflags"
    if [ -n "${src:-}" ]; then
        work=$(mktemp -d)
        top=$(basename "$src" .tar.xz)
        # tools/mm since Linux 6.3, tools/vm before (Debian 12's linux-source-6.1).
        dir=mm
        if tar -xJf "$src" -C "$work" "$top/tools" "$top/include/uapi" \
            && { [ -d "$work/$top/tools/mm" ] || dir=vm; } \
            && CFLAGS="$page_types_cflags" make -s -C "$work/$top/tools/$dir" page-types >/dev/null 2>&1; then
            cp "$work/$top/tools/$dir/page-types" "$bin/page-types"
            echo "$page_types_cflags" > "$bin/page-types.cflags"
            echo "peer page-types: built from $(basename "$src") with $page_types_cflags"
        else
            echo "peer page-types: build from $src failed"
        fi
        rm -rf "$work"
    else
        echo "peer page-types: no linux-source package could be installed"
    fi
fi

# Built again whenever its source is newer than the program (a changed peer).
if [ ! -x "$bin/dpdk_memzone" ] || [ "$here/dpdk_memzone.c" -nt "$bin/dpdk_memzone" ]; then
    if pkg-config --exists libdpdk 2>/dev/null; then
        # shellcheck disable=SC2046
        if cc -O2 -o "$bin/dpdk_memzone" "$here/dpdk_memzone.c" $(pkg-config --cflags --libs libdpdk) 2>"$bin/dpdk_memzone.log"; then
            echo "peer dpdk_memzone: built against DPDK $(pkg-config --modversion libdpdk)"
        else
            echo "peer dpdk_memzone: build failed (see $bin/dpdk_memzone.log)"
        fi
    else
        echo "peer dpdk_memzone: libdpdk-dev is not installed"
    fi
fi

for c in virt2phy uffd_ref dirty_ref; do
    # Built again whenever its source is newer than the library (a changed peer).
    if [ -f "$here/$c.c" ] && { [ ! -f "$bin/lib$c.so" ] || [ "$here/$c.c" -nt "$bin/lib$c.so" ]; }; then
        cc -O2 -shared -fPIC -o "$bin/lib$c.so" "$here/$c.c" || echo "peer $c: build failed"
    fi
done
ls "$bin"
