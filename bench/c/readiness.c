/* What the way a server waits costs a request: three 1-byte echo servers on AF_UNIX
 * SOCK_SEQPACKET socketpairs, all on CPU 1, asked in turn by a client on CPU 0:
 *
 *   blocking   waits in recv(2), answers, waits again (runplaned's control threads)
 *   epoll      an event loop: waits in epoll_wait(2) on its edge-triggered socket (EPOLLIN),
 *              then receives until EAGAIN, answering each packet
 *   epollout   the same registered for EPOLLOUT too, as tokio's AsyncFd is for READABLE |
 *              WRITABLE: each time the client reads an answer, the freed send buffer makes
 *              the server's socket writable, and the kernel wakes the server's epoll from
 *              inside the client's recv(2). A blocking receiver is not woken by that.
 *
 * Each round asks the three in turn, so all see the same moments of a shared machine; after
 * each answer the client waits 40 us, so that a server's spurious wakeup is over before the
 * next server is asked (a CPU still awake would make that next wakeup look cheap).
 * runplaned served its control connections from a tokio event loop until 2026-12-02; this is
 * the measurement behind moving them to threads (BENCHMARKS.md).
 * usage: readiness ITERATIONS   prints three lines: blocking|epoll|epollout p50_us p99_us mean_us */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void serve_blocking(int s) {
    char b;
    while (recv(s, &b, 1, 0) == 1) send(s, &b, 1, MSG_NOSIGNAL);
}

static void serve_events(int s, uint32_t events) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = events | EPOLLRDHUP | EPOLLET };
    if (ep < 0 || fcntl(s, F_SETFL, O_NONBLOCK) || epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev)) {
        perror("epoll");
        _exit(111);
    }
    for (;;) {
        struct epoll_event got[8];
        if (epoll_wait(ep, got, 8, -1) < 0 && errno != EINTR) _exit(111);
        for (;;) {
            char b;
            ssize_t r = recv(s, &b, 1, 0);
            if (r == 0) _exit(0);
            if (r < 0) {
                if (errno == EAGAIN) break;
                _exit(111);
            }
            send(s, &b, 1, MSG_NOSIGNAL);
        }
    }
}

static void serve_epoll(int s) { serve_events(s, EPOLLIN); }
static void serve_epollout(int s) { serve_events(s, EPOLLIN | EPOLLOUT); }

/* Starts a server on CPU 1 and returns the client's end. */
static int start(void (*serve)(int)) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) { perror("socketpair"); exit(111); }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(111); }
    if (pid == 0) {
        pin(1);
        close(sv[0]);
        serve(sv[1]);
        _exit(0);
    }
    close(sv[1]);
    return sv[0];
}

static double ask(int s) {
    char b = 'x';
    double t0 = now_us();
    send(s, &b, 1, MSG_NOSIGNAL);
    if (recv(s, &b, 1, 0) != 1) { fprintf(stderr, "readiness: a server died\n"); exit(111); }
    double t = now_us() - t0, t1 = now_us();
    while (now_us() - t1 < 40) {}
    return t;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    const char *names[3] = { "blocking", "epoll", "epollout" };
    int socks[3] = { start(serve_blocking), start(serve_epoll), start(serve_epollout) };
    pin(0);
    double *t[3];
    for (int k = 0; k < 3; k++)
        if (!(t[k] = malloc(sizeof(double) * n))) return 111;
    for (int i = -n / 10; i < n; i++) /* the first tenth warms up */
        for (int k = 0; k < 3; k++) {
            double d = ask(socks[k]);
            if (i >= 0) t[k][i] = d;
        }
    for (int k = 0; k < 3; k++) close(socks[k]);
    while (wait(NULL) > 0) {}
    for (int k = 0; k < 3; k++) {
        printf("%s ", names[k]);
        print_summary(t[k], n);
    }
    return 0;
}
