/* gguf_export/imatrix.c: reading llama.cpp importance matrices (see imatrix.h). */
#include "gguf_export/imatrix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/le.h"
#include "formats/gguf.h"

typedef struct im_entry {
    char   *name;
    float  *v;
    int64_t n;
} im_entry;

struct dsq_imatrix {
    im_entry *e;
    size_t    n, cap;
    int       gguf;
    char     *dataset;
    int64_t   chunks;
};

void dsq_imatrix_free(dsq_imatrix *m) {
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].name);
        free(m->e[i].v);
    }
    free(m->e);
    free(m->dataset);
    free(m);
}

size_t dsq_imatrix_count(const dsq_imatrix *m) {
    return m ? m->n : 0;
}

const char *dsq_imatrix_name(const dsq_imatrix *m, size_t i) {
    return m && i < m->n ? m->e[i].name : NULL;
}

static im_entry *lookup(const dsq_imatrix *m, const char *name) {
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->e[i].name, name) == 0)
            return &m->e[i];
    return NULL;
}

const float *dsq_imatrix_find(const dsq_imatrix *m, const char *name, int64_t *n) {
    const im_entry *e = m ? lookup(m, name) : NULL;
    if (e == NULL)
        return NULL;
    *n = e->n;
    return e->v;
}

int dsq_imatrix_is_gguf(const dsq_imatrix *m) {
    return m ? m->gguf : 0;
}

const char *dsq_imatrix_dataset(const dsq_imatrix *m) {
    return m && m->dataset ? m->dataset : "";
}

int64_t dsq_imatrix_chunks(const dsq_imatrix *m) {
    return m ? m->chunks : 0;
}

/* A new entry called name[0..len) with n values (owned, uninitialised), or the existing
 * one of that name with its values replaced (the last entry of a name wins). */
static dsq_status add_entry(dsq_imatrix *m, const char *name, size_t len, int64_t n, float **out,
                            dsq_err *err) {
    char *nm = malloc(len + 1);
    float *v = malloc((size_t)n * sizeof *v);
    if (nm == NULL || v == NULL) {
        free(nm);
        free(v);
        return dsq_err_set(err, DSQ_NOMEM, "out of memory (imatrix entry of %lld values)",
                           (long long)n);
    }
    memcpy(nm, name, len);
    nm[len] = '\0';
    im_entry *e = lookup(m, nm);
    if (e != NULL) {
        free(nm);
        free(e->v);
    } else {
        if (m->n == m->cap) {
            const size_t cap = m->cap ? 2 * m->cap : 64;
            im_entry *ne = realloc(m->e, cap * sizeof *ne);
            if (ne == NULL) {
                free(nm);
                free(v);
                return dsq_err_set(err, DSQ_NOMEM, "out of memory");
            }
            m->e = ne;
            m->cap = cap;
        }
        e = &m->e[m->n++];
        e->name = nm;
    }
    e->v = v;
    e->n = n;
    *out = v;
    return DSQ_OK;
}

static dsq_status check_finite(const char *path, const char *name, const float *v, int64_t n,
                               dsq_err *err) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: imatrix entry '%s' value %lld is %f (llama-quantize rejects "
                               "non-finite imatrix values)",
                               path, name, (long long)i, (double)v[i]);
    return DSQ_OK;
}

/* ============================================================================================
 * Legacy .dat
 * ========================================================================================== */

typedef struct rd {
    const uint8_t *p;
    size_t n, o;
} rd;

static int rd_i32(rd *r, int32_t *out) {
    if (r->n - r->o < 4)
        return 0;
    *out = dsq_le_i32(r->p + r->o);
    r->o += 4;
    return 1;
}

