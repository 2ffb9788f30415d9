/* verify/kld.h: comparing a candidate model with a reference on the same
 * windows (`dsq verify`): perplexity of each, KL divergence of the candidate
 * from the reference per scored position, top-1 agreement.
 *
 * The windows and scored positions are llama-perplexity's (verify/ppl.h):
 * chunk c = tokens [c·n_ctx, (c+1)·n_ctx) with its first token replaced by
 * bos, logits at positions n_ctx/2 … n_ctx-2 scored.
 *
 * The reference is kept as a summary per scored position (dsq_ref_pos): the
 * log-sum-exp of its logits, the nll of the actual next token, and its K
 * largest logits with their ids (K = DSQ_REF_TOPK = 32 unless asked
 * otherwise, at most DSQ_REF_TOPK_MAX). KLD is computed from that
 * summary alone, over K+1 bins (the reference's top-K tokens, plus one bin for
 * the rest of the vocabulary):
 *   p_i = exp(l_i - lse_ref), q_i = exp(m_{id_i} - lse_cand)  for i < K
 *   p_r = 1 - Σ p_i,          q_r = 1 - Σ q_i
 *   KLD = Σ p_i·ln(p_i/q_i) + p_r·ln(p_r/q_r)
 * This is the exact KL divergence of the two distributions with the tail
 * merged into one outcome, a lower bound of the full-vocabulary KLD (equal to
 * it when the reference's tail mass is 0). The same summary is used whether
 * the reference runs live or comes from a --save-ref file, so both give the
 * same numbers bit for bit, and the file holds 16 + 8·K bytes per position,
 * not the vocabulary (K = 32: 272 bytes). The bound tightens with K: on the
 * tiny llama (ppl ~90, a flat distribution) Q4_K_M's mean KLD is 62% of the
 * full-vocabulary value at K = 32, 75% at 64, 86% at 128 (tests/test_kld.c);
 * peaked distributions of real models put far less mass in the tail. */
#ifndef DSQ_KLD_H
#define DSQ_KLD_H

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

typedef struct dsq_kld_result {
    double ref_ppl, ref_ppl_stderr, ref_nll_mean;
    double ppl, ppl_stderr, nll_mean; /* the candidate */
    double ppl_ratio;                 /* ppl / ref_ppl */
    double kld_mean, kld_p99, kld_max;/* p99: nearest rank, the ceil(0.99·n)-th smallest */
    double top1;                      /* fraction of positions whose argmax agrees */
    int64_t n_scored, n_ctx, n_chunks;
    int32_t k;
    double seconds;                   /* the candidate's forward passes */
} dsq_kld_result;

/* Runs the candidate on the reference's windows and compares (stream as for
 * dsq_ref_compute).
 * @return DSQ_OK; DSQ_FORMAT when the tokens do not give the reference's
 *         windows (different text, context or chunk count; tokens_hash) or the
 *         vocabularies differ; as dsq_ppl_run. */
dsq_status dsq_kld_run(dsq_model *cand, const dsq_ref_logits *ref, const int32_t *tokens,
                       int64_t n_tokens, int nthreads, int64_t stream, dsq_kld_result *res,
                       dsq_err *err);

#endif
