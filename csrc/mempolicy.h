/* NUMA memory policy and page placement through the raw syscalls (no libnuma):
 * mbind, set_mempolicy, get_mempolicy, move_pages. Every function returns -errno on
 * failure. Node masks are arrays of 64-bit words holding `nbits` bits. */
#ifndef PHYSMEM_MEMPOLICY_H
#define PHYSMEM_MEMPOLICY_H

#include <stdint.h>
#include <linux/mempolicy.h>

/* cffi:begin */
/* cffi:const MPOL_DEFAULT MPOL_PREFERRED MPOL_BIND MPOL_INTERLEAVE MPOL_LOCAL
 * MPOL_PREFERRED_MANY MPOL_F_STATIC_NODES MPOL_F_RELATIVE_NODES MPOL_F_NODE MPOL_F_ADDR
 * MPOL_F_MEMS_ALLOWED MPOL_MF_STRICT MPOL_MF_MOVE MPOL_MF_MOVE_ALL */
/* The modes are an enum in the uapi header, so a newer mode cannot be #ifndef-guarded;
 * MPOL_WEIGHTED_INTERLEAVE (6.9) follows MPOL_PREFERRED_MANY, as in
 * include/uapi/linux/mempolicy.h. Kernels without it answer EINVAL. */
#define PM_MPOL_WEIGHTED_INTERLEAVE (MPOL_PREFERRED_MANY + 1)
#ifndef MPOL_F_NUMA_BALANCING
#define MPOL_F_NUMA_BALANCING (1 << 13) /* 5.12 */
#endif

int pm_mbind(uint64_t addr, uint64_t len, int mode, const uint64_t *mask, uint64_t nbits,
             unsigned int flags);
int pm_set_mempolicy(int mode, const uint64_t *mask, uint64_t nbits);
int pm_get_mempolicy(int *mode, uint64_t *mask, uint64_t nbits, uint64_t addr,
                     unsigned int flags);
/* `pages` is what the kernel reads: an array of `count` user pointers (on the 64-bit ABIs
 * physmem builds for, the same words as uint64_t addresses). */
int pm_move_pages(int pid, uint64_t count, const void *const *pages, const int *nodes,
                  int *status, int flags);

/* cffi:end */
#endif
