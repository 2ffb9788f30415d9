/* cli/cmd_verify.c: `dsq verify --ref REF --model CAND ...`, a CI accuracy
 * gate: perplexity of both, KL divergence of CAND from REF, top-1 agreement,
 * thresholds, exit 0 (pass) / 1 (a threshold crossed). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/parse.h"
#include "verify/kld.h"
#include "verify/model.h"
#include "verify/ppl.h"

#define CMD "verify"

static const char usage_text[] =
    "usage: dsq verify --ref REF --model CAND (--text FILE | --tokens FILE) [options]\n"
    "       dsq verify --load-ref FILE --model CAND (--text FILE | --tokens FILE) [options]\n"
    "\n"
    "Runs REF and CAND on the same windows (llama-perplexity's: --ctx tokens each,\n"
    "the first set to BOS, the second half scored) and reports the perplexity of\n"
    "each and their ratio, the KL divergence of CAND from REF per scored position\n"
    "(mean and 99th percentile) and how often their top-1 tokens agree. Models are\n"
    "Hugging Face checkpoint directories or GGUF files (a split GGUF given by its\n"
    "first file, NAME-00001-of-0000N.gguf). KLD is computed over REF's\n"
    "top-K tokens (--ref-topk) plus one bin for the rest of the vocabulary (a lower\n"
    "bound of the full KLD; the same whether REF runs live or from --load-ref).\n"
    "\n"
    "options:\n"
    "  --ref REF             the reference model\n"
    "  --model CAND          the model to check (required)\n"
    "  --text FILE           text, tokenized with REF's tokenizer (CAND's with\n"
    "                        --load-ref)\n"
    "  --tokens FILE         token ids, one per line\n"
    "  --ctx N               window size (default 512)\n"
    "  --chunks K            only the first K windows\n"
    "  --max-ppl-ratio R     fail when ppl(CAND) / ppl(REF) > R\n"
    "  --max-kld K           fail when the mean KLD > K (nats)\n"
    "  --max-kld-p99 K       fail when the 99th-percentile KLD > K\n"
    "  --min-top1 P          fail when the top-1 agreement < P (a fraction, 0..1)\n"
    "  --json                print the result as JSON on stdout, the report on stderr\n"
    "  --json-out FILE       write that document to FILE (the report as usual)\n"
    "  --save-ref FILE       keep REF's top-K logits and log-sum-exp per position\n"
    "                        (16 + 8K bytes a position) for --load-ref\n"
    "  --ref-topk K          K, the reference logits kept per position (default 32,\n"
    "                        at most 4096): a larger K brings KLD closer to the\n"
    "                        full-vocabulary value, at 8 bytes a position each\n"
    "  --load-ref FILE       use a --save-ref file instead of running REF; the\n"
    "                        windows (--ctx, --chunks) are the file's\n"
    "  --stream-layers       advance every window one layer at a time, loading only\n"
    "                        that layer's weights (memory: the largest layer plus\n"
    "                        the activations); the same numbers\n"
    "  --stream-windows N    with --stream-layers (implied): at most N windows a pass\n"
    "                        (activations N x ctx x hidden floats), every layer read\n"
    "                        again each pass (default: one pass)\n"
    "  --threads N           compute threads (default: all cores)\n"
    "  --fp8-f32             FP8 weights: W x scale_inv in F32, not rounded to BF16\n"
    "  -q, --quiet           no progress\n"
    "  -h, --help            this text\n"
    "\n"
    "exit: 0 every given threshold holds, 1 one is crossed (named on stderr and in\n"
    "the JSON's \"failed\"), 2 usage, 3 bad input, 4 I/O, 5 internal.\n"
    "\n"
    "examples:\n"
    "  dsq verify --ref DeepSeek-V3/ --model ds-v3-Q4_K_M.gguf --text wiki.test.raw \\\n"
    "      --max-ppl-ratio 1.02 --max-kld 0.05 --min-top1 0.9\n"
    "  dsq verify --ref tiny-llama/ --model q.gguf --tokens eval.tokens.txt --save-ref ref.bin\n"
    "  dsq verify --load-ref ref.bin --model q.gguf --tokens eval.tokens.txt --json > v.json\n";

typedef struct vprog {
    dsq_progress bar;
    const char *what;
    const char *unit; /* "chunk", or "layer" when streaming */
} vprog;

