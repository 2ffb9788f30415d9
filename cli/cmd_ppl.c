/* cli/cmd_ppl.c: `dsq ppl MODEL (--text FILE | --tokens FILE)`, llama.cpp-style perplexity. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "verify/model.h"
#include "verify/ppl.h"

static const char usage_text[] =
    "usage: dsq ppl MODEL_DIR --tokens FILE [options]\n"
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
    "  --json OUT      also write {\"ppl\", \"ppl_stderr\", \"nll_mean\", \"n_scored\",\n"
    "                  \"ctx\", ...} to OUT (\"-\" for stdout)\n"
    "  -q, --quiet     no progress, only the result line\n"
    "  -h, --help      this text\n";

static int parse_count(const char *opt, const char *v, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    const long n = v ? strtol(v, &end, 10) : 0;
    if (v == NULL || *v == '\0' || *end != '\0' || errno != 0 || n < lo || n > hi) {
        fprintf(stderr, "dsq ppl: %s needs a number from %ld to %ld\n", opt, lo, hi);
        return 0;
    }
    *out = n;
    return 1;
}

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

int dsq_cmd_ppl(int argc, char **argv) {
    const char *model_dir = NULL, *tokens_path = NULL, *text_path = NULL, *json_path = NULL;
    long ctx = 512, chunks = 0, threads = 0, batch = 1, bos = -2, stream_windows = 0;
    int quiet = 0, fp8_f32 = 0, stream = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        } else if (strcmp(a, "--tokens") == 0 || strcmp(a, "--json") == 0 ||
                   strcmp(a, "--text") == 0) {
            if (v == NULL) {
                fprintf(stderr, "dsq ppl: %s needs a file name\n", a);
                return DSQ_EXIT_USAGE;
            }
            *(a[2] == 'j' ? &json_path : a[3] == 'o' ? &tokens_path : &text_path) = v;
            i++;
        } else if (strcmp(a, "--ctx") == 0) {
            if (!parse_count(a, v, 4, 1 << 20, &ctx))
                return DSQ_EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--chunks") == 0) {
            if (!parse_count(a, v, 1, 1L << 40, &chunks))
                return DSQ_EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--batch") == 0) {
            if (!parse_count(a, v, 1, 4096, &batch))
                return DSQ_EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            if (!parse_count(a, v, 1, 4096, &threads))
                return DSQ_EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--bos") == 0) {
            if (v != NULL && strcmp(v, "none") == 0)
                bos = -1;
            else if (!parse_count(a, v, 0, INT32_MAX, &bos))
                return DSQ_EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--fp8-f32") == 0) {
            fp8_f32 = 1;
        } else if (strcmp(a, "--stream-layers") == 0) {
            stream = 1;
        } else if (strcmp(a, "--stream-windows") == 0) {
            if (!parse_count(a, v, 1, INT32_MAX, &stream_windows))
                return DSQ_EXIT_USAGE;
            stream = 1;
            i++;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "dsq ppl: unknown option '%s'\n%s", a, usage_text);
            return DSQ_EXIT_USAGE;
        } else if (model_dir == NULL) {
            model_dir = a;
        } else {
            fprintf(stderr, "dsq ppl: too many arguments\n%s", usage_text);
            return DSQ_EXIT_USAGE;
        }
    }
    if (model_dir == NULL || (tokens_path == NULL) == (text_path == NULL)) {
        fprintf(stderr, "dsq ppl: expected MODEL and one of --tokens FILE, --text FILE\n%s",
                usage_text);
        return DSQ_EXIT_USAGE;
    }

    dsq_err err = {0};
    dsq_status st;
    dsq_model *m = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    int rc = DSQ_EXIT_OK;
    if (tokens_path != NULL && (st = dsq_tokens_read(tokens_path, &ids, &n_ids, &err)) != DSQ_OK)
        return dsq_cli_fail(st, &err);
    dsq_model_opts mo;
    memset(&mo, 0, sizeof mo);
    mo.nthreads = (int)threads;
    mo.source.fp8_no_bf16_round = fp8_f32;
    mo.lazy = stream;
    const double t_load = dsq_now();
    if ((st = dsq_model_open(&m, model_dir, &mo, &err)) != DSQ_OK) {
        rc = dsq_cli_fail(st, &err);
        goto done;
    }
    const double load_s = dsq_now() - t_load;
    if (text_path != NULL) {
        dsq_tokenizer *tok = NULL;
        st = dsq_model_tokenizer(m, &tok, &err);
        if (st == DSQ_OK)
            st = dsq_text_tokens(tok, text_path, &ids, &n_ids, &err);
        dsq_tokenizer_free(tok);
        if (st != DSQ_OK) {
            rc = dsq_cli_fail(st, &err);
            goto done;
        }
    }

    ppl_progress prog;
    dsq_progress_init(&prog.bar, "ppl", quiet);
    prog.ctx = ctx;
    prog.stream = stream;
    dsq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = ctx;
    po.n_chunks = chunks;
    po.batch = stream ? stream_windows : batch; /* layer-streamed: windows a pass */
    po.bos = bos == -2 ? dsq_model_get_config(m)->bos : (int32_t)bos;
    po.nthreads = (int)threads;
    po.progress = progress_cb;
    po.progress_user = &prog;
    dsq_ppl_result r;
    st = stream ? dsq_ppl_run_layered(m, ids, n_ids, &po, &r, NULL, &err)
                : dsq_ppl_run(m, ids, n_ids, &po, &r, NULL, &err);
    dsq_progress_done(&prog.bar);
    if (st != DSQ_OK) {
        rc = dsq_cli_fail(st, &err);
        goto done;
    }
    const double tps = r.seconds > 0 ? (double)(r.n_chunks * r.n_ctx) / r.seconds : 0.0;
    printf("PPL = %.4f +/- %.5f  (%lld chunks of %lld, %lld scored; %.1f tokens/s)\n", r.ppl,
           r.ppl_stderr, (long long)r.n_chunks, (long long)r.n_ctx, (long long)r.n_scored, tps);
    if (json_path != NULL) {
        FILE *out = strcmp(json_path, "-") == 0 ? stdout : fopen(json_path, "w");
        if (out == NULL) {
            fprintf(stderr, "dsq: %s: %s\n", json_path, strerror(errno));
            rc = DSQ_EXIT_IO;
            goto done;
        }
        fprintf(out,
                "{\"ppl\": %.10g, \"ppl_stderr\": %.10g, \"nll_mean\": %.12g, \"n_scored\": %lld, "
                "\"ctx\": %lld, \"n_chunks\": %lld, \"seconds\": %.3f, \"load_seconds\": %.3f, "
                "\"tokens_per_second\": %.1f, \"gemm_seconds\": %.3f, "
                "\"attention_seconds\": %.3f}\n",
                r.ppl, r.ppl_stderr, r.nll_mean, (long long)r.n_scored, (long long)r.n_ctx,
                (long long)r.n_chunks, r.seconds, load_s, tps, r.gemm_seconds, r.attn_seconds);
        if (out != stdout && fclose(out) != 0) {
            fprintf(stderr, "dsq: %s: %s\n", json_path, strerror(errno));
            rc = DSQ_EXIT_IO;
        }
    }
done:
    dsq_model_close(m);
    free(ids);
    return rc;
}
