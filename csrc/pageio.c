#include "pageio.h"

#include <errno.h>
#include <unistd.h>

/* Read `count` 64-bit entries starting at entry `index` into `buf`.
 * Short reads and EINTR are retried; a read of 0 bytes is end of file.
 * Returns the number of whole entries read (less than count only at end of file),
 * or -errno. */
int64_t pm_pread_u64(int fd, uint64_t index, uint64_t count, uint64_t *buf)
{
    const uint64_t max_index = (uint64_t)INT64_MAX / sizeof(uint64_t);
    if (index > max_index || count > max_index - index)
        return -EOVERFLOW;

    char *dst = (char *)buf;
    uint64_t want = count * sizeof(uint64_t);
    uint64_t done = 0;
    off_t offset = (off_t)(index * sizeof(uint64_t));

    while (done < want) {
        uint64_t chunk = want - done;
        if (chunk > PM_BATCH_ENTRIES * sizeof(uint64_t))
            chunk = PM_BATCH_ENTRIES * sizeof(uint64_t);
        ssize_t got = pread(fd, dst + done, (size_t)chunk, offset + (off_t)done);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0)
            break;
        done += (uint64_t)got;
    }
    return (int64_t)(done / sizeof(uint64_t));
}

/* Read `nruns` runs of entries, run i being count[i] entries from entry index[i], packed
 * one after another into `buf`. Stops at the first run cut short by end of file.
 * Returns the number of entries stored, or -errno. */
int64_t pm_gather_u64(int fd, const uint64_t *index, const uint64_t *count, size_t nruns,
                      uint64_t *buf)
{
    int64_t total = 0;
    for (size_t i = 0; i < nruns; i++) {
        int64_t got = pm_pread_u64(fd, index[i], count[i], buf + total);
        if (got < 0)
            return got;
        total += got;
        if ((uint64_t)got < count[i])
            break;
    }
    return total;
}
