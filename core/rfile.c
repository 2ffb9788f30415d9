/* core/rfile.c: see rfile.h. */
#include "core/rfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/hash.h"

dsq_status dsq_rfile_open(dsq_rfile *f, const char *path, dsq_err *err) {
    struct stat sb;
    f->fd = -1;
    f->size = 0;
    f->path = path;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dsq_err_set(err, errno == ENOENT ? DSQ_NOT_FOUND : DSQ_IO, "%s: %s", path,
                           strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        const int e = errno;
        close(fd);
        return S_ISREG(sb.st_mode) ? dsq_err_set(err, DSQ_IO, "%s: %s", path, strerror(e))
                                   : dsq_err_set(err, DSQ_IO, "%s: not a regular file", path);
    }
    f->fd = fd;
    f->size = (uint64_t)sb.st_size;
    return DSQ_OK;
}

void dsq_rfile_close(dsq_rfile *f) {
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

dsq_status dsq_rfile_read(const dsq_rfile *f, void *buf, size_t n, uint64_t off, dsq_err *err) {
    uint8_t *p = buf;
    if (off > f->size || n > f->size - off)
        return dsq_err_set(err, DSQ_FORMAT,
                           "%s: truncated: %zu bytes at offset %" PRIu64 " past its %" PRIu64
                           " bytes",
                           f->path, n, off, f->size);
    while (n > 0) {
        const ssize_t r = pread(f->fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return dsq_err_set(err, DSQ_IO, "%s: read failed: %s", f->path, strerror(errno));
        if (r == 0) /* the file shrank under us */
            return dsq_err_set(err, DSQ_FORMAT, "%s: truncated at offset %" PRIu64, f->path, off);
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return DSQ_OK;
}

void dsq_rfile_willneed(const dsq_rfile *f, uint64_t off, uint64_t len) {
    if (off < f->size)
        posix_fadvise(f->fd, (off_t)off, (off_t)(len < f->size - off ? len : f->size - off),
                      POSIX_FADV_WILLNEED);
}

dsq_status dsq_parts_init(dsq_parts_hash *p, size_t n, const uint64_t *ends, dsq_err *err) {
    memset(p, 0, sizeof *p);
    p->ends = malloc((n ? n : 1) * sizeof *p->ends);
    p->hashes = calloc(n ? n : 1, sizeof *p->hashes);
    p->have = calloc(n ? n : 1, 1);
    if (p->ends == NULL || p->hashes == NULL || p->have == NULL) {
        dsq_parts_free(p);
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && ends[i] <= ends[i - 1]) {
            dsq_parts_free(p);
            return dsq_err_set(err, DSQ_INVALID_ARG, "parts hash: part %zu is empty", i);
        }
        p->ends[i] = ends[i];
    }
    p->n = n;
    return DSQ_OK;
}

void dsq_parts_free(dsq_parts_hash *p) {
    free(p->ends);
    free(p->hashes);
    free(p->have);
    memset(p, 0, sizeof *p);
}

size_t dsq_parts_find(const dsq_parts_hash *p, uint64_t off) {
    size_t lo = 0, hi = p->n; /* the first part whose end is beyond off */
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (p->ends[mid] <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    const uint64_t begin = lo == 0 ? 0 : (lo < p->n ? p->ends[lo - 1] : UINT64_MAX);
    return lo < p->n && begin == off ? lo : p->n;
}

void dsq_parts_set(dsq_parts_hash *p, size_t part, uint64_t hash) {
    if (part < p->n) {
        p->hashes[part] = hash;
        p->have[part] = 1;
    }
}

dsq_status dsq_parts_digest(const dsq_parts_hash *p, uint64_t *out, dsq_err *err) {
    dsq_hash *h = dsq_hash_new();
    if (h == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        if (!p->have[i]) {
            dsq_hash_free(h);
            return dsq_err_set(err, DSQ_INVALID_ARG, "parts hash: part %zu was never read", i);
        }
        uint8_t le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (uint8_t)(p->hashes[i] >> (8 * b));
        dsq_hash_update(h, le, 8);
    }
    *out = dsq_hash_digest(h);
    dsq_hash_free(h);
    return DSQ_OK;
}

dsq_status dsq_parts_hash_file(dsq_parts_hash *p, const char *path, void *buf, size_t cap,
                               dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_rfile f = {-1, 0, path};
    dsq_hash *h = dsq_hash_new();
    DSQ_CHECK(h != NULL && cap > 0, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_rfile_open(&f, path, err));
    const uint64_t total = p->n ? p->ends[p->n - 1] : 0;
    DSQ_CHECK(f.size == total, DSQ_MISMATCH, err, "%s: %" PRIu64 " bytes, expected %" PRIu64,
              path, f.size, total);
    posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t off = 0;
    for (size_t i = 0; i < p->n; i++) {
        dsq_hash_reset(h);
        while (off < p->ends[i]) {
            const size_t n = p->ends[i] - off < cap ? (size_t)(p->ends[i] - off) : cap;
            DSQ_TRY(dsq_rfile_read(&f, buf, n, off, err));
            dsq_hash_update(h, buf, n);
            off += n;
        }
        dsq_parts_set(p, i, dsq_hash_digest(h));
    }
cleanup:
    dsq_rfile_close(&f);
    dsq_hash_free(h);
    return st;
}

struct dsq_bufpool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n, size, n_free;
    void **all, **free_list;
};

dsq_status dsq_bufpool_create(dsq_bufpool **out, size_t n_bufs, size_t buf_size, dsq_err *err) {
    dsq_bufpool *p = calloc(1, sizeof *p);
    *out = NULL;
    if (p == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_bufs == 0)
        goto nomem;
    p->all = calloc(n_bufs, sizeof *p->all);
    p->free_list = calloc(n_bufs, sizeof *p->free_list);
    if (p->all == NULL || p->free_list == NULL)
        goto nomem;
    p->size = buf_size;
    for (; p->n < n_bufs; p->n++) {
        /* page-aligned: a read into it never straddles a page needlessly */
        if (posix_memalign(&p->all[p->n], 4096, buf_size ? buf_size : 1) != 0)
            goto nomem;
        p->free_list[p->n_free++] = p->all[p->n];
    }
    *out = p;
    return DSQ_OK;
nomem:
    dsq_bufpool_free(p);
    return dsq_err_set(err, DSQ_NOMEM, "out of memory for %zu read buffers of %zu bytes", n_bufs,
                       buf_size);
}

void *dsq_bufpool_get(dsq_bufpool *p) {
    pthread_mutex_lock(&p->mu);
    while (p->n_free == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    void *b = p->free_list[--p->n_free];
    pthread_mutex_unlock(&p->mu);
    return b;
}

void dsq_bufpool_put(dsq_bufpool *p, void *buf) {
    pthread_mutex_lock(&p->mu);
    p->free_list[p->n_free++] = buf;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

size_t dsq_bufpool_buf_size(const dsq_bufpool *p) {
    return p->size;
}

void dsq_bufpool_free(dsq_bufpool *p) {
    if (p == NULL)
        return;
    for (size_t i = 0; p->all != NULL && i < p->n; i++)
        free(p->all[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->all);
    free(p->free_list);
    free(p);
}
