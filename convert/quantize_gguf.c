/* convert/quantize_gguf.c: the `dsq quantize` driver (see quantize_gguf.h).
 *
 * plan:    checkpoint + config.json + the architecture table -> one entry per GGUF tensor
 *          with its source views and transform (a tensor computed from config.json, such as
 *          llama3's rope_freqs, has a view of the computed values); types from the preset rules, in
 *          llama-quantize's order (non-layer tensors, then layer by layer, by name).
 * header:  general.*, {arch}.*, tokenizer.* KVs and every tensor info, through the GGUF
 *          writer, so the file layout (offsets, padding) is fixed before any data.
 * data:    per entry, per 2-D slice: dsq_quantize_rows_from (with the slice's imatrix
 *          weights) asks fill_row for each output row as F32 (the transform's source row:
 *          FP8 x block scale rounded to BF16 as DeepSeek's cast does, or kept in F32 with
 *          fp8_f32; F16 and BF16 widened exactly) just before quantizing
 *          it, so rows stay in cache -> writer.
 * GGUF input takes the same road with one entry per input tensor (the KVs copied, the
 * model facts the rules need read from {arch}.* keys), a row being dequantized with
 * dsq_dequantize_row, and tensors whose type does not change copied as they are.
 * Splits: the plan assigns each entry a file; every file's header is fixed up front, all
 * are written under temporary names and renamed at the end. */
#include "convert/quantize_gguf.h"

#include <ctype.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quantize/fp8.h"
#include "model/model_desc.h"
#include "gguf_export/imatrix.h"
#include "gguf_export/gguf_arch.h"
#include "gguf_export/gguf_rules.h"
#include "gguf_export/gguf_vocab.h"
#include "core/awrite.h"
#include "core/checked.h"
#include "core/file.h"
#include "core/numeric.h"
#include "formats/gguf.h"
#include "formats/gguf_split.h"
#include "formats/st_checkpoint.h"
#include "quantize/quant.h"

#define MAX_CONFIG ((size_t)16 << 20)
/* Slices smaller than this many elements are done on one thread: on a loaded machine the
 * fork/join and spin-wait of an OpenMP region cost more than the work (the tiny models ran
 * 4x slower on 2 threads than on 1). The bytes do not depend on the thread count. */
#define PAR_MIN ((int64_t)1 << 20)

typedef struct src_ref {
    const dsq_tensor_view *v;
    const dsq_tensor_view *scale; /* F32 block scales of a FP8 weight, else NULL */
    size_t shard, index;
} src_ref;

typedef struct entry {
    dsq_qz_tensor t;
    int layer; /* -1 outside the blocks */
    dsq_qz_src how;
    src_ref *src; /* 1, or n_expert for DSQ_QZ_SRC_EXPERTS; NULL for GGUF input */
    int n_src;
    const dsq_gguf_tensor *gt; /* GGUF input: the source tensor (borrowed from ctx.gset) */
    int copy;                  /* GGUF input: type unchanged, bytes copied as they are */
    const float *imx;          /* importance weights, ne[0] x ne[2] (borrowed), or NULL */
    int split;                 /* index of the output file */
} entry;

typedef struct override {
    regex_t re;
    dsq_dtype type;
    int compiled;
} override;

typedef struct ctx {
    const dsq_qz_opts *o;
    dsq_ckpt *ck;
    dsq_gguf_set *gset;    /* GGUF input (one file or a split set), else NULL */
    const dsq_gguf *gin;   /* its metadata: the first file's */
    char arch_name[64];    /* GGUF architecture */
    dsq_qz_model model;    /* what the type rules know about the model */
    dsq_imatrix *im;
    int n_splits;
    dsq_model_desc cfg; /* config.json */
    const dsq_qz_arch *arch;
    dsq_qz_hparams hp;
    const dsq_ftype_info *ft;
    int64_t bm, bn; /* FP8 scale block */
    entry *e;
    size_t n_e, cap_e;
    uint8_t **used; /* per shard, per tensor */
    override *ov;
    size_t n_ov;
    dsq_dtype out_type, embd_type; /* DSQ_DTYPE_INVALID: the rule decides */
    float e4m3[256], e5m2[256];
    dsq_qz_extra extra;          /* a tensor computed from config.json (rope_freqs), or none */
    dsq_tensor_view extra_view;  /* extra.data as a F32 1-D source view */
    /* dsq__fp8_decode or its AVX2 twin (the same bits), chosen once */
    void (*fp8_decode)(const uint8_t *in, float *out, int64_t n, const float dec[256],
                       float scale, int round_bf16);
} ctx;

static void say(const ctx *c, dsq_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(const ctx *c, dsq_log_level lvl, const char *fmt, ...) {
    if (c->o->log == NULL)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->o->log(c->o->log_user, lvl, buf);
}

void dsq_qz_summary_free(dsq_qz_summary *s) {
    if (s == NULL)
        return;
    free(s->tensors);
    s->tensors = NULL;
    s->n_tensors = 0;
}

/* A quantizer type by name ("q6_k" too). DSQ_DTYPE_INVALID when dsq cannot write it. */
static dsq_dtype qtype_from_name(const char *s) {
    char up[32];
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < sizeof up; i++)
        up[i] = (char)toupper((unsigned char)s[i]);
    up[i] = '\0';
    const dsq_dtype t = dsq_dtype_from_name(up);
    return t != DSQ_DTYPE_INVALID && dsq_quant_supported(t) ? t : DSQ_DTYPE_INVALID;
}

static int is_quantized(dsq_dtype t) {
    return t != DSQ_DTYPE_F32 && t != DSQ_DTYPE_F16 && t != DSQ_DTYPE_BF16;
}

static int64_t block_of(dsq_dtype t) {
    return (int64_t)dsq_dtype_get(t)->block_size;
}

/* ============================================================================================
 * Options
 * ========================================================================================== */

static dsq_status parse_opts(ctx *c, dsq_err *err) {
    const dsq_qz_opts *o = c->o;
    c->ft = dsq_ftype_find(o->type);
    if (c->ft == NULL)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "unknown type '%s' (see `dsq quantize --help` for the list)",
                           o->type ? o->type : "");
    c->out_type = c->embd_type = DSQ_DTYPE_INVALID;
    if (o->output_tensor_type &&
        (c->out_type = qtype_from_name(o->output_tensor_type)) == DSQ_DTYPE_INVALID)
        return dsq_err_set(err, DSQ_INVALID_ARG, "--output-tensor-type: unknown type '%s'",
                           o->output_tensor_type);
    if (o->token_embedding_type &&
        (c->embd_type = qtype_from_name(o->token_embedding_type)) == DSQ_DTYPE_INVALID)
        return dsq_err_set(err, DSQ_INVALID_ARG, "--token-embedding-type: unknown type '%s'",
                           o->token_embedding_type);
    if (o->n_tensor_types > 0) {
        c->ov = calloc(o->n_tensor_types, sizeof *c->ov);
        if (c->ov == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < o->n_tensor_types; i++) {
        const char *spec = o->tensor_types[i];
        const char *eq = strrchr(spec, '=');
        if (eq == NULL || eq == spec)
            return dsq_err_set(err, DSQ_INVALID_ARG, "--tensor-type '%s': expected PATTERN=TYPE",
                               spec);
        override *v = &c->ov[c->n_ov];
        if ((v->type = qtype_from_name(eq + 1)) == DSQ_DTYPE_INVALID)
            return dsq_err_set(err, DSQ_INVALID_ARG, "--tensor-type '%s': unknown type '%s'",
                               spec, eq + 1);
        char *pat = strndup(spec, (size_t)(eq - spec));
        if (pat == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
        const int rc = regcomp(&v->re, pat, REG_EXTENDED | REG_NOSUB);
        free(pat);
        if (rc != 0)
            return dsq_err_set(err, DSQ_INVALID_ARG, "--tensor-type '%s': bad regular expression",
                               spec);
        v->compiled = 1;
        c->n_ov++;
    }
    return DSQ_OK;
}

/* ============================================================================================
 * Plan
 * ========================================================================================== */

static dsq_status check_scale(const ctx *c, const dsq_tensor_view *w, const dsq_tensor_view *s,
                              dsq_err *err) {
    if (s->dtype != DSQ_DTYPE_F32)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "tensor '%s': scale is %s, expected F32",
                           s->name, dsq_dtype_name(s->dtype));
    const int64_t r = (int64_t)dsq_ceil_div_u64((uint64_t)w->shape[0], (uint64_t)c->bm);
    const int64_t k = (int64_t)dsq_ceil_div_u64((uint64_t)w->shape[1], (uint64_t)c->bn);
    if (s->ndim != 2 || s->shape[0] != r || s->shape[1] != k)
        return dsq_err_set(err, DSQ_FORMAT,
                           "tensor '%s': scale shape does not match the weight in %lldx%lld "
                           "blocks (expected [%lld, %lld])",
                           s->name, (long long)c->bm, (long long)c->bn, (long long)r,
                           (long long)k);
    return DSQ_OK;
}

