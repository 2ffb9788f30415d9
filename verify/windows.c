/* verify/windows.c: see windows.h. */
#include "verify/windows.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/checked.h"
#include "verify/forward.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

dsq_status dsq__windows_check(const dsq_model *m, const dsq__windows *w, int64_t n_tokens,
                              dsq_err *err) {
    const int64_t V = dsq_model_get_config(m)->vocab, ctx = w->n_ctx;
    if (ctx < 4 || ctx > (1 << 20))
        return dsq_err_set(err, DSQ_INVALID_ARG, "context %lld must be between 4 and 1048576",
                           (long long)ctx);
    if (n_tokens < 2 * ctx)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "%lld tokens are too few for context %lld (need at least %lld)",
                           (long long)n_tokens, (long long)ctx, (long long)(2 * ctx));
    if (w->n_chunks < 1 || w->n_chunks * ctx > n_tokens)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "%lld windows of %lld need %lld tokens, have %lld",
                           (long long)w->n_chunks, (long long)ctx,
                           (long long)(w->n_chunks * ctx), (long long)n_tokens);
    if (w->bos >= V)
        return dsq_err_set(err, DSQ_RANGE, "bos id %ld is outside the vocabulary (%lld)",
                           (long)w->bos, (long long)V);
    for (int64_t i = 0; i < w->n_chunks * ctx; i++)
        if (w->tokens[i] < 0 || w->tokens[i] >= V)
            return dsq_err_set(err, DSQ_RANGE,
                               "token %lld (id %ld) is outside the vocabulary of %lld",
                               (long long)i + 1, (long)w->tokens[i], (long long)V);
    return DSQ_OK;
}

typedef struct worker {
    dsq_fwd *f;
    int32_t *win;
    float *logits;
    dsq_status st;
    dsq_err err;
} worker;

/* What each window does in one step of the schedule. */
enum { STEP_WHOLE, STEP_EMBED, STEP_LAYER, STEP_LOGITS };

static dsq_status step(worker *me, const dsq__windows *w, int kind, int64_t c, int64_t l,
                       float *X) {
    const int64_t ctx = w->n_ctx, first = ctx / 2, nscore = ctx - 1 - first;
    dsq_status st = DSQ_OK;
    if (kind == STEP_WHOLE || kind == STEP_EMBED) {
        memcpy(me->win, w->tokens + c * ctx, (size_t)ctx * sizeof *me->win);
        if (w->bos >= 0)
            me->win[0] = w->bos;
    }
    switch (kind) {
    case STEP_WHOLE:
        st = dsq_fwd_run(me->f, me->win, first, nscore, me->logits, &me->err);
        break;
    case STEP_EMBED:
        st = dsq_fwd_embed(me->f, me->win, &me->err);
        if (st == DSQ_OK)
            dsq_fwd_get_x(me->f, X);
        break;
    case STEP_LAYER:
        dsq_fwd_set_x(me->f, X);
        st = dsq_fwd_layer(me->f, l, &me->err);
        if (st == DSQ_OK)
            dsq_fwd_get_x(me->f, X);
        break;
    default:
        dsq_fwd_set_x(me->f, X);
        st = dsq_fwd_logits(me->f, first, nscore, me->logits, &me->err);
        break;
    }
    if (st == DSQ_OK && (kind == STEP_WHOLE || kind == STEP_LOGITS))
        w->fn(w->user, c, me->logits);
    return st;
}

/* One step for windows c0..c1-1 (X holds their streams from c0 on), spread
 * over the workers. */
static dsq_status all_windows(worker *wk, int P, const dsq__windows *w, int kind, int64_t l,
                              int64_t c0, int64_t c1, float *X, size_t per, int report,
                              dsq_err *err) {
    int failed = 0;
    int64_t done = 0;
#pragma omp parallel for num_threads(P) schedule(dynamic, 1)
    for (int64_t c = c0; c < c1; c++) {
#ifdef _OPENMP
        worker *me = &wk[omp_get_thread_num()];
#else
        worker *me = &wk[0];
#endif
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop)
            continue;
        me->st = step(me, w, kind, c, l, X != NULL ? X + (size_t)(c - c0) * per : NULL);
        if (me->st != DSQ_OK) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        if (report) {
#pragma omp critical(dsq_windows_progress)
            {
                done++;
                if (w->progress != NULL)
                    w->progress(w->progress_user, (uint64_t)done, (uint64_t)w->n_chunks);
            }
        }
    }
    for (int i = 0; i < P; i++)
        if (wk[i].st != DSQ_OK)
            return dsq_err_set(err, wk[i].st, "%s", wk[i].err.text);
    return DSQ_OK;
}

