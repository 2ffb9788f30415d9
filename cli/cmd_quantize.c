/* cli/cmd_quantize.c: `dsq quantize IN OUT.gguf --type T`: options, the summary, the
 * --dry-run table, the --json document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "convert/quantize_gguf.h"
#include "core/parse.h"
#include "gguf_export/gguf_rules.h"

#define CMD "quantize"

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
    "  --json                    one JSON document on stdout: the summary, and with\n"
    "                            --dry-run the plan; human lines go to stderr\n"
    "  -q, --quiet               no progress bar, no summary, no notes\n"
    "  -h, --help                this text\n"
    "\n"
    "examples:\n"
    "  dsq quantize DeepSeek-V3/ ds-v3-Q4_K_M.gguf --type Q4_K_M\n"
    "  dsq quantize llama-f16.gguf llama-Q4_K_M.gguf --type Q4_K_M --imatrix imatrix.gguf\n"
    "  dsq quantize DeepSeek-V3/ --type Q4_K_M --dry-run --json   # the plan, nothing written\n";

static void shape_str(const dsq_qz_tensor *t, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

static int print_json(const dsq_qz_summary *s, const char *out, int dry, double secs) {
    json_t *root = json_pack(
        "{s:b,s:s,s:s,s:i,s:o,s:I,s:I,s:I,s:I,s:i,s:I,s:f}", "dry_run", dry, "arch", s->arch,
        "ftype", s->ftype, "file_type", s->file_type, "output", dsq_cli_json_str(out),
        "tensors", (json_int_t)s->n_tensors, "tensor_bytes", (json_int_t)s->tensor_bytes,
        "file_bytes", (json_int_t)s->file_bytes, "input_bytes", (json_int_t)s->input_bytes,
        "splits", s->n_splits, "imatrix_tensors", (json_int_t)s->imatrix_used, "seconds", secs);
    if (root != NULL && dry) {
        json_t *plan = json_array();
        for (size_t i = 0; i < s->n_tensors; i++) {
            const dsq_qz_tensor *t = &s->tensors[i];
            json_t *ne = json_array();
            for (uint32_t d = 0; d < t->n_dims; d++)
                json_array_append_new(ne, json_integer(t->ne[d]));
            json_array_append_new(
                plan, json_pack("{s:o,s:s,s:o,s:I,s:b}", "name",
                                dsq_cli_json_strn(t->name, strnlen(t->name, sizeof t->name)),
                                "type", dsq_dtype_name(t->type), "ne", ne, "bytes",
                                (json_int_t)t->nbytes, "fallback", t->fallback));
        }
        json_object_set_new(root, "plan", plan);
    }
    const int rc = dsq_cli_json_print(CMD, root, 0);
    json_decref(root);
    return rc;
}

static const char *need_value(int argc, char **argv, int *i, const char *opt) {
    const size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) == 0 && argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int is_opt(const char *a, const char *opt) {
    const size_t n = strlen(opt);
    return strncmp(a, opt, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

/* The --dry-run table: a line per tensor, then the totals. */
static void print_plan(const dsq_cli *c, const dsq_qz_summary *s, int split) {
    FILE *out = dsq_cli_human(c);
    char b[32];
    for (size_t i = 0; i < s->n_tensors; i++) {
        const dsq_qz_tensor *t = &s->tensors[i];
        char sh[96];
        shape_str(t, sh, sizeof sh);
        dsq_cli_put_escaped(out, t->name, 36);
        fprintf(out, " %-7s %-22s %12llu%s\n", dsq_dtype_name(t->type), sh,
                (unsigned long long)t->nbytes, t->fallback ? "  (fallback)" : "");
    }
    dsq_format_bytes(s->file_bytes, b, sizeof b);
    fprintf(out, "total: %zu tensor%s, %llu bytes of tensor data, file %llu bytes (%s), %s %s\n",
            s->n_tensors, dsq_cli_s(s->n_tensors), (unsigned long long)s->tensor_bytes,
            (unsigned long long)s->file_bytes, b, s->arch, s->ftype);
    if (split)
        fprintf(out, "split into %d file%s\n", s->n_splits, dsq_cli_s((size_t)s->n_splits));
}

static void print_summary(const dsq_cli *c, const dsq_qz_summary *s, const dsq_qz_opts *o,
                          const char *out, double secs) {
    char b[32], r[32];
    dsq_format_bytes(s->file_bytes, b, sizeof b);
    dsq_format_bytes(secs > 0 ? (uint64_t)((double)s->input_bytes / secs) : 0, r, sizeof r);
    char split[48] = "";
    if (o->split_max_bytes > 0)
        snprintf(split, sizeof split, " (%d split file%s)", s->n_splits,
                 dsq_cli_s((size_t)s->n_splits));
    dsq_cli_say(c, "quantized %zu tensor%s to %s (%s) -> %s%s, %s in %.2f s (%s/s of input)",
                s->n_tensors, dsq_cli_s(s->n_tensors), s->ftype, s->arch, out, split, b, secs, r);
    if (o->imatrix != NULL)
        dsq_cli_say(c, "imatrix used for %zu tensor%s", s->imatrix_used,
                    dsq_cli_s(s->imatrix_used));
}

