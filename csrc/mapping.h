/* Memory mappings and memfd: mmap/mremap/mlock2/msync/madvise/mprotect, memfd_create with
 * seals, and a GIL-free page toucher. Every function returns -errno on failure. */
#ifndef PHYSMEM_MAPPING_H
#define PHYSMEM_MAPPING_H

#include <stdint.h>
#include <fcntl.h>
#include <sys/mman.h>

/* cffi:begin */
/* cffi:const PROT_NONE PROT_READ PROT_WRITE PROT_EXEC MAP_SHARED MAP_PRIVATE MAP_ANONYMOUS
 * MAP_FIXED MAP_POPULATE MAP_LOCKED MAP_NORESERVE MAP_HUGETLB MS_ASYNC MS_SYNC
 * MS_INVALIDATE MADV_NORMAL MADV_RANDOM MADV_SEQUENTIAL MADV_WILLNEED MADV_DONTNEED
 * MADV_FREE MADV_REMOVE MADV_DONTFORK MADV_DOFORK MADV_MERGEABLE MADV_UNMERGEABLE
 * MADV_HUGEPAGE MADV_NOHUGEPAGE MADV_DONTDUMP MADV_DODUMP */
/* Guarded definitions for constants newer than the installed headers; values are the uapi
 * ABI (include/uapi/asm-generic/mman-common.h, linux/memfd.h, linux/fcntl.h). Support is
 * detected at run time. */
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* 4.17 */
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MREMAP_MAYMOVE
#define MREMAP_MAYMOVE 1
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4 /* 5.7 */
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01 /* 4.4 */
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18 /* 4.14 */
#endif
#ifndef MADV_KEEPONFORK
#define MADV_KEEPONFORK 19 /* 4.14 */
#endif
#ifndef MADV_COLD
#define MADV_COLD 20 /* 5.4 */
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21 /* 5.4 */
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* 5.14 */
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* 5.14 */
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* 5.18 */
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25 /* 6.1 */
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* 6.13 */
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103 /* 6.13 */
#endif
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U /* 4.14 */
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* 6.3 */
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* 6.3 */
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#endif
#ifndef F_SEAL_SEAL
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#define F_SEAL_WRITE 0x0008
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010 /* 5.1 */
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020 /* 6.3 */
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

int64_t pm_mmap(uint64_t addr, uint64_t length, int prot, int flags, int fd, int64_t offset);
int pm_munmap(uint64_t addr, uint64_t length);
int64_t pm_mremap(uint64_t old_addr, uint64_t old_length, uint64_t new_length, int flags,
                  uint64_t new_addr);
int pm_mlock2(uint64_t addr, uint64_t length, unsigned int flags);
int pm_munlock(uint64_t addr, uint64_t length);
int pm_msync(uint64_t addr, uint64_t length, int flags);
int pm_madvise(uint64_t addr, uint64_t length, int advice);
int pm_mprotect(uint64_t addr, uint64_t length, int prot);
int64_t pm_touch(uint64_t addr, uint64_t length, uint64_t stride, int write);

int pm_memfd_create(const char *name, unsigned int flags);
int pm_add_seals(int fd, int seals);
int pm_get_seals(int fd);
int pm_ftruncate(int fd, int64_t length);
int pm_fallocate(int fd, int mode, int64_t offset, int64_t length);

/* cffi:end */
#endif
