/* cli/cmd_verify.c: `dsq verify --ref REF --model CAND ...`, a CI accuracy
 * gate: the options, the report and the JSON document. The comparison is
 * verify/kld.h's, the verdict verify/gate.h's: exit 0 (pass) / 1 (a threshold
 * crossed); without a threshold only with --report-only, which never says
 * PASS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/parse.h"
#include "verify/gate.h"
#include "verify/kld.h"
#include "verify/model.h"
#include "verify/ppl.h"

#define CMD "verify"

static const char usage_text[] =
    "usage: dsq verify --ref REF --model CAND (--text FILE | --tokens FILE) THRESHOLDS [options]\n"
    "       dsq verify --load-ref FILE --model CAND [--text FILE | --tokens FILE] THRESHOLDS\n"
    "       dsq verify ... --report-only\n"
    "\n"
    "Runs REF and CAND on the same windows (llama-perplexity's: --ctx tokens each,\n"
    "the first set to BOS, the second half scored) and reports the perplexity of\n"
    "each and their ratio, the KL divergence of CAND from REF per scored position\n"
    "(mean and 99th percentile) and how often their top-1 tokens agree. Models are\n"
    "Hugging Face checkpoint directories or GGUF files (a split GGUF given by its\n"
    "first file, NAME-00001-of-0000N.gguf). With REF running (--ref), KLD is exact,\n"
    "over the whole vocabulary, both models side by side: both in memory, or with\n"
    "--stream-layers one layer of one of them. A saved reference (--load-ref) is\n"
    "either llama.cpp's --kl-divergence-base file (--save-kld-base; the whole\n"
    "vocabulary, 2 bytes a token and position) or dsq's small top-K file\n"
    "(--save-ref; K tokens plus the rest, a lower bound of the KLD).\n"
    "\n"
    "thresholds (at least one, or --report-only):\n"
    "  --max-ppl-ratio R     fail when ppl(CAND) / ppl(REF) > R\n"
    "  --max-kld K           fail when the mean KLD > K (nats)\n"
    "  --max-kld-p99 K       fail when the 99th-percentile KLD > K\n"
    "  --min-top1 P          fail when the top-1 agreement < P (a fraction, 0..1)\n"
    "  --report-only         no thresholds: print the figures and REPORT ONLY, exit 0\n"
    "\n"
    "options:\n"
    "  --ref REF             the reference model\n"
    "  --model CAND          the model to check (required)\n"
    "  --text FILE           text, tokenized with REF's tokenizer (CAND's with\n"
    "                        --load-ref)\n"
    "  --tokens FILE         token ids, one per line\n"
    "  --ctx N               window size (default 512)\n"
    "  --chunks K            only the first K windows\n"
    "  --json                print the result as JSON on stdout, the report on stderr\n"
    "  --json-out FILE       write that document to FILE (the report as usual)\n"
    "  --save-kld-base FILE  keep REF's log-probabilities, the whole vocabulary, as\n"
    "                        llama.cpp's --kl-divergence-base file (llama-perplexity\n"
    "                        --kl-divergence reads it too)\n"
    "  --save-ref FILE       keep REF's top-K logits and log-sum-exp per position\n"
    "                        (16 + 8K bytes a position): small, but the KLD from it\n"
    "                        is a lower bound\n"
    "  --ref-topk K          K for --save-ref (default 32, at most 4096)\n"
    "  --load-ref FILE       use a saved reference instead of running REF (either\n"
    "                        kind); the windows (--ctx, --chunks) are the file's\n"
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
    "exit: 0 every given threshold holds (or --report-only), 1 one is crossed (named\n"
    "on stderr and in the JSON's \"failed\"), 2 usage, 3 bad input, 4 I/O, 5 internal.\n"
    "\n"
    "examples:\n"
    "  dsq verify --ref DeepSeek-V3/ --model ds-v3-Q4_K_M.gguf --text wiki.test.raw \\\n"
    "      --stream-layers --max-ppl-ratio 1.02 --max-kld 0.05 --min-top1 0.9\n"
    "  dsq verify --ref tiny-llama/ --model q.gguf --tokens eval.tokens.txt --report-only \\\n"
    "      --save-kld-base ref.kld\n"
    "  dsq verify --load-ref ref.kld --model q.gguf --max-kld 0.01 --json > v.json\n";

/* The options, parsed. */
typedef struct vargs {
    const char *ref, *cand, *text, *tokens, *json_out, *save_ref, *save_base, *load;
    int64_t ctx, chunks, topk, stream_windows;
    int threads, json, quiet, fp8_f32, stream, report_only;
    int ctx_given, chunks_given, topk_given;
    dsq_gate gate;
} vargs;

