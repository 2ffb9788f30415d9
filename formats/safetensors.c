/* formats/safetensors.c: the safetensors reader. The byte layout and the
 * validation rules are at the top of safetensors.h. */
#include "formats/safetensors.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/file.h"
#include "core/le.h"
#include "core/json_prescan.h"

struct dsq_st {
    dsq_map map;            /* zeroed when parsing a caller's buffer */
    const uint8_t *base;    /* file bytes */
    uint64_t size;
    uint64_t header_len;    /* N */
    char *label;            /* path or caller's label */
    size_t n;               /* tensors */
    dsq_tensor_view *views; /* [n] sorted by data offset */
    uint64_t *begins;       /* [n] offset in the data area */
    size_t *by_name;        /* [n] indices sorted by name */
    size_t n_meta;
    char **meta;            /* [2 * n_meta] key, value */
    char *arena;            /* every name and metadata string */
};

/* A JSON integer that must be a non-negative offset or dimension. */
static int json_u64(const json_t *j, uint64_t *out) {
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(j);
    return 1;
}

typedef struct pending {
    const char *name;
    size_t name_len;
    size_t view; /* index into the unsorted views */
    uint64_t begin, end;
} pending;

static int cmp_pending(const void *a, const void *b) {
    const pending *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* empty tensors share offsets: keep the order stable */
}

