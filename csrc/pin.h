/* Long-term pins of user memory without a device: io_uring fixed buffers.
 *
 * Registering a buffer with io_uring pins its pages with FOLL_LONGTERM, which is what a
 * device driver's DMA mapping does: the kernel will then neither migrate nor reclaim them
 * (memory offline, compaction, NUMA balancing, move_pages all leave them where they are),
 * and pages that sat in ZONE_MOVABLE or CMA are moved out once, at registration. A ring
 * here is never used for I/O: it holds a sparse table of buffer slots, and each slot pins
 * and unpins on its own (IORING_REGISTER_BUFFERS2 with IORING_RSRC_REGISTER_SPARSE, then
 * IORING_REGISTER_BUFFERS_UPDATE). Every function returns -errno on failure.
 */
#ifndef PHYSMEM_PIN_H
#define PHYSMEM_PIN_H

#include <stdint.h>

/* cffi:begin */
/* The kernel takes at most this many bytes in one registered buffer (io_uring's SZ_1G);
 * larger buffers take several slots. */
#define PM_PIN_MAX_SLOT_BYTES 1073741824
/* Create a ring whose sparse buffer table has `slots` empty slots: the ring's fd (close-on-
 * exec) or -errno. */
int pm_pin_ring(unsigned slots);
/* Set slots [first, first + n): slot first + i pins [addr[i], addr[i] + len[i]), or is
 * emptied (its pages unpinned) where len[i] is 0. One syscall; 0 or -errno, and on error no
 * slot of the call has changed. */
int pm_pin_update(int ring, unsigned first, const uint64_t *addr, const uint64_t *len,
                  unsigned n);
/* cffi:end */
#endif
