/* weights/source_gguf.c: a llama.cpp GGUF file (or split set) as a weight source.
 *
 * Its tensors are listed under their GGUF names, for any architecture (`dsq quantize`
 * requantizes whatever llama.cpp wrote): shape = ne reversed, one part (its bytes in the
 * file), the ggml block type as the block structure. Opened for the forward pass (llama,
 * deepseek2), the hyper-parameters are read from the metadata and HF names are answered too.
 *
 * The forward pass asks for Hugging Face names; the name table `dsq quantize`
 * writes with (model/tensor_names.h) maps each to the GGUF tensor llama.cpp's
 * convert_hf_to_gguf.py writes for it, and its form says how to read it:
 *   PLAIN   the tensor itself; HF shape = ne reversed.
 *   EXPERT  expert E of a 3-D ffn_*_exps tensor [E][out][in] (ne = [in, out, E]).
 *   KVB     kv_b_proj [H·(nope+v), C]: attn_kv_b.weight when the file has the
 *           legacy layout, else rebuilt from attn_k_b [H][C][nope] (rows of
 *           kv_b for j < nope are its columns: kv_b[h·(nope+v)+j][c] =
 *           k_b[h][c][j]) and attn_v_b [H][v][C] (rows taken as they are).
 * Every row is decoded with dsq_dequantize_row (decode_row: the one place tensor
 * bytes are read), so F32, F16, BF16 and every GGUF block type dsq knows read the
 * same way.
 *
 * llama's attn_q/attn_k rows are permuted by the converter (specs/formats.md
 * §3.2: row 2i+j of a head is HF row j·d/2+i), which turns HF's rotate-half
 * pairs (i, i+d/2) into adjacent pairs (2i, 2i+1); the rows are read as
 * stored and the config says DSQ_ROPE_PAIRS_ADJACENT. q·k is a sum over the
 * head's dims, so the permutation changes nothing else. DeepSeek's rope
 * slice is adjacent-pair in both forms.
 *
 * The hyper-parameters come from the `<arch>.*` metadata keys, the tokenizer
 * from `tokenizer.ggml.*`. A split GGUF is opened by its first file
 * (formats/gguf_split.h): metadata from that file, tensors from all. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "formats/gguf.h"
#include "formats/gguf_split.h"
#include "model/tensor_names.h"
#include "quantize/quant.h"
#include "weights/source.h"

typedef enum map_kind { MAP_PLAIN, MAP_EXPERT, MAP_KVB } map_kind;

typedef struct gguf_src {
    dsq_gguf_set *set;
    const dsq_gguf *g; /* metadata: the set's first file */
    char *path;
    int has_cfg;       /* the model description was read (not opened for tensors only) */
    dsq_model_config cfg;
} gguf_src;

static const dsq_gguf_tensor *tensor(const gguf_src *s, const char *name) {
    const int64_t i = dsq_gguf_set_find_tensor(s->set, name);
    return i < 0 ? NULL : dsq_gguf_set_tensor_at(s->set, i);
}

static dsq_status not_found(const gguf_src *s, const char *name, const char *gname,
                            dsq_err *err) {
    return dsq_err_set(err, DSQ_NOT_FOUND, "%s: no tensor '%s'%s%s%s", s->path, name,
                       gname ? " (GGUF '" : "", gname ? gname : "", gname ? "')" : "");
}

static dsq_status row_bytes(const gguf_src *s, const dsq_gguf_tensor *t, size_t *out,
                            dsq_err *err) {
    const dsq_status st = dsq_quant_row_size(t->dtype, t->ne[0], out);
    if (st != DSQ_OK)
        return dsq_err_set(err, st == DSQ_UNSUPPORTED ? DSQ_UNSUPPORTED : DSQ_FORMAT,
                           "%s: tensor '%s' is %s, which dsq cannot decode", s->path, t->name,
                           dsq_dtype_name(t->dtype));
    return DSQ_OK;
}

/* Part `k` of out: the bytes [off, off + n) of stored tensor i. */
static void set_part(const gguf_src *s, int64_t i, uint64_t off, uint64_t n, dsq_wtensor *out,
                     int k) {
    const dsq_gguf_tensor *t = dsq_gguf_set_tensor_at(s->set, i);
    const int f = dsq_gguf_set_tensor_file(s->set, i);
    dsq_wpart *p = &out->part[k];
    p->file = dsq_gguf_set_path(s->set, f);
    p->offset = dsq_gguf_data_offset(dsq_gguf_set_file(s->set, f)) + t->offset + off;
    p->nbytes = n;
    p->data = t->data + off;
}

