/* weights/source_hf.c: a Hugging Face safetensors checkpoint (one file or an index and its
 * shards) as a weight source.
 *
 * Every tensor of every shard is listed, in shard order, except the `<W>_scale_inv` of a
 * FP8 weight W: that scale is W's second part (DSQ_WLAYOUT_FP8_BLOCK) and is checked with
 * quantize/fp8.h's dsq_fp8_check_scale whenever W is looked up, so a NaN, infinite,
 * misshapen or non-F32 scale is refused the same way by every command. The Bm x Bn block
 * comes from config.json's quantization_config.weight_block_size (model/model_desc.h).
 * F32, F16, BF16 and FP8 rows decode to F32 and BF16; any other dtype is described (for a
 * byte copy) but not readable.
 *
 * All reading of tensor bytes goes through hf_bytes(): the one place to change when the
 * source reads with pread instead of a mapping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/file.h"
#include "core/numeric.h"
#include "formats/st_checkpoint.h"
#include "model/model_desc.h"
#include "quantize/fp8.h"
#include "weights/source.h"

#define MAX_CONFIG ((size_t)16 << 20)

typedef struct st_ref {
    size_t shard, index;
} st_ref;

typedef struct hf_src {
    dsq_ckpt *ck;
    char *dir;
    int has_cfg; /* the model description was read (not opened for tensors only) */
    dsq_model_config cfg;
    int64_t bm, bn; /* FP8 scale block */
    dsq_fp8_decoder e4m3, e5m2;
    int lut_simd;    /* BF16 through tables with AVX-512BW */
    st_ref *list;    /* the listed tensors */
    size_t n_list;
    size_t *pos;     /* per shard tensor (shard_base[shard] + index): its list position */
    size_t *shard_base;
} hf_src;

static void hf_close(void *impl) {
    hf_src *s = impl;
    if (s == NULL)
        return;
    dsq_ckpt_close(s->ck);
    free(s->dir);
    free(s->list);
    free(s->pos);
    free(s->shard_base);
    free(s);
}

static dsq_status hf_config(void *impl, dsq_model_config *cfg, dsq_err *err) {
    const hf_src *s = impl;
    if (!s->has_cfg)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "%s: opened for its tensors only", s->dir);
    *cfg = s->cfg;
    return DSQ_OK;
}

/* The scale of FP8 weight `name` (and where it is), or NULL. */
static const dsq_tensor_view *scale_of(const hf_src *s, const char *name, size_t *shard,
                                       size_t *index) {
    char buf[512];
    const int n = snprintf(buf, sizeof buf, "%s_scale_inv", name);
    if (n < 0 || (size_t)n >= sizeof buf)
        return NULL;
    return dsq_ckpt_find(s->ck, buf, shard, index);
}

static void set_part(const hf_src *s, size_t shard, size_t index, dsq_wpart *p) {
    const dsq_st *sh = dsq_ckpt_shard(s->ck, shard);
    const dsq_tensor_view *v = dsq_st_tensor(sh, index);
    p->file = dsq_st_path(sh);
    p->offset = dsq_st_tensor_offset(sh, index);
    p->nbytes = v->nbytes;
    p->data = v->data;
}

