/* core/report.h: how library code tells its caller what it is doing.
 *
 * The library never prints: long-running operations take these callbacks and
 * the CLI decides what reaches the terminal (a progress bar only on a tty,
 * warnings always, the plan of a --dry-run on stdout). */
#ifndef DSQ_REPORT_H
#define DSQ_REPORT_H

#include <stdint.h>

typedef enum dsq_log_level {
    DSQ_LOG_INFO = 0, /* what was done or would be done */
    DSQ_LOG_WARN = 1, /* something the user should know but that is not an error */
} dsq_log_level;

typedef void (*dsq_log_fn)(void *user, dsq_log_level level, const char *msg);
/* done and total in bytes of output */
typedef void (*dsq_progress_fn)(void *user, uint64_t done, uint64_t total);

#endif
