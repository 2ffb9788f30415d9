/* verify/llama_logits.c: llama.cpp's --kl-divergence-base file (the layout
 * and its source are in llama_logits.h). */
#include "verify/llama_logits.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checked.h"
#include "core/file.h"

#define HEADER 20 /* magic, n_ctx, n_vocab, n_chunk */

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static float get_f32(const uint8_t *p) {
    const uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static void put_f32(uint8_t *p, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}

float dsq_llama_rec_scale(const uint8_t *rec) {
    return get_f32(rec);
}
float dsq_llama_rec_min(const uint8_t *rec) {
    return get_f32(rec + 4);
}

int dsq_llama_logits_sniff(const void *head, size_t n) {
    return n >= 8 && memcmp(head, DSQ_LLAMA_LOGITS_MAGIC, 8) == 0;
}

static int64_t nv_of(int64_t vocab) {
    return 2 * ((vocab + 1) / 2) + 4;
}

void dsq_llama_logits_close(dsq_llama_logits *f) {
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->tokens);
    free(f->path);
    free(f);
}

/* pread the whole of [off, off + n), or say why not. */
static dsq_status read_at(int fd, const char *path, void *buf, size_t n, uint64_t off,
                          dsq_err *err) {
    uint8_t *b = buf;
    while (n > 0) {
        const ssize_t got = pread(fd, b, n, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return dsq_err_set(err, DSQ_IO, "%s: %s", path, strerror(errno));
        if (got == 0)
            return dsq_err_set(err, DSQ_FORMAT, "%s: truncated at byte %llu", path,
                               (unsigned long long)off);
        b += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return DSQ_OK;
}

size_t dsq_llama_logits_chunk_bytes(const dsq_llama_logits *f) {
    return (size_t)f->n_score * (size_t)f->nv * 2;
}

dsq_status dsq_llama_logits_open(dsq_llama_logits **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint8_t h[HEADER];
    struct stat sb;
    *out = NULL;
    dsq_llama_logits *f = calloc(1, sizeof *f);
    DSQ_CHECK(f != NULL, DSQ_NOMEM, err, "out of memory");
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    DSQ_CHECK(f->fd >= 0, errno == ENOENT ? DSQ_NOT_FOUND : DSQ_IO, err, "%s: %s", path,
              errno == ENOENT ? "no such file or directory" : strerror(errno));
    f->path = strdup(path);
    DSQ_CHECK(f->path != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_CHECK(fstat(f->fd, &sb) == 0, DSQ_IO, err, "%s: %s", path, strerror(errno));
    const uint64_t size = (uint64_t)sb.st_size;
    DSQ_CHECK(size >= HEADER, DSQ_FORMAT, err, "%s: %llu bytes, too short for a llama.cpp "
              "logits file", path, (unsigned long long)size);
    DSQ_TRY(read_at(f->fd, path, h, HEADER, 0, err));
    DSQ_CHECK(dsq_llama_logits_sniff(h, HEADER), DSQ_FORMAT, err,
              "%s: not a llama.cpp logits file (no %s header)", path, DSQ_LLAMA_LOGITS_MAGIC);
    const int32_t ctx = (int32_t)get_u32(h + 8), vocab = (int32_t)get_u32(h + 12),
                  nch = (int32_t)get_u32(h + 16);
    /* the same limits as dsq's own windows: ctx 4 … 2^20, a vocabulary of at
     * most 2^24 */
    DSQ_CHECK(ctx >= 4 && ctx <= (1 << 20) && vocab >= 1 && vocab <= (1 << 24) && nch >= 1,
              DSQ_FORMAT, err, "%s: bad header (n_ctx %ld, n_vocab %ld, n_chunk %ld)", path,
              (long)ctx, (long)vocab, (long)nch);
    f->n_ctx = ctx;
    f->vocab = vocab;
    f->n_chunks = nch;
    f->n_score = ctx - 1 - ctx / 2;
    f->nv = nv_of(vocab);
    uint64_t ntok, tok_bytes, recs, want;
    DSQ_CHECK(dsq_mul_u64((uint64_t)nch, (uint64_t)ctx, &ntok) &&
                  dsq_mul_u64(ntok, 4, &tok_bytes) &&
                  dsq_mul_u64((uint64_t)nch * (uint64_t)f->n_score, (uint64_t)f->nv * 2, &recs) &&
                  dsq_add_u64(HEADER + tok_bytes, recs, &want) && want == size,
              DSQ_FORMAT, err,
              "%s: %llu bytes, but its header says %ld chunks of %ld tokens and a vocabulary of "
              "%ld: truncated or not a llama.cpp logits file",
              path, (unsigned long long)size, (long)nch, (long)ctx, (long)vocab);
    f->tokens = malloc((size_t)tok_bytes);
    DSQ_CHECK(f->tokens != NULL, DSQ_NOMEM, err, "out of memory for %llu tokens",
              (unsigned long long)ntok);
    DSQ_TRY(read_at(f->fd, path, f->tokens, (size_t)tok_bytes, HEADER, err));
    for (uint64_t i = 0; i < ntok; i++) {
        const int32_t t = (int32_t)get_u32((const uint8_t *)&f->tokens[i]);
        DSQ_CHECK(t >= 0 && t < vocab, DSQ_FORMAT, err,
                  "%s: token %llu (id %ld) is outside the vocabulary of %ld", path,
                  (unsigned long long)i + 1, (long)t, (long)vocab);
        f->tokens[i] = t;
    }
    *out = f;
    f = NULL;
cleanup:
    dsq_llama_logits_close(f);
    return st;
}

dsq_status dsq_llama_logits_read(const dsq_llama_logits *f, int64_t c, uint8_t *buf,
                                 dsq_err *err) {
    const size_t n = dsq_llama_logits_chunk_bytes(f);
    const uint64_t off = HEADER + 4 * (uint64_t)f->n_chunks * (uint64_t)f->n_ctx + (uint64_t)c * n;
    const dsq_status st = read_at(f->fd, f->path, buf, n, off, err);
    if (st != DSQ_OK)
        return st;
    for (int64_t p = 0; p < f->n_score; p++) {
        const uint8_t *rec = buf + (size_t)p * (size_t)f->nv * 2;
        const float scale = dsq_llama_rec_scale(rec), mn = dsq_llama_rec_min(rec);
        if (!(isfinite(scale) && isfinite(mn) && scale >= 0 && mn <= 0))
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: chunk %lld, position %lld: bad scale %g or minimum %g", f->path,
                               (long long)c + 1, (long long)p, (double)scale, (double)mn);
    }
    return DSQ_OK;
}

void dsq_llama_encode(const float *l, int64_t V, uint8_t *rec) {
    float mx = l[0], mn = l[0];
    for (int64_t i = 1; i < V; i++) {
        mx = l[i] > mx ? l[i] : mx;
        mn = l[i] < mn ? l[i] : mn;
    }
    mn = mn > mx - 16 ? mn : mx - 16;
    double s = 0.0;
    for (int64_t i = 0; i < V; i++)
        s += expf(l[i] - mx);
    const float lse = (float)log(s);
    const float scale = (mx - mn) / 65535.f;
    put_f32(rec, scale);
    put_f32(rec + 4, mn - mx - lse);
    uint8_t *q = rec + 8;
    const float inv = scale != 0 ? 1 / scale : 0;
    for (int64_t i = 0; i < V; i++) {
        const unsigned v = scale != 0 && l[i] > mn ? (unsigned)rintf(inv * (l[i] - mn)) : 0;
        q[2 * i] = (uint8_t)v;
        q[2 * i + 1] = (uint8_t)(v >> 8);
    }
    if (V % 2 != 0) /* the record's padding */
        q[2 * V] = q[2 * V + 1] = 0;
}

/* ---- writing ---- */

struct dsq_llama_writer {
    dsq_outfile *out;
    int64_t n_ctx, vocab, n_chunks, n_score, nv;
    int64_t next;     /* the first chunk not yet written */
    uint8_t **early;  /* [n_chunks]: encoded chunks waiting for the ones before */
    pthread_mutex_t lock;
    dsq_status st;    /* the first write failure, sticky */
    dsq_err err;
};

dsq_status dsq__outfile_at(dsq_outfile **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    DSQ_CHECK(dir != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_CHECK(dsq_name_is_safe(name, strlen(name)), DSQ_INVALID_ARG, err,
              "%s: not a usable file name", path);
    DSQ_TRY(dsq_outfile_open(out, dir, name, err));
cleanup:
    free(dir);
    return st;
}

void dsq_llama_writer_abort(dsq_llama_writer *w) {
    if (w == NULL)
        return;
    dsq_outfile_abort(w->out);
    for (int64_t c = 0; w->early != NULL && c < w->n_chunks; c++)
        free(w->early[c]);
    free(w->early);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

dsq_status dsq_llama_writer_open(dsq_llama_writer **out, const char *path, int64_t n_ctx,
                                 int64_t vocab, int64_t n_chunks, const int32_t *tokens,
                                 dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint8_t *hb = NULL;
    *out = NULL;
    dsq_llama_writer *w = NULL;
    DSQ_CHECK(n_ctx >= 4 && n_ctx <= INT32_MAX && vocab >= 1 && vocab <= INT32_MAX &&
                  n_chunks >= 1 && n_chunks <= INT32_MAX / n_ctx,
              DSQ_INVALID_ARG, err, "%s: %lld windows of %lld do not fit a llama.cpp logits file",
              path, (long long)n_chunks, (long long)n_ctx);
    w = calloc(1, sizeof *w);
    DSQ_CHECK(w != NULL, DSQ_NOMEM, err, "out of memory");
    pthread_mutex_init(&w->lock, NULL);
    w->n_ctx = n_ctx;
    w->vocab = vocab;
    w->n_chunks = n_chunks;
    w->n_score = n_ctx - 1 - n_ctx / 2;
    w->nv = nv_of(vocab);
    w->early = calloc((size_t)n_chunks, sizeof *w->early);
    DSQ_CHECK(w->early != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq__outfile_at(&w->out, path, err));
    const size_t ntok = (size_t)(n_chunks * n_ctx), hn = HEADER + 4 * ntok;
    hb = malloc(hn);
    DSQ_CHECK(hb != NULL, DSQ_NOMEM, err, "out of memory");
    memcpy(hb, DSQ_LLAMA_LOGITS_MAGIC, 8);
    put_u32(hb + 8, (uint32_t)n_ctx);
    put_u32(hb + 12, (uint32_t)vocab);
    put_u32(hb + 16, (uint32_t)n_chunks);
    for (size_t i = 0; i < ntok; i++)
        put_u32(hb + HEADER + 4 * i, (uint32_t)tokens[i]);
    DSQ_TRY(dsq_outfile_write(w->out, hb, hn, err));
    *out = w;
    w = NULL;
cleanup:
    free(hb);
    dsq_llama_writer_abort(w);
    return st;
}

dsq_status dsq_llama_writer_put(dsq_llama_writer *w, int64_t c, const float *logits,
                                dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t rec = (size_t)w->nv * 2, n = (size_t)w->n_score * rec;
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory for a window's log-probabilities");
    for (int64_t p = 0; p < w->n_score; p++)
        dsq_llama_encode(logits + (size_t)p * (size_t)w->vocab, w->vocab, buf + (size_t)p * rec);
    pthread_mutex_lock(&w->lock);
    w->early[c] = buf;
    /* write every chunk that is now next in line */
    while (w->st == DSQ_OK && w->next < w->n_chunks && w->early[w->next] != NULL) {
        w->st = dsq_outfile_write(w->out, w->early[w->next], n, &w->err);
        free(w->early[w->next]);
        w->early[w->next++] = NULL;
    }
    if (w->st != DSQ_OK)
        st = dsq_err_set(err, w->st, "%s", w->err.text);
    pthread_mutex_unlock(&w->lock);
    return st;
}

dsq_status dsq_llama_writer_commit(dsq_llama_writer *w, dsq_err *err) {
    dsq_status st = w->st;
    if (st != DSQ_OK)
        dsq_err_set(err, st, "%s", w->err.text);
    else if (w->next != w->n_chunks)
        st = dsq_err_set(err, DSQ_INVALID_ARG, "llama.cpp logits file: window %lld never came",
                         (long long)w->next + 1);
    if (st == DSQ_OK) {
        st = dsq_outfile_commit(w->out, err);
        w->out = NULL; /* freed by commit, on failure too */
    }
    dsq_llama_writer_abort(w);
    return st;
}