/* The path options and where they go. */
static const char **path_opt(vargs *a, const char *opt) {
    static const struct {
        const char *name;
        size_t off;
    } t[] = {
        {"--ref", offsetof(vargs, ref)},           {"--model", offsetof(vargs, cand)},
        {"--text", offsetof(vargs, text)},         {"--tokens", offsetof(vargs, tokens)},
        {"--json-out", offsetof(vargs, json_out)}, {"--save-ref", offsetof(vargs, save_ref)},
        {"--save-kld-base", offsetof(vargs, save_base)}, {"--load-ref", offsetof(vargs, load)},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(opt, t[i].name) == 0)
            return (const char **)(void *)((char *)a + t[i].off);
    return NULL;
}

/* One option with a value at argv[i] (the value at i + 1): DSQ_OK, or the
 * parse error; *known = 0 when it is not such an option. */
static dsq_status value_opt(vargs *a, const char *o, const char *v, int *known, dsq_err *e) {
    *known = 1;
    if (strcmp(o, "--ctx") == 0)
        return a->ctx_given = 1, dsq_parse_count(v, 4, 1 << 20, &a->ctx, e);
    if (strcmp(o, "--chunks") == 0)
        return a->chunks_given = 1, dsq_parse_count(v, 1, (int64_t)1 << 40, &a->chunks, e);
    if (strcmp(o, "--threads") == 0)
        return dsq_parse_threads(v, &a->threads, e);
    if (strcmp(o, "--ref-topk") == 0)
        return a->topk_given = 1, dsq_parse_count(v, 1, DSQ_REF_TOPK_MAX, &a->topk, e);
    if (strcmp(o, "--stream-windows") == 0)
        return a->stream = 1, dsq_parse_count(v, 1, INT32_MAX, &a->stream_windows, e);
    for (int g = 0; g < DSQ_GATE_COUNT; g++)
        if (o[0] == '-' && o[1] == '-' && strcmp(o + 2, dsq_gate_name((dsq_gate_id)g)) == 0)
            return dsq_parse_real(v, 0, g == DSQ_GATE_TOP1 ? 1 : 1e30, &a->gate.limit[g], e);
    *known = 0;
    return DSQ_OK;
}

/* -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, vargs *a) {
    memset(a, 0, sizeof *a);
    a->ctx = 512;
    a->topk = DSQ_REF_TOPK;
    dsq_gate_init(&a->gate);
    int json_at = -1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        }
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **sp = path_opt(a, o);
        int known = 0;
        dsq_err perr = {0};
        if (sp != NULL) {
            if (v == NULL || *v == '\0')
                return dsq_cli_usage(CMD, "%s needs a path", o);
            *sp = v;
            i++;
        } else if (value_opt(a, o, v, &known, &perr) != DSQ_OK) {
            return dsq_cli_bad_value(CMD, o, &perr);
        } else if (known) {
            i++;
        } else if (strcmp(o, "--json") == 0) {
            a->json = 1;
            json_at = i;
        } else if (strcmp(o, "--report-only") == 0) {
            a->report_only = 1;
        } else if (strcmp(o, "--fp8-f32") == 0) {
            a->fp8_f32 = 1;
        } else if (strcmp(o, "--stream-layers") == 0) {
            a->stream = 1;
        } else if (strcmp(o, "-q") == 0 || strcmp(o, "--quiet") == 0) {
            a->quiet = 1;
        } else if (o[0] == '-' && o[1] != '\0') {
            return dsq_cli_usage(CMD, "unknown option '%s'", o);
        } else if (json_at == i - 1) { /* the old `--json FILE` */
            return dsq_cli_usage(CMD, "--json takes no file name: use --json-out %s", o);
        } else {
            return dsq_cli_usage(CMD, "unexpected argument '%s'", o);
        }
    }
    return -1;
}

/* The combinations that make sense (a --load-ref file's kind decides later
 * whether a text is needed). -1 to go on, else the exit code. */
static int check_args(const vargs *a) {
    const char *why = NULL;
    if (a->cand == NULL)
        why = "--model CAND is required";
    else if ((a->ref == NULL) == (a->load == NULL))
        why = "give one of --ref REF and --load-ref FILE";
    else if ((a->save_ref != NULL || a->save_base != NULL) && a->ref == NULL)
        why = "--save-ref and --save-kld-base need --ref";
    else if (a->topk_given && a->save_ref == NULL)
        why = "--ref-topk is the K of --save-ref";
    else if (a->text != NULL && a->tokens != NULL)
        why = "give one of --text FILE and --tokens FILE";
    else if (a->text == NULL && a->tokens == NULL && a->ref != NULL)
        why = "give one of --text FILE and --tokens FILE";
    return why != NULL ? dsq_cli_usage(CMD, "%s", why) : -1;
}

