/* verify/windows.c: see windows.h. */
#include "verify/windows.h"

#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/time.h"
#include "verify/forward.h"

#ifdef _OPENMP
#include <omp.h>
#endif

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

/* One model's forward state and logits in a worker. */
typedef struct side {
    dsq_fwd *f;
    float *logits; /* [B][n_score][V] */
} side;

typedef struct worker {
    side s[2]; /* 0: the model, 1: the reference when paired */
    int32_t *win; /* [B][ctx] */
    dsq_status st;
    dsq_err err;
} worker;

/* Everything one run shares between its steps. */
typedef struct run {
    const dsq__windows *w;
    const dsq_model *m[2]; /* m[1] NULL unless paired */
    int sides;
    worker *wk;
    int P;
    int64_t B, V, nscore;
    float *X[2];   /* layer-streamed: each side's residual streams of the pass */
    size_t per[2]; /* floats a window in X[side] */
} run;

/* What each work item does in one step of the schedule. */
enum { STEP_WHOLE, STEP_EMBED, STEP_LAYER, STEP_LOGITS };

/* Windows c0 .. c0+nb-1 into win [B][ctx], BOS applied; a short last group
 * repeats its first window: rows are computed independently, so the padding
 * changes nothing and is never scored. */
static void load_windows(const dsq__windows *w, int32_t *win, int64_t c0, int64_t B, int64_t nb) {
    const int64_t ctx = w->n_ctx;
    for (int64_t b = 0; b < B; b++) {
        memcpy(win + b * ctx, w->tokens + (c0 + (b < nb ? b : 0)) * ctx,
               (size_t)ctx * sizeof *win);
        if (w->bos >= 0)
            win[b * ctx] = w->bos;
    }
}

/* Hands windows c0 .. c0+nb-1 of the workers' logits to the callback. */
static dsq_status deliver(const run *r, worker *me, int64_t c0, int64_t nb) {
    const size_t win_logits = (size_t)r->nscore * (size_t)r->V;
    for (int64_t b = 0; b < nb; b++) {
        const float *ref = r->sides == 2 ? me->s[1].logits + (size_t)b * win_logits : NULL;
        const dsq_status st =
            r->w->fn(r->w->user, c0 + b, me->s[0].logits + (size_t)b * win_logits, ref, &me->err);
        if (st != DSQ_OK)
            return st;
    }
    return DSQ_OK;
}

/* Item i of a step: whole model, group i of B windows through both sides;
 * layer-streamed, window i (whose streams sit at X + (i - c0)·per) through
 * one stage of one side (the logits: of every side, then the callback). */
static dsq_status step(const run *r, worker *me, int kind, int sd, int64_t i, int64_t l,
                       int64_t c0) {
    const dsq__windows *w = r->w;
    const int64_t first = w->n_ctx / 2;
    dsq_status st = DSQ_OK;
    if (kind == STEP_WHOLE) {
        const int64_t g0 = i * r->B, nb = g0 + r->B <= w->n_chunks ? r->B : w->n_chunks - g0;
        load_windows(w, me->win, g0, r->B, nb);
        for (int s = r->sides - 1; s >= 0 && st == DSQ_OK; s--)
            st = dsq_fwd_run(me->s[s].f, me->win, first, r->nscore, me->s[s].logits, &me->err);
        return st == DSQ_OK ? deliver(r, me, g0, nb) : st;
    }
    float *X = r->X[sd] + (size_t)(i - c0) * r->per[sd];
    dsq_fwd *f = me->s[sd].f;
    switch (kind) {
    case STEP_EMBED:
        load_windows(w, me->win, i, 1, 1);
        st = dsq_fwd_embed(f, me->win, &me->err);
        if (st == DSQ_OK)
            dsq_fwd_get_x(f, X);
        return st;
    case STEP_LAYER:
        dsq_fwd_set_x(f, X);
        st = dsq_fwd_layer(f, l, &me->err);
        if (st == DSQ_OK)
            dsq_fwd_get_x(f, X);
        return st;
    default:
        for (int s = r->sides - 1; s >= 0 && st == DSQ_OK; s--) {
            dsq_fwd_set_x(me->s[s].f, r->X[s] + (size_t)(i - c0) * r->per[s]);
            st = dsq_fwd_logits(me->s[s].f, first, r->nscore, me->s[s].logits, &me->err);
        }
        return st == DSQ_OK ? deliver(r, me, i, 1) : st;
    }
}

