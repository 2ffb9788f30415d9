/* core/wqueue.h: a bounded queue of buffers drained by one writer thread.
 *
 * A converter computes output chunk k+1 while chunk k is being written: the
 * write(2) copy into the page cache costs about as much as the conversion, so
 * overlapping them is what brings a conversion near the speed of a plain copy.
 * Memory is bounded by n_bufs * buf_size whatever the size of the output.
 *
 * Usage: get a free buffer, fill up to buf_size bytes, submit it with its
 * length; buffers are written in submission order by `sink`. The first error
 * the sink returns is kept and returned by every later call, and by finish. */
#ifndef DSQ_WQUEUE_H
#define DSQ_WQUEUE_H

#include <stddef.h>

#include "core/status.h"

typedef dsq_status (*dsq_wqueue_sink)(void *user, const void *buf, size_t n, dsq_err *err);

typedef struct dsq_wqueue dsq_wqueue;

dsq_status dsq_wqueue_start(dsq_wqueue **out, size_t n_bufs, size_t buf_size, dsq_err *err);
/* Changes the sink; only between files, when the queue is drained (after
 * dsq_wqueue_drain). */
void dsq_wqueue_set_sink(dsq_wqueue *q, dsq_wqueue_sink sink, void *user);
/* Blocks until a buffer is free. */
dsq_status dsq_wqueue_get(dsq_wqueue *q, void **buf, dsq_err *err);
dsq_status dsq_wqueue_submit(dsq_wqueue *q, void *buf, size_t n, dsq_err *err);
/* Waits until everything submitted is written; returns the sink's first error. */
dsq_status dsq_wqueue_drain(dsq_wqueue *q, dsq_err *err);
size_t dsq_wqueue_buf_size(const dsq_wqueue *q);
/* Stops the thread (after draining) and frees everything; accepts NULL. */
void dsq_wqueue_stop(dsq_wqueue *q);

#endif
