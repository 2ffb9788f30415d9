/* cli/cmd_convert.c: `dsq convert fp8 bf16 IN_DIR OUT_DIR`: options, the summary line, the
 * --json document (with --dry-run, every file of the plan). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "convert/fp8_bf16.h"
#include "core/parse.h"

#define CMD "convert"

static const char usage_text[] =
    "usage: dsq convert fp8 bf16 IN_DIR OUT_DIR [options]\n"
    "\n"
    "Dequantizes a DeepSeek-V3/V3.1/R1 style FP8 checkpoint (F8_E4M3 weights with\n"
    "F32 *_scale_inv block scales) to BF16, bit for bit what DeepSeek's\n"
    "fp8_cast_bf16.py computes, on the CPU, streaming, in bounded memory.\n"
    "Other tensors are copied unchanged; scales are dropped; the index, config.json\n"
    "(without quantization_config) and every other file are written too.\n"
    "\n"
    "options:\n"
    "  --threads N            compute threads (default: the cores but one, which is\n"
    "                         left to the writer thread)\n"
    "  --resume               skip shards that dsq-manifest.json shows complete and intact\n"
    "  --dry-run              validate and print what would be written; write nothing\n"
    "  --allow-missing-scale  keep a FP8 weight without a scale in FP8 (the reference\n"
    "                         script's behaviour) instead of failing\n"
    "  --json                 one JSON document on stdout: the summary, and with\n"
    "                         --dry-run every file of the plan (path, source, bytes);\n"
    "                         human lines go to stderr\n"
    "  -q, --quiet            no progress bar, no summary\n"
    "  -h, --help             this text\n"
    "\n"
    "examples:\n"
    "  dsq convert fp8 bf16 DeepSeek-V3/ DeepSeek-V3-bf16/\n"
    "  dsq convert fp8 bf16 DeepSeek-V3/ DeepSeek-V3-bf16/ --dry-run --json\n"
    "  dsq convert fp8 bf16 DeepSeek-V3/ DeepSeek-V3-bf16/ --resume   # after an interruption\n";

/* --dry-run --json: the plan's files, as the library reports them */
static void plan_cb(void *user, const char *out_path, const char *source, uint64_t bytes) {
    json_t *files = user, *f = json_object();
    json_object_set_new(f, "path", dsq_cli_json_str(out_path));
    json_object_set_new(f, "source",
                        source != NULL ? dsq_cli_json_str(source) : json_null());
    json_object_set_new(f, "bytes", bytes == DSQ_FP8_SIZE_UNKNOWN ? json_null()
                                                                   : json_integer((json_int_t)bytes));
    json_array_append_new(files, f);
}

static int print_json(const dsq_fp8_summary *s, const char *out, int dry, json_t *files,
                      double secs) {
    json_t *root = json_pack(
        "{s:b,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "dry_run", dry, "output",
        dsq_cli_json_str(out), "tensors_converted", (json_int_t)s->tensors_converted,
        "tensors_copied", (json_int_t)s->tensors_copied, "tensors_kept_fp8",
        (json_int_t)s->tensors_kept_fp8, "scales_dropped", (json_int_t)s->scales_dropped,
        "shards_planned", (json_int_t)s->shards_planned, "shards_written",
        (json_int_t)s->shards_written, "shards_resumed", (json_int_t)s->shards_resumed,
        "files_copied", (json_int_t)s->files_copied, "bytes_planned",
        (json_int_t)s->bytes_planned, "bytes_written", (json_int_t)s->bytes_written, "seconds",
        secs);
    if (root != NULL && files != NULL)
        json_object_set(root, "files", files);
    const int rc = dsq_cli_json_print(CMD, root, 0);
    json_decref(root);
    return rc;
}

