/* cli/common.c: status to exit code and message. */
#include <stdio.h>

#include "cli/cli.h"

int dsq_cli_exit_code(dsq_status st) {
    switch (st) {
    case DSQ_OK:
        return DSQ_EXIT_OK;
    case DSQ_MISMATCH:
        return DSQ_EXIT_CHECK_FAILED;
    case DSQ_INVALID_ARG:
        return DSQ_EXIT_USAGE;
    case DSQ_FORMAT:
    case DSQ_UNSUPPORTED:
    case DSQ_RANGE:
    case DSQ_NOT_FOUND:
        return DSQ_EXIT_INPUT;
    case DSQ_IO:
        return DSQ_EXIT_IO;
    case DSQ_CANCELLED: /* the caller knows the signal and exits 128 + it */
    case DSQ_NOMEM:
    case DSQ_STATUS_COUNT:
        break;
    }
    return DSQ_EXIT_INTERNAL;
}

/* Messages quote names taken from input files: a control character in one
 * (a newline, an ANSI escape) is shown escaped, so the error stays one line
 * and cannot drive the terminal. */
static void put_escaped(const char *s, FILE *out) {
    for (; *s != '\0'; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
}

int dsq_cli_fail(dsq_status st, const dsq_err *err) {
    if (err != NULL && err->code != DSQ_OK && err->text[0] != '\0') {
        fputs("dsq: ", stderr);
        put_escaped(err->text, stderr);
        fputc('\n', stderr);
    } else
        fprintf(stderr, "dsq: %s\n", dsq_status_str(st));
    return dsq_cli_exit_code(st);
}
