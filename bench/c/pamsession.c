/* The whole PAM path of a login's session, through libpam and pam_runplane.so:
 * pam_start_confdir + pam_open_session + pam_close_session + pam_end, N times for USER.
 * The first login must export XDG_RUNTIME_DIR, unless the service is libpam's own baseline
 * (a stack without pam_runplane.so: pass "baseline" as a fifth argument).
 * usage: pamsession CONFDIR SERVICE USER N [baseline]     prints: p50_us p99_us mean_us */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "common.h"

static int no_conv(int n, const struct pam_message **m, struct pam_response **r, void *d) {
    (void)n; (void)m; (void)r; (void)d;
    return PAM_CONV_ERR;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) { fprintf(stderr, "usage: %s CONFDIR SERVICE USER N [baseline]\n", argv[0]); return 100; }
    int check = argc == 5;
    int n = atoi(argv[4]);
    struct pam_conv conv = { no_conv, NULL };
    double *t = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        pam_handle_t *h = NULL;
        double t0 = now_us();
        int rc = pam_start_confdir(argv[2], argv[3], &conv, argv[1], &h);
        if (rc == PAM_SUCCESS) rc = pam_open_session(h, 0);
        if (rc == PAM_SUCCESS && (check && i == 0 && !pam_getenv(h, "XDG_RUNTIME_DIR"))) {
            fprintf(stderr, "no XDG_RUNTIME_DIR exported\n");
            return 111;
        }
        if (rc == PAM_SUCCESS) rc = pam_close_session(h, 0);
        pam_end(h, rc);
        t[i] = now_us() - t0;
        if (rc != PAM_SUCCESS) { fprintf(stderr, "pam: %d\n", rc); return 111; }
    }
    print_summary(t, n);
    return 0;
}