/* The handle of tensor `index` of shard `shard`. */
static dsq_status describe(const hf_src *s, size_t shard, size_t index, dsq_wtensor *out,
                           dsq_err *err) {
    const dsq_tensor_view *v = dsq_st_tensor(dsq_ckpt_shard(s->ck, shard), index);
    memset(out, 0, sizeof *out);
    out->name = v->name;
    out->index = s->pos[s->shard_base[shard] + index];
    out->dtype = v->dtype;
    out->layout = DSQ_WLAYOUT_PLAIN;
    dsq_wtensor_set_shape(out, v->ndim, v->shape);
    out->block_rows = out->block_cols = 1;
    out->n_parts = 1;
    set_part(s, shard, index, &out->part[0]);
    out->src_.p[0] = v;
    out->src_.i[0] = (int64_t)shard;
    out->src_.i[1] = (int64_t)index;
    switch (v->dtype) {
    case DSQ_DTYPE_F32:
    case DSQ_DTYPE_F16:
    case DSQ_DTYPE_BF16:
        out->readable = 1;
        return DSQ_OK;
    case DSQ_DTYPE_F8_E4M3:
    case DSQ_DTYPE_F8_E5M2: {
        size_t ssh = 0, six = 0;
        const dsq_tensor_view *sc = scale_of(s, v->name, &ssh, &six);
        const char *shard_name = dsq_ckpt_shard_name(s->ck, shard);
        if (sc == NULL)
            return dsq_err_set(err, DSQ_FORMAT, "%s: tensor '%s' is %s but has no '%s_scale_inv'",
                               shard_name, v->name, dsq_dtype_name(v->dtype), v->name);
        const dsq_status st = dsq_fp8_check_scale(dsq_ckpt_shard_name(s->ck, ssh), v, sc, s->bm,
                                                  s->bn, err);
        if (st != DSQ_OK)
            return st;
        out->layout = DSQ_WLAYOUT_FP8_BLOCK;
        out->block_rows = s->bm;
        out->block_cols = s->bn;
        out->n_parts = 2;
        set_part(s, ssh, six, &out->part[1]);
        out->src_.p[1] = sc;
        out->readable = 1;
        return DSQ_OK;
    }
    default:
        return DSQ_OK; /* described for a byte copy, not decoded */
    }
}

static size_t hf_count(void *impl) {
    return ((const hf_src *)impl)->n_list;
}

static const char *hf_name(void *impl, size_t i) {
    const hf_src *s = impl;
    return dsq_st_tensor(dsq_ckpt_shard(s->ck, s->list[i].shard), s->list[i].index)->name;
}

static const char *hf_path(void *impl) {
    return dsq_ckpt_dir(((const hf_src *)impl)->ck);
}

static dsq_status hf_at(void *impl, size_t i, dsq_wtensor *out, dsq_err *err) {
    const hf_src *s = impl;
    return describe(s, s->list[i].shard, s->list[i].index, out, err);
}

static dsq_status hf_find(void *impl, const char *name, dsq_wtensor *out, dsq_err *err) {
    const hf_src *s = impl;
    size_t shard = 0, index = 0;
    if (dsq_ckpt_find(s->ck, name, &shard, &index) == NULL)
        return dsq_err_set(err, DSQ_NOT_FOUND, "%s: no tensor '%s'", dsq_ckpt_dir(s->ck), name);
    return describe(s, shard, index, out, err);
}

/* The bytes of rows [row0, row0 + nrows) of part k (esize bytes an element); for part 1,
 * the scale, rows are its block rows. Every read of tensor data goes through here. */
static const uint8_t *hf_bytes(const dsq_wtensor *t, int k, int64_t row0, int64_t cols,
                               size_t esize) {
    const dsq_tensor_view *v = t->src_.p[k];
    return (const uint8_t *)v->data + (size_t)row0 * (size_t)cols * esize;
}

static dsq_status hf_read_f32(void *impl, const dsq_wtensor *t, int64_t row0, int64_t nrows,
                              float *dst, dsq_err *err) {
    const hf_src *s = impl;
    const int64_t cols = t->cols;
    const size_t n = (size_t)nrows * (size_t)cols;
    (void)err;
    switch (t->dtype) {
    case DSQ_DTYPE_F32:
        memcpy(dst, hf_bytes(t, 0, row0, cols, 4), n * 4); /* may be unaligned */
        break;
    case DSQ_DTYPE_BF16:
        dsq_bf16_row_to_f32(hf_bytes(t, 0, row0, cols, 2), dst, (int64_t)n);
        break;
    case DSQ_DTYPE_F16: {
        const uint8_t *p = hf_bytes(t, 0, row0, cols, 2);
        for (size_t i = 0; i < n; i++)
            dst[i] = dsq_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        break;
    }
    default: { /* FP8, checked by describe */
        const dsq_fp8_decoder *d = t->dtype == DSQ_DTYPE_F8_E4M3 ? &s->e4m3 : &s->e5m2;
        const dsq_tensor_view *sc = t->src_.p[1];
        const int64_t scols = sc->shape[1];
        for (int64_t r = 0; r < nrows; r++) {
            const int64_t i = row0 + r;
            const uint8_t *q = hf_bytes(t, 0, i, cols, 1);
            dsq_fp8_row_f32(d, q, hf_bytes(t, 1, i / t->block_rows, scols, 4), cols,
                            t->block_cols, dst + (size_t)r * (size_t)cols);
            /* the next row's codes, while this one is quantized (row-at-a-time readers) */
            if (i + 1 < t->rows)
                for (int64_t j = 0; j < cols; j += 64)
                    __builtin_prefetch(q + cols + j);
        }
        break;
    }
    }
    return DSQ_OK;
}

