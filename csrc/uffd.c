#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The syscall first; where the unprivileged syscall is refused (vm.unprivileged_userfaultfd
 * = 0), /dev/userfaultfd (6.1), whose access is governed by its file permissions. */
int pm_uffd_open(int flags, int *via_dev)
{
    *via_dev = 0;
#ifdef SYS_userfaultfd
    long fd = syscall(SYS_userfaultfd, flags);
    if (fd >= 0)
        return (int)fd;
    int err = errno;
    if (err != EPERM && err != ENOSYS)
        return -err;
#else
    int err = ENOSYS;
#endif
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0)
        return -(errno == ENOENT ? err : errno);
    int ufd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    int e2 = errno;
    close(dev);
    if (ufd < 0)
        return -e2;
    *via_dev = 1;
    return ufd;
}

int pm_uffd_api(int fd, uint64_t features, uint64_t *features_out, uint64_t *ioctls_out)
{
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(fd, UFFDIO_API, &api))
        return -errno;
    *features_out = api.features;
    *ioctls_out = api.ioctls;
    return 0;
}

int pm_uffd_register(int fd, uint64_t start, uint64_t len, uint64_t mode, uint64_t *ioctls_out)
{
    struct uffdio_register reg = {.range = {.start = start, .len = len}, .mode = mode};
    if (ioctl(fd, UFFDIO_REGISTER, &reg))
        return -errno;
    *ioctls_out = reg.ioctls;
    return 0;
}

int pm_uffd_unregister(int fd, uint64_t start, uint64_t len)
{
    struct uffdio_range range = {.start = start, .len = len};
    return ioctl(fd, UFFDIO_UNREGISTER, &range) ? -errno : 0;
}

int pm_uffd_wake(int fd, uint64_t start, uint64_t len)
{
    struct uffdio_range range = {.start = start, .len = len};
    return ioctl(fd, UFFDIO_WAKE, &range) ? -errno : 0;
}

/* The resolving ioctls, one argument struct each; all report the bytes done in an __s64. */
union resolve_arg {
    struct uffdio_copy copy;
    struct uffdio_zeropage zeropage;
    struct uffdio_continue cont;
    struct uffdio_poison poison;
    struct uffdio_move move;
};

/* Fill a's member for `request` ([dst, dst + len) from src, or the range [dst, dst + len)
 * for the ioctls without a source); returns where it reports the bytes done. */
static __s64 *fill_arg(union resolve_arg *a, unsigned long request, uint64_t dst,
                       uint64_t src, uint64_t len, uint64_t mode)
{
    memset(a, 0, sizeof(*a));
    switch (request) {
    case UFFDIO_COPY:
        a->copy = (struct uffdio_copy){.dst = dst, .src = src, .len = len, .mode = mode};
        return &a->copy.copy;
    case UFFDIO_MOVE:
        a->move = (struct uffdio_move){.dst = dst, .src = src, .len = len, .mode = mode};
        return &a->move.move;
    case UFFDIO_ZEROPAGE:
        a->zeropage = (struct uffdio_zeropage){.range = {dst, len}, .mode = mode};
        return &a->zeropage.zeropage;
    case UFFDIO_CONTINUE:
        a->cont = (struct uffdio_continue){.range = {dst, len}, .mode = mode};
        return &a->cont.mapped;
    default: /* UFFDIO_POISON */
        a->poison = (struct uffdio_poison){.range = {dst, len}, .mode = mode};
        return &a->poison.updated;
    }
}

/* The resolving ioctls may stop part way (a signal, or a page already present): they report
 * the bytes done. This loop resumes after a partial result and returns the bytes done, or
 * -errno if nothing more could be done (EEXIST, EAGAIN while the address space is
 * changing, ...) with the bytes done so far lost only when zero. */
static int64_t resolve(int fd, unsigned long request, uint64_t dst, uint64_t src, uint64_t len,
                       uint64_t mode)
{
    uint64_t done = 0;
    while (done < len) {
        union resolve_arg arg;
        __s64 *got = fill_arg(&arg, request, dst + done, src + done, len - done, mode);
        int ret = ioctl(fd, request, &arg);
        int err = ret ? errno : 0;
        if (*got > 0)
            done += (uint64_t)*got;
        if (ret && err != EINTR)
            return done ? (int64_t)done : -err;
    }
    return (int64_t)done;
}

