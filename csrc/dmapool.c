/* Buddy allocator over offsets; see dmapool.h. */
#include "dmapool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#define NORDERS 64

struct pm_dmapool {
    pthread_mutex_t lock;
    uint64_t size;
    unsigned max_order;
    int closed;
    uint64_t free_bytes;
    uint64_t outstanding;
    uint64_t nfree[NORDERS];
    uint64_t hint[NORDERS]; /* no free bit lies in a word below this one */
    uint64_t *freemap[NORDERS];
    uint64_t *allocmap[NORDERS];
    uint64_t *storage;
};

static inline uint64_t nwords(uint64_t size, unsigned order)
{
    return ((size >> order) + 63) / 64;
}

static inline int test_bit(const uint64_t *map, uint64_t i)
{
    return (map[i >> 6] >> (i & 63)) & 1;
}

static inline void set_free(pm_dmapool *p, unsigned k, uint64_t i)
{
    uint64_t w = i >> 6;
    p->freemap[k][w] |= 1ULL << (i & 63);
    if (p->nfree[k]++ == 0 || w < p->hint[k])
        p->hint[k] = w;
}

static inline void clear_free(pm_dmapool *p, unsigned k, uint64_t i)
{
    p->freemap[k][i >> 6] &= ~(1ULL << (i & 63));
    p->nfree[k]--;
}

/* Lowest free block of order k; the caller knows one exists. Lowest-first keeps the high
 * end of the region unsplit for large requests. */
static inline uint64_t first_free(pm_dmapool *p, unsigned k)
{
    uint64_t w = p->hint[k];
    const uint64_t *map = p->freemap[k];
    while (map[w] == 0)
        w++;
    p->hint[k] = w;
    return (w << 6) | (uint64_t)__builtin_ctzll(map[w]);
}

int pm_dmapool_new(uint64_t size, unsigned max_order, pm_dmapool **out)
{
    if (size < (1ULL << PM_DMAPOOL_MIN_ORDER) || size % (1ULL << PM_DMAPOOL_MIN_ORDER))
        return -EINVAL;
    unsigned top = 63 - (unsigned)__builtin_clzll(size);
    if (max_order > top)
        max_order = top;
    if (max_order < PM_DMAPOOL_MIN_ORDER)
        return -EINVAL;
    pm_dmapool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    uint64_t total = 0;
    for (unsigned k = PM_DMAPOOL_MIN_ORDER; k <= max_order; k++)
        total += 2 * nwords(size, k) + 1; /* +1: a zero word past the end of each map */
    p->storage = calloc(total, sizeof(uint64_t));
    int err = p->storage ? pthread_mutex_init(&p->lock, NULL) : ENOMEM;
    if (err) {
        free(p->storage);
        free(p);
        return -err;
    }
    uint64_t *cur = p->storage;
    for (unsigned k = PM_DMAPOOL_MIN_ORDER; k <= max_order; k++) {
        p->freemap[k] = cur;
        cur += nwords(size, k) + 1;
        p->allocmap[k] = cur;
        cur += nwords(size, k);
    }
    p->size = size;
    p->max_order = max_order;
    /* Cover the region with the largest naturally aligned blocks that fit. */
    uint64_t off = 0;
    while (off < size) {
        unsigned k = max_order;
        while (k > PM_DMAPOOL_MIN_ORDER && ((off & ((1ULL << k) - 1)) || off + (1ULL << k) > size))
            k--;
        set_free(p, k, off >> k);
        p->free_bytes += 1ULL << k;
        off += 1ULL << k;
    }
    *out = p;
    return 0;
}

void pm_dmapool_destroy(pm_dmapool *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p->storage);
    free(p);
}

/* The next block of 2**order; the lock is held and order is in range. */
static int64_t alloc_locked(pm_dmapool *p, unsigned order)
{
    unsigned j = order;
    while (j <= p->max_order && p->nfree[j] == 0)
        j++;
    if (j > p->max_order)
        return -ENOMEM;
    uint64_t i = first_free(p, j);
    clear_free(p, j, i);
    while (j > order) { /* keep the lower half, free the upper one */
        j--;
        i <<= 1;
        set_free(p, j, i | 1);
    }
    p->allocmap[order][i >> 6] |= 1ULL << (i & 63);
    p->free_bytes -= 1ULL << order;
    p->outstanding++;
    return (int64_t)(i << order);
}

/* The order of the allocated block at `offset`, its allocated bit cleared; or -EINVAL
 * (none starts there) / -ERANGE (nbytes exceeds it). The lock is held. */
static int take_block(pm_dmapool *p, uint64_t offset, uint64_t nbytes)
{
    if (offset >= p->size)
        return -EINVAL;
    /* At most one order can hold an allocated block starting at this offset. */
    unsigned k = PM_DMAPOOL_MIN_ORDER;
    for (; k <= p->max_order && !(offset & ((1ULL << k) - 1)); k++)
        if (test_bit(p->allocmap[k], offset >> k))
            break;
    if (k > p->max_order || (offset & ((1ULL << k) - 1)))
        return -EINVAL;
    if (nbytes > (1ULL << k))
        return -ERANGE;
    uint64_t i = offset >> k;
    p->allocmap[k][i >> 6] &= ~(1ULL << (i & 63));
    return (int)k;
}

