/* Reference spawners: posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)) and fork+execve, each
 * from a parent that first touches TOUCH_MIB MiB of memory (what a grown daemon looks like).
 * usage: spawn posix_spawn|fork ITERATIONS TOUCH_MIB PROGRAM
 * prints: p50_us p99_us mean_us */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

extern char **environ;

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s posix_spawn|fork N TOUCH_MIB PROGRAM\n", argv[0]); return 100; }
    int use_fork = strcmp(argv[1], "fork") == 0;
    int n = atoi(argv[2]);
    size_t touch = (size_t)atol(argv[3]) << 20;
    char *prog = argv[4];
    char *const args[] = { prog, NULL };
    if (touch) {
        char *mem = malloc(touch);
        if (!mem) { perror("malloc"); return 111; }
        for (size_t i = 0; i < touch; i += 4096) mem[i] = 1;
    }
    double *t = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        double t0 = now_us();
        pid_t pid;
        if (use_fork) {
            pid = fork();
            if (pid == 0) { execve(prog, args, environ); _exit(127); }
        } else if (posix_spawn(&pid, prog, NULL, NULL, args, environ) != 0) {
            perror("posix_spawn"); return 111;
        }
        int st;
        waitpid(pid, &st, 0);
        t[i] = now_us() - t0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { fprintf(stderr, "child failed\n"); return 111; }
    }
    print_summary(t, n);
    return 0;
}
