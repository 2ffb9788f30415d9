/* cli/progress.c: see progress.h. */
#include "cli/progress.h"

#include <stdio.h>
#include <unistd.h>

void dsq_format_bytes(uint64_t n, char *buf, int size) {
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1000.0 && u < 5) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, (size_t)size, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, (size_t)size, "%.2f %s", v, units[u]);
}

void dsq_progress_init(dsq_progress *p, const char *label, int quiet) {
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->t0 = dsq_now();
    p->last = 0.0;
    p->label = label;
}

void dsq_progress_update(void *user, uint64_t done, uint64_t total) {
    dsq_progress *p = user;
    if (!p->enabled)
        return;
    const double now = dsq_now();
    if (now - p->last < 0.1 && done < total)
        return;
    p->last = now;
    const double el = now - p->t0;
    const double rate = el > 0 ? (double)done / el : 0.0;
    const double frac = total ? (double)done / (double)total : 1.0;
    char d[32], t[32], r[32];
    dsq_format_bytes(done, d, sizeof d);
    dsq_format_bytes(total, t, sizeof t);
    dsq_format_bytes((uint64_t)rate, r, sizeof r);
    char bar[31];
    const int fill = (int)(frac * 30.0);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : ' ';
    bar[30] = '\0';
    const double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s/s  ETA %.0fs\033[K", p->label, bar,
            (int)(frac * 100.0), d, t, r, eta);
    fflush(stderr);
}

void dsq_progress_done(dsq_progress *p) {
    if (p->enabled)
        fprintf(stderr, "\r\033[K");
}
