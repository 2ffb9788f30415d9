/* gguf_export/gguf_rules.c: llama.cpp's per-tensor type rules for its presets (see gguf_rules.h).
 *
 * Only the branches reachable from the presets dsq offers are here (the IQ1/IQ2/IQ3 and
 * TQ presets need quantizers dsq does not have). Every rule keeps llama.cpp's order and
 * its substring tests on the GGUF name, because that is what decides, for instance, that
 * "blk.3.ffn_down_exps.weight" and "blk.3.ffn_down_shexp.weight" follow the ffn_down
 * rule while "blk.3.attn_kv_b.weight" follows none. */
#include "gguf_export/gguf_rules.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const dsq_ftype_info ftypes[] = {
    {"F32", DSQ_FTYPE_ALL_F32, DSQ_DTYPE_F32},   {"F16", DSQ_FTYPE_F16, DSQ_DTYPE_F16},
    {"BF16", DSQ_FTYPE_BF16, DSQ_DTYPE_BF16},    {"Q8_0", DSQ_FTYPE_Q8_0, DSQ_DTYPE_Q8_0},
    {"Q4_0", DSQ_FTYPE_Q4_0, DSQ_DTYPE_Q4_0},    {"Q4_1", DSQ_FTYPE_Q4_1, DSQ_DTYPE_Q4_1},
    {"Q5_0", DSQ_FTYPE_Q5_0, DSQ_DTYPE_Q5_0},    {"Q5_1", DSQ_FTYPE_Q5_1, DSQ_DTYPE_Q5_1},
    {"Q2_K", DSQ_FTYPE_Q2_K, DSQ_DTYPE_Q2_K},    {"Q3_K_S", DSQ_FTYPE_Q3_K_S, DSQ_DTYPE_Q3_K},
    {"Q3_K_M", DSQ_FTYPE_Q3_K_M, DSQ_DTYPE_Q3_K}, {"Q3_K_L", DSQ_FTYPE_Q3_K_L, DSQ_DTYPE_Q3_K},
    {"Q4_K_S", DSQ_FTYPE_Q4_K_S, DSQ_DTYPE_Q4_K}, {"Q4_K_M", DSQ_FTYPE_Q4_K_M, DSQ_DTYPE_Q4_K},
    {"Q5_K_S", DSQ_FTYPE_Q5_K_S, DSQ_DTYPE_Q5_K}, {"Q5_K_M", DSQ_FTYPE_Q5_K_M, DSQ_DTYPE_Q5_K},
    {"Q6_K", DSQ_FTYPE_Q6_K, DSQ_DTYPE_Q6_K},    {"IQ4_NL", DSQ_FTYPE_IQ4_NL, DSQ_DTYPE_IQ4_NL},
    {"IQ4_XS", DSQ_FTYPE_IQ4_XS, DSQ_DTYPE_IQ4_XS},
};

const dsq_ftype_info *dsq_ftype_list(int *n) {
    *n = (int)(sizeof ftypes / sizeof ftypes[0]);
    return ftypes;
}

