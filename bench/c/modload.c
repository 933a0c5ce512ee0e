/* What loading a PAM module costs a login process: dlopen(RTLD_NOW) + dlclose of a module,
 * from a process that has libpam loaded already (as sshd, login and display managers have),
 * which is what libpam does for each module of a stack at every pam_start/pam_end.
 * The modules are asked in turn, so that they share the moments of a noisy machine.
 * usage: modload N MODULE...     prints, per module: PATH p50_us p99_us mean_us */
#include <dlfcn.h>
#include <security/pam_appl.h>
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s N MODULE...\n", argv[0]); return 100; }
    int n = atoi(argv[1]), m = argc - 2;
    /* Keeps libpam linked in (a reference the linker cannot drop). */
    if (!pam_strerror(NULL, PAM_SUCCESS)) return 111;
    double *t = malloc(sizeof(double) * n * m);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < m; j++) {
            double t0 = now_us();
            void *h = dlopen(argv[2 + j], RTLD_NOW | RTLD_LOCAL);
            if (!h) { fprintf(stderr, "modload: %s\n", dlerror()); return 111; }
            dlclose(h);
            t[j * n + i] = now_us() - t0;
        }
    }
    for (int j = 0; j < m; j++) {
        printf("%s ", argv[2 + j]);
        print_summary(t + j * n, n);
    }
    return 0;
}