static dsq_status find_src(ctx *c, const char *hf, const char *gguf, int optional, src_ref *out,
                           int *found, dsq_err *err) {
    size_t sh = 0, ix = 0;
    memset(out, 0, sizeof *out);
    *found = 0;
    const dsq_tensor_view *v = dsq_ckpt_find(c->ck, hf, &sh, &ix);
    if (v == NULL) {
        if (optional)
            return DSQ_OK;
        return dsq_err_set(err, DSQ_NOT_FOUND,
                           "checkpoint has no tensor '%s' (needed for %s '%s')", hf,
                           c->arch->gguf_name, gguf);
    }
    *found = 1;
    c->used[sh][ix] = 1;
    out->v = v;
    out->shard = sh;
    out->index = ix;
    switch (v->dtype) {
        case DSQ_DTYPE_F32:
        case DSQ_DTYPE_F16:
        case DSQ_DTYPE_BF16: break;
        case DSQ_DTYPE_F8_E4M3:
        case DSQ_DTYPE_F8_E5M2: {
            char sname[512];
            snprintf(sname, sizeof sname, "%s_scale_inv", hf);
            size_t ssh = 0, six = 0;
            const dsq_tensor_view *s = dsq_ckpt_find(c->ck, sname, &ssh, &six);
            if (s == NULL)
                return dsq_err_set(err, DSQ_FORMAT, "FP8 tensor '%s' has no '%s'", hf, sname);
            if (v->ndim != 2)
                return dsq_err_set(err, DSQ_UNSUPPORTED, "FP8 tensor '%s' is not 2-D", hf);
            c->used[ssh][six] = 1;
            out->scale = s;
            return check_scale(c, v, s, err);
        }
        default:
            return dsq_err_set(err, DSQ_UNSUPPORTED,
                               "tensor '%s': dtype %s cannot be quantized (F32, F16, BF16 or "
                               "F8_E4M3/F8_E5M2 with block scales)",
                               hf, dsq_dtype_name(v->dtype));
    }
    if (v->ndim < 1 || v->ndim > 2)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "tensor '%s' has %d dimensions (1 or 2 expected)",
                           hf, v->ndim);
    return DSQ_OK;
}

/* The table's patterns hold up to two "%d" (layer, expert): substituted here rather than
 * passed to printf as a format. */