/* A gate needs a threshold, or --report-only (verify/gate.h): -1, or 2. */
static int check_gate(const vargs *a) {
    const int n_th = dsq_gate_count(&a->gate);
    if (n_th == 0 && !a->report_only)
        return dsq_cli_usage(CMD, "no threshold: give --max-ppl-ratio, --max-kld, --max-kld-p99 "
                             "or --min-top1, or --report-only for the figures alone");
    if (n_th > 0 && a->report_only)
        return dsq_cli_usage(CMD, "--report-only and thresholds exclude each other");
    return -1;
}

/* The kind of a --load-ref file by its first bytes: 0, or the exit code. */
static int sniff_ref(const char *path, dsq_ref_kind *kind) {
    uint8_t head[8] = {0};
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        dsq_cli_error(CMD, "%s: %s", path, strerror(errno));
        return DSQ_EXIT_IO;
    }
    const size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (dsq_llama_logits_sniff(head, n))
        *kind = DSQ_REFKIND_LLAMA;
    else
        *kind = DSQ_REFKIND_TOPK; /* dsq_ref_load names anything else */
    return 0;
}

typedef struct vprog {
    dsq_progress bar;
    const char *unit; /* "window", or "layer" when streaming */
} vprog;

static void progress_cb(void *user, uint64_t done, uint64_t total) {
    vprog *p = user;
    if (!p->bar.enabled)
        return;
    fprintf(stderr, "\r\033[Kverify: %s %llu/%llu", p->unit, (unsigned long long)done,
            (unsigned long long)total);
    fflush(stderr);
}

/* Opens a model; prints the failure and returns its exit code, or 0. */
static int open_model(const vargs *a, const char *path, dsq_model **m) {
    dsq_model_opts mo;
    dsq_err err = {0};
    memset(&mo, 0, sizeof mo);
    mo.nthreads = a->threads;
    mo.source.fp8_no_bf16_round = a->fp8_f32;
    mo.lazy = a->stream;
    const dsq_status st = dsq_model_open(m, path, &mo, &err);
    return st == DSQ_OK ? 0 : dsq_cli_fail(CMD, st, &err);
}

/* The tokens: --tokens, or --text through m's tokenizer, or none. */
static int get_tokens(const vargs *a, const dsq_model *m, int32_t **ids, int64_t *n) {
    dsq_tokenizer *tok = NULL;
    dsq_err err = {0};
    dsq_status st = DSQ_OK;
    if (a->tokens != NULL)
        st = dsq_tokens_read(a->tokens, ids, n, &err);
    else if (a->text != NULL && (st = dsq_model_tokenizer(m, &tok, &err)) == DSQ_OK)
        st = dsq_text_tokens(tok, a->text, ids, n, &err);
    dsq_tokenizer_free(tok);
    return st == DSQ_OK ? 0 : dsq_cli_fail(CMD, st, &err);
}

/* REF and CAND side by side, saving what was asked for. */
static int run_live(const vargs *a, dsq_kld_result *r) {
    dsq_model *ref = NULL, *cand = NULL;
    dsq_ref_logits *topk = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    dsq_err err = {0};
    int rc;
    if ((rc = open_model(a, a->ref, &ref)) != 0 || (rc = get_tokens(a, ref, &ids, &n)) != 0 ||
        (rc = open_model(a, a->cand, &cand)) != 0)
        goto done;
    vprog prog = {.unit = a->stream ? "layer" : "window"};
    dsq_progress_init(&prog.bar, CMD, a->quiet);
    dsq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = a->ctx;
    po.n_chunks = a->chunks;
    po.bos = dsq_model_get_config(ref)->bos;
    po.nthreads = a->threads;
    po.progress = progress_cb;
    po.progress_user = &prog;
    const dsq_kld_save save = {(int32_t)a->topk, a->save_ref != NULL ? &topk : NULL, a->save_base};
    /* verify/kld.h's stream: 0 whole model, else windows a layer-streamed pass */
    const int64_t per_pass =
        !a->stream ? 0 : a->stream_windows > 0 ? a->stream_windows : DSQ_STREAM_ALL;
    dsq_status st = dsq_kld_run_live(ref, cand, ids, n, &po, per_pass, &save, r, &err);
    dsq_progress_done(&prog.bar);
    if (st == DSQ_OK && topk != NULL)
        st = dsq_ref_save(topk, a->save_ref, &err);
    rc = st == DSQ_OK ? 0 : dsq_cli_fail(CMD, st, &err);
done:
    dsq_ref_free(topk);
    dsq_model_close(ref);
    dsq_model_close(cand);
    free(ids);
    return rc;
}

