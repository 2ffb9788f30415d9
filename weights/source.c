/* weights/source.c: the weight-source wrapper and the safetensors source. */
#include "weights/source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/file.h"
#include "core/numeric.h"
#include "formats/gguf.h"
#include "formats/st_checkpoint.h"

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

dsq_status dsq_wsource_config(const dsq_wsource *ws, dsq_model_config *cfg, dsq_err *err) {
    return ws->ops->config(ws->impl, cfg, err);
}

int dsq_wsource_has(const dsq_wsource *ws, const char *name) {
    dsq_winfo wi;
    return ws->ops->info(ws->impl, name, &wi, NULL) == DSQ_OK;
}

dsq_status dsq_wsource_info(const dsq_wsource *ws, const char *name, dsq_winfo *out,
                            dsq_err *err) {
    return ws->ops->info(ws->impl, name, out, err);
}

dsq_status dsq_wsource_read_rows(const dsq_wsource *ws, const char *name, int64_t row0,
                                 int64_t nrows, float *dst, dsq_err *err) {
    return ws->ops->read_rows(ws->impl, name, row0, nrows, dst, err);
}

void dsq_wsource_release(const dsq_wsource *ws, const char *name) {
    if (ws->ops->release != NULL)
        ws->ops->release(ws->impl, name);
}

dsq_status dsq_wsource_tokenizer(const dsq_wsource *ws, dsq_tokenizer **out, dsq_err *err) {
    *out = NULL;
    if (ws->ops->tokenizer == NULL)
        return dsq_err_set(err, DSQ_NOT_FOUND, "a %s model carries no tokenizer", ws->ops->kind);
    return ws->ops->tokenizer(ws->impl, out, err);
}

dsq_status dsq_wsource_load(const dsq_wsource *ws, const char *name, int64_t want_rows,
                            int64_t want_cols, float **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    float *buf = NULL;
    dsq_winfo wi;
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
    DSQ_TRY(dsq_wsource_read_rows(ws, name, 0, wi.rows, buf, err));
    *out = buf;
    buf = NULL;
cleanup:
    free(buf);
    return st;
}

/* ==== Hugging Face safetensors checkpoint ==== */

typedef struct hf_src {
    dsq_ckpt *ck;
    char *dir;
    dsq_model_config cfg;
    int round_bf16;
    float fp8_lut[256]; /* F8_E4M3 code -> F32 */
} hf_src;

static void hf_close(void *impl) {
    hf_src *s = impl;
    if (s == NULL)
        return;
    dsq_ckpt_close(s->ck);
    free(s->dir);
    free(s);
}

static dsq_status hf_config(void *impl, dsq_model_config *cfg, dsq_err *err) {
    (void)err;
    *cfg = ((const hf_src *)impl)->cfg;
    return DSQ_OK;
}

static const dsq_tensor_view *hf_scale_of(const hf_src *s, const char *name) {
    char buf[512];
    const int n = snprintf(buf, sizeof buf, "%s_scale_inv", name);
    if (n < 0 || (size_t)n >= sizeof buf)
        return NULL;
    return dsq_ckpt_find(s->ck, buf, NULL, NULL);
}

static dsq_status hf_info(void *impl, const char *name, dsq_winfo *out, dsq_err *err) {
    const hf_src *s = impl;
    const dsq_tensor_view *v = dsq_ckpt_find(s->ck, name, NULL, NULL);
    if (v == NULL)
        return dsq_err_set(err, DSQ_NOT_FOUND, "%s: no tensor '%s'", dsq_ckpt_dir(s->ck), name);
    switch (v->dtype) {
    case DSQ_DTYPE_F32:
    case DSQ_DTYPE_F16:
    case DSQ_DTYPE_BF16:
        break;
    case DSQ_DTYPE_F8_E4M3: {
        const dsq_tensor_view *sc = hf_scale_of(s, name);
        if (sc == NULL)
            return dsq_err_set(err, DSQ_FORMAT, "%s: F8_E4M3 tensor '%s' has no '%s_scale_inv'",
                               dsq_ckpt_dir(s->ck), name, name);
        if (v->ndim != 2 || sc->ndim != 2 || sc->dtype != DSQ_DTYPE_F32)
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: '%s' must be 2-D with a 2-D F32 '%s_scale_inv'",
                               dsq_ckpt_dir(s->ck), name, name);
        const int64_t br = s->cfg.fp8_block_rows, bc = s->cfg.fp8_block_cols;
        if (sc->shape[0] != (v->shape[0] + br - 1) / br ||
            sc->shape[1] != (v->shape[1] + bc - 1) / bc)
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: '%s_scale_inv' is [%lld, %lld], but [%lld, %lld] with "
                               "%lldx%lld blocks needs [%lld, %lld]",
                               dsq_ckpt_dir(s->ck), name, (long long)sc->shape[0],
                               (long long)sc->shape[1], (long long)v->shape[0],
                               (long long)v->shape[1], (long long)br, (long long)bc,
                               (long long)((v->shape[0] + br - 1) / br),
                               (long long)((v->shape[1] + bc - 1) / bc));
        break;
    }
    default:
        return dsq_err_set(err, DSQ_UNSUPPORTED, "%s: tensor '%s' is %s, which the forward pass "
                           "cannot read (F32, F16, BF16, F8_E4M3 with scales)",
                           dsq_ckpt_dir(s->ck), name, dsq_dtype_name(v->dtype));
    }
    memset(out, 0, sizeof *out);
    out->dtype = v->dtype;
    out->ndim = v->ndim;
    int64_t rows = 1;
    for (int i = 0; i < v->ndim; i++) {
        out->shape[i] = v->shape[i];
        if (i + 1 < v->ndim)
            rows *= v->shape[i];
    }
    out->rows = rows;
    out->cols = v->ndim > 0 ? v->shape[v->ndim - 1] : 1;
    return DSQ_OK;
}

