/* Per-page translation baselines for benchmarks/translate.py, loaded with ctypes.
 *
 * v2p_pread_loop: one pread(2) of 8 bytes per page on one open pagemap fd, the tightest
 *   per-page loop a C program can write.
 * v2p_dpdk_style: what DPDK's rte_mem_virt2phy() does for every address: open
 *   /proc/self/pagemap, pread the entry, close, and turn the PFN into a physical address.
 * Both return the number of pages that were present, or -errno. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#define PFN_MASK ((UINT64_C(1) << 55) - 1)
#define PRESENT (UINT64_C(1) << 63)

long v2p_pread_loop(int fd, uint64_t addr, uint64_t npages, uint64_t page, uint64_t *out)
{
    long present = 0;
    for (uint64_t i = 0; i < npages; i++) {
        uint64_t entry;
        uint64_t va = addr + i * page;
        if (pread(fd, &entry, sizeof entry, (off_t)(va / page * sizeof entry)) != sizeof entry)
            return -errno;
        out[i] = (entry & PRESENT) ? (entry & PFN_MASK) * page + va % page : UINT64_MAX;
        present += (entry & PRESENT) != 0;
    }
    return present;
}

long v2p_dpdk_style(uint64_t addr, uint64_t npages, uint64_t page, uint64_t *out)
{
    long present = 0;
    for (uint64_t i = 0; i < npages; i++) {
        uint64_t entry;
        uint64_t va = addr + i * page;
        int fd = open("/proc/self/pagemap", O_RDONLY);
        if (fd < 0)
            return -errno;
        ssize_t n = pread(fd, &entry, sizeof entry, (off_t)(va / page * sizeof entry));
        close(fd);
        if (n != sizeof entry)
            return -EIO;
        out[i] = (entry & PRESENT) ? (entry & PFN_MASK) * page + va % page : UINT64_MAX;
        present += (entry & PRESENT) != 0;
    }
    return present;
}
