/* cli/cmd_quantize.c: `dsq quantize IN OUT.gguf --type T`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/interrupt.h"
#include "core/file.h"
#include "cli/progress.h"
#include "convert/quantize_gguf.h"
#include "gguf_export/gguf_rules.h"

static const char usage_text[] =
    "usage: dsq quantize IN OUT.gguf --type T [options]\n"
    "\n"
    "Makes a llama.cpp GGUF from a Hugging Face checkpoint directory (F32, F16, BF16, or\n"
    "DeepSeek FP8 dequantized on the fly) in one streaming pass: the tensor names, metadata\n"
    "and tokenizer llama.cpp's convert_hf_to_gguf.py writes, each tensor's type by\n"
    "llama-quantize's rules for the preset, and block bytes identical to ggml's.\n"
    "Architectures: LlamaForCausalLM (llama), DeepseekV3ForCausalLM (deepseek2).\n"
    "IN may also be a GGUF file (any architecture), requantized as llama-quantize does:\n"
    "metadata kept, tensors whose type does not change copied as they are. A split\n"
    "GGUF is given by its first file, NAME-00001-of-0000N.gguf.\n"
    "\n"
    "  --type T                  a llama.cpp preset: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1\n"
    "                            Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K\n"
    "                            IQ4_NL IQ4_XS (Q3_K, Q4_K, Q5_K mean the _M presets); with\n"
    "                            --pure, every quantizable tensor gets that preset's type\n"
    "options:\n"
    "  --pure                    no per-tensor rules (llama-quantize --pure); norms, 1-D\n"
    "                            tensors and the MoE router stay F32 as always\n"
    "  --tensor-type RE=TYPE     tensors whose GGUF name matches the extended regex RE get\n"
    "                            TYPE (repeatable; first match wins)\n"
    "  --output-tensor-type T    type of output.weight\n"
    "  --token-embedding-type T  type of token_embd.weight\n"
    "  --mla-legacy              deepseek2: one attn_kv_b per layer (GGUFs for llama.cpp\n"
    "                            before the attn_k_b/attn_v_b split) instead of the split\n"
    "  --keep-mtp                deepseek2: keep the multi-token-prediction layer(s)\n"
    "                            (num_nextn_predict_layers), left out by default as\n"
    "                            llama.cpp's converter does, as the last block(s) with\n"
    "                            blk.N.nextn.* tensors and deepseek2.nextn_predict_layers\n"
    "                            (llama.cpp's NextN layout; a runtime that does not know\n"
    "                            nextn_predict_layers runs it as a normal layer and\n"
    "                            gives wrong output); no MTP layers: unchanged, a warning\n"
    "  --fp8-f32                 FP8 weights: quantize W x scale_inv as the F32 product;\n"
    "                            by default it is rounded to BF16 first, as DeepSeek's\n"
    "                            fp8_cast_bf16.py (and `dsq convert`) do, so the GGUF is\n"
    "                            the one llama.cpp makes from that BF16 checkpoint\n"
    "  --tokenizer-pre NAME      tokenizer.ggml.pre when dsq cannot tell (gpt-2, llama-bpe,\n"
    "                            deepseek-v3, ...)\n"
    "  --imatrix FILE            importance matrix from llama-imatrix (GGUF or legacy .dat),\n"
    "                            matched to tensors by GGUF name, as llama-quantize\n"
    "  --allow-requantize        GGUF input: requantize tensors that are already quantized\n"
    "                            (refused by default, as llama-quantize)\n"
    "  --split-max-size N[M|G]   split the output, llama.cpp style (OUT-00001-of-0000n.gguf),\n"
    "                            at most N bytes / MB (10^6) / GB (10^9) of tensor data each\n"
    "  --dry-run                 print each tensor's GGUF name, type, shape and bytes, and\n"
    "                            the total; write nothing\n"
    "  --threads N               compute threads (default: all cores)\n"
    "  --json                    print the summary (and with --dry-run the plan) as JSON\n"
    "  -q, --quiet               no progress bar, no summary\n"
    "  -h, --help                this text\n";

static void shape_str(const dsq_qz_tensor *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

static void print_json(const dsq_qz_summary *s, const char *out, int dry, int plan, double secs) {
    printf("{\"dry_run\": %s, \"arch\": \"%s\", \"ftype\": \"%s\", \"file_type\": %d, "
           "\"output\": \"%s\", \"tensors\": %zu, \"tensor_bytes\": %llu, \"file_bytes\": %llu, "
           "\"input_bytes\": %llu, \"splits\": %d, \"imatrix_tensors\": %zu, \"seconds\": %.3f",
           dry ? "true" : "false", s->arch, s->ftype, s->file_type, out, s->n_tensors,
           (unsigned long long)s->tensor_bytes, (unsigned long long)s->file_bytes,
           (unsigned long long)s->input_bytes, s->n_splits, s->imatrix_used, secs);
    if (plan) {
        printf(", \"plan\": [");
        for (size_t i = 0; i < s->n_tensors; i++) {
            const dsq_qz_tensor *t = &s->tensors[i];
            char sh[96];
            shape_str(t, sh, sizeof sh);
            printf("%s{\"name\": \"%s\", \"type\": \"%s\", \"ne\": %s, \"bytes\": %llu, "
                   "\"fallback\": %s}",
                   i ? ", " : "", t->name, dsq_dtype_name(t->type), sh,
                   (unsigned long long)t->nbytes, t->fallback ? "true" : "false");
        }
        printf("]");
    }
    printf("}\n");
}

static const char *need_value(int argc, char **argv, int *i, const char *opt) {
    const size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) == 0 && argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    fprintf(stderr, "dsq quantize: %s needs a value\n", opt);
    return NULL;
}

/* "N", "NM" (10^6) or "NG" (10^9), as gguf-split counts; 0 when malformed or 0. */
static uint64_t parse_size(const char *v) {
    char *end = NULL;
    if (*v < '0' || *v > '9')
        return 0;
    const unsigned long long n = strtoull(v, &end, 10);
    uint64_t mul = 1;
    if (*end == 'M' || *end == 'm')
        mul = 1000000u, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1000000000u, end++;
    if (*end != '\0' || n == 0 || n > UINT64_MAX / mul)
        return 0;
    return (uint64_t)n * mul;
}

