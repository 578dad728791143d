#define PM_EMPTY_KEY ...
size_t pm_find_runs(const uint64_t *vpn, uint64_t vpn0, const uint64_t *pfn, uint64_t pfn_mask,
                    const uint64_t *flags, size_t n, uint64_t require, uint64_t split,
                    uint64_t *run_start, uint64_t *run_len);
int64_t pm_count_add(uint64_t *keys, uint64_t *counts, uint64_t capacity, uint64_t *used,
                     const uint64_t *values, const uint64_t *weights, size_t n, size_t *consumed);
int64_t pm_count_pread_u64(int fd, uint64_t start, uint64_t count, uint64_t *keys,
                           uint64_t *counts, uint64_t capacity, uint64_t *used,
                           uint64_t *consumed, int *stop);
