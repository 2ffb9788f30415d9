/* cli/progress.h: a one-line progress bar on stderr, drawn only on a terminal, and the
 * byte counts people read ("1.23 GB"). */
#ifndef DSQ_PROGRESS_H
#define DSQ_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

#include "core/time.h"

typedef struct dsq_progress {
    int enabled;     /* stderr is a tty and the user did not ask for quiet */
    double t0;       /* start, seconds (dsq_now) */
    double last;     /* last redraw */
    const char *label;
} dsq_progress;

void dsq_progress_init(dsq_progress *p, const char *label, int quiet);
/* dsq_progress_fn-compatible: user is a dsq_progress. */
void dsq_progress_update(void *user, uint64_t done, uint64_t total);
void dsq_progress_done(dsq_progress *p); /* clears the line */
/* "1.23 GB" with decimal units, as disks and `ls -h --si` count. */
void dsq_format_bytes(uint64_t n, char *buf, int size);

#endif
