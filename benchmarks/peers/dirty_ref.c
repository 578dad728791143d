/* Dirty-page tracking as a C program does it, the floor benchmarks/dirty.py measures
 * physmem.track against (loaded with ctypes): a userfaultfd registered for asynchronous write
 * protection (Linux 6.7), then PAGEMAP_SCAN on /proc/self/pagemap in a tight loop, resuming
 * at walk_end until the end of the range, into one preallocated vector.
 *
 * dirty_ref_open(start, len, cap) registers [start, start + len) and returns a handle (NULL,
 * errno set, on failure); dirty_ref_attach(start, len, cap) returns one for memory another
 * userfaultfd registered; dirty_ref_protect(h) write-protects it all; dirty_ref_collect(h,
 * reset) reads the written ranges into the vector (re-protecting them if reset) and returns
 * how many, or -errno (-ENOSPC: more than cap); dirty_ref_regions(h) is the vector of
 * (start, end, categories) triples; dirty_ref_close(h) unregisters (if it registered) and frees.
 * dirty_ref_store(addr, count, stride) stores one byte every stride bytes and returns the
 * nanoseconds it took. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Headers older than 6.7 lack these; the values are the kernel's uapi. */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct page_region {
    __u64 start, end, categories;
};
struct pm_scan_arg {
    __u64 size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
        category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

struct dref {
    int uffd, pagemap;
    uint64_t start, end, cap;
    struct page_region *vec;
};

static struct dref *new_handle(uint64_t start, uint64_t len, uint64_t cap)
{
    struct dref *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    *h = (struct dref){.uffd = -1, .start = start, .end = start + len, .cap = cap,
                       .vec = malloc(cap * sizeof *h->vec),
                       .pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)};
    if (h->vec && h->pagemap >= 0)
        return h;
    int err = errno;
    if (h->pagemap >= 0)
        close(h->pagemap);
    free(h->vec);
    free(h);
    errno = err;
    return NULL;
}

long dirty_ref_close(void *handle);

void *dirty_ref_open(uint64_t start, uint64_t len, uint64_t cap)
{
    struct dref *h = new_handle(start, len, cap);
    if (!h)
        return NULL;
    h->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
    struct uffdio_register reg = {.range = {.start = start, .len = len},
                                  .mode = UFFDIO_REGISTER_MODE_WP};
    if (h->uffd >= 0 && ioctl(h->uffd, UFFDIO_API, &api) == 0
        && ioctl(h->uffd, UFFDIO_REGISTER, &reg) == 0)
        return h;
    int err = errno;
    if (h->uffd >= 0)
        close(h->uffd);
    h->uffd = -1;
    dirty_ref_close(h);
    errno = err;
    return NULL;
}

void *dirty_ref_attach(uint64_t start, uint64_t len, uint64_t cap)
{
    return new_handle(start, len, cap);
}

static long scan(struct dref *h, uint64_t flags, uint64_t start, struct page_region *vec,
                 uint64_t vec_len, uint64_t *walk_end)
{
    struct pm_scan_arg arg = {
        .size = sizeof arg, .flags = flags, .start = start, .end = h->end,
        .vec = (uint64_t)(uintptr_t)vec, .vec_len = vec_len,
        .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN};
    long n = ioctl(h->pagemap, PAGEMAP_SCAN, &arg);
    *walk_end = arg.walk_end;
    return n < 0 ? -errno : n;
}

long dirty_ref_protect(void *handle)
{
    struct dref *h = handle;
    uint64_t walk_end;
    long n = scan(h, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, h->start, NULL, 0, &walk_end);
    return n < 0 ? n : 0;
}

long dirty_ref_collect(void *handle, int reset)
{
    struct dref *h = handle;
    uint64_t flags = PM_SCAN_CHECK_WPASYNC | (reset ? PM_SCAN_WP_MATCHING : 0);
    uint64_t at = h->start, n = 0, walk_end;
    while (at < h->end) {
        if (n == h->cap)
            return -ENOSPC;
        long got = scan(h, flags, at, h->vec + n, h->cap - n, &walk_end);
        if (got < 0)
            return got;
        n += (uint64_t)got;
        if (walk_end <= at)
            return -EIO;
        at = walk_end;
    }
    return (long)n;
}

const uint64_t *dirty_ref_regions(void *handle)
{
    return (const uint64_t *)((struct dref *)handle)->vec;
}

long dirty_ref_close(void *handle)
{
    struct dref *h = handle;
    long ret = 0;
    if (h->uffd >= 0) {
        struct uffdio_range range = {.start = h->start, .len = h->end - h->start};
        ret = ioctl(h->uffd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
        close(h->uffd);
    }
    close(h->pagemap);
    free(h->vec);
    free(h);
    return ret;
}

uint64_t dirty_ref_store(char *addr, uint64_t count, uint64_t stride)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (uint64_t i = 0; i < count; i++)
        ((volatile char *)addr)[i * stride]++;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)(b.tv_nsec - a.tv_nsec);
}