/* Give back the block of order k at offset, whose allocated bit take_block cleared. */
static void release_block(pm_dmapool *p, uint64_t offset, unsigned k)
{
    uint64_t i = offset >> k;
    p->free_bytes += 1ULL << k;
    p->outstanding--;
    /* Merge with the buddy while it is wholly free and the parent lies inside the region. */
    while (k < p->max_order && (((i >> 1) + 1) << (k + 1)) <= p->size
           && test_bit(p->freemap[k], i ^ 1)) {
        clear_free(p, k, i ^ 1);
        i >>= 1;
        k++;
    }
    set_free(p, k, i);
}

int64_t pm_dmapool_alloc(pm_dmapool *p, unsigned order)
{
    if (order < PM_DMAPOOL_MIN_ORDER)
        order = PM_DMAPOOL_MIN_ORDER;
    if (order > p->max_order)
        return -E2BIG;
    pthread_mutex_lock(&p->lock);
    int64_t ret = p->closed ? -EBADF : alloc_locked(p, order);
    pthread_mutex_unlock(&p->lock);
    return ret;
}

int pm_dmapool_free(pm_dmapool *p, uint64_t offset, uint64_t nbytes)
{
    pthread_mutex_lock(&p->lock);
    int ret = -EBADF;
    if (!p->closed) {
        ret = take_block(p, offset, nbytes);
        if (ret >= 0)
            release_block(p, offset, (unsigned)ret);
    }
    pthread_mutex_unlock(&p->lock);
    return ret;
}

int64_t pm_dmapool_alloc_many(pm_dmapool *p, unsigned order, uint64_t count, uint64_t *out)
{
    if (order < PM_DMAPOOL_MIN_ORDER)
        order = PM_DMAPOOL_MIN_ORDER;
    if (order > p->max_order)
        return -E2BIG;
    pthread_mutex_lock(&p->lock);
    int64_t ret = 0;
    if (p->closed)
        ret = -EBADF;
    else if (count > (p->free_bytes >> order))
        ret = -ENOMEM; /* cannot fit even unfragmented: fail before touching anything */
    for (uint64_t n = 0; ret == 0 && n < count; n++) {
        int64_t off = alloc_locked(p, order);
        if (off < 0) { /* fragmented: all or nothing, so undo the ones taken */
            for (uint64_t m = 0; m < n; m++)
                release_block(p, out[m], (unsigned)take_block(p, out[m], 0));
            ret = off;
            break;
        }
        out[n] = (uint64_t)off;
    }
    pthread_mutex_unlock(&p->lock);
    return ret;
}

int64_t pm_dmapool_free_many(pm_dmapool *p, const uint64_t *offsets, uint64_t count,
                             uint64_t nbytes, unsigned char *orders, uint64_t *bad)
{
    pthread_mutex_lock(&p->lock);
    int64_t ret = 0;
    if (p->closed) {
        ret = -EBADF;
        goto out;
    }
    /* Check every block first (clearing its bit also catches one listed twice), so a bad
     * entry frees nothing: the caller learns its index with the pool unchanged. */
    for (uint64_t n = 0; n < count; n++) {
        int k = take_block(p, offsets[n], nbytes);
        if (k < 0) {
            for (uint64_t m = 0; m < n; m++) {
                uint64_t i = offsets[m] >> orders[m];
                p->allocmap[orders[m]][i >> 6] |= 1ULL << (i & 63);
            }
            *bad = n;
            ret = k;
            goto out;
        }
        orders[n] = (unsigned char)k;
    }
    for (uint64_t n = 0; n < count; n++)
        release_block(p, offsets[n], orders[n]);
out:
    pthread_mutex_unlock(&p->lock);
    return ret;
}

int pm_dmapool_close(pm_dmapool *p, int force)
{
    pthread_mutex_lock(&p->lock);
    int ret = 0;
    if (p->outstanding && !force && !p->closed)
        ret = -EBUSY;
    else
        p->closed = 1;
    pthread_mutex_unlock(&p->lock);
    return ret;
}

void pm_dmapool_stats(pm_dmapool *p, uint64_t *out)
{
    pthread_mutex_lock(&p->lock);
    out[0] = p->free_bytes;
    out[1] = p->outstanding;
    out[2] = 0;
    for (unsigned k = p->max_order; k >= PM_DMAPOOL_MIN_ORDER; k--)
        if (p->nfree[k]) {
            out[2] = 1ULL << k;
            break;
        }
    out[3] = (uint64_t)p->closed;
    pthread_mutex_unlock(&p->lock);
}