/* One step for items i0..i1-1, spread over the workers; report: count them
 * as windows done (whole model). */
static dsq_status all_items(const run *r, int kind, int sd, int64_t l, int64_t i0, int64_t i1,
                            int report, dsq_err *err) {
    const dsq__windows *w = r->w;
    int failed = 0;
    int64_t done = 0;
#pragma omp parallel for num_threads(r->P) schedule(dynamic, 1)
    for (int64_t i = i0; i < i1; i++) {
#ifdef _OPENMP
        worker *me = &r->wk[omp_get_thread_num()];
#else
        worker *me = &r->wk[0];
#endif
        int stop;
#pragma omp atomic read
        stop = failed;
        if (stop)
            continue;
        me->st = step(r, me, kind, sd, i, l, i0);
        if (me->st != DSQ_OK) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        if (report) {
#pragma omp critical(dsq_windows_progress)
            {
                done += i * r->B + r->B <= w->n_chunks ? r->B : w->n_chunks - i * r->B;
                if (w->progress != NULL)
                    w->progress(w->progress_user, (uint64_t)done, (uint64_t)w->n_chunks);
            }
        }
    }
    for (int i = 0; i < r->P; i++)
        if (r->wk[i].st != DSQ_OK)
            return dsq_err_set(err, r->wk[i].st, "%s", r->wk[i].err.text);
    return DSQ_OK;
}

/* One side of one layer-streamed pass: embed, then every layer loaded,
 * applied and dropped. */
static dsq_status pass_side(run *r, dsq_model *m, int sd, int64_t c0, int64_t c1, uint64_t *step_no,
                            uint64_t steps, dsq_err *err) {
    const dsq__windows *w = r->w;
    dsq_status st = all_items(r, STEP_EMBED, sd, 0, c0, c1, 0, err);
    for (int64_t l = 0; st == DSQ_OK && l < dsq_model_get_config(m)->n_layers; l++) {
        if ((st = dsq_model_load_layer(m, l, err)) != DSQ_OK)
            break;
        st = all_items(r, STEP_LAYER, sd, l, c0, c1, 0, err);
        dsq_model_unload_layer(m, l);
        if (st == DSQ_OK && w->progress != NULL)
            w->progress(w->progress_user, ++*step_no, steps);
    }
    return st;
}

static dsq_status run_layered(run *r, dsq_model *m, dsq_model *ref, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq__windows *w = r->w;
    const int64_t B = w->stream < w->n_chunks ? w->stream : w->n_chunks;
    const int64_t passes = (w->n_chunks + B - 1) / B;
    dsq_model *ms[2] = {m, ref};
    int64_t steps = 1;
    for (int s = 0; s < r->sides; s++) {
        const dsq_model_config *c = dsq_model_get_config(ms[s]);
        size_t total;
        steps += c->n_layers;
        r->per[s] = (size_t)w->n_ctx * (size_t)c->dim;
        DSQ_CHECK(dsq_mul_size(r->per[s], (size_t)B, &total) &&
                      dsq_mul_size(total, sizeof(float), &total),
                  DSQ_RANGE, err, "the activations of %lld windows are too large", (long long)B);
        r->X[s] = malloc(total);
        DSQ_CHECK(r->X[s] != NULL, DSQ_NOMEM, err,
                  "out of memory for the activations of %lld windows (%zu bytes; "
                  "fewer windows a pass need less)",
                  (long long)B, total);
    }
    uint64_t step_no = 0;
    for (int64_t p = 0; p < passes; p++) {
        const int64_t c0 = p * B, c1 = c0 + B < w->n_chunks ? c0 + B : w->n_chunks;
        /* the reference through every layer, then the model; the logits step reads both */
        for (int s = r->sides - 1; s >= 0; s--)
            DSQ_TRY(pass_side(r, ms[s], s, c0, c1, &step_no, (uint64_t)(passes * steps), err));
        DSQ_TRY(all_items(r, STEP_LOGITS, 0, 0, c0, c1, 0, err));
        if (w->progress != NULL)
            w->progress(w->progress_user, ++step_no, (uint64_t)(passes * steps));
    }
cleanup:
    return st;
}

