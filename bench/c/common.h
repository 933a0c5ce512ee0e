/* Shared by the C reference programs of bench/run: a monotonic clock in microseconds and the
 * "p50_us p99_us mean_us" line every measurement prints. */
#ifndef RUNPLANE_BENCH_COMMON_H
#define RUNPLANE_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t and prints its median, 99th percentile and mean. */
static inline void print_summary(double *t, int n) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += t[i];
    qsort(t, n, sizeof(double), cmp_double);
    printf("%.1f %.1f %.1f\n", t[n / 2], t[n * 99 / 100], sum / n);
}

#endif
