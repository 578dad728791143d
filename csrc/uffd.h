/* userfaultfd: open, negotiate, register, resolve faults (copy/zeropage/continue/
 * writeprotect/poison/move), read events, and native fault servers on a pthread that never
 * touches Python. Every function returns -errno on failure. */
#ifndef PHYSMEM_UFFD_H
#define PHYSMEM_UFFD_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

/* Constants and ioctls newer than the installed (6.1) headers; the layouts match
 * include/uapi/linux/userfaultfd.h and support is detected at run time from the ioctl and
 * feature bits UFFDIO_API reports. */
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00) /* /dev/userfaultfd, 6.1 */
#endif
/* cffi:begin */
/* cffi:const UFFD_API UFFD_EVENT_PAGEFAULT UFFD_EVENT_FORK UFFD_EVENT_REMAP
 * UFFD_EVENT_REMOVE UFFD_EVENT_UNMAP UFFD_PAGEFAULT_FLAG_WRITE UFFD_PAGEFAULT_FLAG_WP
 * UFFD_PAGEFAULT_FLAG_MINOR UFFD_FEATURE_PAGEFAULT_FLAG_WP UFFD_FEATURE_EVENT_FORK
 * UFFD_FEATURE_EVENT_REMAP UFFD_FEATURE_EVENT_REMOVE UFFD_FEATURE_MISSING_HUGETLBFS
 * UFFD_FEATURE_MISSING_SHMEM UFFD_FEATURE_EVENT_UNMAP UFFD_FEATURE_SIGBUS
 * UFFD_FEATURE_THREAD_ID UFFD_FEATURE_MINOR_HUGETLBFS UFFD_FEATURE_MINOR_SHMEM
 * UFFDIO_REGISTER_MODE_MISSING UFFDIO_REGISTER_MODE_WP UFFDIO_REGISTER_MODE_MINOR
 * UFFDIO_COPY_MODE_DONTWAKE UFFDIO_COPY_MODE_WP UFFDIO_ZEROPAGE_MODE_DONTWAKE
 * UFFDIO_WRITEPROTECT_MODE_WP UFFDIO_WRITEPROTECT_MODE_DONTWAKE
 * UFFDIO_CONTINUE_MODE_DONTWAKE _UFFDIO_REGISTER _UFFDIO_UNREGISTER _UFFDIO_WAKE
 * _UFFDIO_COPY _UFFDIO_ZEROPAGE _UFFDIO_WRITEPROTECT _UFFDIO_CONTINUE _UFFDIO_API
 * _UFFDIO_MOVE UFFDIO_MOVE_MODE_DONTWAKE UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES _UFFDIO_POISON
 * UFFDIO_POISON_MODE_DONTWAKE */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1 /* 5.11 */
#endif
#ifndef UFFD_FEATURE_EXACT_ADDRESS
#define UFFD_FEATURE_EXACT_ADDRESS (1 << 11) /* 5.18 */
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12) /* 6.0 */
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13) /* 6.4 */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14) /* 6.6 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15) /* 6.7 */
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16) /* 6.8 */
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1) /* 6.4 */
#endif
/* cffi:end */
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05) /* 6.8 */
struct uffdio_move {
    __u64 dst;
    __u64 src;
    __u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
    __u64 mode;
    __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08) /* 6.6 */
