/* cli/cmd_check.c: `dsq check DIR`: rehash an output directory against its manifest.
 *
 * A converted checkpoint is large and gets moved (rsync, object storage, another
 * machine); the manifest dsq wrote beside it (stream/stream.h) lists every file
 * with its size and hash, so the copy can be proved whole without the source. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "stream/stream.h"

static const char usage_text[] =
    "usage: dsq check DIR [options]\n"
    "\n"
    "Rehashes every file that DIR/" DSQ_MANIFEST_NAME " lists (written by dsq convert)\n"
    "and compares size and xxh3 (the value `xxhsum -H3` prints). Exit 0 when every\n"
    "file is intact; 1 when one is missing or differs, or the run that wrote DIR did\n"
    "not finish; 3 when the manifest is missing or unreadable.\n"
    "\n"
    "options:\n"
    "  --json       one JSON document on stdout: {\"dir\", \"complete\", \"files\": [{\"name\",\n"
    "               \"size\", \"status\": \"ok\"|\"missing\"|\"mismatch\"|\"error\", \"detail\"}],\n"
    "               \"n_files\", \"n_bad\"}; the human lines go to stderr\n"
    "  -q, --quiet  print only the files that are not intact\n"
    "  -h, --help   this text\n"
    "\n"
    "examples:\n"
    "  dsq check out/DeepSeek-V3-bf16\n"
    "  dsq check /mnt/copy/DeepSeek-V3-bf16 --json | jq '.files[] | select(.status != \"ok\")'\n";

typedef struct check_out {
    FILE *human; /* NULL: quiet about intact files */
    FILE *err;
    int json;
    size_t n;
} check_out;

static const char *status_word(dsq_status st) {
    switch (st) {
    case DSQ_OK:
        return "ok";
    case DSQ_NOT_FOUND:
        return "missing";
    case DSQ_MISMATCH:
        return "mismatch";
    default:
        return "error";
    }
}

/* JSON string body: quotes, backslashes and control characters escaped */
static void put_json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s != '\0'; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* names from an edited manifest may hold anything: shown escaped, one line */
static void put_escaped(FILE *f, const char *s) {
    for (; *s != '\0'; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

static void report(void *user, const char *name, uint64_t size, dsq_status st,
                   const char *detail) {
    check_out *o = user;
    FILE *h = st == DSQ_OK ? o->human : o->err;
    if (h != NULL) {
        fprintf(h, "%-8s ", st == DSQ_OK ? "ok" : status_word(st));
        put_escaped(h, name);
        if (detail[0] != '\0') {
            fputs(": ", h);
            put_escaped(h, detail);
        }
        fputc('\n', h);
    }
    if (o->json) {
        printf("%s\n    {\"name\": ", o->n++ ? "," : "");
        put_json_str(stdout, name);
        printf(", \"size\": %llu, \"status\": \"%s\", \"detail\": ", (unsigned long long)size,
               status_word(st));
        put_json_str(stdout, detail);
        fputc('}', stdout);
    }
}

int dsq_cmd_check(int argc, char **argv) {
    const char *dir = NULL;
    int json = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if ((a[0] == '-' && a[1] != '\0') || dir != NULL) {
            fprintf(stderr, "dsq check: %s '%s'\nsee 'dsq check --help'\n",
                    a[0] == '-' ? "unknown option" : "unexpected argument", a);
            return DSQ_EXIT_USAGE;
        } else {
            dir = a;
        }
    }
    if (dir == NULL) {
        fprintf(stderr, "dsq check: expected DIR\nsee 'dsq check --help'\n");
        return DSQ_EXIT_USAGE;
    }
    /* with --json, stdout carries only the document */
    check_out o = {quiet ? NULL : (json ? stderr : stdout), stderr, json, 0};
    if (json) {
        printf("{\"dir\": ");
        put_json_str(stdout, dir);
        printf(", \"files\": [");
    }
    size_t n_files = 0, n_bad = 0;
    int complete = 0;
    dsq_err err = {0};
    const dsq_status st = dsq_stream_check_dir(dir, report, &o, &n_files, &n_bad, &complete, &err);
    if (json)
        printf("%s], \"complete\": %s, \"n_files\": %zu, \"n_bad\": %zu, \"error\": ",
               o.n ? "\n  " : "", complete ? "true" : "false", n_files, n_bad);
    if (st != DSQ_OK) {
        if (json) {
            put_json_str(stdout, err.text);
            printf("}\n");
        }
        fprintf(stderr, "dsq check: %s\n", err.text);
        return st == DSQ_NOMEM ? DSQ_EXIT_INTERNAL : DSQ_EXIT_INPUT;
    }
    if (json)
        printf("null}\n");
    FILE *h = json ? stderr : stdout;
    if (!complete)
        fprintf(stderr, "dsq check: warning: %s: the run that wrote it did not finish\n", dir);
    if (n_bad > 0)
        fprintf(stderr, "dsq check: %s: %zu of %zu files missing or different\n", dir, n_bad,
                n_files);
    else if (!quiet)
        fprintf(h, "%s: all %zu files intact\n", dir, n_files);
    return n_bad > 0 || !complete ? DSQ_EXIT_CHECK_FAILED : DSQ_EXIT_OK;
}