/* qsort has no context argument in C11: sort pointers to the views instead. */
static int cmp_view_name(const void *a, const void *b) {
    const dsq_tensor_view *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The header has a fixed shape: an object of objects whose only arrays (shape,
 * data_offsets) are short. Checking that on the raw text first
 * (core/json_prescan.h) bounds what the JSON parser allocates. */
#define HEADER_MAX_DEPTH 3  /* root, tensor entry or __metadata__, shape */
#define HEADER_MAX_ARRAY 64 /* elements; far above DSQ_MAX_DIMS, checked exactly later */

static char *arena_put(char **cursor, const char *s, size_t len) {
    char *dst = *cursor;
    memcpy(dst, s, len);
    dst[len] = '\0';
    *cursor += len + 1;
    return dst;
}

dsq_status dsq_st_parse(dsq_st **out, const uint8_t *p, size_t n, const char *label,
                        dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_st *s = NULL;
    json_t *root = NULL;
    pending *pend = NULL;
    const dsq_tensor_view **name_sort = NULL;
    dsq_tensor_view *sorted = NULL;
    *out = NULL;

    if (label == NULL)
        label = "<memory>";
    s = calloc(1, sizeof *s);
    DSQ_CHECK(s != NULL, DSQ_NOMEM, err, "out of memory");
    s->label = strdup(label);
    DSQ_CHECK(s->label != NULL, DSQ_NOMEM, err, "out of memory");
    s->base = p;
    s->size = n;

    DSQ_CHECK(n >= 8, DSQ_FORMAT, err, "%s: file is %zu bytes, too short for a safetensors header",
              label, n);
    const uint64_t hlen = dsq_le_u64(p);
    DSQ_CHECK(hlen <= DSQ_ST_MAX_HEADER, DSQ_FORMAT, err,
              "%s: header length %" PRIu64 " exceeds the limit of %" PRIu64 " bytes", label, hlen,
              DSQ_ST_MAX_HEADER);
    DSQ_CHECK(hlen <= n - 8, DSQ_FORMAT, err,
              "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)", label,
              hlen, n);
    DSQ_CHECK(hlen >= 2 && p[8] == '{', DSQ_FORMAT, err,
              "%s: header does not start with '{' (not a safetensors file?)", label);
    s->header_len = hlen;
    /* jansson lets a NUL byte end a number; the reference parser (serde_json) does not */
    const uint8_t *nul = memchr(p + 8, '\0', (size_t)hlen);
    DSQ_CHECK(nul == NULL, DSQ_FORMAT, err, "%s: NUL byte in the header at byte %zu", label,
              (size_t)(nul - p));
    {
        const dsq_json_limits lim = {HEADER_MAX_DEPTH, HEADER_MAX_ARRAY, 0};
        dsq_json_excess what;
        const size_t bad = dsq_json_prescan(p + 8, (size_t)hlen, &lim, &what);
        if (bad != hlen) {
            st = dsq_json_prescan_error(err, label, &lim, what, 8 + (uint64_t)bad);
            goto cleanup;
        }
    }

    json_error_t jerr;
    root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    DSQ_CHECK(root != NULL, DSQ_FORMAT, err, "%s: header JSON: %s (at byte %d of the header)",
              label, jerr.text, jerr.position);
    DSQ_CHECK(json_is_object(root), DSQ_FORMAT, err, "%s: header is not a JSON object", label);

    /* First pass: sizes of the arena and the tensor table. */
    size_t arena_bytes = 1;
    const char *key;
    size_t key_len;
    json_t *val;
    json_object_keylen_foreach(root, key, key_len, val) {
        if (key_len == 12 && memcmp(key, "__metadata__", 12) == 0) {
            DSQ_CHECK(json_is_object(val), DSQ_FORMAT, err, "%s: __metadata__ is not an object",
                      label);
            const char *mk;
            size_t mk_len;
            json_t *mv;
            json_object_keylen_foreach(val, mk, mk_len, mv) {
                DSQ_CHECK(json_is_string(mv), DSQ_FORMAT, err,
                          "%s: __metadata__ value of '%s' is not a string", label, mk);
                arena_bytes += mk_len + json_string_length(mv) + 2;
                s->n_meta++;
            }
        } else {
            arena_bytes += key_len + 1;
            s->n++;
        }
    }

    s->arena = malloc(arena_bytes);
    s->views = calloc(s->n ? s->n : 1, sizeof *s->views);
    s->begins = calloc(s->n ? s->n : 1, sizeof *s->begins);
    s->by_name = calloc(s->n ? s->n : 1, sizeof *s->by_name);
    s->meta = calloc(s->n_meta ? 2 * s->n_meta : 1, sizeof *s->meta);
    pend = calloc(s->n ? s->n : 1, sizeof *pend);
    name_sort = calloc(s->n ? s->n : 1, sizeof *name_sort);
    DSQ_CHECK(s->arena && s->views && s->begins && s->by_name && s->meta && pend && name_sort,
              DSQ_NOMEM, err, "%s: out of memory for %zu tensors", label, s->n);

    /* Second pass: every tensor entry's schema. */
    char *cursor = s->arena;
    size_t ti = 0, mi = 0;
    json_object_keylen_foreach(root, key, key_len, val) {
        if (key_len == 12 && memcmp(key, "__metadata__", 12) == 0) {
            const char *mk;
            size_t mk_len;
            json_t *mv;
            json_object_keylen_foreach(val, mk, mk_len, mv) {
                s->meta[2 * mi] = arena_put(&cursor, mk, mk_len);
                s->meta[2 * mi + 1] =
                    arena_put(&cursor, json_string_value(mv), json_string_length(mv));
                mi++;
            }
            continue;
        }
        DSQ_CHECK(json_is_object(val), DSQ_FORMAT, err, "%s: tensor '%s': entry is not an object",
                  label, key);
        const json_t *jd = json_object_get(val, "dtype");
        const json_t *js = json_object_get(val, "shape");
        const json_t *jo = json_object_get(val, "data_offsets");
        DSQ_CHECK(json_is_string(jd), DSQ_FORMAT, err, "%s: tensor '%s': missing or non-string dtype",
                  label, key);
        DSQ_CHECK(json_is_array(js), DSQ_FORMAT, err, "%s: tensor '%s': missing or non-array shape",
                  label, key);
        DSQ_CHECK(json_is_array(jo) && json_array_size(jo) == 2, DSQ_FORMAT, err,
                  "%s: tensor '%s': data_offsets must be an array of two integers", label, key);
        dsq_tensor_view *v = &s->views[ti];
        v->dtype = dsq_dtype_from_safetensors(json_string_value(jd), json_string_length(jd));
        DSQ_CHECK(v->dtype != DSQ_DTYPE_INVALID, DSQ_FORMAT, err,
                  "%s: tensor '%s': unknown dtype '%s'", label, key, json_string_value(jd));
        const size_t nd = json_array_size(js);
        DSQ_CHECK(nd <= DSQ_MAX_DIMS, DSQ_UNSUPPORTED, err,
                  "%s: tensor '%s': %zu dimensions (at most %d supported)", label, key, nd,
                  DSQ_MAX_DIMS);
        v->ndim = (int)nd;
        for (size_t d = 0; d < nd; d++) {
            uint64_t dim;
            DSQ_CHECK(json_u64(json_array_get(js, d), &dim), DSQ_FORMAT, err,
                      "%s: tensor '%s': shape[%zu] is not a non-negative integer", label, key, d);
            v->shape[d] = (int64_t)dim;
        }
        pending *pe = &pend[ti];
        DSQ_CHECK(json_u64(json_array_get(jo, 0), &pe->begin) &&
                      json_u64(json_array_get(jo, 1), &pe->end),
                  DSQ_FORMAT, err, "%s: tensor '%s': data_offsets are not non-negative integers",
                  label, key);
        v->name = arena_put(&cursor, key, key_len);
        pe->name = v->name;
        pe->name_len = key_len;
        pe->view = ti;
        ti++;
    }

    /* Walk in offset order: contiguous from 0, sizes exact (tensor.rs validate). */
    qsort(pend, s->n, sizeof *pend, cmp_pending);
    sorted = calloc(s->n ? s->n : 1, sizeof *sorted);
    DSQ_CHECK(sorted != NULL, DSQ_NOMEM, err, "out of memory");
    const uint64_t data_size = n - 8 - hlen;
    uint64_t expect = 0;
    for (size_t i = 0; i < s->n; i++) {
        const dsq_tensor_view *v = &s->views[pend[i].view];
        const pending *pe = &pend[i];
        uint64_t count, nbytes;
        int ok;
        sorted[i] = *v;
        if (pe->begin != expect || pe->end < pe->begin) {
            st = dsq_err_set(err, DSQ_FORMAT,
                             "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                             ") %s (expected it to begin at %" PRIu64 ")",
                             label, pe->name, pe->begin, pe->end,
                             pe->end < pe->begin        ? "end before begin"
                             : pe->begin < expect ? "overlap the previous tensor"
                                                  : "leave a hole after the previous tensor",
                             expect);
            goto cleanup;
        }
        if (!dsq_nelements(v->shape, v->ndim, &count)) {
            st = dsq_err_set(err, DSQ_FORMAT, "%s: tensor '%s': shape element count overflows",
                             label, pe->name);
            goto cleanup;
        }
        nbytes = dsq_dtype_nbytes(v->dtype, count, &ok);
        if (!ok) {
            st = dsq_err_set(err, DSQ_FORMAT,
                             "%s: tensor '%s': %" PRIu64
                             " elements of %s are not a whole number of bytes or overflow",
                             label, pe->name, count, dsq_dtype_name(v->dtype));
            goto cleanup;
        }
        if (pe->end - pe->begin != nbytes) {
            st = dsq_err_set(err, DSQ_FORMAT,
                             "%s: tensor '%s': data_offsets span %" PRIu64
                             " bytes but shape and dtype need %" PRIu64,
                             label, pe->name, pe->end - pe->begin, nbytes);
            goto cleanup;
        }
        if (pe->end > data_size) {
            st = dsq_err_set(err, DSQ_FORMAT,
                             "%s: tensor '%s': data_offsets end %" PRIu64
                             " is past the end of the data (%" PRIu64 " bytes; file truncated?)",
                             label, pe->name, pe->end, data_size);
            goto cleanup;
        }
        sorted[i].nbytes = nbytes;
        sorted[i].data = nbytes ? p + 8 + hlen + pe->begin : NULL;
        s->begins[i] = pe->begin;
        expect = pe->end;
    }
    memcpy(s->views, sorted, s->n * sizeof *sorted);
    DSQ_CHECK(expect == data_size, DSQ_FORMAT, err,
              "%s: %" PRIu64 " bytes after the last tensor (the tensors cover %" PRIu64
              " of %" PRIu64 " data bytes)",
              label, data_size - expect, expect, data_size);

    for (size_t i = 0; i < s->n; i++)
        name_sort[i] = &s->views[i];
    qsort(name_sort, s->n, sizeof *name_sort, cmp_view_name);
    for (size_t i = 0; i < s->n; i++)
        s->by_name[i] = (size_t)(name_sort[i] - s->views);

    *out = s;
    s = NULL;
cleanup:
    free(sorted);
    free(name_sort);
    free(pend);
    json_decref(root);
    dsq_st_close(s);
    return st;
}

