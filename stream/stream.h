/* stream/stream.h: the one streaming engine of dsq's writing commands.
 *
 * A command that writes a large output (convert to safetensors shards; next,
 * quantize to GGUF and the quantized HF layouts) describes WHAT it writes with
 * a sink and HOW each item's bytes are made with a driver; the engine owns
 * everything else, once:
 *
 *   - the output plan: the sink's files and their exact sizes, checked
 *     against the bytes actually produced before a file gets its name;
 *   - pre-flight: the output directory is usable, and not a directory of
 *     other files unless --force or --resume (before any weight is read);
 *   - crash safety: every file is written under a hidden temporary name
 *     (core/file.h dsq_outfile) and renamed when whole; stale temporaries of
 *     killed runs are swept; a cancelled run removes its own;
 *   - the writer thread (core/wqueue.h): item k+1 is computed while item k is
 *     written, in a few fixed buffers, so memory does not grow with the model;
 *   - the manifest (dsq-manifest.json, below) and --resume;
 *   - progress, and cancellation (an interrupt flag polled per buffer).
 *
 * The manifest, rewritten after each finished file:
 *   {"format": "dsq-manifest", "version": 2, "tool": "...", "complete": bool,
 *    "files": {"NAME": {"size": bytes, "xxh3": "16 hex digits",
 *                       "source": <the driver's source identity, if any>}}}
 * xxh3 is XXH3-64 (seed 0; core/hash.h says why not XXH64) of the whole file,
 * as `xxhsum -H3` prints it; NAME
 * is relative to the output directory ("sub/file" for copied subdirectories).
 * --resume keeps a file only if its entry's source identity equals the one
 * the driver computes from the sources as they are now, and the file's size
 * and hash match; `dsq check DIR` rehashes every file listed.
 *
 * Usage: dsq_stream_preflight; (plan, validate the input); dsq_stream_open;
 * dsq_stream_run(sink, driver) per sink; side files with
 * dsq_stream_write_file / dsq_stream_copy_file; dsq_stream_finish.
 *
 * Sinks: stream/sink_st.h (safetensors shards) now. The GGUF sink (quantize's
 * write side) fits the same interface: head = the GGUF header, key-values,
 * tensor infos and the padding to the data's alignment, all fixed by the
 * sizes before any data; items = the tensors in offset order, pad = each
 * one's alignment padding; commit_together = 1 for a split GGUF. Quantize
 * fills a whole slice in parallel and has its first rows final before the
 * slice is: it will need a put that borrows the producer's buffer and
 * releases it row by row (core/awrite.h's push and ready) beside
 * dsq_stream_put, which copies nothing either way but hands out pool buffers. */
#ifndef DSQ_STREAM_H
#define DSQ_STREAM_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/report.h"
#include "core/status.h"

#define DSQ_MANIFEST_NAME "dsq-manifest.json"
#define DSQ_MANIFEST_VERSION 2

/* An output format: the files, their layout, the bytes around the items.
 * Items are whatever the driver makes (a tensor, a slice); the sink only
 * says, per file, which item comes at layout position k, how many bytes it
 * has and how many zero bytes of alignment follow it. */
typedef struct dsq_sink {
    void *self;
    size_t n_files;
    /* 1: no file is renamed into place until every file of the sink is
     * whole (split GGUF: a set of parts, of which a subset is useless) */
    int commit_together;
    const char *(*file_name)(void *self, size_t f);
    uint64_t (*file_size)(void *self, size_t f);
    /* The bytes before the first item (a safetensors or GGUF header, with
     * its padding), valid until the sink is freed. May be called twice. */
    dsq_status (*head)(void *self, size_t f, const void **bytes, size_t *len, dsq_err *err);
    size_t (*n_items)(void *self, size_t f);
    void (*item)(void *self, size_t f, size_t k, size_t *id, uint64_t *bytes, uint64_t *pad);
} dsq_sink;

typedef struct dsq_stream dsq_stream;

/* The command's side: makes the bytes, identifies the sources. */
typedef struct dsq_stream_driver {
    void *user;
    /* Makes exactly `bytes` bytes of item `id` of file f, in order, through
     * dsq_stream_buf and dsq_stream_put. */
    dsq_status (*produce)(void *user, dsq_stream *s, size_t f, size_t id, uint64_t bytes,
                          dsq_err *err);
    /* After file f is produced: what it was made from, as a JSON value (new
     * reference) compared with json_equal on --resume; NULL: no identity
     * (the file is then never resumed). Optional. */
    dsq_status (*source_id)(void *user, size_t f, json_t **out, dsq_err *err);
    /* The same identity computed from the sources as they are now (reading
     * them), asked by --resume before it keeps file f. Optional. */
    dsq_status (*source_id_now)(void *user, size_t f, json_t **out, dsq_err *err);
} dsq_stream_driver;