/* A stored tensor under its own name: shape = ne reversed, its bytes the one part. */
static void describe_native(const gguf_src *s, int64_t i, dsq_wtensor *out) {
    const dsq_gguf_tensor *t = dsq_gguf_set_tensor_at(s->set, i);
    int64_t shape[DSQ_MAX_DIMS];
    size_t rb = 0;
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->index = (size_t)i;
    out->dtype = t->dtype;
    for (uint32_t d = 0; d < t->n_dims; d++)
        shape[d] = t->ne[t->n_dims - 1 - d];
    dsq_wtensor_set_shape(out, (int)t->n_dims, shape);
    const uint64_t bs = dsq_dtype_get(t->dtype)->block_size;
    out->layout = bs > 1 ? DSQ_WLAYOUT_GGUF_BLOCK : DSQ_WLAYOUT_PLAIN;
    out->block_rows = 1;
    out->block_cols = (int64_t)(bs > 1 ? bs : 1);
    out->readable = dsq_quant_row_size(t->dtype, t->ne[0], &rb) == DSQ_OK;
    out->n_parts = 1;
    set_part(s, i, 0, t->nbytes, out, 0);
    out->src_.kind = MAP_PLAIN;
    out->src_.p[0] = t;
    out->src_.i[1] = (int64_t)rb;
}

/* An HF name through the table: PLAIN as it is stored, EXPERT one slice of a 3-D tensor,
 * KVB the legacy attn_kv_b or the join of attn_k_b and attn_v_b. */
static dsq_status resolve(const gguf_src *s, const char *name, dsq_wtensor *out, dsq_err *err) {
    /* model/tensor_names.h: kv_b_proj feeds attn_kv_b, attn_k_b and attn_v_b, in that order */
    const dsq_tname *nm[3];
    int layer = -1, expert = -1;
    char gname[160];
    size_t rb;
    dsq_status st;
    const size_t n_nm = dsq_tname_from_hf(name, nm, 3, &layer, &expert);
    if (n_nm == 0)
        return not_found(s, name, NULL, err);
    dsq_tname_format(gname, sizeof gname, nm[0]->gguf, layer, expert);
    const map_kind kind = nm[0]->form == DSQ_TNAME_EXPERTS ? MAP_EXPERT
                          : nm[0]->form == DSQ_TNAME_KV_B  ? MAP_KVB
                                                           : MAP_PLAIN;
    const int64_t gi = dsq_gguf_set_find_tensor(s->set, gname);
    const dsq_gguf_tensor *t = gi < 0 ? NULL : dsq_gguf_set_tensor_at(s->set, gi);
    if (kind == MAP_PLAIN) {
        if (t == NULL)
            return not_found(s, name, gname, err);
        describe_native(s, gi, out);
        return DSQ_OK;
    }
    if (kind == MAP_EXPERT) {
        if (t == NULL)
            return not_found(s, name, gname, err);
        if (t->n_dims != 3 || expert >= t->ne[2])
            return dsq_err_set(err, DSQ_FORMAT, "%s: '%s' has no expert %d (%u dims, %lld experts)",
                               s->path, gname, expert, t->n_dims,
                               (long long)(t->n_dims == 3 ? t->ne[2] : 0));
        describe_native(s, gi, out);
        const int64_t shape[2] = {t->ne[1], t->ne[0]};
        dsq_wtensor_set_shape(out, 2, shape);
        const uint64_t slice = (uint64_t)out->src_.i[1] * (uint64_t)t->ne[1];
        set_part(s, gi, slice * (uint64_t)expert, slice, out, 0);
        out->index = SIZE_MAX;
        out->src_.kind = MAP_EXPERT;
        out->src_.i[0] = expert;
        return DSQ_OK;
    }
    /* KVB */
    if (!s->has_cfg)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "%s: '%s' needs the model description", s->path,
                           name);
    const dsq_model_config *c = &s->cfg;
    const int64_t H = c->n_heads, nope = c->qk_nope_dim, vd = c->v_head_dim,
                  C = c->kv_lora_rank;
    if (t != NULL) {
        if (t->n_dims != 2 || t->ne[0] != C || t->ne[1] != H * (nope + vd))
            return dsq_err_set(err, DSQ_FORMAT, "%s: '%s' is not [%lld, %lld]", s->path, gname,
                               (long long)(H * (nope + vd)), (long long)C);
        describe_native(s, gi, out);
        if ((st = row_bytes(s, t, &rb, err)) != DSQ_OK)
            return st;
        return DSQ_OK;
    }
    char kb[160], vb[160];
    if (n_nm < 3)
        return not_found(s, name, gname, err);
    dsq_tname_format(kb, sizeof kb, nm[1]->gguf, layer, 0);
    dsq_tname_format(vb, sizeof vb, nm[2]->gguf, layer, 0);
    const int64_t ki = dsq_gguf_set_find_tensor(s->set, kb), vi = dsq_gguf_set_find_tensor(s->set, vb);
    if (ki < 0 || vi < 0)
        return not_found(s, name, ki < 0 ? kb : vb, err);
    const dsq_gguf_tensor *k = dsq_gguf_set_tensor_at(s->set, ki),
                          *v = dsq_gguf_set_tensor_at(s->set, vi);
    if (k->n_dims != 3 || k->ne[0] != nope || k->ne[1] != C || k->ne[2] != H ||
        v->n_dims != 3 || v->ne[0] != C || v->ne[1] != vd || v->ne[2] != H)
        return dsq_err_set(err, DSQ_FORMAT,
                           "%s: '%s' / '%s' are not [%lld, %lld, %lld] / [%lld, %lld, %lld] "
                           "(ne order)",
                           s->path, kb, vb, (long long)nope, (long long)C, (long long)H,
                           (long long)C, (long long)vd, (long long)H);
    size_t vrb;
    if ((st = row_bytes(s, k, &rb, err)) != DSQ_OK || (st = row_bytes(s, v, &vrb, err)) != DSQ_OK)
        return st;
    describe_native(s, ki, out);
    const int64_t shape[2] = {H * (nope + vd), C};
    dsq_wtensor_set_shape(out, 2, shape);
    out->layout = DSQ_WLAYOUT_DERIVED;
    out->index = SIZE_MAX;
    out->n_parts = 2;
    set_part(s, vi, 0, v->nbytes, out, 1);
    out->src_.kind = MAP_KVB;
    out->src_.p[1] = k;
    out->src_.p[2] = v;
    out->src_.i[2] = (int64_t)vrb;
    return DSQ_OK;
}

