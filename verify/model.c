/* verify/model.c: naming, loading and freeing a model's weights per layer. */
#include "verify/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/model_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static void set_linear(dsq__linear *l, const char *name, int64_t n_out, int64_t n_in) {
    snprintf(l->name, sizeof l->name, "%s", name);
    l->n_out = n_out;
    l->n_in = n_in;
}

#define LNAME(buf, ...) (snprintf(buf, sizeof buf, __VA_ARGS__), buf)

static void set_ffn(dsq__ffn *f, const char *prefix, int64_t D, int64_t F) {
    char b[128];
    set_linear(&f->gate, LNAME(b, "%sgate_proj.weight", prefix), F, D);
    set_linear(&f->up, LNAME(b, "%sup_proj.weight", prefix), F, D);
    set_linear(&f->down, LNAME(b, "%sdown_proj.weight", prefix), D, F);
}

/* Fills every name and shape of layer l; allocates the expert table. */
static dsq_status name_layer(dsq_model *m, int64_t l, dsq_err *err) {
    const dsq_model_config *c = &m->cfg;
    dsq__layer *L = &m->layers[l];
    const int64_t D = c->dim, H = c->n_heads;
    char p[64], b[128];
    snprintf(p, sizeof p, "model.layers.%lld.", (long long)l);
    if (c->arch == DSQ_ARCH_LLAMA) {
        const int64_t hd = c->head_dim;
        set_linear(&L->wq, LNAME(b, "%sself_attn.q_proj.weight", p), H * hd, D);
        set_linear(&L->wk, LNAME(b, "%sself_attn.k_proj.weight", p), c->n_kv_heads * hd, D);
        set_linear(&L->wv, LNAME(b, "%sself_attn.v_proj.weight", p), c->n_kv_heads * hd, D);
        set_linear(&L->wo, LNAME(b, "%sself_attn.o_proj.weight", p), D, H * hd);
    } else {
        const int64_t qk = c->qk_nope_dim + c->qk_rope_dim;
        if (c->q_lora_rank > 0) {
            set_linear(&L->q_a, LNAME(b, "%sself_attn.q_a_proj.weight", p), c->q_lora_rank, D);
            set_linear(&L->q_b, LNAME(b, "%sself_attn.q_b_proj.weight", p), H * qk,
                       c->q_lora_rank);
        } else {
            set_linear(&L->wq, LNAME(b, "%sself_attn.q_proj.weight", p), H * qk, D);
        }
        set_linear(&L->kv_a, LNAME(b, "%sself_attn.kv_a_proj_with_mqa.weight", p),
                   c->kv_lora_rank + c->qk_rope_dim, D);
        set_linear(&L->kv_b, LNAME(b, "%sself_attn.kv_b_proj.weight", p),
                   H * (c->qk_nope_dim + c->v_head_dim), c->kv_lora_rank);
        set_linear(&L->wo, LNAME(b, "%sself_attn.o_proj.weight", p), D, H * c->v_head_dim);
    }
    L->is_moe = dsq_model_config_layer_is_moe(c, l);
    if (!L->is_moe) {
        set_ffn(&L->mlp, LNAME(b, "%smlp.", p), D, c->ffn_dim);
        return DSQ_OK;
    }
    set_linear(&L->router, LNAME(b, "%smlp.gate.weight", p), c->n_experts, D);
    L->experts = calloc((size_t)c->n_experts, sizeof *L->experts);
    if (L->experts == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    for (int64_t e = 0; e < c->n_experts; e++)
        set_ffn(&L->experts[e], LNAME(b, "%smlp.experts.%lld.", p, (long long)e), D,
                c->moe_ffn_dim);
    if (c->n_shared_experts > 0)
        set_ffn(&L->shared, LNAME(b, "%smlp.shared_experts.", p), D,
                c->n_shared_experts * c->moe_ffn_dim);
    return DSQ_OK;
}

/* Reads a Linear weight, checks its shape and packs it for the GEMM, a few
 * panels at a time so that the F32 copy never exists whole. Chunks are read,
 * dequantized and packed in parallel: each fills its own panels. */
static dsq_status load_linear(const dsq_model *m, dsq__linear *l, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_winfo wi;
    dsq_wtensor wt; /* looked up once, read by every piece */
    DSQ_TRY(dsq_wsource_info(m->ws, l->name, &wi, err));
    DSQ_TRY(dsq_wsource_find(m->ws, l->name, &wt, err));
    DSQ_CHECK(wi.ndim == 2 && wi.shape[0] == l->n_out && wi.shape[1] == l->n_in, DSQ_FORMAT, err,
              "tensor '%s' has shape [%lld%s%lld], expected [%lld, %lld] from the config",
              l->name, (long long)wi.shape[0], wi.ndim == 2 ? ", " : "?",
              (long long)(wi.ndim == 2 ? wi.shape[1] : 0), (long long)l->n_out,
              (long long)l->n_in);
    DSQ_TRY(dsq_pmat_alloc(&l->w, l->n_out, l->n_in, err));
    const int64_t chunk = (int64_t)l->w.nr * 8; /* rows per piece, a multiple of the panel */
    const int64_t pieces = (l->n_out + chunk - 1) / chunk;
    int bad = 0;
    dsq_err perr = {0}; /* the first failing piece's message */
#pragma omp parallel num_threads(m->nthreads) if (pieces > 1 && l->n_out * l->n_in > (1 << 18))
    {
        float *tmp = malloc((size_t)chunk * (size_t)l->n_in * sizeof(float) + 1); /* [chunk][in] */
        dsq_err e = {0};
#pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < pieces; p++) {
            const int64_t r = p * chunk, n = r + chunk <= l->n_out ? chunk : l->n_out - r;
            dsq_status s = tmp == NULL ? dsq_err_set(&e, DSQ_NOMEM, "out of memory")
                                       : dsq_wsource_read(m->ws, &wt, r, n, tmp, &e);
            if (s == DSQ_OK) {
                dsq_pmat_pack_rows(&l->w, r, tmp, n, l->n_in);
            } else {
#pragma omp critical(dsq_load_error)
                if (!bad) {
                    bad = (int)s;
                    perr = e;
                }
            }
        }
        free(tmp);
    }
    if (bad)
        st = dsq_err_set(err, (dsq_status)bad, "%s", perr.text);
cleanup:
    if (st != DSQ_OK)
        dsq_pmat_free(&l->w);
    return st;
}

