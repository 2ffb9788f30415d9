/* core/awrite.h: one writer thread for buffers the caller keeps owning.
 *
 * `dsq quantize` computes an output slice in parallel and should not leave a
 * core idle while the slice is written: here the slice is written by another
 * thread while the next one is computed, and its finished rows are written
 * even before the whole slice is done, while they are still in cache. Nothing
 * is copied: write(2) reads the bytes where they were computed. core/wqueue.h
 * is a pool of fixed buffers on top of it, for producers that fill chunks.
 *
 * A job is (sink, buffer, length). The caller says how much of a job is ready
 * (dsq_awrite_ready, from any thread); the thread writes what is ready, in
 * order, jobs in submission order, in pieces of at most `piece` bytes. A
 * buffer stays borrowed until dsq_awrite_wait says its job is written.
 *
 * The sink's first error is kept: from then on nothing more is written, and
 * push (and wait, for a job at or after the failed one) return that error,
 * status and text, to the caller. */
#ifndef DSQ_AWRITE_H
#define DSQ_AWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef dsq_status (*dsq_awrite_sink)(void *user, const void *buf, size_t n, dsq_err *err);

typedef struct dsq_awrite dsq_awrite;

/* DSQ_NOMEM when the thread cannot be started. */
dsq_status dsq_awrite_start(dsq_awrite **out, size_t piece, dsq_err *err);
/* Queues n bytes at buf for sink(user, ...), the first `ready` of them
 * writable now. *job gets the job's number (1, 2, ... in push order). Blocks
 * while the queue is full (a few jobs). */
dsq_status dsq_awrite_push(dsq_awrite *a, dsq_awrite_sink sink, void *user, const void *buf,
                           size_t n, size_t ready, uint64_t *job, dsq_err *err);
/* The first `ready` bytes of job `job` (not yet finished) are final. Any
 * thread; ready must not decrease. */
void dsq_awrite_ready(dsq_awrite *a, uint64_t job, size_t ready);
/* Waits until jobs 1..job are written; job 0 waits for nothing. Returns the
 * error only if it came from one of these jobs. */
dsq_status dsq_awrite_wait(dsq_awrite *a, uint64_t job, dsq_err *err);
/* The sink's first error, from whichever job, or DSQ_OK. */
dsq_status dsq_awrite_error(dsq_awrite *a, dsq_err *err);
/* Stops the thread once its current write returns, dropping the jobs not yet
 * written (wait first to keep them), and frees everything; accepts NULL. */
void dsq_awrite_stop(dsq_awrite *a);

#endif