/* Parses argv into o (tt: room for the --tensor-type values) and pos; 0 or the exit code. */
static int parse_args(int argc, char **argv, dsq_qz_opts *o, const char **tt, dsq_cli *c,
                      const char **pos, int *npos) {
    dsq_err err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char **str = NULL; /* an option whose value is kept as given */
        if (is_opt(a, "--type"))
            str = &o->type;
        else if (is_opt(a, "--output-tensor-type"))
            str = &o->output_tensor_type;
        else if (is_opt(a, "--token-embedding-type"))
            str = &o->token_embedding_type;
        else if (is_opt(a, "--tokenizer-pre"))
            str = &o->tokenizer_pre;
        else if (is_opt(a, "--imatrix"))
            str = &o->imatrix;
        else if (is_opt(a, "--tensor-type"))
            str = &tt[o->n_tensor_types];
        if (str != NULL || is_opt(a, "--threads") || is_opt(a, "--split-max-size")) {
            const char *opt = a;
            char name[32];
            if (strchr(a, '=') != NULL) {
                snprintf(name, sizeof name, "%.*s", (int)(strchr(a, '=') - a), a);
                opt = name;
            }
            if ((v = need_value(argc, argv, &i, opt)) == NULL)
                return dsq_cli_usage(CMD, "%s needs a value", opt);
            if (str == &tt[o->n_tensor_types])
                o->n_tensor_types++;
            if (str != NULL)
                *str = v;
            else if (strcmp(opt, "--threads") == 0 && dsq_parse_threads(v, &o->threads, &err))
                return dsq_cli_bad_value(CMD, opt, &err);
            else if (strcmp(opt, "--split-max-size") == 0 &&
                     dsq_parse_size(v, &o->split_max_bytes, &err))
                return dsq_cli_bad_value(CMD, opt, &err);
        } else if (strcmp(a, "--allow-requantize") == 0) {
            o->allow_requantize = 1;
        } else if (strcmp(a, "--pure") == 0) {
            o->pure = 1;
        } else if (strcmp(a, "--mla-legacy") == 0) {
            o->mla_legacy = 1;
        } else if (strcmp(a, "--keep-mtp") == 0) {
            o->keep_mtp = 1;
        } else if (strcmp(a, "--fp8-f32") == 0) {
            o->fp8_f32 = 1;
        } else if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1;
        } else if (strcmp(a, "--json") == 0) {
            c->json = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            c->quiet = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return dsq_cli_usage(CMD, "unknown option '%s'", a);
        } else if (*npos < 2) {
            pos[(*npos)++] = a;
        } else {
            return dsq_cli_usage(CMD, "too many arguments: '%s'", a);
        }
    }
    if (*npos != 2 && !(*npos == 1 && o->dry_run))
        return dsq_cli_usage(CMD, "expected IN OUT.gguf");
    if (o->type == NULL)
        return dsq_cli_usage(CMD, "--type is required");
    return 0;
}

int dsq_cmd_quantize(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    int npos = 0, rc = DSQ_EXIT_OK;
    dsq_cli c = {.cmd = CMD, .notes_to_stderr = 1};
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        }
    const char **tt = calloc((size_t)argc + 1, sizeof *tt);
    if (tt == NULL)
        return DSQ_EXIT_INTERNAL;
    o.tensor_types = tt;
    if ((rc = parse_args(argc, argv, &o, tt, &c, pos, &npos)) != 0 ||
        (rc = dsq_cli_need_input(CMD, pos[0])) != 0 ||
        (o.imatrix != NULL && (rc = dsq_cli_need_input(CMD, o.imatrix)) != 0) ||
        (!o.dry_run && (rc = dsq_cli_check_out_file(CMD, pos[1])) != 0)) {
        free(tt);
        return rc;
    }

    dsq_progress prog;
    dsq_progress_init(&prog, "quantize", c.quiet || c.json || o.dry_run);
    c.prog = &prog;
    o.log = dsq_cli_log_cb;
    o.log_user = &c;
    o.progress = dsq_progress_update;
    o.progress_user = &prog;

    dsq_qz_summary s;
    dsq_err err = {0};
    const char *out = npos == 2 ? pos[1] : "";
    const dsq_status st = dsq_quantize_gguf(pos[0], out, &o, &s, &err);
    dsq_progress_done(&prog);
    if (st != DSQ_OK) {
        free(tt);
        return dsq_cli_fail(CMD, st, &err);
    }
    const double secs = dsq_now() - prog.t0;
    if (o.dry_run)
        print_plan(&c, &s, s.n_splits > 1 || o.split_max_bytes > 0);
    else
        print_summary(&c, &s, &o, out, secs);
    if (c.json)
        rc = print_json(&s, out, o.dry_run, secs);
    dsq_qz_summary_free(&s);
    free(tt);
    return rc;
}