static dsq_status load_legacy(dsq_imatrix *m, const char *path, const uint8_t *p, size_t n,
                              dsq_err *err) {
    rd r = {p, n, 0};
    int32_t n_entries = 0;
    if (!rd_i32(&r, &n_entries) || n_entries < 1)
        return dsq_err_set(err, DSQ_FORMAT, "%s: not an imatrix file (no entries)", path);
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t len = 0, ncall = 0, nval = 0;
        const size_t at = r.o;
        if (!rd_i32(&r, &len) || len < 0 || (size_t)len > r.n - r.o)
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: byte %zu: imatrix entry %d: bad or truncated name "
                               "(length %d)",
                               path, at, i + 1, len);
        const char *name = (const char *)r.p + r.o;
        r.o += (size_t)len;
        if (memchr(name, '\0', (size_t)len) != NULL)
            return dsq_err_set(err, DSQ_FORMAT, "%s: byte %zu: imatrix entry %d: NUL in name",
                               path, at, i + 1);
        if (!rd_i32(&r, &ncall) || !rd_i32(&r, &nval) || nval < 1)
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: imatrix entry %d ('%.*s'): bad or truncated value count",
                               path, i + 1, len > 63 ? 63 : len, name);
        if ((uint64_t)nval * 4 > r.n - r.o)
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: imatrix entry %d ('%.*s'): %d values but only %zu bytes "
                               "left (truncated file)",
                               path, i + 1, len > 63 ? 63 : len, name, nval, r.n - r.o);
        float *v = NULL;
        const dsq_status st = add_entry(m, name, (size_t)len, nval, &v, err);
        if (st != DSQ_OK)
            return st;
        memcpy(v, r.p + r.o, (size_t)nval * 4); /* little-endian host (gguf.h rejects others) */
        r.o += (size_t)nval * 4;
        if (ncall > 0)
            for (int32_t k = 0; k < nval; k++)
                v[k] /= (float)ncall;
        char nm[64];
        snprintf(nm, sizeof nm, "%.*s", len > 63 ? 63 : len, name);
        const dsq_status fs = check_finite(path, nm, v, nval, err);
        if (fs != DSQ_OK)
            return fs;
    }
    if (r.o < r.n) { /* trailer: chunks, dataset */
        int32_t chunks = 0, len = 0;
        if (!rd_i32(&r, &chunks) || !rd_i32(&r, &len) || len < 0 || (size_t)len > r.n - r.o)
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: byte %zu: truncated trailer after the %d entries", path,
                               r.o, n_entries);
        m->chunks = chunks > 0 ? chunks : 0;
        if ((m->dataset = malloc((size_t)len + 1)) == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
        memcpy(m->dataset, r.p + r.o, (size_t)len);
        m->dataset[len] = '\0';
        r.o += (size_t)len;
    }
    return DSQ_OK;
}

/* ============================================================================================
 * GGUF
 * ========================================================================================== */

static int has_suffix(const char *s, const char *suf, size_t *base_len) {
    const size_t n = strlen(s), k = strlen(suf);
    *base_len = n >= k ? n - k : 0;
    return n > k && strcmp(s + n - k, suf) == 0;
}

/* `g` is parsed from `p`/`n` when `path` is NULL (fuzzing, tests), opened from
 * `path` otherwise (so the GGUF reader's messages name the file). */