static void progress_cb(void *user, uint64_t done, uint64_t total) {
    vprog *p = user;
    if (!p->bar.enabled)
        return;
    fprintf(stderr, "\r\033[K%s: %s %llu/%llu", p->what, p->unit, (unsigned long long)done,
            (unsigned long long)total);
    fflush(stderr);
}

/* Opens a model; prints the failure and returns its exit code, or 0. */
static int open_model(const char *path, long threads, int fp8_f32, int lazy, dsq_model **m) {
    dsq_model_opts mo;
    dsq_err err = {0};
    memset(&mo, 0, sizeof mo);
    mo.nthreads = threads;
    mo.source.fp8_no_bf16_round = fp8_f32;
    mo.lazy = lazy;
    const dsq_status st = dsq_model_open(m, path, &mo, &err);
    return st == DSQ_OK ? 0 : dsq_cli_fail(CMD, st, &err);
}

static int tokenize(const dsq_model *m, const char *text_path, int32_t **ids, int64_t *n) {
    dsq_tokenizer *tok = NULL;
    dsq_err err = {0};
    dsq_status st = dsq_model_tokenizer(m, &tok, &err);
    if (st == DSQ_OK)
        st = dsq_text_tokens(tok, text_path, ids, n, &err);
    dsq_tokenizer_free(tok);
    return st == DSQ_OK ? 0 : dsq_cli_fail(CMD, st, &err);
}

typedef struct verify_args {
    const char *ref, *cand, *text, *tokens, *json_out, *save, *load;
    int64_t ctx, chunks, topk, stream_windows;
    int threads, json, ctx_given, chunks_given, topk_given, quiet, fp8_f32, stream;
    double max_ratio, max_kld, max_p99, min_top1; /* < 0: not given */
} verify_args;

/* argv into va; 0, or the usage error's exit code (printed) */
static int parse_args(int argc, char **argv, verify_args *va) {
    dsq_err perr = {0};
    int json_at = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **sp = NULL;
        if (strcmp(a, "--ref") == 0)
            sp = &va->ref;
        else if (strcmp(a, "--model") == 0)
            sp = &va->cand;
        else if (strcmp(a, "--text") == 0)
            sp = &va->text;
        else if (strcmp(a, "--tokens") == 0)
            sp = &va->tokens;
        else if (strcmp(a, "--json-out") == 0)
            sp = &va->json_out;
        else if (strcmp(a, "--save-ref") == 0)
            sp = &va->save;
        else if (strcmp(a, "--load-ref") == 0)
            sp = &va->load;
        if (sp != NULL) {
            if (v == NULL || *v == '\0')
                return dsq_cli_usage(CMD, "%s needs a path", a);
            *sp = v;
            i++;
            continue;
        }
        dsq_status ok = DSQ_OK;
        if (strcmp(a, "--ctx") == 0)
            ok = dsq_parse_count(v, 4, 1 << 20, &va->ctx, &perr), va->ctx_given = 1;
        else if (strcmp(a, "--chunks") == 0)
            ok = dsq_parse_count(v, 1, (int64_t)1 << 40, &va->chunks, &perr),
            va->chunks_given = 1;
        else if (strcmp(a, "--threads") == 0)
            ok = dsq_parse_threads(v, &va->threads, &perr);
        else if (strcmp(a, "--ref-topk") == 0)
            ok = dsq_parse_count(v, 1, DSQ_REF_TOPK_MAX, &va->topk, &perr), va->topk_given = 1;
        else if (strcmp(a, "--max-ppl-ratio") == 0)
            ok = dsq_parse_real(v, 0, 1e30, &va->max_ratio, &perr);
        else if (strcmp(a, "--max-kld") == 0)
            ok = dsq_parse_real(v, 0, 1e30, &va->max_kld, &perr);
        else if (strcmp(a, "--max-kld-p99") == 0)
            ok = dsq_parse_real(v, 0, 1e30, &va->max_p99, &perr);
        else if (strcmp(a, "--min-top1") == 0)
            ok = dsq_parse_real(v, 0, 1, &va->min_top1, &perr);
        else if (strcmp(a, "--stream-windows") == 0)
            ok = dsq_parse_count(v, 1, INT32_MAX, &va->stream_windows, &perr), va->stream = 1;
        else if (strcmp(a, "--json") == 0) {
            va->json = 1;
            json_at = i;
            continue;
        } else if (strcmp(a, "--fp8-f32") == 0) {
            va->fp8_f32 = 1;
            continue;
        } else if (strcmp(a, "--stream-layers") == 0) {
            va->stream = 1;
            continue;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            va->quiet = 1;
            continue;
        } else if (a[0] == '-' && a[1] != '\0') {
            return dsq_cli_usage(CMD, "unknown option '%s'", a);
        } else if (json_at == i - 1) { /* the old `--json FILE` */
            return dsq_cli_usage(CMD, "--json takes no file name: use --json-out %s", a);
        } else {
            return dsq_cli_usage(CMD, "unexpected argument '%s'", a);
        }
        if (ok != DSQ_OK)
            return dsq_cli_bad_value(CMD, a, &perr);
        i++;
    }
    return 0;
}

