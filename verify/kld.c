/* verify/kld.c: the candidate against its reference, in the reference's
 * three forms (see kld.h): the per-position sums and their statistics. */
#include "verify/kld.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "verify/windows.h"

const char *dsq_ref_kind_name(dsq_ref_kind k) {
    return k == DSQ_REFKIND_LIVE ? "live" : k == DSQ_REFKIND_LLAMA ? "llama.cpp" : "top-k";
}

/* One comparison: the reference in one of its forms, what a live run keeps,
 * and the results per window and position. */
typedef struct cmp_job {
    const int32_t *tokens; /* the windows' tokens (targets) */
    int64_t ctx, V, nscore;
    const dsq_ref_logits *topk;     /* top-K form */
    const dsq_llama_logits *llama;  /* llama.cpp form */
    dsq_ref_logits *save_topk;      /* live: filled as it goes, or NULL */
    dsq_llama_writer *save_llama;   /* live: written as it goes, or NULL */
    double *kld;                    /* [position] */
    double *csum, *csum2;           /* [window] the candidate's Σnll, Σnll² */
    double *rsum, *rsum2;           /* [window] the reference's */
    int64_t *agree;                 /* [window] positions whose argmax agrees */
} cmp_job;

/* One position's figures. */
typedef struct pos_out {
    double kl, nll_ref, nll;
    int agree;
} pos_out;

