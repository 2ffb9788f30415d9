/* weights/source_gguf.c: a llama.cpp GGUF file as a weight source.
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
 * Every row is decoded with dsq_dequantize_row, so F32, F16, BF16 and every
 * GGUF block type dsq knows read the same way.
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
    dsq_model_config cfg;
} gguf_src;

/* A resolved HF name. */
typedef struct ref {
    map_kind kind;
    const dsq_gguf_tensor *t;  /* PLAIN, EXPERT; KVB legacy */
    const dsq_gguf_tensor *kb; /* KVB split: attn_k_b */
    const dsq_gguf_tensor *vb; /* KVB split: attn_v_b */
    int64_t expert;
    int64_t shape[DSQ_MAX_DIMS];
    int ndim;
} ref;

static const dsq_gguf_tensor *tensor(const gguf_src *s, const char *name) {
    const int64_t i = dsq_gguf_set_find_tensor(s->set, name);
    return i < 0 ? NULL : dsq_gguf_set_tensor_at(s->set, i);
}

static dsq_status not_found(const gguf_src *s, const char *name, const char *gname,
                            dsq_err *err) {
    return dsq_err_set(err, DSQ_NOT_FOUND, "%s: no tensor '%s'%s%s%s", s->path, name,
                       gname ? " (GGUF '" : "", gname ? gname : "", gname ? "')" : "");
}

