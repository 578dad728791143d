#include "uringprobe.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#define PM_HAVE_IO_URING_H 1
#endif
#endif

int pm_io_uring_probe(void)
{
#if defined(PM_HAVE_IO_URING_H) && defined(__NR_io_uring_setup)
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 1, &params);
    if (fd < 0)
        return -errno;
    close((int)fd);
    return 0;
#else
    return -ENOSYS;
#endif
}