/* The combination of options, the inputs and the outputs, before any weight is read. */
static int check_args(const verify_args *va) {
    const char *why = NULL;
    if (va->cand == NULL)
        why = "--model CAND is required";
    else if ((va->ref == NULL) == (va->load == NULL))
        why = "give one of --ref REF and --load-ref FILE";
    else if (va->save != NULL && va->ref == NULL)
        why = "--save-ref needs --ref";
    else if (va->topk_given && va->ref == NULL)
        why = "--ref-topk needs --ref (a --load-ref file has its own)";
    else if ((va->text == NULL) == (va->tokens == NULL))
        why = "give one of --text FILE and --tokens FILE";
    if (why != NULL)
        return dsq_cli_usage(CMD, "%s", why);
    const char *inputs[] = {va->ref, va->load, va->cand, va->text, va->tokens};
    for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
        const int missing = inputs[k] != NULL ? dsq_cli_need_input(CMD, inputs[k]) : 0;
        if (missing != 0)
            return missing;
    }
    const int json_file = va->json_out != NULL && strcmp(va->json_out, "-") != 0;
    const char *outputs[] = {json_file ? va->json_out : NULL, va->save};
    for (size_t k = 0; k < sizeof outputs / sizeof outputs[0]; k++) {
        const int bad = outputs[k] != NULL ? dsq_cli_check_out_file(CMD, outputs[k]) : 0;
        if (bad != 0)
            return bad;
    }
    return 0;
}

/* REF's logits: loaded from --load-ref, or computed (then --save-ref); tokenizes --text
 * with REF when it runs. 0 or the exit code (printed). */
