/* core/status.h: the one status type of dsq and its error record.
 *
 * Every fallible function returns a dsq_status and, when the caller passes a
 * dsq_err, fills it with a one-line message naming the file and the tensor.
 * The first error wins: a low-level message ("truncated at byte 812") is not
 * overwritten by the generic one of an outer layer. */
#ifndef DSQ_STATUS_H
#define DSQ_STATUS_H

#include <stdarg.h>
#include <stddef.h>

/* One table gives the enum, the names and the messages, so they cannot drift
 * apart. The values are pinned: the CLI maps them to exit codes. */
#define DSQ_STATUS_MAP(X)                                                                          \
    X(OK, "success")                                                                               \
    X(NOMEM, "out of memory")                                                                      \
    X(IO, "I/O error")                                                                             \
    X(FORMAT, "malformed input file")                                                              \
    X(UNSUPPORTED, "unsupported format feature or dtype")                                          \
    X(RANGE, "value or size out of range")                                                         \
    X(INVALID_ARG, "invalid argument")                                                             \
    X(MISMATCH, "verification mismatch")                                                           \
    X(NOT_FOUND, "not found")                                                                      \
    X(CANCELLED, "interrupted")

typedef enum dsq_status {
#define DSQ_X_(name, msg) DSQ_##name,
    DSQ_STATUS_MAP(DSQ_X_)
#undef DSQ_X_
        DSQ_STATUS_COUNT
} dsq_status;

/* Caller-owned error record; every API taking one accepts NULL. A message
 * longer than text keeps its first third and its end, "..." between. */
typedef struct dsq_err {
    dsq_status code;
    char text[512];
} dsq_err;

const char *dsq_status_name(dsq_status s); /* "DSQ_FORMAT" */
const char *dsq_status_str(dsq_status s);  /* "malformed input file" */

/* Records code and message unless an error is already recorded; returns code,
 * so that `return dsq_err_set(err, DSQ_FORMAT, "...")` reads naturally. */
dsq_status dsq_err_set(dsq_err *err, dsq_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
dsq_status dsq_err_vset(dsq_err *err, dsq_status code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void dsq_err_clear(dsq_err *err);

/* Cleanup-aware checks for functions with a `dsq_status st` and a `cleanup:`
 * label: on failure they record the error and jump there. */
#define DSQ_CHECK(cond, code, err, ...)                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            st = dsq_err_set((err), (code), __VA_ARGS__);                                          \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

#define DSQ_TRY(expr)                                                                              \
    do {                                                                                           \
        st = (expr);                                                                               \
        if (st != DSQ_OK)                                                                          \
            goto cleanup;                                                                          \
    } while (0)

#endif
