/* A guardian process that puts hugepage pools back if the process it watches dies.
 *
 * Growing a pool (writing nr_hugepages) is persistent: a process SIGKILLed between growing
 * the pool and shrinking it again leaks the growth for good. The guardian is a separate
 * process that only reads a socket. The watched process "arms" it with (token, sysfs file,
 * value) records before each pool write and "clears" a token once that pool is settled.
 * If the socket reaches EOF, the watched process is gone (killed, OOM-killed, crashed):
 * the guardian writes back, for every file, the value of the oldest record still armed,
 * and exits. One guardian serves a process for its whole life (started by exec, so it
 * shares no memory with it); pm_guard_start forks one instead where exec is not possible.
 * Its serving loop runs only async-signal-safe calls, so a forked one is safe too.
 */
#ifndef PHYSMEM_POOLGUARD_H
#define PHYSMEM_POOLGUARD_H

#include <stdint.h>

#define PM_GUARD_PATH_MAX 240
#define PM_GUARD_RECORDS 64

/* cffi:begin */
/* Serve as the guardian on socket `fd` (own session, terminal signals ignored, every other
 * file descriptor closed); sends one byte once ready. Never returns. */
void pm_guard_serve(int fd);
/* Fork a guardian. Returns its pid and stores the socket's write end in *wfd, or -errno. */
int pm_guard_start(int *wfd);
/* Wait for the guardian's ready byte: 0, or -errno (-EPIPE if it exited instead). */
int pm_guard_wait_ready(int wfd);
/* Ask the guardian to write `value` into `path` should this process die; -errno on error
 * (-ENAMETOOLONG for a long path, -ENOSPC beyond PM_GUARD_RECORDS records armed). */
int pm_guard_arm(int wfd, uint32_t token, const char *path, uint64_t value);
/* Forget every record armed under `token`; the guardian keeps serving. */
int pm_guard_clear(int wfd, uint32_t token);

/* cffi:end */
#endif
