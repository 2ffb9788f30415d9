/* gguf_export/gguf_plan.c: the entries of a GGUF export (see gguf_plan.h): from an HF
 * checkpoint through the architecture table, or one per tensor of a GGUF input; their
 * order; the split files. */
#include "gguf_export/gguf_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "formats/gguf.h"

void dsq_qz_vsay(const dsq_qz_plan *p, dsq_log_level lvl, const char *fmt, va_list ap) {
    if (p->o->log == NULL)
        return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    p->o->log(p->o->log_user, lvl, buf);
}

void dsq_qz_say(const dsq_qz_plan *p, dsq_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dsq_qz_vsay(p, lvl, fmt, ap);
    va_end(ap);
}

/* ---- HF input ---- */

/* The HF tensor `hf` that GGUF tensor `gguf` reads, through the source (which checks a FP8
 * weight's scale); *found 0 when it is optional and absent. */
static dsq_status find_src(dsq_qz_plan *p, const char *hf, const char *gguf, int optional,
                           dsq_wtensor *out, int *found, dsq_err *err) {
    dsq_err e2 = {0};
    *found = 0;
    const dsq_status st = dsq_wsource_find(p->ws, hf, out, &e2);
    if (st == DSQ_NOT_FOUND) {
        if (optional)
            return DSQ_OK;
        return dsq_err_set(err, DSQ_NOT_FOUND,
                           "checkpoint has no tensor '%s' (needed for %s '%s')", hf,
                           p->arch->gguf_name, gguf);
    }
    if (st != DSQ_OK)
        return dsq_err_set(err, st, "%s", e2.text);
    *found = 1;
    if (out->index != SIZE_MAX)
        p->used[out->index] = 1;
    if (!out->readable)
        return dsq_err_set(err, DSQ_UNSUPPORTED,
                           "tensor '%s': dtype %s cannot be quantized (F32, F16, BF16 or "
                           "F8_E4M3/F8_E5M2 with block scales)",
                           hf, dsq_dtype_name(out->dtype));
    if (out->ndim < 1 || out->ndim > 2)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "tensor '%s' has %d dimensions (1 or 2 expected)",
                           hf, out->ndim);
    return DSQ_OK;
}

/* The table's patterns hold up to two "%d" (layer, expert): substituted here rather than
 * passed to printf as a format. */
static void fmt_name(char *buf, size_t size, const char *pat, int a, int b) {
    size_t o = 0;
    int k = 0;
    for (const char *q = pat; *q != '\0' && o + 1 < size; q++) {
        if (q[0] == '%' && q[1] == 'd') {
            const int n = snprintf(buf + o, size - o, "%d", k++ == 0 ? a : b);
            o += n > 0 ? (size_t)n : 0;
            if (o >= size)
                o = size - 1;
            q++;
        } else {
            buf[o++] = *q;
        }
    }
    buf[o] = '\0';
}

