/* verify/ref_topk.h: the small form of a reference for `dsq verify`: per
 * scored position, the log-sum-exp of the reference's logits, the nll of the
 * actual next token, and its K largest logits with their ids (K =
 * DSQ_REF_TOPK = 32 unless asked otherwise, at most DSQ_REF_TOPK_MAX), and
 * the file that keeps it (--save-ref / --load-ref).
 *
 * The windows and scored positions are llama-perplexity's (verify/ppl.h):
 * chunk c = tokens [c·n_ctx, (c+1)·n_ctx) with its first token replaced by
 * bos, logits at positions n_ctx/2 … n_ctx-2 scored.
 *
 * From this summary alone KLD can only be computed over K+1 bins (the
 * reference's top-K tokens, plus one bin for the rest of the vocabulary; see
 * kld.h), a lower bound of the full-vocabulary KLD: the price of 16 + 8·K
 * bytes a position (K = 32: 272 bytes) instead of the vocabulary. Perplexity
 * and top-1 agreement stay exact. For the exact KLD from a file, keep
 * llama.cpp's full logits file instead (verify/llama_logits.h). */
#ifndef DSQ_REF_TOPK_H
#define DSQ_REF_TOPK_H

#include <stdint.h>

#include "core/status.h"
#include "verify/model.h"
#include "verify/ppl.h"

#define DSQ_REF_TOPK 32
#define DSQ_REF_TOPK_MAX 4096

/* The reference's outputs on every scored position. */
typedef struct dsq_ref_logits {
    int64_t vocab;     /* the reference's vocabulary size */
    int64_t n_ctx;     /* window */
    int64_t n_chunks;  /* windows */
    int64_t n_score;   /* scored positions per window: n_ctx - 1 - n_ctx/2 */
    int32_t bos;       /* token put at position 0, -1 none */
    int32_t k;         /* top-K kept per position (<= vocab) */
    uint64_t tokens_hash; /* FNV-1a 64 of the windows as evaluated (bos applied) */
    /* per scored position p in [0, n_chunks · n_score), all owned: */
    double *lse;       /* [p] log Σ exp(logits), in double */
    double *nll;       /* [p] lse - logit[next token] */
    int32_t *top_id;   /* [p][k] token ids, largest logit first (ties: lower id) */
    float *top_logit;  /* [p][k] their logits */
} dsq_ref_logits;

void dsq_ref_free(dsq_ref_logits *r); /* accepts NULL */

/* FNV-1a 64 of the n_chunks windows the options select (bos applied). */
uint64_t dsq_windows_hash(const int32_t *tokens, int64_t n_chunks, int64_t n_ctx, int32_t bos);

/* Runs the reference on the windows opts selects (n_ctx, n_chunks, bos,
 * nthreads, progress; one window per worker) keeping the top k logits per
 * position (k <= 0: DSQ_REF_TOPK; capped at the vocabulary). stream: 0, the
 * whole model per window; > 0, layer-streamed (open the model lazily) in
 * passes of at most that many windows (DSQ_STREAM_ALL: one pass), each layer
 * loaded and unloaded around each pass; the same numbers bit for bit.
 * @return DSQ_OK; DSQ_INVALID_ARG for k > DSQ_REF_TOPK_MAX; as dsq_ppl_run.
 *         *out owned (dsq_ref_free). */
dsq_status dsq_ref_compute(dsq_model *ref, const int32_t *tokens, int64_t n_tokens,
                           const dsq_ppl_opts *opts, int32_t k, int64_t stream,
                           dsq_ref_logits **out, dsq_err *err);

/* A reference file: "DSQREF01", then u32 version 1, u32 k, i64 vocab, n_ctx,
 * n_chunks, n_score, i32 bos, u32 0, u64 tokens_hash (64-byte header), then
 * n_chunks·n_score records of f64 lse, f64 nll, k × i32 id, k × f32 logit,
 * then the u64 FNV-1a 64 of everything before it. All little-endian.
 * Written crash-safely (temporary file + rename).
 * @return DSQ_OK; DSQ_IO; DSQ_NOMEM. */
dsq_status dsq_ref_save(const dsq_ref_logits *r, const char *path, dsq_err *err);
/* @return DSQ_OK; DSQ_IO / DSQ_NOT_FOUND; DSQ_FORMAT naming the file and what
 *         is wrong (magic, version, sizes, checksum, ids outside the
 *         vocabulary, non-finite values). */
dsq_status dsq_ref_load(dsq_ref_logits **out, const char *path, dsq_err *err);
/* 1 when the first bytes of a file are this format's magic. */
int dsq_ref_sniff(const void *head, size_t n);

/* An empty summary for the given windows, its arrays allocated (a live
 * comparison fills it as it goes).
 * @return DSQ_OK; DSQ_INVALID_ARG for k > DSQ_REF_TOPK_MAX; DSQ_NOMEM. */
dsq_status dsq__ref_new(dsq_ref_logits **out, int64_t vocab, int64_t n_ctx, int64_t n_chunks,
                        int32_t bos, int32_t k, const int32_t *tokens, dsq_err *err);
/* Private to verify/: fills position i of window c from its logits [vocab]. */
void dsq__ref_fill(dsq_ref_logits *r, int64_t c, int64_t p, const float *logits,
                   const int32_t *tokens);

#endif