dsq_status dsq__windows_run(dsq_model *m, const dsq__windows *w, double *seconds,
                            double stats[3], dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_model_config *c = dsq_model_get_config(m);
    const int64_t V = c->vocab, ctx = w->n_ctx, nscore = ctx - 1 - ctx / 2;
    /* Windows run on separate single-threaded workers when there are at least
     * as many as threads, else one worker uses every thread (as dsq_ppl_run). */
    const int nt = w->nthreads > 0 ? w->nthreads : dsq_model_nthreads(m);
    const int P = w->n_chunks >= nt ? nt : 1;
    const dsq_fwd_opts fo = {P > 1 ? 1 : nt, NULL, NULL};
    float *X = NULL;
    size_t per = 0, total;
    worker *wk = calloc((size_t)P, sizeof *wk);
    DSQ_CHECK(wk != NULL, DSQ_NOMEM, err, "out of memory");
    for (int i = 0; i < P; i++) {
        DSQ_TRY(dsq_fwd_init(&wk[i].f, m, 1, ctx, &fo, err));
        wk[i].win = malloc((size_t)ctx * sizeof *wk[i].win);
        wk[i].logits = malloc((size_t)nscore * (size_t)V * sizeof *wk[i].logits);
        DSQ_CHECK(wk[i].win != NULL && wk[i].logits != NULL, DSQ_NOMEM, err, "out of memory");
    }
    const double t0 = now_s();
    if (w->stream == 0) {
        DSQ_TRY(all_windows(wk, P, w, STEP_WHOLE, 0, 0, w->n_chunks, NULL, 0, 1, err));
    } else {
        const int64_t B = w->stream < w->n_chunks ? w->stream : w->n_chunks;
        const int64_t passes = (w->n_chunks + B - 1) / B, steps = c->n_layers + 1;
        per = (size_t)ctx * (size_t)c->dim;
        DSQ_CHECK(dsq_mul_size(per, (size_t)B, &total) &&
                      dsq_mul_size(total, sizeof(float), &total),
                  DSQ_RANGE, err, "the activations of %lld windows are too large", (long long)B);
        X = malloc(total);
        DSQ_CHECK(X != NULL, DSQ_NOMEM, err,
                  "out of memory for the activations of %lld windows (%zu bytes; "
                  "fewer windows a pass need less)",
                  (long long)B, total);
        for (int64_t p = 0; p < passes; p++) {
            const int64_t c0 = p * B, c1 = c0 + B < w->n_chunks ? c0 + B : w->n_chunks;
            DSQ_TRY(all_windows(wk, P, w, STEP_EMBED, 0, c0, c1, X, per, 0, err));
            for (int64_t l = 0; l < c->n_layers; l++) {
                DSQ_TRY(dsq_model_load_layer(m, l, err));
                st = all_windows(wk, P, w, STEP_LAYER, l, c0, c1, X, per, 0, err);
                dsq_model_unload_layer(m, l);
                if (st != DSQ_OK)
                    goto cleanup;
                if (w->progress != NULL)
                    w->progress(w->progress_user, (uint64_t)(p * steps + l + 1),
                                (uint64_t)(passes * steps));
            }
            DSQ_TRY(all_windows(wk, P, w, STEP_LOGITS, 0, c0, c1, X, per, 0, err));
            if (w->progress != NULL)
                w->progress(w->progress_user, (uint64_t)((p + 1) * steps),
                            (uint64_t)(passes * steps));
        }
    }
    if (seconds != NULL)
        *seconds = now_s() - t0;
    if (stats != NULL) {
        stats[0] = stats[1] = stats[2] = 0.0;
        for (int i = 0; i < P; i++) {
            dsq_fwd_stats fs;
            dsq_fwd_get_stats(wk[i].f, &fs);
            stats[0] += fs.gemm_s / P;
            stats[1] += fs.attn_s / P;
            stats[2] += fs.gemm_flop;
        }
    }
cleanup:
    for (int i = 0; wk != NULL && i < P; i++) {
        dsq_fwd_free(wk[i].f);
        free(wk[i].win);
        free(wk[i].logits);
    }
    free(wk);
    free(X);
    return st;
}
