/* cli/cmd_ppl.c: `dsq ppl MODEL (--text FILE | --tokens FILE)`, llama.cpp-style perplexity:
 * options, the result line, the JSON document (--json on stdout, --json-out FILE). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/parse.h"
#include "verify/model.h"
#include "verify/ppl.h"

#define CMD "ppl"

static const char usage_text[] =
    "usage: dsq ppl MODEL --tokens FILE [options]\n"
    "       dsq ppl MODEL --text FILE [options]\n"
    "\n"
    "Perplexity of a model on a text or token list, computed the way llama.cpp's\n"
    "llama-perplexity computes it: consecutive windows of --ctx tokens, the first\n"
    "token of each window replaced by BOS, the second half of each window scored.\n"
    "MODEL is a Hugging Face checkpoint directory (llama or DeepSeek-V3; F32, F16,\n"
    "BF16 or FP8 with block scales) or a llama.cpp GGUF file (llama, deepseek2;\n"
    "F32, F16, BF16 or any quantized type); a split GGUF by its first file,\n"
    "NAME-00001-of-0000N.gguf.\n"
    "\n"
    "options:\n"
    "  --tokens FILE   token ids, one per line\n"
    "  --text FILE     text, tokenized with the model's tokenizer (tokenizer.json\n"
    "                  and tokenizer_config.json, or the GGUF's vocabulary), bos\n"
    "                  added as the tokenizer config says; one of the two is needed\n"
    "  --ctx N         window size (default 512)\n"
    "  --chunks K      evaluate only the first K windows\n"
    "  --batch B       windows per forward batch (default 1; same result)\n"
    "  --bos ID|none   token put at position 0 of each window (default: the\n"
    "                  config's bos_token_id, none if it has none)\n"
    "  --threads N     compute threads (default: all cores)\n"
    "  --stream-layers advance every window one layer at a time, loading only that\n"
    "                  layer's weights (memory: the largest layer plus the\n"
    "                  activations of all windows); the same numbers\n"
    "  --stream-windows N  with --stream-layers (implied): at most N windows a\n"
    "                  pass, so activations stay at N x ctx x hidden floats; each\n"
    "                  pass reads every layer again (default: one pass)\n"
    "  --fp8-f32       FP8 weights: use W x scale_inv in F32 instead of rounding it\n"
    "                  to BF16 (DeepSeek's inference and fp8_cast_bf16.py round)\n"
    "  --json          print {\"ppl\", \"ppl_stderr\", \"nll_mean\", \"n_scored\", \"ctx\",\n"
    "                  ...} on stdout, the result line on stderr\n"
    "  --json-out FILE write that document to FILE (the result line as usual)\n"
    "  -q, --quiet     no progress, only the result line\n"
    "  -h, --help      this text\n"
    "\n"
    "examples:\n"
    "  dsq ppl DeepSeek-V3/ --text wiki.test.raw --ctx 512\n"
    "  dsq ppl ds-v3-Q4_K_M.gguf --text wiki.test.raw --chunks 100 --stream-layers\n"
    "  dsq ppl tiny-llama/ --tokens eval.tokens.txt --ctx 256 --json > ppl.json\n";

typedef struct ppl_progress {
    dsq_progress bar;
    int64_t ctx;
    int stream; /* counts layers, not chunks */
} ppl_progress;

static void progress_cb(void *user, uint64_t done, uint64_t total) {
    ppl_progress *p = user;
    if (!p->bar.enabled)
        return;
    if (p->stream) {
        fprintf(stderr, "\r\033[Kppl: layer step %llu/%llu (a pass: the layers, then the head)",
                (unsigned long long)done, (unsigned long long)total);
        fflush(stderr);
        return;
    }
    const double el = dsq_now() - p->bar.t0;
    const double tps = el > 0 ? (double)done * (double)p->ctx / el : 0.0;
    fprintf(stderr, "\r\033[Kppl: chunk %llu/%llu  %.0f tokens/s", (unsigned long long)done,
            (unsigned long long)total, tps);
    fflush(stderr);
}

typedef struct ppl_args {
    const char *model, *tokens, *text, *json_out;
    int json, quiet, fp8_f32, stream;
    int64_t ctx, chunks, batch, bos, stream_windows;
    int threads;
} ppl_args;

