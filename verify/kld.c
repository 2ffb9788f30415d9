/* verify/kld.c: reference summaries, their file, and the candidate comparison
 * (see kld.h). */
#include "verify/kld.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "verify/windows.h"

#define REF_MAGIC "DSQREF01"
#define REF_VERSION 1u
#define REF_HEADER 64
#define REF_MAX_FILE ((size_t)1 << 34)

void dsq_ref_free(dsq_ref_logits *r) {
    if (r == NULL)
        return;
    free(r->lse);
    free(r->nll);
    free(r->top_id);
    free(r->top_logit);
    free(r);
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

uint64_t dsq_windows_hash(const int32_t *tokens, int64_t n_chunks, int64_t n_ctx, int32_t bos) {
    uint64_t h = FNV_INIT;
    for (int64_t c = 0; c < n_chunks; c++)
        for (int64_t j = 0; j < n_ctx; j++) {
            const uint32_t t = (uint32_t)(j == 0 && bos >= 0 ? bos : tokens[c * n_ctx + j]);
            const uint8_t b[4] = {(uint8_t)t, (uint8_t)(t >> 8), (uint8_t)(t >> 16),
                                  (uint8_t)(t >> 24)};
            h = fnv_bytes(h, b, 4);
        }
    return h;
}

/* ---- the reference summary ---- */

static double logsumexp(const float *x, int64_t n) {
    double mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += exp((double)x[i] - mx);
    return log(s) + mx;
}

/* The k largest of x[0..n), largest first; ties keep the lower index first. */
static void top_k(const float *x, int64_t n, int k, int32_t *id, float *val) {
    int have = 0;
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        if (have == k && !(v > val[k - 1]))
            continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && v > val[j - 1]) {
            val[j] = val[j - 1];
            id[j] = id[j - 1];
            j--;
        }
        val[j] = v;
        id[j] = (int32_t)i;
    }
}

typedef struct ref_job {
    dsq_ref_logits *r;
    const int32_t *tokens;
} ref_job;

static void ref_window(void *user, int64_t c, const float *logits) {
    const ref_job *j = user;
    const dsq_ref_logits *r = j->r;
    const int64_t V = r->vocab, first = r->n_ctx / 2;
    for (int64_t p = 0; p < r->n_score; p++) {
        const float *l = logits + (size_t)p * (size_t)V;
        const size_t i = (size_t)(c * r->n_score + p);
        const int32_t target = j->tokens[c * r->n_ctx + first + p + 1];
        r->lse[i] = logsumexp(l, V);
        r->nll[i] = dsq_nll(l, V, target);
        top_k(l, V, r->k, r->top_id + i * (size_t)r->k, r->top_logit + i * (size_t)r->k);
    }
}

