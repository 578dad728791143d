/* Pool claims and their guardian; see poolguard.h. Everything the guardian runs after a
 * fork is async-signal-safe (no malloc, no stdio), so a forked guardian is safe too. */
#include "poolguard.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(struct pm_claim) == 256, "a claim never straddles a page of the file");

#define NR "/nr_hugepages"
#define OVERCOMMIT "/nr_overcommit_hugepages"
#define SURPLUS "/surplus_hugepages"
#define FREE "/free_hugepages"
#define RESV "/resv_hugepages"
#define SETTLE_ROUNDS 20

static int ends_with(const char *s, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    return n >= t && memcmp(s + n - t, tail, t) == 0;
}

static int read_count(const char *path, int64_t *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    char buf[32];
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : 0;
    close(fd);
    if (n < 0)
        return -err;
    int64_t v = 0;
    ssize_t i = 0;
    if (i == n || buf[i] < '0' || buf[i] > '9')
        return -EPROTO;
    for (; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
        v = v * 10 + (buf[i] - '0');
    *out = v;
    return 0;
}

static int write_count(const char *path, int64_t value)
{
    char digits[24], text[24];
    int n = 0;
    uint64_t v = value < 0 ? 0 : (uint64_t)value;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        text[i] = digits[n - 1 - i];
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    ssize_t w;
    do
        w = write(fd, text, (size_t)n);
    while (w < 0 && errno == EINTR);
    int err = w < 0 ? errno : 0;
    close(fd);
    return w < 0 ? -err : 0;
}

static void sibling(char *out, const char *path, size_t dir, const char *name)
{
    memcpy(out, path, dir);
    memcpy(out + dir, name, strlen(name) + 1);
}

/* The current total first: surplus pages become persistent, so that the target then
 * removes free pages only and turns pages in use (beyond it) back into surplus. */
static int shrink_to(const char *nr_path, int64_t total, int64_t surplus, int64_t target)
{
    int ret;
    if (surplus > 0 && (ret = write_count(nr_path, total)) < 0)
        return ret;
    return write_count(nr_path, target);
}

/* The kernel fixes the pages a shrink keeps (those in use and reserved) before it frees
 * any, and counts as surplus what it kept beyond the target. A page freed meanwhile (by a
 * process that just died and whose files are closing, the very case a guardian is for) is
 * then a free page counted as surplus, which the kernel never frees. Such pages (surplus
 * beyond the pages in use and reserved) are found and the shrink repeated, after a moment
 * for frees in flight, until none is left. A node's directory has no resv_hugepages: there
 * reserved free pages read as stuck too, and the repeats are harmless (a shrink keeps
 * reserved pages). */
static int settle(const char *nr_path, size_t dir, int64_t target)
{
    char path[PM_CLAIM_PATH_MAX + sizeof SURPLUS];
    for (int round = 0; round < SETTLE_ROUNDS; round++) {
        int64_t total, free_pages, surplus, reserved = 0;
        int ret;
        if ((ret = read_count(nr_path, &total)) < 0)
            return ret;
        sibling(path, nr_path, dir, FREE);
        if ((ret = read_count(path, &free_pages)) < 0)
            return ret;
        sibling(path, nr_path, dir, SURPLUS);
        if ((ret = read_count(path, &surplus)) < 0)
            return ret;
        sibling(path, nr_path, dir, RESV);
        if ((ret = read_count(path, &reserved)) < 0 && ret != -ENOENT)
            return ret;
        if (surplus - (total - free_pages) - reserved <= 0)
            return 0;
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
        sibling(path, nr_path, dir, SURPLUS);
        if ((ret = read_count(nr_path, &total)) < 0 || (ret = read_count(path, &surplus)) < 0
            || (ret = shrink_to(nr_path, total, surplus, target)) < 0)
            return ret;
    }
    return 0;
}

int pm_claim_undo(const struct pm_claim *c)
{
    size_t len = strnlen(c->path, PM_CLAIM_PATH_MAX);
    if (c->state == PM_CLAIM_FREE)
        return 0;
    /* Only the two pool files, by an absolute path that cannot climb out of its tree. */
    if (len == 0 || len == PM_CLAIM_PATH_MAX || c->path[0] != '/' || strstr(c->path, "/../")
        || (c->state != PM_CLAIM_PENDING && c->state != PM_CLAIM_HELD))
        return -EINVAL;
    int64_t now, surplus, target;
    int ret;
    if (c->kind == PM_CLAIM_CEILING && ends_with(c->path, len, OVERCOMMIT)) {
        if ((ret = read_count(c->path, &now)) < 0)
            return ret;
        target = (c->state == PM_CLAIM_PENDING ? c->before : now) - c->delta;
        return write_count(c->path, target < 0 ? 0 : target);
    }
    if (c->kind != PM_CLAIM_TOTAL || !ends_with(c->path, len, NR))
        return -EINVAL;
    char surplus_path[PM_CLAIM_PATH_MAX + sizeof SURPLUS];
    size_t dir = len - strlen(NR);
    sibling(surplus_path, c->path, dir, SURPLUS);
    if ((ret = read_count(c->path, &now)) < 0 || (ret = read_count(surplus_path, &surplus)) < 0)
        return ret;
    target = (c->state == PM_CLAIM_PENDING ? c->before : now - surplus) - c->delta;
    if (target < 0)
        target = 0;
    if ((ret = shrink_to(c->path, now, surplus, target)) < 0)
        return ret;
    return settle(c->path, dir, target);
}

int pm_claims_undo(int fd)
{
    struct pm_claim c;
    int first = 0;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0)
        return -errno;
    for (off_t at = size / (off_t)sizeof c - 1; at >= 0; at--) {
        ssize_t n;
        do
            n = pread(fd, &c, sizeof c, at * (off_t)sizeof c);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof c) {
            if (!first)
                first = n < 0 ? -errno : -EIO;
            continue;
        }
        int ret = pm_claim_undo(&c);
        if (ret < 0 && !first)
            first = ret;
    }
    if (ftruncate(fd, 0) != 0 && !first)
        first = -errno;
    return first;
}

