/* The kernel's floor for making a user runtime dir: mkdir + mount(2) of a limited tmpfs on a
 * tmpfs, per directory. usage: mountfloor DIR N     prints: p50_us p99_us mean_us
 * Must run as root in a private mount namespace (bench/run arranges it). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s DIR N\n", argv[0]); return 100; }
    int n = atoi(argv[2]);
    if (chdir(argv[1])) { perror(argv[1]); return 111; }
    double *t = malloc(sizeof(double) * n);
    char name[32], opts[128];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "d%d", i);
        snprintf(opts, sizeof opts, "mode=0700,uid=%d,gid=%d,size=1048576,nr_inodes=256", 30000 + i, 30000 + i);
        double t0 = now_us();
        if (mkdir(name, 0700) || mount("tmpfs", name, "tmpfs", MS_NODEV | MS_NOSUID, opts)) { perror(name); return 111; }
        t[i] = now_us() - t0;
    }
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "d%d", i);
        umount2(name, MNT_DETACH);
        rmdir(name);
    }
    print_summary(t, n);
    return 0;
}
