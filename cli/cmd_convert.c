/* cli/cmd_convert.c: `dsq convert fp8 bf16 IN_DIR OUT_DIR`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/interrupt.h"
#include "cli/progress.h"
#include "convert/fp8_bf16.h"

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
    "  --threads N            compute threads (default: all cores)\n"
    "  --resume               skip shards that dsq-manifest.json shows complete, intact\n"
    "                         and made from the same source bytes\n"
    "  --force                write into a non-empty OUT_DIR, replacing same-named files\n"
    "  --dry-run              validate and print what would be written; write nothing\n"
    "  --allow-missing-scale  keep a FP8 weight without a scale in FP8 (the reference\n"
    "                         script's behaviour) instead of failing\n"
    "  --json                 print the summary as JSON on stdout\n"
    "  -q, --quiet            no progress bar, no summary\n"
    "  -h, --help             this text\n";

int dsq_cmd_convert(int argc, char **argv) {
    const char *pos[4];
    int npos = 0, json = 0, quiet = 0;
    dsq_fp8_opts o;
    memset(&o, 0, sizeof o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        } else if (strcmp(a, "--threads") == 0 || strncmp(a, "--threads=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
            char *end = NULL;
            const long n = v ? strtol(v, &end, 10) : -1;
            if (v == NULL || *end != '\0' || n < 1 || n > 4096) {
                fprintf(stderr, "dsq convert: --threads needs a number from 1 to 4096\n");
                return DSQ_EXIT_USAGE;
            }
            o.threads = (int)n;
        } else if (strcmp(a, "--resume") == 0) {
            o.resume = 1;
        } else if (strcmp(a, "--force") == 0) {
            o.force = 1;
        } else if (strcmp(a, "--dry-run") == 0) {
            o.dry_run = 1;
        } else if (strcmp(a, "--allow-missing-scale") == 0) {
            o.keep_unscaled_fp8 = 1;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "dsq convert: unknown option '%s'\n%s", a, usage_text);
            return DSQ_EXIT_USAGE;
        } else if (npos < 4) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "dsq convert: too many arguments\n%s", usage_text);
            return DSQ_EXIT_USAGE;
        }
    }
    if (npos != 4) {
        fprintf(stderr, "dsq convert: expected FROM TO IN_DIR OUT_DIR\n%s", usage_text);
        return DSQ_EXIT_USAGE;
    }
    if (strcmp(pos[0], "fp8") != 0 || strcmp(pos[1], "bf16") != 0) {
        fprintf(stderr, "dsq convert: %s -> %s is not supported (only fp8 bf16)\n", pos[0], pos[1]);
        return DSQ_EXIT_USAGE;
    }

    dsq_progress prog;
    dsq_progress_init(&prog, "convert", quiet || o.dry_run);
    dsq_cli_log lg = {quiet || json, stdout, &prog};
    o.log = dsq_cli_log_cb;
    o.log_user = &lg;
    o.progress = dsq_progress_update;
    o.progress_user = &prog;

    /* static: the watcher thread may still look at it while the process exits */
    static dsq_cli_interrupt intr;
    if (!o.dry_run && dsq_cli_interrupt_start(&intr, 1) == 0)
        o.cancel = &intr.cancel;
    dsq_fp8_summary s;
    dsq_err err = {0};
    const dsq_status st = dsq_convert_fp8_bf16(pos[2], pos[3], &o, &s, &err);
    dsq_progress_done(&prog);
    if (st == DSQ_CANCELLED && dsq_cli_interrupt_exit_code(&intr) != 0) {
        fprintf(stderr, "dsq convert: interrupted; temporary files removed, %s is not complete\n",
                pos[3]);
        return dsq_cli_interrupt_exit_code(&intr);
    }
    if (st != DSQ_OK)
        return dsq_cli_fail(st, &err);
    const double secs = dsq_now() - prog.t0;
    if (json) {
        printf("{\"dry_run\": %s, \"tensors_converted\": %zu, \"tensors_copied\": %zu, "
               "\"tensors_kept_fp8\": %zu, \"scales_dropped\": %zu, \"shards_written\": %zu, "
               "\"shards_resumed\": %zu, \"files_copied\": %zu, \"bytes_planned\": %llu, "
               "\"bytes_written\": %llu, \"seconds\": %.3f}\n",
               o.dry_run ? "true" : "false", s.tensors_converted, s.tensors_copied,
               s.tensors_kept_fp8, s.scales_dropped, s.shards_written, s.shards_resumed,
               s.files_copied, (unsigned long long)s.bytes_planned,
               (unsigned long long)s.bytes_written, secs);
    } else if (!quiet) {
        char b[32], r[32];
        dsq_format_bytes(o.dry_run ? s.bytes_planned : s.bytes_written, b, sizeof b);
        dsq_format_bytes(secs > 0 ? (uint64_t)((double)s.bytes_written / secs) : 0, r, sizeof r);
        if (o.dry_run)
            printf("dry run: would convert %zu FP8 tensors to BF16, copy %zu, drop %zu scales; "
                   "%zu shards, %s\n",
                   s.tensors_converted, s.tensors_copied, s.scales_dropped,
                   s.shards_planned, b);
        else
            printf("converted %zu FP8 tensors to BF16, copied %zu, dropped %zu scales%s; "
                   "wrote %zu shards (%s) in %.2f s (%s/s)%s; copied %zu other files -> %s\n",
                   s.tensors_converted, s.tensors_copied, s.scales_dropped,
                   s.tensors_kept_fp8 ? " (some kept in FP8)" : "", s.shards_written, b, secs, r,
                   s.shards_resumed ? ", resumed past the others" : "", s.files_copied, pos[3]);
    }
    return DSQ_EXIT_OK;
}
