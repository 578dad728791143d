/* Array kernels over pagemap/kpageflags data: contiguous runs and distinct-value counts. */
#ifndef PHYSMEM_RUNS_H
#define PHYSMEM_RUNS_H

#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
#define PM_EMPTY_KEY UINT64_MAX

size_t pm_find_runs(const uint64_t *pfn, uint64_t pfn_mask, uint64_t step, size_t n,
                    uint64_t require, uint64_t *run_start, uint64_t *run_len);
size_t pm_find_mask_runs(const uint8_t *mask, size_t n, uint64_t *run_start, uint64_t *run_len);
void pm_extend_free_heads(const uint64_t *flags, size_t n, uint64_t first_pfn, uint64_t buddy,
                          unsigned max_order, uint8_t *out);
int64_t pm_count_add(uint64_t *keys, uint64_t *counts, uint64_t capacity, uint64_t *used,
                     const uint64_t *values, const uint64_t *weights, size_t n, size_t *consumed);
int64_t pm_count_pread_u64(int fd, uint64_t start, uint64_t count, uint64_t *keys,
                           uint64_t *counts, uint64_t capacity, uint64_t *used,
                           uint64_t *consumed, int *stop);

/* cffi:end */
#endif