static dsq_status hf_read_bf16(void *impl, const dsq_wtensor *t, int64_t row0, int64_t nrows,
                               uint16_t *dst, dsq_err *err) {
    const hf_src *s = impl;
    dsq_status st = DSQ_OK;
    const int64_t cols = t->cols;
    const size_t n = (size_t)nrows * (size_t)cols;
    uint16_t *luts = NULL;
    switch (t->dtype) {
    case DSQ_DTYPE_BF16:
        memcpy(dst, hf_bytes(t, 0, row0, cols, 2), n * 2);
        break;
    case DSQ_DTYPE_F32: {
        const uint8_t *p = hf_bytes(t, 0, row0, cols, 4);
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            dst[i] = dsq_f32_to_bf16(f);
        }
        break;
    }
    case DSQ_DTYPE_F16: {
        const uint8_t *p = hf_bytes(t, 0, row0, cols, 2);
        for (size_t i = 0; i < n; i++)
            dst[i] = dsq_f32_to_bf16(dsq_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8))));
        break;
    }
    default: { /* FP8: one table per block (convert/fp8_bf16.c's arithmetic) */
        const float *dec = t->dtype == DSQ_DTYPE_F8_E4M3 ? s->e4m3.dec : s->e5m2.dec;
        const dsq_tensor_view *sc = t->src_.p[1];
        const int64_t scols = sc->shape[1];
        luts = malloc((size_t)scols * 256 * sizeof *luts);
        DSQ_CHECK(luts != NULL, DSQ_NOMEM, err, "out of memory");
        int64_t have = -1; /* the block row whose tables are in luts */
        for (int64_t r = 0; r < nrows; r++) {
            const int64_t i = row0 + r, rb = i / t->block_rows;
            if (rb != have) {
                dsq_fp8_build_luts(dec, hf_bytes(t, 1, rb, scols, 4), scols, luts);
                have = rb;
            }
            dsq_fp8_row_bf16(hf_bytes(t, 0, i, cols, 1), dst + (size_t)r * (size_t)cols, cols,
                             t->block_cols, luts, s->lut_simd);
        }
        break;
    }
    }
cleanup:
    free(luts);
    return st;
}

static void hf_release(void *impl, const dsq_wtensor *t) {
    const hf_src *s = impl;
    dsq_st_release(dsq_ckpt_shard(s->ck, (size_t)t->src_.i[0]), (size_t)t->src_.i[1]);
}

static dsq_status hf_tokenizer(void *impl, dsq_tokenizer **out, dsq_err *err) {
    const hf_src *s = impl;
    return dsq_tokenizer_from_hf_dir(out, s->dir, err);
}

static const dsq_wsource_ops hf_ops = {
    .kind = "safetensors",
    .count = hf_count,
    .name = hf_name,
    .at = hf_at,
    .find = hf_find,
    .read_f32 = hf_read_f32,
    .read_bf16 = hf_read_bf16,
    .path = hf_path,
    .config = hf_config,
    .tokenizer = hf_tokenizer,
    .gguf = NULL,
    .release = hf_release,
    .close = hf_close,
};