int64_t pm_uffd_copy(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode)
{
    return resolve(fd, UFFDIO_COPY, dst, src, len, mode);
}

int64_t pm_uffd_zeropage(int fd, uint64_t start, uint64_t len, uint64_t mode)
{
    return resolve(fd, UFFDIO_ZEROPAGE, start, 0, len, mode);
}

int64_t pm_uffd_continue(int fd, uint64_t start, uint64_t len, uint64_t mode)
{
    return resolve(fd, UFFDIO_CONTINUE, start, 0, len, mode);
}

int64_t pm_uffd_poison(int fd, uint64_t start, uint64_t len, uint64_t mode)
{
    return resolve(fd, UFFDIO_POISON, start, 0, len, mode);
}

int64_t pm_uffd_move(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode)
{
    return resolve(fd, UFFDIO_MOVE, dst, src, len, mode);
}

int pm_uffd_writeprotect(int fd, uint64_t start, uint64_t len, uint64_t mode)
{
    struct uffdio_writeprotect wp = {.range = {.start = start, .len = len}, .mode = mode};
    int ret;
    do {
        ret = ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
    } while (ret && errno == EINTR);
    return ret ? -errno : 0;
}

/* Wait until fd is readable or stop_fd (if >= 0) is. Returns a mask: 1 fd readable,
 * 2 stop requested, 0 on timeout. */
int pm_uffd_wait(int fd, int stop_fd, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = stop_fd, .events = POLLIN}};
    int n = stop_fd >= 0 ? 2 : 1;
    int ret = poll(p, n, timeout_ms);
    if (ret < 0)
        return errno == EINTR ? 0 : -errno;
    int mask = 0;
    if (p[0].revents & (POLLIN | POLLERR | POLLHUP))
        mask |= 1;
    if (n == 2 && p[1].revents)
        mask |= 2;
    return mask;
}

static void flatten(const struct uffd_msg *m, struct pm_uffd_event *e)
{
    memset(e, 0, sizeof(*e));
    e->kind = m->event;
    switch (m->event) {
    case UFFD_EVENT_PAGEFAULT:
        e->flags = m->arg.pagefault.flags;
        e->address = m->arg.pagefault.address;
        e->ptid = m->arg.pagefault.feat.ptid;
        break;
    case UFFD_EVENT_FORK:
        e->a = m->arg.fork.ufd;
        break;
    case UFFD_EVENT_REMAP:
        e->a = m->arg.remap.from;
        e->b = m->arg.remap.to;
        e->c = m->arg.remap.len;
        break;
    case UFFD_EVENT_REMOVE:
    case UFFD_EVENT_UNMAP:
        e->a = m->arg.remove.start;
        e->b = m->arg.remove.end;
        break;
    }
}

#define READ_BATCH PM_UFFD_READ_BATCH

/* Read up to max_events messages. Returns the number read (0 if none is pending on a
 * non-blocking fd) or -errno. */
int64_t pm_uffd_read(int fd, struct pm_uffd_event *events, uint64_t max_events)
{
    struct uffd_msg msgs[READ_BATCH];
    uint64_t want = max_events < READ_BATCH ? max_events : READ_BATCH;
    ssize_t got;
    do {
        got = read(fd, msgs, want * sizeof(msgs[0]));
    } while (got < 0 && errno == EINTR);
    if (got < 0)
        return errno == EAGAIN ? 0 : -errno;
    int64_t n = got / (ssize_t)sizeof(msgs[0]);
    for (int64_t i = 0; i < n; i++)
        flatten(&msgs[i], &events[i]);
    return n;
}

/* ---- resolving a fault whatever the range ------------------------------------------ */

/* A read-only private anonymous mapping reads as zeros without allocating memory (and, being
 * read-only, is not charged to the commit limit): the source of zero-filled huge pages, which
 * UFFDIO_ZEROPAGE does not support. As large as the largest huge page (16 GiB on arm64 with
 * 64 KiB pages), smaller if the address space limit refuses that. */
