/* The kernel's floor for a request/response between two processes: a 1-byte ping-pong over
 * an AF_UNIX SOCK_SEQPACKET socketpair (the control socket's type). The client runs on CPU 0
 * and the echo on CPU 1, as bench/run places runplane's client and daemon: the cost of a
 * wakeup depends on that placement far more than on anything else.
 * usage: pingpong ITERATIONS     prints: p50_us p99_us mean_us */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10000;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) { perror("socketpair"); return 111; }
    cpu_set_t set;
    pid_t pid = fork();
    if (pid == 0) {
        char b;
        CPU_ZERO(&set);
        CPU_SET(1, &set);
        sched_setaffinity(0, sizeof set, &set);
        close(sv[0]);
        while (recv(sv[1], &b, 1, 0) == 1) send(sv[1], &b, 1, MSG_NOSIGNAL);
        _exit(0);
    }
    close(sv[1]);
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof set, &set);
    double *t = malloc(sizeof(double) * n);
    char b = 'x';
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        send(sv[0], &b, 1, MSG_NOSIGNAL);
        if (recv(sv[0], &b, 1, 0) != 1) { fprintf(stderr, "echo died\n"); return 111; }
        t[i] = now_us() - t0;
    }
    close(sv[0]);
    waitpid(pid, NULL, 0);
    print_summary(t, n);
    return 0;
}
