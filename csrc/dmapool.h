/* Buddy allocator of offsets within one DMA region, for physmem.dma.DmaPool.
 *
 * It deals only in offsets and never touches the region itself, so a device writing into
 * free blocks cannot corrupt it and it outlives the mapping safely. Bookkeeping is one free
 * and one allocated bitmap per power-of-two order, out of band. A mutex makes every call
 * thread-safe: cffi releases the GIL around them.
 */
#ifndef PHYSMEM_DMAPOOL_H
#define PHYSMEM_DMAPOOL_H

#include <stdint.h>

/* cffi:begin */
#define PM_DMAPOOL_MIN_ORDER 6 /* 64-byte blocks: one cache line */

typedef struct pm_dmapool pm_dmapool;

/* A pool of `size` bytes (a multiple of 64) whose blocks are at most 2**max_order bytes,
 * stored in *out: 0, -EINVAL if size is not a multiple of 64 or max_order (capped at the
 * size) is below PM_DMAPOOL_MIN_ORDER, -ENOMEM. The pool is the caller's: it frees it with
 * pm_dmapool_destroy, once, when no call on it can still be running. */
int pm_dmapool_new(uint64_t size, unsigned max_order, pm_dmapool **out);
void pm_dmapool_destroy(pm_dmapool *p);
/* Offset of a free block of 2**order bytes, aligned to its size; -ENOMEM if none is free,
 * -E2BIG if order exceeds max_order, -EBADF once closed. */
int64_t pm_dmapool_alloc(pm_dmapool *p, unsigned order);
/* Free the block at `offset` (whose user size was `nbytes`); returns its order, -EINVAL if
 * no block starts there (double or foreign free), -ERANGE if nbytes exceeds that block,
 * -EBADF once closed. */
int pm_dmapool_free(pm_dmapool *p, uint64_t offset, uint64_t nbytes);
/* `count` blocks of 2**order into out[], all or none: 0, -ENOMEM (nothing allocated),
 * -E2BIG, -EBADF. One lock for the lot. */
int64_t pm_dmapool_alloc_many(pm_dmapool *p, unsigned order, uint64_t count, uint64_t *out);
/* Free `count` blocks (user size nbytes each; `orders` is count bytes of scratch), all or
 * none: 0; -EBADF once closed; -EINVAL if offsets[*bad] is no allocated block (double,
 * duplicate or foreign free), -ERANGE if nbytes exceeds that block. */
int64_t pm_dmapool_free_many(pm_dmapool *p, const uint64_t *offsets, uint64_t count,
                             uint64_t nbytes, unsigned char *orders, uint64_t *bad);
/* Refuse further calls; -EBUSY (and stay open) if blocks are outstanding unless `force`. */
int pm_dmapool_close(pm_dmapool *p, int force);
/* out[0] free bytes, out[1] outstanding blocks, out[2] largest free block, out[3] closed. */
void pm_dmapool_stats(pm_dmapool *p, uint64_t *out);

/* cffi:end */
#endif
