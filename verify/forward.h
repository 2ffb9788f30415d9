/* verify/forward.h: the reference forward pass (specs/formats.md §8).
 *
 * A dsq_fwd holds the activations of a batch of n_seq windows of n_ctx tokens
 * each, every window starting at position 0 with no state carried over. The
 * pass is driven one stage at a time, so that the same code serves three
 * callers:
 *   - perplexity / logits:      embed, every layer, logits (dsq_fwd_run);
 *   - layer-streamed evaluation: for each layer, load it, advance every batch
 *     through it (dsq_fwd_layer), unload it;
 *   - calibration: the same, with a hook that sees the input of every Linear
 *     layer and, for routed experts, which tokens went to which expert.
 * All matrix work is batched over the n_seq·n_ctx tokens (verify/gemm.h);
 * attention runs per window and head. Activations are F32. Results do not
 * depend on the thread count or on n_seq (each token row is computed the same
 * way wherever it sits in the batch). */
#ifndef DSQ_FORWARD_H
#define DSQ_FORWARD_H

#include <stdint.h>

#include "core/status.h"
#include "verify/model.h"

/* What the hook sees: the F32 input rows of one or more Linear layers that
 * share it (q_a_proj and kv_a_proj_with_mqa read the same normed x). */
typedef struct dsq_hook_event {
    int64_t layer;              /* decoder layer, or -1 for the output head */
    int64_t expert;             /* routed expert index, -1 for everything else */
    const char *const *weights; /* HF names of the Linear weights this is the input of */
    int n_weights;
    const float *x;             /* [n_rows][n_in], borrowed for the call */
    int64_t n_rows, n_in;
    /* Which tokens the rows are. Tokens are numbered window · n_ctx + position
     * within the batch. Routed experts: token[r] and route_weight[r] for each
     * row r (tokens ascending). Everything else: token == NULL and the rows
     * are the consecutive tokens row0, row0 + 1, ... (today one event covers
     * the whole batch, row0 = 0; a pass that splits a large batch into pieces
     * reports each piece). The output head sees only the positions
     * dsq_fwd_logits was asked for, window by window. */
    int64_t row0;
    const int32_t *token;
    const float *route_weight;
} dsq_hook_event;

/* Returning anything but DSQ_OK stops the pass with that status. */
typedef dsq_status (*dsq_hook_fn)(void *user, const dsq_hook_event *ev, dsq_err *err);

typedef struct dsq_fwd dsq_fwd;

typedef struct dsq_fwd_opts {
    int nthreads;      /* <= 0: the model's */
    dsq_hook_fn hook;  /* NULL: none */
    void *hook_user;
} dsq_fwd_opts;

/* The model is borrowed and must outlive the dsq_fwd. opts may be NULL. */
dsq_status dsq_fwd_init(dsq_fwd **out, const dsq_model *m, int64_t n_seq, int64_t n_ctx,
                        const dsq_fwd_opts *opts, dsq_err *err);
void dsq_fwd_free(dsq_fwd *f); /* accepts NULL */

/* Embeds tokens [n_seq][n_ctx] (ids checked against the vocabulary). */
dsq_status dsq_fwd_embed(dsq_fwd *f, const int32_t *tokens, dsq_err *err);
/* Runs decoder layer l (whose weights must be loaded) on the current state. */
dsq_status dsq_fwd_layer(dsq_fwd *f, int64_t l, dsq_err *err);
/* Final norm and output head at positions [pos0, pos0 + npos) of every window:
 * logits [n_seq][npos][vocab]. */
dsq_status dsq_fwd_logits(dsq_fwd *f, int64_t pos0, int64_t npos, float *logits, dsq_err *err);
/* The residual stream, [n_seq][n_ctx][dim] floats: read out / put back (set
 * also counts as embedded). Layer-streamed evaluation keeps every window's
 * residual outside and carries them through one dsq_fwd in turn, so that the
 * scratch buffers exist once per worker, not once per window. */
void dsq_fwd_get_x(const dsq_fwd *f, float *x);
void dsq_fwd_set_x(dsq_fwd *f, const float *x);

/* embed + every layer + logits. */
dsq_status dsq_fwd_run(dsq_fwd *f, const int32_t *tokens, int64_t pos0, int64_t npos,
                       float *logits, dsq_err *err);

/* Where the time went since init (benchmarks). */
typedef struct dsq_fwd_stats {
    double total_s;   /* in dsq_fwd_layer and dsq_fwd_logits */
    double gemm_s;    /* of which in the Linear layers' GEMMs */
    double gemm_flop; /* their floating-point operations */
    double attn_s;    /* of which in attention (its two small GEMMs and the softmax) */
} dsq_fwd_stats;
void dsq_fwd_get_stats(const dsq_fwd *f, dsq_fwd_stats *out);

#endif
