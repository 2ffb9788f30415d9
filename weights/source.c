/* weights/source.c: the weight-source wrapper: the calls every source shares (row-range
 * checks, BF16 from F32 for sources without their own BF16 path, the by-name convenience
 * calls, whole-tensor loads). The sources themselves: source_hf.c, source_gguf.c. */
#include "weights/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/numeric.h"
#include "formats/gguf.h"

struct dsq_wsource {
    const dsq_wsource_ops *ops;
    void *impl;
};

dsq_status dsq_wsource_wrap(dsq_wsource **out, const dsq_wsource_ops *ops, void *impl,
                            dsq_err *err) {
    *out = NULL;
    dsq_wsource *ws = malloc(sizeof *ws);
    if (ws == NULL) {
        ops->close(impl);
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    }
    ws->ops = ops;
    ws->impl = impl;
    *out = ws;
    return DSQ_OK;
}

void dsq_wsource_close(dsq_wsource *ws) {
    if (ws == NULL)
        return;
    ws->ops->close(ws->impl);
    free(ws);
}

const char *dsq_wsource_kind(const dsq_wsource *ws) {
    return ws->ops->kind;
}

const struct dsq_gguf *dsq_wsource_gguf(const dsq_wsource *ws) {
    return ws->ops->gguf != NULL ? ws->ops->gguf(ws->impl) : NULL;
}

dsq_status dsq_wsource_config(const dsq_wsource *ws, dsq_model_config *cfg, dsq_err *err) {
    return ws->ops->config(ws->impl, cfg, err);
}

dsq_status dsq_wsource_tokenizer(const dsq_wsource *ws, dsq_tokenizer **out, dsq_err *err) {
    *out = NULL;
    if (ws->ops->tokenizer == NULL)
        return dsq_err_set(err, DSQ_NOT_FOUND, "a %s model carries no tokenizer", ws->ops->kind);
    return ws->ops->tokenizer(ws->impl, out, err);
}

void dsq_wtensor_set_shape(dsq_wtensor *t, int ndim, const int64_t *shape) {
    int64_t rows = 1;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        if (i + 1 < ndim)
            rows *= shape[i];
    }
    t->rows = rows;
    t->cols = ndim > 0 ? shape[ndim - 1] : 1;
}

size_t dsq_wsource_count(const dsq_wsource *ws) {
    return ws->ops->count(ws->impl);
}

const char *dsq_wsource_name(const dsq_wsource *ws, size_t i) {
    return ws->ops->name(ws->impl, i);
}

const char *dsq_wsource_path(const dsq_wsource *ws) {
    return ws->ops->path(ws->impl);
}

dsq_status dsq_wsource_at(const dsq_wsource *ws, size_t i, dsq_wtensor *out, dsq_err *err) {
    if (i >= ws->ops->count(ws->impl))
        return dsq_err_set(err, DSQ_INVALID_ARG, "tensor index %zu out of range", i);
    return ws->ops->at(ws->impl, i, out, err);
}

dsq_status dsq_wsource_find(const dsq_wsource *ws, const char *name, dsq_wtensor *out,
                            dsq_err *err) {
    return ws->ops->find(ws->impl, name, out, err);
}

/* inline: it runs once per row for row-at-a-time readers (the quantizers) */
static inline dsq_status check_rows(const dsq_wtensor *t, int64_t row0, int64_t nrows,
                                    dsq_err *err) {
    if (!t->readable)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "tensor '%s' is %s, which dsq cannot decode",
                           t->name, dsq_dtype_name(t->dtype));
    if (row0 < 0 || nrows < 0 || row0 > t->rows || nrows > t->rows - row0)
        return dsq_err_set(err, DSQ_INVALID_ARG, "rows [%lld, %lld) of '%s' out of range (%lld)",
                           (long long)row0, (long long)(row0 + nrows), t->name,
                           (long long)t->rows);
    return DSQ_OK;
}

dsq_status dsq_wsource_read(const dsq_wsource *ws, const dsq_wtensor *t, int64_t row0,
                            int64_t nrows, float *dst, dsq_err *err) {
    const dsq_status st = check_rows(t, row0, nrows, err);
    if (st != DSQ_OK)
        return st;
    return ws->ops->read_f32(ws->impl, t, row0, nrows, dst, err);
}

dsq_status dsq_wsource_read_bf16(const dsq_wsource *ws, const dsq_wtensor *t, int64_t row0,
                                 int64_t nrows, uint16_t *dst, dsq_err *err) {
    dsq_status st = check_rows(t, row0, nrows, err);
    if (st != DSQ_OK)
        return st;
    if (ws->ops->read_bf16 != NULL)
        return ws->ops->read_bf16(ws->impl, t, row0, nrows, dst, err);
    float *row = malloc((size_t)(t->cols ? t->cols : 1) * sizeof *row);
    DSQ_CHECK(row != NULL, DSQ_NOMEM, err, "out of memory for a row of '%s'", t->name);
    for (int64_t r = 0; r < nrows; r++) {
        DSQ_TRY(ws->ops->read_f32(ws->impl, t, row0 + r, 1, row, err));
        uint16_t *o = dst + (size_t)r * (size_t)t->cols;
        for (int64_t j = 0; j < t->cols; j++)
            o[j] = dsq_f32_to_bf16(row[j]);
    }
cleanup:
    free(row);
    return st;
}

