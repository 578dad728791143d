/* The userfaultfd server every example writes (man 2 userfaultfd, the kernel selftests):
 * poll, read one event, UFFDIO_COPY the page, repeat. The floor physmem's serve_from is
 * measured against in benchmarks/userfaultfd.py, loaded with ctypes.
 *
 * uffd_ref_start(uffd, src, base, len, page, spin_ns) starts the server on a new thread and
 * returns a handle; uffd_ref_stop(handle) stops it and returns the number of faults it served
 * (or -errno of the first failure). The uffd is non-blocking (physmem opens it so).
 *
 * spin_ns 0 is the textbook server: it sleeps in poll() whenever no event is queued. Above 0
 * it waits as physmem's unpinned server does: after a fault it reads again at once, and with
 * nothing queued it keeps reading (with a pause hint) for up to spin_ns before it sleeps in
 * poll(), so a fault arriving within that time costs no wake-up. Same waiting, textbook work:
 * one event per read. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct ref {
    int uffd, stopfd;
    const char *src;
    uint64_t base, len, page, spin_ns;
    long faults;
    int err;
    pthread_t thread;
};

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One event, served: 1; none queued: 0; a failure: -1 (r->err set). */
static int serve_one(struct ref *r)
{
    struct uffd_msg msg;
    ssize_t n = read(r->uffd, &msg, sizeof msg);
    if (n != sizeof msg) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        r->err = n < 0 ? errno : EIO;
        return -1;
    }
    if (msg.event != UFFD_EVENT_PAGEFAULT)
        return 1;
    uint64_t addr = msg.arg.pagefault.address & ~(r->page - 1);
    struct uffdio_copy copy = {
        .dst = addr, .src = (uint64_t)(uintptr_t)(r->src + (addr - r->base)),
        .len = r->page, .mode = 0};
    if (ioctl(r->uffd, UFFDIO_COPY, &copy) < 0 && errno != EEXIST) {
        r->err = errno;
        return -1;
    }
    r->faults++;
    return 1;
}

static void *serve(void *arg)
{
    struct ref *r = arg;
    struct pollfd fds[2] = {{.fd = r->uffd, .events = POLLIN}, {.fd = r->stopfd, .events = POLLIN}};
    for (;;) {
        if (r->spin_ns) {
            int got;
            while ((got = serve_one(r)) > 0)
                ;
            if (got < 0)
                return NULL;
            uint64_t t0 = now_ns();
            while ((got = serve_one(r)) == 0 && now_ns() - t0 < r->spin_ns)
                cpu_relax();
            if (got < 0)
                return NULL;
            if (got > 0)
                continue;
        }
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            r->err = errno;
            return NULL;
        }
        if (fds[1].revents)
            return NULL;
        if (serve_one(r) < 0)
            return NULL;
    }
}

void *uffd_ref_start(int uffd, const char *src, uint64_t base, uint64_t len, uint64_t page,
                     uint64_t spin_ns)
{
    struct ref *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (struct ref){.uffd = uffd, .stopfd = eventfd(0, EFD_CLOEXEC), .src = src,
                      .base = base, .len = len, .page = page, .spin_ns = spin_ns};
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
