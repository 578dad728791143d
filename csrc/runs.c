#include "runs.h"
#include "pageio.h"

#include <errno.h>
#include <stdlib.h>

#include <string.h>

/* Split n entries of consecutive virtual pages into maximal runs in which the physical page
 * number, pfn[i] & pfn_mask, steps by `step` (page-types' runs: virtual and physical pages
 * both advance by one). Entry i takes part only when (pfn[i] & require) == require; any other
 * ends the run. Writes each run's first index and length; returns the number of runs (<= n). */
size_t pm_find_runs(const uint64_t *pfn, uint64_t pfn_mask, uint64_t step, size_t n,
                    uint64_t require, uint64_t *run_start, uint64_t *run_len)
{
    size_t runs = 0;
    int open = 0;
    uint64_t prev = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t f = pfn[i];
        if ((f & require) != require) {
            open = 0;
            continue;
        }
        uint64_t p = f & pfn_mask;
        if (open && p == prev + step) {
            run_len[runs - 1]++;
        } else {
            run_start[runs] = i;
            run_len[runs] = 1;
            runs++;
            open = 1;
        }
        prev = p;
    }
    return runs;
}

/* Maximal runs of non-zero bytes in mask[0..n): first index and length of each; returns the
 * number of runs (at most (n + 1) / 2). */
size_t pm_find_mask_runs(const uint8_t *mask, size_t n, uint64_t *run_start, uint64_t *run_len)
{
    size_t runs = 0, i = 0;

    while (i < n) {
        while (i < n && !mask[i])
            i++;
        if (i == n)
            break;
        size_t s = i;
        while (i < n && mask[i])
            i++;
        run_start[runs] = s;
        run_len[runs] = i - s;
        runs++;
    }
    return runs;
}

/* Free blocks on kernels that flag only a block's first page BUDDY (its tails read 0): for
 * each page i with (flags[i] & buddy), set out[i..i + 2**order) where order is the largest
 * (at most max_order) for which the block is naturally aligned (at first_pfn + i), lies
 * within n and has flags 0 on every page after the head. out[] is only ever set to 1. */
void pm_extend_free_heads(const uint64_t *flags, size_t n, uint64_t first_pfn, uint64_t buddy,
                          unsigned max_order, uint8_t *out)
{
    for (size_t h = 0; h < n; h++) {
        if (!(flags[h] & buddy))
            continue;
        uint64_t pfn = first_pfn + h;
        unsigned order = 0;
        while (order < max_order) {
            uint64_t size = (uint64_t)2 << order;
            if (pfn % size || h + size > n)
                break;
            size_t k = h + (size >> 1);
            while (k < h + size && flags[k] == 0)
                k++;
            if (k < h + size)
                break;
            order++;
        }
        memset(out + h, 1, (size_t)1 << order);
    }
}

static inline uint64_t mix64(uint64_t x)
{
    /* splitmix64 finaliser: flag words differ in few bits, so spread them before masking. */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

/* Count occurrences of each distinct value into an open-addressing table (capacity a power
 * of two, empty slots hold PM_EMPTY_KEY). weights may be NULL (each value counts 1).
 * Stops before the table passes half full, so the caller can grow it and continue from
 * *consumed. Returns the number of used slots after the call; -ENOSPC if it stopped for
 * room, -EINVAL at a value equal to PM_EMPTY_KEY (which the table cannot hold). */
int64_t pm_count_add(uint64_t *keys, uint64_t *counts, uint64_t capacity, uint64_t *used,
                     const uint64_t *values, const uint64_t *weights, size_t n, size_t *consumed)
{
    const uint64_t mask = capacity - 1;
    uint64_t last_key = PM_EMPTY_KEY, last_slot = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        uint64_t v = values[i];
        uint64_t w = weights ? weights[i] : 1;
        if (v == PM_EMPTY_KEY) {
            *consumed = i;
            return -EINVAL;
        }
        /* Physical memory comes in long stretches of identical flags: skip the probe. */
        if (v == last_key) {
            counts[last_slot] += w;
            continue;
        }
        uint64_t slot = mix64(v) & mask;
        while (keys[slot] != PM_EMPTY_KEY && keys[slot] != v)
            slot = (slot + 1) & mask;
        if (keys[slot] == PM_EMPTY_KEY) {
            if (2 * (*used + 1) > capacity) {
                *consumed = i;
                return -ENOSPC;
            }
            keys[slot] = v;
            counts[slot] = 0;
            (*used)++;
        }
        counts[slot] += w;
        last_key = v;
        last_slot = slot;
    }
    *consumed = i;
    return (int64_t)*used;
}

/* Read entries [start, start + count) of a file of 64-bit entries (/proc/kpageflags) and
 * count each distinct value into the table, as pm_count_add does: one call for a whole PFN
 * range, so a summary needs neither a Python loop per chunk nor numpy. *consumed is how many
 * entries were counted; *stop says why the call returned: 0 all counted or end of file
 * (*consumed < count), else what pm_count_add stopped with at start + *consumed: -ENOSPC
 * (grow the table and call again from there) or -EINVAL (an entry equal to PM_EMPTY_KEY).
 * Returns 0, or -errno of the read (kept apart from *stop: a read error is not a table's). */
int64_t pm_count_pread_u64(int fd, uint64_t start, uint64_t count, uint64_t *keys,
                           uint64_t *counts, uint64_t capacity, uint64_t *used,
                           uint64_t *consumed, int *stop)
{
    uint64_t chunk = count < PM_BATCH_ENTRIES ? count : PM_BATCH_ENTRIES;
    uint64_t *buf = malloc((chunk ? chunk : 1) * sizeof(uint64_t));
    uint64_t done = 0;

    *consumed = 0;
    *stop = 0;
    if (!buf)
        return -ENOMEM;
    while (done < count) {
        uint64_t want = count - done < chunk ? count - done : chunk;
        int64_t got = pm_pread_u64(fd, start + done, want, buf);
        if (got < 0) {
            free(buf);
            *consumed = done;
            return got;
        }
        size_t used_here = 0;
        int64_t ret = pm_count_add(keys, counts, capacity, used, buf, NULL, (size_t)got,
                                   &used_here);
        done += used_here;
        if (ret < 0) {
            *stop = (int)ret;
            break;
        }
        if ((uint64_t)got < want)
            break;
    }
    free(buf);
    *consumed = done;
    return 0;
}
