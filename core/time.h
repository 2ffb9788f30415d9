/* core/time.h: the one clock dsq measures durations with. */
#ifndef DSQ_TIME_H
#define DSQ_TIME_H

/* Seconds on a monotonic clock (CLOCK_MONOTONIC): only differences mean anything, and they
 * do not jump when the wall clock is set. */
double dsq_now(void);

#endif