static dsq_status load_gguf(dsq_imatrix *m, const char *path, const uint8_t *p, size_t n,
                            const char *label, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_gguf *g = NULL;
    dsq_gguf_val v, e;
    uint32_t chunks = 0;
    if (path != NULL)
        DSQ_TRY(dsq_gguf_open(&g, path, err));
    else
        DSQ_TRY(dsq_gguf_parse(&g, p, n, err));
    path = label;
    DSQ_CHECK(dsq_gguf_find_key(g, "imatrix.datasets") >= 0 &&
                  dsq_gguf_find_key(g, "imatrix.chunk_count") >= 0 &&
                  dsq_gguf_find_key(g, "imatrix.chunk_size") >= 0,
              DSQ_FORMAT, err,
              "%s: GGUF without imatrix.datasets, imatrix.chunk_count and imatrix.chunk_size "
              "(not an importance matrix)",
              path);
    DSQ_TRY(dsq_gguf_get_u32(g, "imatrix.chunk_count", &chunks, err));
    DSQ_TRY(dsq_gguf_get_u32(g, "imatrix.chunk_size", &(uint32_t){0}, err));
    m->chunks = chunks;
    DSQ_TRY(dsq_gguf_get_arr(g, "imatrix.datasets", DSQ_GGUF_STRING, &v, err));
    if (v.n > 0) {
        const char *s;
        size_t len;
        DSQ_TRY(dsq_gguf_val_at(&v, 0, &e, err));
        DSQ_TRY(dsq_gguf_val_str(&e, &s, &len, err));
        DSQ_CHECK((m->dataset = malloc(len + 1)) != NULL, DSQ_NOMEM, err, "out of memory");
        memcpy(m->dataset, s, len);
        m->dataset[len] = '\0';
    }
    DSQ_CHECK(dsq_gguf_tensor_count(g) > 0, DSQ_FORMAT, err, "%s: imatrix has no tensors", path);
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        size_t bl = 0;
        if (has_suffix(t->name, ".counts", &bl)) {
            char base[DSQ_GGUF_MAX_NAME + 16];
            snprintf(base, sizeof base, "%.*s.in_sum2", (int)bl, t->name);
            DSQ_CHECK(dsq_gguf_find_tensor(g, base) >= 0, DSQ_FORMAT, err,
                      "%s: '%s' has no matching '%s' (mismatched sums and counts)", path,
                      t->name, base);
            continue;
        }
        if (!has_suffix(t->name, ".in_sum2", &bl))
            continue; /* other tensors are ignored, as llama-quantize does */
        char cname[DSQ_GGUF_MAX_NAME + 16], wname[DSQ_GGUF_MAX_NAME + 1];
        snprintf(wname, sizeof wname, "%.*s", (int)bl, t->name);
        snprintf(cname, sizeof cname, "%s.counts", wname);
        const int64_t ci = dsq_gguf_find_tensor(g, cname);
        DSQ_CHECK(ci >= 0, DSQ_FORMAT, err,
                  "%s: '%s' has no matching '%s' (mismatched sums and counts)", path, t->name,
                  cname);
        const dsq_gguf_tensor *c = dsq_gguf_tensor_at(g, ci);
        const int64_t ne0 = t->ne[0], ne1 = t->ne[1] * t->ne[2] * t->ne[3];
        DSQ_CHECK(t->dtype == DSQ_DTYPE_F32 && c->dtype == DSQ_DTYPE_F32, DSQ_FORMAT, err,
                  "%s: '%s' / '%s' must be F32 (are %s / %s)", path, t->name, cname,
                  dsq_dtype_name(t->dtype), dsq_dtype_name(c->dtype));
        DSQ_CHECK(ne0 > 0 && ne1 > 0 && c->ne[0] * c->ne[1] * c->ne[2] * c->ne[3] == ne1,
                  DSQ_FORMAT, err,
                  "%s: '%s' has %lld matrices but '%s' holds %lld counts", path, t->name,
                  (long long)ne1, cname,
                  (long long)(c->ne[0] * c->ne[1] * c->ne[2] * c->ne[3]));
        float *out = NULL;
        DSQ_TRY(add_entry(m, wname, strlen(wname), ne0 * ne1, &out, err));
        for (int64_t j = 0; j < ne1; j++) {
            const float count = dsq_le_f32(c->data + 4 * j);
            DSQ_CHECK(isfinite(count) && count >= 0, DSQ_FORMAT, err,
                      "%s: '%s' count %lld is %f", path, cname, (long long)j, (double)count);
            for (int64_t k = 0; k < ne0; k++)
                out[j * ne0 + k] =
                    count > 0.0f ? dsq_le_f32(t->data + 4 * (j * ne0 + k)) / count : 1.0f;
        }
        DSQ_TRY(check_finite(path, wname, out, ne0 * ne1, err));
    }
    DSQ_CHECK(m->n > 0, DSQ_FORMAT, err, "%s: imatrix has no '<weight>.in_sum2' tensors", path);
    m->gguf = 1;
cleanup:
    dsq_gguf_close(g);
    return st;
}

static dsq_status imatrix_read(dsq_imatrix **out, const char *path, const uint8_t *p, size_t n,
                               const char *label, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_imatrix *m = calloc(1, sizeof *m);
    *out = NULL;
    DSQ_CHECK(m != NULL, DSQ_NOMEM, err, "out of memory");
    if (n >= 4 && memcmp(p, "GGUF", 4) == 0)
        DSQ_TRY(load_gguf(m, path, p, n, label, err));
    else
        DSQ_TRY(load_legacy(m, label, p, n, err));
    *out = m;
    m = NULL;
cleanup:
    dsq_imatrix_free(m);
    return st;
}

dsq_status dsq_imatrix_load(dsq_imatrix **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_map map = {0};
    *out = NULL;
    DSQ_TRY(dsq_map_open(&map, path, err));
    st = imatrix_read(out, path, map.data, map.size, path, err);
cleanup:
    dsq_map_close(&map);
    return st;
}

dsq_status dsq_imatrix_parse(dsq_imatrix **out, const uint8_t *p, size_t n, const char *label,
                             dsq_err *err) {
    return imatrix_read(out, NULL, p, n, label ? label : "<buffer>", err);
}