/* argv into p; 0, or the usage error's exit code (printed) */
static int parse_args(int argc, char **argv, ppl_args *p) {
    dsq_err err = {0};
    int json_at = -1, model_after_json = 0; /* to tell the old `--json FILE` */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **path = NULL;
        int64_t *count = NULL, lo = 1, hi = INT32_MAX;
        if (strcmp(a, "--tokens") == 0)
            path = &p->tokens;
        else if (strcmp(a, "--text") == 0)
            path = &p->text;
        else if (strcmp(a, "--json-out") == 0)
            path = &p->json_out;
        else if (strcmp(a, "--ctx") == 0)
            count = &p->ctx, lo = 4, hi = 1 << 20;
        else if (strcmp(a, "--chunks") == 0)
            count = &p->chunks, hi = (int64_t)1 << 40;
        else if (strcmp(a, "--batch") == 0)
            count = &p->batch, hi = 4096;
        else if (strcmp(a, "--stream-windows") == 0)
            count = &p->stream_windows, p->stream = 1;
        if (path != NULL) {
            if (v == NULL || *v == '\0')
                return dsq_cli_usage(CMD, "%s needs a file name", a);
            *path = v;
            i++;
        } else if (count != NULL) {
            if (dsq_parse_count(v, lo, hi, count, &err) != DSQ_OK)
                return dsq_cli_bad_value(CMD, a, &err);
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            if (dsq_parse_threads(v, &p->threads, &err) != DSQ_OK)
                return dsq_cli_bad_value(CMD, a, &err);
            i++;
        } else if (strcmp(a, "--bos") == 0) {
            if (v != NULL && strcmp(v, "none") == 0)
                p->bos = -1;
            else if (dsq_parse_count(v, 0, INT32_MAX, &p->bos, &err) != DSQ_OK)
                return dsq_cli_bad_value(CMD, a, &err);
            i++;
        } else if (strcmp(a, "--json") == 0) {
            p->json = 1;
            json_at = i;
        } else if (strcmp(a, "--fp8-f32") == 0) {
            p->fp8_f32 = 1;
        } else if (strcmp(a, "--stream-layers") == 0) {
            p->stream = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            p->quiet = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            return dsq_cli_usage(CMD, "unknown option '%s'", a);
        } else if (p->model == NULL) {
            p->model = a;
            model_after_json = json_at == i - 1;
        } else if (json_at == i - 1 || model_after_json) {
            /* `--json FILE` was the old form */
            return dsq_cli_usage(CMD, "--json takes no file name: use --json-out %s",
                                 json_at == i - 1 ? a : p->model);
        } else {
            return dsq_cli_usage(CMD, "too many arguments: '%s'", a);
        }
    }
    if (p->model == NULL || (p->tokens == NULL) == (p->text == NULL))
        return dsq_cli_usage(CMD, "expected MODEL and one of --tokens FILE, --text FILE");
    return 0;
}

