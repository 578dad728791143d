/* Pool claims and the guardian that settles them if the process that made them dies.
 *
 * Growing a hugepage pool (nr_hugepages) or its overcommit ceiling (nr_overcommit_hugepages)
 * is system state that outlives the process. Every such change physmem makes is first
 * written as a claim into the process's claim file (under /run/physmem/claims, flock'ed by
 * the process for its whole life), under the system-wide pool lock:
 *   - PENDING, before the sysfs write: the file's value `before` and the `delta` already
 *     confirmed; if the process dies now, the value to restore is `before - delta`.
 *   - HELD, after it: `delta` is what this process added; undoing it is relative
 *     (the current value less `delta`), so changes of several processes compose.
 * A claim file whose lock can be taken belongs to a dead process: whoever takes the pool
 * lock next undoes its claims (pm_claims_undo). The guardian, a separate process holding
 * the same claim file open (so its lock stays taken while either lives), does that at once
 * when the socket to its process reaches EOF. It is double-forked, so it is nobody's child.
 *
 * For nr_hugepages, "less delta" applies to the persistent pages (nr - surplus): the kernel
 * is first given the current total (which turns surplus pages into persistent ones), then
 * the target. Writing the target alone while surplus pages are in use makes the kernel count
 * free pages as surplus ones, which it then never frees.
 */
#ifndef PHYSMEM_POOLGUARD_H
#define PHYSMEM_POOLGUARD_H

#include <stdint.h>

/* cffi:begin */
#define PM_CLAIM_PATH_MAX 224
#define PM_CLAIM_FREE 0
#define PM_CLAIM_PENDING 1
#define PM_CLAIM_HELD 2
#define PM_CLAIM_TOTAL 1   /* path is a pool's nr_hugepages: delta counts persistent pages */
#define PM_CLAIM_CEILING 2 /* path is a pool's nr_overcommit_hugepages */
/* One claim: 256 bytes, so a record never straddles a page of the file and a process
 * killed mid-write leaves it whole or untouched. */
struct pm_claim {
    char path[PM_CLAIM_PATH_MAX];
    int64_t delta;
    int64_t before;
    uint32_t state;
    uint32_t kind;
    uint64_t spare;
};
/* Undo every claim of claim file `fd`, newest first, then empty the file. The caller holds
 * the pool lock. 0, or the first -errno met (the other claims are still undone). */
int pm_claims_undo(int fd);
/* Undo one claim (as pm_claims_undo does for each): 0 or -errno. */
int pm_claim_undo(const struct pm_claim *claim);
/* Serve as the guardian: wait for EOF on socket `sock`, then take the pool lock at
 * `lock_path`, undo claim file `claim_fd` and unlink `claim_path`. Its own session,
 * terminal signals ignored, every other fd closed (without close_range(2), Linux 5.9: every
 * other fd below 4096); sends its ready message first (see pm_guard_wait_ready). Both paths
 * are shorter than PM_CLAIM_PATH_MAX bytes, or it exits at once without a ready message.
 * Never returns. */
void pm_guard_serve(int sock, int claim_fd, const char *lock_path, const char *claim_path);
/* Start a guardian by double fork (where exec is not possible). Stores this end of the
 * socket in *sock, the caller's to close (which tells the guardian to settle the claims);
 * 0 or -errno: -ENAMETOOLONG for a path of PM_CLAIM_PATH_MAX bytes or more. */
int pm_guard_start(int claim_fd, const char *lock_path, const char *claim_path, int *sock);
/* Wait for the guardian's ready message: its pid, or -errno (-EPIPE if it exited). */
int pm_guard_wait_ready(int sock);
/* 1 if the guardian at the other end of `sock` is gone, 0 if it is alive, or -errno. */
int pm_guard_gone(int sock);
/* cffi:end */
#endif