typedef struct dsq_stream_opts {
    const char *out_dir;
    const char *tool;      /* recorded in the manifest: "dsq convert fp8 bf16" */
    int resume;            /* keep what the manifest shows done, from the same sources */
    int force;             /* write into a non-empty directory, replacing same-named files */
    size_t buf_size;       /* bytes per write buffer; 0 = 256 KiB */
    size_t n_bufs;         /* write buffers; 0 = 8 */
    const atomic_int *cancel; /* may be NULL; nonzero: stop at the next buffer */
    dsq_log_fn log;
    void *log_user;
    dsq_progress_fn progress;
    void *progress_user;
} dsq_stream_opts;

typedef struct dsq_stream_stats {
    size_t files_written, files_resumed;
    uint64_t bytes_planned; /* of every sink file run so far */
    uint64_t bytes_written; /* of sink files written by this run */
} dsq_stream_stats;

/* Before any input is read: the output directory can be made or written, and
 * holds nothing but dsq's temporaries unless opts->force or opts->resume.
 * @return DSQ_OK, DSQ_IO, DSQ_INVALID_ARG (not empty, not a directory) */
dsq_status dsq_stream_preflight(const dsq_stream_opts *o, dsq_err *err);
/* Creates the output directory, removes stale temporaries and `markers`
 * (files whose presence says "complete", NULL-terminated; may be NULL),
 * reads the old manifest for --resume and starts the writer thread. `o` must
 * outlive the stream. max_item_chunk: the largest piece a producer must be
 * able to put at once (a row), which raises the buffer size if needed. */
dsq_status dsq_stream_open(dsq_stream **out, const dsq_stream_opts *o, size_t max_item_chunk,
                           const char *const *markers, dsq_err *err);
/* Adds the sink's files to the total the progress callback is given. Call
 * for every sink before the first run, so progress runs 0 -> 100% once. */
void dsq_stream_plan(dsq_stream *s, const dsq_sink *sink);
/* Writes (or, with --resume, keeps) every file of the sink. */
dsq_status dsq_stream_run(dsq_stream *s, const dsq_sink *sink, const dsq_stream_driver *d,
                          dsq_err *err);
/* For producers: a free buffer of dsq_stream_buf_size bytes (blocks while the
 * writer thread holds them all); put queues its first n bytes, in order. */
dsq_status dsq_stream_buf(dsq_stream *s, void **buf, dsq_err *err);
dsq_status dsq_stream_put(dsq_stream *s, void *buf, size_t n, dsq_err *err);
size_t dsq_stream_buf_size(const dsq_stream *s);
/* Small side files (an index, config.json), written whole and recorded. */
dsq_status dsq_stream_write_file(dsq_stream *s, const char *name, const void *buf, size_t n,
                                 dsq_err *err);
/* Copies src_path to `rel` (a name, or "sub/name" under a directory the
 * caller made) in the output directory, and records it. */
dsq_status dsq_stream_copy_file(dsq_stream *s, const char *src_path, const char *rel,
                                dsq_err *err);
/* Writes the manifest with "complete": true. */
dsq_status dsq_stream_finish(dsq_stream *s, dsq_err *err);
const dsq_stream_stats *dsq_stream_get_stats(const dsq_stream *s);
/* A hash as the manifest writes it: 16 lowercase hex digits into buf; returns buf. */
char *dsq_stream_hex(uint64_t v, char buf[17]);
/* Stops the writer thread, removes the temporaries of unfinished files and
 * frees s; accepts NULL. */
void dsq_stream_free(dsq_stream *s);

/* The manifest's side for `dsq check`: rehashes every file the manifest of
 * dir lists. Calls report(user, name, status) per file, status DSQ_OK,
 * DSQ_MISMATCH (size or hash differs), DSQ_NOT_FOUND or another error; *n_bad gets the count
 * of files that are not DSQ_OK. Fails (DSQ_FORMAT, DSQ_NOT_FOUND) only when
 * the manifest itself is missing or unreadable. */
typedef void (*dsq_check_report_fn)(void *user, const char *name, uint64_t size,
                                    dsq_status status, const char *detail);
dsq_status dsq_stream_check_dir(const char *dir, dsq_check_report_fn report, void *user,
                                size_t *n_files, size_t *n_bad, int *complete, dsq_err *err);

#endif