static const unsigned char *zero_src;
static uint64_t zero_len;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_src_init(void)
{
    for (uint64_t len = sizeof(void *) >= 8 ? (uint64_t)1 << 34 : (uint64_t)1 << 30;
         len >= ((uint64_t)2 << 20); len >>= 1) {
        void *p = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (p != MAP_FAILED) {
            zero_src = p;
            zero_len = len;
            return;
        }
    }
}

/* What a fallback does over [start, start + ps): bytes resolved or -errno. */
enum fallback_op { FILL_ZEROS, UNPROTECT, MAP_CACHED };

static int64_t fallback_once(int fd, enum fallback_op op, uint64_t start, uint64_t ps)
{
    switch (op) {
    case UNPROTECT: {
        int r = pm_uffd_writeprotect(fd, start, ps, 0);
        return r ? r : (int64_t)ps;
    }
    case MAP_CACHED:
        return pm_uffd_continue(fd, start, ps, 0);
    default:
        return pm_uffd_copy(fd, start, (uint64_t)(uintptr_t)zero_src, ps, 0);
    }
}

#define FALLBACK_MAX_PAGE ((uint64_t)1 << 34) /* 16 GiB: the largest huge page of any arch */

/* Resolve the fault at address as if nobody served it, whatever kind of range holds it and
 * whatever its page size: a MISSING fault with zeros (UFFDIO_ZEROPAGE of the base page for
 * anonymous memory and shmem, else - hugetlb refuses it with EINVAL - UFFDIO_COPY of zeros), a
 * write-protect fault by lifting the protection, a minor fault by mapping the page-cache page
 * as it is (UFFDIO_CONTINUE). The page size is found by trying each power of two from the base
 * page up: the ioctls refuse (EINVAL) a range not aligned to the range's page size, so the
 * first that succeeds is it. A page already present (EEXIST) is woken. If nothing works the
 * faulting thread is woken anyway: it retries the access and either finds the page or faults
 * again, so it is never left waiting for an answer that will not come. Returns the bytes
 * resolved, -EAGAIN if the address space is changing (retry after reading the pending
 * events), or the first error. */
int64_t pm_uffd_fallback(int fd, uint64_t address, uint64_t flags)
{
    uint64_t base = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t page = address & ~(base - 1);
    uint64_t top = FALLBACK_MAX_PAGE;
    enum fallback_op op = FILL_ZEROS;
    int64_t r = -EINVAL;
    if (flags & UFFD_PAGEFAULT_FLAG_WP) {
        op = UNPROTECT;
    } else if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
        op = MAP_CACHED;
    } else {
        r = pm_uffd_zeropage(fd, page, base, 0);
        if (r == -EEXIST)
            return pm_uffd_wake(fd, page, base) ? r : (int64_t)base;
        if (r >= (int64_t)base || r == -EAGAIN)
            return r;
        pthread_once(&zero_once, zero_src_init);
        top = zero_src ? zero_len : 0;
        base <<= 1; /* the base page was just tried */
    }
    int64_t first = op == FILL_ZEROS ? (r < 0 ? r : -EIO) : 0;
    for (uint64_t ps = base; r == -EINVAL && ps <= top; ps <<= 1) {
        uint64_t start = address & ~(ps - 1);
        r = fallback_once(fd, op, start, ps);
        if (r == -EEXIST)
            return pm_uffd_wake(fd, start, ps) ? r : (int64_t)ps;
        if (r == (int64_t)ps || r == -EAGAIN)
            return r;
        if (!first)
            first = r < 0 ? r : -EIO;
    }
    pm_uffd_wake(fd, page, (uint64_t)sysconf(_SC_PAGESIZE));
    return first ? first : -EINVAL;
}

/* ---- native servers ---------------------------------------------------------------- */