void dsq_wsource_release_tensor(const dsq_wsource *ws, const dsq_wtensor *t) {
    if (ws->ops->release != NULL)
        ws->ops->release(ws->impl, t);
}

int dsq_wsource_has(const dsq_wsource *ws, const char *name) {
    dsq_wtensor t;
    return ws->ops->find(ws->impl, name, &t, NULL) == DSQ_OK;
}

dsq_status dsq_wsource_info(const dsq_wsource *ws, const char *name, dsq_winfo *out,
                            dsq_err *err) {
    dsq_wtensor t;
    const dsq_status st = ws->ops->find(ws->impl, name, &t, err);
    if (st != DSQ_OK)
        return st;
    if (!t.readable)
        return dsq_err_set(err, DSQ_UNSUPPORTED,
                           "tensor '%s' is %s, which the forward pass cannot read (F32, F16, "
                           "BF16, F8_E4M3 with scales, GGUF blocks)",
                           name, dsq_dtype_name(t.dtype));
    memset(out, 0, sizeof *out);
    out->dtype = t.dtype;
    out->ndim = t.ndim;
    memcpy(out->shape, t.shape, sizeof out->shape);
    out->rows = t.rows;
    out->cols = t.cols;
    return DSQ_OK;
}

dsq_status dsq_wsource_read_rows(const dsq_wsource *ws, const char *name, int64_t row0,
                                 int64_t nrows, float *dst, dsq_err *err) {
    dsq_wtensor t;
    const dsq_status st = ws->ops->find(ws->impl, name, &t, err);
    if (st != DSQ_OK)
        return st;
    return dsq_wsource_read(ws, &t, row0, nrows, dst, err);
}

void dsq_wsource_release(const dsq_wsource *ws, const char *name) {
    dsq_wtensor t;
    if (ws->ops->release != NULL && ws->ops->find(ws->impl, name, &t, NULL) == DSQ_OK)
        ws->ops->release(ws->impl, &t);
}

dsq_status dsq_wsource_load(const dsq_wsource *ws, const char *name, int64_t want_rows,
                            int64_t want_cols, float **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    float *buf = NULL;
    dsq_winfo wi;
    dsq_wtensor t;
    *out = NULL;
    DSQ_TRY(dsq_wsource_info(ws, name, &wi, err));
    if (want_rows >= 0 && want_cols >= 0) {
        const int ok = want_rows == 0 ? (wi.ndim == 1 && wi.shape[0] == want_cols)
                                      : (wi.ndim == 2 && wi.shape[0] == want_rows &&
                                         wi.shape[1] == want_cols);
        char got[96];
        dsq_shape_format(wi.shape, wi.ndim, got, sizeof got);
        if (want_rows == 0)
            DSQ_CHECK(ok, DSQ_FORMAT, err, "tensor '%s' has shape %s, expected [%lld]", name, got,
                      (long long)want_cols);
        else
            DSQ_CHECK(ok, DSQ_FORMAT, err, "tensor '%s' has shape %s, expected [%lld, %lld]",
                      name, got, (long long)want_rows, (long long)want_cols);
    }
    size_t n;
    DSQ_CHECK(dsq_mul_size((size_t)wi.rows, (size_t)wi.cols, &n) &&
                  dsq_mul_size(n, sizeof(float), &n),
              DSQ_RANGE, err, "tensor '%s' is too large", name);
    buf = malloc(n ? n : 1);
    DSQ_CHECK(buf != NULL, DSQ_NOMEM, err, "out of memory for tensor '%s' (%zu bytes)", name, n);
    DSQ_TRY(dsq_wsource_find(ws, name, &t, err));
    DSQ_TRY(dsq_wsource_read(ws, &t, 0, wi.rows, buf, err));
    *out = buf;
    buf = NULL;
cleanup:
    free(buf);
    return st;
}

dsq_status dsq_wsource_open(dsq_wsource **out, const char *path, const dsq_wsource_opts *opts,
                            dsq_err *err) {
    if (dsq_gguf_probe_path(path))
        return dsq__wsource_open_gguf(out, path, opts, 0, err);
    return dsq__wsource_open_hf(out, path, opts, 0, err);
}

dsq_status dsq_wsource_open_tensors(dsq_wsource **out, const char *path,
                                    const dsq_wsource_opts *opts, dsq_err *err) {
    if (dsq_gguf_probe_path(path))
        return dsq__wsource_open_gguf(out, path, opts, 1, err);
    return dsq__wsource_open_hf(out, path, opts, 1, err);
}

dsq_status dsq_wsource_open_hf(dsq_wsource **out, const char *dir, const dsq_wsource_opts *opts,
                               dsq_err *err) {
    return dsq__wsource_open_hf(out, dir, opts, 0, err);
}

dsq_status dsq_wsource_open_gguf(dsq_wsource **out, const char *path,
                                 const dsq_wsource_opts *opts, dsq_err *err) {
    return dsq__wsource_open_gguf(out, path, opts, 0, err);
}