static size_t gguf_count(void *impl) {
    return (size_t)dsq_gguf_set_tensor_count(((const gguf_src *)impl)->set);
}

static const char *gguf_name(void *impl, size_t i) {
    return dsq_gguf_set_tensor_at(((const gguf_src *)impl)->set, (int64_t)i)->name;
}

static const char *gguf_path(void *impl) {
    return ((const gguf_src *)impl)->path;
}

static dsq_status gguf_at(void *impl, size_t i, dsq_wtensor *out, dsq_err *err) {
    (void)err;
    describe_native(impl, (int64_t)i, out);
    return DSQ_OK;
}

/* GGUF names as they are stored, else (llama, deepseek2) the HF names of the table. */
static dsq_status gguf_find(void *impl, const char *name, dsq_wtensor *out, dsq_err *err) {
    const gguf_src *s = impl;
    const int64_t i = dsq_gguf_set_find_tensor(s->set, name);
    if (i >= 0) {
        describe_native(s, i, out);
        return DSQ_OK;
    }
    const dsq_status st = resolve(s, name, out, err);
    if (st == DSQ_OK && !out->readable) {
        size_t rb;
        return row_bytes(s, out->src_.p[0], &rb, err);
    }
    return st;
}

/* Decodes row `row` (counted in ne[1..] order, i.e. the flattened rows) of t, whose rows are
 * rb bytes. Every read of tensor data goes through here. */
static dsq_status decode_row(const gguf_src *s, const dsq_gguf_tensor *t, size_t rb, int64_t row,
                             float *y, dsq_err *err) {
    const dsq_status st = dsq_dequantize_row(t->dtype, t->data + (size_t)row * rb, y, t->ne[0]);
    if (st != DSQ_OK)
        return dsq_err_set(err, st, "%s: tensor '%s': cannot decode %s", s->path, t->name,
                           dsq_dtype_name(t->dtype));
    return DSQ_OK;
}

static dsq_status gguf_read_f32(void *impl, const dsq_wtensor *w, int64_t row0, int64_t nrows,
                                float *dst, dsq_err *err) {
    const gguf_src *s = impl;
    dsq_status st = DSQ_OK;
    float *kbuf = NULL;
    const dsq_gguf_tensor *t = w->src_.p[0];
    const size_t rb = (size_t)w->src_.i[1];
    const int64_t cols = w->cols;
    if (w->src_.kind != MAP_KVB) {
        const int64_t base = w->src_.kind == MAP_EXPERT ? w->src_.i[0] * t->ne[1] : 0;
        for (int64_t i = 0; i < nrows; i++)
            DSQ_TRY(decode_row(s, t, rb, base + row0 + i, dst + (size_t)i * (size_t)cols, err));
        goto cleanup;
    }
    const dsq_gguf_tensor *kb = w->src_.p[1], *vb = w->src_.p[2];
    const dsq_model_config *c = &s->cfg;
    const int64_t nope = c->qk_nope_dim, per = nope + c->v_head_dim, C = c->kv_lora_rank;
    int64_t kb_head = -1; /* head whose k_b slice is in kbuf [C][nope] */
    for (int64_t i = 0; i < nrows; i++) {
        const int64_t row = row0 + i, h = row / per, j = row % per;
        float *y = dst + (size_t)i * (size_t)cols;
        if (j >= nope) {
            DSQ_TRY(decode_row(s, vb, (size_t)w->src_.i[2], h * c->v_head_dim + (j - nope), y,
                               err));
            continue;
        }
        if (kbuf == NULL) {
            kbuf = malloc((size_t)C * (size_t)nope * sizeof *kbuf);
            DSQ_CHECK(kbuf != NULL, DSQ_NOMEM, err, "out of memory");
        }
        if (kb_head != h) {
            for (int64_t cc = 0; cc < C; cc++)
                DSQ_TRY(decode_row(s, kb, rb, h * C + cc, kbuf + (size_t)cc * (size_t)nope, err));
            kb_head = h;
        }
        for (int64_t cc = 0; cc < C; cc++)
            y[cc] = kbuf[(size_t)cc * (size_t)nope + (size_t)j];
    }
cleanup:
    free(kbuf);
    return st;
}

