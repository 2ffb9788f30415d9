/* formats/safetensors_write.c: the safetensors writer (layout in safetensors.h).
 *
 * The header is known before any data is written (shapes fix every size), so
 * the writer emits it first and then streams tensor bytes in layout order;
 * nothing larger than the header is ever held in memory. */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/file.h"
#include "formats/safetensors.h"

typedef struct entry {
    char *name;
    dsq_dtype dtype;
    int ndim;
    int64_t shape[DSQ_MAX_DIMS];
    uint64_t nbytes;
    uint64_t begin;
    size_t add_index;
} entry;

struct dsq_st_writer {
    entry *ents;
    size_t n, cap;
    char **meta; /* key, value pairs */
    size_t n_meta;
    size_t *order; /* layout position -> add index */
    int laid_out;
    char *header; /* padded JSON, not NUL-terminated beyond header_len */
    size_t header_len;
    uint64_t data_size;
    uint64_t written;
    dsq_outfile *out;
    uint8_t len_le[8];
    int hash_external;
};

dsq_status dsq_st_writer_init(dsq_st_writer **out, dsq_err *err) {
    *out = calloc(1, sizeof **out);
    return *out ? DSQ_OK : dsq_err_set(err, DSQ_NOMEM, "out of memory");
}

void dsq_st_writer_free(dsq_st_writer *w) {
    if (w == NULL)
        return;
    dsq_outfile_abort(w->out);
    for (size_t i = 0; i < w->n; i++)
        free(w->ents[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++)
        free(w->meta[i]);
    free(w->ents);
    free(w->meta);
    free(w->order);
    free(w->header);
    free(w);
}

dsq_status dsq_st_writer_add(dsq_st_writer *w, const char *name, dsq_dtype dtype, int ndim,
                             const int64_t *shape, dsq_err *err) {
    uint64_t count;
    int ok;
    if (w->laid_out)
        return dsq_err_set(err, DSQ_INVALID_ARG, "safetensors writer: add after layout");
    if (ndim < 0 || ndim > DSQ_MAX_DIMS || !dsq_nelements(shape, ndim, &count))
        return dsq_err_set(err, DSQ_RANGE, "tensor '%s': bad shape", name);
    const dsq_dtype_info *di = dsq_dtype_get(dtype);
    if (di == NULL || !di->in_safetensors)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "tensor '%s': dtype %s has no safetensors form",
                           name, dsq_dtype_name(dtype));
    const uint64_t nbytes = dsq_dtype_nbytes(dtype, count, &ok);
    if (!ok)
        return dsq_err_set(err, DSQ_RANGE, "tensor '%s': size is not a whole number of bytes",
                           name);
    if (w->n == w->cap) {
        const size_t cap = w->cap ? 2 * w->cap : 64;
        entry *e = realloc(w->ents, cap * sizeof *e);
        if (e == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
        w->ents = e;
        w->cap = cap;
    }
    entry *e = &w->ents[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (e->name == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    e->nbytes = nbytes;
    e->add_index = w->n;
    w->n++;
    return DSQ_OK;
}

dsq_status dsq_st_writer_set_meta(dsq_st_writer *w, const char *key, const char *value,
                                  dsq_err *err) {
    for (size_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[2 * i], key) == 0) {
            char *v = strdup(value);
            if (v == NULL)
                return dsq_err_set(err, DSQ_NOMEM, "out of memory");
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return DSQ_OK;
        }
    }
    char **m = realloc(w->meta, 2 * (w->n_meta + 1) * sizeof *m);
    if (m == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    w->meta = m;
    m[2 * w->n_meta] = strdup(key);
    m[2 * w->n_meta + 1] = strdup(value);
    w->n_meta++;
    if (m[2 * w->n_meta - 2] == NULL || m[2 * w->n_meta - 1] == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    return DSQ_OK;
}

/* The reference serializer's order: larger alignment first, then by name. */
static int cmp_layout(const void *a, const void *b) {
    const entry *const *x = a, *const *y = b;
    const int rx = dsq_dtype_st_rank((*x)->dtype), ry = dsq_dtype_st_rank((*y)->dtype);
    if (rx != ry)
        return rx > ry ? -1 : 1;
    return strcmp((*x)->name, (*y)->name);
}

dsq_status dsq_st_writer_layout(dsq_st_writer *w, dsq_err *err) {
    dsq_status st = DSQ_OK;
    entry **sorted = NULL;
    json_t *root = NULL;
    char *json = NULL;
    if (w->laid_out)
        return DSQ_OK;
    sorted = malloc((w->n ? w->n : 1) * sizeof *sorted);
    w->order = malloc((w->n ? w->n : 1) * sizeof *w->order);
    root = json_object();
    DSQ_CHECK(sorted && w->order && root, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < w->n; i++)
        sorted[i] = &w->ents[i];
    qsort(sorted, w->n, sizeof *sorted, cmp_layout);
    if (w->n_meta > 0) {
        json_t *meta = json_object();
        DSQ_CHECK(meta && json_object_set_new(root, "__metadata__", meta) == 0, DSQ_NOMEM, err,
                  "out of memory");
        for (size_t i = 0; i < w->n_meta; i++)
            DSQ_CHECK(json_object_set_new(meta, w->meta[2 * i], json_string(w->meta[2 * i + 1])) ==
                          0,
                      DSQ_INVALID_ARG, err, "metadata '%s': not valid UTF-8", w->meta[2 * i]);
    }
    uint64_t off = 0;
    for (size_t k = 0; k < w->n; k++) {
        entry *e = sorted[k];
        DSQ_CHECK(k == 0 || strcmp(sorted[k - 1]->name, e->name) != 0 ||
                      sorted[k - 1]->dtype != e->dtype,
                  DSQ_INVALID_ARG, err, "tensor '%s' added twice", e->name);
        DSQ_CHECK(json_object_get(root, e->name) == NULL && strcmp(e->name, "__metadata__") != 0,
                  DSQ_INVALID_ARG, err, "tensor '%s' added twice", e->name);
        json_t *info = json_object(), *shape = json_array(), *offs = json_array();
        DSQ_CHECK(info && shape && offs, DSQ_NOMEM, err, "out of memory");
        json_object_set_new(info, "dtype", json_string(dsq_dtype_name(e->dtype)));
        for (int d = 0; d < e->ndim; d++)
            json_array_append_new(shape, json_integer(e->shape[d]));
        json_object_set_new(info, "shape", shape);
        e->begin = off;
        DSQ_CHECK(dsq_add_u64(off, e->nbytes, &off) && off <= (uint64_t)INT64_MAX, DSQ_RANGE, err,
                  "safetensors writer: total size overflows");
        json_array_append_new(offs, json_integer((json_int_t)e->begin));
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_object_set_new(info, "data_offsets", offs);
        DSQ_CHECK(json_object_set_new(root, e->name, info) == 0, DSQ_INVALID_ARG, err,
                  "tensor '%s': name is not valid UTF-8", e->name);
        w->order[k] = e->add_index;
    }
    json = json_dumps(root, JSON_COMPACT);
    DSQ_CHECK(json != NULL, DSQ_NOMEM, err, "out of memory");
    const size_t len = strlen(json);
    const size_t padded = (len + 7) / 8 * 8;
    DSQ_CHECK(padded <= DSQ_ST_MAX_HEADER, DSQ_RANGE, err,
              "safetensors header would be %zu bytes, over the 100 MB limit", padded);
    w->header = malloc(padded);
    DSQ_CHECK(w->header != NULL, DSQ_NOMEM, err, "out of memory");
    memcpy(w->header, json, len);
    memset(w->header + len, ' ', padded - len);
    w->header_len = padded;
    w->data_size = off;
    w->laid_out = 1;
cleanup:
    free(json);
    json_decref(root);
    free(sorted);
    return st;
}

size_t dsq_st_writer_count(const dsq_st_writer *w) {
    return w->n;
}

size_t dsq_st_writer_order(const dsq_st_writer *w, size_t k) {
    return w->order[k];
}

uint64_t dsq_st_writer_tensor_bytes(const dsq_st_writer *w, size_t add_index) {
    return w->ents[add_index].nbytes;
}

uint64_t dsq_st_writer_file_size(const dsq_st_writer *w) {
    return 8 + w->header_len + w->data_size;
}

void dsq_st_writer_head(const dsq_st_writer *w, uint8_t prefix[8], const char **header,
                        size_t *header_len) {
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)w->header_len >> (8 * i));
    *header = w->header;
    *header_len = w->header_len;
}

dsq_status dsq_st_writer_open(dsq_st_writer *w, const char *dir, const char *name, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint8_t *len_le = w->len_le;
    DSQ_TRY(dsq_st_writer_layout(w, err));
    DSQ_CHECK(w->out == NULL, DSQ_INVALID_ARG, err, "safetensors writer: opened twice");
    DSQ_TRY(dsq_outfile_open(&w->out, dir, name, err));
    for (int i = 0; i < 8; i++)
        len_le[i] = (uint8_t)((uint64_t)w->header_len >> (8 * i));
    DSQ_TRY(dsq_outfile_write(w->out, len_le, 8, err));
    DSQ_TRY(dsq_outfile_write(w->out, w->header, w->header_len, err));
cleanup:
    return st;
}

void dsq_st_writer_hash_externally(dsq_st_writer *w, const uint8_t **prefix, size_t *prefix_len,
                                   const char **header, size_t *header_len) {
    *prefix = w->len_le;
    *prefix_len = 8;
    *header = w->header;
    *header_len = w->header_len;
    w->hash_external = 1;
    dsq_outfile_no_hash(w->out);
}

dsq_status dsq_st_writer_write(dsq_st_writer *w, const void *data, size_t n, dsq_err *err) {
    if (w->out == NULL)
        return dsq_err_set(err, DSQ_INVALID_ARG, "safetensors writer: write before open");
    if (n > w->data_size - w->written)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "safetensors writer: %zu bytes more than the %" PRIu64 " announced", n,
                           w->data_size);
    w->written += n;
    return dsq_outfile_write(w->out, data, n, err);
}

dsq_status dsq_st_writer_finish(dsq_st_writer *w, uint64_t *xxh64, dsq_err *err) {
    if (w->out == NULL)
        return dsq_err_set(err, DSQ_INVALID_ARG, "safetensors writer: finish before open");
    if (w->written != w->data_size)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "safetensors writer: %" PRIu64 " of %" PRIu64 " data bytes written",
                           w->written, w->data_size);
    if (xxh64 != NULL)
        *xxh64 = w->hash_external ? 0 : dsq_outfile_xxh64(w->out);
    dsq_outfile *f = w->out;
    w->out = NULL;
    return dsq_outfile_commit(f, err);
}
