/* core/parse.h: numbers given as text (command-line options): whole numbers in a range,
 * thread counts, real numbers in a range, byte sizes with an M/G suffix.
 *
 * Every parser takes the whole string (no leading blanks, no trailing characters, no sign
 * where none makes sense) and, when it is not a number in range, returns DSQ_INVALID_ARG
 * with one message of one wording: "expected a whole number from LO to HI, got 'TEXT'".
 * The caller puts the option's name in front. */
#ifndef DSQ_PARSE_H
#define DSQ_PARSE_H

#include <stdint.h>

#include "core/status.h"

/* The most compute threads any command accepts. */
#define DSQ_MAX_THREADS 4096

/* A decimal whole number n with lo <= n <= hi. */
dsq_status dsq_parse_count(const char *s, int64_t lo, int64_t hi, int64_t *out, dsq_err *err);
/* A thread count, 1 to DSQ_MAX_THREADS. */
dsq_status dsq_parse_threads(const char *s, int *out, dsq_err *err);
/* A finite real number d with lo <= d <= hi (strtod syntax). */
dsq_status dsq_parse_real(const char *s, double lo, double hi, double *out, dsq_err *err);
/* A positive byte count: "N", "NM" (N x 10^6) or "NG" (N x 10^9), as llama.cpp's
 * gguf-split counts; the suffix may be lower case. */
dsq_status dsq_parse_size(const char *s, uint64_t *out, dsq_err *err);

#endif
