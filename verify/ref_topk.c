/* verify/ref_topk.c: the top-K reference summary and its file (see
 * ref_topk.h). */
#include "verify/ref_topk.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "verify/llama_logits.h"
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

void dsq__ref_fill(dsq_ref_logits *r, int64_t c, int64_t p, const float *l,
                   const int32_t *tokens) {
    const size_t i = (size_t)(c * r->n_score + p);
    const int32_t target = tokens[c * r->n_ctx + r->n_ctx / 2 + p + 1];
    r->lse[i] = dsq_logsumexp(l, r->vocab);
    r->nll[i] = r->lse[i] - (double)l[target];
    top_k(l, r->vocab, r->k, r->top_id + i * (size_t)r->k, r->top_logit + i * (size_t)r->k);
}

typedef struct ref_job {
    dsq_ref_logits *r;
    const int32_t *tokens;
} ref_job;

static dsq_status ref_window(void *user, int64_t c, const float *logits, const float *unused,
                             dsq_err *err) {
    (void)unused;
    (void)err;
    const ref_job *j = user;
    for (int64_t p = 0; p < j->r->n_score; p++)
        dsq__ref_fill(j->r, c, p, logits + (size_t)p * (size_t)j->r->vocab, j->tokens);
    return DSQ_OK;
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

dsq_status dsq__ref_new(dsq_ref_logits **out, int64_t vocab, int64_t n_ctx, int64_t n_chunks,
                        int32_t bos, int32_t k, const int32_t *tokens, dsq_err *err) {
    dsq_status st = DSQ_OK;
    *out = NULL;
    DSQ_CHECK(k <= DSQ_REF_TOPK_MAX, DSQ_INVALID_ARG, err, "top-k %ld is above %d", (long)k,
              DSQ_REF_TOPK_MAX);
    if (k <= 0)
        k = DSQ_REF_TOPK;
    dsq_ref_logits *r = calloc(1, sizeof *r);
    DSQ_CHECK(r != NULL, DSQ_NOMEM, err, "out of memory");
    *out = r;
    r->vocab = vocab;
    r->n_ctx = n_ctx;
    r->n_chunks = n_chunks;
    r->n_score = n_ctx - 1 - n_ctx / 2;
    r->bos = bos;
    r->k = vocab < k ? (int32_t)vocab : k;
    r->tokens_hash = dsq_windows_hash(tokens, n_chunks, n_ctx, bos);
    DSQ_TRY(ref_alloc(r, err));
cleanup:
    if (st != DSQ_OK) {
        dsq_ref_free(*out);
        *out = NULL;
    }
    return st;
}

dsq_status dsq_ref_compute(dsq_model *ref, const int32_t *tokens, int64_t n_tokens,
                           const dsq_ppl_opts *o, int32_t k, int64_t stream,
                           dsq_ref_logits **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_ref_logits *r = NULL;
    *out = NULL;
    const int64_t ctx = o->n_ctx > 0 ? o->n_ctx : 512;
    const int64_t n_chunks = ctx >= 4 ? dsq_ppl_chunks(n_tokens, o) : 0;
    ref_job job = {NULL, tokens};
    const dsq__windows w = {tokens, ctx, n_chunks, 1, o->bos, o->nthreads, stream,
                            o->progress, o->progress_user, ref_window, &job};
    DSQ_TRY(dsq__windows_check(ref, &w, n_tokens, err));
    DSQ_TRY(dsq__ref_new(&r, dsq_model_get_config(ref)->vocab, ctx, n_chunks, o->bos, k, tokens,
                         err));
    job.r = r;
    DSQ_TRY(dsq__windows_run(ref, NULL, &w, NULL, NULL, err));
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
    dsq_outfile *out = NULL;
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
    DSQ_TRY(dsq__outfile_at(&out, path, err));
    DSQ_TRY(dsq_outfile_write(out, buf, total, err));
    st = dsq_outfile_commit(out, err);
    out = NULL; /* freed by commit, on failure too */
cleanup:
    dsq_outfile_abort(out);
    free(buf);
    return st;
}

int dsq_ref_sniff(const void *head, size_t n) {
    return n >= 8 && memcmp(head, REF_MAGIC, 8) == 0;
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