static int is_opt(const char *a, const char *opt) {
    const size_t n = strlen(opt);
    return strncmp(a, opt, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

int dsq_cmd_quantize(int argc, char **argv) {
    const char *pos[2];
    int npos = 0, json = 0, quiet = 0, rc = DSQ_EXIT_OK;
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    const char **tt = calloc((size_t)argc + 1, sizeof *tt);
    if (tt == NULL)
        return DSQ_EXIT_INTERNAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            free(tt);
            return DSQ_EXIT_OK;
        } else if (is_opt(a, "--type")) {
            if ((o.type = v = need_value(argc, argv, &i, "--type")) == NULL)
                goto usage;
        } else if (is_opt(a, "--tensor-type")) {
            if ((v = need_value(argc, argv, &i, "--tensor-type")) == NULL)
                goto usage;
            tt[o.n_tensor_types++] = v;
        } else if (is_opt(a, "--output-tensor-type")) {
            if ((o.output_tensor_type = need_value(argc, argv, &i, "--output-tensor-type")) == NULL)
                goto usage;
        } else if (is_opt(a, "--token-embedding-type")) {
            if ((o.token_embedding_type = need_value(argc, argv, &i, "--token-embedding-type")) ==
                NULL)
                goto usage;
        } else if (is_opt(a, "--tokenizer-pre")) {
            if ((o.tokenizer_pre = need_value(argc, argv, &i, "--tokenizer-pre")) == NULL)
                goto usage;
        } else if (is_opt(a, "--threads")) {
            char *end = NULL;
            if ((v = need_value(argc, argv, &i, "--threads")) == NULL)
                goto usage;
            const long n = strtol(v, &end, 10);
            if (*end != '\0' || n < 1 || n > 4096) {
                fprintf(stderr, "dsq quantize: --threads needs a number from 1 to 4096\n");
                goto usage;
            }
            o.threads = (int)n;
        } else if (is_opt(a, "--imatrix")) {
            if ((o.imatrix = need_value(argc, argv, &i, "--imatrix")) == NULL)
                goto usage;
        } else if (is_opt(a, "--split-max-size")) {
            if ((v = need_value(argc, argv, &i, "--split-max-size")) == NULL)
                goto usage;
            if ((o.split_max_bytes = parse_size(v)) == 0) {
                fprintf(stderr, "dsq quantize: --split-max-size '%s': expected a positive "
                                "number of bytes, optionally followed by M or G\n", v);
                goto usage;
            }
        } else if (strcmp(a, "--allow-requantize") == 0) {
            o.allow_requantize = 1;
        } else if (strcmp(a, "--pure") == 0) {
            o.pure = 1;
        } else if (strcmp(a, "--mla-legacy") == 0) {
            o.mla_legacy = 1;
        } else if (strcmp(a, "--keep-mtp") == 0) {
            o.keep_mtp = 1;
        } else if (strcmp(a, "--fp8-f32") == 0) {
            o.fp8_f32 = 1;
        } else if (strcmp(a, "--dry-run") == 0) {
            o.dry_run = 1;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "dsq quantize: unknown option '%s'\n", a);
            goto usage;
        } else if (npos < 2) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "dsq quantize: too many arguments\n");
            goto usage;
        }
    }
    if (npos != 2 && !(npos == 1 && o.dry_run)) {
        fprintf(stderr, "dsq quantize: expected IN OUT.gguf\n");
        goto usage;
    }
    if (o.type == NULL) {
        fprintf(stderr, "dsq quantize: --type is required\n");
        goto usage;
    }
    o.tensor_types = tt;

    dsq_progress prog;
    dsq_progress_init(&prog, "quantize", quiet || json || o.dry_run);
    dsq_cli_log lg = {quiet || json, stderr, &prog};
    o.log = dsq_cli_log_cb;
    o.log_user = &lg;
    o.progress = dsq_progress_update;
    o.progress_user = &prog;

    dsq_qz_summary s;
    dsq_err err = {0};
    const char *out = npos == 2 ? pos[1] : "";
    /* Interrupts (cli/interrupt.h): quantize cannot stop cleanly yet (it
     * moves onto stream/'s engine with the GGUF sink), so a signal removes
     * this process's temporaries and exits 130/143. Killed runs' temporaries
     * beside the output are removed first. */
    static dsq_cli_interrupt intr;
    if (!o.dry_run) {
        dsq_cli_interrupt_start(&intr, 0);
        dsq_sweep_temps_beside(out, NULL, NULL);
    }
    const dsq_status st = dsq_quantize_gguf(pos[0], out, &o, &s, &err);
    dsq_progress_done(&prog);
    if (st != DSQ_OK) {
        rc = dsq_cli_fail(st, &err);
        free(tt);
        return rc == DSQ_EXIT_USAGE ? DSQ_EXIT_USAGE : rc;
    }
    const double secs = dsq_now() - prog.t0;
    if (json) {
        print_json(&s, out, o.dry_run, o.dry_run, secs);
    } else if (o.dry_run) {
        char b[32];
        for (size_t i = 0; i < s.n_tensors; i++) {
            const dsq_qz_tensor *t = &s.tensors[i];
            char sh[96];
            shape_str(t, sh, sizeof sh);
            printf("%-36s %-7s %-22s %12llu%s\n", t->name, dsq_dtype_name(t->type), sh,
                   (unsigned long long)t->nbytes, t->fallback ? "  (fallback)" : "");
        }
        dsq_format_bytes(s.file_bytes, b, sizeof b);
        printf("total: %zu tensors, %llu bytes of tensor data, file %llu bytes (%s), %s %s\n",
               s.n_tensors, (unsigned long long)s.tensor_bytes,
               (unsigned long long)s.file_bytes, b, s.arch, s.ftype);
        if (s.n_splits > 1 || o.split_max_bytes > 0)
            printf("split into %d files\n", s.n_splits);
    } else if (!quiet) {
        char b[32], r[32];
        dsq_format_bytes(s.file_bytes, b, sizeof b);
        dsq_format_bytes(secs > 0 ? (uint64_t)((double)s.input_bytes / secs) : 0, r, sizeof r);
        printf("quantized %zu tensors to %s (%s) -> %s%s, %s in %.2f s (%s/s of input)\n",
               s.n_tensors, s.ftype, s.arch, out, o.split_max_bytes ? " (split)" : "", b, secs,
               r);
        if (o.split_max_bytes > 0)
            printf("%d split files\n", s.n_splits);
        if (o.imatrix != NULL)
            printf("imatrix used for %zu tensors\n", s.imatrix_used);
    }
    dsq_qz_summary_free(&s);
    free(tt);
    return DSQ_EXIT_OK;
usage:
    fputs(usage_text, stderr);
    free(tt);
    return DSQ_EXIT_USAGE;
}