static dsq_status load_vec(const dsq_model *m, const char *name, int64_t d, float **out,
                           dsq_err *err) {
    return dsq_wsource_load(m->ws, name, 0, d, out, err);
}

static dsq_status load_ffn(const dsq_model *m, dsq__ffn *f, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DSQ_TRY(load_linear(m, &f->gate, err));
    DSQ_TRY(load_linear(m, &f->up, err));
    DSQ_TRY(load_linear(m, &f->down, err));
cleanup:
    return st;
}

static void free_ffn(dsq__ffn *f) {
    dsq_pmat_free(&f->gate.w);
    dsq_pmat_free(&f->up.w);
    dsq_pmat_free(&f->down.w);
}

void dsq_model_unload_layer(dsq_model *m, int64_t l) {
    dsq__layer *L = &m->layers[l];
    free(L->attn_norm);
    free(L->ffn_norm);
    free(L->q_a_norm);
    free(L->kv_a_norm);
    free(L->router_bias);
    L->attn_norm = L->ffn_norm = L->q_a_norm = L->kv_a_norm = L->router_bias = NULL;
    dsq__linear *lin[] = {&L->wq, &L->wk, &L->wv, &L->q_a, &L->q_b, &L->kv_a, &L->kv_b, &L->wo,
                          &L->router};
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++)
        dsq_pmat_free(&lin[i]->w);
    free_ffn(&L->mlp);
    free_ffn(&L->shared);
    if (L->experts != NULL)
        for (int64_t e = 0; e < m->cfg.n_experts; e++)
            free_ffn(&L->experts[e]);
    L->loaded = 0;
}

