/* formats/gguf_split.c: split GGUF sets (formats/gguf_split.h). Each file is parsed by the
 * strict single-file reader; this layer only finds the files and checks that they belong
 * together. */
#include "formats/gguf_split.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dsq_gguf_set {
    int        n;
    dsq_gguf **files;
    char     **paths;
    int64_t   *base; /* n + 1 entries: the set index of file k's first tensor; base[n] = all */
};

void dsq_gguf_set_close(dsq_gguf_set *s) {
    if (s == NULL)
        return;
    for (int k = 0; k < s->n; k++) {
        if (s->files != NULL)
            dsq_gguf_close(s->files[k]);
        if (s->paths != NULL)
            free(s->paths[k]);
    }
    free(s->files);
    free(s->paths);
    free(s->base);
    free(s);
}

/* A split key, with the type llama.cpp reads it as (the loader's get_key insists on the
 * type; gguf-split and gguf-py write these types). *present = 0 when absent. */
static dsq_status split_key(const dsq_gguf *g, const char *path, const char *key,
                            dsq_gguf_type want, int64_t *out, int *present, dsq_err *err) {
    dsq_gguf_val v;
    *present = 0;
    *out = 0;
    if (dsq_gguf_get(g, key, &v, NULL) != DSQ_OK)
        return DSQ_OK;
    *present = 1;
    if (v.type != want)
        return dsq_err_set(err, DSQ_FORMAT, "%s: %s is %s, expected %s (llama.cpp's split keys)",
                           path, key, dsq_gguf_type_name(v.type), dsq_gguf_type_name(want));
    if (want == DSQ_GGUF_UINT16) {
        uint16_t u = 0;
        dsq_gguf_val_u16(&v, &u, NULL);
        *out = u;
    } else {
        int32_t i = 0;
        dsq_gguf_val_i32(&v, &i, NULL);
        *out = i;
    }
    return DSQ_OK;
}

static dsq_status need_key(const dsq_gguf *g, const char *path, const char *key,
                           dsq_gguf_type want, int64_t *out, dsq_err *err) {
    int present = 0;
    const dsq_status st = split_key(g, path, key, want, out, &present, err);
    if (st != DSQ_OK)
        return st;
    if (!present)
        return dsq_err_set(err, DSQ_FORMAT, "%s: no %s key, but the set has split.count > 1",
                           path, key);
    return DSQ_OK;
}

/* llama_split_path's name: "<prefix>-%05d-of-%05d.gguf", position 1-based. Owned. */
static char *split_name(const char *prefix, size_t prefix_len, int64_t k, int64_t n) {
    char tail[40];
    const int tl = snprintf(tail, sizeof tail, "-%05d-of-%05d.gguf", (int)k + 1, (int)n);
    char *p = malloc(prefix_len + (size_t)tl + 1);
    if (p != NULL) {
        memcpy(p, prefix, prefix_len);
        memcpy(p + prefix_len, tail, (size_t)tl + 1);
    }
    return p;
}

/* Length of the prefix when `path` ends in split k of n's suffix (llama_split_prefix: the
 * prefix must be non-empty); 0 otherwise. */
static size_t split_prefix_len(const char *path, int64_t k, int64_t n) {
    char tail[40];
    const size_t tl = (size_t)snprintf(tail, sizeof tail, "-%05d-of-%05d.gguf", (int)k + 1, (int)n);
    const size_t pl = strlen(path);
    return pl > tl && strcmp(path + pl - tl, tail) == 0 ? pl - tl : 0;
}

/* Opens split k (k >= 1) of the set whose first file is s->paths[0], and checks its keys
 * against the first file's. */
static dsq_status open_split(dsq_gguf_set *s, int k, size_t prefix_len, int64_t want_tensors,
                             dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_err sub = {0};
    int64_t no = 0, count = 0, tensors = 0;
    const char *first = s->paths[0];
    const char *path = s->paths[k] = split_name(first, prefix_len, k, s->n);
    DSQ_CHECK(path != NULL, DSQ_NOMEM, err, "out of memory");
    st = dsq_gguf_open(&s->files[k], path, &sub);
    if (st == DSQ_NOT_FOUND) {
        st = dsq_err_set(err, DSQ_NOT_FOUND, "%s: missing: split %d of %d of %s", path, k + 1,
                         s->n, first);
        goto cleanup;
    }
    if (st != DSQ_OK) {
        st = dsq_err_set(err, st, "%s", sub.text); /* already names the file */
        goto cleanup;
    }
    const dsq_gguf *g = s->files[k];
    DSQ_TRY(need_key(g, path, "split.no", DSQ_GGUF_UINT16, &no, err));
    DSQ_TRY(need_key(g, path, "split.count", DSQ_GGUF_UINT16, &count, err));
    DSQ_TRY(need_key(g, path, "split.tensors.count", DSQ_GGUF_INT32, &tensors, err));
    DSQ_CHECK(count == s->n, DSQ_FORMAT, err,
              "%s: split.count is %" PRId64 " but %s says %d: a split of another set?", path,
              count, first, s->n);
    DSQ_CHECK(no == k, DSQ_FORMAT, err,
              "%s: split.no is %" PRId64 " but the file is split %d of %d (split.no %d)", path,
              no, k + 1, s->n, k);
    DSQ_CHECK(tensors == want_tensors, DSQ_FORMAT, err,
              "%s: split.tensors.count is %" PRId64 " but %s says %" PRId64
              ": a split of another set?",
              path, tensors, first, want_tensors);
    /* llama_model_loader keeps one map of all tensors and refuses a name seen before */
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const char *name = dsq_gguf_tensor_at(g, i)->name;
        for (int j = 0; j < k; j++)
            DSQ_CHECK(dsq_gguf_find_tensor(s->files[j], name) < 0, DSQ_FORMAT, err,
                      "%s: tensor '%s' is also in %s", path, name, s->paths[j]);
    }