static dsq_status gguf_config(void *impl, dsq_model_config *cfg, dsq_err *err) {
    const gguf_src *s = impl;
    if (!s->has_cfg)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "%s: opened for its tensors only", s->path);
    *cfg = s->cfg;
    return DSQ_OK;
}

static const struct dsq_gguf *gguf_meta(void *impl) {
    return ((const gguf_src *)impl)->g;
}

static void gguf_close(void *impl) {
    gguf_src *s = impl;
    if (s == NULL)
        return;
    dsq_gguf_set_close(s->set);
    free(s->path);
    free(s);
}

/* ---- metadata ---- */

/* `<arch>.<key>` (arch == NULL: key as given) as an integer; def when absent
 * and not required. */
static dsq_status md_int(const gguf_src *s, const char *arch, const char *key, int req,
                         int64_t def, int64_t lo, int64_t hi, int64_t *out, dsq_err *err) {
    char k[160];
    snprintf(k, sizeof k, "%s%s%s", arch ? arch : "", arch ? "." : "", key);
    dsq_gguf_val v;
    if (dsq_gguf_get(s->g, k, &v, NULL) != DSQ_OK) {
        if (req)
            return dsq_err_set(err, DSQ_FORMAT, "%s: metadata key '%s' is missing", s->path, k);
        *out = def;
    } else {
        const dsq_status st = dsq_gguf_val_as_i64(&v, out, err);
        if (st != DSQ_OK)
            return st;
    }
    /* a default derived from other keys is checked too */
    if (*out < lo || *out > hi)
        return dsq_err_set(err, DSQ_FORMAT, "%s: metadata '%s' = %lld is outside [%lld, %lld]",
                           s->path, k, (long long)*out, (long long)lo, (long long)hi);
    return DSQ_OK;
}

static dsq_status md_num(const gguf_src *s, const char *arch, const char *key, int req,
                         double def, double *out, dsq_err *err) {
    char k[160];
    snprintf(k, sizeof k, "%s%s%s", arch ? arch : "", arch ? "." : "", key);
    dsq_gguf_val v;
    if (dsq_gguf_get(s->g, k, &v, NULL) != DSQ_OK) {
        if (req)
            return dsq_err_set(err, DSQ_FORMAT, "%s: metadata key '%s' is missing", s->path, k);
        *out = def;
        return DSQ_OK;
    }
    dsq_status st = dsq_gguf_val_as_f64(&v, out, err);
    if (st == DSQ_OK && !isfinite(*out))
        st = dsq_err_set(err, DSQ_FORMAT, "%s: metadata '%s' is not finite", s->path, k);
    return st;
}

/* A string key compared with `want`; 0 when absent. */
static int md_str_is(const gguf_src *s, const char *key, const char *want) {
    const char *p;
    size_t n;
    if (dsq_gguf_get_str(s->g, key, &p, &n, NULL) != DSQ_OK)
        return 0;
    return n == strlen(want) && memcmp(p, want, n) == 0;
}

static int any_layer_has(const gguf_src *s, int64_t n_layers, const char *suffix) {
    char b[160];
    for (int64_t l = 0; l < n_layers; l++) {
        snprintf(b, sizeof b, "blk.%lld.%s", (long long)l, suffix);
        if (tensor(s, b) != NULL)
            return 1;
    }
    return 0;
}

/* rope_freqs.weight, the converter's form of llama3 rope scaling: llama.cpp loads it as
 * {n_rot/2} (any n_dims with that element layout) and ggml_rope_ext asserts F32. The
 * values divide angles, so each must be finite and positive. */
static dsq_status read_rope_freqs(const gguf_src *s, dsq_rope_config *r, dsq_err *err) {
    const dsq_gguf_tensor *t = tensor(s, "rope_freqs.weight");
    const int64_t half = r->dim / 2;
    if (t == NULL)
        return DSQ_OK;
    if (t->dtype != DSQ_DTYPE_F32 || t->ne[0] != half || t->ne[1] != 1 || t->ne[2] != 1 ||
        t->ne[3] != 1)
        return dsq_err_set(err, DSQ_FORMAT,
                           "%s: rope_freqs.weight is %s [%lld, %lld, %lld, %lld], expected F32 "
                           "[%lld] (rope.dimension_count / 2)",
                           s->path, dsq_dtype_name(t->dtype), (long long)t->ne[0],
                           (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                           (long long)half);
    if (half > DSQ_ROPE_MAX_FREQ_FACTORS)
        return dsq_err_set(err, DSQ_UNSUPPORTED,
                           "%s: rope_freqs.weight has %lld values, more than the %d dsq holds",
                           s->path, (long long)half, DSQ_ROPE_MAX_FREQ_FACTORS);
    for (int64_t i = 0; i < half; i++) {
        float v;
        memcpy(&v, t->data + 4 * i, sizeof v); /* alignment may be < 4 */
        if (!isfinite(v) || !(v > 0.0f))
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s: rope_freqs.weight[%lld] = %g is not a positive number",
                               s->path, (long long)i, (double)v);
        r->freq_factors[i] = v;
    }
    r->n_freq_factors = half;
    return DSQ_OK;
}