/* Both schedules; m_rw / ref_rw non-NULL only for the layer-streamed one. */
static dsq_status windows_run(const dsq_model *m, const dsq_model *ref, dsq_model *m_rw,
                              dsq_model *ref_rw, const dsq__windows *w, double *seconds,
                              double stats[3], dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t ctx = w->n_ctx, V = dsq_model_get_config(m)->vocab;
    const int layered = m_rw != NULL;
    run r = {w, {m, ref}, ref != NULL ? 2 : 1, NULL, 0, 1, V, ctx - 1 - ctx / 2,
             {NULL, NULL}, {0, 0}};
    if (ref != NULL && dsq_model_get_config(ref)->vocab != V)
        return dsq_err_set(err, DSQ_FORMAT,
                           "the model's vocabulary (%lld) differs from the reference's (%lld)",
                           (long long)V, (long long)dsq_model_get_config(ref)->vocab);
    if (!layered && w->batch > 1)
        r.B = w->batch < w->n_chunks ? w->batch : w->n_chunks;
    const int64_t items = layered ? w->n_chunks : (w->n_chunks + r.B - 1) / r.B;
    /* Threads work on different windows, each single-threaded, when there are
     * enough of them: no barrier inside a window, so a busy machine or a small
     * model does not leave threads waiting on each other. With fewer windows
     * than threads, one worker uses every thread inside each product. Either
     * way every window is computed the same, so the result is the same. */
    const int nt = w->nthreads > 0 ? w->nthreads : dsq_model_nthreads(m);
    r.P = items >= nt ? nt : 1;
    const dsq_fwd_opts fo = {r.P > 1 ? 1 : nt, NULL, NULL};
    r.wk = calloc((size_t)r.P, sizeof *r.wk);
    DSQ_CHECK(r.wk != NULL, DSQ_NOMEM, err, "out of memory");
    for (int i = 0; i < r.P; i++) {
        worker *k = &r.wk[i];
        k->win = malloc((size_t)(r.B * ctx) * sizeof *k->win);
        DSQ_CHECK(k->win != NULL, DSQ_NOMEM, err, "out of memory");
        for (int s = 0; s < r.sides; s++) {
            DSQ_TRY(dsq_fwd_init(&k->s[s].f, r.m[s], r.B, ctx, &fo, err));
            k->s[s].logits = malloc((size_t)(r.B * r.nscore) * (size_t)V * sizeof(float));
            DSQ_CHECK(k->s[s].logits != NULL, DSQ_NOMEM, err, "out of memory");
        }
    }
    const double t0 = dsq_now();
    if (layered)
        DSQ_TRY(run_layered(&r, m_rw, ref_rw, err));
    else
        DSQ_TRY(all_items(&r, STEP_WHOLE, 0, 0, 0, items, 1, err));
    if (seconds != NULL)
        *seconds = dsq_now() - t0;
    if (stats != NULL) {
        stats[0] = stats[1] = stats[2] = 0.0;
        for (int i = 0; i < r.P; i++) {
            dsq_fwd_stats fs;
            dsq_fwd_get_stats(r.wk[i].s[0].f, &fs);
            stats[0] += fs.gemm_s / r.P;
            stats[1] += fs.attn_s / r.P;
            stats[2] += fs.gemm_flop;
        }
    }
cleanup:
    for (int i = 0; r.wk != NULL && i < r.P; i++) {
        for (int s = 0; s < 2; s++) {
            dsq_fwd_free(r.wk[i].s[s].f);
            free(r.wk[i].s[s].logits);
        }
        free(r.wk[i].win);
    }
    free(r.wk);
    free(r.X[0]);
    free(r.X[1]);
    return st;
}

dsq_status dsq__windows_run_whole(const dsq_model *m, const dsq_model *ref, const dsq__windows *w,
                                  double *seconds, double stats[3], dsq_err *err) {
    return windows_run(m, ref, NULL, NULL, w, seconds, stats, err);
}

dsq_status dsq__windows_run(dsq_model *m, dsq_model *ref, const dsq__windows *w, double *seconds,
                            double stats[3], dsq_err *err) {
    if (w->stream == 0)
        return windows_run(m, ref, NULL, NULL, w, seconds, stats, err);
    return windows_run(m, ref, m, ref, w, seconds, stats, err);
}
