/* verify/windows.h: running a model, or a reference and a candidate side by
 * side, over llama-perplexity's windows and handing each window's scored
 * logits to a callback: the one worker loop of verify/ (ppl.c, kld.c). Private
 * to verify/.
 *
 * Two schedules, the same numbers bit for bit (every token row is computed
 * the same way whatever batch, worker or thread count it lands in):
 *   whole model    windows go `batch` at a time through every layer;
 *   layer-streamed the windows go in passes of at most `stream` windows, each
 *                  pass keeping its windows' residual streams ([stream][ctx][D]
 *                  floats); for each layer: load it, advance the pass's
 *                  windows through it, unload it. Only one layer's weights
 *                  (plus the embeddings, final norm and head) are ever in
 *                  memory; every pass reads the layers once more, which is
 *                  the price of bounding the activations.
 * Paired (a reference model given too): whole model, each worker runs a
 * window through the reference and then the candidate and hands both logits
 * to the callback, so no more than one window's logits of each model exist
 * per worker; both models are loaded. Layer-streamed, a pass goes through
 * every reference layer, keeps the residual streams, then through every
 * candidate layer, and the callback gets both heads' logits window by window:
 * one layer of one model in memory at a time, twice the activations. */
#ifndef DSQ_WINDOWS_H
#define DSQ_WINDOWS_H

#include <stdint.h>

#include "core/report.h"
#include "core/status.h"
#include "verify/model.h"

/* Window c's logits [n_score][V] (positions n_ctx/2 … n_ctx-2), and the
 * reference's for the same positions when paired (else NULL). Runs on several
 * threads at once for different windows: touch only window c's results.
 * Anything but DSQ_OK stops the run with that status and err. */
typedef dsq_status (*dsq__window_fn)(void *user, int64_t c, const float *logits,
                                     const float *ref_logits, dsq_err *err);

typedef struct dsq__windows {
    const int32_t *tokens; /* at least n_chunks · n_ctx */
    int64_t n_ctx, n_chunks;
    int64_t batch;         /* whole model: windows per forward call (<= 0: 1) */
    int32_t bos;           /* replaces token 0 of each window; -1 none */
    int nthreads;          /* <= 0: the model's */
    int64_t stream;        /* 0: whole model; > 0: layer-streamed, at most that
                              many windows a pass (DSQ_STREAM_ALL: one pass) */
    dsq_progress_fn progress; /* whole model: (windows done, windows); streamed:
                                 (layer steps done, passes · layer steps a pass) */
    void *progress_user;
    dsq__window_fn fn;
    void *user;
} dsq__windows;

/* Checks the windows (context, token count, ids, bos) against the model.
 * @return DSQ_OK; DSQ_INVALID_ARG (context, too few tokens); DSQ_RANGE (ids). */
dsq_status dsq__windows_check(const dsq_model *m, const dsq__windows *w, int64_t n_tokens,
                              dsq_err *err);

/* Runs them on m, and on ref too when it is not NULL (paired; the two
 * vocabularies must agree). Layer-streamed (stream > 0) the models' layers
 * are loaded and unloaded one at a time (open them lazily); otherwise they
 * must be loaded. seconds: the forward passes' wall clock (may be NULL);
 * stats: NULL or m's {GEMM seconds, attention seconds, GEMM flop}, the
 * seconds per worker.
 * @return DSQ_OK; DSQ_FORMAT for different vocabularies; the callback's, the
 *         forward pass's or the loader's errors; DSQ_NOMEM. */
dsq_status dsq__windows_run(dsq_model *m, dsq_model *ref, const dsq__windows *w, double *seconds,
                            double stats[3], dsq_err *err);
/* The whole-model schedule alone (w->stream ignored), for a model that is
 * only read. */
dsq_status dsq__windows_run_whole(const dsq_model *m, const dsq_model *ref, const dsq__windows *w,
                                  double *seconds, double stats[3], dsq_err *err);

#endif
