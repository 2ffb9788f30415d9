/* verify/ppl.c: llama.cpp-style perplexity over a token list. */
#include "verify/ppl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/file.h"
#include "verify/forward.h"
#include "verify/windows.h"

#ifdef _OPENMP
#include <omp.h>
#endif

double dsq_nll(const float *logits, int64_t n, int32_t target) {
    double mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += exp((double)logits[i] - mx);
    return log(sum) + mx - (double)logits[target];
}

static int64_t ctx_of(const dsq_ppl_opts *o) {
    return o->n_ctx > 0 ? o->n_ctx : 512;
}

int64_t dsq_ppl_chunks(int64_t n_tokens, const dsq_ppl_opts *o) {
    const int64_t ctx = ctx_of(o);
    int64_t n = n_tokens / ctx;
    if (o->n_chunks > 0 && o->n_chunks < n)
        n = o->n_chunks;
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One worker: a forward state and its buffers for B windows. */
typedef struct worker {
    dsq_fwd *f;
    int32_t *win;   /* [B][ctx] */
    float *logits;  /* [B][nscore][V] */
    dsq_status st;
    dsq_err err;
} worker;

/* Runs the windows of group g (chunks [g·B, g·B + nb)) on worker w and leaves
 * each chunk's Σnll and Σnll² in csum/csum2. */
static dsq_status run_group(worker *w, const dsq_ppl_opts *o, const int32_t *tokens,
                            int64_t g, int64_t B, int64_t n_chunks, int64_t ctx, int64_t V,
                            double *csum, double *csum2) {
    const int64_t first = ctx / 2, nscore = ctx - 1 - first;
    const int64_t c0 = g * B, nb = c0 + B <= n_chunks ? B : n_chunks - c0;
    /* a short last group repeats its first window: rows are computed
     * independently, so the padding changes nothing and is not scored */
    for (int64_t b = 0; b < B; b++) {
        const int64_t ch = c0 + (b < nb ? b : 0);
        memcpy(w->win + b * ctx, tokens + ch * ctx, (size_t)ctx * sizeof *w->win);
        if (o->bos >= 0)
            w->win[b * ctx] = o->bos;
    }
    const dsq_status st = dsq_fwd_run(w->f, w->win, first, nscore, w->logits, &w->err);
    if (st != DSQ_OK)
        return st;
    for (int64_t b = 0; b < nb; b++) {
        const int32_t *tk = tokens + (c0 + b) * ctx;
        double s = 0.0, s2 = 0.0;
        for (int64_t j = 0; j < nscore; j++) {
            const double nll =
                dsq_nll(w->logits + (size_t)(b * nscore + j) * (size_t)V, V, tk[first + j + 1]);
            s += nll;
            s2 += nll * nll;
        }
        csum[c0 + b] = s;
        csum2[c0 + b] = s2;
    }
    return DSQ_OK;
}

dsq_status dsq_ppl_run(const dsq_model *m, const int32_t *tokens, int64_t n_tokens,
                       const dsq_ppl_opts *o, dsq_ppl_result *res, double *chunk_nll,
                       dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_model_config *c = dsq_model_get_config(m);
    const int64_t ctx = ctx_of(o), V = c->vocab;
    worker *w = NULL;
    double *csum = NULL, *csum2 = NULL;
    int P = 0;
    memset(res, 0, sizeof *res);
    DSQ_CHECK(ctx >= 4 && ctx <= (1 << 20), DSQ_INVALID_ARG, err,
              "context %lld must be between 4 and 1048576", (long long)ctx);
    DSQ_CHECK(n_tokens >= 2 * ctx, DSQ_INVALID_ARG, err,
              "%lld tokens are too few for context %lld (need at least %lld)",
              (long long)n_tokens, (long long)ctx, (long long)(2 * ctx));
    DSQ_CHECK(o->bos < V, DSQ_RANGE, err, "bos id %ld is outside the vocabulary (%lld)",
              (long)o->bos, (long long)V);
    const int64_t n_chunks = dsq_ppl_chunks(n_tokens, o);
    for (int64_t i = 0; i < n_chunks * ctx; i++)
        DSQ_CHECK(tokens[i] >= 0 && tokens[i] < V, DSQ_RANGE, err,
                  "token %lld (id %ld) is outside the vocabulary of %lld", (long long)i + 1,
                  (long)tokens[i], (long long)V);
    const int64_t first = ctx / 2, nscore = ctx - 1 - first;
    int64_t B = o->batch > 0 ? o->batch : 1;
    if (B > n_chunks)
        B = n_chunks;
    const int64_t n_groups = (n_chunks + B - 1) / B;

    /* Threads work on different windows, each single-threaded, when there are
     * enough windows: no barrier inside a window, so a busy machine or a small
     * model does not leave threads waiting on each other. With fewer windows
     * than threads, one worker uses every thread inside each product. Either
     * way every window is computed the same, so the result is the same. */
    const int nt = o->nthreads > 0 ? o->nthreads : dsq_model_nthreads(m);
    P = n_groups >= nt ? nt : 1;
    const dsq_fwd_opts fo = {P > 1 ? 1 : nt, NULL, NULL};
    w = calloc((size_t)P, sizeof *w);
    csum = calloc((size_t)n_chunks, sizeof *csum);
    csum2 = calloc((size_t)n_chunks, sizeof *csum2);
    DSQ_CHECK(w != NULL && csum != NULL && csum2 != NULL, DSQ_NOMEM, err, "out of memory");
    for (int i = 0; i < P; i++) {
        DSQ_TRY(dsq_fwd_init(&w[i].f, m, B, ctx, &fo, err));
        w[i].win = malloc((size_t)(B * ctx) * sizeof *w[i].win);
        w[i].logits = malloc((size_t)(B * nscore) * (size_t)V * sizeof *w[i].logits);
        DSQ_CHECK(w[i].win != NULL && w[i].logits != NULL, DSQ_NOMEM, err, "out of memory");
    }

    const double t0 = now_s();
    int64_t done = 0;
    int failed = 0;
#pragma omp parallel for num_threads(P) schedule(dynamic, 1)
    for (int64_t g = 0; g < n_groups; g++) {
#ifdef _OPENMP
        worker *me = &w[omp_get_thread_num()];
#else
        worker *me = &w[0];
#endif
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop)
            continue;
        me->st = run_group(me, o, tokens, g, B, n_chunks, ctx, V, csum, csum2);
        if (me->st != DSQ_OK) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
#pragma omp critical(dsq_ppl_progress)
        {
            done += g * B + B <= n_chunks ? B : n_chunks - g * B;
            if (o->progress != NULL)
                o->progress(o->progress_user, (uint64_t)done, (uint64_t)n_chunks);
        }
    }
    for (int i = 0; i < P; i++)
        if (w[i].st != DSQ_OK) {
            st = dsq_err_set(err, w[i].st, "%s", w[i].err.text);
            goto cleanup;
        }
    res->seconds = now_s() - t0;

    /* sums in chunk order: the same whatever thread did which chunk */
    double sum = 0.0, sum2 = 0.0;
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        sum += csum[ch];
        sum2 += csum2[ch];
        if (chunk_nll != NULL)
            chunk_nll[ch] = csum[ch] / (double)nscore;
    }
    for (int i = 0; i < P; i++) {
        dsq_fwd_stats fs;
        dsq_fwd_get_stats(w[i].f, &fs);
        res->gemm_seconds += fs.gemm_s;
        res->attn_seconds += fs.attn_s;
        res->gemm_flop += fs.gemm_flop;
    }
    /* per thread, comparable with the wall-clock seconds */
    res->gemm_seconds /= P;
    res->attn_seconds /= P;
    const int64_t count = n_chunks * nscore;
    const double mean = sum / (double)count;
    const double var = sum2 / (double)count - mean * mean;
    res->nll_mean = mean;
    res->ppl = exp(mean);
    res->ppl_stderr = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) * res->ppl : 0.0;
    res->n_scored = count;
    res->n_ctx = ctx;
    res->n_chunks = n_chunks;
