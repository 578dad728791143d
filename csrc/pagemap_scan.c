#include "pagemap_scan.h"

#include <errno.h>
#include <string.h>

_Static_assert(sizeof(struct page_region) == 3 * sizeof(uint64_t), "page_region layout");
_Static_assert(sizeof(struct pm_scan_arg) == 12 * sizeof(uint64_t), "pm_scan_arg layout");

/* One PAGEMAP_SCAN call over [start, end) of the pagemap fd's process. Matching ranges are
 * written to `regions` as (start, end, categories) triples, at most nregions of them (none
 * asked for: nregions 0). flags: PM_SCAN_WP_MATCHING write-protects what matched (only what
 * was reported when the regions ran out), PM_SCAN_CHECK_WPASYNC fails with -EPERM on memory
 * not registered for asynchronous userfaultfd write protection.
 * *walk_end is where the kernel stopped (end, or earlier if regions or max_pages ran out).
 * Returns the number of regions written, or -errno (-ENOTTY: kernel without PAGEMAP_SCAN). */
int64_t pm_pagemap_scan(int fd, uint64_t flags, uint64_t start, uint64_t end,
                        uint64_t category_inverted, uint64_t category_mask,
                        uint64_t category_anyof_mask, uint64_t return_mask,
                        uint64_t max_pages, uint64_t *regions, uint64_t nregions,
                        uint64_t *walk_end)
{
    struct pm_scan_arg arg;
    memset(&arg, 0, sizeof(arg));
    arg.size = sizeof(arg);
    arg.flags = flags;
    arg.start = start;
    arg.end = end;
    arg.vec = nregions ? (uint64_t)(uintptr_t)regions : 0;
    arg.vec_len = nregions;
    arg.max_pages = max_pages;
    arg.category_inverted = category_inverted;
    arg.category_mask = category_mask;
    arg.category_anyof_mask = category_anyof_mask;
    arg.return_mask = return_mask;

    int ret;
    do {
        ret = ioctl(fd, PAGEMAP_SCAN, &arg);
    } while (ret < 0 && errno == EINTR);
    if (ret < 0)
        return -errno;
    *walk_end = arg.walk_end;
    return ret;
}
