/* stream/stream.c: the streaming engine (see stream.h).
 *
 * Threads: the caller's thread runs the driver (which may use OpenMP inside
 * an item) and hashes each buffer it puts while the buffer is still in cache;
 * one writer thread (core/wqueue.h) does nothing but write(2). Buffers are
 * allocated once: nothing is mapped or unmapped per buffer, so no page-table
 * change has to be shot down on the other core (issue #10 item 8). */
#include "stream/stream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/hash.h"
#include "core/wqueue.h"

/* Small buffers, several of them: a chunk handed to the writer thread is
 * still in cache when write(2) copies it into the page cache. With 8 MiB
 * buffers the same conversion moved every byte through DRAM twice more and
 * ran at half the speed of cp (measured: 7.0 s vs 4.0 s at 256 KiB). */
#define DEFAULT_BUF ((size_t)256 << 10)
#define DEFAULT_N_BUFS 8
#define MANIFEST_MAX ((size_t)256 << 20)

/* a finished file of a commit_together sink, waiting for the others */
typedef struct held_file {
    dsq_outfile *f;
    uint64_t hash;
    json_t *source;
} held_file;

struct dsq_stream {
    const dsq_stream_opts *o;
    dsq_wqueue *q;
    dsq_hash *hash; /* of the file being written */
    dsq_outfile *cur;
    uint64_t cur_put; /* bytes of cur queued so far */
    json_t *manifest, *old_manifest;
    dsq_stream_stats stats;
    uint64_t done;
};

static void say(const dsq_stream *s, dsq_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const dsq_stream *s, dsq_log_level lvl, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    if (s->o->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->o->log(s->o->log_user, lvl, msg);
}

static int cancelled(const dsq_stream *s) {
    return s->o->cancel != NULL && atomic_load(s->o->cancel) != 0;
}

static dsq_status cancel_error(dsq_err *err) {
    return dsq_err_set(err, DSQ_CANCELLED, "interrupted");
}

static void progress(dsq_stream *s, uint64_t bytes) {
    s->done += bytes;
    if (s->o->progress != NULL)
        s->o->progress(s->o->progress_user, s->done, s->stats.bytes_planned);
}

char *dsq_stream_hex(uint64_t v, char buf[17]) {
    snprintf(buf, 17, "%016" PRIx64, v);
    return buf;
}

/* ---- pre-flight and set-up ---- */

dsq_status dsq_stream_preflight(const dsq_stream_opts *o, dsq_err *err) {
    int non_empty = 0;
    const dsq_status st = dsq_check_out_dir(o->out_dir, &non_empty, err);
    if (st != DSQ_OK)
        return st;
    if (non_empty && !o->force && !o->resume)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "%s: directory not empty (--force replaces its files, --resume "
                           "continues an interrupted run)",
                           o->out_dir);
    return DSQ_OK;
}

static dsq_status load_old_manifest(dsq_stream *s) {
    char *p = dsq_path_join(s->o->out_dir, DSQ_MANIFEST_NAME);
    char *text = NULL;
    size_t len = 0;
    dsq_err e2 = {0};
    if (p != NULL && dsq_read_small_file(p, MANIFEST_MAX, &text, &len, &e2) == DSQ_OK) {
        json_error_t jerr;
        json_t *m = json_loadb(text, len, 0, &jerr);
        const json_t *v = json_object_get(m, "version");
        if (m == NULL)
            say(s, DSQ_LOG_WARN, "%s: unreadable (%s); writing every file", p, jerr.text);
        else if (!json_is_integer(v) || json_integer_value(v) != DSQ_MANIFEST_VERSION)
            say(s, DSQ_LOG_WARN, "%s: written by an older dsq; writing every file", p);
        else
            s->old_manifest = json_incref(m);
        json_decref(m);
    }
    free(text);
    free(p);
    return DSQ_OK;
}