cleanup:
    return st;
}

dsq_status dsq_gguf_set_open(dsq_gguf_set **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_gguf_set *s = NULL;
    dsq_gguf *first = NULL;
    int64_t count = 0, no = 0, want_tensors = 0;
    int has_count = 0;
    *out = NULL;
    DSQ_TRY(dsq_gguf_open(&first, path, err));
    DSQ_TRY(split_key(first, path, "split.count", DSQ_GGUF_UINT16, &count, &has_count, err));
    /* no key, 0 (what gguf-split --merge leaves) or 1: one file, as llama.cpp reads it */
    if (!has_count || count <= 1)
        count = 1;
    s = calloc(1, sizeof *s);
    DSQ_CHECK(s != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_CHECK((s->files = calloc((size_t)count, sizeof *s->files)) != NULL &&
                  (s->paths = calloc((size_t)count, sizeof *s->paths)) != NULL &&
                  (s->base = calloc((size_t)count + 1, sizeof *s->base)) != NULL,
              DSQ_NOMEM, err, "out of memory");
    s->n = (int)count;
    s->files[0] = first;
    first = NULL;
    DSQ_CHECK((s->paths[0] = strdup(path)) != NULL, DSQ_NOMEM, err, "out of memory");

    if (count > 1) {
        DSQ_TRY(need_key(s->files[0], path, "split.no", DSQ_GGUF_UINT16, &no, err));
        if (no != 0) {
            /* llama.cpp: "model must be loaded with the first split" */
            const size_t pl = no < count ? split_prefix_len(path, no, count) : 0;
            char *want = pl > 0 ? split_name(path, pl, 0, count) : NULL;
            st = dsq_err_set(err, DSQ_FORMAT,
                             "%s: this is split %" PRId64 " of %" PRId64
                             " (split.no %" PRId64 "); pass the first split%s%s",
                             path, no + 1, count, no, want ? ", " : " of the set",
                             want ? want : "");
            free(want);
            goto cleanup;
        }
        const size_t pl = split_prefix_len(path, 0, count);
        DSQ_CHECK(pl > 0, DSQ_FORMAT, err,
                  "%s: split 1 of %" PRId64 " but the name does not end in -00001-of-%05d.gguf, "
                  "so the other splits cannot be found (llama.cpp's naming)",
                  path, count, (int)count);
        DSQ_TRY(need_key(s->files[0], path, "split.tensors.count", DSQ_GGUF_INT32, &want_tensors,
                         err));
        for (int k = 1; k < s->n; k++)
            DSQ_TRY(open_split(s, k, pl, want_tensors, err));
    }
    for (int k = 0; k < s->n; k++)
        s->base[k + 1] = s->base[k] + dsq_gguf_tensor_count(s->files[k]);
    DSQ_CHECK(count == 1 || s->base[s->n] == want_tensors, DSQ_FORMAT, err,
              "%s: split.tensors.count is %" PRId64 " but the %d splits hold %" PRId64
              " tensors",
              path, want_tensors, s->n, s->base[s->n]);
    *out = s;
    s = NULL;
cleanup:
    dsq_gguf_close(first);
    dsq_gguf_set_close(s);
    return st;
}

int dsq_gguf_set_file_count(const dsq_gguf_set *s) {
    return s->n;
}

const dsq_gguf *dsq_gguf_set_file(const dsq_gguf_set *s, int k) {
    return k >= 0 && k < s->n ? s->files[k] : NULL;
}

const char *dsq_gguf_set_path(const dsq_gguf_set *s, int k) {
    return k >= 0 && k < s->n ? s->paths[k] : NULL;
}

const dsq_gguf *dsq_gguf_set_meta(const dsq_gguf_set *s) {
    return s->files[0];
}

uint64_t dsq_gguf_set_bytes(const dsq_gguf_set *s) {
    uint64_t b = 0;
    for (int k = 0; k < s->n; k++)
        b += dsq_gguf_size(s->files[k]);
    return b;
}

int64_t dsq_gguf_set_tensor_count(const dsq_gguf_set *s) {
    return s->base[s->n];
}

int dsq_gguf_set_tensor_file(const dsq_gguf_set *s, int64_t i) {
    if (i < 0 || i >= s->base[s->n])
        return -1;
    /* the last file starting at or before i: files without tensors share a base with the
     * next one, and taking the last of equal bases skips them */
    int lo = 0, hi = s->n - 1;
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        if (s->base[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

const dsq_gguf_tensor *dsq_gguf_set_tensor_at(const dsq_gguf_set *s, int64_t i) {
    const int k = dsq_gguf_set_tensor_file(s, i);
    return k < 0 ? NULL : dsq_gguf_tensor_at(s->files[k], i - s->base[k]);
}

int64_t dsq_gguf_set_find_tensor(const dsq_gguf_set *s, const char *name) {
    for (int k = 0; k < s->n; k++) {
        const int64_t i = dsq_gguf_find_tensor(s->files[k], name);
        if (i >= 0)
            return s->base[k] + i;
    }
    return -1;
}
