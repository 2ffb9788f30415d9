/* core/parse.c: see parse.h. */
#include "core/parse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* strtoll/strtod skip leading blanks and take a sign; an option value with either is a
 * typing mistake more often than a number, so only a digit (or, for reals, a point or a
 * minus) may start one. */
static int starts_number(const char *s, int real) {
    return (*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9') ||
           (real && *s == '.');
}

dsq_status dsq_parse_count(const char *s, int64_t lo, int64_t hi, int64_t *out, dsq_err *err) {
    char *end = NULL;
    long long n = 0;
    if (s != NULL && starts_number(s, 0)) {
        errno = 0;
        n = strtoll(s, &end, 10);
    }
    if (s == NULL || end == NULL || *end != '\0' || errno == ERANGE || n < lo || n > hi)
        return dsq_err_set(err, DSQ_INVALID_ARG, "expected a whole number from %lld to %lld, "
                           "got '%s'", (long long)lo, (long long)hi, s != NULL ? s : "");
    *out = (int64_t)n;
    return DSQ_OK;
}

dsq_status dsq_parse_threads(const char *s, int *out, dsq_err *err) {
    int64_t n = 0;
    const dsq_status st = dsq_parse_count(s, 1, DSQ_MAX_THREADS, &n, err);
    if (st == DSQ_OK)
        *out = (int)n;
    return st;
}

dsq_status dsq_parse_real(const char *s, double lo, double hi, double *out, dsq_err *err) {
    char *end = NULL;
    double d = 0;
    if (s != NULL && starts_number(s, 1)) {
        errno = 0;
        d = strtod(s, &end);
    }
    if (s == NULL || end == NULL || *end != '\0' || errno == ERANGE || !isfinite(d) ||
        d < lo || d > hi)
        return dsq_err_set(err, DSQ_INVALID_ARG, "expected a number from %g to %g, got '%s'",
                           lo, hi, s != NULL ? s : "");
    *out = d;
    return DSQ_OK;
}

dsq_status dsq_parse_size(const char *s, uint64_t *out, dsq_err *err) {
    char *end = NULL;
    unsigned long long n = 0;
    uint64_t mul = 1;
    if (s != NULL && *s >= '0' && *s <= '9') {
        errno = 0;
        n = strtoull(s, &end, 10);
        if (*end == 'M' || *end == 'm')
            mul = 1000000u, end++;
        else if (*end == 'G' || *end == 'g')
            mul = 1000000000u, end++;
    }
    if (s == NULL || end == NULL || *end != '\0' || errno == ERANGE || n == 0 ||
        n > UINT64_MAX / mul)
        return dsq_err_set(err, DSQ_INVALID_ARG, "expected a positive number of bytes, "
                           "optionally followed by M or G, got '%s'", s != NULL ? s : "");
    *out = (uint64_t)n * mul;
    return DSQ_OK;
}