/* deepseek2's MoE keys: experts, groups, routing. */
static dsq_status read_moe(const gguf_src *s, const char *a, dsq_model_config *c, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t BIG = (int64_t)1 << 40;
    DSQ_TRY(md_int(s, a, "expert_count", 0, 0, 0, 1 << 20, &c->n_experts, err));
    if (c->n_experts > 0) {
        DSQ_TRY(md_int(s, a, "expert_used_count", 1, 0, 1, c->n_experts, &c->n_experts_used,
                       err));
        DSQ_TRY(md_int(s, a, "expert_shared_count", 0, 0, 0, 1 << 10, &c->n_shared_experts,
                       err));
        DSQ_TRY(md_int(s, a, "expert_feed_forward_length", 1, 0, 1, BIG, &c->moe_ffn_dim,
                       err));
        DSQ_TRY(md_int(s, a, "expert_group_count", 0, 1, 1, DSQ_MOE_MAX_GROUPS, &c->n_group,
                       err));
        DSQ_TRY(md_int(s, a, "expert_group_used_count", 0, c->n_group, 1, c->n_group,
                       &c->topk_group, err));
        DSQ_TRY(md_int(s, a, "leading_dense_block_count", 0, 0, 0, BIG, &c->first_dense,
                       err));
        c->moe_layer_freq = 1;
        DSQ_TRY(md_num(s, a, "expert_weights_scale", 0, 1.0, &c->routed_scaling, err));
        int64_t norm, gating;
        DSQ_TRY(md_int(s, a, "expert_weights_norm", 0, 0, 0, 1, &norm, err));
        c->norm_topk_prob = (int)norm;
        DSQ_TRY(md_int(s, a, "expert_gating_func", 0, 1, 1, 2, &gating, err));
        c->scoring = gating == 2 ? DSQ_MOE_SIGMOID : DSQ_MOE_SOFTMAX;
        DSQ_CHECK(c->n_experts % c->n_group == 0, DSQ_FORMAT, err,
                  "%s: expert_count %lld is not a multiple of expert_group_count %lld",
                  s->path, (long long)c->n_experts, (long long)c->n_group);
        /* GGUF does not name the routing method: the score-correction
         * bias means V3's noaux_tc, groups alone V2's group-limited greedy */
        if (any_layer_has(s, c->n_layers, "exp_probs_b.bias"))
            c->topk_method = DSQ_MOE_TOPK_GROUP_TOP2SUM;
        else
            c->topk_method = c->n_group > 1 ? DSQ_MOE_TOPK_GROUP_MAX : DSQ_MOE_TOPK_GREEDY;
        if (c->topk_method == DSQ_MOE_TOPK_GROUP_TOP2SUM)
            DSQ_CHECK(c->n_experts / c->n_group >= 2, DSQ_FORMAT, err,
                      "%s: noaux_tc routing needs at least 2 experts per group", s->path);
        if (c->topk_method != DSQ_MOE_TOPK_GREEDY)
            DSQ_CHECK(c->n_experts_used <= c->topk_group * (c->n_experts / c->n_group),
                      DSQ_FORMAT, err,
                      "%s: expert_used_count exceeds the experts of the used groups",
                      s->path);
    }
cleanup:
    return st;
}