static void print_summary(const dsq_cli *c, const dsq_fp8_summary *s, int dry, const char *out,
                          double secs) {
    char b[32], r[32];
    dsq_format_bytes(dry ? s->bytes_planned : s->bytes_written, b, sizeof b);
    dsq_format_bytes(secs > 0 ? (uint64_t)((double)s->bytes_written / secs) : 0, r, sizeof r);
    if (dry) {
        dsq_cli_say(c, "dry run: would write %zu shard%s (%s): convert %zu FP8 tensor%s to BF16, "
                    "copy %zu, drop %zu scale%s; copy %zu other file%s",
                    s->shards_planned, dsq_cli_s(s->shards_planned), b, s->tensors_converted,
                    dsq_cli_s(s->tensors_converted), s->tensors_copied, s->scales_dropped,
                    dsq_cli_s(s->scales_dropped), s->files_copied, dsq_cli_s(s->files_copied));
    } else if (s->shards_written == 0 && s->shards_resumed > 0) {
        dsq_cli_say(c, "all %zu shard%s already intact, no shard written (--resume); copied %zu "
                    "other file%s -> %s",
                    s->shards_resumed, dsq_cli_s(s->shards_resumed), s->files_copied,
                    dsq_cli_s(s->files_copied), out);
    } else {
        char resumed[64] = "";
        if (s->shards_resumed > 0)
            snprintf(resumed, sizeof resumed, ", %zu already intact (--resume)",
                     s->shards_resumed);
        dsq_cli_say(c, "converted %zu FP8 tensor%s to BF16, copied %zu, dropped %zu scale%s%s; "
                    "wrote %zu shard%s (%s) in %.2f s (%s/s)%s; copied %zu other file%s -> %s",
                    s->tensors_converted, dsq_cli_s(s->tensors_converted), s->tensors_copied,
                    s->scales_dropped, dsq_cli_s(s->scales_dropped),
                    s->tensors_kept_fp8 ? " (some kept in FP8)" : "", s->shards_written,
                    dsq_cli_s(s->shards_written), b, secs, r, resumed, s->files_copied,
                    dsq_cli_s(s->files_copied), out);
    }
}

int dsq_cmd_convert(int argc, char **argv) {
    const char *pos[4];
    int npos = 0;
    dsq_cli c = {.cmd = CMD};
    dsq_fp8_opts o;
    dsq_err err = {0};
    memset(&o, 0, sizeof o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        } else if (strcmp(a, "--threads") == 0 || strncmp(a, "--threads=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
            if (dsq_parse_threads(v, &o.threads, &err) != DSQ_OK)
                return dsq_cli_bad_value(CMD, "--threads", &err);
        } else if (strcmp(a, "--resume") == 0) {
            o.resume = 1;
        } else if (strcmp(a, "--dry-run") == 0) {
            o.dry_run = 1;
        } else if (strcmp(a, "--allow-missing-scale") == 0) {
            o.keep_unscaled_fp8 = 1;
        } else if (strcmp(a, "--json") == 0) {
            c.json = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            c.quiet = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return dsq_cli_usage(CMD, "unknown option '%s'", a);
        } else if (npos < 4) {
            pos[npos++] = a;
        } else {
            return dsq_cli_usage(CMD, "too many arguments: '%s'", a);
        }
    }
    if (npos != 4)
        return dsq_cli_usage(CMD, "expected fp8 bf16 IN_DIR OUT_DIR");
    if (strcmp(pos[0], "fp8") != 0 || strcmp(pos[1], "bf16") != 0)
        return dsq_cli_usage(CMD, "%s -> %s is not supported (only fp8 bf16)", pos[0], pos[1]);
    int rc = dsq_cli_need_input(CMD, pos[2]);
    if (rc != 0)
        return rc;

    dsq_progress prog;
    dsq_progress_init(&prog, "convert", c.quiet || o.dry_run);
    c.prog = &prog;
    o.log = dsq_cli_log_cb;
    o.log_user = &c;
    o.progress = dsq_progress_update;
    o.progress_user = &prog;
    json_t *files = NULL;
    if (c.json && o.dry_run) {
        files = json_array();
        o.plan = plan_cb;
        o.plan_user = files;
    }

    dsq_fp8_summary s;
    const dsq_status st = dsq_convert_fp8_bf16(pos[2], pos[3], &o, &s, &err);
    dsq_progress_done(&prog);
    if (st != DSQ_OK) {
        json_decref(files);
        return dsq_cli_fail(CMD, st, &err);
    }
    const double secs = dsq_now() - prog.t0;
    print_summary(&c, &s, o.dry_run, pos[3], secs);
    if (c.json)
        rc = print_json(&s, pos[3], o.dry_run, files, secs);
    json_decref(files);
    return rc;
}
