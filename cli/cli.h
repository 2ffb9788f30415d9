/* cli/cli.h: what the subcommands share: exit codes, the command table, and the one way
 * every command talks to its user.
 *
 * The conventions (README "Messages and JSON"):
 *   - errors are one line on stderr, "dsq CMD: <file>: <tensor>: <what>";
 *   - warnings "dsq CMD: warning: <what>", on stderr, even with -q; the library's notes
 *     (quantize's fallback types) "dsq CMD: note: <what>", on stderr, not with -q;
 *   - a usage error is one line ending "; see 'dsq CMD --help'", exit 2;
 *   - a missing input is "dsq CMD: PATH: no such file or directory", PATH as given;
 *   - with --json, stdout holds one JSON document and nothing else: every human line
 *     (progress, summary, the library's notes) goes to stderr. */
#ifndef DSQ_CLI_H
#define DSQ_CLI_H

#include <stdio.h>

#include <jansson.h>

#include "core/report.h"
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

struct dsq_progress;

/* One command's run: who is speaking and where its human lines go. */
typedef struct dsq_cli {
    const char *cmd;            /* "quantize": messages start "dsq quantize: " */
    int quiet;                  /* -q: no progress bar, no summary, no notes */
    int json;                   /* stdout is the JSON document's alone */
    int notes_to_stderr;        /* the library's notes are diagnostics (quantize), not the
                                   command's output (convert's plan and resume lines) */
    struct dsq_progress *prog;  /* its line is cleared before a message; may be NULL */
} dsq_cli;

/* Where summaries go: stdout, or stderr under --json. */
FILE *dsq_cli_human(const dsq_cli *c);
/* A summary line (a newline is added), unless quiet. */
void dsq_cli_say(const dsq_cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "dsq CMD: warning: ..." on stderr, quiet or not. */
void dsq_cli_warn(const dsq_cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "dsq CMD: ..." on stderr. */
void dsq_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "dsq CMD: ...; see 'dsq CMD --help'" on stderr; returns DSQ_EXIT_USAGE. */
int dsq_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An option's value failed to parse (core/parse.h): "dsq CMD: OPT: <why>; see ...", 2. */
int dsq_cli_bad_value(const char *cmd, const char *opt, const dsq_err *err);
/* Prints "dsq CMD: <message>" for a failed status and returns its exit code. */
int dsq_cli_fail(const char *cmd, dsq_status st, const dsq_err *err);
int dsq_cli_exit_code(dsq_status st);
/* 0 when path exists; else prints "dsq CMD: PATH: no such file or directory" and returns
 * DSQ_EXIT_INPUT, so every command names a missing input the same way, as it was given. */
int dsq_cli_need_input(const char *cmd, const char *path);
/* Refuses, before any weight is read, an output file that cannot be written (core/file.h
 * dsq_check_out_file: a missing or unwritable parent, a directory where the file goes):
 * 0, or the one-line message printed and DSQ_EXIT_IO / DSQ_EXIT_USAGE returned. */
int dsq_cli_check_out_file(const char *cmd, const char *path);

/* The library's log callback (core/report.h); user is a dsq_cli. Warnings as dsq_cli_warn;
 * notes (unless quiet) on stderr prefixed "dsq CMD: note: " or, for a command whose notes are
 * its output (convert), as plain lines where summaries go. */
void dsq_cli_log_cb(void *user, dsq_log_level lvl, const char *msg);

/* s with every control character (and DEL) as \xNN, so a name from a file cannot break a
 * line or drive the terminal; padded with blanks to width columns (0: none). */
void dsq_cli_put_escaped(FILE *out, const char *s, int width);
/* A JSON string of s: as it is when valid UTF-8, else every byte >= 0x80 (and NUL) written
 * as the text \xNN (jansson takes only UTF-8). Never NULL unless out of memory. */
json_t *dsq_cli_json_strn(const char *s, size_t n);
json_t *dsq_cli_json_str(const char *s); /* the same for a NUL-terminated s */
/* Writes root, one document and a newline, to stdout; DSQ_EXIT_OK or DSQ_EXIT_IO. */
int dsq_cli_json_print(const char *cmd, json_t *root, size_t flags);
/* The same to the file path (NULL or "-": stdout); DSQ_EXIT_OK, _IO or _INTERNAL. */
int dsq_cli_json_write(const char *cmd, json_t *root, size_t flags, const char *path);
/* "s" unless n is 1: "%zu shard%s". */
const char *dsq_cli_s(size_t n);

int dsq_cmd_convert(int argc, char **argv);
int dsq_cmd_inspect(int argc, char **argv);
int dsq_cmd_quantize(int argc, char **argv);
int dsq_cmd_ppl(int argc, char **argv);
int dsq_cmd_verify(int argc, char **argv);

#endif
