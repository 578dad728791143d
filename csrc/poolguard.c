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

/* Fixed-size records: each is read whole before it is acted on. */
struct guard_record {
    char op; /* 'A' arm, 'C' clear a token */
    uint32_t token;
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
    if ((keep == 0 || syscall(SYS_close_range, 0, keep - 1, 0) == 0) &&
        syscall(SYS_close_range, keep + 1, ~0U, 0) == 0)
        return;
#endif
    for (int fd = 0; fd < 4096; fd++)
        if (fd != keep)
            close(fd);
}

void pm_guard_serve(int fd)
{
    static struct guard_record rec[PM_GUARD_RECORDS];
    struct guard_record cur;
    unsigned armed = 0;
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
    close_other_fds(fd);
    if (chdir("/") != 0) { /* not holding a mount busy matters more than the result */ }
    char ready = 'R';
    if (send(fd, &ready, 1, MSG_NOSIGNAL) != 1)
        _exit(1);
    for (;;) {
        size_t got = 0;
        while (got < sizeof cur) {
            ssize_t n = read(fd, (char *)&cur + got, sizeof cur - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                goto parent_gone;
            got += (size_t)n;
        }
        if (cur.op == 'A' && armed < PM_GUARD_RECORDS) {
            cur.path[PM_GUARD_PATH_MAX - 1] = '\0';
            rec[armed++] = cur;
        } else if (cur.op == 'C') {
            unsigned kept = 0;
            for (unsigned i = 0; i < armed; i++)
                if (rec[i].token != cur.token)
                    rec[kept++] = rec[i];
            armed = kept;
        }
    }
parent_gone:
    /* Per file, the oldest record still armed holds the value from before any of them. */
    for (unsigned i = 0; i < armed; i++) {
        int first = 1;
        for (unsigned j = 0; j < i && first; j++)
            if (strcmp(rec[j].path, rec[i].path) == 0)
                first = 0;
        if (first)
            write_value(rec[i].path, rec[i].value);
    }
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
        pm_guard_serve(sv[0]);
    close(sv[0]);
    *wfd = sv[1];
    return (int)pid;
}

int pm_guard_wait_ready(int wfd)
{
    char c;
    for (;;) {
        ssize_t n = recv(wfd, &c, 1, 0);
        if (n == 1)
            return c == 'R' ? 0 : -EPROTO;
        if (n == 0)
            return -EPIPE;
        if (errno != EINTR)
            return -errno;
    }
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

int pm_guard_arm(int wfd, uint32_t token, const char *path, uint64_t value)
{
    struct guard_record r;
    memset(&r, 0, sizeof r);
    size_t len = strlen(path);
    if (len >= PM_GUARD_PATH_MAX)
        return -ENAMETOOLONG;
    r.op = 'A';
    r.token = token;
    memcpy(r.path, path, len);
    r.value = value;
    return send_record(wfd, &r);
}

int pm_guard_clear(int wfd, uint32_t token)
{
    struct guard_record r;
    memset(&r, 0, sizeof r);
    r.op = 'C';
    r.token = token;
    return send_record(wfd, &r);
}