dsq_status dsq_model_load_layer(dsq_model *m, int64_t l, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_model_config *c = &m->cfg;
    dsq__layer *L = &m->layers[l];
    char b[160];
    if (L->loaded)
        return DSQ_OK;
    const int64_t D = c->dim;
    DSQ_TRY(load_vec(m, LNAME(b, "model.layers.%lld.input_layernorm.weight", (long long)l), D,
                     &L->attn_norm, err));
    DSQ_TRY(load_vec(m,
                     LNAME(b, "model.layers.%lld.post_attention_layernorm.weight", (long long)l),
                     D, &L->ffn_norm, err));
    if (c->arch == DSQ_ARCH_LLAMA) {
        DSQ_TRY(load_linear(m, &L->wq, err));
        DSQ_TRY(load_linear(m, &L->wk, err));
        DSQ_TRY(load_linear(m, &L->wv, err));
    } else {
        if (c->q_lora_rank > 0) {
            DSQ_TRY(load_linear(m, &L->q_a, err));
            DSQ_TRY(load_vec(m,
                             LNAME(b, "model.layers.%lld.self_attn.q_a_layernorm.weight",
                                   (long long)l),
                             c->q_lora_rank, &L->q_a_norm, err));
            DSQ_TRY(load_linear(m, &L->q_b, err));
        } else {
            DSQ_TRY(load_linear(m, &L->wq, err));
        }
        DSQ_TRY(load_linear(m, &L->kv_a, err));
        DSQ_TRY(load_vec(m,
                         LNAME(b, "model.layers.%lld.self_attn.kv_a_layernorm.weight",
                               (long long)l),
                         c->kv_lora_rank, &L->kv_a_norm, err));
        DSQ_TRY(load_linear(m, &L->kv_b, err));
    }
    DSQ_TRY(load_linear(m, &L->wo, err));
    if (!L->is_moe) {
        DSQ_TRY(load_ffn(m, &L->mlp, err));
    } else {
        DSQ_TRY(load_linear(m, &L->router, err));
        LNAME(b, "model.layers.%lld.mlp.gate.e_score_correction_bias", (long long)l);
        if (dsq_wsource_has(m->ws, b))
            DSQ_TRY(load_vec(m, b, c->n_experts, &L->router_bias, err));
        else
            DSQ_CHECK(c->topk_method != DSQ_MOE_TOPK_GROUP_TOP2SUM, DSQ_NOT_FOUND, err,
                      "tensor '%s' is missing (topk_method noaux_tc needs it)", b);
        for (int64_t e = 0; e < c->n_experts; e++)
            DSQ_TRY(load_ffn(m, &L->experts[e], err));
        if (c->n_shared_experts > 0)
            DSQ_TRY(load_ffn(m, &L->shared, err));
    }
    L->loaded = 1;
cleanup:
    if (st != DSQ_OK)
        dsq_model_unload_layer(m, l);
    return st;
}

int dsq_model_layer_loaded(const dsq_model *m, int64_t l) {
    return m->layers[l].loaded;
}

