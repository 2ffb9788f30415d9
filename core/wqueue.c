/* core/wqueue.c: see wqueue.h. One mutex guards everything; buffers move
 * free -> filled (FIFO) -> free. */
#include "core/wqueue.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct dsq_wqueue {
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* any state change */
    pthread_t thread;
    int started;
    size_t n_bufs, buf_size;
    void **bufs;         /* [n_bufs] */
    void **free_list;    /* stack of free buffers */
    size_t n_free;
    void **fifo;         /* ring of filled buffers */
    size_t *fifo_len;
    size_t head, count;
    int busy;            /* the thread is writing a buffer */
    int stopping;
    dsq_wqueue_sink sink;
    void *user;
    dsq_status status;   /* first sink error */
    dsq_err err;
};

static void *writer_main(void *arg) {
    dsq_wqueue *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->count == 0 && !q->stopping)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->count == 0 && q->stopping)
            break;
        void *buf = q->fifo[q->head];
        const size_t n = q->fifo_len[q->head];
        q->head = (q->head + 1) % q->n_bufs;
        q->count--;
        q->busy = 1;
        const dsq_status prev = q->status;
        dsq_wqueue_sink sink = q->sink;
        void *user = q->user;
        pthread_mutex_unlock(&q->mu);
        dsq_err e = {0};
        /* after an error, buffers are returned without being written */
        const dsq_status st = (prev == DSQ_OK && sink != NULL) ? sink(user, buf, n, &e) : prev;
        pthread_mutex_lock(&q->mu);
        if (st != DSQ_OK && q->status == DSQ_OK) {
            q->status = st;
            q->err = e;
        }
        q->free_list[q->n_free++] = buf;
        q->busy = 0;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

dsq_status dsq_wqueue_start(dsq_wqueue **out, size_t n_bufs, size_t buf_size, dsq_err *err) {
    dsq_wqueue *q = calloc(1, sizeof *q);
    *out = NULL;
    if (q == NULL || n_bufs == 0)
        goto nomem;
    q->n_bufs = n_bufs;
    q->buf_size = buf_size;
    q->bufs = calloc(n_bufs, sizeof *q->bufs);
    q->free_list = calloc(n_bufs, sizeof *q->free_list);
    q->fifo = calloc(n_bufs, sizeof *q->fifo);
    q->fifo_len = calloc(n_bufs, sizeof *q->fifo_len);
    if (!q->bufs || !q->free_list || !q->fifo || !q->fifo_len)
        goto nomem;
    for (size_t i = 0; i < n_bufs; i++) {
        q->bufs[i] = malloc(buf_size);
        if (q->bufs[i] == NULL)
            goto nomem;
        q->free_list[q->n_free++] = q->bufs[i];
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (pthread_create(&q->thread, NULL, writer_main, q) != 0) {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
        dsq_wqueue_stop(q);
        return dsq_err_set(err, DSQ_NOMEM, "cannot start the writer thread");
    }
    q->started = 1;
    *out = q;
    return DSQ_OK;
nomem:
    dsq_wqueue_stop(q);
    return dsq_err_set(err, DSQ_NOMEM, "out of memory for %zu write buffers of %zu bytes", n_bufs,
                       buf_size);
}

void dsq_wqueue_set_sink(dsq_wqueue *q, dsq_wqueue_sink sink, void *user) {
    pthread_mutex_lock(&q->mu);
    q->sink = sink;
    q->user = user;
    pthread_mutex_unlock(&q->mu);
}

static dsq_status report(dsq_wqueue *q, dsq_err *err) {
    /* caller holds the mutex */
    if (q->status != DSQ_OK)
        return dsq_err_set(err, q->status, "%s", q->err.text);
    return DSQ_OK;
}

dsq_status dsq_wqueue_get(dsq_wqueue *q, void **buf, dsq_err *err) {
    pthread_mutex_lock(&q->mu);
    while (q->n_free == 0)
        pthread_cond_wait(&q->cv, &q->mu);
    const dsq_status st = report(q, err);
    *buf = st == DSQ_OK ? q->free_list[--q->n_free] : NULL;
    pthread_mutex_unlock(&q->mu);
    return st;
}

dsq_status dsq_wqueue_submit(dsq_wqueue *q, void *buf, size_t n, dsq_err *err) {
    pthread_mutex_lock(&q->mu);
    q->fifo[(q->head + q->count) % q->n_bufs] = buf;
    q->fifo_len[(q->head + q->count) % q->n_bufs] = n;
    q->count++;
    pthread_cond_broadcast(&q->cv);
    const dsq_status st = report(q, err);
    pthread_mutex_unlock(&q->mu);
    return st;
}

dsq_status dsq_wqueue_drain(dsq_wqueue *q, dsq_err *err) {
    pthread_mutex_lock(&q->mu);
    while (q->count > 0 || q->busy)
        pthread_cond_wait(&q->cv, &q->mu);
    const dsq_status st = report(q, err);
    pthread_mutex_unlock(&q->mu);
    return st;
}

size_t dsq_wqueue_buf_size(const dsq_wqueue *q) {
    return q->buf_size;
}

void dsq_wqueue_stop(dsq_wqueue *q) {
    if (q == NULL)
        return;
    if (q->started) {
        pthread_mutex_lock(&q->mu);
        q->stopping = 1;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->thread, NULL);
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->cv);
    }
    if (q->bufs != NULL) {
        for (size_t i = 0; i < q->n_bufs; i++)
            free(q->bufs[i]);
    }
    free(q->bufs);
    free(q->free_list);
    free(q->fifo);
    free(q->fifo_len);
    free(q);
}