/* The result as JSON, to stdout (--json) or to the --json-out file; 0 or the exit code. */
static int write_json(const ppl_args *p, const dsq_ppl_result *r, double load_s, double tps) {
    const int to_stdout = p->json_out == NULL || strcmp(p->json_out, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(p->json_out, "w");
    int bad = out == NULL;
    if (out != NULL) {
        bad = fprintf(out,
                      "{\"ppl\": %.10g, \"ppl_stderr\": %.10g, \"nll_mean\": %.12g, "
                      "\"n_scored\": %lld, \"ctx\": %lld, \"n_chunks\": %lld, \"seconds\": %.3f, "
                      "\"load_seconds\": %.3f, \"tokens_per_second\": %.1f, "
                      "\"gemm_seconds\": %.3f, \"attention_seconds\": %.3f}\n",
                      r->ppl, r->ppl_stderr, r->nll_mean, (long long)r->n_scored,
                      (long long)r->n_ctx, (long long)r->n_chunks, r->seconds, load_s, tps,
                      r->gemm_seconds, r->attn_seconds) < 0;
        bad |= to_stdout ? fflush(out) != 0 : fclose(out) != 0;
    }
    if (bad) {
        dsq_cli_error(CMD, "%s: %s", to_stdout ? "<stdout>" : p->json_out,
                      strerror(errno ? errno : EIO));
        return DSQ_EXIT_IO;
    }
    return 0;
}

int dsq_cmd_ppl(int argc, char **argv) {
    ppl_args p = {.ctx = 512, .batch = 1, .bos = -2};
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        }
    int rc = parse_args(argc, argv, &p);
    if (rc != 0)
        return rc;
    /* human lines go to stderr whenever the document goes to stdout */
    dsq_cli c = {.cmd = CMD, .quiet = 0,
                 .json = p.json || (p.json_out != NULL && strcmp(p.json_out, "-") == 0)};
    if ((rc = dsq_cli_need_input(CMD, p.model)) != 0 ||
        (p.tokens != NULL && (rc = dsq_cli_need_input(CMD, p.tokens)) != 0) ||
        (p.text != NULL && (rc = dsq_cli_need_input(CMD, p.text)) != 0) ||
        (p.json_out != NULL && strcmp(p.json_out, "-") != 0 &&
         (rc = dsq_cli_check_out_file(CMD, p.json_out)) != 0))
        return rc;

    dsq_err err = {0};
    dsq_status st;
    dsq_model *m = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    if (p.tokens != NULL && (st = dsq_tokens_read(p.tokens, &ids, &n_ids, &err)) != DSQ_OK)
        return dsq_cli_fail(CMD, st, &err);
    dsq_model_opts mo;
    memset(&mo, 0, sizeof mo);
    mo.nthreads = p.threads;
    mo.source.fp8_no_bf16_round = p.fp8_f32;
    mo.lazy = p.stream;
    const double t_load = dsq_now();
    if ((st = dsq_model_open(&m, p.model, &mo, &err)) != DSQ_OK) {
        rc = dsq_cli_fail(CMD, st, &err);
        goto done;
    }
    const double load_s = dsq_now() - t_load;
    const int64_t n_train = dsq_model_get_config(m)->n_ctx_train;
    if (n_train > 0 && p.ctx > n_train)
        dsq_cli_warn(&c, "--ctx %lld is beyond the model's max_position_embeddings (%lld): "
                     "positions it was not trained for", (long long)p.ctx, (long long)n_train);
    if (p.text != NULL) {
        dsq_tokenizer *tok = NULL;
        st = dsq_model_tokenizer(m, &tok, &err);
        if (st == DSQ_OK)
            st = dsq_text_tokens(tok, p.text, &ids, &n_ids, &err);
        dsq_tokenizer_free(tok);
        if (st != DSQ_OK) {
            rc = dsq_cli_fail(CMD, st, &err);
            goto done;
        }
    }

    ppl_progress prog;
    dsq_progress_init(&prog.bar, "ppl", p.quiet);
    prog.ctx = p.ctx;
    prog.stream = p.stream;
    c.prog = &prog.bar;
    dsq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = p.ctx;
    po.n_chunks = p.chunks;
    po.batch = p.stream ? p.stream_windows : p.batch; /* layer-streamed: windows a pass */
    po.bos = p.bos == -2 ? dsq_model_get_config(m)->bos : (int32_t)p.bos;
    po.nthreads = p.threads;
    po.progress = progress_cb;
    po.progress_user = &prog;
    dsq_ppl_result r;
    st = p.stream ? dsq_ppl_run_layered(m, ids, n_ids, &po, &r, NULL, &err)
                  : dsq_ppl_run(m, ids, n_ids, &po, &r, NULL, &err);
    dsq_progress_done(&prog.bar);
    if (st != DSQ_OK) {
        rc = dsq_cli_fail(CMD, st, &err);
        goto done;
    }
    const double tps = r.seconds > 0 ? (double)(r.n_chunks * r.n_ctx) / r.seconds : 0.0;
    /* the result line is what ppl is for: printed with -q too */
    dsq_cli_say(&c, "PPL = %.4f +/- %.5f  (%lld chunk%s of %lld, %lld scored; %.1f tokens/s)",
                r.ppl, r.ppl_stderr, (long long)r.n_chunks, dsq_cli_s((size_t)r.n_chunks),
                (long long)r.n_ctx, (long long)r.n_scored, tps);
    if (p.json || p.json_out != NULL)
        rc = write_json(&p, &r, load_s, tps);
done:
    dsq_model_close(m);
    free(ids);
    return rc;
}