dsq_status dsq_model_open_source(dsq_model **out, dsq_wsource *ws, const dsq_model_opts *opts,
                                 dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_model *m = calloc(1, sizeof *m);
    *out = NULL;
    if (m == NULL) {
        dsq_wsource_close(ws);
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    }
    m->ws = ws;
#ifdef _OPENMP
    m->nthreads = opts != NULL && opts->nthreads > 0 ? opts->nthreads : omp_get_max_threads();
#else
    m->nthreads = 1;
#endif
    DSQ_TRY(dsq_wsource_config(ws, &m->cfg, err));
    const dsq_model_config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    DSQ_CHECK(m->layers != NULL, DSQ_NOMEM, err, "out of memory");
    for (int64_t l = 0; l < c->n_layers; l++)
        DSQ_TRY(name_layer(m, l, err));

    DSQ_TRY(dsq_wsource_load(ws, "model.embed_tokens.weight", c->vocab, c->dim, &m->embed, err));
    DSQ_TRY(load_vec(m, "model.norm.weight", c->dim, &m->final_norm, err));
    if (c->tie_embeddings || !dsq_wsource_has(ws, "lm_head.weight")) {
        DSQ_CHECK(c->tie_embeddings, DSQ_NOT_FOUND, err,
                  "tensor 'lm_head.weight' is missing and tie_word_embeddings is false");
        set_linear(&m->head, "model.embed_tokens.weight", c->vocab, c->dim);
        DSQ_TRY(dsq_pmat_pack(&m->head.w, m->embed, c->vocab, c->dim, c->dim, err));
    } else {
        set_linear(&m->head, "lm_head.weight", c->vocab, c->dim);
        DSQ_TRY(load_linear(m, &m->head, err));
    }
    if (opts == NULL || !opts->lazy)
        for (int64_t l = 0; l < c->n_layers; l++)
            DSQ_TRY(dsq_model_load_layer(m, l, err));
    *out = m;
    m = NULL;
cleanup:
    dsq_model_close(m);
    return st;
}

dsq_status dsq_model_open(dsq_model **out, const char *path, const dsq_model_opts *opts,
                          dsq_err *err) {
    dsq_wsource *ws = NULL;
    *out = NULL;
    const dsq_status st = dsq_wsource_open(&ws, path, opts != NULL ? &opts->source : NULL, err);
    if (st != DSQ_OK)
        return st;
    return dsq_model_open_source(out, ws, opts, err);
}

void dsq_model_close(dsq_model *m) {
    if (m == NULL)
        return;
    if (m->layers != NULL) {
        for (int64_t l = 0; l < m->cfg.n_layers; l++) {
            dsq_model_unload_layer(m, l);
            free(m->layers[l].experts);
        }
    }
    free(m->layers);
    free(m->embed);
    free(m->final_norm);
    dsq_pmat_free(&m->head.w);
    dsq_wsource_close(m->ws);
    free(m);
}

const dsq_model_config *dsq_model_get_config(const dsq_model *m) {
    return &m->cfg;
}

dsq_status dsq_model_tokenizer(const dsq_model *m, dsq_tokenizer **out, dsq_err *err) {
    return dsq_wsource_tokenizer(m->ws, out, err);
}

int dsq_model_nthreads(const dsq_model *m) {
    return m->nthreads;
}

static uint64_t lin_params(const dsq__linear *l) {
    return (uint64_t)l->n_out * (uint64_t)l->n_in;
}

static uint64_t ffn_params(const dsq__ffn *f) {
    return lin_params(&f->gate) + lin_params(&f->up) + lin_params(&f->down);
}

uint64_t dsq_model_param_count(const dsq_model *m) {
    const dsq_model_config *c = &m->cfg;
    uint64_t n = (uint64_t)c->vocab * (uint64_t)c->dim + (uint64_t)c->dim;
    if (!c->tie_embeddings)
        n += lin_params(&m->head);
    for (int64_t l = 0; l < c->n_layers; l++) {
        const dsq__layer *L = &m->layers[l];
        n += 2 * (uint64_t)c->dim;
        n += lin_params(&L->wq) + lin_params(&L->wk) + lin_params(&L->wv) + lin_params(&L->q_a) +
             lin_params(&L->q_b) + lin_params(&L->kv_a) + lin_params(&L->kv_b) +
             lin_params(&L->wo);
        if (c->arch == DSQ_ARCH_DEEPSEEK_V3)
            n += (uint64_t)(c->q_lora_rank + c->kv_lora_rank);
        if (!L->is_moe) {
            n += ffn_params(&L->mlp);
        } else {
            n += lin_params(&L->router) + (L->router_bias ? (uint64_t)c->n_experts : 0);
            for (int64_t e = 0; e < c->n_experts; e++)
                n += ffn_params(&L->experts[e]);
            n += ffn_params(&L->shared);
        }
    }
    return n;
}