struct pm_uffd_server {
    pthread_t thread;
    int fd;
    int stop_fd;
    int kind;
    const unsigned char *src;
    uint64_t src_len;
    uint64_t base;
    uint64_t page_size;
    int use_zeropage;
    int spin; /* unpinned only: a pinned server shares its CPU with the faulter */
    int notify_fd;    /* >= 0: eventfd that asks the placement policy (Python) to look again */
    uint64_t notified_ns;
    uint64_t notified_faults;
    uint32_t last_tid; /* the last faulter's thread id, when the kernel reports it */
    unsigned char *bounce; /* page_size bytes: zero page, or the padded tail of src */
    pthread_mutex_t lock;  /* guards the kept events */
    struct pm_uffd_event kept[PM_UFFD_KEEP_EVENTS];
    uint64_t nkept;
    uint64_t dropped;
    uint64_t faults;
    uint64_t errors;
    uint64_t fallbacks;
    int64_t last_error;
};

static int64_t serve_page(struct pm_uffd_server *s, uint64_t page)
{
    if (s->kind == PM_UFFD_SERVE_ZERO) {
        if (s->use_zeropage)
            return pm_uffd_zeropage(s->fd, page, s->page_size, 0);
        return pm_uffd_copy(s->fd, page, (uint64_t)(uintptr_t)s->bounce, s->page_size, 0);
    }
    uint64_t off = page - s->base;
    if (page >= s->base && off < s->src_len && s->src_len - off >= s->page_size)
        return pm_uffd_copy(s->fd, page, (uint64_t)(uintptr_t)(s->src + off), s->page_size, 0);
    memset(s->bounce, 0, s->page_size);
    if (page >= s->base && off < s->src_len)
        memcpy(s->bounce, s->src + off, s->src_len - off);
    else if (s->use_zeropage)
        return pm_uffd_zeropage(s->fd, page, s->page_size, 0);
    return pm_uffd_copy(s->fd, page, (uint64_t)(uintptr_t)s->bounce, s->page_size, 0);
}