static void fmt_name(char *buf, size_t size, const char *pat, int a, int b) {
    size_t o = 0;
    int k = 0;
    for (const char *p = pat; *p != '\0' && o + 1 < size; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            const int n = snprintf(buf + o, size - o, "%d", k++ == 0 ? a : b);
            o += n > 0 ? (size_t)n : 0;
            if (o >= size)
                o = size - 1;
            p++;
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = '\0';
}

/* Room for one more entry at c->e[c->n_e]. */
static dsq_status reserve_entry(ctx *c, dsq_err *err) {
    if (c->n_e == c->cap_e) {
        const size_t cap = c->cap_e ? 2 * c->cap_e : 64;
        entry *ne = realloc(c->e, cap * sizeof *ne);
        if (ne == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
        c->e = ne;
        c->cap_e = cap;
    }
    return DSQ_OK;
}

static dsq_status add_entry(ctx *c, const dsq_qz_trow *row, int il, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char gguf[128], hf[256];
    const int optional = (row->when & DSQ_QZ_W_OPTIONAL) != 0;
    const dsq_qz_hparams *hp = &c->hp;
    int found = 0;
    fmt_name(gguf, sizeof gguf, row->gguf, il, 0);
    if (strlen(gguf) > DSQ_GGUF_MAX_NAME)
        return dsq_err_set(err, DSQ_FORMAT, "GGUF name '%s' too long", gguf);
    DSQ_TRY(reserve_entry(c, err));
    entry *e = &c->e[c->n_e];
    memset(e, 0, sizeof *e);
    memcpy(e->t.name, gguf, strlen(gguf) + 1); /* <= DSQ_GGUF_MAX_NAME, checked above */
    e->layer = il;
    e->how = row->src;
    e->n_src = row->src == DSQ_QZ_SRC_EXPERTS ? (int)hp->n_expert : 1;
    e->src = calloc((size_t)e->n_src, sizeof *e->src);
    if (e->src == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    c->n_e++; /* owns e->src from here on */

    for (int x = 0; x < e->n_src; x++) {
        fmt_name(hf, sizeof hf, row->hf, il, x);
        DSQ_TRY(find_src(c, hf, gguf, optional, &e->src[x], &found, err));
        if (!found) { /* optional and absent */
            free(e->src);
            c->n_e--;
            return DSQ_OK;
        }
    }
    const dsq_tensor_view *v = e->src[0].v;
    const int64_t rows = v->ndim == 2 ? v->shape[0] : 1, cols = v->shape[v->ndim - 1];
    e->t.n_dims = (uint32_t)v->ndim;
    e->t.ne[0] = cols;
    e->t.ne[1] = v->ndim == 2 ? rows : 1;
    e->t.ne[2] = e->t.ne[3] = 1;
    switch (e->how) {
        case DSQ_QZ_SRC_PLAIN: break;
        case DSQ_QZ_SRC_PERMUTE_Q:
        case DSQ_QZ_SRC_PERMUTE_K: {
            const int64_t h = e->how == DSQ_QZ_SRC_PERMUTE_Q ? hp->n_head : hp->n_head_kv;
            DSQ_CHECK(v->ndim == 2 && rows % (2 * h) == 0, DSQ_FORMAT, err,
                      "tensor '%s': %lld rows do not split into %lld heads of an even size",
                      v->name, (long long)rows, (long long)h);
            break;
        }
        case DSQ_QZ_SRC_EXPERTS:
            for (int x = 1; x < e->n_src; x++) {
                const dsq_tensor_view *u = e->src[x].v;
                DSQ_CHECK(u->ndim == v->ndim && u->shape[0] == v->shape[0] &&
                              u->shape[u->ndim - 1] == cols,
                          DSQ_FORMAT, err, "expert tensor '%s' differs in shape from '%s'",
                          u->name, v->name);
            }
            DSQ_CHECK(v->ndim == 2, DSQ_FORMAT, err, "expert tensor '%s' is not 2-D", v->name);
            e->t.n_dims = 3;
            e->t.ne[2] = e->n_src;
            break;
        case DSQ_QZ_SRC_K_B:
        case DSQ_QZ_SRC_V_B:
            DSQ_CHECK(v->ndim == 2 && rows == hp->n_head * (hp->qk_nope + hp->v_head_dim) &&
                          cols == hp->kv_lora_rank,
                      DSQ_FORMAT, err,
                      "tensor '%s': shape [%lld, %lld], expected [%lld, %lld] (heads x "
                      "(qk_nope + v_head_dim), kv_lora_rank)",
                      v->name, (long long)rows, (long long)cols,
                      (long long)(hp->n_head * (hp->qk_nope + hp->v_head_dim)),
                      (long long)hp->kv_lora_rank);
            e->t.n_dims = 3;
            e->t.ne[0] = e->how == DSQ_QZ_SRC_K_B ? hp->qk_nope : hp->kv_lora_rank;
            e->t.ne[1] = e->how == DSQ_QZ_SRC_K_B ? hp->kv_lora_rank : hp->v_head_dim;
            e->t.ne[2] = hp->n_head;
            break;
    }
cleanup:
    return st;
}

/* The architecture's computed tensor (rope_freqs.weight for llama3 rope scaling) as one
 * more PLAIN entry whose source is a F32 view of the computed values, so the data path
 * reads it like any F32 checkpoint tensor. Its index is past every shard's count, which
 * makes the release after writing (dsq_st_release) a no-op: there is no mapping to drop. */
static dsq_status add_extra(ctx *c, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (c->arch->extra == NULL)
        return DSQ_OK;
    DSQ_TRY(c->arch->extra(&c->cfg, &c->hp, &c->extra, err));
    if (c->extra.data == NULL)
        return DSQ_OK;
    DSQ_TRY(reserve_entry(c, err));
    dsq_tensor_view *v = &c->extra_view;
    memset(v, 0, sizeof *v);
    v->name = c->extra.gguf;
    v->dtype = DSQ_DTYPE_F32;
    v->ndim = 1;
    v->shape[0] = c->extra.n;
    v->data = c->extra.data;
    v->nbytes = (uint64_t)c->extra.n * sizeof(float);
    entry *e = &c->e[c->n_e];
    memset(e, 0, sizeof *e);
    DSQ_CHECK((e->src = calloc(1, sizeof *e->src)) != NULL, DSQ_NOMEM, err, "out of memory");
    c->n_e++; /* owns e->src from here on */
    snprintf(e->t.name, sizeof e->t.name, "%s", c->extra.gguf);
    e->layer = -1;
    e->how = DSQ_QZ_SRC_PLAIN;
    e->n_src = 1;
    e->src[0].v = v;
    e->src[0].index = SIZE_MAX;
    e->t.n_dims = 1;
    e->t.ne[0] = c->extra.n;
    e->t.ne[1] = e->t.ne[2] = e->t.ne[3] = 1;
cleanup:
    return st;
}

/* Tensors no GGUF tensor comes from, by design: block scales (consumed with their weight),
 * rotary inv_freq buffers, and for deepseek2 "model.layers.N." with N >= block_count: the
 * multi-token-prediction layer llama.cpp's converter drops (unless kept, which makes it a
 * block), and anything past the layers config.json declares. */
static int is_skipped(const ctx *c, const char *name) {
    int il = -1, n = 0;
    const size_t len = strlen(name);
    if (len > 10 && strcmp(name + len - 10, "_scale_inv") == 0)
        return 1;
    if (strstr(name, "rotary_emb.inv_freq") != NULL)
        return 1;
    return c->arch->drops_extra_layers && sscanf(name, "model.layers.%d.%n", &il, &n) == 1 &&
           n > 0 && il >= dsq_qz_n_blocks(&c->hp);
}

/* llama_model_loader's weight_name_comparer: by layer (-1 first), then by name. */
static int entry_cmp(const void *pa, const void *pb) {
    const entry *a = pa, *b = pb;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    return strcmp(a->t.name, b->t.name);
}

/* What llama-quantize knows of a model converted from this checkpoint. */
static void hf_model_info(ctx *c) {
    dsq_qz_model *m = &c->model;
    const int ds2 = strcmp(c->arch->gguf_name, "deepseek2") == 0;
    /* llama-quantize reads block_count: a kept MTP layer counts in use_more_bits etc. */
    m->n_layer = (int)dsq_qz_n_blocks(&c->hp);
    m->n_expert = ds2 ? (int)c->hp.n_expert : 0;
    m->n_head = (int)c->hp.n_head;
    /* what the loader will read as head_count_kv */
    m->n_head_kv = (int)(ds2 && !c->hp.kvb_legacy ? 1 : c->hp.n_head_kv);
    m->is_70b = strcmp(c->arch->gguf_name, "llama") == 0 && c->hp.n_layer == 80 &&
                c->hp.n_head != c->hp.n_head_kv;
}

/* The imatrix entry of a tensor about to be quantized, as llama-quantize picks it: none
 * when absent (said at INFO level), an error when its size is not ne[0] x ne[2], except
 * for token_embd.weight, which is then quantized without one. */
static dsq_status pick_imatrix(ctx *c, entry *e, dsq_err *err) {
    int64_t n = 0;
    const dsq_qz_tensor *t = &e->t;
    const float *v = dsq_imatrix_find(c->im, t->name, &n);
    const int64_t want = t->ne[0] * t->ne[2];
    if (v == NULL) {
        say(c, DSQ_LOG_INFO, "imatrix: no entry for %s (quantized without one)", t->name);
        return DSQ_OK;
    }
    if (n == want) {
        e->imx = v;
        return DSQ_OK;
    }
    if (strcmp(t->name, "token_embd.weight") == 0) {
        say(c, DSQ_LOG_INFO, "imatrix: entry for %s has %lld values, not %lld; not used",
            t->name, (long long)n, (long long)want);
        return DSQ_OK;
    }
    return dsq_err_set(err, DSQ_FORMAT,
                       "imatrix entry '%s' has %lld values but the tensor needs %lld (ne[0] "
                       "%lld x %lld matrices): an imatrix of another model?",
                       t->name, (long long)n, (long long)want, (long long)t->ne[0],
                       (long long)t->ne[2]);
}

static dsq_status choose_types(ctx *c, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_qz_state s;
    memset(&s, 0, sizeof s);
    s.m = c->model;
    s.m.has_imatrix = c->im != NULL;
    for (size_t i = 0; i < c->n_e; i++) {
        const char *n = c->e[i].t.name;
        if (strstr(n, "attn_v.weight") || strstr(n, "attn_qkv.weight") ||
            strstr(n, "attn_kv_b.weight"))
            s.m.n_attention_wv++;
        if (strcmp(n, "output.weight") == 0)
            s.m.has_output = 1;
    }
    for (size_t i = 0; i < c->n_e; i++) {
        entry *e = &c->e[i];
        dsq_qz_tensor *t = &e->t;
        /* the type the tensor has in the input (HF tensors count as the converter's F32) */
        const dsq_dtype src = e->gt ? e->gt->dtype : DSQ_DTYPE_F32;
        dsq_dtype ty = src;
        if (dsq_qz_is_quantizable(t->name, (int)t->n_dims)) {
            ty = c->ft->base;
            if (!c->o->pure && is_quantized(ty))
                DSQ_TRY(dsq_qz_rule_type(&s, c->ft, t->name, t->ne[0], &ty, &t->fallback, err));
            for (size_t k = 0; k < c->n_ov; k++)
                if (regexec(&c->ov[k].re, t->name, 0, NULL, 0) == 0) {
                    ty = c->ov[k].type;
                    t->fallback = 0;
                    break;
                }
            if (c->embd_type != DSQ_DTYPE_INVALID && strcmp(t->name, "token_embd.weight") == 0)
                ty = c->embd_type;
            if (c->out_type != DSQ_DTYPE_INVALID && strcmp(t->name, "output.weight") == 0)
                ty = c->out_type;
            if (t->fallback)
                say(c, DSQ_LOG_INFO,
                    "%s: row length %lld is not a multiple of the preset type's block, using "
                    "%s",
                    t->name, (long long)t->ne[0], dsq_dtype_name(ty));
        }
        if (e->gt != NULL && ty == src) { /* llama-quantize: same type, nothing to do */
            e->copy = 1;
            t->type = ty;
            t->fallback = 0;
            t->nbytes = e->gt->nbytes;
            continue;
        }
        DSQ_CHECK(t->ne[0] % block_of(ty) == 0, DSQ_UNSUPPORTED, err,
                  "tensor '%s': row length %lld is not a multiple of %s's block of %lld, and "
                  "no fallback applies (use a preset, or --tensor-type to pick another type)",
                  t->name, (long long)t->ne[0], dsq_dtype_name(ty), (long long)block_of(ty));
        if (e->gt != NULL) {
            DSQ_CHECK(!is_quantized(src) || c->o->allow_requantize, DSQ_UNSUPPORTED, err,
                      "tensor '%s' is already %s: requantizing is disabled (as in "
                      "llama-quantize; --allow-requantize enables it)",
                      t->name, dsq_dtype_name(src));
            DSQ_CHECK(dsq_quant_supported(src), DSQ_UNSUPPORTED, err,
                      "tensor '%s': dsq cannot dequantize %s", t->name, dsq_dtype_name(src));
            DSQ_CHECK(t->ne[3] == 1, DSQ_UNSUPPORTED, err,
                      "tensor '%s' has 4 dimensions; only 2-D and 3-D tensors are quantized",
                      t->name);
        }
        size_t row = 0;
        DSQ_TRY(dsq_quant_row_size(ty, t->ne[0], &row));
        t->type = ty;
        t->nbytes = (uint64_t)row * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        if (c->im != NULL && ty != src)
            DSQ_TRY(pick_imatrix(c, e, err));
    }
cleanup:
    return st;
}

static dsq_status read_config(ctx *c, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = dsq_path_join(dsq_ckpt_dir(c->ck), "config.json"), *text = NULL;
    size_t len = 0;
    int found = 0;
    DSQ_CHECK(path != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_read_small_file(path, MAX_CONFIG, &text, &len, err));
    DSQ_TRY(dsq_model_desc_parse(text, len, path, &c->cfg, err));
    const char *an = c->cfg.architecture;
    c->arch = dsq_qz_arch_find(an);
    DSQ_CHECK(c->arch != NULL, DSQ_UNSUPPORTED, err,
              "%s: architecture '%s' is not supported (supported: %s)", path,
              an ? an : "(none)", dsq_qz_arch_names());
    c->hp.kvb_legacy = c->o->mla_legacy;
    c->hp.keep_mtp = c->o->keep_mtp;
    DSQ_TRY(dsq_qz_hparams_read(c->arch, &c->cfg, &c->hp, err));
    DSQ_TRY(dsq_model_desc_fp8_block(&c->cfg, path, &c->bm, &c->bn, &found, err));
cleanup:
    free(path);
    free(text);
    return st;
}

/* 1 when the checkpoint has a tensor of layer il. */
static int has_layer(const ctx *c, int64_t il) {
    char prefix[64];
    const int n = snprintf(prefix, sizeof prefix, "model.layers.%lld.", (long long)il);
    for (size_t s = 0; s < dsq_ckpt_shard_count(c->ck); s++) {
        const dsq_st *sh = dsq_ckpt_shard(c->ck, s);
        for (size_t i = 0; i < dsq_st_count(sh); i++)
            if (strncmp(dsq_st_tensor(sh, i)->name, prefix, (size_t)n) == 0)
                return 1;
    }
    return 0;
}

/* --keep-mtp against what the model has. No MTP layer to keep is not an error (the same
 * command then works for every DeepSeek checkpoint), but it is said, since the user asked
 * for something the output will not have. A config that declares MTP layers the checkpoint
 * does not hold (a copy with layer 61 removed but config.json unchanged) is an error naming
 * the layer, rather than the first missing tensor of the table. */
static dsq_status check_mtp(ctx *c, dsq_err *err) {
    const dsq_qz_hparams *hp = &c->hp;
    if (!c->o->keep_mtp) {
        if (c->arch->drops_extra_layers && has_layer(c, hp->n_layer))
            say(c, DSQ_LOG_INFO,
                "left out the multi-token-prediction layer (model.layers.%lld.*), as llama.cpp's "
                "converter does; --keep-mtp keeps it",
                (long long)hp->n_layer);
        return DSQ_OK;
    }
    if (!hp->keep_mtp || hp->n_mtp == 0) {
        say(c, DSQ_LOG_WARN,
            "--keep-mtp: this %s has no multi-token-prediction layers (%s); the output is the "
            "same as without it",
            c->arch->hf_name,
            hp->keep_mtp ? "config.json: num_nextn_predict_layers is 0 or absent"
                         : "the architecture has none");
        return DSQ_OK;
    }
    if (dsq_qz_n_blocks(hp) > 4096)
        return dsq_err_set(err, DSQ_FORMAT,
                           "config.json: num_hidden_layers %lld + num_nextn_predict_layers %lld "
                           "is more than the 4096 blocks dsq reads back",
                           (long long)hp->n_layer, (long long)hp->n_mtp);
    if (!has_layer(c, hp->n_layer))
        return dsq_err_set(err, DSQ_NOT_FOUND,
                           "--keep-mtp: config.json has num_nextn_predict_layers %lld but the "
                           "checkpoint has no model.layers.%lld.* tensors (this copy of the "
                           "model lacks its MTP layer); run without --keep-mtp",
                           (long long)hp->n_mtp, (long long)hp->n_layer);
    return DSQ_OK;
}

static dsq_status build_plan(ctx *c, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t ns = dsq_ckpt_shard_count(c->ck);
    c->used = calloc(ns ? ns : 1, sizeof *c->used);
    DSQ_CHECK(c->used != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t s = 0; s < ns; s++) {
        const size_t n = dsq_st_count(dsq_ckpt_shard(c->ck, s));
        DSQ_CHECK((c->used[s] = calloc(n ? n : 1, 1)) != NULL, DSQ_NOMEM, err, "out of memory");
    }
    DSQ_TRY(check_mtp(c, err));
    for (int il = -1; il < (int)dsq_qz_n_blocks(&c->hp); il++)
        for (int r = 0; r < c->arch->n_rows; r++)
            if (dsq_qz_row_applies(&c->arch->rows[r], &c->hp, il))
                DSQ_TRY(add_entry(c, &c->arch->rows[r], il, err));
    DSQ_TRY(add_extra(c, err));
    for (size_t s = 0; s < ns; s++) {
        const dsq_st *sh = dsq_ckpt_shard(c->ck, s);
        for (size_t i = 0; i < dsq_st_count(sh); i++) {
            const char *n = dsq_st_tensor(sh, i)->name;
            DSQ_CHECK(c->used[s][i] || is_skipped(c, n), DSQ_FORMAT, err,
                      "tensor '%s' has no GGUF name in the %s mapping", n, c->arch->gguf_name);
        }
    }
    qsort(c->e, c->n_e, sizeof *c->e, entry_cmp);
    hf_model_info(c);
    DSQ_TRY(choose_types(c, err));
cleanup:
    return st;
}

/* ============================================================================================
 * GGUF input
 * ========================================================================================== */

/* {arch}.<suffix> as an integer; def when absent or not a scalar integer (some
 * architectures store per-layer arrays, which the rules used here never need). */
static int64_t meta_int(const ctx *c, const char *suffix, int64_t def) {
    char key[160];
    int64_t v = 0;
    snprintf(key, sizeof key, "%s.%s", c->arch_name, suffix);
    return dsq_gguf_get_i64(c->gin, key, &v, NULL) == DSQ_OK ? v : def;
}

static dsq_status build_plan_gguf(ctx *c, const char *in, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const char *an = NULL;
    size_t an_len = 0;
    DSQ_TRY(dsq_gguf_set_open(&c->gset, in, err));
    c->gin = dsq_gguf_set_meta(c->gset);
    DSQ_CHECK(dsq_gguf_find_key(c->gin, "general.architecture") >= 0, DSQ_FORMAT, err,
              "%s: no general.architecture key (not a llama.cpp model file)", in);
    DSQ_TRY(dsq_gguf_get_str(c->gin, "general.architecture", &an, &an_len, err));
    DSQ_CHECK(an_len > 0 && an_len < sizeof c->arch_name, DSQ_FORMAT, err,
              "%s: general.architecture is %zu bytes long", in, an_len);
    memcpy(c->arch_name, an, an_len);
    c->arch_name[an_len] = '\0';
    dsq_qz_model *m = &c->model;
    m->n_layer = (int)meta_int(c, "block_count", 0);
    m->n_expert = (int)meta_int(c, "expert_count", 0);
    m->n_head = (int)meta_int(c, "attention.head_count", 0);
    m->n_head_kv = (int)meta_int(c, "attention.head_count_kv", m->n_head);
    m->is_70b = strcmp(c->arch_name, "llama") == 0 && m->n_layer == 80 &&
                m->n_head != m->n_head_kv;
    const int64_t nt = dsq_gguf_set_tensor_count(c->gset);
    c->e = calloc(nt > 0 ? (size_t)nt : 1, sizeof *c->e);
    DSQ_CHECK(c->e != NULL, DSQ_NOMEM, err, "out of memory");
    c->cap_e = nt > 0 ? (size_t)nt : 1;
    for (int64_t i = 0; i < nt; i++) {
        const dsq_gguf_tensor *t = dsq_gguf_set_tensor_at(c->gset, i);
        entry *e = &c->e[c->n_e++];
        int il = -1;
        memcpy(e->t.name, t->name, strlen(t->name) + 1); /* <= 63 bytes, the reader checks */
        e->t.n_dims = t->n_dims;
        for (int d = 0; d < 4; d++)
            e->t.ne[d] = t->ne[d];
        if (sscanf(t->name, "blk.%d.", &il) != 1)
            il = -1;
        e->layer = il;
        e->gt = t;
    }
    /* llama_model_loader's weight_name_comparer order, as for checkpoints */
    qsort(c->e, c->n_e, sizeof *c->e, entry_cmp);
    DSQ_TRY(choose_types(c, err));
cleanup:
    return st;
}

/* ============================================================================================
 * Header
 * ========================================================================================== */

static const char *base_name(const char *path, char *buf, size_t size) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    snprintf(buf, size, "%.*s", (int)(n - b), path + b);
    return buf;
}

/* Every KV of the output, in llama-quantize's order: the input's (or the converter's) KVs,
 * general.quantization_version and general.file_type (re-set by llama-quantize, which moves
 * them last), then the imatrix provenance keys (its KV overrides). */
static dsq_status add_meta(ctx *c, dsq_gguf_writer *w, const char *in, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (c->gin != NULL) {
        static const char *const dropped[] = {"general.quantization_version", "general.file_type",
                                              "split.no", "split.count", "split.tensors.count"};
        for (int64_t i = 0; i < dsq_gguf_kv_count(c->gin); i++) {
            const char *key = dsq_gguf_kv_key(c->gin, i);
            int drop = 0;
            for (size_t k = 0; k < sizeof dropped / sizeof dropped[0]; k++)
                drop |= strcmp(key, dropped[k]) == 0;
            if (drop)
                continue;
            dsq_gguf_val v;
            DSQ_TRY(dsq_gguf_kv_val(c->gin, i, &v, err));
            DSQ_TRY(dsq_gguf_writer_add_val(w, key, &v, err));
        }
    } else {
        char name[256];
        const char *an = c->arch->gguf_name;
        DSQ_TRY(dsq_gguf_writer_add_str(w, "general.architecture", an, strlen(an), err));
        DSQ_TRY(dsq_gguf_writer_add_str(w, "general.type", "model", 5, err));
        base_name(in, name, sizeof name);
        if (name[0] != '\0' && strcmp(name, ".") != 0)
            DSQ_TRY(dsq_gguf_writer_add_str(w, "general.name", name, strlen(name), err));
        DSQ_TRY(c->arch->add_kv(w, &c->cfg, &c->hp, err));
        DSQ_TRY(
            dsq_qz_add_vocab(w, dsq_ckpt_dir(c->ck), an, c->hp.n_vocab, &c->cfg,
                             c->o->tokenizer_pre, err));
    }
    /* Last, in this order: llama-quantize re-sets both keys on the converter's file, and
     * ggml moves a re-set key to the end, so the whole file matches llama-quantize's. */
    DSQ_TRY(dsq_gguf_writer_add_u32(w, "general.quantization_version", 2, err));
    DSQ_TRY(dsq_gguf_writer_add_u32(w, "general.file_type", (uint32_t)c->ft->ftype, err));
    if (c->im != NULL) {
        /* quantize.cpp: the path as given and the first dataset, each cut to 127 bytes;
         * entries = all entries of the file; chunks only when > 0 */
        const char *ds = dsq_imatrix_dataset(c->im);
        const size_t fl = strlen(c->o->imatrix), dl = strlen(ds);
        DSQ_TRY(dsq_gguf_writer_add_str(w, "quantize.imatrix.file", c->o->imatrix,
                                        fl > 127 ? 127 : fl, err));
        if (dl > 0)
            DSQ_TRY(dsq_gguf_writer_add_str(w, "quantize.imatrix.dataset", ds, dl > 127 ? 127 : dl,
                                            err));
        DSQ_TRY(dsq_gguf_writer_add_i32(w, "quantize.imatrix.entries_count",
                                        (int32_t)dsq_imatrix_count(c->im), err));
        if (dsq_imatrix_chunks(c->im) > 0)
            DSQ_TRY(dsq_gguf_writer_add_i32(w, "quantize.imatrix.chunks_count",
                                            (int32_t)dsq_imatrix_chunks(c->im), err));
    }
cleanup:
    return st;
}

/* The header of output file `k`: all metadata in the first, then (when splitting) the
 * split keys as gguf-split leaves them, then the tensor infos of that file. */
static dsq_status build_header(ctx *c, dsq_gguf_writer *w, const char *in, int k, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (k == 0)
        DSQ_TRY(add_meta(c, w, in, err));
    if (c->o->split_max_bytes > 0) {
        /* gguf-split sets split.no, split.count (placeholder), split.tensors.count, then
         * split.count again, which ggml moves to the end */
        DSQ_TRY(dsq_gguf_writer_add_u16(w, "split.no", (uint16_t)k, err));
        DSQ_TRY(dsq_gguf_writer_add_i32(w, "split.tensors.count", (int32_t)c->n_e, err));
        DSQ_TRY(dsq_gguf_writer_add_u16(w, "split.count", (uint16_t)c->n_splits, err));
    }
    for (size_t i = 0; i < c->n_e; i++) {
        const dsq_qz_tensor *t = &c->e[i].t;
        if (c->e[i].split == k)
            DSQ_TRY(dsq_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err));
    }
cleanup:
    return st;
}

/* gguf-split --split-max-size: tensors in order, each counted padded to 32 bytes (its
 * GGUF_DEFAULT_ALIGNMENT), a new file when the next tensor would pass the limit. A tensor
 * larger than the limit on its own is an error here (gguf-split stops with "one of splits
 * have 0 tensors" when it is the first, and lets later ones overflow). */
static dsq_status plan_splits(ctx *c, dsq_err *err) {
    const uint64_t max = c->o->split_max_bytes;
    uint64_t cur = 0;
    int k = 0;
    c->n_splits = 1;
    if (max == 0)
        return DSQ_OK;
    for (size_t i = 0; i < c->n_e; i++) {
        const uint64_t nb = c->e[i].t.nbytes + (32 - c->e[i].t.nbytes % 32) % 32;
        if (nb > max)
            return dsq_err_set(err, DSQ_RANGE,
                               "tensor '%s' takes %llu bytes, more than --split-max-size (%llu "
                               "bytes): no split can hold it",
                               c->e[i].t.name, (unsigned long long)nb, (unsigned long long)max);
        if (cur + nb > max) {
            k++;
            cur = 0;
        }
        cur += nb;
        c->e[i].split = k;
    }
    if (k + 1 > 65535)
        return dsq_err_set(err, DSQ_RANGE, "--split-max-size gives %d files (split.count is a u16)",
                           k + 1);
    c->n_splits = k + 1;
    return DSQ_OK;
}

/* ============================================================================================
 * Data
 * ========================================================================================== */

static float rd_f32(const uint8_t *p) {
    uint32_t u;
    memcpy(&u, p, 4);
    return dsq_bits_f32(u);
}

/* Row r of a source view as F32: cols elements into out. */
static void read_row(const ctx *c, const src_ref *s, int64_t r, float *out) {
    const dsq_tensor_view *v = s->v;
    const int64_t cols = v->shape[v->ndim - 1];
    const uint8_t *p = (const uint8_t *)v->data;
    switch (v->dtype) {
        case DSQ_DTYPE_F32: memcpy(out, p + (size_t)(r * cols) * 4, (size_t)cols * 4); break;
        case DSQ_DTYPE_F16:
        case DSQ_DTYPE_BF16: {
            const uint8_t *q = p + (size_t)(r * cols) * 2;
            if (v->dtype == DSQ_DTYPE_BF16)
                dsq_bf16_row_to_f32(q, out, cols);
            else
                for (int64_t j = 0; j < cols; j++)
                    out[j] = dsq_f16_to_f32((uint16_t)(q[2 * j] | q[2 * j + 1] << 8));
            break;
        }
        case DSQ_DTYPE_F8_E4M3:
        case DSQ_DTYPE_F8_E5M2: {
            /* W[r][j] * scale_inv[r / Bm][j / Bn], the product rounded to F32 once, then to
             * BF16 unless fp8_f32: the value the BF16 cast (fp8_cast_bf16.py, `dsq convert`)
             * holds, so FP8 in gives the bytes that cast in would */
            const float *dec = v->dtype == DSQ_DTYPE_F8_E4M3 ? c->e4m3 : c->e5m2;
            const uint8_t *q = p + (size_t)(r * cols);
            const int64_t sc = s->scale->shape[1];
            const uint8_t *srow = (const uint8_t *)s->scale->data + (size_t)((r / c->bm) * sc) * 4;
            for (int64_t j0 = 0; j0 < cols; j0 += c->bn) {
                const float f = rd_f32(srow + (size_t)(j0 / c->bn) * 4);
                const int64_t j1 = j0 + c->bn < cols ? j0 + c->bn : cols;
                c->fp8_decode(q + j0, out + j0, j1 - j0, dec, f, !c->o->fp8_f32);
            }
            if (r + 1 < v->shape[0])
                for (int64_t j = 0; j < cols; j += 64)
                    __builtin_prefetch(q + cols + j);
            break;
        }
        default: break; /* excluded by find_src */
    }
}

/* Slice `sl` of an attn_k_b entry (a 2-D [rows, cols] piece of the output, rows = ne[1],
 * cols = ne[0]) as F32: kv_b[h][0:nope, :] transposed, out[r][j] = kv_b[h*(nope+v) + j][r].
 * Whole, because each source row feeds a column; these slices are small (nope x lora). */
static void fill_slice_k_b(const ctx *c, const entry *e, int64_t sl, float *out, float *tmp) {
    const int64_t cols = e->t.ne[0], rows = e->t.ne[1];
    const int64_t base = sl * (c->hp.qk_nope + c->hp.v_head_dim);
    for (int64_t j = 0; j < cols; j++) {
        read_row(c, &e->src[0], base + j, tmp);
        for (int64_t r = 0; r < rows; r++)
            out[r * cols + j] = tmp[r];
    }
}

/* Output bytes go to the file through one writer thread (core/awrite.h) in pieces of this
 * size, written as soon as the rows in them are quantized: write(2) then copies from cache,
 * and the core that would have waited for the write computes the next slice instead.
 * 256 KiB is what `dsq convert` measured best for the same copy (core/wqueue.h). */
#define WRITE_PIECE ((size_t)256 << 10)

/* What dsq_quantize_rows_from reads one slice through, and where its finished rows go. */
typedef struct slice_src {
    const ctx *c;
    const entry *e;
    int64_t sl;
    const float *f32; /* attn_k_b: the slice, already transposed; else NULL */
    size_t in_row;    /* GGUF input: bytes of one input row */
    dsq_awrite *aw;   /* the slice's output is job `job` of aw */
    uint64_t job;
    size_t row_bytes; /* output bytes of one row */
    size_t released;  /* bytes already handed to the writer */
} slice_src;

/* Row r of the slice as F32: the source row the transform maps it to, a row of the
 * transposed attn_k_b slice, or a GGUF input row copied (F32), widened (F16, BF16) or
 * dequantized as ggml's to_float does. */
static void fill_row(void *user, int64_t r, float *out) {
    const slice_src *p = user;
    const entry *e = p->e;
    const dsq_qz_hparams *hp = &p->c->hp;
    const int64_t cols = e->t.ne[0], rows = e->t.ne[1];
    if (p->f32 != NULL) {
        memcpy(out, p->f32 + r * cols, (size_t)cols * sizeof *out);
        return;
    }
    if (e->gt != NULL) {
        const uint8_t *in = e->gt->data + ((size_t)p->sl * (size_t)rows + (size_t)r) * p->in_row;
        if (e->gt->dtype == DSQ_DTYPE_F32)
            memcpy(out, in, (size_t)cols * sizeof *out);
        else
            dsq_dequantize_row(e->gt->dtype, in, out, cols); /* row size checked up front */
        return;
    }
    const src_ref *s = &e->src[0];
    int64_t sr = r;
    switch (e->how) {
        case DSQ_QZ_SRC_PERMUTE_Q: sr = dsq_qz_permute_src_row(r, rows, hp->n_head); break;
        case DSQ_QZ_SRC_PERMUTE_K: sr = dsq_qz_permute_src_row(r, rows, hp->n_head_kv); break;
        case DSQ_QZ_SRC_EXPERTS: s = &e->src[p->sl]; break;
        case DSQ_QZ_SRC_V_B: sr = p->sl * (hp->qk_nope + hp->v_head_dim) + hp->qk_nope + r; break;
        case DSQ_QZ_SRC_PLAIN:
        case DSQ_QZ_SRC_K_B: break;
    }
    read_row(p->c, s, sr, out);
}

/* Rows [0, rows) of the slice are final: hand them to the writer a piece at a time (calls
 * are serialized by dsq_quantize_rows_from). */
static void rows_done(void *user, int64_t rows) {
    slice_src *p = user;
    const size_t n = (size_t)rows * p->row_bytes;
    if (n - p->released >= WRITE_PIECE) {
        dsq_awrite_ready(p->aw, p->job, n);
        p->released = n;
    }
}

static dsq_status sink_gguf(void *user, const void *buf, size_t n, dsq_err *err) {
    return dsq_gguf_writer_write(user, buf, n, err);
}

/* Two output buffers: one being filled, the other being written. The writer thread owns the
 * GGUF writers (and so the files) until the last job is waited for; any write error comes back
 * through dsq_awrite_push/wait with the writer's own message. */
static dsq_status write_data(ctx *c, dsq_gguf_writer **w, uint64_t total, dsq_err *err) {
    dsq_status st = DSQ_OK;
    float *f32 = NULL, *tmp = NULL;
    uint8_t *q[2] = {NULL, NULL};
    size_t f32_cap = 0, q_cap[2] = {0, 0}, tmp_cap = 0;
    uint64_t q_job[2] = {0, 0}, last_job = 0;
    int k = 0;
    uint64_t done = 0;
    dsq_awrite *aw = NULL;
    DSQ_TRY(dsq_awrite_start(&aw, WRITE_PIECE, err));
    for (size_t i = 0; i < c->n_e; i++) {
        const entry *e = &c->e[i];
        dsq_gguf_writer *out = w[e->split];
        if (e->copy) {
            /* straight from the input mapping, which outlives the writer */
            DSQ_TRY(dsq_awrite_push(aw, sink_gguf, out, e->gt->data, (size_t)e->gt->nbytes,
                                    (size_t)e->gt->nbytes, &last_job, err));
            done += e->gt->nbytes;
            if (c->o->progress)
                c->o->progress(c->o->progress_user, done, total);
            continue;
        }
        const int64_t cols = e->t.ne[0], rows = e->t.ne[1], slices = e->t.ne[2];
        size_t row_bytes = 0, in_row = 0;
        DSQ_TRY(dsq_quant_row_size(e->t.type, cols, &row_bytes));
        const size_t nq = row_bytes * (size_t)rows;
        if (e->gt != NULL) {
            st = dsq_quant_row_size(e->gt->dtype, cols, &in_row);
            DSQ_CHECK(st == DSQ_OK, st, err, "tensor '%s': %s rows of %lld", e->gt->name,
                      dsq_dtype_name(e->gt->dtype), (long long)cols);
        }
        if (e->how == DSQ_QZ_SRC_K_B && e->gt == NULL) {
            const size_t nf = (size_t)(rows * cols);
            const size_t nt = (size_t)(e->src[0].v->shape[e->src[0].v->ndim - 1]);
            if (nf > f32_cap) {
                free(f32);
                DSQ_CHECK((f32 = malloc(nf * sizeof *f32)) != NULL, DSQ_NOMEM, err,
                          "out of memory (%zu floats for '%s')", nf, e->t.name);
                f32_cap = nf;
            }
            if (nt > tmp_cap) {
                free(tmp);
                DSQ_CHECK((tmp = malloc(nt * sizeof *tmp)) != NULL, DSQ_NOMEM, err,
                          "out of memory");
                tmp_cap = nt;
            }
        }
        for (int64_t sl = 0; sl < slices; sl++) {
            k ^= 1;
            /* the buffer's previous slice must be on disk before it is overwritten */
            DSQ_TRY(dsq_awrite_wait(aw, q_job[k], err));
            if (nq > q_cap[k]) {
                free(q[k]);
                DSQ_CHECK((q[k] = malloc(nq)) != NULL, DSQ_NOMEM, err, "out of memory");
                q_cap[k] = nq;
            }
            DSQ_TRY(dsq_awrite_push(aw, sink_gguf, out, q[k], nq, 0, &q_job[k], err));
            last_job = q_job[k];
            slice_src p = {c, e, sl, NULL, in_row, aw, q_job[k], row_bytes, 0};
            if (e->how == DSQ_QZ_SRC_K_B && e->gt == NULL) {
                fill_slice_k_b(c, e, sl, f32, tmp);
                p.f32 = f32;
            }
            const dsq_row_source rs = {fill_row, rows_done, &p};
            /* llama-quantize: expert (slice) i03 gets imatrix + i03 * n_per_row */
            const float *imx = e->imx ? e->imx + sl * cols : NULL;
            const dsq_status qst = dsq_quantize_rows_from(
                e->t.type, &rs, q[k], rows, cols, imx, rows * cols >= PAR_MIN ? c->o->threads : 1);
            if (qst != DSQ_OK) {
                /* a write error in an earlier slice is reported first, as it would have
                 * been had that slice been written before this one was computed */
                DSQ_TRY(dsq_awrite_wait(aw, q_job[k] - 1, err));
                DSQ_CHECK(0, qst, err, "tensor '%s'%s: quantizing to %s failed: %s", e->t.name,
                          qst == DSQ_RANGE ? " has NaN or infinite weights" : "",
                          dsq_dtype_name(e->t.type), dsq_status_str(qst));
            }
            dsq_awrite_ready(aw, q_job[k], nq);
            /* an expert's weight is read by its own slice only: drop its pages now, so that
             * a stacked tensor (256 experts of 14 MB in DeepSeek-V3) never maps them all */
            if (e->how == DSQ_QZ_SRC_EXPERTS && e->gt == NULL)
                dsq_st_release(dsq_ckpt_shard(c->ck, e->src[sl].shard), e->src[sl].index);
            done += nq;
            if (c->o->progress)
                c->o->progress(c->o->progress_user, done, total);
        }
        for (int x = 0; x < e->n_src; x++)
            dsq_st_release(dsq_ckpt_shard(c->ck, e->src[x].shard), e->src[x].index);
    }
    DSQ_TRY(dsq_awrite_wait(aw, last_job, err));
cleanup:
    dsq_awrite_stop(aw); /* before the buffers it may still be writing from are freed */
    free(f32);
    free(q[0]);
    free(q[1]);
    free(tmp);
    return st;
}

/* ============================================================================================
 * Entry point
 * ========================================================================================== */

static dsq_status split_path(const char *out_path, char **dir, char **name, dsq_err *err) {
    const char *slash = strrchr(out_path, '/');
    *dir = slash ? strndup(out_path, (size_t)(slash - out_path) + (slash == out_path))
                 : strdup(".");
    *name = strdup(slash ? slash + 1 : out_path);
    if (*dir == NULL || *name == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    if (!dsq_name_is_safe(*name, strlen(*name)))
        return dsq_err_set(err, DSQ_INVALID_ARG, "output '%s': not a usable file name", out_path);
    return DSQ_OK;
}

/* Output file k's name: OUT itself, or with splits "<OUT minus .gguf>-%05d-of-%05d.gguf". */
static dsq_status out_name(const ctx *c, const char *name, int k, char **out, dsq_err *err) {
    if (c->o->split_max_bytes == 0) {
        *out = strdup(name);
    } else {
        size_t n = strlen(name);
        if (n > 5 && strcmp(name + n - 5, ".gguf") == 0)
            n -= 5;
        const size_t sz = n + 32;
        if ((*out = malloc(sz)) != NULL)
            snprintf(*out, sz, "%.*s-%05d-of-%05d.gguf", (int)n, name, k + 1, c->n_splits);
    }
    if (*out == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    if (!dsq_name_is_safe(*out, strlen(*out)))
        return dsq_err_set(err, DSQ_INVALID_ARG, "output '%s': not a usable file name", *out);
    return DSQ_OK;
}

/* imatrix entries that name no tensor: llama-quantize ignores them silently; say so,
 * and warn when none at all matches (the imatrix of another model). */
static void report_imatrix_use(ctx *c, dsq_qz_summary *s) {
    size_t unmatched = 0;
    for (size_t i = 0; i < dsq_imatrix_count(c->im); i++) {
        const char *n = dsq_imatrix_name(c->im, i);
        size_t k = 0;
        while (k < c->n_e && strcmp(c->e[k].t.name, n) != 0)
            k++;
        unmatched += k == c->n_e;
    }
    for (size_t k = 0; k < c->n_e; k++)
        s->imatrix_used += c->e[k].imx != NULL;
    if (unmatched > 0)
        say(c, unmatched == dsq_imatrix_count(c->im) ? DSQ_LOG_WARN : DSQ_LOG_INFO,
            "imatrix: %zu of its %zu entries name no tensor of this model (ignored, as "
            "llama-quantize does)",
            unmatched, dsq_imatrix_count(c->im));
}

dsq_status dsq_quantize_gguf(const char *in, const char *out_path, const dsq_qz_opts *o,
                             dsq_qz_summary *s, dsq_err *err) {
    dsq_status st = DSQ_OK;
    ctx c;
    dsq_gguf_writer **w = NULL;
    char *dir = NULL, *name = NULL;
    char **names = NULL;
    int n_w = 0, committed = 0;
    memset(&c, 0, sizeof c);
    memset(s, 0, sizeof *s);
    c.o = o;
    c.fp8_decode = dsq__fp8_decode_simd_available() ? dsq__fp8_decode_simd : dsq__fp8_decode;
    for (int i = 0; i < 256; i++) {
        c.e4m3[i] = dsq_fp8_e4m3_to_f32((uint8_t)i);
        c.e5m2[i] = dsq_fp8_e5m2_to_f32((uint8_t)i);
    }
    DSQ_TRY(parse_opts(&c, err));
    if (!o->dry_run)
        DSQ_TRY(split_path(out_path, &dir, &name, err));
    if (o->imatrix != NULL)
        DSQ_TRY(dsq_imatrix_load(&c.im, o->imatrix, err));
    if (dsq_gguf_probe_path(in)) {
        if (o->keep_mtp)
            say(&c, DSQ_LOG_WARN,
                "--keep-mtp: a GGUF input keeps whatever blocks it has; the flag changes "
                "nothing");
        DSQ_TRY(build_plan_gguf(&c, in, err));
        snprintf(s->arch, sizeof s->arch, "%.31s", c.arch_name);
    } else {
        DSQ_TRY(dsq_ckpt_open(&c.ck, in, err));
        DSQ_TRY(read_config(&c, err));
        DSQ_TRY(build_plan(&c, err));
        snprintf(s->arch, sizeof s->arch, "%s", c.arch->gguf_name);
    }
    DSQ_TRY(plan_splits(&c, err));
    if (c.im != NULL)
        report_imatrix_use(&c, s);

    DSQ_CHECK((w = calloc((size_t)c.n_splits, sizeof *w)) != NULL &&
                  (names = calloc((size_t)c.n_splits, sizeof *names)) != NULL,
              DSQ_NOMEM, err, "out of memory");
    n_w = c.n_splits;
    for (int k = 0; k < n_w; k++) {
        uint64_t fb = 0;
        DSQ_TRY(dsq_gguf_writer_init(&w[k], err));
        DSQ_TRY(build_header(&c, w[k], in, k, err));
        DSQ_TRY(dsq_gguf_writer_file_size(w[k], &fb, err));
        s->file_bytes += fb;
    }

    snprintf(s->ftype, sizeof s->ftype, "%s", c.ft->name);
    s->file_type = (int)c.ft->ftype;
    s->n_splits = c.n_splits;
    DSQ_CHECK((s->tensors = calloc(c.n_e ? c.n_e : 1, sizeof *s->tensors)) != NULL, DSQ_NOMEM,
              err, "out of memory");
    s->n_tensors = c.n_e;
    for (size_t i = 0; i < c.n_e; i++) {
        s->tensors[i] = c.e[i].t;
        s->tensor_bytes += c.e[i].t.nbytes;
        if (c.e[i].gt != NULL)
            s->input_bytes += c.e[i].gt->nbytes;
        for (int x = 0; x < c.e[i].n_src; x++)
            if (c.e[i].src[x].v != &c.extra_view) /* computed, not read */
                s->input_bytes += c.e[i].src[x].v->nbytes;
    }
    if (o->dry_run)
        goto cleanup;

    /* every split under its temporary name first; renamed only once all are complete */
    for (int k = 0; k < n_w; k++) {
        DSQ_TRY(out_name(&c, name, k, &names[k], err));
        DSQ_TRY(dsq_gguf_writer_begin(w[k], dir, names[k], err));
    }
    DSQ_TRY(write_data(&c, w, s->tensor_bytes, err));
    for (; committed < n_w; committed++)
        DSQ_TRY(dsq_gguf_writer_commit(w[committed], err));

cleanup:
    if (st != DSQ_OK) {
        dsq_qz_summary_free(s);
        /* a rename failed part way: take back the splits already in place */
        for (int k = 0; k < committed; k++) {
            char *p = dsq_path_join(dir, names[k]);
            if (p != NULL)
                remove(p);
            free(p);
        }
    }
    for (int k = 0; k < n_w; k++) {
        dsq_gguf_writer_free(w[k]);
        if (names != NULL)
            free(names[k]);
    }
    free(w);
    free(names);
    for (size_t i = 0; i < c.n_e; i++)
        free(c.e[i].src);
    free(c.e);
    free(c.extra.data);
    if (c.used != NULL)
        for (size_t i = 0; i < dsq_ckpt_shard_count(c.ck); i++)
            free(c.used[i]);
    free(c.used);
    for (size_t i = 0; i < c.n_ov; i++)
        regfree(&c.ov[i].re);
    free(c.ov);
    dsq_model_desc_free(&c.cfg);
    dsq_ckpt_close(c.ck);
    dsq_gguf_set_close(c.gset);
    dsq_imatrix_free(c.im);
    free(dir);
    free(name);
    return st;
}
