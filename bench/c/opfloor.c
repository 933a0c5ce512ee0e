/* The kernel's floor for a session request served by a daemon: the same 1-byte SEQPACKET
 * ping-pong as pingpong.c (client on CPU 0, server on CPU 1), where the server does, per
 * request, only the system calls that any manager of runtime dirs must make, and nothing else:
 *
 *   mount DIR N     mkdirat + mount(2) of a limited tmpfs (a first open); the N mounts stay
 *                   until the end (as runplane's do), then are removed
 *   session DIR N   N opens: pidfd_open of the client + epoll_ctl(ADD) + a 320-byte O_APPEND
 *                   write (pin and watch the leader, persist the change); then N closes:
 *                   close of the pidfd + a 320-byte write
 *
 * A server woken by a request runs colder (caches, TLB, a CPU leaving idle) than a hot loop of
 * the same calls, so this composed floor is higher than the sum of a hot mountfloor loop and a
 * ping-pong: both are reported by bench/userdirs.
 * Must run as root in a private mount namespace for `mount` (bench/userdirs arranges it).
 * prints: one line "p50_us p99_us mean_us" (mount), two lines: opens then closes (session) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* The server: one request (one byte: 'm' mount, 'o' open, 'c' close) in, one byte out. */
static int serve(int s, int dir, pid_t client, int n) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int log = openat(dir, "journal", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int *pidfds = calloc(n, sizeof(int));
    char line[320], name[32], opts[160], op;
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    int mounts = 0, opens = 0, closes = 0;
    if (ep < 0 || log < 0 || !pidfds || fchdir(dir)) { perror("server setup"); return 111; }
    while (recv(s, &op, 1, 0) == 1) {
        if (op == 'm') {
            int uid = 20000 + mounts++;
            snprintf(name, sizeof name, "%d", uid);
            snprintf(opts, sizeof opts, "mode=0700,uid=%d,gid=%d,size=1048576,nr_inodes=256", uid, uid);
            if (mkdirat(dir, name, 0700)) { perror(name); return 111; }
            if (mount("tmpfs", name, "tmpfs", MS_NODEV | MS_NOSUID, opts)) { perror(name); return 111; }
        } else if (op == 'o') {
            int fd = (int)syscall(SYS_pidfd_open, client, 0);
            struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = opens };
            if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) { perror("pidfd"); return 111; }
            pidfds[opens++ % n] = fd;
            if (write(log, line, sizeof line) != sizeof line) { perror("write"); return 111; }
        } else {
            close(pidfds[closes++ % n]);
            if (write(log, line, sizeof line) != sizeof line) { perror("write"); return 111; }
        }
        send(s, &op, 1, MSG_NOSIGNAL);
    }
    /* Leave the namespace as found: later rows must not pay for these mounts. */
    for (int i = 0; i < mounts; i++) {
        snprintf(name, sizeof name, "%d", 20000 + i);
        umount2(name, MNT_DETACH);
        unlinkat(dir, name, AT_REMOVEDIR);
    }
    return 0;
}

static void measure(int s, char op, int n) {
    double *t = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        send(s, &op, 1, MSG_NOSIGNAL);
        if (recv(s, &op, 1, 0) != 1) { fprintf(stderr, "opfloor: server died\n"); exit(111); }
        t[i] = now_us() - t0;
    }
    print_summary(t, n);
    free(t);
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "mount") && strcmp(argv[1], "session"))) {
        fprintf(stderr, "usage: %s mount|session DIR N\n", argv[0]);
        return 100;
    }
    int n = atoi(argv[3]);
    int dir = open(argv[2], O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    int sv[2];
    if (dir < 0) { perror(argv[2]); return 111; }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) { perror("socketpair"); return 111; }
    pid_t client = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        pin(1);
        close(sv[0]);
        _exit(serve(sv[1], dir, client, n));
    }
    close(sv[1]);
    pin(0);
    if (argv[1][0] == 'm') {
        measure(sv[0], 'm', n);
    } else {
        measure(sv[0], 'o', n);
        measure(sv[0], 'c', n);
    }
    close(sv[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 111;
}
