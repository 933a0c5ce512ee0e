/* The kernel's floor for the session requests a daemon serves: a server that answers 1-byte
 * requests on an AF_UNIX SOCK_SEQPACKET socket (the control socket's type) and makes, per
 * request, only the system calls that any manager of runtime dirs must make, and nothing else:
 *
 *   'p'   nothing: a bare round trip (the ping-pong floor)
 *   'M'   mkdirat + mount(2) of a limited tmpfs, nothing else: the floor for a first
 *         open (a mount and a round trip), paid as a woken server pays it
 *   'm'   what 'M' does, then what 'o' does: a first open
 *   'o'   pidfd_open of the client + epoll_ctl(ADD) + a 320-byte O_APPEND write, as a further
 *         open does (pin and watch the leader, persist the change)
 *   'c'   close of the oldest such pidfd + a 320-byte write, as a close does
 *   'l'   what 'c' does, and timerfd_settime of a one-shot timer: the close of a user's last
 *         session, which starts its grace period
 *
 * runplane-bench drives it on the socket it passes as fd FD, alternating each of its own
 * requests to runplaned with the same request to this server, so that both see the same
 * moment of a shared, noisy machine. A server woken by a request runs colder (caches, TLB, a
 * CPU leaving idle) than a hot loop of the same calls: this composed floor is the honest
 * reference for a request, and it is higher than the sum of a hot mount loop and a ping-pong.
 * The server runs on CPU 1, as runplaned does in bench/run. At the end (EOF) it removes its
 * mounts, so that later measurements do not pay for them. Must run as root in a private mount
 * namespace (bench/userdirs arranges it).
 * usage: opfloor FD DIR N     (N: the most pidfds held at once) */
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
#include <sys/timerfd.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s FD DIR N\n", argv[0]); return 100; }
    int s = atoi(argv[1]), n = atoi(argv[3]);
    pid_t client = getppid();
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    sched_setaffinity(0, sizeof set, &set);
    int dir = open(argv[2], O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int log = dir < 0 ? -1 : openat(dir, "journal", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int *pidfds = calloc(n, sizeof(int));
    int grace = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (dir < 0 || ep < 0 || log < 0 || !pidfds || grace < 0 || fchdir(dir)) { perror(argv[2]); return 111; }
    char line[320], name[32], opts[160], op;
    memset(line, 'x', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    int mounts = 0, opens = 0, closes = 0;
    while (recv(s, &op, 1, 0) == 1) {
        if (op == 'm' || op == 'M') {
            int uid = 40000 + mounts++;
            snprintf(name, sizeof name, "%d", uid);
            snprintf(opts, sizeof opts, "mode=0700,uid=%d,gid=%d,size=1048576,nr_inodes=256", uid, uid);
            if (mkdirat(dir, name, 0700)) { perror(name); return 111; }
            if (mount("tmpfs", name, "tmpfs", MS_NODEV | MS_NOSUID, opts)) { perror(name); return 111; }
        }
        if (op == 'm' || op == 'o') {
            if (opens - closes >= n) { fprintf(stderr, "opfloor: more than %d open\n", n); return 111; }
            int fd = (int)syscall(SYS_pidfd_open, client, 0);
            struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = opens };
            if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) { perror("pidfd"); return 111; }
            pidfds[opens++ % n] = fd;
            if (write(log, line, sizeof line) != sizeof line) { perror("write"); return 111; }
        } else if (op == 'c' || op == 'l') {
            if (closes == opens) { fprintf(stderr, "opfloor: nothing to close\n"); return 111; }
            close(pidfds[closes++ % n]);
            if (write(log, line, sizeof line) != sizeof line) { perror("write"); return 111; }
            struct itimerspec in10min = { .it_value = { .tv_sec = 600 } };
            if (op == 'l' && timerfd_settime(grace, 0, &in10min, NULL)) { perror("timerfd"); return 111; }
        } else if (op != 'p' && op != 'M') {
            fprintf(stderr, "opfloor: unknown request %c\n", op);
            return 100;
        }
        send(s, &op, 1, MSG_NOSIGNAL);
    }
    for (int i = 0; i < mounts; i++) {
        snprintf(name, sizeof name, "%d", 40000 + i);
        umount2(name, MNT_DETACH);
        unlinkat(dir, name, AT_REMOVEDIR);
    }
    return 0;
}