static int reference(const verify_args *va, int64_t per_pass, int32_t **ids, int64_t *n_ids,
                     dsq_ref_logits **ref) {
    dsq_err err = {0};
    dsq_status st;
    dsq_model *m = NULL;
    int rc = 0;
    if (va->load != NULL) {
        if ((st = dsq_ref_load(ref, va->load, &err)) != DSQ_OK)
            return dsq_cli_fail(CMD, st, &err);
        if ((va->ctx_given && va->ctx != (*ref)->n_ctx) ||
            (va->chunks_given && va->chunks != (*ref)->n_chunks))
            return dsq_cli_usage(CMD, "%s was made with --ctx %lld and %lld chunks; give the "
                                 "same or leave them out",
                                 va->load, (long long)(*ref)->n_ctx, (long long)(*ref)->n_chunks);
        return 0;
    }
    /* the reference first, then freed: one model in memory at a time */
    if ((rc = open_model(va->ref, va->threads, va->fp8_f32, va->stream, &m)) != 0)
        return rc;
    if (va->text != NULL && (rc = tokenize(m, va->text, ids, n_ids)) != 0)
        goto done;
    vprog prog = {.what = "ref", .unit = va->stream ? "layer" : "chunk"};
    dsq_progress_init(&prog.bar, "ref", va->quiet);
    dsq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = va->ctx;
    po.n_chunks = va->chunks;
    po.bos = dsq_model_get_config(m)->bos;
    po.nthreads = va->threads;
    po.progress = progress_cb;
    po.progress_user = &prog;
    st = dsq_ref_compute(m, *ids, *n_ids, &po, (int32_t)va->topk, per_pass, ref, &err);
    dsq_progress_done(&prog.bar);
    if (st == DSQ_OK && va->save != NULL)
        st = dsq_ref_save(*ref, va->save, &err);
    if (st != DSQ_OK)
        rc = dsq_cli_fail(CMD, st, &err);
done:
    dsq_model_close(m);
    return rc;
}

/* The JSON document to stdout (--json, --json-out -) or to the --json-out file. */
static int write_json(const verify_args *va, const dsq_kld_result *r, int pass, json_t *failed) {
    json_t *th = json_object();
    if (va->max_ratio >= 0)
        json_object_set_new(th, "max_ppl_ratio", json_real(va->max_ratio));
    if (va->max_kld >= 0)
        json_object_set_new(th, "max_kld", json_real(va->max_kld));
    if (va->max_p99 >= 0)
        json_object_set_new(th, "max_kld_p99", json_real(va->max_p99));
    if (va->min_top1 >= 0)
        json_object_set_new(th, "min_top1", json_real(va->min_top1));
    json_t *js = json_pack(
        "{s:{s:f,s:f,s:f,s:o},s:{s:f,s:f,s:f,s:o},s:f,s:{s:f,s:f,s:f,s:i},"
        "s:f,s:b,s:O,s:o,s:I,s:I,s:I,s:f}",
        "ref", "ppl", r->ref_ppl, "ppl_stderr", r->ref_ppl_stderr, "nll_mean", r->ref_nll_mean,
        "path", dsq_cli_json_str(va->ref != NULL ? va->ref : va->load), "model", "ppl", r->ppl,
        "ppl_stderr", r->ppl_stderr, "nll_mean", r->nll_mean, "path", dsq_cli_json_str(va->cand),
        "ppl_ratio", r->ppl_ratio, "kld", "mean", r->kld_mean, "p99", r->kld_p99, "max",
        r->kld_max, "top_k", (int)r->k, "top1", r->top1, "pass", pass, "failed", failed,
        "thresholds", th, "n_scored", (json_int_t)r->n_scored, "ctx", (json_int_t)r->n_ctx,
        "n_chunks", (json_int_t)r->n_chunks, "seconds", r->seconds);
    const int rc = dsq_cli_json_write(CMD, js, JSON_INDENT(2) | JSON_REAL_PRECISION(12),
                                      va->json_out);
    json_decref(js);
    return rc;
}

