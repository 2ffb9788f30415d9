/* core/wqueue.c: see wqueue.h. A pool of buffers over core/awrite.h's writer
 * thread: buffers go out in ring order, each carried by one awrite job, and a
 * buffer is handed out again once the job that last carried it is written. */
#include "core/wqueue.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/awrite.h"

struct dsq_wqueue {
    dsq_awrite *a;
    size_t n_bufs, buf_size;
    void **bufs;       /* [n_bufs] */
    uint64_t *job;     /* [n_bufs]: the job that last carried bufs[i], 0 for none */
    size_t next;       /* the buffer get hands out next */
    uint64_t last;     /* the last job submitted */
    dsq_wqueue_sink sink;
    void *user;
};

dsq_status dsq_wqueue_start(dsq_wqueue **out, size_t n_bufs, size_t buf_size, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_wqueue *q = calloc(1, sizeof *q);
    *out = NULL;
    if (q == NULL || n_bufs == 0)
        goto nomem;
    q->n_bufs = n_bufs;
    q->buf_size = buf_size;
    q->bufs = calloc(n_bufs, sizeof *q->bufs);
    q->job = calloc(n_bufs, sizeof *q->job);
    if (q->bufs == NULL || q->job == NULL)
        goto nomem;
    for (size_t i = 0; i < n_bufs; i++)
        if ((q->bufs[i] = malloc(buf_size)) == NULL)
            goto nomem;
    /* one write(2) per buffer: a piece as large as the buffer */
    if ((st = dsq_awrite_start(&q->a, buf_size, err)) != DSQ_OK) {
        dsq_wqueue_stop(q);
        return st;
    }
    *out = q;
    return DSQ_OK;
nomem:
    dsq_wqueue_stop(q);
    return dsq_err_set(err, DSQ_NOMEM, "out of memory for %zu write buffers of %zu bytes", n_bufs,
                       buf_size);
}

void dsq_wqueue_set_sink(dsq_wqueue *q, dsq_wqueue_sink sink, void *user) {
    q->sink = sink;
    q->user = user;
}

dsq_status dsq_wqueue_get(dsq_wqueue *q, void **buf, dsq_err *err) {
    *buf = NULL;
    dsq_status st = dsq_awrite_wait(q->a, q->job[q->next], err);
    if (st == DSQ_OK)
        st = dsq_awrite_error(q->a, err); /* an error stays: every later call returns it */
    if (st == DSQ_OK)
        *buf = q->bufs[q->next];
    return st;
}

dsq_status dsq_wqueue_submit(dsq_wqueue *q, void *buf, size_t n, dsq_err *err) {
    size_t i = q->next, k = 0;
    while (k < q->n_bufs && q->bufs[i] != buf) { /* normally at once: the order of get */
        i = (i + 1) % q->n_bufs;
        k++;
    }
    if (k == q->n_bufs)
        return dsq_err_set(err, DSQ_INVALID_ARG, "wqueue: a buffer it did not hand out");
    const dsq_status st = dsq_awrite_push(q->a, q->sink, q->user, buf, n, n, &q->job[i], err);
    if (st == DSQ_OK)
        q->last = q->job[i];
    q->next = (i + 1) % q->n_bufs;
    return st;
}

dsq_status dsq_wqueue_drain(dsq_wqueue *q, dsq_err *err) {
    const dsq_status st = dsq_awrite_wait(q->a, q->last, err);
    return st != DSQ_OK ? st : dsq_awrite_error(q->a, err);
}

size_t dsq_wqueue_buf_size(const dsq_wqueue *q) {
    return q->buf_size;
}

void dsq_wqueue_stop(dsq_wqueue *q) {
    if (q == NULL)
        return;
    dsq_awrite_stop(q->a);
    for (size_t i = 0; q->bufs != NULL && i < q->n_bufs; i++)
        free(q->bufs[i]);
    free(q->bufs);
    free(q->job);
    free(q);
}
