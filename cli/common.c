/* cli/common.c: the messages every command prints (cli/cli.h): status to exit code,
 * the prefixes, usage errors, missing inputs, the library's log lines, escaping. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/file.h"

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

/* Messages quote names taken from input files: a control character in one
 * (a newline, an ANSI escape) is shown escaped, so the message stays one line
 * and cannot drive the terminal. */
void dsq_cli_put_escaped(FILE *out, const char *s, int width) {
    int col = 0;
    for (; *s != '\0'; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            col += fprintf(out, "\\x%02x", c);
        else
            fputc(c, out), col++;
    }
    for (; col < width; col++)
        fputc(' ', out);
}

static void clear_bar(const dsq_cli *c) {
    if (c != NULL && c->prog != NULL && c->prog->enabled)
        fprintf(stderr, "\r\033[K");
}

/* "dsq CMD: " + the formatted text, escaped, + tail, one line on stderr */
static void vline(const char *cmd, const char *what, const char *tail, const char *fmt,
                  va_list ap) __attribute__((format(printf, 4, 0)));
static void vline(const char *cmd, const char *what, const char *tail, const char *fmt,
                  va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "dsq%s%s: %s", cmd ? " " : "", cmd ? cmd : "", what);
    dsq_cli_put_escaped(stderr, msg, 0);
    fprintf(stderr, "%s\n", tail);
}

FILE *dsq_cli_human(const dsq_cli *c) { return c->json ? stderr : stdout; }

void dsq_cli_say(const dsq_cli *c, const char *fmt, ...) {
    if (c->quiet)
        return;
    clear_bar(c);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(dsq_cli_human(c), fmt, ap);
    va_end(ap);
    fputc('\n', dsq_cli_human(c));
}

void dsq_cli_warn(const dsq_cli *c, const char *fmt, ...) {
    clear_bar(c);
    va_list ap;
    va_start(ap, fmt);
    vline(c->cmd, "warning: ", "", fmt, ap);
    va_end(ap);
}

void dsq_cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vline(cmd, "", "", fmt, ap);
    va_end(ap);
}

int dsq_cli_usage(const char *cmd, const char *fmt, ...) {
    char tail[64];
    snprintf(tail, sizeof tail, "; see 'dsq%s%s --help'", cmd ? " " : "", cmd ? cmd : "");
    va_list ap;
    va_start(ap, fmt);
    vline(cmd, "", tail, fmt, ap);
    va_end(ap);
    return DSQ_EXIT_USAGE;
}

int dsq_cli_bad_value(const char *cmd, const char *opt, const dsq_err *err) {
    return dsq_cli_usage(cmd, "%s: %s", opt, err->text);
}

int dsq_cli_fail(const char *cmd, dsq_status st, const dsq_err *err) {
    if (err != NULL && err->code != DSQ_OK && err->text[0] != '\0')
        dsq_cli_error(cmd, "%s", err->text);
    else
        dsq_cli_error(cmd, "%s", dsq_status_str(st));
    return dsq_cli_exit_code(st);
}

int dsq_cli_need_input(const char *cmd, const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 || (errno != ENOENT && errno != ENOTDIR))
        return 0; /* other failures (permissions) are the reader's to name */
    dsq_cli_error(cmd, "%s: no such file or directory", path);
    return DSQ_EXIT_INPUT;
}

int dsq_cli_check_out_file(const char *cmd, const char *path) {
    dsq_err err = {0};
    const dsq_status st = dsq_check_out_file(path, &err);
    return st == DSQ_OK ? 0 : dsq_cli_fail(cmd, st, &err);
}

void dsq_cli_log_cb(void *user, dsq_log_level lvl, const char *msg) {
    const dsq_cli *c = user;
    if (lvl == DSQ_LOG_WARN) {
        dsq_cli_warn(c, "%s", msg);
    } else if (!c->quiet) {
        clear_bar(c);
        if (c->notes_to_stderr) {
            dsq_cli_error(c->cmd, "note: %s", msg);
        } else {
            dsq_cli_put_escaped(dsq_cli_human(c), msg, 0);
            fputc('\n', dsq_cli_human(c));
        }
    }
}

json_t *dsq_cli_json_strn(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j != NULL)
        return j;
    char *b = malloc(4 * n + 1);
    size_t o = 0;
    if (b == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x80 || ch == 0)
            o += (size_t)snprintf(b + o, 5, "\\x%02x", ch);
        else
            b[o++] = (char)ch;
    }
    j = json_stringn(b, o);
    free(b);
    return j;
}

json_t *dsq_cli_json_str(const char *s) { return dsq_cli_json_strn(s, strlen(s)); }

int dsq_cli_json_print(const char *cmd, json_t *root, size_t flags) {
    if (root == NULL) {
        dsq_cli_error(cmd, "out of memory");
        return DSQ_EXIT_INTERNAL;
    }
    if (json_dumpf(root, stdout, flags) != 0 || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0) {
        dsq_cli_error(cmd, "<stdout>: %s", strerror(errno ? errno : EIO));
        return DSQ_EXIT_IO;
    }
    return DSQ_EXIT_OK;
}

int dsq_cli_json_write(const char *cmd, json_t *root, size_t flags, const char *path) {
    if (path == NULL || strcmp(path, "-") == 0)
        return dsq_cli_json_print(cmd, root, flags);
    if (root == NULL) {
        dsq_cli_error(cmd, "out of memory");
        return DSQ_EXIT_INTERNAL;
    }
    errno = 0;
    FILE *out = fopen(path, "w");
    int bad = out == NULL || json_dumpf(root, out, flags) != 0 || fputc('\n', out) == EOF;
    if (out != NULL && fclose(out) != 0)
        bad = 1;
    if (bad) {
        dsq_cli_error(cmd, "%s: %s", path, strerror(errno ? errno : EIO));
        return DSQ_EXIT_IO;
    }
    return DSQ_EXIT_OK;
}

const char *dsq_cli_s(size_t n) { return n == 1 ? "" : "s"; }