static dsq_status read_config(gguf_src *s, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_model_config c;
    memset(&c, 0, sizeof c);
    const char *a;
    if (md_str_is(s, "general.architecture", "llama")) {
        c.arch = DSQ_ARCH_LLAMA;
        a = "llama";
    } else if (md_str_is(s, "general.architecture", "deepseek2")) {
        c.arch = DSQ_ARCH_DEEPSEEK_V3;
        a = "deepseek2";
    } else {
        const char *p = "?";
        size_t n = 1;
        dsq_gguf_get_str(s->g, "general.architecture", &p, &n, NULL);
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err,
                  "%s: GGUF architecture '%.*s' is not supported (llama and deepseek2 are)",
                  s->path, (int)(n > 64 ? 64 : n), p);
    }
    const int64_t BIG = (int64_t)1 << 40;
    const dsq_gguf_tensor *emb = tensor(s, "token_embd.weight");
    DSQ_CHECK(emb != NULL && emb->n_dims == 2, DSQ_FORMAT, err,
              "%s: no 2-D token_embd.weight tensor", s->path);
    DSQ_TRY(md_int(s, a, "vocab_size", 0, emb->ne[1], 1, 1 << 24, &c.vocab, err));
    DSQ_TRY(md_int(s, a, "embedding_length", 1, 0, 1, 1 << 20, &c.dim, err));
    DSQ_TRY(md_int(s, a, "block_count", 1, 0, 1, 1 << 12, &c.n_layers, err));
    /* Trailing multi-token-prediction blocks (`dsq quantize --keep-mtp`, llama.cpp's NextN
     * layout) are not part of the next-token forward pass: llama.cpp's graphs run
     * n_layer - nextn_predict_layers blocks and only load the rest, and so does dsq. */
    int64_t n_nextn;
    DSQ_TRY(md_int(s, a, "nextn_predict_layers", 0, 0, 0, c.n_layers - 1, &n_nextn, err));
    c.n_layers -= n_nextn;
    DSQ_TRY(md_int(s, a, "attention.head_count", 1, 0, 1, 1 << 14, &c.n_heads, err));
    DSQ_TRY(md_int(s, a, "attention.head_count_kv", 0, c.n_heads, 1, c.n_heads, &c.n_kv_heads,
                   err));
    DSQ_TRY(md_int(s, a, "feed_forward_length", 1, 0, 1, BIG, &c.ffn_dim, err));
    DSQ_TRY(md_int(s, a, "context_length", 0, 0, INT64_MIN, INT64_MAX, &c.n_ctx_train, err));
    DSQ_TRY(md_num(s, a, "attention.layer_norm_rms_epsilon", 1, 0, &c.norm_eps, err));
    DSQ_CHECK(c.norm_eps >= 0, DSQ_FORMAT, err, "%s: negative rms epsilon", s->path);
    c.tie_embeddings = tensor(s, "output.weight") == NULL;

    /* bos at position 0 of a window: what llama.cpp's add_bos says */
    int64_t bos = -1, eos = -1, add_bos;
    DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.bos_token_id", 0, -1, -1, c.vocab - 1, &bos, err));
    DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.eos_token_id", 0, -1, -1, c.vocab - 1, &eos, err));
    DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.add_bos_token", 0,
                   md_str_is(s, "tokenizer.ggml.model", "llama"), 0, 1, &add_bos, err));
    c.bos = add_bos ? (int32_t)bos : -1;
    c.eos = (int32_t)eos;

    /* RoPE */
    dsq_rope_config *r = &c.rope;
    r->type = DSQ_ROPE_DEFAULT;
    r->factor = 1.0;
    r->layout = DSQ_ROPE_PAIRS_ADJACENT;
    DSQ_TRY(md_num(s, a, "rope.freq_base", 0, 10000.0, &r->theta, err));
    char k[96];
    snprintf(k, sizeof k, "%s.rope.scaling.type", a);
    if (md_str_is(s, k, "linear")) {
        r->type = DSQ_ROPE_LINEAR;
        DSQ_TRY(md_num(s, a, "rope.scaling.factor", 1, 1.0, &r->factor, err));
    } else if (md_str_is(s, k, "yarn")) {
        r->type = DSQ_ROPE_YARN;
        DSQ_TRY(md_num(s, a, "rope.scaling.factor", 1, 1.0, &r->factor, err));
        DSQ_TRY(md_int(s, a, "rope.scaling.original_context_length", 1, 0, 1, BIG,
                       &r->orig_max_pos, err));
        DSQ_TRY(md_num(s, a, "rope.scaling.yarn_beta_fast", 0, 32.0, &r->beta_fast, err));
        DSQ_TRY(md_num(s, a, "rope.scaling.yarn_beta_slow", 0, 1.0, &r->beta_slow, err));
        /* yarn_log_multiplier = 0.1·mscale_all_dim (the converter); DeepSeek's
         * mscale equals mscale_all_dim, so the cos/sin factor is 1 */
        double mult = 0;
        DSQ_TRY(md_num(s, a, "rope.scaling.yarn_log_multiplier", 0, 0.0, &mult, err));
        r->mscale_all_dim = mult / 0.1;
        r->mscale = r->mscale_all_dim;
        DSQ_CHECK(r->beta_fast > 0 && r->beta_slow > 0, DSQ_FORMAT, err,
                  "%s: yarn beta_fast/beta_slow must be > 0", s->path);
    } else {
        const char *p;
        size_t n;
        DSQ_CHECK(dsq_gguf_get_str(s->g, k, &p, &n, NULL) != DSQ_OK ||
                      (n == 4 && memcmp(p, "none", 4) == 0),
                  DSQ_UNSUPPORTED, err, "%s: %s '%.*s' is not supported", s->path, k,
                  (int)(n > 32 ? 32 : n), p);
    }
    DSQ_CHECK(r->factor > 0, DSQ_FORMAT, err, "%s: rope scaling factor must be > 0", s->path);
    /* llama.cpp's deepseek2 graph has no rope_freqs: its loader would refuse the extra tensor */
    DSQ_CHECK(c.arch == DSQ_ARCH_LLAMA || tensor(s, "rope_freqs.weight") == NULL,
              DSQ_UNSUPPORTED, err, "%s: rope_freqs.weight in a %s model is not supported",
              s->path, a);

    int64_t rope_dim;
    if (c.arch == DSQ_ARCH_LLAMA) {
        DSQ_CHECK(c.n_heads % c.n_kv_heads == 0, DSQ_FORMAT, err,
                  "%s: head_count %lld is not a multiple of head_count_kv %lld", s->path,
                  (long long)c.n_heads, (long long)c.n_kv_heads);
        DSQ_TRY(md_int(s, a, "attention.key_length", 0, c.dim / c.n_heads, 2, 1 << 16,
                       &c.head_dim, err));
        DSQ_TRY(md_int(s, a, "rope.dimension_count", 0, c.head_dim, 2, 1 << 16, &rope_dim, err));
        DSQ_CHECK(rope_dim == c.head_dim && c.head_dim % 2 == 0, DSQ_UNSUPPORTED, err,
                  "%s: rope.dimension_count %lld != head dim %lld (partial rope) is not "
                  "supported",
                  s->path, (long long)rope_dim, (long long)c.head_dim);
        r->dim = c.head_dim;
        DSQ_TRY(read_rope_freqs(s, r, err));
    } else {
        c.n_kv_heads = c.n_heads; /* the split layout says 1 ("MLA as MQA") */
        DSQ_TRY(md_int(s, a, "attention.q_lora_rank", 0, 0, 0, BIG, &c.q_lora_rank, err));
        DSQ_TRY(md_int(s, a, "attention.kv_lora_rank", 1, 0, 1, BIG, &c.kv_lora_rank, err));
        DSQ_TRY(md_int(s, a, "rope.dimension_count", 1, 0, 2, 1 << 16, &rope_dim, err));
        DSQ_CHECK(rope_dim % 2 == 0, DSQ_FORMAT, err, "%s: rope.dimension_count must be even",
                  s->path);
        int64_t kl, vl;
        DSQ_TRY(md_int(s, a, "attention.key_length_mla", 0, -1, -1, 1 << 16, &kl, err));
        if (kl < 0)
            DSQ_TRY(md_int(s, a, "attention.key_length", 1, 0, 1, 1 << 16, &kl, err));
        DSQ_TRY(md_int(s, a, "attention.value_length_mla", 0, -1, -1, 1 << 16, &vl, err));
        if (vl < 0)
            DSQ_TRY(md_int(s, a, "attention.value_length", 1, 0, 1, 1 << 16, &vl, err));
        DSQ_CHECK(kl > rope_dim - 1 && vl >= 1, DSQ_FORMAT, err,
                  "%s: key length %lld must exceed rope dims %lld", s->path, (long long)kl,
                  (long long)rope_dim);
        c.qk_rope_dim = rope_dim;
        c.qk_nope_dim = kl - rope_dim;
        c.v_head_dim = vl;
        c.head_dim = kl;
        r->dim = rope_dim;

        DSQ_TRY(read_moe(s, a, &c, err));
    }
    c.fp8_block_rows = c.fp8_block_cols = 128;
    s->cfg = c;