static void keep_event(struct pm_uffd_server *s, const struct pm_uffd_event *e)
{
    pthread_mutex_lock(&s->lock);
    if (s->nkept < PM_UFFD_KEEP_EVENTS) {
        s->kept[s->nkept++] = *e;
    } else {
        __atomic_add_fetch(&s->dropped, 1, __ATOMIC_RELAXED);
        if (e->kind == UFFD_EVENT_FORK)
            close((int)e->a); /* nobody will collect it: do not leak the child's uffd */
    }
    pthread_mutex_unlock(&s->lock);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A spin-wait hint: it yields the core to a sibling hardware thread (or, on a VM, tells the
 * hypervisor the vCPU is only waiting). Architectures without one get a compiler barrier,
 * which keeps the loop correct, only less polite. */
#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#elif defined(__powerpc64__)
#define cpu_relax() __asm__ __volatile__("or 27,27,27" ::: "memory")
#elif defined(__riscv)
/* Zihintpause "pause", spelled as its encoding for assemblers without the extension; it is a
 * FENCE hint that CPUs without Zihintpause execute as a no-op. */
#define cpu_relax() __asm__ __volatile__(".4byte 0x0100000f" ::: "memory")
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

/* Unpinned only: spin on the non-blocking read this long before sleeping in poll(), so a
 * fault that arrives within it is served without a wake-up of the server. Bounded so an idle
 * server costs at most 50 us of CPU after its last fault. */
#define SPIN_NS 50000

/* Following: ask the placement policy to look at the faulting thread's CPU again after this
 * many faults or, after a sleep, at most this often. */
#define NOTIFY_EVERY_FAULTS 1024
#define NOTIFY_EVERY_NS 1000000

/* Tell the placement policy (physmem.userfaultfd, on its own thread) that it is time to look
 * where the faulter runs and re-pin this server (pm_uffd_server_pin). Which CPU to follow is
 * the policy's business; this only keeps the cadence, so a busy server asks at most once per
 * 1024 faults and an idle one never. */
static void notify(struct pm_uffd_server *s)
{
    uint64_t now = now_ns();
    if (s->faults - s->notified_faults < NOTIFY_EVERY_FAULTS &&
        now - s->notified_ns < NOTIFY_EVERY_NS)
        return;
    s->notified_ns = now;
    s->notified_faults = s->faults;
    uint64_t one = 1;
    if (write(s->notify_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is full, the policy has plenty to read already */
    }
}

static void count_error(struct pm_uffd_server *s, int64_t err)
{
    s->last_error = err;
    __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
}

/* Serve the fault at address; 0 if it must be retried later (EAGAIN while the mm was
 * changing). A fill that fails (or covers less than the page: part of it was present) is an
 * error, counted, and the fault is resolved with zeros instead, so that no argument or race
 * can leave the faulting thread waiting. */
static int serve_fault(struct pm_uffd_server *s, uint64_t address)
{
    uint64_t page = address & ~(s->page_size - 1);
    int64_t r = serve_page(s, page);
    if (r == -EAGAIN)
        return 0;
    if (r == -EEXIST) /* raced with another fault on the same page */
        r = pm_uffd_wake(s->fd, page, s->page_size);
    else if (r >= 0 && (uint64_t)r < s->page_size)
        r = -EEXIST;
    if (r >= 0) {
        __atomic_add_fetch(&s->faults, 1, __ATOMIC_RELAXED);
        return 1;
    }
    int64_t z = pm_uffd_fallback(s->fd, address, 0);
    if (z == -EAGAIN)
        return 0;
    count_error(s, r);
    if (z > 0)
        __atomic_add_fetch(&s->fallbacks, 1, __ATOMIC_RELAXED);
    return 1;
}

/* A write-protect or minor fault: the native servers fill missing pages only (Python refuses
 * to start one on a range registered for more). Answer it as if the range were not registered
 * for it (pm_uffd_fallback), so its thread is not left waiting or faulting again forever.
 * Counted as an error (EOPNOTSUPP). */
static void serve_other(struct pm_uffd_server *s, const struct pm_uffd_event *e)
{
    pm_uffd_fallback(s->fd, e->address, e->flags);
    count_error(s, -EOPNOTSUPP);
}

static void *server_main(void *arg)
{
    struct pm_uffd_server *s = arg;
    struct pm_uffd_event ev[READ_BATCH];
    uint64_t pending[READ_BATCH]; /* faults refused with EAGAIN while the mm was changing */
    int npending = 0;
    int readable = 1; /* faults may be queued before the first poll() */
    for (;;) {
        int64_t n = readable ? pm_uffd_read(s->fd, ev, READ_BATCH) : 0;
        if (n < 0) {
            count_error(s, n);
            n = 0;
        }
    got:
        for (int64_t i = 0; i < n; i++) {
            if (ev[i].kind != UFFD_EVENT_PAGEFAULT) {
                keep_event(s, &ev[i]);
                continue;
            }
            if (ev[i].ptid)
                __atomic_store_n(&s->last_tid, ev[i].ptid, __ATOMIC_RELAXED);
            if (ev[i].flags & (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR)) {
                serve_other(s, &ev[i]);
                continue;
            }
            if (!serve_fault(s, ev[i].address)) {
                if (npending < READ_BATCH)
                    pending[npending++] = ev[i].address;
                else /* no room to remember it: the thread retries and faults again */
                    pm_uffd_wake(s->fd, ev[i].address & ~(s->page_size - 1), s->page_size);
            }
        }
        if (n > 0 && s->notify_fd >= 0)
            notify(s);
        /* Unpinned, a full batch means more may be queued: read again at once. Pinned, the
         * faulter just woken shares this CPU and cannot fault again until we sleep, so a
         * read now would only find nothing: go straight to poll(). */
        if (n == READ_BATCH || (n > 0 && s->spin)) {
            readable = 1;
            continue;
        }
        /* Retry faults deferred by EAGAIN (the event that changed the mm has been read by
         * now). */
        int still = 0;
        for (int i = 0; i < npending; i++)
            if (!serve_fault(s, pending[i]))
                pending[still++] = pending[i];
        npending = still;
        if (s->spin) {
            /* The read itself is the probe: a fault that arrives while spinning costs no
             * extra syscall. */
            uint64_t t0 = now_ns();
            do {
                n = pm_uffd_read(s->fd, ev, READ_BATCH);
                if (n > 0)
                    goto got;
                cpu_relax();
            } while (n == 0 && now_ns() - t0 < SPIN_NS);
        }
        int mask = pm_uffd_wait(s->fd, s->stop_fd, npending ? 1 : -1);
        if (mask > 0 && (mask & 2))
            break;
        readable = 1;
        if (s->notify_fd >= 0)
            notify(s);
    }
    return NULL;
}

int pm_uffd_server_start(int fd, int kind, uint64_t src, uint64_t src_len, uint64_t base,
                         uint64_t page_size, int base_page_zero, int cpu, int notify_fd,
                         struct pm_uffd_server **out)
{
    if (page_size == 0 || (page_size & (page_size - 1)))
        return -EINVAL;
    struct pm_uffd_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->fd = fd;
    s->kind = kind;
    s->src = (const unsigned char *)(uintptr_t)src;
    s->src_len = src_len;
    s->base = base;
    s->page_size = page_size;
    s->use_zeropage = base_page_zero;
    s->notify_fd = notify_fd;
    s->notified_ns = now_ns();
    s->spin = cpu < 0 && notify_fd < 0;
    size_t base_page = (size_t)sysconf(_SC_PAGESIZE); /* 4, 16 or 64 KiB */
    s->bounce = aligned_alloc(base_page, page_size < base_page ? base_page : page_size);
    s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!s->bounce || s->stop_fd < 0) {
        int err = s->bounce ? errno : ENOMEM;
        if (s->stop_fd >= 0)
            close(s->stop_fd);
        free(s->bounce);
        free(s);
        return -err;
    }
    memset(s->bounce, 0, page_size);
    pthread_mutex_init(&s->lock, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (cpu >= 0 && cpu < CPU_SETSIZE) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
    }
    int err = pthread_create(&s->thread, &attr, server_main, s);
    pthread_attr_destroy(&attr);
    if (err) {
        close(s->stop_fd);
        free(s->bounce);
        free(s);
        return -err;
    }
    pthread_setname_np(s->thread, "physmem-uffd"); /* findable in /proc, top, perf */
    *out = s;
    return 0;
}

int64_t pm_uffd_server_events(struct pm_uffd_server *s, struct pm_uffd_event *events,
                              uint64_t max_events)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->nkept < max_events ? s->nkept : max_events;
    memcpy(events, s->kept, n * sizeof(*events));
    memmove(s->kept, s->kept + n, (s->nkept - n) * sizeof(*events));
    s->nkept -= n;
    pthread_mutex_unlock(&s->lock);
    return (int64_t)n;
}

