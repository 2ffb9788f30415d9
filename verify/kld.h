/* verify/kld.h: comparing a candidate model with a reference on the same
 * windows (`dsq verify`): perplexity of each and their ratio, the KL
 * divergence KL(P_ref ‖ Q_cand) per scored position (mean, 99th percentile,
 * max) and top-1 agreement.
 *
 * The windows and scored positions are llama-perplexity's (verify/ppl.h).
 * The reference comes in one of three forms, and the result says which:
 *   live      the reference model runs beside the candidate on every window
 *             (verify/windows.h, paired): the exact full-vocabulary
 *               KLD = Σ_i p_i·(ln p_i - ln q_i),  p = softmax(ref), q = softmax(cand)
 *             in double, streamed: per worker one window's logits of each
 *             model, never a logits file.
 *   llama.cpp llama-perplexity's --kl-divergence-base file
 *             (verify/llama_logits.h), computed as its --kl-divergence does:
 *             the same sum over every token whose stored ln p_i is above
 *             -16, with p_i from the file's 16-bit log-probabilities. Full
 *             vocabulary ("exact"), to the file's precision.
 *   top-K     dsq's small reference file (verify/ref_topk.h): K+1 bins, the
 *             reference's top-K tokens plus one for the rest,
 *               p_i = exp(l_i - lse_ref), q_i = exp(m_{id_i} - lse_cand)  (i < K)
 *               p_r = 1 - Σ p_i,  q_r = 1 - Σ q_i
 *               KLD = Σ p_i·ln(p_i/q_i) + p_r·ln(p_r/q_r)
 *             the exact KLD of the two distributions with the tail merged
 *             into one outcome: a lower bound of the full-vocabulary value
 *             (equal to it at K = vocabulary). On the tiny llama (a flat
 *             distribution, ppl ~90) Q4_K_M's top-32 value is about 60% of
 *             the full one (tests/test_kld.c prints the figures).
 * Perplexities and top-1 are exact in all three forms (the llama.cpp file's
 * reference nll to its 16-bit precision). */
#ifndef DSQ_KLD_H
#define DSQ_KLD_H

#include <stdint.h>

#include "core/status.h"
#include "verify/llama_logits.h"
#include "verify/model.h"
#include "verify/ppl.h"
#include "verify/ref_topk.h"

typedef enum dsq_ref_kind {
    DSQ_REFKIND_LIVE = 0,
    DSQ_REFKIND_LLAMA = 1,
    DSQ_REFKIND_TOPK = 2,
} dsq_ref_kind;

/* "live", "llama.cpp", "top-k" */
const char *dsq_ref_kind_name(dsq_ref_kind k);

typedef struct dsq_kld_result {
    double ref_ppl, ref_ppl_stderr, ref_nll_mean;
    double ppl, ppl_stderr, nll_mean; /* the candidate */
    double ppl_ratio;                 /* ppl / ref_ppl */
    double kld_mean, kld_p99, kld_max;/* p99: nearest rank, the ceil(0.99·n)-th smallest */
    double top1;                      /* fraction of positions whose argmax agrees */
    int64_t n_scored, n_ctx, n_chunks;
    dsq_ref_kind ref_kind;
    int exact;                        /* 1: KLD over the whole vocabulary; 0: a lower bound */
    int32_t k;                        /* top-K: K; else 0 */
    int64_t n_vocab;
    double seconds;                   /* the forward passes (both models' when live) */
} dsq_kld_result;

/* What a live comparison also keeps of the reference. */
typedef struct dsq_kld_save {
    int32_t topk;                  /* K of topk_out (<= 0: DSQ_REF_TOPK) */
    dsq_ref_logits **topk_out;     /* NULL, or the top-K summary (ref_topk.h), owned */
    const char *llama_path;        /* NULL, or write llama.cpp's logits file there */
} dsq_kld_save;

/* The reference and the candidate on the windows opts selects (n_ctx,
 * n_chunks, bos, nthreads, progress), side by side: the exact KLD. stream as
 * for dsq_ref_compute; layer-streamed, open both models lazily: one layer of
 * one model in memory at a time. save: NULL or what to keep of the reference.
 * @return DSQ_OK; DSQ_FORMAT for different vocabularies; as dsq_ppl_run;
 *         the writers' DSQ_IO. */
dsq_status dsq_kld_run_live(dsq_model *ref, dsq_model *cand, const int32_t *tokens,
                            int64_t n_tokens, const dsq_ppl_opts *opts, int64_t stream,
                            const dsq_kld_save *save, dsq_kld_result *res, dsq_err *err);

/* The candidate against a top-K summary (a --save-ref file).
 * @return DSQ_OK; DSQ_FORMAT when the tokens do not give the reference's
 *         windows (different text, context or chunk count; tokens_hash) or the
 *         vocabularies differ; as dsq_ppl_run. */
dsq_status dsq_kld_run(dsq_model *cand, const dsq_ref_logits *ref, const int32_t *tokens,
                       int64_t n_tokens, int nthreads, int64_t stream, dsq_kld_result *res,
                       dsq_err *err);

/* The candidate against a llama.cpp logits file, on the file's windows and
 * tokens with bos (the candidate's, -1 none) at position 0. tokens: NULL, or
 * the tokens the caller meant, which must begin with the file's.
 * @return DSQ_OK; DSQ_FORMAT when the tokens or vocabularies differ or a
 *         record is bad; DSQ_IO; as dsq_ppl_run. */
dsq_status dsq_kld_run_llama(dsq_model *cand, const dsq_llama_logits *ref, const int32_t *tokens,
                             int64_t n_tokens, int32_t bos, int nthreads, int64_t stream,
                             dsq_kld_result *res, dsq_err *err);

#endif
