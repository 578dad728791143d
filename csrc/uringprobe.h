/* Whether this process may create an io_uring instance (io_uring_setup(2)): the syscall
 * can be compiled out, disabled by the kernel.io_uring_disabled sysctl (6.6) or refused by
 * a seccomp filter (container runtimes' default profiles). */
#ifndef PHYSMEM_URINGPROBE_H
#define PHYSMEM_URINGPROBE_H

/* cffi:begin */
/* 0 if an io_uring of one entry could be set up (and was closed again), else -errno:
 * -ENOSYS without the syscall (or built against headers older than Linux 5.1), -EPERM
 * when the sysctl or a seccomp filter refuses it. */
int pm_io_uring_probe(void);
/* cffi:end */
#endif