static void close_other_fds(int a, int b)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;
#ifdef SYS_close_range
    if ((lo == 0 || syscall(SYS_close_range, 0, lo - 1, 0) == 0)
        && (hi == lo + 1 || syscall(SYS_close_range, lo + 1, hi - 1, 0) == 0)
        && syscall(SYS_close_range, hi + 1, ~0U, 0) == 0)
        return;
#endif
    for (int fd = 0; fd < 4096; fd++)
        if (fd != a && fd != b)
            close(fd);
}

void pm_guard_serve(int sock, int claim_fd, const char *lock_path, const char *claim_path)
{
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    /* Its own session: a terminal's ^C, ^Z or hangup, or a signal to the parent's process
     * group, must not take the guardian down with the process it is there to clean up for. */
    setsid();
    int sigs[] = {SIGINT, SIGQUIT, SIGHUP, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE, SIGUSR1, SIGUSR2};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &ignore, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* The paths are copied before other fds close: they may live in memory that goes too. */
    char lock[PM_CLAIM_PATH_MAX], claim[PM_CLAIM_PATH_MAX];
    size_t ll = strnlen(lock_path, sizeof lock), cl = strnlen(claim_path, sizeof claim);
    if (ll == sizeof lock || cl == sizeof claim)
        _exit(2);
    memcpy(lock, lock_path, ll + 1);
    memcpy(claim, claim_path, cl + 1);
    close_other_fds(sock, claim_fd);
    if (chdir("/") != 0) { /* not holding a mount busy matters more than the result */ }
    char ready[1 + sizeof(int32_t)];
    int32_t me = (int32_t)getpid();
    ready[0] = 'R';
    memcpy(ready + 1, &me, sizeof me);
    if (send(sock, ready, sizeof ready, MSG_NOSIGNAL) != (ssize_t)sizeof ready)
        _exit(1);
    char buf[64];
    for (;;) {
        ssize_t n = read(sock, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR))
            break;
    }
    int lockfd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (lockfd < 0)
        _exit(3);
    while (flock(lockfd, LOCK_EX) != 0)
        if (errno != EINTR)
            _exit(3);
    pm_claims_undo(claim_fd);
    unlink(claim);
    _exit(0);
}

int pm_guard_start(int claim_fd, const char *lock_path, const char *claim_path, int *sock)
{
    /* Checked here, where it can still be reported: the guardian would only exit. */
    if (strnlen(lock_path, PM_CLAIM_PATH_MAX) == PM_CLAIM_PATH_MAX
        || strnlen(claim_path, PM_CLAIM_PATH_MAX) == PM_CLAIM_PATH_MAX)
        return -ENAMETOOLONG;
    int sv[2];
    /* A socket, not a pipe: send(MSG_NOSIGNAL) cannot raise SIGPIPE in the caller. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(sv[0]);
        close(sv[1]);
        return -err;
    }
    if (pid == 0) {
        /* The middle process exits at once: the guardian is reparented and is never
         * a child that the caller's wait() loops would wait for. */
        if (fork() == 0)
            pm_guard_serve(sv[0], claim_fd, lock_path, claim_path);
        _exit(0);
    }
    close(sv[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    *sock = sv[1];
    return 0;
}

int pm_guard_wait_ready(int sock)
{
    char msg[1 + sizeof(int32_t)];
    size_t got = 0;
    while (got < sizeof msg) {
        ssize_t n = recv(sock, msg + got, sizeof msg - got, 0);
        if (n == 0)
            return -EPIPE;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    if (msg[0] != 'R')
        return -EPROTO;
    int32_t pid;
    memcpy(&pid, msg + 1, sizeof pid);
    return pid > 0 ? (int)pid : -EPROTO;
}

int pm_guard_gone(int sock)
{
    struct pollfd p = {sock, POLLIN, 0};
    int n;
    do
        n = poll(&p, 1, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    /* The guardian never writes after its ready message: readable means EOF or error. */
    return n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}
