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
    case DSQ_NOMEM:
    case DSQ_STATUS_COUNT:
        break;
    }
    return DSQ_EXIT_INTERNAL;
}

int dsq_cli_fail(dsq_status st, const dsq_err *err) {
    if (err != NULL && err->code != DSQ_OK && err->text[0] != '\0')
        fprintf(stderr, "dsq: %s\n", err->text);
    else
        fprintf(stderr, "dsq: %s\n", dsq_status_str(st));
    return dsq_cli_exit_code(st);
}
