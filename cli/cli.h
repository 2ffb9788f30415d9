/* cli/cli.h: what the subcommands share: exit codes and the command table. */
#ifndef DSQ_CLI_H
#define DSQ_CLI_H

#include "core/status.h"

#define DSQ_VERSION "0.1.0"

/* Exit codes, documented in README.md and `dsq --help`. */
enum {
    DSQ_EXIT_OK = 0,
    DSQ_EXIT_CHECK_FAILED = 1, /* a verification threshold was crossed */
    DSQ_EXIT_USAGE = 2,        /* wrong arguments */
    DSQ_EXIT_INPUT = 3,        /* bad, corrupt or inconsistent input */
    DSQ_EXIT_IO = 4,           /* reading or writing failed (disk full, permissions) */
    DSQ_EXIT_INTERNAL = 5,     /* out of memory or a bug */
};

typedef struct dsq_cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} dsq_cli_command;

/* Prints "dsq: <message>" for a failed status and returns its exit code. */
int dsq_cli_fail(dsq_status st, const dsq_err *err);
int dsq_cli_exit_code(dsq_status st);

int dsq_cmd_convert(int argc, char **argv);
int dsq_cmd_inspect(int argc, char **argv);
int dsq_cmd_quantize(int argc, char **argv);
int dsq_cmd_ppl(int argc, char **argv);
int dsq_cmd_verify(int argc, char **argv);
int dsq_cmd_check(int argc, char **argv);

#endif
