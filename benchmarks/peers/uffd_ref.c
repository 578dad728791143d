/* The userfaultfd server every example writes (man 2 userfaultfd, the kernel selftests):
 * poll, read one event, UFFDIO_COPY the page, repeat. The floor physmem's serve_from is
 * measured against in benchmarks/userfaultfd.py, loaded with ctypes.
 *
 * uffd_ref_start(uffd, src, base, len, page) starts the server on a new thread and returns a
 * handle; uffd_ref_stop(handle) stops it and returns the number of faults it served (or
 * -errno of the first failure). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct ref {
    int uffd, stopfd;
    const char *src;
    uint64_t base, len, page;
    long faults;
    int err;
    pthread_t thread;
};

static void *serve(void *arg)
{
    struct ref *r = arg;
    struct pollfd fds[2] = {{.fd = r->uffd, .events = POLLIN}, {.fd = r->stopfd, .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            r->err = errno;
            return NULL;
        }
        if (fds[1].revents)
            return NULL;
        struct uffd_msg msg;
        ssize_t n = read(r->uffd, &msg, sizeof msg);
        if (n != sizeof msg) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            r->err = n < 0 ? errno : EIO;
            return NULL;
        }
        if (msg.event != UFFD_EVENT_PAGEFAULT)
            continue;
        uint64_t addr = msg.arg.pagefault.address & ~(r->page - 1);
        struct uffdio_copy copy = {
            .dst = addr, .src = (uint64_t)(uintptr_t)(r->src + (addr - r->base)),
            .len = r->page, .mode = 0};
        if (ioctl(r->uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST) {
            r->err = errno;
            return NULL;
        }
        r->faults++;
    }
}

void *uffd_ref_start(int uffd, const char *src, uint64_t base, uint64_t len, uint64_t page)
{
    struct ref *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (struct ref){.uffd = uffd, .stopfd = eventfd(0, EFD_CLOEXEC), .src = src,
                      .base = base, .len = len, .page = page};
    if (r->stopfd < 0 || pthread_create(&r->thread, NULL, serve, r)) {
        if (r->stopfd >= 0)
            close(r->stopfd);
        free(r);
        return NULL;
    }
    return r;
}

long uffd_ref_stop(void *handle)
{
    struct ref *r = handle;
    uint64_t one = 1;
    if (write(r->stopfd, &one, sizeof one) != sizeof one)
        return -errno;
    pthread_join(r->thread, NULL);
    close(r->stopfd);
    long out = r->err ? -r->err : r->faults;
    free(r);
    return out;
}