/* The thresholds, the report, the JSON; DSQ_EXIT_OK, DSQ_EXIT_CHECK_FAILED or an error. */
static int report(const verify_args *va, const dsq_kld_result *r) {
    /* human lines go to stderr whenever the document goes to stdout */
    FILE *human =
        va->json || (va->json_out != NULL && strcmp(va->json_out, "-") == 0) ? stderr : stdout;
    json_t *failed = json_array();
    char msg[512] = "";
    size_t ml = 0;
#define CROSSED(name, fmt, ...)                                                                    \
    do {                                                                                           \
        json_array_append_new(failed, json_string(name));                                          \
        ml += (size_t)snprintf(msg + ml, ml < sizeof msg ? sizeof msg - ml : 0, "%s" fmt,          \
                               ml ? "; " : "", __VA_ARGS__);                                       \
    } while (0)
    if (va->max_ratio >= 0 && !(r->ppl_ratio <= va->max_ratio))
        CROSSED("max-ppl-ratio", "ppl ratio %.6f > --max-ppl-ratio %g", r->ppl_ratio,
                va->max_ratio);
    if (va->max_kld >= 0 && !(r->kld_mean <= va->max_kld))
        CROSSED("max-kld", "mean KLD %.6f > --max-kld %g", r->kld_mean, va->max_kld);
    if (va->max_p99 >= 0 && !(r->kld_p99 <= va->max_p99))
        CROSSED("max-kld-p99", "p99 KLD %.6f > --max-kld-p99 %g", r->kld_p99, va->max_p99);
    if (va->min_top1 >= 0 && !(r->top1 >= va->min_top1))
        CROSSED("min-top1", "top-1 agreement %.6f < --min-top1 %g", r->top1, va->min_top1);
#undef CROSSED
    const int pass = json_array_size(failed) == 0;
    int rc = DSQ_EXIT_OK;

    fprintf(human, "ref   PPL = %.4f +/- %.5f\n", r->ref_ppl, r->ref_ppl_stderr);
    fprintf(human, "model PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_stderr);
    fprintf(human, "ppl ratio = %.6f\n", r->ppl_ratio);
    fprintf(human, "KLD mean = %.6f  p99 = %.6f  max = %.6f  (top-%d + rest)\n", r->kld_mean,
            r->kld_p99, r->kld_max, (int)r->k);
    fprintf(human, "top-1 agreement = %.4f%%  (%lld positions, %lld chunk%s of %lld)\n",
            100.0 * r->top1, (long long)r->n_scored, (long long)r->n_chunks,
            dsq_cli_s((size_t)r->n_chunks), (long long)r->n_ctx);
    fprintf(human, "%s\n", pass ? "PASS" : "FAIL");
    if (!pass) {
        dsq_cli_error(CMD, "FAIL: %s", msg);
        rc = DSQ_EXIT_CHECK_FAILED;
    }
    if (va->json || va->json_out != NULL) {
        const int jrc = write_json(va, r, pass, failed);
        if (jrc != DSQ_EXIT_OK)
            rc = jrc;
    }
    json_decref(failed);
    return rc;
}

int dsq_cmd_verify(int argc, char **argv) {
    verify_args va = {.ctx = 512, .topk = DSQ_REF_TOPK, .max_ratio = -1, .max_kld = -1,
                      .max_p99 = -1, .min_top1 = -1};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        }
    int rc = parse_args(argc, argv, &va);
    if (rc != 0 || (rc = check_args(&va)) != 0)
        return rc;

    dsq_err err = {0};
    dsq_status st;
    dsq_model *m = NULL;
    dsq_ref_logits *ref = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    /* verify/kld.h's stream: 0 whole model, else windows a layer-streamed pass */
    const int64_t per_pass =
        !va.stream ? 0 : va.stream_windows > 0 ? va.stream_windows : DSQ_STREAM_ALL;
    if (va.tokens != NULL && (st = dsq_tokens_read(va.tokens, &ids, &n_ids, &err)) != DSQ_OK)
        return dsq_cli_fail(CMD, st, &err);
    if ((rc = reference(&va, per_pass, &ids, &n_ids, &ref)) != 0)
        goto done;
    if ((rc = open_model(va.cand, va.threads, va.fp8_f32, va.stream, &m)) != 0)
        goto done;
    if (ids == NULL && (rc = tokenize(m, va.text, &ids, &n_ids)) != 0)
        goto done;
    dsq_kld_result r;
    if ((st = dsq_kld_run(m, ref, ids, n_ids, va.threads, per_pass, &r, &err)) != DSQ_OK) {
        rc = dsq_cli_fail(CMD, st, &err);
        goto done;
    }
    rc = report(&va, &r);
done:
    dsq_model_close(m);
    dsq_ref_free(ref);
    free(ids);
    return rc;
}