void pm_uffd_server_stats(struct pm_uffd_server *s, struct pm_uffd_server_stats *st)
{
    st->faults = __atomic_load_n(&s->faults, __ATOMIC_RELAXED);
    st->errors = __atomic_load_n(&s->errors, __ATOMIC_RELAXED);
    st->fallbacks = __atomic_load_n(&s->fallbacks, __ATOMIC_RELAXED);
    st->last_error = s->last_error;
    st->events_dropped = __atomic_load_n(&s->dropped, __ATOMIC_RELAXED);
    st->last_tid = __atomic_load_n(&s->last_tid, __ATOMIC_RELAXED);
}

int pm_uffd_server_pin(struct pm_uffd_server *s, int cpu)
{
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return -EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(s->thread, sizeof(set), &set);
}

int pm_uffd_server_stop(struct pm_uffd_server *s, struct pm_uffd_server_stats *st)
{
    uint64_t one = 1;
    if (write(s->stop_fd, &one, sizeof(one)) != sizeof(one))
        return -errno;
    pthread_join(s->thread, NULL);
    pm_uffd_server_stats(s, st);
    for (uint64_t i = 0; i < s->nkept; i++)
        if (s->kept[i].kind == UFFD_EVENT_FORK)
            close((int)s->kept[i].a);
    close(s->stop_fd);
    pthread_mutex_destroy(&s->lock);
    free(s->bounce);
    free(s);
    return 0;
}
