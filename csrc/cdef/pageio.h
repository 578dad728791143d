#define PM_BATCH_ENTRIES ...
int64_t pm_pread_u64(int fd, uint64_t index, uint64_t count, uint64_t *buf);
int64_t pm_gather_u64(int fd, const uint64_t *index, const uint64_t *count, size_t nruns,
                      uint64_t *buf);
