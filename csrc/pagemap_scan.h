/* PAGEMAP_SCAN (Linux 6.7): ask the kernel for the ranges of pages in given categories
 * instead of reading one pagemap entry per page. */
#ifndef PHYSMEM_PAGEMAP_SCAN_H
#define PHYSMEM_PAGEMAP_SCAN_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

/* Headers older than 6.7 lack the ioctl; this layout matches include/uapi/linux/fs.h and
 * support is detected at run time (ENOTTY from older kernels). */
#ifndef PAGEMAP_SCAN
#include <linux/types.h>

#define PAGE_IS_WPALLOWED  (1 << 0)
#define PAGE_IS_WRITTEN    (1 << 1)
#define PAGE_IS_FILE       (1 << 2)
#define PAGE_IS_PRESENT    (1 << 3)
#define PAGE_IS_SWAPPED    (1 << 4)
#define PAGE_IS_PFNZERO    (1 << 5)
#define PAGE_IS_HUGE       (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
    __u64 start;
    __u64 end;
    __u64 categories;
};

#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
    __u64 size;
    __u64 flags;
    __u64 start;
    __u64 end;
    __u64 walk_end;
    __u64 vec;
    __u64 vec_len;
    __u64 max_pages;
    __u64 category_inverted;
    __u64 category_mask;
    __u64 category_anyof_mask;
    __u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* cffi:begin */
/* cffi:const PAGEMAP_SCAN PAGE_IS_WPALLOWED PAGE_IS_WRITTEN PAGE_IS_FILE PAGE_IS_PRESENT
 * PAGE_IS_SWAPPED PAGE_IS_PFNZERO PAGE_IS_HUGE PAGE_IS_SOFT_DIRTY PM_SCAN_WP_MATCHING
 * PM_SCAN_CHECK_WPASYNC */
/* Guard regions are reported from 6.15; headers between 6.7 and 6.15 lack the bit. */
#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8)
#endif

int64_t pm_pagemap_scan(int fd, uint64_t flags, uint64_t start, uint64_t end,
                        uint64_t category_inverted, uint64_t category_mask,
                        uint64_t category_anyof_mask, uint64_t return_mask,
                        uint64_t max_pages, uint64_t *regions, uint64_t nregions,
                        uint64_t *walk_end);

/* cffi:end */
#endif