const dsq_ftype_info *dsq_ftype_find(const char *name) {
    static const char *const alias[][2] = {{"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcasecmp(name, alias[i][0]) == 0)
            name = alias[i][1];
    for (size_t i = 0; i < sizeof ftypes / sizeof ftypes[0]; i++)
        if (strcasecmp(name, ftypes[i].name) == 0)
            return &ftypes[i];
    return NULL;
}

int dsq_qz_use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 ||
           (i_layer - n_layers / 8) % 3 == 2;
}

static int has(const char *name, const char *part) {
    return strstr(name, part) != NULL;
}

int dsq_qz_is_quantizable(const char *name, int n_dims) {
    const size_t n = strlen(name);
    if (n < 6 || strcmp(name + n - 6, "weight") != 0)
        return 0;
    if (n_dims < 2)
        return 0;
    return !has(name, "_norm.weight") && !has(name, "ffn_gate_inp.weight") &&
           strcmp(name, "position_embd.weight") != 0 && strcmp(name, "token_types.weight") != 0;
}

static int64_t block_of(dsq_dtype t) {
    const dsq_dtype_info *i = dsq_dtype_get(t);
    return i ? (int64_t)i->block_size : 1;
}

/* llama.cpp's layer_info: with experts the layer comes from the name (experts of one
 * layer need not be consecutive), otherwise from the running counter. */
static dsq_status layer_info(const dsq_qz_state *s, int counter, const char *name, int *i_layer,
                             dsq_err *err) {
    *i_layer = counter;
    if (s->m.n_expert > 1) {
        if (sscanf(name, "blk.%d.", i_layer) != 1)
            return dsq_err_set(err, DSQ_FORMAT, "cannot determine the layer of tensor '%s'",
                               name);
        if (*i_layer < 0 || *i_layer >= s->m.n_layer)
            return dsq_err_set(err, DSQ_FORMAT, "tensor '%s': layer %d not in [0, %d)", name,
                               *i_layer, s->m.n_layer);
    }
    return DSQ_OK;
}

dsq_status dsq_qz_rule_type(dsq_qz_state *s, const dsq_ftype_info *ft, const char *name,
                            int64_t ne0, dsq_dtype *out, int *fallback, dsq_err *err) {
    const dsq_ftype f = ft->ftype;
    const int n_gqa = s->m.n_head_kv > 0 ? s->m.n_head / s->m.n_head_kv : 1;
    const int n_layer = s->m.n_layer;
    dsq_dtype t = ft->base;
    dsq_status st;
    int il;
    *fallback = 0;

    if (strcmp(name, "output.weight") == 0 ||
        (!s->m.has_output && strcmp(name, "token_embd.weight") == 0)) {
        if (ne0 % block_of(t) != 0)
            t = DSQ_DTYPE_Q8_0;
        else if (t != DSQ_DTYPE_Q8_0)
            t = DSQ_DTYPE_Q6_K;
    } else if (strcmp(name, "token_embd.weight") == 0) {
        /* only the TQ and IQ1/IQ2/IQ3 presets change it */
    } else if (has(name, "attn_v.weight")) {
        if (f == DSQ_FTYPE_Q2_K)
            t = n_gqa >= 4 ? DSQ_DTYPE_Q4_K : DSQ_DTYPE_Q3_K;
        else if (f == DSQ_FTYPE_Q3_K_M)
            t = s->i_attention_wv < 2 ? DSQ_DTYPE_Q5_K : DSQ_DTYPE_Q4_K;
        else if (f == DSQ_FTYPE_Q3_K_L)
            t = DSQ_DTYPE_Q5_K;
        else if ((f == DSQ_FTYPE_IQ4_NL || f == DSQ_FTYPE_IQ4_XS) && n_gqa >= 4)
            t = DSQ_DTYPE_Q5_K;
        else if ((f == DSQ_FTYPE_Q4_K_M || f == DSQ_FTYPE_Q5_K_M) &&
                 dsq_qz_use_more_bits(s->i_attention_wv, s->m.n_attention_wv))
            t = DSQ_DTYPE_Q6_K;
        else if (f == DSQ_FTYPE_Q4_K_S && s->i_attention_wv < 4)
            t = DSQ_DTYPE_Q5_K;
        if (s->m.is_70b && (t == DSQ_DTYPE_Q3_K || t == DSQ_DTYPE_Q4_K))
            t = DSQ_DTYPE_Q5_K;
        if (s->m.n_expert == 8)
            t = DSQ_DTYPE_Q8_0;
        ++s->i_attention_wv;
    } else if (has(name, "attn_k.weight")) {
        if (s->m.n_expert == 8)
            t = DSQ_DTYPE_Q8_0;
    } else if (has(name, "attn_q.weight")) {
        /* only IQ3_XS / IQ3_XXS change it */
    } else if (has(name, "ffn_down")) {
        if ((st = layer_info(s, s->i_ffn_down, name, &il, err)) != DSQ_OK)
            return st;
        if (f == DSQ_FTYPE_Q2_K)
            t = DSQ_DTYPE_Q3_K;
        else if (f == DSQ_FTYPE_Q3_K_M)
            t = il < n_layer / 16 ? DSQ_DTYPE_Q5_K : DSQ_DTYPE_Q4_K; /* non-Falcon */
        else if (f == DSQ_FTYPE_Q3_K_L)
            t = DSQ_DTYPE_Q5_K;
        else if (f == DSQ_FTYPE_Q4_K_M) {
            if (dsq_qz_use_more_bits(il, n_layer))
                t = DSQ_DTYPE_Q6_K;
        } else if (il < n_layer / 8 && (f == DSQ_FTYPE_IQ4_NL || f == DSQ_FTYPE_IQ4_XS) &&
                   !s->m.has_imatrix)
            t = DSQ_DTYPE_Q5_K;
        else if (f == DSQ_FTYPE_Q5_K_M && dsq_qz_use_more_bits(il, n_layer))
            t = DSQ_DTYPE_Q6_K;
        else if (f == DSQ_FTYPE_Q4_K_S && il < n_layer / 8)
            t = DSQ_DTYPE_Q5_K;
        else if ((f == DSQ_FTYPE_Q4_0 || f == DSQ_FTYPE_Q5_0) && s->m.has_imatrix &&
                 il < n_layer / 8)
            t = f == DSQ_FTYPE_Q4_0 ? DSQ_DTYPE_Q4_1 : DSQ_DTYPE_Q5_1;
        ++s->i_ffn_down;
    } else if (has(name, "attn_output.weight")) {
        if (s->m.n_expert == 8) {
            if (f == DSQ_FTYPE_Q2_K || f == DSQ_FTYPE_Q3_K_S || f == DSQ_FTYPE_Q3_K_M ||
                f == DSQ_FTYPE_IQ4_NL || f == DSQ_FTYPE_Q4_K_S || f == DSQ_FTYPE_Q4_K_M ||
                f == DSQ_FTYPE_IQ4_XS)
                t = DSQ_DTYPE_Q5_K;
        } else {
            if (f == DSQ_FTYPE_Q2_K)
                t = DSQ_DTYPE_Q3_K;
            else if (f == DSQ_FTYPE_Q3_K_M)
                t = DSQ_DTYPE_Q4_K;
            else if (f == DSQ_FTYPE_Q3_K_L)
                t = DSQ_DTYPE_Q5_K;
        }
    } else if (has(name, "attn_qkv.weight")) {
        if (f == DSQ_FTYPE_Q3_K_M || f == DSQ_FTYPE_Q3_K_L)
            t = DSQ_DTYPE_Q4_K;
        else if (f == DSQ_FTYPE_Q4_K_M)
            t = DSQ_DTYPE_Q5_K;
        else if (f == DSQ_FTYPE_Q5_K_M)
            t = DSQ_DTYPE_Q6_K;
    } else if (has(name, "ffn_gate")) {
        if ((st = layer_info(s, s->i_ffn_gate, name, &il, err)) != DSQ_OK)
            return st;
        ++s->i_ffn_gate; /* only IQ3_XS changes the type */
    } else if (has(name, "ffn_up")) {
        if ((st = layer_info(s, s->i_ffn_up, name, &il, err)) != DSQ_OK)
            return st;
        ++s->i_ffn_up;
    }

    if (ne0 % block_of(t) != 0) {
        dsq_dtype fb;
        switch (t) {
            case DSQ_DTYPE_Q2_K:
            case DSQ_DTYPE_Q3_K:
            case DSQ_DTYPE_IQ4_XS: fb = DSQ_DTYPE_IQ4_NL; break;
            case DSQ_DTYPE_Q4_K: fb = DSQ_DTYPE_Q5_0; break;
            case DSQ_DTYPE_Q5_K: fb = DSQ_DTYPE_Q5_1; break;
            case DSQ_DTYPE_Q6_K: fb = DSQ_DTYPE_Q8_0; break;
            default:
                return dsq_err_set(err, DSQ_UNSUPPORTED,
                                   "tensor '%s': row length %lld is not a multiple of %s's "
                                   "block of %lld and %s has no fallback type",
                                   name, (long long)ne0, dsq_dtype_name(t),
                                   (long long)block_of(t), dsq_dtype_name(t));
        }
        if (ne0 % block_of(fb) != 0)
            fb = DSQ_DTYPE_F16;
        t = fb;
        *fallback = 1;
    }
    *out = t;
    return DSQ_OK;
}