/* Allocates the per-position arrays of r (k, n_chunks, n_score set). */
static dsq_status ref_alloc(dsq_ref_logits *r, dsq_err *err) {
    const size_t n = (size_t)(r->n_chunks * r->n_score), k = (size_t)r->k;
    r->lse = malloc(n * sizeof *r->lse);
    r->nll = malloc(n * sizeof *r->nll);
    r->top_id = malloc(n * k * sizeof *r->top_id);
    r->top_logit = malloc(n * k * sizeof *r->top_logit);
    if (r->lse == NULL || r->nll == NULL || r->top_id == NULL || r->top_logit == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory for the reference (%zu positions)", n);
    return DSQ_OK;
}

dsq_status dsq_ref_compute(dsq_model *ref, const int32_t *tokens, int64_t n_tokens,
                           const dsq_ppl_opts *o, int32_t k, int64_t stream,
                           dsq_ref_logits **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_ref_logits *r = NULL;
    *out = NULL;
    const int64_t ctx = o->n_ctx > 0 ? o->n_ctx : 512;
    const int64_t n_chunks = ctx >= 4 ? dsq_ppl_chunks(n_tokens, o) : 0;
    dsq__windows w = {tokens, ctx, n_chunks, o->bos, o->nthreads, stream, o->progress,
                      o->progress_user, ref_window, NULL};
    DSQ_TRY(dsq__windows_check(ref, &w, n_tokens, err));
    DSQ_CHECK(k <= DSQ_REF_TOPK_MAX, DSQ_INVALID_ARG, err, "top-k %ld is above %d", (long)k,
              DSQ_REF_TOPK_MAX);
    if (k <= 0)
        k = DSQ_REF_TOPK;
    r = calloc(1, sizeof *r);
    DSQ_CHECK(r != NULL, DSQ_NOMEM, err, "out of memory");
    r->vocab = dsq_model_get_config(ref)->vocab;
    r->n_ctx = ctx;
    r->n_chunks = n_chunks;
    r->n_score = ctx - 1 - ctx / 2;
    r->bos = o->bos;
    r->k = r->vocab < k ? (int32_t)r->vocab : k;
    r->tokens_hash = dsq_windows_hash(tokens, n_chunks, ctx, o->bos);
    DSQ_TRY(ref_alloc(r, err));
    ref_job job = {r, tokens};
    w.user = &job;
    DSQ_TRY(dsq__windows_run(ref, &w, NULL, NULL, err));
    *out = r;
    r = NULL;
cleanup:
    dsq_ref_free(r);
    return st;
}

/* ---- the file ---- */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static void put_f64(uint8_t *p, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}
static double get_f64(const uint8_t *p) {
    const uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static size_t rec_bytes(int32_t k) {
    return 16 + 8 * (size_t)k;
}

dsq_status dsq_ref_save(const dsq_ref_logits *r, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *dir = NULL;
    uint8_t *buf = NULL;
    const size_t n_pos = (size_t)(r->n_chunks * r->n_score), rb = rec_bytes(r->k);
    const size_t total = REF_HEADER + n_pos * rb + 8;
    buf = calloc(1, total);
    DSQ_CHECK(buf != NULL, DSQ_NOMEM, err, "out of memory (%zu bytes)", total);
    memcpy(buf, REF_MAGIC, 8);
    put_u32(buf + 8, REF_VERSION);
    put_u32(buf + 12, (uint32_t)r->k);
    put_u64(buf + 16, (uint64_t)r->vocab);
    put_u64(buf + 24, (uint64_t)r->n_ctx);
    put_u64(buf + 32, (uint64_t)r->n_chunks);
    put_u64(buf + 40, (uint64_t)r->n_score);
    put_u32(buf + 48, (uint32_t)r->bos);
    put_u32(buf + 52, 0);
    put_u64(buf + 56, r->tokens_hash);
    const size_t k = (size_t)r->k;
    for (size_t i = 0; i < n_pos; i++) {
        uint8_t *p = buf + REF_HEADER + i * rb;
        put_f64(p, r->lse[i]);
        put_f64(p + 8, r->nll[i]);
        for (size_t j = 0; j < k; j++) {
            uint32_t f;
            memcpy(&f, &r->top_logit[i * k + j], 4);
            put_u32(p + 16 + 4 * j, (uint32_t)r->top_id[i * k + j]);
            put_u32(p + 16 + 4 * k + 4 * j, f);
        }
    }
    put_u64(buf + total - 8, fnv_bytes(FNV_INIT, buf, total - 8));
    /* split path into dir and name for the crash-safe writer */
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    DSQ_CHECK(dir != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_CHECK(dsq_name_is_safe(name, strlen(name)), DSQ_INVALID_ARG, err,
              "%s: not a usable file name", path);
    DSQ_TRY(dsq_write_file(dir, name, buf, total, err));
cleanup:
    free(dir);
    free(buf);
    return st;
}

dsq_status dsq_ref_load(dsq_ref_logits **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *text = NULL;
    size_t len = 0;
    dsq_ref_logits *r = NULL;
    *out = NULL;
    DSQ_TRY(dsq_read_small_file(path, REF_MAX_FILE, &text, &len, err));
    const uint8_t *b = (const uint8_t *)text;
    DSQ_CHECK(len >= REF_HEADER + 8 && memcmp(b, REF_MAGIC, 8) == 0, DSQ_FORMAT, err,
              "%s: not a dsq reference file (no %s header)", path, REF_MAGIC);
    DSQ_CHECK(get_u32(b + 8) == REF_VERSION, DSQ_FORMAT, err,
              "%s: reference file version %u, this dsq reads %u", path, get_u32(b + 8),
              REF_VERSION);
    r = calloc(1, sizeof *r);
    DSQ_CHECK(r != NULL, DSQ_NOMEM, err, "out of memory");
    const uint32_t k = get_u32(b + 12);
    const uint64_t vocab = get_u64(b + 16), ctx = get_u64(b + 24), nch = get_u64(b + 32),
                   nsc = get_u64(b + 40);
    DSQ_CHECK(k >= 1 && k <= DSQ_REF_TOPK_MAX && vocab >= k && vocab <= (1u << 24) && ctx >= 4 &&
                  ctx <= (1u << 20) && nsc == ctx - 1 - ctx / 2 && nch >= 1 &&
                  nch <= ((uint64_t)1 << 32),
              DSQ_FORMAT, err,
              "%s: bad header (k %u, vocab %llu, ctx %llu, chunks %llu, scored %llu)", path, k,
              (unsigned long long)vocab, (unsigned long long)ctx, (unsigned long long)nch,
              (unsigned long long)nsc);
    const size_t rb = rec_bytes((int32_t)k), n_pos = (size_t)(nch * nsc);
    DSQ_CHECK(n_pos <= (REF_MAX_FILE / rb) && len == REF_HEADER + n_pos * rb + 8, DSQ_FORMAT, err,
              "%s: %zu bytes, but its header says %llu windows of %llu scored positions "
              "(%zu bytes): truncated or corrupt",
              path, len, (unsigned long long)nch, (unsigned long long)nsc,
              REF_HEADER + n_pos * rb + 8);
    DSQ_CHECK(get_u64(b + len - 8) == fnv_bytes(FNV_INIT, b, len - 8), DSQ_FORMAT, err,
              "%s: checksum mismatch: the file is corrupt", path);
    r->k = (int32_t)k;
    r->vocab = (int64_t)vocab;
    r->n_ctx = (int64_t)ctx;
    r->n_chunks = (int64_t)nch;
    r->n_score = (int64_t)nsc;
    r->bos = (int32_t)get_u32(b + 48);
    r->tokens_hash = get_u64(b + 56);
    DSQ_CHECK(r->bos >= -1 && r->bos < (int64_t)vocab, DSQ_FORMAT, err, "%s: bad bos id %ld",
              path, (long)r->bos);
    DSQ_TRY(ref_alloc(r, err));
    for (size_t i = 0; i < n_pos; i++) {
        const uint8_t *p = b + REF_HEADER + i * rb;
        r->lse[i] = get_f64(p);
        r->nll[i] = get_f64(p + 8);
        DSQ_CHECK(isfinite(r->lse[i]) && isfinite(r->nll[i]) && r->nll[i] >= 0, DSQ_FORMAT, err,
                  "%s: position %zu: non-finite or negative values", path, i);
        for (size_t j = 0; j < k; j++) {
            const uint32_t id = get_u32(p + 16 + 4 * j), f = get_u32(p + 16 + 4 * (size_t)k + 4 * j);
            DSQ_CHECK(id < vocab, DSQ_FORMAT, err, "%s: position %zu: token id %u outside the "
                      "vocabulary (%llu)", path, i, id, (unsigned long long)vocab);
            float lg;
            memcpy(&lg, &f, 4);
            DSQ_CHECK(isfinite(lg) && lg <= r->lse[i], DSQ_FORMAT, err,
                      "%s: position %zu: logit outside the distribution", path, i);
            r->top_id[i * k + j] = (int32_t)id;
            r->top_logit[i * k + j] = lg;
        }
    }
    *out = r;
    r = NULL;
cleanup:
    dsq_ref_free(r);
    free(text);
    return st;
}

/* ---- the comparison ---- */

typedef struct kld_job {
    const dsq_ref_logits *r;
    const int32_t *tokens;
    double *kld;    /* [n_pos] */
    double *nll;    /* [n_pos] the candidate's */
    uint8_t *agree; /* [n_pos] */
} kld_job;

static int64_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static void kld_window(void *user, int64_t c, const float *logits) {
    const kld_job *j = user;
    const dsq_ref_logits *r = j->r;
    const int64_t V = r->vocab, first = r->n_ctx / 2;
    for (int64_t p = 0; p < r->n_score; p++) {
        const float *q = logits + (size_t)p * (size_t)V;
        const size_t i = (size_t)(c * r->n_score + p);
        const int32_t *id = r->top_id + i * (size_t)r->k;
        const float *lg = r->top_logit + i * (size_t)r->k;
        const int32_t target = j->tokens[c * r->n_ctx + first + p + 1];
        const double lse_q = logsumexp(q, V);
        double kl = 0.0, P = 0.0, Q = 0.0;
        for (int t = 0; t < r->k; t++) {
            const double lp = (double)lg[t] - r->lse[i], lq = (double)q[id[t]] - lse_q;
            const double pp = exp(lp);
            P += pp;
            Q += exp(lq);
            kl += pp * (lp - lq);
        }
        const double pr = 1.0 - P, qr = 1.0 - Q;
        if (pr > 1e-12)
            kl += pr * (log(pr) - log(qr > 1e-300 ? qr : 1e-300));
        j->kld[i] = kl > 0.0 ? kl : 0.0;
        j->nll[i] = dsq_nll(q, V, target);
        j->agree[i] = argmax(q, V) == id[0];
    }
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Summed per window, then over windows, as dsq_ppl_run does: the same
 * perplexity to the last bit. */
static void mean_ppl(const double *nll, size_t n, size_t per, double *mean, double *ppl,
                     double *se) {
    double s = 0.0, s2 = 0.0;
    for (size_t c = 0; c < n; c += per) {
        double cs = 0.0, cs2 = 0.0;
        for (size_t i = c; i < c + per; i++) {
            cs += nll[i];
            cs2 += nll[i] * nll[i];
        }
        s += cs;
        s2 += cs2;
    }
    *mean = s / (double)n;
    *ppl = exp(*mean);
    const double var = s2 / (double)n - *mean * *mean;
    *se = n > 1 && var > 0 ? sqrt(var / (double)(n - 1)) * *ppl : 0.0;
}

dsq_status dsq_kld_run(dsq_model *cand, const dsq_ref_logits *r, const int32_t *tokens,
                       int64_t n_tokens, int nthreads, int64_t stream, dsq_kld_result *res,
                       dsq_err *err) {
    dsq_status st = DSQ_OK;
    kld_job job = {r, tokens, NULL, NULL, NULL};
    double *tmp = NULL;
    memset(res, 0, sizeof *res);
    const int64_t V = dsq_model_get_config(cand)->vocab;
    DSQ_CHECK(V == r->vocab, DSQ_FORMAT, err,
              "the model's vocabulary (%lld) differs from the reference's (%lld)", (long long)V,
              (long long)r->vocab);
    dsq__windows w = {tokens, r->n_ctx, r->n_chunks, r->bos, nthreads, stream, NULL,
                      NULL, kld_window, &job};
    DSQ_TRY(dsq__windows_check(cand, &w, n_tokens, err));
    DSQ_CHECK(dsq_windows_hash(tokens, r->n_chunks, r->n_ctx, r->bos) == r->tokens_hash,
              DSQ_FORMAT, err,
              "the tokens do not give the reference's %lld windows of %lld (another text, "
              "--ctx or --chunks than the reference was made with)",
              (long long)r->n_chunks, (long long)r->n_ctx);
    const size_t n = (size_t)(r->n_chunks * r->n_score);
    job.kld = malloc(n * sizeof *job.kld);
    job.nll = malloc(n * sizeof *job.nll);
    job.agree = malloc(n);
    tmp = malloc(n * sizeof *tmp);
    DSQ_CHECK(job.kld && job.nll && job.agree && tmp, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq__windows_run(cand, &w, &res->seconds, NULL, err));
    memcpy(tmp, r->nll, n * sizeof *tmp);
    const size_t per = (size_t)r->n_score;
    mean_ppl(tmp, n, per, &res->ref_nll_mean, &res->ref_ppl, &res->ref_ppl_stderr);
    mean_ppl(job.nll, n, per, &res->nll_mean, &res->ppl, &res->ppl_stderr);
    res->ppl_ratio = res->ppl / res->ref_ppl;
    double ks = 0.0;
    int64_t agree = 0;
    for (size_t i = 0; i < n; i++) {
        ks += job.kld[i];
        agree += job.agree[i];
    }
    res->kld_mean = ks / (double)n;
    memcpy(tmp, job.kld, n * sizeof *tmp);
    qsort(tmp, n, sizeof *tmp, cmp_double);
    const size_t rank = (99 * n + 99) / 100; /* ceil(0.99·n), >= 1 */
    res->kld_p99 = tmp[rank - 1];
    res->kld_max = tmp[n - 1];
    res->top1 = (double)agree / (double)n;
    res->n_scored = (int64_t)n;
    res->n_ctx = r->n_ctx;
    res->n_chunks = r->n_chunks;
    res->k = r->k;
cleanup:
    free(job.kld);
    free(job.nll);
    free(job.agree);
    free(tmp);
    return st;
}
