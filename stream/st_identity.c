/* stream/st_identity.c: see st_identity.h. */
#include "stream/st_identity.h"

#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "stream/stream.h"

dsq_status dsq_st_identity_init(dsq_st_identity *id, const dsq_st *sh, const char *path,
                                const char *name, dsq_err *err) {
    const size_t n = dsq_st_count(sh);
    memset(id, 0, sizeof *id);
    id->sh = sh;
    id->path = path;
    id->name = name;
    uint64_t *ends = malloc((n + 1) * sizeof *ends);
    id->part_of = malloc((n ? n : 1) * sizeof *id->part_of);
    if (ends == NULL || id->part_of == NULL) {
        free(ends);
        dsq_st_identity_free(id);
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    }
    size_t np = 0;
    ends[np++] = 8 + dsq_st_header_len(sh);
    for (size_t i = 0; i < n; i++) {
        const dsq_tensor_view *v = dsq_st_tensor(sh, i);
        id->part_of[i] = v->nbytes > 0 ? np : SIZE_MAX;
        if (v->nbytes > 0)
            ends[np++] = dsq_st_tensor_offset(sh, i) + v->nbytes;
    }
    const dsq_status st = dsq_parts_init(&id->parts, np, ends, err);
    free(ends);
    if (st != DSQ_OK)
        dsq_st_identity_free(id);
    return st;
}

void dsq_st_identity_free(dsq_st_identity *id) {
    dsq_parts_free(&id->parts);
    free(id->part_of);
    id->part_of = NULL;
}

void dsq_st_identity_tensor(dsq_st_identity *id, size_t i, uint64_t hash) {
    if (i < dsq_st_count(id->sh) && id->part_of[i] != SIZE_MAX)
        dsq_parts_set(&id->parts, id->part_of[i], hash);
}

static dsq_status to_json(const dsq_st_identity *id, json_t **out, dsq_err *err) {
    uint64_t d = 0;
    char h[17];
    const dsq_status st = dsq_parts_digest(&id->parts, &d, err);
    if (st != DSQ_OK)
        return st;
    *out = json_pack("{s:s, s:I, s:s}", "file", id->name, "size",
                     (json_int_t)dsq_st_file_size(id->sh), "parts_xxh3", dsq_stream_hex(d, h));
    return *out != NULL ? DSQ_OK : dsq_err_set(err, DSQ_NOMEM, "out of memory");
}

dsq_status dsq_st_identity_json(dsq_st_identity *id, json_t **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_rfile f = {-1, 0, id->path};
    void *hdr = NULL;
    *out = NULL;
    if (!id->parts.have[0]) {
        const size_t n = (size_t)(8 + dsq_st_header_len(id->sh));
        hdr = malloc(n);
        DSQ_CHECK(hdr != NULL, DSQ_NOMEM, err, "out of memory");
        DSQ_TRY(dsq_rfile_open(&f, id->path, err));
        DSQ_TRY(dsq_rfile_read(&f, hdr, n, 0, err));
        dsq_parts_set(&id->parts, 0, dsq_hash_buf(hdr, n));
    }
    for (size_t i = 0; i < dsq_st_count(id->sh); i++) {
        const dsq_tensor_view *v = dsq_st_tensor(id->sh, i);
        const size_t part = id->part_of[i];
        if (part != SIZE_MAX && !id->parts.have[part]) /* small: a scale, a dropped tensor */
            dsq_parts_set(&id->parts, part, dsq_hash_buf(v->data, (size_t)v->nbytes));
    }
    DSQ_TRY(to_json(id, out, err));
cleanup:
    dsq_rfile_close(&f);
    free(hdr);
    return st;
}

dsq_status dsq_st_identity_now(dsq_st_identity *id, json_t **out, dsq_err *err) {
    const size_t cap = (size_t)1 << 20;
    void *buf = malloc(cap);
    dsq_err e2 = {0};
    *out = NULL;
    if (buf == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    dsq_status st = dsq_parts_hash_file(&id->parts, id->path, buf, cap, &e2);
    free(buf);
    if (st == DSQ_MISMATCH) {
        *out = json_null();
        return DSQ_OK;
    }
    if (st != DSQ_OK)
        return dsq_err_set(err, st, "%s", e2.text);
    return to_json(id, out, err);
}