/* Room for one more entry at p->e[p->n_e], zeroed. */
static dsq_status reserve_entry(dsq_qz_plan *p, dsq_err *err) {
    if (p->n_e == p->cap_e) {
        const size_t cap = p->cap_e ? 2 * p->cap_e : 64;
        dsq_qz_entry *ne = realloc(p->e, cap * sizeof *ne);
        if (ne == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
        p->e = ne;
        p->cap_e = cap;
    }
    memset(&p->e[p->n_e], 0, sizeof p->e[p->n_e]);
    return DSQ_OK;
}

/* The output shape of an entry from its source(s) and transform, checked. */
static dsq_status shape_entry(const dsq_qz_plan *p, dsq_qz_entry *e, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_qz_hparams *hp = &p->hp;
    const dsq_wtensor *v = &e->src[0];
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
                const dsq_wtensor *u = &e->src[x];
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

static dsq_status add_entry(dsq_qz_plan *p, const dsq_qz_trow *row, int il, dsq_err *err) {
    char gguf[128], hf[256];
    const int optional = (row->when & DSQ_QZ_W_OPTIONAL) != 0;
    int found = 0;
    dsq_status st;
    fmt_name(gguf, sizeof gguf, row->gguf, il, 0);
    if (strlen(gguf) > DSQ_GGUF_MAX_NAME)
        return dsq_err_set(err, DSQ_FORMAT, "GGUF name '%s' too long", gguf);
    if ((st = reserve_entry(p, err)) != DSQ_OK)
        return st;
    dsq_qz_entry *e = &p->e[p->n_e];
    memcpy(e->t.name, gguf, strlen(gguf) + 1); /* <= DSQ_GGUF_MAX_NAME, checked above */
    e->layer = il;
    e->how = row->src;
    e->n_src = row->src == DSQ_QZ_SRC_EXPERTS ? (int)p->hp.n_expert : 1;
    e->src = calloc((size_t)e->n_src, sizeof *e->src);
    if (e->src == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    p->n_e++; /* owns e->src from here on */
    for (int x = 0; x < e->n_src; x++) {
        fmt_name(hf, sizeof hf, row->hf, il, x);
        if ((st = find_src(p, hf, gguf, optional, &e->src[x], &found, err)) != DSQ_OK)
            return st;
        if (!found) { /* optional and absent */
            free(e->src);
            p->n_e--;
            return DSQ_OK;
        }
    }
    return shape_entry(p, e, err);
}

/* The architecture's computed tensor (rope_freqs.weight for llama3 rope scaling) as one
 * more PLAIN entry without a source tensor: its rows are p->extra.data. */
static dsq_status add_extra(dsq_qz_plan *p, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (p->arch->extra == NULL)
        return DSQ_OK;
    DSQ_TRY(p->arch->extra(&p->cfg, &p->hp, &p->extra, err));
    if (p->extra.data == NULL)
        return DSQ_OK;
    DSQ_TRY(reserve_entry(p, err));
    dsq_qz_entry *e = &p->e[p->n_e++];
    snprintf(e->t.name, sizeof e->t.name, "%s", p->extra.gguf);
    e->layer = -1;
    e->how = DSQ_QZ_SRC_PLAIN;
    e->t.n_dims = 1;
    e->t.ne[0] = p->extra.n;
    e->t.ne[1] = e->t.ne[2] = e->t.ne[3] = 1;
cleanup:
    return st;
}

/* Tensors no GGUF tensor comes from, by design: block scales (consumed with their weight),
 * rotary inv_freq buffers, and for deepseek2 "model.layers.N." with N >= block_count: the
 * multi-token-prediction layer llama.cpp's converter drops (unless kept, which makes it a
 * block), and anything past the layers config.json declares. */
static int is_skipped(const dsq_qz_plan *p, const char *name) {
    int il = -1, n = 0;
    const size_t len = strlen(name);
    if (len > 10 && strcmp(name + len - 10, "_scale_inv") == 0)
        return 1;
    if (strstr(name, "rotary_emb.inv_freq") != NULL)
        return 1;
    return p->arch->drops_extra_layers && sscanf(name, "model.layers.%d.%n", &il, &n) == 1 &&
           n > 0 && il >= dsq_qz_n_blocks(&p->hp);
}

/* llama_model_loader's weight_name_comparer: by layer (-1 first), then by name. */
static int entry_cmp(const void *pa, const void *pb) {
    const dsq_qz_entry *a = pa, *b = pb;
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    return strcmp(a->t.name, b->t.name);
}

int dsq_qz_plan_has_layer(const dsq_qz_plan *p, int64_t il) {
    char prefix[64];
    const int n = snprintf(prefix, sizeof prefix, "model.layers.%lld.", (long long)il);
    for (size_t i = 0; i < dsq_wsource_count(p->ws); i++)
        if (strncmp(dsq_wsource_name(p->ws, i), prefix, (size_t)n) == 0)
            return 1;
    return 0;
}

dsq_status dsq_qz_plan_hf(dsq_qz_plan *p, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t nt = dsq_wsource_count(p->ws);
    DSQ_CHECK((p->used = calloc(nt ? nt : 1, 1)) != NULL, DSQ_NOMEM, err, "out of memory");
    for (int il = -1; il < (int)dsq_qz_n_blocks(&p->hp); il++)
        for (int r = 0; r < p->arch->n_rows; r++)
            if (dsq_qz_row_applies(&p->arch->rows[r], &p->hp, il))
                DSQ_TRY(add_entry(p, &p->arch->rows[r], il, err));
    DSQ_TRY(add_extra(p, err));
    for (size_t i = 0; i < nt; i++) {
        const char *n = dsq_wsource_name(p->ws, i);
        DSQ_CHECK(p->used[i] || is_skipped(p, n), DSQ_FORMAT, err,
                  "tensor '%s' has no GGUF name in the %s mapping", n, p->arch->gguf_name);
    }
    qsort(p->e, p->n_e, sizeof *p->e, entry_cmp);
cleanup:
    return st;
}

/* ---- GGUF input ---- */

/* {arch}.<suffix> as an integer; def when absent or not a scalar integer (some
 * architectures store per-layer arrays, which the rules used here never need). */
static int64_t meta_int(const dsq_qz_plan *p, const char *suffix, int64_t def) {
    char key[160];
    int64_t v = 0;
    snprintf(key, sizeof key, "%s.%s", p->arch_name, suffix);
    return dsq_gguf_get_i64(p->gin, key, &v, NULL) == DSQ_OK ? v : def;
}

dsq_status dsq_qz_plan_gguf(dsq_qz_plan *p, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const char *an = NULL;
    size_t an_len = 0;
    p->gin = dsq_wsource_gguf(p->ws);
    DSQ_CHECK(dsq_gguf_find_key(p->gin, "general.architecture") >= 0, DSQ_FORMAT, err,
              "%s: no general.architecture key (not a llama.cpp model file)", p->in);
    DSQ_TRY(dsq_gguf_get_str(p->gin, "general.architecture", &an, &an_len, err));
    DSQ_CHECK(an_len > 0 && an_len < sizeof p->arch_name, DSQ_FORMAT, err,
              "%s: general.architecture is %zu bytes long", p->in, an_len);
    memcpy(p->arch_name, an, an_len);
    p->arch_name[an_len] = '\0';
    dsq_qz_model *m = &p->model;
    m->n_layer = (int)meta_int(p, "block_count", 0);
    m->n_expert = (int)meta_int(p, "expert_count", 0);
    m->n_head = (int)meta_int(p, "attention.head_count", 0);
    m->n_head_kv = (int)meta_int(p, "attention.head_count_kv", m->n_head);
    m->is_70b = strcmp(p->arch_name, "llama") == 0 && m->n_layer == 80 &&
                m->n_head != m->n_head_kv;
    const size_t nt = dsq_wsource_count(p->ws);
    p->e = calloc(nt > 0 ? nt : 1, sizeof *p->e);
    DSQ_CHECK(p->e != NULL, DSQ_NOMEM, err, "out of memory");
    p->cap_e = nt > 0 ? nt : 1;
    for (size_t i = 0; i < nt; i++) {
        dsq_qz_entry *e = &p->e[p->n_e];
        DSQ_CHECK((e->src = calloc(1, sizeof *e->src)) != NULL, DSQ_NOMEM, err,
                  "out of memory");
        p->n_e++;
        e->n_src = 1;
        DSQ_TRY(dsq_wsource_at(p->ws, i, &e->src[0], err));
        int il = -1;
        const dsq_wtensor *w = &e->src[0];
        memcpy(e->t.name, w->name, strlen(w->name) + 1); /* <= 63 bytes, the reader checks */
        e->t.n_dims = (uint32_t)w->ndim;
        for (int d = 0; d < 4; d++)
            e->t.ne[d] = d < w->ndim ? w->shape[w->ndim - 1 - d] : 1;
        if (sscanf(w->name, "blk.%d.", &il) != 1)
            il = -1;
        e->layer = il;
    }
    /* llama_model_loader's weight_name_comparer order, as for checkpoints */
    qsort(p->e, p->n_e, sizeof *p->e, entry_cmp);
    DSQ_TRY(dsq_qz_plan_types(p, err));
cleanup:
    return st;
}

/* ---- splits ---- */

/* gguf-split --split-max-size: tensors in order, each counted padded to 32 bytes (its
 * GGUF_DEFAULT_ALIGNMENT), a new file when the next tensor would pass the limit. A tensor
 * larger than the limit on its own is an error here (gguf-split stops with "one of splits
 * have 0 tensors" when it is the first, and lets later ones overflow). */
dsq_status dsq_qz_plan_splits(dsq_qz_plan *p, dsq_err *err) {
    const uint64_t max = p->o->split_max_bytes;
    uint64_t cur = 0;
    int k = 0;
    p->n_splits = 1;
    if (max == 0)
        return DSQ_OK;
    for (size_t i = 0; i < p->n_e; i++) {
        const uint64_t nb = p->e[i].t.nbytes + (32 - p->e[i].t.nbytes % 32) % 32;
        if (nb > max)
            return dsq_err_set(err, DSQ_RANGE,
                               "tensor '%s' takes %llu bytes, more than --split-max-size (%llu "
                               "bytes): no split can hold it",
                               p->e[i].t.name, (unsigned long long)nb, (unsigned long long)max);
        if (cur + nb > max) {
            k++;
            cur = 0;
        }
        cur += nb;
        p->e[i].split = k;
    }
    if (k + 1 > 65535)
        return dsq_err_set(err, DSQ_RANGE, "--split-max-size gives %d files (split.count is a u16)",
                           k + 1);
    p->n_splits = k + 1;
    return DSQ_OK;
}

void dsq_qz_plan_free(dsq_qz_plan *p) {
    for (size_t i = 0; i < p->n_e; i++)
        free(p->e[i].src);
    free(p->e);
    free(p->extra.data);
    free(p->used);
    for (size_t i = 0; i < p->n_ov; i++)
        regfree(&p->ov[i].re);
    free(p->ov);
    dsq_model_desc_free(&p->cfg);
    dsq_wsource_close(p->ws);
    dsq_imatrix_free(p->im);
    memset(p, 0, sizeof *p);
}