/* A --ctx or --chunks that disagrees with the file: a usage error, or -1. */
static int same_windows(const vargs *a, int64_t ctx, int64_t chunks) {
    if ((a->ctx_given && a->ctx != ctx) || (a->chunks_given && a->chunks != chunks))
        return dsq_cli_usage(CMD, "%s was made with --ctx %lld and %lld chunks; give the same or "
                             "leave them out",
                             a->load, (long long)ctx, (long long)chunks);
    return -1;
}

/* CAND against a saved reference of either kind. */
static int run_loaded(const vargs *a, dsq_ref_kind kind, dsq_kld_result *r) {
    dsq_ref_logits *topk = NULL;
    dsq_llama_logits *base = NULL;
    dsq_model *cand = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    dsq_err err = {0};
    dsq_status st = kind == DSQ_REFKIND_LLAMA ? dsq_llama_logits_open(&base, a->load, &err)
                                              : dsq_ref_load(&topk, a->load, &err);
    int rc = st == DSQ_OK ? -1 : dsq_cli_fail(CMD, st, &err);
    if (rc == -1)
        rc = base != NULL ? same_windows(a, base->n_ctx, base->n_chunks)
                          : same_windows(a, topk->n_ctx, topk->n_chunks);
    if (rc != -1 || (rc = open_model(a, a->cand, &cand)) != 0 ||
        (rc = get_tokens(a, cand, &ids, &n)) != 0)
        goto done;
    const int64_t per_pass =
        !a->stream ? 0 : a->stream_windows > 0 ? a->stream_windows : DSQ_STREAM_ALL;
    if (base != NULL)
        st = dsq_kld_run_llama(cand, base, ids, n, dsq_model_get_config(cand)->bos, a->threads,
                               per_pass, r, &err);
    else
        st = dsq_kld_run(cand, topk, ids, n, a->threads, per_pass, r, &err);
    rc = st == DSQ_OK ? 0 : dsq_cli_fail(CMD, st, &err);
done:
    dsq_ref_free(topk);
    dsq_llama_logits_close(base);
    dsq_model_close(cand);
    free(ids);
    return rc;
}

static void print_report(FILE *h, const dsq_kld_result *r, const dsq_gate_result *g) {
    fprintf(h, "ref   PPL = %.4f +/- %.5f\n", r->ref_ppl, r->ref_ppl_stderr);
    fprintf(h, "model PPL = %.4f +/- %.5f\n", r->ppl, r->ppl_stderr);
    fprintf(h, "ppl ratio = %.6f\n", r->ppl_ratio);
    fprintf(h, "KLD mean = %.6f  p99 = %.6f  max = %.6f  ", r->kld_mean, r->kld_p99, r->kld_max);
    if (r->ref_kind == DSQ_REFKIND_TOPK && !r->exact)
        fprintf(h, "(top-%d + rest: a lower bound)\n", (int)r->k);
    else
        fprintf(h, "(exact: %lld tokens%s)\n", (long long)r->n_vocab,
                r->ref_kind == DSQ_REFKIND_LLAMA ? ", llama.cpp logits file" : "");
    fprintf(h, "top-1 agreement = %.4f%%  (%lld positions, %lld chunk%s of %lld)\n",
            100.0 * r->top1, (long long)r->n_scored, (long long)r->n_chunks,
            dsq_cli_s((size_t)r->n_chunks), (long long)r->n_ctx);
    fprintf(h, "%s\n", g->verdict == DSQ_VERDICT_PASS   ? "PASS"
                       : g->verdict == DSQ_VERDICT_FAIL ? "FAIL"
                                                        : "REPORT ONLY");
}