cleanup:
    for (int i = 0; w != NULL && i < P; i++) {
        dsq_fwd_free(w[i].f);
        free(w[i].win);
        free(w[i].logits);
    }
    free(w);
    free(csum);
    free(csum2);
    return st;
}

dsq_status dsq_tokens_read(const char *path, int32_t **ids, int64_t *n, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_map map = {0};
    int32_t *out = NULL;
    size_t cap = 0, cnt = 0;
    *ids = NULL;
    *n = 0;
    DSQ_TRY(dsq_map_open(&map, path, err));
    const char *p = (const char *)map.data, *end = p + map.size;
    int64_t line = 1;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        if (p < end && *p == '\n') {
            p++;
            line++;
            continue;
        }
        if (p == end)
            break;
        DSQ_CHECK(isdigit((unsigned char)*p), DSQ_FORMAT, err,
                  "%s:%lld: expected a token id (one non-negative integer per line)", path,
                  (long long)line);
        int64_t v = 0;
        while (p < end && isdigit((unsigned char)*p)) {
            v = v * 10 + (*p - '0');
            DSQ_CHECK(v <= INT32_MAX, DSQ_FORMAT, err, "%s:%lld: token id too large", path,
                      (long long)line);
            p++;
        }
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        DSQ_CHECK(p == end || *p == '\n', DSQ_FORMAT, err,
                  "%s:%lld: expected one token id per line", path, (long long)line);
        if (cnt == cap) {
            cap = cap ? cap * 2 : 4096;
            int32_t *t = realloc(out, cap * sizeof *out);
            DSQ_CHECK(t != NULL, DSQ_NOMEM, err, "out of memory");
            out = t;
        }
        out[cnt++] = (int32_t)v;
    }
    *ids = out;
    *n = (int64_t)cnt;
    out = NULL;