dsq_status dsq_st_open(dsq_st **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_map m = {0};
    *out = NULL;
    DSQ_TRY(dsq_map_open(&m, path, err));
    DSQ_TRY(dsq_st_parse(out, m.data, m.size, path, err));
    (*out)->map = m;
    m.data = NULL;
cleanup:
    dsq_map_close(&m);
    return st;
}

void dsq_st_close(dsq_st *st) {
    if (st == NULL)
        return;
    dsq_map_close(&st->map);
    free(st->label);
    free(st->views);
    free(st->begins);
    free(st->by_name);
    free(st->meta);
    free(st->arena);
    free(st);
}

const char *dsq_st_path(const dsq_st *st) {
    return st->label;
}

uint64_t dsq_st_file_size(const dsq_st *st) {
    return st->size;
}

uint64_t dsq_st_header_len(const dsq_st *st) {
    return st->header_len;
}

size_t dsq_st_count(const dsq_st *st) {
    return st->n;
}

const dsq_tensor_view *dsq_st_tensor(const dsq_st *st, size_t i) {
    return i < st->n ? &st->views[i] : NULL;
}

int64_t dsq_st_find(const dsq_st *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(st->views[st->by_name[mid]].name, name);
        if (c == 0)
            return (int64_t)st->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

uint64_t dsq_st_tensor_offset(const dsq_st *st, size_t i) {
    return 8 + st->header_len + st->begins[i];
}

void dsq_st_release(const dsq_st *st, size_t i) {
    if (st->map.data != NULL && i < st->n)
        dsq_map_release(&st->map, (size_t)dsq_st_tensor_offset(st, i), (size_t)st->views[i].nbytes);
}

void dsq_st_release_range(const dsq_st *st, size_t i, uint64_t off, uint64_t len) {
    if (st->map.data == NULL || i >= st->n || off >= st->views[i].nbytes)
        return;
    if (len > st->views[i].nbytes - off)
        len = st->views[i].nbytes - off;
    dsq_map_release(&st->map, (size_t)(dsq_st_tensor_offset(st, i) + off), (size_t)len);
}

size_t dsq_st_meta_count(const dsq_st *st) {
    return st->n_meta;
}

const char *dsq_st_meta_key(const dsq_st *st, size_t i) {
    return i < st->n_meta ? st->meta[2 * i] : NULL;
}

const char *dsq_st_meta_value(const dsq_st *st, size_t i) {
    return i < st->n_meta ? st->meta[2 * i + 1] : NULL;
}

const char *dsq_st_meta_get(const dsq_st *st, const char *key) {
    for (size_t i = 0; i < st->n_meta; i++) {
        if (strcmp(st->meta[2 * i], key) == 0)
            return st->meta[2 * i + 1];
    }
    return NULL;
}
