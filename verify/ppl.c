/* verify/ppl.c: llama.cpp-style perplexity over a token list. */
#include "verify/ppl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "verify/windows.h"

double dsq_logsumexp(const float *x, int64_t n) {
    double mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    return log(sum) + mx;
}

double dsq_nll(const float *logits, int64_t n, int32_t target) {
    return dsq_logsumexp(logits, n) - (double)logits[target];
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

/* Each window's Σnll and Σnll² over its scored positions. */
typedef struct ppl_job {
    const int32_t *tokens;
    int64_t ctx, V;
    double *csum, *csum2;
} ppl_job;

static dsq_status ppl_window(void *user, int64_t c, const float *logits, const float *ref,
                             dsq_err *err) {
    (void)ref;
    (void)err;
    const ppl_job *j = user;
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
    return DSQ_OK;
}

void dsq_ppl_from_sums(const double *csum, const double *csum2, int64_t n_chunks, int64_t nscore,
                       dsq_ppl_result *res, double *chunk_nll) {
    /* in window order: the same sum whatever thread did which window */
    double sum = 0.0, sum2 = 0.0;
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        sum += csum[ch];
        sum2 += csum2[ch];
        if (chunk_nll != NULL)
            chunk_nll[ch] = csum[ch] / (double)nscore;
    }
    const int64_t count = n_chunks * nscore;
    const double mean = sum / (double)count;
    const double var = sum2 / (double)count - mean * mean;
    res->nll_mean = mean;
    res->ppl = exp(mean);
    res->ppl_stderr = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) * res->ppl : 0.0;
    res->n_scored = count;
    res->n_chunks = n_chunks;
}

/* Both schedules: m_rw non-NULL for the layer-streamed one. */
static dsq_status ppl_run(const dsq_model *m, dsq_model *m_rw, const int32_t *tokens,
                          int64_t n_tokens, const dsq_ppl_opts *o, dsq_ppl_result *res,
                          double *chunk_nll, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t ctx = ctx_of(o), V = dsq_model_get_config(m)->vocab;
    const int64_t n_chunks = ctx >= 4 ? dsq_ppl_chunks(n_tokens, o) : 0;
    ppl_job job = {tokens, ctx, V, NULL, NULL};
    /* opts.batch: windows per forward call, or per layer-streamed pass */
    const int64_t per_pass = o->batch > 0 ? o->batch : DSQ_STREAM_ALL;
    dsq__windows w = {tokens,           ctx,        n_chunks, o->batch,
                      o->bos,           o->nthreads, m_rw != NULL ? per_pass : 0,
                      o->progress,      o->progress_user, ppl_window, &job};
    double stats[3];
    memset(res, 0, sizeof *res);
    DSQ_TRY(dsq__windows_check(m, &w, n_tokens, err));
    job.csum = calloc((size_t)n_chunks, sizeof *job.csum);
    job.csum2 = calloc((size_t)n_chunks, sizeof *job.csum2);
    DSQ_CHECK(job.csum != NULL && job.csum2 != NULL, DSQ_NOMEM, err, "out of memory");
    if (m_rw != NULL)
        DSQ_TRY(dsq__windows_run(m_rw, NULL, &w, &res->seconds, stats, err));
    else
        DSQ_TRY(dsq__windows_run_whole(m, NULL, &w, &res->seconds, stats, err));
    dsq_ppl_from_sums(job.csum, job.csum2, n_chunks, ctx - 1 - ctx / 2, res, chunk_nll);
    res->n_ctx = ctx;
    res->gemm_seconds = stats[0];
    res->attn_seconds = stats[1];
    res->gemm_flop = stats[2];
cleanup:
    free(job.csum);
    free(job.csum2);
    return st;
}

dsq_status dsq_ppl_run(const dsq_model *m, const int32_t *tokens, int64_t n_tokens,
                       const dsq_ppl_opts *o, dsq_ppl_result *res, double *chunk_nll,
                       dsq_err *err) {
    return ppl_run(m, NULL, tokens, n_tokens, o, res, chunk_nll, err);
}

dsq_status dsq_ppl_run_layered(dsq_model *m, const int32_t *tokens, int64_t n_tokens,
                               const dsq_ppl_opts *o, dsq_ppl_result *res, double *chunk_nll,
                               dsq_err *err) {
    return ppl_run(m, m, tokens, n_tokens, o, res, chunk_nll, err);
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
