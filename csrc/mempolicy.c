#include "mempolicy.h"

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

/* mbind and set_mempolicy read maxnode - 1 bits (a historical off by one the man pages
 * document); get_mempolicy writes maxnode bits. */
int pm_mbind(uint64_t addr, uint64_t len, int mode, const uint64_t *mask, uint64_t nbits,
             unsigned int flags)
{
    long ret = syscall(SYS_mbind, (unsigned long)addr, (unsigned long)len, (unsigned long)mode,
                       mask, mask ? (unsigned long)nbits + 1 : 0UL, (unsigned long)flags);
    return ret ? -errno : 0;
}

int pm_set_mempolicy(int mode, const uint64_t *mask, uint64_t nbits)
{
    long ret = syscall(SYS_set_mempolicy, mode, mask, mask ? (unsigned long)nbits + 1 : 0UL);
    return ret ? -errno : 0;
}

int pm_get_mempolicy(int *mode, uint64_t *mask, uint64_t nbits, uint64_t addr,
                     unsigned int flags)
{
    long ret = syscall(SYS_get_mempolicy, mode, mask, mask ? (unsigned long)nbits : 0UL,
                       (unsigned long)addr, (unsigned long)flags);
    return ret ? -errno : 0;
}

/* nodes == NULL queries: status[i] becomes the node of pages[i] or -errno for that page. */
int pm_move_pages(int pid, uint64_t count, const void *const *pages, const int *nodes,
                  int *status, int flags)
{
    long ret = syscall(SYS_move_pages, pid, (unsigned long)count, pages, nodes, status, flags);
    return ret < 0 ? -errno : (int)ret;
}