/* Adds position p of window c to the window's sums. */
static void add_pos(const cmp_job *j, int64_t c, int64_t p, const pos_out *o) {
    j->kld[c * j->nscore + p] = o->kl > 0.0 ? o->kl : 0.0;
    j->csum[c] += o->nll;
    j->csum2[c] += o->nll * o->nll;
    j->rsum[c] += o->nll_ref;
    j->rsum2[c] += o->nll_ref * o->nll_ref;
    j->agree[c] += o->agree;
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* ---- live: both models' logits ---- */

static void pos_live(const float *p, const float *q, int64_t V, int32_t target, pos_out *o) {
    const double zp = dsq_logsumexp(p, V), zq = dsq_logsumexp(q, V);
    double kl = 0.0;
    for (int64_t i = 0; i < V; i++) {
        const double a = (double)p[i] - zp, b = (double)q[i] - zq;
        kl += exp(a) * (a - b);
    }
    o->kl = kl;
    o->nll_ref = zp - (double)p[target];
    o->nll = zq - (double)q[target];
    o->agree = argmax(p, V) == argmax(q, V);
}

static dsq_status live_window(void *user, int64_t c, const float *q, const float *p,
                              dsq_err *err) {
    const cmp_job *j = user;
    const int32_t *tk = j->tokens + c * j->ctx + j->ctx / 2 + 1;
    for (int64_t s = 0; s < j->nscore; s++) {
        const float *ps = p + (size_t)s * (size_t)j->V, *qs = q + (size_t)s * (size_t)j->V;
        pos_out o;
        pos_live(ps, qs, j->V, tk[s], &o);
        add_pos(j, c, s, &o);
        if (j->save_topk != NULL)
            dsq__ref_fill(j->save_topk, c, s, ps, j->tokens);
    }
    return j->save_llama != NULL ? dsq_llama_writer_put(j->save_llama, c, p, err) : DSQ_OK;
}

/* ---- llama.cpp's file: 16-bit log-probabilities ---- */

/* As llama-perplexity --kl-divergence sums it: the stored ln p_i in float,
 * only the tokens above -16, the argmax the first largest stored value. */
static void pos_llama(const uint8_t *rec, const float *q, int64_t V, int32_t target, pos_out *o) {
    const float scale = dsq_llama_rec_scale(rec), mn = dsq_llama_rec_min(rec);
    const double zq = dsq_logsumexp(q, V);
    double kl = 0.0;
    float best = 0.0f;
    int64_t ib = 0;
    for (int64_t i = 0; i < V; i++) {
        const float lp = scale * (float)dsq_llama_rec_q(rec, i) + mn;
        if (i == 0 || lp > best) {
            best = lp;
            ib = i;
        }
        if (lp > -16.f)
            kl += exp((double)lp) * ((double)lp - ((double)q[i] - zq));
    }
    o->kl = kl;
    o->nll_ref = -(double)(scale * (float)dsq_llama_rec_q(rec, target) + mn);
    o->nll = zq - (double)q[target];
    o->agree = argmax(q, V) == ib;
}

static dsq_status llama_window(void *user, int64_t c, const float *q, const float *unused,
                               dsq_err *err) {
    (void)unused;
    const cmp_job *j = user;
    const size_t rec = (size_t)j->llama->nv * 2;
    uint8_t *buf = malloc(dsq_llama_logits_chunk_bytes(j->llama));
    if (buf == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory for a window's log-probabilities");
    const dsq_status st = dsq_llama_logits_read(j->llama, c, buf, err);
    const int32_t *tk = j->tokens + c * j->ctx + j->ctx / 2 + 1;
    for (int64_t s = 0; st == DSQ_OK && s < j->nscore; s++) {
        pos_out o;
        pos_llama(buf + (size_t)s * rec, q + (size_t)s * (size_t)j->V, j->V, tk[s], &o);
        add_pos(j, c, s, &o);
    }
    free(buf);
    return st;
}

/* ---- the top-K summary ---- */

static dsq_status topk_window(void *user, int64_t c, const float *q, const float *unused,
                              dsq_err *err) {
    (void)unused;
    (void)err;
    const cmp_job *j = user;
    const dsq_ref_logits *r = j->topk;
    const int32_t *tk = j->tokens + c * j->ctx + j->ctx / 2 + 1;
    for (int64_t s = 0; s < j->nscore; s++) {
        const float *qs = q + (size_t)s * (size_t)j->V;
        const size_t i = (size_t)(c * r->n_score + s);
        const int32_t *id = r->top_id + i * (size_t)r->k;
        const float *lg = r->top_logit + i * (size_t)r->k;
        const double zq = dsq_logsumexp(qs, j->V);
        double kl = 0.0, P = 0.0, Q = 0.0;
        for (int t = 0; t < r->k; t++) {
            const double lp = (double)lg[t] - r->lse[i], lq = (double)qs[id[t]] - zq;
            const double pp = exp(lp);
            P += pp;
            Q += exp(lq);
            kl += pp * (lp - lq);
        }
        const double pr = 1.0 - P, qr = 1.0 - Q;
        if (pr > 1e-12)
            kl += pr * (log(pr) - log(qr > 1e-300 ? qr : 1e-300));
        const pos_out o = {kl, r->nll[i], zq - (double)qs[tk[s]], argmax(qs, j->V) == id[0]};
        add_pos(j, c, s, &o);
    }
    return DSQ_OK;
}

/* ---- shared ---- */

static void job_free(cmp_job *j) {
    free(j->kld);
    free(j->csum);
    free(j->csum2);
    free(j->rsum);
    free(j->rsum2);
    free(j->agree);
}

static dsq_status job_alloc(cmp_job *j, int64_t n_chunks, dsq_err *err) {
    const size_t nw = (size_t)n_chunks, np = nw * (size_t)j->nscore;
    j->kld = malloc(np * sizeof *j->kld);
    j->csum = calloc(nw, sizeof *j->csum);
    j->csum2 = calloc(nw, sizeof *j->csum2);
    j->rsum = calloc(nw, sizeof *j->rsum);
    j->rsum2 = calloc(nw, sizeof *j->rsum2);
    j->agree = calloc(nw, sizeof *j->agree);
    if (!j->kld || !j->csum || !j->csum2 || !j->rsum || !j->rsum2 || !j->agree)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory for %zu positions", np);
    return DSQ_OK;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The statistics of res from the job's sums, in window and position order so
 * that every schedule gives the same bits. */
static dsq_status finish(const cmp_job *j, int64_t n_chunks, dsq_kld_result *res, dsq_err *err) {
    const size_t n = (size_t)(n_chunks * j->nscore);
    double *sorted = malloc(n * sizeof *sorted);
    if (sorted == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory for %zu positions", n);
    dsq_ppl_result a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    dsq_ppl_from_sums(j->rsum, j->rsum2, n_chunks, j->nscore, &a, NULL);
    dsq_ppl_from_sums(j->csum, j->csum2, n_chunks, j->nscore, &b, NULL);
    res->ref_ppl = a.ppl;
    res->ref_ppl_stderr = a.ppl_stderr;
    res->ref_nll_mean = a.nll_mean;
    res->ppl = b.ppl;
    res->ppl_stderr = b.ppl_stderr;
    res->nll_mean = b.nll_mean;
    res->ppl_ratio = b.ppl / a.ppl;
    double ks = 0.0;
    int64_t agree = 0;
    for (size_t i = 0; i < n; i++)
        ks += j->kld[i];
    for (int64_t c = 0; c < n_chunks; c++)
        agree += j->agree[c];
    res->kld_mean = ks / (double)n;
    memcpy(sorted, j->kld, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_double);
    const size_t rank = (99 * n + 99) / 100; /* ceil(0.99·n), >= 1 */
    res->kld_p99 = sorted[rank - 1];
    res->kld_max = sorted[n - 1];
    res->top1 = (double)agree / (double)n;
    res->n_scored = (int64_t)n;
    res->n_ctx = j->ctx;
    res->n_chunks = n_chunks;
    res->n_vocab = j->V;
    free(sorted);
    return DSQ_OK;
}

dsq_status dsq_kld_run_live(dsq_model *ref, dsq_model *cand, const int32_t *tokens,
                            int64_t n_tokens, const dsq_ppl_opts *o, int64_t stream,
                            const dsq_kld_save *save, dsq_kld_result *res, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t ctx = o->n_ctx > 0 ? o->n_ctx : 512, V = dsq_model_get_config(ref)->vocab;
    const int64_t n_chunks = ctx >= 4 ? dsq_ppl_chunks(n_tokens, o) : 0;
    cmp_job job = {.tokens = tokens, .ctx = ctx, .V = V, .nscore = ctx - 1 - ctx / 2};
    const dsq__windows w = {tokens, ctx, n_chunks, 1, o->bos, o->nthreads, stream,
                            o->progress, o->progress_user, live_window, &job};
    memset(res, 0, sizeof *res);
    DSQ_TRY(dsq__windows_check(ref, &w, n_tokens, err));
    DSQ_TRY(dsq__windows_check(cand, &w, n_tokens, err));
    DSQ_TRY(job_alloc(&job, n_chunks, err));
    if (save != NULL && save->topk_out != NULL)
        DSQ_TRY(dsq__ref_new(&job.save_topk, V, ctx, n_chunks, o->bos, save->topk, tokens, err));
    if (save != NULL && save->llama_path != NULL)
        DSQ_TRY(dsq_llama_writer_open(&job.save_llama, save->llama_path, ctx, V, n_chunks, tokens,
                                      err));
    DSQ_TRY(dsq__windows_run(cand, ref, &w, &res->seconds, NULL, err));
    DSQ_TRY(finish(&job, n_chunks, res, err));
    res->ref_kind = DSQ_REFKIND_LIVE;
    res->exact = 1;
    if (job.save_llama != NULL) {
        st = dsq_llama_writer_commit(job.save_llama, err);
        job.save_llama = NULL;
        if (st != DSQ_OK)
            goto cleanup;
    }
    if (job.save_topk != NULL) {
        *save->topk_out = job.save_topk;
        job.save_topk = NULL;
    }
cleanup:
    dsq_llama_writer_abort(job.save_llama);
    dsq_ref_free(job.save_topk);
    job_free(&job);
    return st;
}

dsq_status dsq_kld_run(dsq_model *cand, const dsq_ref_logits *r, const int32_t *tokens,
                       int64_t n_tokens, int nthreads, int64_t stream, dsq_kld_result *res,
                       dsq_err *err) {
    dsq_status st = DSQ_OK;
    cmp_job job = {.tokens = tokens, .ctx = r->n_ctx, .V = r->vocab, .nscore = r->n_score,
                   .topk = r};
    const dsq__windows w = {tokens, r->n_ctx, r->n_chunks, 1, r->bos, nthreads, stream,
                            NULL, NULL, topk_window, &job};
    memset(res, 0, sizeof *res);
    const int64_t V = dsq_model_get_config(cand)->vocab;
    DSQ_CHECK(V == r->vocab, DSQ_FORMAT, err,
              "the model's vocabulary (%lld) differs from the reference's (%lld)", (long long)V,
              (long long)r->vocab);
    DSQ_TRY(dsq__windows_check(cand, &w, n_tokens, err));
    DSQ_CHECK(dsq_windows_hash(tokens, r->n_chunks, r->n_ctx, r->bos) == r->tokens_hash,
              DSQ_FORMAT, err,
              "the tokens do not give the reference's %lld windows of %lld (another text, "
              "--ctx or --chunks than the reference was made with)",
              (long long)r->n_chunks, (long long)r->n_ctx);
    DSQ_TRY(job_alloc(&job, r->n_chunks, err));
    DSQ_TRY(dsq__windows_run(cand, NULL, &w, &res->seconds, NULL, err));
    DSQ_TRY(finish(&job, r->n_chunks, res, err));
    res->ref_kind = DSQ_REFKIND_TOPK;
    res->k = r->k;
    res->exact = r->k == r->vocab;
cleanup:
    job_free(&job);
    return st;
}

dsq_status dsq_kld_run_llama(dsq_model *cand, const dsq_llama_logits *f, const int32_t *tokens,
                             int64_t n_tokens, int32_t bos, int nthreads, int64_t stream,
                             dsq_kld_result *res, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t n = f->n_chunks * f->n_ctx;
    cmp_job job = {.tokens = f->tokens, .ctx = f->n_ctx, .V = f->vocab, .nscore = f->n_score,
                   .llama = f};
    const dsq__windows w = {f->tokens, f->n_ctx, f->n_chunks, 1, bos, nthreads, stream,
                            NULL, NULL, llama_window, &job};
    memset(res, 0, sizeof *res);
    const int64_t V = dsq_model_get_config(cand)->vocab;
    DSQ_CHECK(V == f->vocab, DSQ_FORMAT, err,
              "the model's vocabulary (%lld) differs from %s's (%lld)", (long long)V, f->path,
              (long long)f->vocab);
    DSQ_CHECK(tokens == NULL || (n_tokens >= n && memcmp(tokens, f->tokens, (size_t)n * 4) == 0),
              DSQ_FORMAT, err,
              "the tokens are not %s's %lld windows of %lld (another text, or tokenized "
              "otherwise)",
              f->path, (long long)f->n_chunks, (long long)f->n_ctx);
    /* the file keeps only its windows' tokens: the two-window minimum is a
     * rule for the text, which llama-perplexity applied when it wrote them */
    DSQ_TRY(dsq__windows_check(cand, &w, n > 2 * f->n_ctx ? n : 2 * f->n_ctx, err));
    DSQ_TRY(job_alloc(&job, f->n_chunks, err));
    DSQ_TRY(dsq__windows_run(cand, NULL, &w, &res->seconds, NULL, err));
    DSQ_TRY(finish(&job, f->n_chunks, res, err));
    res->ref_kind = DSQ_REFKIND_LLAMA;
    res->exact = 1;
cleanup:
    job_free(&job);
    return st;
}