/* Every tensor but the scales their FP8 weights own. */
static dsq_status build_list(hf_src *s, dsq_err *err) {
    const size_t ns = dsq_ckpt_shard_count(s->ck);
    size_t total = 0;
    s->shard_base = malloc((ns + 1) * sizeof *s->shard_base);
    if (s->shard_base == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    for (size_t sh = 0; sh < ns; sh++) {
        s->shard_base[sh] = total;
        total += dsq_st_count(dsq_ckpt_shard(s->ck, sh));
    }
    s->list = malloc((total + 1) * sizeof *s->list);
    s->pos = malloc((total + 1) * sizeof *s->pos);
    if (s->list == NULL || s->pos == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    for (size_t sh = 0; sh < ns; sh++) {
        const dsq_st *st = dsq_ckpt_shard(s->ck, sh);
        for (size_t i = 0; i < dsq_st_count(st); i++) {
            const char *name = dsq_st_tensor(st, i)->name;
            const size_t n = strlen(name), k = strlen("_scale_inv");
            char base[512];
            if (n > k && n - k < sizeof base && strcmp(name + n - k, "_scale_inv") == 0) {
                memcpy(base, name, n - k);
                base[n - k] = '\0';
                const dsq_tensor_view *w = dsq_ckpt_find(s->ck, base, NULL, NULL);
                s->pos[s->shard_base[sh] + i] = SIZE_MAX;
                if (w != NULL && dsq_fp8_is_fp8(w->dtype))
                    continue; /* part of its weight */
            }
            s->pos[s->shard_base[sh] + i] = s->n_list;
            s->list[s->n_list++] = (st_ref){sh, i};
        }
    }
    return DSQ_OK;
}

/* config.json: the model description unless tensors_only, and the FP8 block size. Without
 * config.json a tensors-only source assumes the default block. */
static dsq_status read_config(hf_src *s, int tensors_only, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = dsq_path_join(s->ck != NULL ? dsq_ckpt_dir(s->ck) : s->dir, "config.json");
    char *text = NULL;
    size_t len = 0;
    int found = 0;
    dsq_err e2 = {0};
    s->bm = s->bn = DSQ_FP8_DEFAULT_BLOCK;
    DSQ_CHECK(path != NULL, DSQ_NOMEM, err, "out of memory");
    st = dsq_read_small_file(path, MAX_CONFIG, &text, &len, &e2);
    if (st == DSQ_NOT_FOUND && tensors_only) {
        st = DSQ_OK;
        goto cleanup;
    }
    DSQ_CHECK(st == DSQ_OK, st, err, "%s", e2.text);
    if (tensors_only) {
        DSQ_TRY(dsq_config_fp8_block(text, len, path, &s->bm, &s->bn, &found, err));
    } else {
        DSQ_TRY(dsq_model_config_parse(text, len, path, &s->cfg, err));
        s->has_cfg = 1;
        s->bm = s->cfg.fp8_block_rows;
        s->bn = s->cfg.fp8_block_cols;
    }
cleanup:
    free(path);
    free(text);
    return st;
}

dsq_status dsq__wsource_open_hf(dsq_wsource **out, const char *dir, const dsq_wsource_opts *opts,
                                int tensors_only, dsq_err *err) {
    dsq_status st = DSQ_OK;
    hf_src *s = NULL;
    *out = NULL;
    /* the forward pass needs a directory (config.json, tokenizer); for its tensors only,
     * whatever the checkpoint reader takes, with config.json beside it */
    DSQ_CHECK(tensors_only || dsq_is_dir(dir), DSQ_NOT_FOUND, err,
              "%s: not a checkpoint directory", dir);
    s = calloc(1, sizeof *s);
    DSQ_CHECK(s != NULL, DSQ_NOMEM, err, "out of memory");
    s->dir = strdup(dir);
    DSQ_CHECK(s->dir != NULL, DSQ_NOMEM, err, "out of memory");
    const int round_bf16 = opts == NULL || !opts->fp8_no_bf16_round;
    dsq_fp8_decoder_init(&s->e4m3, DSQ_DTYPE_F8_E4M3, round_bf16);
    dsq_fp8_decoder_init(&s->e5m2, DSQ_DTYPE_F8_E5M2, round_bf16);
    s->lut_simd = dsq__fp8_simd_available();
    if (!tensors_only)
        DSQ_TRY(read_config(s, 0, err));
    DSQ_TRY(dsq_ckpt_open(&s->ck, dir, err));
    if (tensors_only)
        DSQ_TRY(read_config(s, 1, err));
    DSQ_TRY(build_list(s, err));
    st = dsq_wsource_wrap(out, &hf_ops, s, err);
    s = NULL; /* owned by the wrapper, or freed by it */
cleanup:
    hf_close(s);
    return st;
}
