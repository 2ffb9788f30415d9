/* core/awrite.c: see awrite.h. One mutex guards the ring of jobs; the
 * thread sleeps on `work`, callers waiting for a job or a free slot on
 * `done`. */
#include "core/awrite.h"

#include <pthread.h>
#include <stdlib.h>

/* Two slice buffers in flight is all `dsq quantize` uses; the rest is slack
 * for copied tensors, which need no buffer. */
#define AW_JOBS 8

typedef struct aw_job {
    dsq_awrite_sink sink;
    void *user;
    const uint8_t *buf;
    size_t n, ready, written;
} aw_job;

struct dsq_awrite {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_t thread;
    size_t piece;
    aw_job ring[AW_JOBS];
    size_t head, count;    /* jobs head .. head+count-1 (mod AW_JOBS) are queued */
    uint64_t n_done;       /* jobs 1..n_done are written (or dropped after an error) */
    int idle, stopping;
    dsq_status status;     /* the sink's first error */
    dsq_err err;
    uint64_t failed_job;   /* the job it came from */
};

/* caller holds the mutex */
static int has_work(const dsq_awrite *a) {
    if (a->count == 0)
        return 0;
    const aw_job *j = &a->ring[a->head];
    return a->status != DSQ_OK || j->written < j->ready || j->written == j->n;
}

static void *writer_main(void *arg) {
    dsq_awrite *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->stopping && !has_work(a)) {
            a->idle = 1;
            pthread_cond_wait(&a->work, &a->mu);
            a->idle = 0;
        }
        if (a->stopping)
            break;
        aw_job *j = &a->ring[a->head];
        if (a->status == DSQ_OK && j->written < j->ready) {
            const size_t take = j->ready - j->written < a->piece ? j->ready - j->written : a->piece;
            const uint8_t *p = j->buf + j->written;
            dsq_awrite_sink sink = j->sink;
            void *user = j->user;
            dsq_err e = {0};
            pthread_mutex_unlock(&a->mu);
            const dsq_status st = sink(user, p, take, &e);
            pthread_mutex_lock(&a->mu);
            if (st != DSQ_OK) {
                a->status = st;
                a->err = e;
                a->failed_job = a->n_done + 1;
            } else {
                j->written += take;
            }
        }
        /* finished, or dropped: after an error nothing is written any more */
        if (j->written == j->n || a->status != DSQ_OK) {
            a->head = (a->head + 1) % AW_JOBS;
            a->count--;
            a->n_done++;
            pthread_cond_broadcast(&a->done);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

dsq_status dsq_awrite_start(dsq_awrite **out, size_t piece, dsq_err *err) {
    dsq_awrite *a = calloc(1, sizeof *a);
    *out = NULL;
    if (a == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    a->piece = piece > 0 ? piece : 1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->work, NULL);
    pthread_cond_init(&a->done, NULL);
    if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->work);
        pthread_cond_destroy(&a->done);
        free(a);
        return dsq_err_set(err, DSQ_NOMEM, "cannot start the writer thread");
    }
    *out = a;
    return DSQ_OK;
}

/* The error, if it came from job `upto` or before. Caller holds the mutex. */
static dsq_status report(const dsq_awrite *a, uint64_t upto, dsq_err *err) {
    if (a->status != DSQ_OK && a->failed_job <= upto)
        return dsq_err_set(err, a->status, "%s", a->err.text);
    return DSQ_OK;
}

dsq_status dsq_awrite_push(dsq_awrite *a, dsq_awrite_sink sink, void *user, const void *buf,
                           size_t n, size_t ready, uint64_t *job, dsq_err *err) {
    pthread_mutex_lock(&a->mu);
    while (a->count == AW_JOBS && a->status == DSQ_OK)
        pthread_cond_wait(&a->done, &a->mu);
    const dsq_status st = report(a, UINT64_MAX, err);
    if (st == DSQ_OK) {
        aw_job *j = &a->ring[(a->head + a->count) % AW_JOBS];
        j->sink = sink;
        j->user = user;
        j->buf = buf;
        j->n = n;
        j->ready = ready < n ? ready : n;
        j->written = 0;
        a->count++;
        *job = a->n_done + a->count;
        if (a->idle)
            pthread_cond_signal(&a->work);
    }
    pthread_mutex_unlock(&a->mu);
    return st;
}

void dsq_awrite_ready(dsq_awrite *a, uint64_t job, size_t ready) {
    pthread_mutex_lock(&a->mu);
    if (job > a->n_done && job <= a->n_done + a->count) {
        aw_job *j = &a->ring[(a->head + (size_t)(job - a->n_done - 1)) % AW_JOBS];
        if (ready > j->ready)
            j->ready = ready < j->n ? ready : j->n;
        if (a->idle)
            pthread_cond_signal(&a->work);
    }
    pthread_mutex_unlock(&a->mu);
}

dsq_status dsq_awrite_wait(dsq_awrite *a, uint64_t job, dsq_err *err) {
    pthread_mutex_lock(&a->mu);
    while (a->n_done < job && a->status == DSQ_OK)
        pthread_cond_wait(&a->done, &a->mu);
    const dsq_status st = report(a, job, err);
    pthread_mutex_unlock(&a->mu);
    return st;
}

dsq_status dsq_awrite_error(dsq_awrite *a, dsq_err *err) {
    pthread_mutex_lock(&a->mu);
    const dsq_status st = report(a, UINT64_MAX, err);
    pthread_mutex_unlock(&a->mu);
    return st;
}

void dsq_awrite_stop(dsq_awrite *a) {
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->mu);
    a->stopping = 1;
    pthread_cond_signal(&a->work);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->done);
    free(a);
}
