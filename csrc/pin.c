/* Long-term pins through io_uring fixed buffers; see pin.h. */
#include "pin.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

int pm_pin_ring(unsigned slots)
{
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    /* One entry: the ring carries no I/O, only the buffer table. */
    long fd = syscall(SYS_io_uring_setup, 1, &params);
    if (fd < 0)
        return -errno;
    struct io_uring_rsrc_register reg;
    memset(&reg, 0, sizeof reg);
    reg.nr = slots;
    reg.flags = IORING_RSRC_REGISTER_SPARSE;
    if (syscall(SYS_io_uring_register, (int)fd, IORING_REGISTER_BUFFERS2, &reg,
                (unsigned)sizeof reg) < 0) {
        int err = errno;
        close((int)fd);
        return -err;
    }
    return (int)fd;
}

static int update_one(int ring, unsigned slot, uint64_t addr, uint64_t len)
{
    struct iovec iov = {len ? (void *)(uintptr_t)addr : NULL, (size_t)len};
    struct io_uring_rsrc_update2 up;
    memset(&up, 0, sizeof up);
    up.offset = slot;
    up.data = (uint64_t)(uintptr_t)&iov;
    up.nr = 1;
    for (;;) {
        long done = syscall(SYS_io_uring_register, ring, IORING_REGISTER_BUFFERS_UPDATE, &up,
                            (unsigned)sizeof up);
        if (done == 1)
            return 0;
        if (done >= 0)
            return -EIO; /* "0 slots updated" without an error: not a kernel we know */
        if (errno != EINTR)
            return -errno;
    }
}

int pm_pin_update(int ring, unsigned first, const uint64_t *addr, const uint64_t *len,
                  unsigned n)
{
    /* Slot by slot: the kernel reports a failure after the first slot only as a short
     * count, without its errno, and a slot is a whole GiB, so a call per slot costs
     * nothing that matters. What this call set before a failure is emptied again. */
    for (unsigned i = 0; i < n; i++) {
        int ret = update_one(ring, first + i, addr[i], len[i]);
        if (ret < 0) {
            for (unsigned j = 0; j < i; j++)
                if (len[j])
                    update_one(ring, first + j, 0, 0);
            return ret;
        }
    }
    return 0;
}