static dsq_status remove_markers(const dsq_stream *s, const char *const *markers, dsq_err *err) {
    for (size_t i = 0; markers != NULL && markers[i] != NULL; i++) {
        char *p = dsq_path_join(s->o->out_dir, markers[i]);
        if (p == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
        const int bad = unlink(p) != 0 && errno != ENOENT;
        const dsq_status st = bad ? dsq_err_set(err, DSQ_IO, "%s: %s", p, strerror(errno)) : DSQ_OK;
        free(p);
        if (st != DSQ_OK)
            return st;
    }
    return DSQ_OK;
}

static dsq_status write_manifest(dsq_stream *s, int complete, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_object_set_new(s->manifest, "complete", json_boolean(complete));
    char *text = json_dumps(s->manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
    DSQ_CHECK(text != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_write_file(s->o->out_dir, DSQ_MANIFEST_NAME, text, strlen(text), err));
cleanup:
    free(text);
    return st;
}

dsq_status dsq_stream_open(dsq_stream **out, const dsq_stream_opts *o, size_t max_item_chunk,
                           const char *const *markers, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_stream *s = calloc(1, sizeof *s);
    *out = NULL;
    DSQ_CHECK(s != NULL, DSQ_NOMEM, err, "out of memory");
    s->o = o;
    DSQ_TRY(dsq_mkdir(o->out_dir, err));
    DSQ_TRY(dsq_sweep_temps(o->out_dir, NULL, NULL, err));
    if (o->resume)
        DSQ_TRY(load_old_manifest(s));
    /* an interrupted run must never look complete, whatever it left */
    DSQ_TRY(remove_markers(s, markers, err));
    s->manifest = json_pack("{s:s, s:i, s:s, s:o}", "format", "dsq-manifest", "version",
                            DSQ_MANIFEST_VERSION, "tool", o->tool ? o->tool : "dsq", "files",
                            json_object());
    s->hash = dsq_hash_new();
    DSQ_CHECK(s->manifest != NULL && s->hash != NULL, DSQ_NOMEM, err, "out of memory");
    size_t bs = o->buf_size ? o->buf_size : DEFAULT_BUF;
    if (max_item_chunk > bs)
        bs = max_item_chunk;
    DSQ_TRY(dsq_wqueue_start(&s->q, o->n_bufs ? o->n_bufs : DEFAULT_N_BUFS, bs, err));
    *out = s;
    s = NULL;
cleanup:
    dsq_stream_free(s);
    return st;
}

void dsq_stream_plan(dsq_stream *s, const dsq_sink *sink) {
    for (size_t f = 0; f < sink->n_files; f++)
        s->stats.bytes_planned += sink->file_size(sink->self, f);
}

/* ---- the manifest's entries ---- */

static dsq_status record(dsq_stream *s, const char *name, uint64_t size, uint64_t hash,
                         json_t *source, dsq_err *err) {
    char h[17];
    json_t *e = json_pack("{s:I, s:s}", "size", (json_int_t)size, "xxh3", dsq_stream_hex(hash, h));
    if (e == NULL) {
        json_decref(source);
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    }
    if (source != NULL)
        json_object_set_new(e, "source", source);
    json_object_set_new(json_object_get(s->manifest, "files"), name, e);
    return DSQ_OK;
}

/* --resume: keep file f if the manifest, its sources and its bytes agree.
 * *keep = 1 when kept (its entry is carried over). */
static dsq_status try_resume(dsq_stream *s, const dsq_sink *sink, const dsq_stream_driver *d,
                             size_t f, int *keep, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const char *name = sink->file_name(sink->self, f);
    const uint64_t want = sink->file_size(sink->self, f);
    json_t *e = json_object_get(json_object_get(s->old_manifest, "files"), name);
    json_t *now = NULL;
    char *path = NULL;
    char h[17];
    struct stat sb;
    *keep = 0;
    const json_t *sz = json_object_get(e, "size"), *xh = json_object_get(e, "xxh3");
    const json_t *src = json_object_get(e, "source");
    if (!json_is_integer(sz) || (uint64_t)json_integer_value(sz) != want || !json_is_string(xh) ||
        src == NULL || d->source_id_now == NULL)
        goto cleanup;
    path = dsq_path_join(s->o->out_dir, name);
    DSQ_CHECK(path != NULL, DSQ_NOMEM, err, "out of memory");
    if (stat(path, &sb) != 0 || (uint64_t)sb.st_size != want)
        goto cleanup;
    DSQ_TRY(d->source_id_now(d->user, f, &now, err));
    if (!json_equal(now, (json_t *)src)) {
        say(s, DSQ_LOG_INFO, "%s: its source changed since it was written: writing it again",
            name);
        goto cleanup;
    }
    uint64_t hash = 0, size = 0;
    dsq_err e2 = {0};
    if (dsq_file_hash(path, &hash, &size, &e2) != DSQ_OK || size != want ||
        strcmp(json_string_value(xh), dsq_stream_hex(hash, h)) != 0) {
        say(s, DSQ_LOG_INFO, "%s: not intact: writing it again", name);
        goto cleanup;
    }
    json_object_set(json_object_get(s->manifest, "files"), name, e);
    *keep = 1;
cleanup:
    json_decref(now);
    free(path);
    return st;
}

/* ---- writing one file ---- */

static dsq_status sink_outfile(void *user, const void *buf, size_t n, dsq_err *err) {
    return dsq_outfile_write(user, buf, n, err);
}

dsq_status dsq_stream_buf(dsq_stream *s, void **buf, dsq_err *err) {
    if (cancelled(s))
        return cancel_error(err);
    return dsq_wqueue_get(s->q, buf, err);
}

dsq_status dsq_stream_put(dsq_stream *s, void *buf, size_t n, dsq_err *err) {
    dsq_hash_update(s->hash, buf, n);
    const dsq_status st = dsq_wqueue_submit(s->q, buf, n, err);
    if (st != DSQ_OK)
        return st;
    s->cur_put += n;
    progress(s, n);
    return DSQ_OK;
}

size_t dsq_stream_buf_size(const dsq_stream *s) {
    return dsq_wqueue_buf_size(s->q);
}

/* bytes from memory the caller keeps (a header), through the buffers */
static dsq_status put_bytes(dsq_stream *s, const uint8_t *p, uint64_t n, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t bs = dsq_stream_buf_size(s);
    while (n > 0) {
        void *buf;
        const size_t k = n < bs ? (size_t)n : bs;
        DSQ_TRY(dsq_stream_buf(s, &buf, err));
        if (p != NULL)
            memcpy(buf, p, k);
        else
            memset(buf, 0, k);
        DSQ_TRY(dsq_stream_put(s, buf, k, err));
        if (p != NULL)
            p += k;
        n -= k;
    }
cleanup:
    return st;
}

static dsq_status produce_file(dsq_stream *s, const dsq_sink *sink, const dsq_stream_driver *d,
                               size_t f, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const char *name = sink->file_name(sink->self, f);
    const uint64_t want = sink->file_size(sink->self, f);
    const void *head = NULL;
    size_t head_len = 0;
    DSQ_TRY(dsq_outfile_open(&s->cur, s->o->out_dir, name, err));
    dsq_outfile_no_hash(s->cur); /* hashed here, in put: the writer thread only writes */
    dsq_wqueue_set_sink(s->q, sink_outfile, s->cur);
    dsq_hash_reset(s->hash);
    s->cur_put = 0;
    DSQ_TRY(sink->head(sink->self, f, &head, &head_len, err));
    DSQ_TRY(put_bytes(s, head, head_len, err));
    const size_t n = sink->n_items(sink->self, f);
    for (size_t k = 0; k < n; k++) {
        size_t id = 0;
        uint64_t bytes = 0, pad = 0;
        sink->item(sink->self, f, k, &id, &bytes, &pad);
        const uint64_t before = s->cur_put;
        DSQ_TRY(d->produce(d->user, s, f, id, bytes, err));
        DSQ_CHECK(s->cur_put - before == bytes, DSQ_INVALID_ARG, err,
                  "%s: item %zu: %" PRIu64 " bytes produced, the layout has %" PRIu64, name, k,
                  s->cur_put - before, bytes);
        DSQ_TRY(put_bytes(s, NULL, pad, err));
    }
    DSQ_TRY(dsq_wqueue_drain(s->q, err));
    DSQ_CHECK(s->cur_put == want && dsq_outfile_written(s->cur) == want, DSQ_INVALID_ARG, err,
              "%s: %" PRIu64 " bytes written, the plan has %" PRIu64, name, s->cur_put, want);
cleanup:
    if (st != DSQ_OK) {
        dsq_err ignore = {0};
        dsq_wqueue_drain(s->q, &ignore); /* the writer thread may hold buffers of this file */
        dsq_outfile_abort(s->cur);
        s->cur = NULL;
    }
    return st;
}

static dsq_status finish_file(dsq_stream *s, const dsq_sink *sink, size_t f, held_file *h,
                              dsq_err *err) {
    dsq_status st = dsq_outfile_commit(h->f, err);
    h->f = NULL;
    if (st == DSQ_OK) {
        const uint64_t size = sink->file_size(sink->self, f);
        st = record(s, sink->file_name(sink->self, f), size, h->hash, h->source, err);
        h->source = NULL;
        s->stats.files_written++;
        s->stats.bytes_written += size;
    }
    json_decref(h->source);
    h->source = NULL;
    return st == DSQ_OK ? write_manifest(s, 0, err) : st;
}

dsq_status dsq_stream_run(dsq_stream *s, const dsq_sink *sink, const dsq_stream_driver *d,
                          dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t nf = sink->n_files;
    held_file *held = calloc(nf ? nf : 1, sizeof *held);
    DSQ_CHECK(held != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t f = 0; f < nf; f++) {
        DSQ_CHECK(!cancelled(s), DSQ_CANCELLED, err, "interrupted");
        int keep = 0;
        if (s->o->resume && s->old_manifest != NULL)
            DSQ_TRY(try_resume(s, sink, d, f, &keep, err));
        if (keep) {
            s->stats.files_resumed++;
            progress(s, sink->file_size(sink->self, f));
            say(s, DSQ_LOG_INFO, "%s: complete and intact, skipped (--resume)",
                sink->file_name(sink->self, f));
            continue;
        }
        DSQ_TRY(produce_file(s, sink, d, f, err));
        held[f].f = s->cur;
        held[f].hash = dsq_hash_digest(s->hash);
        s->cur = NULL;
        if (d->source_id != NULL)
            DSQ_TRY(d->source_id(d->user, f, &held[f].source, err));
        if (!sink->commit_together)
            DSQ_TRY(finish_file(s, sink, f, &held[f], err));
    }
    for (size_t f = 0; sink->commit_together && f < nf; f++)
        if (held[f].f != NULL)
            DSQ_TRY(finish_file(s, sink, f, &held[f], err));
cleanup:
    for (size_t f = 0; held != NULL && f < nf; f++) {
        dsq_outfile_abort(held[f].f);
        json_decref(held[f].source);
    }
    free(held);
    return st;
}

/* ---- side files ---- */

dsq_status dsq_stream_write_file(dsq_stream *s, const char *name, const void *buf, size_t n,
                                 dsq_err *err) {
    if (cancelled(s))
        return cancel_error(err);
    const dsq_status st = dsq_write_file(s->o->out_dir, name, buf, n, err);
    return st != DSQ_OK ? st : record(s, name, n, dsq_hash_buf(buf, n), NULL, err);
}

dsq_status dsq_stream_copy_file(dsq_stream *s, const char *src_path, const char *rel,
                                dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *dir = NULL;
    uint64_t hash = 0, size = 0;
    const char *slash = strrchr(rel, '/');
    DSQ_CHECK(!cancelled(s), DSQ_CANCELLED, err, "interrupted");
    if (slash == NULL) {
        DSQ_TRY(dsq_copy_file_hash(src_path, s->o->out_dir, rel, &hash, &size, err));
    } else {
        const size_t n = strlen(s->o->out_dir) + 1 + (size_t)(slash - rel) + 1;
        dir = malloc(n);
        DSQ_CHECK(dir != NULL, DSQ_NOMEM, err, "out of memory");
        snprintf(dir, n, "%s/%.*s", s->o->out_dir, (int)(slash - rel), rel);
        DSQ_TRY(dsq_copy_file_hash(src_path, dir, slash + 1, &hash, &size, err));
    }
    DSQ_TRY(record(s, rel, size, hash, NULL, err));
cleanup:
    free(dir);
    return st;
}

dsq_status dsq_stream_finish(dsq_stream *s, dsq_err *err) {
    if (cancelled(s))
        return cancel_error(err);
    return write_manifest(s, 1, err);
}

const dsq_stream_stats *dsq_stream_get_stats(const dsq_stream *s) {
    return &s->stats;
}

void dsq_stream_free(dsq_stream *s) {
    if (s == NULL)
        return;
    dsq_wqueue_stop(s->q);
    dsq_outfile_abort(s->cur);
    dsq_hash_free(s->hash);
    json_decref(s->manifest);
    json_decref(s->old_manifest);
    free(s);
}

/* ---- dsq check ---- */

dsq_status dsq_stream_check_dir(const char *dir, dsq_check_report_fn report, void *user,
                                size_t *n_files, size_t *n_bad, int *complete, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *p = dsq_path_join(dir, DSQ_MANIFEST_NAME), *text = NULL, *fp = NULL;
    json_t *m = NULL;
    size_t len = 0;
    *n_files = *n_bad = 0;
    *complete = 0;
    DSQ_CHECK(p != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_read_small_file(p, MANIFEST_MAX, &text, &len, err));
    json_error_t jerr;
    m = json_loadb(text, len, 0, &jerr);
    DSQ_CHECK(m != NULL, DSQ_FORMAT, err, "%s: not JSON: %s", p, jerr.text);
    const json_t *v = json_object_get(m, "version"), *files = json_object_get(m, "files");
    DSQ_CHECK(json_is_integer(v) && json_integer_value(v) == DSQ_MANIFEST_VERSION &&
                  json_is_object(files),
              DSQ_FORMAT, err, "%s: not a version %d dsq manifest (no \"files\")", p,
              DSQ_MANIFEST_VERSION);
    *complete = json_is_true(json_object_get(m, "complete"));
    const char *name;
    const json_t *e;
    json_object_foreach((json_t *)files, name, e) {
        const json_t *sz = json_object_get(e, "size"), *xh = json_object_get(e, "xxh3");
        DSQ_CHECK(json_is_integer(sz) && json_is_string(xh), DSQ_FORMAT, err,
                  "%s: entry '%s' has no size or xxh3", p, name);
        /* names come from a file that may have been edited: stay inside dir */
        DSQ_CHECK(name[0] != '/' && strstr(name, "..") == NULL, DSQ_FORMAT, err,
                  "%s: entry '%s' is not a path inside the directory", p, name);
        free(fp);
        fp = dsq_path_join(dir, name);
        DSQ_CHECK(fp != NULL, DSQ_NOMEM, err, "out of memory");
        uint64_t hash = 0, size = 0;
        char h[17], detail[600];
        dsq_err e2 = {0};
        const uint64_t want = (uint64_t)json_integer_value(sz);
        dsq_status fs = dsq_file_hash(fp, &hash, &size, &e2);
        detail[0] = '\0';
        if (fs == DSQ_NOT_FOUND) {
            snprintf(detail, sizeof detail, "missing");
        } else if (fs != DSQ_OK) {
            snprintf(detail, sizeof detail, "%s", e2.text);
        } else if (size != want) {
            fs = DSQ_MISMATCH;
            snprintf(detail, sizeof detail, "%" PRIu64 " bytes, the manifest says %" PRIu64, size,
                     want);
        } else if (strcmp(dsq_stream_hex(hash, h), json_string_value(xh)) != 0) {
            fs = DSQ_MISMATCH;
            snprintf(detail, sizeof detail, "xxh3 %s, the manifest says %s", h,
                     json_string_value(xh));
        }
        (*n_files)++;
        if (fs != DSQ_OK)
            (*n_bad)++;
        if (report != NULL)
            report(user, name, want, fs, detail);
    }
cleanup:
    json_decref(m);
    free(text);
    free(p);
    free(fp);
    return st;
}
