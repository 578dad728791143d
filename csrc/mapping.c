#include "mapping.h"

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Addresses travel as uint64_t; user space addresses fit in int64_t, so a successful
 * mmap/mremap result is never confused with -errno. */
int64_t pm_mmap(uint64_t addr, uint64_t length, int prot, int flags, int fd, int64_t offset)
{
    void *p = mmap((void *)(uintptr_t)addr, (size_t)length, prot, flags, fd, (off_t)offset);
    if (p == MAP_FAILED)
        return -errno;
    return (int64_t)(uintptr_t)p;
}

int pm_munmap(uint64_t addr, uint64_t length)
{
    return munmap((void *)(uintptr_t)addr, (size_t)length) ? -errno : 0;
}

int64_t pm_mremap(uint64_t old_addr, uint64_t old_length, uint64_t new_length, int flags,
                  uint64_t new_addr)
{
    void *p = mremap((void *)(uintptr_t)old_addr, (size_t)old_length, (size_t)new_length, flags,
                     (void *)(uintptr_t)new_addr);
    if (p == MAP_FAILED)
        return -errno;
    return (int64_t)(uintptr_t)p;
}

int pm_mlock2(uint64_t addr, uint64_t length, unsigned int flags)
{
    /* Through syscall(): mlock2 needs glibc 2.27, the syscall only Linux 4.4. */
    return syscall(SYS_mlock2, (void *)(uintptr_t)addr, (size_t)length, flags) ? -errno : 0;
}

int pm_munlock(uint64_t addr, uint64_t length)
{
    return munlock((void *)(uintptr_t)addr, (size_t)length) ? -errno : 0;
}

int pm_msync(uint64_t addr, uint64_t length, int flags)
{
    return msync((void *)(uintptr_t)addr, (size_t)length, flags) ? -errno : 0;
}

int pm_madvise(uint64_t addr, uint64_t length, int advice)
{
    int ret;
    do {
        ret = madvise((void *)(uintptr_t)addr, (size_t)length, advice);
    } while (ret && errno == EINTR); /* MADV_POPULATE_* and COLLAPSE may be interrupted */
    return ret ? -errno : 0;
}

int pm_mprotect(uint64_t addr, uint64_t length, int prot)
{
    return mprotect((void *)(uintptr_t)addr, (size_t)length, prot) ? -errno : 0;
}

/* Fault in [addr, addr+length) one access per `stride` bytes, without the GIL (cffi drops it
 * around the call), so another thread may serve userfaultfd faults meanwhile. A read touch
 * returns the sum of the bytes read; a write touch adds 0 atomically, which is a write
 * access that keeps the contents. The caller guarantees the range is mapped. */
int64_t pm_touch(uint64_t addr, uint64_t length, uint64_t stride, int write)
{
    if (stride == 0)
        return -EINVAL;
    int64_t sum = 0;
    for (uint64_t off = 0; off < length; off += stride) {
        unsigned char *p = (unsigned char *)(uintptr_t)(addr + off);
        if (write)
            sum += __atomic_fetch_add(p, 0, __ATOMIC_RELAXED);
        else
            sum += *(volatile unsigned char *)p;
    }
    return sum;
}

int pm_memfd_create(const char *name, unsigned int flags)
{
    long fd = syscall(SYS_memfd_create, name, flags);
    return fd < 0 ? -errno : (int)fd;
}

int pm_add_seals(int fd, int seals)
{
    return fcntl(fd, F_ADD_SEALS, seals) ? -errno : 0;
}

int pm_get_seals(int fd)
{
    int seals = fcntl(fd, F_GET_SEALS);
    return seals < 0 ? -errno : seals;
}

int pm_ftruncate(int fd, int64_t length)
{
    return ftruncate(fd, (off_t)length) ? -errno : 0;
}

int pm_fallocate(int fd, int mode, int64_t offset, int64_t length)
{
    return fallocate(fd, mode, (off_t)offset, (off_t)length) ? -errno : 0;
}