static dsq_status hf_read_rows(void *impl, const char *name, int64_t row0, int64_t nrows,
                               float *dst, dsq_err *err) {
    const hf_src *s = impl;
    dsq_winfo wi;
    const dsq_status st = hf_info(impl, name, &wi, err);
    if (st != DSQ_OK)
        return st;
    if (row0 < 0 || nrows < 0 || row0 > wi.rows || nrows > wi.rows - row0)
        return dsq_err_set(err, DSQ_INVALID_ARG, "rows [%lld, %lld) of '%s' out of range (%lld)",
                           (long long)row0, (long long)(row0 + nrows), name, (long long)wi.rows);
    const dsq_tensor_view *v = dsq_ckpt_find(s->ck, name, NULL, NULL);
    const int64_t cols = wi.cols;
    /* Element size is 1, 2 or 4 bytes; data may be unaligned, so memcpy. */
    const uint8_t *base = v->data;
    switch (v->dtype) {
    case DSQ_DTYPE_F32:
        memcpy(dst, base + (size_t)row0 * (size_t)cols * 4, (size_t)nrows * (size_t)cols * 4);
        break;
    case DSQ_DTYPE_F16:
    case DSQ_DTYPE_BF16: {
        const uint8_t *p = base + (size_t)row0 * (size_t)cols * 2;
        const size_t n = (size_t)nrows * (size_t)cols;
        if (v->dtype == DSQ_DTYPE_BF16) {
            dsq_bf16_row_to_f32(p, dst, (int64_t)n);
            break;
        }
        for (size_t i = 0; i < n; i++)
            dst[i] = dsq_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    }
    case DSQ_DTYPE_F8_E4M3: {
        const dsq_tensor_view *sc = hf_scale_of(s, name);
        const uint8_t *scb = sc->data;
        const int64_t br = s->cfg.fp8_block_rows, bc = s->cfg.fp8_block_cols;
        const int64_t scols = sc->shape[1];
        for (int64_t r = 0; r < nrows; r++) {
            const int64_t i = row0 + r;
            const uint8_t *q = base + (size_t)i * (size_t)cols;
            float *y = dst + (size_t)r * (size_t)cols;
            for (int64_t j0 = 0; j0 < cols; j0 += bc) {
                float scale;
                memcpy(&scale, scb + 4 * (size_t)((i / br) * scols + j0 / bc), 4);
                const int64_t j1 = j0 + bc < cols ? j0 + bc : cols;
                for (int64_t j = j0; j < j1; j++) {
                    const float w = s->fp8_lut[q[j]] * scale; /* one F32 rounding */
                    y[j] = s->round_bf16 ? dsq_bf16_to_f32(dsq_f32_to_bf16(w)) : w;
                }
            }
        }
        break;
    }
    default:
        return dsq_err_set(err, DSQ_UNSUPPORTED, "tensor '%s': dtype %s", name,
                           dsq_dtype_name(v->dtype));
    }
    return DSQ_OK;
}

static void hf_release(void *impl, const char *name) {
    const hf_src *s = impl;
    size_t shard, idx;
    if (dsq_ckpt_find(s->ck, name, &shard, &idx) != NULL)
        dsq_st_release(dsq_ckpt_shard(s->ck, shard), idx);
}

static dsq_status hf_tokenizer(void *impl, dsq_tokenizer **out, dsq_err *err) {
    const hf_src *s = impl;
    return dsq_tokenizer_from_hf_dir(out, s->dir, err);
}

static const dsq_wsource_ops hf_ops = {
    .kind = "safetensors",
    .info = hf_info,
    .read_rows = hf_read_rows,
    .config = hf_config,
    .tokenizer = hf_tokenizer,
    .release = hf_release,
    .close = hf_close,
};

dsq_status dsq_wsource_open_hf(dsq_wsource **out, const char *dir, const dsq_wsource_opts *opts,
                               dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *cfg_path = NULL, *text = NULL;
    size_t len = 0;
    hf_src *s = NULL;
    *out = NULL;
    DSQ_CHECK(dsq_is_dir(dir), DSQ_NOT_FOUND, err, "%s: not a checkpoint directory", dir);
    s = calloc(1, sizeof *s);
    DSQ_CHECK(s != NULL, DSQ_NOMEM, err, "out of memory");
    s->dir = strdup(dir);
    DSQ_CHECK(s->dir != NULL, DSQ_NOMEM, err, "out of memory");
    s->round_bf16 = opts == NULL || !opts->fp8_no_bf16_round;
    for (int c = 0; c < 256; c++)
        s->fp8_lut[c] = dsq_fp8_e4m3_to_f32((uint8_t)c);
    cfg_path = dsq_path_join(dir, "config.json");
    DSQ_CHECK(cfg_path != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_read_small_file(cfg_path, 16u << 20, &text, &len, err));
    DSQ_TRY(dsq_model_config_parse(text, len, cfg_path, &s->cfg, err));
    DSQ_TRY(dsq_ckpt_open(&s->ck, dir, err));
    st = dsq_wsource_wrap(out, &hf_ops, s, err);
    s = NULL; /* owned by the wrapper, or freed by it */
cleanup:
    hf_close(s);
    free(cfg_path);
    free(text);
    return st;
}

dsq_status dsq_wsource_open(dsq_wsource **out, const char *path, const dsq_wsource_opts *opts,
                            dsq_err *err) {
    if (dsq_gguf_probe_path(path))
        return dsq_wsource_open_gguf(out, path, opts, err);
    return dsq_wsource_open_hf(out, path, opts, err);
}
