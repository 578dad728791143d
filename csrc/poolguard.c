/* Pool guardian; see poolguard.h. */
#include "poolguard.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One record per write: far below PIPE_BUF, so each arrives whole. */
struct guard_record {
    char op; /* 'A' arm, 'D' disarm */
    char path[PM_GUARD_PATH_MAX];
    uint64_t value;
};

static void write_value(const char *path, uint64_t value)
{
    char text[24];
    int n = 0;
    char digits[24];
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    for (int i = 0; i < n; i++)
        text[i] = digits[n - 1 - i];
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t ignored = write(fd, text, (size_t)n);
    (void)ignored;
    close(fd);
}

static void close_other_fds(int keep)
{
#ifdef SYS_close_range
    if (keep > 0 && syscall(SYS_close_range, 0, keep - 1, 0) == 0 &&
        syscall(SYS_close_range, keep + 1, ~0U, 0) == 0)
        return;
#endif
    for (int fd = 0; fd < 4096; fd++)
        if (fd != keep)
            close(fd);
}

static void __attribute__((noreturn)) guard_main(int rfd)
{
    static struct guard_record rec[PM_GUARD_RECORDS];
    struct guard_record cur;
    unsigned armed = 0;
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    /* Its own session: a terminal's ^C, ^Z or hangup, or a signal to the parent's process
     * group, must not take the guardian down with the parent it is there to clean up for. */
    setsid();
    int sigs[] = {SIGINT, SIGQUIT, SIGHUP, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE, SIGUSR1, SIGUSR2};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &ignore, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    close_other_fds(rfd);
    if (chdir("/") != 0) { /* not holding a mount busy matters more than the result */ }
    for (;;) {
        size_t got = 0;
        while (got < sizeof cur) {
            ssize_t n = read(rfd, (char *)&cur + got, sizeof cur - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                goto parent_gone;
            got += (size_t)n;
        }
        if (cur.op == 'D')
            _exit(0);
        if (cur.op == 'A' && armed < PM_GUARD_RECORDS) {
            cur.path[PM_GUARD_PATH_MAX - 1] = '\0';
            rec[armed++] = cur;
        }
    }
parent_gone:
    for (unsigned i = 0; i < armed; i++)
        write_value(rec[i].path, rec[i].value);
    _exit(0);
}

int pm_guard_start(int *wfd)
{
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
    if (pid == 0)
        guard_main(sv[0]);
    close(sv[0]);
    *wfd = sv[1];
    return (int)pid;
}

static int send_record(int wfd, const struct guard_record *r)
{
    size_t sent = 0;
    while (sent < sizeof *r) {
        ssize_t n = send(wfd, (const char *)r + sent, sizeof *r - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        sent += (size_t)n;
    }
    return 0;
}

int pm_guard_arm(int wfd, const char *path, uint64_t value)
{
    struct guard_record r;
    memset(&r, 0, sizeof r);
    size_t len = strlen(path);
    if (len >= PM_GUARD_PATH_MAX)
        return -ENAMETOOLONG;
    r.op = 'A';
    memcpy(r.path, path, len);
    r.value = value;
    return send_record(wfd, &r);
}

int pm_guard_disarm(int wfd)
{
    struct guard_record r;
    memset(&r, 0, sizeof r);
    r.op = 'D';
    int ret = send_record(wfd, &r);
    close(wfd);
    return ret;
}