static json_t *report_json(const vargs *a, const dsq_kld_result *r, const dsq_gate *gate,
                           const dsq_gate_result *g) {
    json_t *failed = json_array(), *th = json_object();
    for (int i = 0; i < DSQ_GATE_COUNT; i++) {
        if (g->failed[i])
            json_array_append_new(failed, json_string(dsq_gate_name((dsq_gate_id)i)));
        if (gate->limit[i] >= 0)
            json_object_set_new(th, dsq_gate_key((dsq_gate_id)i), json_real(gate->limit[i]));
    }
    json_t *top_k = r->ref_kind == DSQ_REFKIND_TOPK ? json_integer(r->k) : json_null();
    json_t *pass = g->verdict == DSQ_VERDICT_NONE ? json_null()
                                                  : json_boolean(g->verdict == DSQ_VERDICT_PASS);
    const char *verdict = g->verdict == DSQ_VERDICT_PASS   ? "pass"
                          : g->verdict == DSQ_VERDICT_FAIL ? "fail"
                                                           : "report-only";
    return json_pack("{s:{s:f,s:f,s:f,s:s?},s:{s:f,s:f,s:f,s:s},s:f,"
                     "s:{s:f,s:f,s:f,s:b,s:o,s:I,s:s},s:f,s:o,s:s,s:o,s:o,s:I,s:I,s:I,s:f}",
                     "ref", "ppl", r->ref_ppl, "ppl_stderr", r->ref_ppl_stderr, "nll_mean",
                     r->ref_nll_mean, "path", a->ref != NULL ? a->ref : a->load, "model", "ppl",
                     r->ppl, "ppl_stderr", r->ppl_stderr, "nll_mean", r->nll_mean, "path", a->cand,
                     "ppl_ratio", r->ppl_ratio, "kld", "mean", r->kld_mean, "p99", r->kld_p99,
                     "max", r->kld_max, "exact", r->exact, "top_k", top_k, "n_vocab",
                     (json_int_t)r->n_vocab, "reference", dsq_ref_kind_name(r->ref_kind), "top1",
                     r->top1, "pass", pass, "verdict", verdict, "failed", failed, "thresholds", th,
                     "n_scored", (json_int_t)r->n_scored, "ctx", (json_int_t)r->n_ctx, "n_chunks",
                     (json_int_t)r->n_chunks, "seconds", r->seconds);
}

int dsq_cmd_verify(int argc, char **argv) {
    vargs a;
    dsq_ref_kind load_kind = DSQ_REFKIND_TOPK;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if ((rc = check_args(&a)) >= 0)
        return rc;
    const char *inputs[] = {a.ref, a.load, a.cand, a.text, a.tokens};
    for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++)
        if (inputs[k] != NULL && (rc = dsq_cli_need_input(CMD, inputs[k])) != 0)
            return rc;
    if (a.load != NULL && (rc = sniff_ref(a.load, &load_kind)) != 0)
        return rc;
    if ((rc = check_gate(&a)) >= 0)
        return rc;
    /* llama.cpp's file holds its tokens; dsq's top-K file only their hash */
    if (a.load != NULL && load_kind == DSQ_REFKIND_TOPK && a.text == NULL && a.tokens == NULL)
        return dsq_cli_usage(CMD, "give one of --text FILE and --tokens FILE (%s keeps no tokens)",
                             a.load);
    /* outputs that cannot be written are refused before any weight is read */
    const char *outputs[] = {a.json_out != NULL && strcmp(a.json_out, "-") != 0 ? a.json_out : NULL,
                             a.save_ref, a.save_base};
    for (size_t k = 0; k < sizeof outputs / sizeof outputs[0]; k++)
        if (outputs[k] != NULL && (rc = dsq_cli_check_out_file(CMD, outputs[k])) != 0)
            return rc;
    /* human lines go to stderr whenever the document goes to stdout */
    FILE *human = a.json || (a.json_out != NULL && strcmp(a.json_out, "-") == 0) ? stderr : stdout;

    dsq_kld_result r;
    if ((rc = a.load != NULL ? run_loaded(&a, load_kind, &r) : run_live(&a, &r)) != 0)
        return rc;
    dsq_gate_result g;
    dsq_gate_eval(&a.gate, &r, &g);
    print_report(human, &r, &g);
    if (g.kld_is_bound) {
        const dsq_cli c = {CMD, a.quiet, a.json, 0, NULL};
        dsq_cli_warn(&c, "the KLD of a top-K reference is a lower bound, so a KLD threshold is "
                         "more lenient than it reads (save the reference with --save-kld-base "
                         "for the exact value)");
    }
    if (g.verdict == DSQ_VERDICT_FAIL) {
        dsq_cli_error(CMD, "FAIL: %s", g.message);
        rc = DSQ_EXIT_CHECK_FAILED;
    }
    if (a.json || a.json_out != NULL) {
        json_t *js = report_json(&a, &r, &a.gate, &g);
        const int jrc = dsq_cli_json_write(CMD, js, JSON_INDENT(2) | JSON_REAL_PRECISION(12),
                                           a.json_out);
        json_decref(js);
        if (jrc != 0)
            rc = jrc;
    }
    return rc;
}
