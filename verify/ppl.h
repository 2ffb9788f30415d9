/* verify/ppl.h: perplexity the way llama.cpp's llama-perplexity computes it
 * (specs/formats.md §10), and reading token files.
 *
 * Chunk c is tokens [c·n_ctx, (c+1)·n_ctx), evaluated from position 0 with
 * nothing carried over; its first token is replaced by BOS when the model has
 * one; logits at positions first = n_ctx/2 … n_ctx-2 score the next token
 * (n_ctx - 1 - first per chunk). nll = logsumexp(logits) - logits[target] in
 * double; PPL = exp(mean nll); stderr = sqrt(var / (count - 1)) · PPL with
 * var = mean(nll²) - mean(nll)². */
#ifndef DSQ_PPL_H
#define DSQ_PPL_H

#include <stdint.h>

#include "core/report.h"
#include "core/status.h"
#include "tokenizer/tokenizer.h"
#include "verify/model.h"

/* For the stream arguments of verify/: every window in one layer-streamed pass. */
#define DSQ_STREAM_ALL INT64_MAX

typedef struct dsq_ppl_opts {
    int64_t n_ctx;       /* window, >= 4; 0 = 512 (llama.cpp's default) */
    int64_t n_chunks;    /* 0 = every whole window */
    int64_t batch;       /* windows per forward batch; 0 = 1. Layer-streamed:
                            windows per pass; 0 = all */
    int32_t bos;         /* token placed at position 0 of each window; -1 = leave it */
    int nthreads;        /* <= 0: the model's */
    /* called after each chunk with (chunks done, chunks total) */
    dsq_progress_fn progress;
    void *progress_user;
} dsq_ppl_opts;

typedef struct dsq_ppl_result {
    double ppl, ppl_stderr, nll_mean;
    int64_t n_scored, n_ctx, n_chunks;
    double seconds;      /* forward passes, wall clock */
    double gemm_seconds; /* of which in the Linear layers' GEMMs (per thread) */
    double attn_seconds; /* of which in attention (per thread) */
    double gemm_flop;    /* of the Linear layers, all threads */
} dsq_ppl_result;

/* chunk_nll: NULL or [n_chunks] mean nll per chunk (the caller sizes it by
 * dsq_ppl_chunks()).
 * @return DSQ_OK; DSQ_INVALID_ARG for fewer than 2·n_ctx tokens (llama.cpp's
 *         rule) or a bad n_ctx; DSQ_RANGE for a token outside the vocabulary;
 *         DSQ_NOMEM. */
dsq_status dsq_ppl_run(const dsq_model *m, const int32_t *tokens, int64_t n_tokens,
                       const dsq_ppl_opts *opts, dsq_ppl_result *res, double *chunk_nll,
                       dsq_err *err);

/* The same, layer-streamed: the windows go in passes of opts->batch windows
 * (0: all in one pass); a pass keeps its windows' residual streams, and for
 * each layer in turn the layer is loaded, the pass's windows advanced through
 * it, and the layer unloaded (open the model with opts.lazy = 1 so that no
 * layer is in memory before). Peak memory: one layer's weights, the
 * embeddings and head, and batch · n_ctx · dim floats of activations; each
 * pass reads the layers again. The same result bit for bit as dsq_ppl_run. */
dsq_status dsq_ppl_run_layered(dsq_model *m, const int32_t *tokens, int64_t n_tokens,
                               const dsq_ppl_opts *opts, dsq_ppl_result *res, double *chunk_nll,
                               dsq_err *err);

/* The statistics of the header from each window's Σnll (csum) and Σnll²
 * (csum2), summed in window order so that any schedule gives the same bits:
 * fills res's ppl, ppl_stderr, nll_mean, n_scored and n_chunks, and
 * chunk_nll (NULL or [n_chunks]) with each window's mean nll. */
void dsq_ppl_from_sums(const double *csum, const double *csum2, int64_t n_chunks, int64_t nscore,
                       dsq_ppl_result *res, double *chunk_nll);

/* The number of chunks dsq_ppl_run will evaluate. */
int64_t dsq_ppl_chunks(int64_t n_tokens, const dsq_ppl_opts *opts);

/* log Σ exp(x_i) over n values, in double, the max subtracted. */
double dsq_logsumexp(const float *x, int64_t n);
/* -log softmax(logits)[target] over n values, in double: logsumexp - x[target]. */
double dsq_nll(const float *logits, int64_t n, int32_t target);

/* A token file: one non-negative decimal id per line (blank lines and
 * surrounding spaces allowed). *ids is owned by the caller (free()).
 * @return DSQ_OK; DSQ_IO; DSQ_FORMAT naming the line of anything else. */
dsq_status dsq_tokens_read(const char *path, int32_t **ids, int64_t *n, dsq_err *err);

/* A text file encoded with the tokenizer, its bos/eos policy applied (as
 * llama-perplexity tokenizes with add_special). *ids owned by the caller.
 * @return DSQ_OK; DSQ_IO / DSQ_NOT_FOUND; the tokenizer's errors. */
dsq_status dsq_text_tokens(const dsq_tokenizer *tok, const char *path, int32_t **ids, int64_t *n,
                           dsq_err *err);

#endif
