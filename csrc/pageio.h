/* Bulk reads of files made of 64-bit entries: /proc/<pid>/pagemap, /proc/kpageflags,
 * /proc/kpagecount and /proc/kpagecgroup. */
#ifndef PHYSMEM_PAGEIO_H
#define PHYSMEM_PAGEIO_H

#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
/* Entries per pread, as the kernel's page-types tool batches them: large enough that the
 * syscall cost vanishes, small enough to keep the kernel's bounce buffering short. */
#define PM_BATCH_ENTRIES 65536

int64_t pm_pread_u64(int fd, uint64_t index, uint64_t count, uint64_t *buf);
int64_t pm_gather_u64(int fd, const uint64_t *index, const uint64_t *count, size_t nruns,
                      uint64_t *buf);

/* cffi:end */
#endif