static dsq_status resolve(const gguf_src *s, const char *name, ref *r, dsq_err *err) {
    memset(r, 0, sizeof *r);
    /* model/tensor_names.h: kv_b_proj feeds attn_kv_b, attn_k_b and attn_v_b, in that order */
    const dsq_tname *nm[3];
    int layer = -1, expert = -1;
    char gname[160];
    const size_t n_nm = dsq_tname_from_hf(name, nm, 3, &layer, &expert);
    if (n_nm == 0)
        return not_found(s, name, NULL, err);
    dsq_tname_format(gname, sizeof gname, nm[0]->gguf, layer, expert);
    r->kind = nm[0]->form == DSQ_TNAME_EXPERTS ? MAP_EXPERT
              : nm[0]->form == DSQ_TNAME_KV_B  ? MAP_KVB
                                               : MAP_PLAIN;
    r->t = tensor(s, gname);
    if (r->kind == MAP_PLAIN) {
        if (r->t == NULL)
            return not_found(s, name, gname, err);
        r->ndim = (int)r->t->n_dims;
        for (int i = 0; i < r->ndim; i++)
            r->shape[i] = r->t->ne[r->ndim - 1 - i];
        return DSQ_OK;
    }
    if (r->kind == MAP_EXPERT) {
        if (r->t == NULL)
            return not_found(s, name, gname, err);
        if (r->t->n_dims != 3 || expert >= r->t->ne[2])
            return dsq_err_set(err, DSQ_FORMAT, "%s: '%s' has no expert %d (%u dims, %lld experts)",
                               s->path, gname, expert, r->t->n_dims,
                               (long long)(r->t->n_dims == 3 ? r->t->ne[2] : 0));
        r->expert = expert;
        r->ndim = 2;
        r->shape[0] = r->t->ne[1];
        r->shape[1] = r->t->ne[0];
        return DSQ_OK;
    }
    /* KVB */
    const dsq_model_config *c = &s->cfg;
    const int64_t H = c->n_heads, nope = c->qk_nope_dim, vd = c->v_head_dim,
                  C = c->kv_lora_rank;
    r->ndim = 2;
    r->shape[0] = H * (nope + vd);
    r->shape[1] = C;
    if (r->t != NULL) {
        if (r->t->n_dims != 2 || r->t->ne[0] != C || r->t->ne[1] != H * (nope + vd))
            return dsq_err_set(err, DSQ_FORMAT, "%s: '%s' is not [%lld, %lld]", s->path, gname,
                               (long long)r->shape[0], (long long)C);
        return DSQ_OK;
    }
    char kb[160], vb[160];
    if (n_nm < 3)
        return not_found(s, name, gname, err);
    dsq_tname_format(kb, sizeof kb, nm[1]->gguf, layer, 0);
    dsq_tname_format(vb, sizeof vb, nm[2]->gguf, layer, 0);
    r->kb = tensor(s, kb);
    r->vb = tensor(s, vb);
    if (r->kb == NULL || r->vb == NULL)
        return not_found(s, name, r->kb == NULL ? kb : vb, err);
    if (r->kb->n_dims != 3 || r->kb->ne[0] != nope || r->kb->ne[1] != C || r->kb->ne[2] != H ||
        r->vb->n_dims != 3 || r->vb->ne[0] != C || r->vb->ne[1] != vd || r->vb->ne[2] != H)
        return dsq_err_set(err, DSQ_FORMAT,
                           "%s: '%s' / '%s' are not [%lld, %lld, %lld] / [%lld, %lld, %lld] "
                           "(ne order)",
                           s->path, kb, vb, (long long)nope, (long long)C, (long long)H,
                           (long long)C, (long long)vd, (long long)H);
    return DSQ_OK;
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

static dsq_status gguf_info(void *impl, const char *name, dsq_winfo *out, dsq_err *err) {
    const gguf_src *s = impl;
    ref r;
    size_t rb;
    dsq_status st = resolve(s, name, &r, err);
    if (st != DSQ_OK)
        return st;
    const dsq_gguf_tensor *t = r.t != NULL ? r.t : r.kb;
    if ((st = row_bytes(s, t, &rb, err)) != DSQ_OK)
        return st;
    if (r.vb != NULL && (st = row_bytes(s, r.vb, &rb, err)) != DSQ_OK)
        return st;
    memset(out, 0, sizeof *out);
    out->dtype = t->dtype;
    out->ndim = r.ndim;
    int64_t rows = 1;
    for (int i = 0; i < r.ndim; i++) {
        out->shape[i] = r.shape[i];
        if (i + 1 < r.ndim)
            rows *= r.shape[i];
    }
    out->rows = rows;
    out->cols = r.ndim > 0 ? r.shape[r.ndim - 1] : 1;
    return DSQ_OK;
}

/* Decodes row `row` (counted in ne[1..] order, i.e. the flattened rows) of t. */
static dsq_status decode_row(const gguf_src *s, const dsq_gguf_tensor *t, int64_t row, float *y,
                             dsq_err *err) {
    size_t rb;
    dsq_status st = row_bytes(s, t, &rb, err);
    if (st != DSQ_OK)
        return st;
    st = dsq_dequantize_row(t->dtype, t->data + (size_t)row * rb, y, t->ne[0]);
    if (st != DSQ_OK)
        return dsq_err_set(err, st, "%s: tensor '%s': cannot decode %s", s->path, t->name,
                           dsq_dtype_name(t->dtype));
    return DSQ_OK;
}

static dsq_status gguf_read_rows(void *impl, const char *name, int64_t row0, int64_t nrows,
                                 float *dst, dsq_err *err) {
    const gguf_src *s = impl;
    dsq_winfo wi;
    ref r;
    dsq_status st = DSQ_OK;
    float *kbuf = NULL;
    DSQ_TRY(gguf_info(impl, name, &wi, err));
    DSQ_TRY(resolve(s, name, &r, err));
    DSQ_CHECK(row0 >= 0 && nrows >= 0 && row0 <= wi.rows && nrows <= wi.rows - row0,
              DSQ_INVALID_ARG, err, "rows [%lld, %lld) of '%s' out of range (%lld)",
              (long long)row0, (long long)(row0 + nrows), name, (long long)wi.rows);
    const int64_t cols = wi.cols;
    if (r.kind == MAP_PLAIN || (r.kind == MAP_KVB && r.t != NULL)) {
        for (int64_t i = 0; i < nrows; i++)
            DSQ_TRY(decode_row(s, r.t, row0 + i, dst + (size_t)i * (size_t)cols, err));
    } else if (r.kind == MAP_EXPERT) {
        const int64_t base = r.expert * r.t->ne[1];
        for (int64_t i = 0; i < nrows; i++)
            DSQ_TRY(decode_row(s, r.t, base + row0 + i, dst + (size_t)i * (size_t)cols, err));
    } else {
        const dsq_model_config *c = &s->cfg;
        const int64_t nope = c->qk_nope_dim, per = nope + c->v_head_dim, C = c->kv_lora_rank;
        int64_t kb_head = -1; /* head whose k_b slice is in kbuf [C][nope] */
        for (int64_t i = 0; i < nrows; i++) {
            const int64_t row = row0 + i, h = row / per, j = row % per;
            float *y = dst + (size_t)i * (size_t)cols;
            if (j >= nope) {
                DSQ_TRY(decode_row(s, r.vb, h * c->v_head_dim + (j - nope), y, err));
                continue;
            }
            if (kbuf == NULL) {
                kbuf = malloc((size_t)C * (size_t)nope * sizeof *kbuf);
                DSQ_CHECK(kbuf != NULL, DSQ_NOMEM, err, "out of memory");
            }
            if (kb_head != h) {
                for (int64_t cc = 0; cc < C; cc++)
                    DSQ_TRY(decode_row(s, r.kb, h * C + cc, kbuf + (size_t)cc * (size_t)nope,
                                       err));
                kb_head = h;
            }
            for (int64_t cc = 0; cc < C; cc++)
                y[cc] = kbuf[(size_t)cc * (size_t)nope + (size_t)j];
        }
    }
cleanup:
    free(kbuf);
    return st;
}

static dsq_status gguf_config(void *impl, dsq_model_config *cfg, dsq_err *err) {
    (void)err;
    *cfg = ((const gguf_src *)impl)->cfg;
    return DSQ_OK;
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

        DSQ_TRY(md_int(s, a, "expert_count", 0, 0, 0, 1 << 20, &c.n_experts, err));
        if (c.n_experts > 0) {
            DSQ_TRY(md_int(s, a, "expert_used_count", 1, 0, 1, c.n_experts, &c.n_experts_used,
                           err));
            DSQ_TRY(md_int(s, a, "expert_shared_count", 0, 0, 0, 1 << 10, &c.n_shared_experts,
                           err));
            DSQ_TRY(md_int(s, a, "expert_feed_forward_length", 1, 0, 1, BIG, &c.moe_ffn_dim,
                           err));
            DSQ_TRY(md_int(s, a, "expert_group_count", 0, 1, 1, DSQ_MOE_MAX_GROUPS, &c.n_group,
                           err));
            DSQ_TRY(md_int(s, a, "expert_group_used_count", 0, c.n_group, 1, c.n_group,
                           &c.topk_group, err));
            DSQ_TRY(md_int(s, a, "leading_dense_block_count", 0, 0, 0, BIG, &c.first_dense,
                           err));
            c.moe_layer_freq = 1;
            DSQ_TRY(md_num(s, a, "expert_weights_scale", 0, 1.0, &c.routed_scaling, err));
            int64_t norm, gating;
            DSQ_TRY(md_int(s, a, "expert_weights_norm", 0, 0, 0, 1, &norm, err));
            c.norm_topk_prob = (int)norm;
            DSQ_TRY(md_int(s, a, "expert_gating_func", 0, 1, 1, 2, &gating, err));
            c.scoring = gating == 2 ? DSQ_MOE_SIGMOID : DSQ_MOE_SOFTMAX;
            DSQ_CHECK(c.n_experts % c.n_group == 0, DSQ_FORMAT, err,
                      "%s: expert_count %lld is not a multiple of expert_group_count %lld",
                      s->path, (long long)c.n_experts, (long long)c.n_group);
            /* GGUF does not name the routing method: the score-correction
             * bias means V3's noaux_tc, groups alone V2's group-limited greedy */
            if (any_layer_has(s, c.n_layers, "exp_probs_b.bias"))
                c.topk_method = DSQ_MOE_TOPK_GROUP_TOP2SUM;
            else
                c.topk_method = c.n_group > 1 ? DSQ_MOE_TOPK_GROUP_MAX : DSQ_MOE_TOPK_GREEDY;
            if (c.topk_method == DSQ_MOE_TOPK_GROUP_TOP2SUM)
                DSQ_CHECK(c.n_experts / c.n_group >= 2, DSQ_FORMAT, err,
                          "%s: noaux_tc routing needs at least 2 experts per group", s->path);
            if (c.topk_method != DSQ_MOE_TOPK_GREEDY)
                DSQ_CHECK(c.n_experts_used <= c.topk_group * (c.n_experts / c.n_group),
                          DSQ_FORMAT, err,
                          "%s: expert_used_count exceeds the experts of the used groups",
                          s->path);
        }
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
    .info = gguf_info,
    .read_rows = gguf_read_rows,
    .config = gguf_config,
    .tokenizer = gguf_tokenizer,
    .release = NULL,
    .close = gguf_close,
};

dsq_status dsq_wsource_open_gguf(dsq_wsource **out, const char *path,
                                 const dsq_wsource_opts *opts, dsq_err *err) {
    dsq_status st = DSQ_OK;
    gguf_src *s = NULL;
    (void)opts;
    *out = NULL;
    s = calloc(1, sizeof *s);
    DSQ_CHECK(s != NULL, DSQ_NOMEM, err, "out of memory");
    s->path = strdup(path);
    DSQ_CHECK(s->path != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_gguf_set_open(&s->set, path, err));
    s->g = dsq_gguf_set_meta(s->set);
    DSQ_TRY(read_config(s, err));
    st = dsq_wsource_wrap(out, &gguf_ops, s, err);
    s = NULL;
cleanup:
    gguf_close(s);
    return st;
}