cleanup:
    free(out);
    dsq_map_close(&map);
    return st;
}

typedef struct layered_job {
    const int32_t *tokens;
    int64_t ctx, V;
    double *csum, *csum2;
} layered_job;

/* The same sums in the same order as run_group. */
static void layered_window(void *user, int64_t c, const float *logits) {
    const layered_job *j = user;
    const int64_t first = j->ctx / 2, nscore = j->ctx - 1 - first;
    const int32_t *tk = j->tokens + c * j->ctx;
    double s = 0.0, s2 = 0.0;
    for (int64_t p = 0; p < nscore; p++) {
        const double nll = dsq_nll(logits + (size_t)p * (size_t)j->V, j->V, tk[first + p + 1]);
        s += nll;
        s2 += nll * nll;
    }
    j->csum[c] = s;
    j->csum2[c] = s2;
}

dsq_status dsq_ppl_run_layered(dsq_model *m, const int32_t *tokens, int64_t n_tokens,
                               const dsq_ppl_opts *o, dsq_ppl_result *res, double *chunk_nll,
                               dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t ctx = ctx_of(o), V = dsq_model_get_config(m)->vocab;
    const int64_t n_chunks = ctx >= 4 ? dsq_ppl_chunks(n_tokens, o) : 0;
    layered_job job = {tokens, ctx, V, NULL, NULL};
    const int64_t per_pass = o->batch > 0 ? o->batch : DSQ_STREAM_ALL;
    dsq__windows w = {tokens, ctx, n_chunks, o->bos, o->nthreads, per_pass, o->progress,
                      o->progress_user, layered_window, &job};
    double stats[3];
    memset(res, 0, sizeof *res);
    DSQ_TRY(dsq__windows_check(m, &w, n_tokens, err));
    job.csum = calloc((size_t)n_chunks, sizeof *job.csum);
    job.csum2 = calloc((size_t)n_chunks, sizeof *job.csum2);
    DSQ_CHECK(job.csum != NULL && job.csum2 != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq__windows_run(m, &w, &res->seconds, stats, err));
    const int64_t nscore = ctx - 1 - ctx / 2;
    double sum = 0.0, sum2 = 0.0;
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        sum += job.csum[ch];
        sum2 += job.csum2[ch];
        if (chunk_nll != NULL)
            chunk_nll[ch] = job.csum[ch] / (double)nscore;
    }
    const int64_t count = n_chunks * nscore;
    const double mean = sum / (double)count;
    const double var = sum2 / (double)count - mean * mean;
    res->nll_mean = mean;
    res->ppl = exp(mean);
    res->ppl_stderr = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) * res->ppl : 0.0;
    res->n_scored = count;
    res->n_ctx = ctx;
    res->n_chunks = n_chunks;
    res->gemm_seconds = stats[0];
    res->attn_seconds = stats[1];
    res->gemm_flop = stats[2];
cleanup:
    free(job.csum);
    free(job.csum2);
    return st;
}

dsq_status dsq_text_tokens(const dsq_tokenizer *tok, const char *path, int32_t **ids, int64_t *n,
                           dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *text = NULL;
    size_t len = 0, cnt = 0;
    *ids = NULL;
    *n = 0;
    DSQ_TRY(dsq_read_small_file(path, (size_t)1 << 31, &text, &len, err));
    DSQ_TRY(dsq_tokenizer_encode(tok, text, len, 1, ids, &cnt, err));
    *n = (int64_t)cnt;
cleanup:
    free(text);
    return st;
}
