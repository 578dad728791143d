/* A guardian process that puts hugepage pools back if its parent dies mid-allocation.
 *
 * Growing a pool (writing nr_hugepages) is persistent: a process SIGKILLed between growing
 * the pool and shrinking it again leaks the growth for good. The guardian is a forked child
 * that only reads a pipe. The parent "arms" it with (sysfs file, value) records before each
 * pool write and "disarms" it once the pool is settled. If the pipe reaches EOF while armed,
 * the parent is gone (killed, OOM-killed, crashed): the guardian writes every recorded value
 * back and exits. Its child side runs only async-signal-safe calls, so forking a
 * multithreaded process (Python with threads) is safe.
 */
#ifndef PHYSMEM_POOLGUARD_H
#define PHYSMEM_POOLGUARD_H

#include <stdint.h>

#define PM_GUARD_PATH_MAX 240
#define PM_GUARD_RECORDS 16

/* cffi:begin */
/* Fork the guardian. Returns its pid and stores the pipe's write end in *wfd, or -errno. */
int pm_guard_start(int *wfd);
/* Ask the guardian to write `value` into `path` should this process die; -errno on error
 * (-ENAMETOOLONG for a long path). Records beyond PM_GUARD_RECORDS are dropped: arm each
 * pool once, with the value it had before this process first wrote it. */
int pm_guard_arm(int wfd, const char *path, uint64_t value);
/* Tell the guardian all is well and close the socket; it exits at once. The caller reaps
 * it (waitpid): not waiting here keeps the guardian's exit off the caller's path. */
int pm_guard_disarm(int wfd);

/* cffi:end */
#endif