struct uffdio_poison {
    struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
    __u64 mode;
    __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

/* cffi:begin */
/* One uffd_msg, flattened. PAGEFAULT: flags, address, ptid. FORK: a = the child's uffd.
 * REMAP: a = from, b = to, c = len. REMOVE/UNMAP: a = start, b = end. */
struct pm_uffd_event {
    uint32_t kind;
    uint32_t ptid;
    uint64_t flags;
    uint64_t address;
    uint64_t a;
    uint64_t b;
    uint64_t c;
};

int pm_uffd_open(int flags, int *via_dev);
int pm_uffd_api(int fd, uint64_t features, uint64_t *features_out, uint64_t *ioctls_out);
int pm_uffd_register(int fd, uint64_t start, uint64_t len, uint64_t mode, uint64_t *ioctls_out);
int pm_uffd_unregister(int fd, uint64_t start, uint64_t len);
int pm_uffd_wake(int fd, uint64_t start, uint64_t len);
int64_t pm_uffd_copy(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode);
int64_t pm_uffd_zeropage(int fd, uint64_t start, uint64_t len, uint64_t mode);
int64_t pm_uffd_continue(int fd, uint64_t start, uint64_t len, uint64_t mode);
int pm_uffd_writeprotect(int fd, uint64_t start, uint64_t len, uint64_t mode);
int64_t pm_uffd_poison(int fd, uint64_t start, uint64_t len, uint64_t mode);
int64_t pm_uffd_move(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode);
int pm_uffd_wait(int fd, int stop_fd, int timeout_ms);
/* pm_uffd_read returns at most this many events per call; a FORK event's uffd (a) is the
 * caller's to close. */
#define PM_UFFD_READ_BATCH 64
int64_t pm_uffd_read(int fd, struct pm_uffd_event *events, uint64_t max_events);
/* Resolve the fault at address (flags: its UFFD_PAGEFAULT_FLAG_*) as if nobody served it,
 * whatever the range's page size or kind: zeros for a missing page, protection lifted, page
 * cache mapped. The fallback when a fill fails, so no fault is left unresolved (uffd.c). */
int64_t pm_uffd_fallback(int fd, uint64_t address, uint64_t flags);

/* Native servers. kind 0: zero pages; kind 1: copy from src[0, src_len) at offset
 * (page - base), zeros past its end. Non-fault events are kept (up to PM_UFFD_KEEP_EVENTS)
 * for pm_uffd_server_events. Placement is decided by the caller: cpu >= 0 pins the thread
 * to that CPU (pm_uffd_server_pin moves it later); notify_fd >= 0 (an eventfd) is written
 * every 1024 faults or, after a sleep, at most every 1 ms, for a policy that follows the
 * faulting thread (stats.last_tid: the last faulter, when the kernel reports thread ids).
 * Unpinned and unfollowed, it spins up to 50 us on the non-blocking read before sleeping. A fault the server cannot fill as asked (the fill fails, whatever the
 * reason) is resolved with zeros by pm_uffd_fallback and counted in errors (and, if the
 * zeros went in, in fallbacks), so no fault is ever left waiting. WP and MINOR faults are
 * answered as if the range were not registered for them (protection lifted, page-cache page
 * mapped) and counted as EOPNOTSUPP errors. On a VM whose idle vCPUs halt, a cross-CPU
 * wake-up per fault costs more than the fault: serving on the faulter's CPU avoids it. */
#define PM_UFFD_SERVE_ZERO 0
#define PM_UFFD_SERVE_FROM 1
#define PM_UFFD_KEEP_EVENTS 1024
struct pm_uffd_server;
struct pm_uffd_server_stats {
    uint64_t faults;
    uint64_t errors;
    uint64_t fallbacks;
    int64_t last_error;
    uint64_t events_dropped;
    uint64_t last_tid;
};
/* Start a server on uffd `fd` and store it in *out: 0 or -errno. The server is the
 * caller's, as are fd, src and notify_fd, which must outlive it; the caller frees it with
 * pm_uffd_server_stop, once. */
int pm_uffd_server_start(int fd, int kind, uint64_t src, uint64_t src_len, uint64_t base,
                         uint64_t page_size, int base_page_zero, int cpu, int notify_fd,
                         struct pm_uffd_server **out);
/* Pin the server thread to cpu: 0 or -errno. */
int pm_uffd_server_pin(struct pm_uffd_server *srv, int cpu);
/* Take up to max_events of the kept events: how many. A FORK event's uffd (a) is the
 * caller's from then on. */
int64_t pm_uffd_server_events(struct pm_uffd_server *srv, struct pm_uffd_event *events,
                              uint64_t max_events);
void pm_uffd_server_stats(struct pm_uffd_server *srv, struct pm_uffd_server_stats *stats);
/* Stop the thread, store the final counts and free the server (closing the uffds of FORK
 * events never taken): 0. -errno if the thread could not be told to stop: then nothing
 * changed, and the server is still running and still the caller's. */
int pm_uffd_server_stop(struct pm_uffd_server *srv, struct pm_uffd_server_stats *stats);

/* cffi:end */
#endif