cleanup:
    return st;
}

/* ---- tokenizer ---- */

static dsq_status str_array(const gguf_src *s, const char *key, int req, const char ***strs,
                            size_t **lens, size_t *n, dsq_err *err) {
    dsq_gguf_val arr, e;
    *strs = NULL;
    *lens = NULL;
    *n = 0;
    if (dsq_gguf_get(s->g, key, &arr, NULL) != DSQ_OK) {
        if (req)
            return dsq_err_set(err, DSQ_FORMAT, "%s: metadata key '%s' is missing", s->path, key);
        return DSQ_OK;
    }
    if (arr.type != DSQ_GGUF_ARRAY || arr.elem_type != DSQ_GGUF_STRING)
        return dsq_err_set(err, DSQ_FORMAT, "%s: '%s' is not an array of strings", s->path, key);
    *strs = malloc((size_t)(arr.n ? arr.n : 1) * sizeof **strs);
    *lens = malloc((size_t)(arr.n ? arr.n : 1) * sizeof **lens);
    if (*strs == NULL || *lens == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    for (uint64_t i = 0; i < arr.n; i++) {
        const dsq_status st = dsq_gguf_val_at(&arr, i, &e, err);
        if (st != DSQ_OK)
            return st;
        (*strs)[i] = (const char *)e.data;
        (*lens)[i] = (size_t)e.n;
    }
    *n = (size_t)arr.n;
    return DSQ_OK;
}

/* A numeric array of n elements as int32 or float (want_float). */
static dsq_status num_array(const gguf_src *s, const char *key, size_t n, int want_float,
                            void **out, dsq_err *err) {
    dsq_gguf_val arr, e;
    *out = NULL;
    if (dsq_gguf_get(s->g, key, &arr, NULL) != DSQ_OK)
        return DSQ_OK;
    if (arr.type != DSQ_GGUF_ARRAY || arr.n != n)
        return dsq_err_set(err, DSQ_FORMAT, "%s: '%s' is not an array of %zu values", s->path,
                           key, n);
    float *f = want_float ? malloc((n ? n : 1) * sizeof *f) : NULL;
    int32_t *ii = want_float ? NULL : malloc((n ? n : 1) * sizeof *ii);
    if (f == NULL && ii == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    *out = want_float ? (void *)f : (void *)ii;
    for (size_t i = 0; i < n; i++) {
        dsq_status st = dsq_gguf_val_at(&arr, i, &e, err);
        if (st != DSQ_OK)
            return st;
        if (want_float) {
            double d;
            if ((st = dsq_gguf_val_as_f64(&e, &d, err)) != DSQ_OK)
                return st;
            f[i] = (float)d;
        } else {
            int64_t v;
            if ((st = dsq_gguf_val_as_i64(&e, &v, err)) != DSQ_OK)
                return st;
            if (v < INT32_MIN || v > INT32_MAX)
                return dsq_err_set(err, DSQ_RANGE, "%s: '%s'[%zu] out of range", s->path, key, i);
            ii[i] = (int32_t)v;
        }
    }
    return DSQ_OK;
}

static dsq_status gguf_tokenizer(void *impl, dsq_tokenizer **out, dsq_err *err) {
    const gguf_src *s = impl;
    dsq_status st = DSQ_OK;
    const char **toks = NULL, **merges = NULL;
    size_t *tlens = NULL, *mlens = NULL, n = 0, n_merges = 0;
    int32_t *types = NULL;
    float *scores = NULL;
    char pre[64] = "";
    *out = NULL;
    const int spm = md_str_is(s, "tokenizer.ggml.model", "llama");
    DSQ_CHECK(spm || md_str_is(s, "tokenizer.ggml.model", "gpt2"), DSQ_UNSUPPORTED, err,
              "%s: tokenizer.ggml.model is missing or not 'gpt2' / 'llama'", s->path);
    DSQ_TRY(str_array(s, "tokenizer.ggml.tokens", 1, &toks, &tlens, &n, err));
    DSQ_TRY(num_array(s, "tokenizer.ggml.token_type", n, 0, (void **)&types, err));
    int64_t bos, eos, unk, add_bos, add_eos, add_space;
    const int64_t nmax = (int64_t)n - 1;
    DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.bos_token_id", 0, -1, -1, nmax, &bos, err));
    DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.eos_token_id", 0, -1, -1, nmax, &eos, err));
    DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.unknown_token_id", 0, -1, -1, nmax, &unk, err));
    DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.add_bos_token", 0, spm, 0, 1, &add_bos, err));
    DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.add_eos_token", 0, 0, 0, 1, &add_eos, err));
    if (spm) {
        DSQ_TRY(num_array(s, "tokenizer.ggml.scores", n, 1, (void **)&scores, err));
        DSQ_TRY(md_int(s, NULL, "tokenizer.ggml.add_space_prefix", 0, 1, 0, 1, &add_space, err));
        dsq_spm_vocab v;
        memset(&v, 0, sizeof v);
        v.n = n;
        v.tokens = toks;
        v.token_lens = tlens;
        v.scores = scores;
        v.types = types;
        v.bos_id = (int32_t)bos;
        v.eos_id = (int32_t)eos;
        v.unk_id = (int32_t)unk;
        v.add_bos = (int)add_bos;
        v.add_eos = (int)add_eos;
        v.add_space_prefix = (int)add_space;
        v.escape_whitespace = 1;
        DSQ_TRY(dsq_tokenizer_from_spm_arrays(out, &v, err));
    } else {
        DSQ_TRY(str_array(s, "tokenizer.ggml.merges", 1, &merges, &mlens, &n_merges, err));
        const char *p;
        size_t pl;
        if (dsq_gguf_get_str(s->g, "tokenizer.ggml.pre", &p, &pl, NULL) == DSQ_OK)
            snprintf(pre, sizeof pre, "%.*s", (int)(pl < sizeof pre ? pl : sizeof pre - 1), p);
        dsq_bpe_vocab v;
        memset(&v, 0, sizeof v);
        v.n = n;
        v.tokens = toks;
        v.token_lens = tlens;
        v.types = types;
        v.n_merges = n_merges;
        v.merges = merges;
        v.merge_lens = mlens;
        v.pre = pre[0] ? pre : NULL;
        v.bos_id = (int32_t)bos;
        v.eos_id = (int32_t)eos;
        v.add_bos = (int)add_bos;
        v.add_eos = (int)add_eos;
        DSQ_TRY(dsq_tokenizer_from_bpe_arrays(out, &v, err));
    }
cleanup:
    free(toks);
    free(tlens);
    free(merges);
    free(mlens);
    free(types);
    free(scores);
    return st;
}

static const dsq_wsource_ops gguf_ops = {
    .kind = "gguf",
    .count = gguf_count,
    .name = gguf_name,
    .at = gguf_at,
    .find = gguf_find,
    .read_f32 = gguf_read_f32,
    .read_bf16 = NULL,
    .path = gguf_path,
    .config = gguf_config,
    .tokenizer = gguf_tokenizer,
    .gguf = gguf_meta,
    .release = NULL,
    .close = gguf_close,
};

dsq_status dsq__wsource_open_gguf(dsq_wsource **out, const char *path,
                                  const dsq_wsource_opts *opts, int tensors_only, dsq_err *err) {
    dsq_status st = DSQ_OK;
    gguf_src *s = NULL;
    *out = NULL;
    s = calloc(1, sizeof *s);
    DSQ_CHECK(s != NULL, DSQ_NOMEM, err, "out of memory");
    s->path = strdup(path);
    DSQ_CHECK(s->path != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_gguf_set_open(&s->set, path, err));
    s->g = dsq_gguf_set_meta(s->set);
    (void)opts;
    if (!tensors_only) {
        DSQ_TRY(read_config(s, err));
        s->has_cfg = 1;
    }
    st = dsq_wsource_wrap(out, &gguf_ops, s, err);
    s = NULL;
cleanup:
    gguf_close(s);
    return st;
}
