/* gguf_export/gguf_arch.c: the architecture tables (see gguf_arch.h).
 *
 * Names and keys are those of llama.cpp's convert_hf_to_gguf.py (Feb 2025: classes Model,
 * LlamaModel, DeepseekV2Model; gguf-py/gguf/constants.py and tensor_mapping.py) and, for
 * the MLA layout with attn_k_b/attn_v_b, of the current converter (specs/formats.md §3.3).
 * The kept multi-token-prediction layer (deepseek2 with keep_mtp) has no Feb-2025 form:
 * its layout is that of the converters that keep such layers, added after it (Glm4MoeModel
 * for GLM-4.5 in mid-2025, DeepseekV32Model later; DeepseekV2Model, which converts
 * DeepseekV3ForCausalLM, still drops them): gguf-py's MODEL_TENSOR.NEXTN_* names
 * (constants.py "blk.{bid}.nextn.*", tensor_mapping.py model.layers.{bid}.*) and the
 * {arch}.nextn_predict_layers key (GGUFWriter.add_nextn_predict_layers).
 * Tensors the converter forces to F32 (norms, 1-D, the router, biases) are not marked
 * here: gguf_rules.h's dsq_qz_is_quantizable decides that from the GGUF name, as
 * llama-quantize does. */
#include "gguf_export/gguf_arch.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tensor_names.h"

/* ============================================================================================
 * config.json access
 * ========================================================================================== */

/* A number member (integer or real); 0 when absent or null, -1 when of another type. */
static int cfg_num(const dsq_cfg_val *v, double *out) {
    if (dsq_cfg_none(v))
        return 0;
    if (!dsq_cfg_is_num(v))
        return -1;
    *out = v->num;
    return 1;
}

static dsq_status cfg_int(const dsq_cfg_val *v, int required, int64_t *out, dsq_err *err) {
    double d = 0;
    const int r = cfg_num(v, &d);
    *out = 0;
    if (r == 0 && !required)
        return DSQ_OK;
    if (r <= 0 || d < 0 || d > 2147483647.0 || d != floor(d))
        return dsq_err_set(err, DSQ_FORMAT,
                           "config.json: '%s' is %s, expected a non-negative integer", v->key,
                           r == 0 ? "missing" : "not a non-negative integer");
    *out = (int64_t)d;
    return DSQ_OK;
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        const dsq_status st_ = (expr);                                                             \
        if (st_ != DSQ_OK)                                                                         \
            return st_;                                                                            \
    } while (0)

static dsq_status kv_u32(dsq_gguf_writer *w, const char *arch, const char *suffix, int64_t v,
                         dsq_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return dsq_gguf_writer_add_u32(w, key, (uint32_t)v, err);
}

static dsq_status kv_f32(dsq_gguf_writer *w, const char *arch, const char *suffix, double v,
                         dsq_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return dsq_gguf_writer_add_f32(w, key, (float)v, err);
}

/* Optional config members copied as they are: (GGUF suffix, config member, float?). */
typedef struct kv_copy {
    const char *suffix;
    size_t member; /* M(name): offset of the member in dsq_model_desc */
    int is_f32;
} kv_copy;

#define M(name) offsetof(dsq_model_desc, name)

static const dsq_cfg_val *member_at(const dsq_model_desc *cfg, size_t off) {
    return (const dsq_cfg_val *)(const void *)((const char *)cfg + off);
}

static dsq_status copy_kvs(dsq_gguf_writer *w, const char *arch, const dsq_model_desc *cfg,
                           const kv_copy *rows, size_t n, dsq_err *err) {
    for (size_t i = 0; i < n; i++) {
        double d;
        const dsq_cfg_val *v = member_at(cfg, rows[i].member);
        const int r = cfg_num(v, &d);
        if (r < 0)
            return dsq_err_set(err, DSQ_FORMAT, "config.json: '%s' is not a number", v->key);
        if (r == 0)
            continue;
        if (rows[i].is_f32) {
            TRY(kv_f32(w, arch, rows[i].suffix, d, err));
        } else {
            if (d < 0 || d > 4294967295.0 || d != floor(d))
                return dsq_err_set(err, DSQ_FORMAT,
                                   "config.json: '%s' is not a non-negative integer",
                                   v->key);
            TRY(kv_u32(w, arch, rows[i].suffix, (int64_t)d, err));
        }
    }
    return DSQ_OK;
}

/* Model.set_gguf_parameters (the base class), in its order. head_count_kv is written by the
 * caller because deepseek2's new MLA layout overrides it. */
static const kv_copy base_kv_head[] = {
    {"context_length", M(max_position_embeddings), 0},
    {"embedding_length", M(hidden_size), 0},
    {"feed_forward_length", M(intermediate_size), 0},
    {"attention.head_count", M(num_attention_heads), 0},
};
static const kv_copy base_kv_tail[] = {
    {"rope.freq_base", M(rope_theta), 1},
    {"attention.layer_norm_rms_epsilon", M(rms_norm_eps), 1},
    {"expert_used_count", M(num_experts_per_tok), 0},
    {"attention.key_length", M(head_dim), 0},
    {"attention.value_length", M(head_dim), 0},
};

static dsq_status base_kv(dsq_gguf_writer *w, const char *arch, const dsq_model_desc *cfg,
                          const dsq_qz_hparams *hp, int64_t head_kv_override, dsq_err *err) {
    TRY(kv_u32(w, arch, "block_count", dsq_qz_n_blocks(hp), err));
    TRY(copy_kvs(w, arch, cfg, base_kv_head, sizeof base_kv_head / sizeof base_kv_head[0], err));
    if (head_kv_override > 0)
        TRY(kv_u32(w, arch, "attention.head_count_kv", head_kv_override, err));
    else {
        static const kv_copy kv = {"attention.head_count_kv", M(num_key_value_heads), 0};
        TRY(copy_kvs(w, arch, cfg, &kv, 1, err));
    }
    return copy_kvs(w, arch, cfg, base_kv_tail, sizeof base_kv_tail / sizeof base_kv_tail[0],
                    err);
}

static int has_rope_scaling(const dsq_model_desc *cfg) {
    return cfg->rope_scaling.kind == DSQ_CFG_OBJECT;
}

/* The converter's reading: "type", else "rope_type" (the forward pass prefers rope_type) */
static const char *rope_scaling_type(const dsq_model_desc *cfg) {
    if (cfg->rs.type.kind == DSQ_CFG_STRING)
        return cfg->rs.type.str;
    return cfg->rs.rope_type.kind == DSQ_CFG_STRING ? cfg->rs.rope_type.str : NULL;
}

/* ============================================================================================
 * llama (LlamaModel)
 * ========================================================================================== */

static const dsq_qz_trow llama_rows[] = {
    {DSQ_TN_TOKEN_EMBD, 0, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_OUTPUT_NORM, 0, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_OUTPUT, DSQ_QZ_W_OPTIONAL, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_NORM, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_Q, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PERMUTE_Q},
    {DSQ_TN_ATTN_K, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PERMUTE_K},
    {DSQ_TN_ATTN_V, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_OUT, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_NORM, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_GATE, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_UP, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_DOWN, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
};

static dsq_status llama_kv(dsq_gguf_writer *w, const dsq_model_desc *cfg,
                           const dsq_qz_hparams *hp, dsq_err *err) {
    const char *a = "llama";
    TRY(base_kv(w, a, cfg, hp, 0, err));
    TRY(kv_u32(w, a, "vocab_size", hp->n_vocab, err));
    int64_t head_dim = 0;
    TRY(cfg_int(&cfg->head_dim, 0, &head_dim, err));
    TRY(kv_u32(w, a, "rope.dimension_count", head_dim ? head_dim : hp->n_embd / hp->n_head, err));
    if (has_rope_scaling(cfg)) {
        const char *t = rope_scaling_type(cfg);
        double factor = 0;
        /* llama3 scaling is no key: it is the rope_freqs.weight tensor (llama_extra) */
        if (t != NULL && strcmp(t, "linear") == 0 && cfg_num(&cfg->rs.factor, &factor) == 1) {
            TRY(dsq_gguf_writer_add_str(w, "llama.rope.scaling.type", "linear", 6, err));
            TRY(kv_f32(w, a, "rope.scaling.factor", factor, err));
        }
    }
    return DSQ_OK;
}

void dsq_qz_llama3_rope_factors(const dsq_qz_llama3_rope *p, float *out) {
    /* Every step in F32 as torch does it: Python numbers meeting a F32 tensor are rounded
     * to F32 first, and `x / t` with a number x is t.reciprocal() * x (Tensor.__rtruediv__).
     * torch's pow is SLEEF's (within 1 ulp), powf here as in verify/ops.c. */
    const int64_t half = p->dim / 2;
    const float base = (float)p->theta, dim = (float)p->dim, two_pi = (float)(2.0 * M_PI);
    const float factor = (float)p->factor, low = (float)p->low_freq_factor;
    const float orig = (float)p->orig_ctx;
    /* old_context_len / low_freq_factor etc. are Python doubles, compared as F32 */
    const float low_wl = (float)(p->orig_ctx / p->low_freq_factor);
    const float high_wl = (float)(p->orig_ctx / p->high_freq_factor);
    const float band = (float)(p->high_freq_factor - p->low_freq_factor);
    for (int64_t i = 0; i < half; i++) {
        const float freq = 1.0f / powf(base, (float)(2 * i) / dim);
        const float wl = (1.0f / freq) * two_pi;
        if (wl < high_wl) {
            out[i] = 1.0f;
        } else if (wl > low_wl) {
            out[i] = factor;
        } else {
            const float s = ((1.0f / wl) * orig - low) / band;
            out[i] = 1.0f / ((1.0f - s) / factor + s);
        }
    }
}

/* LlamaModel.generate_extra_tensors: rope_scaling type "llama3" becomes rope_freqs.weight
 * (no keys). Defaults are the converter's (factor 8, bands 1 and 4, 8192). One deliberate
 * difference: the Feb-2025 converter reads original_max_position_embeddings from the top
 * level of config.json, where Llama 3.x configs do not have it, so it always used 8192;
 * transformers and later converters read it from rope_scaling, and so does dsq (the top
 * level only when rope_scaling lacks it), so that the file means what the model means.
 * For every Llama 3.1/3.2/3.3 config (8192 in rope_scaling) the two agree. */
static dsq_status llama_extra(const dsq_model_desc *cfg, const dsq_qz_hparams *hp,
                              dsq_qz_extra *out, dsq_err *err) {
    memset(out, 0, sizeof *out);
    const char *t = has_rope_scaling(cfg) ? rope_scaling_type(cfg) : NULL;
    if (t == NULL || strcmp(t, "llama3") != 0)
        return DSQ_OK;
    dsq_qz_llama3_rope p = {10000.0, 0, 8.0, 1.0, 4.0, 8192.0};
    int64_t head_dim = 0;
    TRY(cfg_int(&cfg->head_dim, 0, &head_dim, err));
    p.dim = head_dim ? head_dim : hp->n_embd / hp->n_head;
    const dsq_cfg_val *const keys[] = {&cfg->rs.factor, &cfg->rs.low_freq_factor,
                                       &cfg->rs.high_freq_factor,
                                       &cfg->rs.original_max_position_embeddings};
    double *const vals[] = {&p.factor, &p.low_freq_factor, &p.high_freq_factor, &p.orig_ctx};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        int r = cfg_num(keys[k], vals[k]);
        if (r == 0 && k == 3)
            r = cfg_num(&cfg->original_max_position_embeddings, vals[k]);
        if (r < 0 || !isfinite(*vals[k]))
            return dsq_err_set(err, DSQ_FORMAT, "config.json: rope_scaling.%s is not a number",
                               keys[k]->key);
    }
    if (cfg_num(&cfg->rope_theta, &p.theta) < 0 || !(p.theta > 1.0) || !isfinite(p.theta))
        return dsq_err_set(err, DSQ_FORMAT, "config.json: rope_theta must be a number > 1");
    /* the converter asserts only that the bands differ; dsq's forward pass (and HF's
     * validation, as a warning) want them in order, so a file both can run is made */
    if (!(p.factor > 0) || !(p.low_freq_factor > 0) ||
        !(p.high_freq_factor > p.low_freq_factor) || !(p.orig_ctx > 0))
        return dsq_err_set(err, DSQ_FORMAT,
                           "config.json: llama3 rope_scaling needs factor > 0, 0 < "
                           "low_freq_factor < high_freq_factor and "
                           "original_max_position_embeddings > 0");
    if (p.dim < 2 || p.dim % 2 != 0)
        return dsq_err_set(err, DSQ_FORMAT, "config.json: head dim %lld is not even",
                           (long long)p.dim);
    out->data = malloc((size_t)(p.dim / 2) * sizeof *out->data);
    if (out->data == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    dsq_qz_llama3_rope_factors(&p, out->data);
    out->gguf = "rope_freqs.weight";
    out->n = p.dim / 2;
    return DSQ_OK;
}

static dsq_status llama_hparams(const dsq_model_desc *cfg, dsq_qz_hparams *hp, dsq_err *err) {
    TRY(cfg_int(&cfg->num_key_value_heads, 0, &hp->n_head_kv, err));
    if (hp->n_head_kv == 0)
        hp->n_head_kv = hp->n_head;
    if (hp->n_head == 0 || hp->n_head_kv == 0)
        return dsq_err_set(err, DSQ_FORMAT, "config.json: num_attention_heads is 0");
    return DSQ_OK;
}

/* ============================================================================================
 * deepseek2 (DeepseekV2Model; DeepSeek-V2/V2.5/V3/R1)
 * ========================================================================================== */

static const dsq_qz_trow ds2_rows[] = {
    {DSQ_TN_TOKEN_EMBD, 0, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_OUTPUT_NORM, 0, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_OUTPUT, 0, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_NORM, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_Q_A_NORM, DSQ_QZ_W_LAYER | DSQ_QZ_W_QLORA, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_KV_A_NORM, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_Q_A, DSQ_QZ_W_LAYER | DSQ_QZ_W_QLORA, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_Q_B, DSQ_QZ_W_LAYER | DSQ_QZ_W_QLORA, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_Q, DSQ_QZ_W_LAYER | DSQ_QZ_W_NO_QLORA, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_KV_A_MQA, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_KV_B, DSQ_QZ_W_LAYER | DSQ_QZ_W_KVB_OLD, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_ATTN_K_B, DSQ_QZ_W_LAYER | DSQ_QZ_W_KVB_NEW, DSQ_QZ_SRC_K_B},
    {DSQ_TN_ATTN_V_B, DSQ_QZ_W_LAYER | DSQ_QZ_W_KVB_NEW, DSQ_QZ_SRC_V_B},
    {DSQ_TN_ATTN_OUT, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_NORM, DSQ_QZ_W_LAYER, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_GATE, DSQ_QZ_W_LAYER | DSQ_QZ_W_DENSE, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_UP, DSQ_QZ_W_LAYER | DSQ_QZ_W_DENSE, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_DOWN, DSQ_QZ_W_LAYER | DSQ_QZ_W_DENSE, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_GATE_INP, DSQ_QZ_W_LAYER | DSQ_QZ_W_MOE, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_EXP_PROBS_B, DSQ_QZ_W_LAYER | DSQ_QZ_W_MOE | DSQ_QZ_W_OPTIONAL, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_GATE_EXPS, DSQ_QZ_W_LAYER | DSQ_QZ_W_MOE, DSQ_QZ_SRC_EXPERTS},
    {DSQ_TN_FFN_UP_EXPS, DSQ_QZ_W_LAYER | DSQ_QZ_W_MOE, DSQ_QZ_SRC_EXPERTS},
    {DSQ_TN_FFN_DOWN_EXPS, DSQ_QZ_W_LAYER | DSQ_QZ_W_MOE, DSQ_QZ_SRC_EXPERTS},
    {DSQ_TN_FFN_GATE_SHEXP, DSQ_QZ_W_LAYER | DSQ_QZ_W_MOE, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_UP_SHEXP, DSQ_QZ_W_LAYER | DSQ_QZ_W_MOE, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_FFN_DOWN_SHEXP, DSQ_QZ_W_LAYER | DSQ_QZ_W_MOE, DSQ_QZ_SRC_PLAIN},
    /* The MTP layer's own tensors, beside its usual attention/MoE ones. gguf-py maps them
     * for any architecture that lists MODEL_TENSOR.NEXTN_*; llama.cpp's loaders create
     * embed_tokens and shared_head_head with TENSOR_NOT_REQUIRED (the head may share the
     * main model's), so a checkpoint without them is fine here too. */
    {DSQ_TN_NEXTN_EH_PROJ, DSQ_QZ_W_LAYER | DSQ_QZ_W_NEXTN, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_NEXTN_ENORM, DSQ_QZ_W_LAYER | DSQ_QZ_W_NEXTN, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_NEXTN_HNORM, DSQ_QZ_W_LAYER | DSQ_QZ_W_NEXTN, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_NEXTN_SHARED_HEAD_NORM, DSQ_QZ_W_LAYER | DSQ_QZ_W_NEXTN, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_NEXTN_EMBED_TOKENS,
     DSQ_QZ_W_LAYER | DSQ_QZ_W_NEXTN | DSQ_QZ_W_OPTIONAL, DSQ_QZ_SRC_PLAIN},
    {DSQ_TN_NEXTN_SHARED_HEAD_HEAD,
     DSQ_QZ_W_LAYER | DSQ_QZ_W_NEXTN | DSQ_QZ_W_OPTIONAL, DSQ_QZ_SRC_PLAIN},
};

static const kv_copy ds2_kv_moe[] = {
    {"expert_feed_forward_length", M(moe_intermediate_size), 0},
    {"expert_count", M(n_routed_experts), 0},
    {"expert_shared_count", M(n_shared_experts), 0},
    {"expert_weights_scale", M(routed_scaling_factor), 1},
};
/* Written by newer converters only; the Feb-2025 loader ignores them (specs §3.3). */
static const kv_copy ds2_kv_groups[] = {
    {"expert_group_count", M(n_group), 0},
    {"expert_group_used_count", M(topk_group), 0},
};

static dsq_status ds2_kv(dsq_gguf_writer *w, const dsq_model_desc *cfg,
                         const dsq_qz_hparams *hp, dsq_err *err) {
    const char *a = "deepseek2";
    /* New layout: "MLA converts into MQA", num_key_value_heads = 1. */
    TRY(base_kv(w, a, cfg, hp, hp->kvb_legacy ? 0 : 1, err));
    TRY(kv_u32(w, a, "leading_dense_block_count", hp->n_dense_lead, err));
    TRY(kv_u32(w, a, "vocab_size", hp->n_vocab, err));
    if (hp->q_lora_rank > 0)
        TRY(kv_u32(w, a, "attention.q_lora_rank", hp->q_lora_rank, err));
    TRY(kv_u32(w, a, "attention.kv_lora_rank", hp->kv_lora_rank, err));
    if (hp->kvb_legacy) {
        TRY(kv_u32(w, a, "attention.key_length", hp->qk_nope + hp->qk_rope, err));
        TRY(kv_u32(w, a, "attention.value_length", hp->v_head_dim, err));
    } else {
        TRY(kv_u32(w, a, "attention.key_length", hp->kv_lora_rank + hp->qk_rope, err));
        TRY(kv_u32(w, a, "attention.value_length", hp->kv_lora_rank, err));
        TRY(kv_u32(w, a, "attention.key_length_mla", hp->qk_nope + hp->qk_rope, err));
        TRY(kv_u32(w, a, "attention.value_length_mla", hp->v_head_dim, err));
    }
    TRY(copy_kvs(w, a, cfg, ds2_kv_moe, sizeof ds2_kv_moe / sizeof ds2_kv_moe[0], err));
    if (dsq_cfg_is_bool(&cfg->norm_topk_prob))
        TRY(dsq_gguf_writer_add_bool(w, "deepseek2.expert_weights_norm",
                                     cfg->norm_topk_prob.kind == DSQ_CFG_TRUE, err));
    TRY(copy_kvs(w, a, cfg, ds2_kv_groups, sizeof ds2_kv_groups / sizeof ds2_kv_groups[0], err));
    const char *sf = cfg->scoring_func.kind == DSQ_CFG_STRING ? cfg->scoring_func.str : NULL;
    if (sf == NULL)
        sf = "softmax";
    if (strcmp(sf, "sigmoid") != 0 && strcmp(sf, "softmax") != 0)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "config.json: scoring_func '%s' not supported",
                           sf);
    /* ExpertGatingFuncType: SOFTMAX 1, SIGMOID 2 */
    TRY(kv_u32(w, a, "expert_gating_func", strcmp(sf, "sigmoid") == 0 ? 2 : 1, err));
    TRY(kv_u32(w, a, "rope.dimension_count", hp->qk_rope, err));
    double factor = 0, orig = 0, mscale_all = 0;
    if (has_rope_scaling(cfg) && cfg_num(&cfg->rs.factor, &factor) == 1) {
        const char *t = rope_scaling_type(cfg);
        if (t != NULL && strcmp(t, "yarn") == 0) {
            if (cfg_num(&cfg->rs.original_max_position_embeddings, &orig) != 1 || orig < 0)
                return dsq_err_set(err, DSQ_FORMAT,
                                   "config.json: rope_scaling.original_max_position_embeddings "
                                   "missing");
            if (cfg_num(&cfg->rs.mscale_all_dim, &mscale_all) < 0)
                return dsq_err_set(err, DSQ_FORMAT,
                                   "config.json: rope_scaling.mscale_all_dim is not a number");
            TRY(dsq_gguf_writer_add_str(w, "deepseek2.rope.scaling.type", "yarn", 4, err));
            TRY(kv_f32(w, a, "rope.scaling.factor", factor, err));
            TRY(kv_u32(w, a, "rope.scaling.original_context_length", (int64_t)orig, err));
            TRY(kv_f32(w, a, "rope.scaling.yarn_log_multiplier", 0.1 * mscale_all, err));
        }
    }
    /* DeepseekV32Model.set_gguf_parameters adds it after all of DeepseekV2Model's keys */
    if (dsq_qz_n_blocks(hp) > hp->n_layer)
        TRY(kv_u32(w, a, "nextn_predict_layers", dsq_qz_n_blocks(hp) - hp->n_layer, err));
    return DSQ_OK;
}

static dsq_status ds2_hparams(const dsq_model_desc *cfg, dsq_qz_hparams *hp, dsq_err *err) {
    TRY(cfg_int(&cfg->num_key_value_heads, 0, &hp->n_head_kv, err));
    TRY(cfg_int(&cfg->first_k_dense_replace, 1, &hp->n_dense_lead, err));
    TRY(cfg_int(&cfg->q_lora_rank, 0, &hp->q_lora_rank, err));
    TRY(cfg_int(&cfg->kv_lora_rank, 1, &hp->kv_lora_rank, err));
    TRY(cfg_int(&cfg->qk_nope_head_dim, 1, &hp->qk_nope, err));
    TRY(cfg_int(&cfg->qk_rope_head_dim, 1, &hp->qk_rope, err));
    TRY(cfg_int(&cfg->v_head_dim, 1, &hp->v_head_dim, err));
    TRY(cfg_int(&cfg->n_routed_experts, 1, &hp->n_expert, err));
    TRY(cfg_int(&cfg->num_experts_per_tok, 1, &hp->n_expert_used, err));
    /* read only when asked for, so that without --keep-mtp nothing changes for any config */
    if (hp->keep_mtp)
        TRY(cfg_int(&cfg->num_nextn_predict_layers, 0, &hp->n_mtp, err));
    if (hp->n_head == 0 || hp->kv_lora_rank == 0 || hp->n_expert == 0)
        return dsq_err_set(err, DSQ_FORMAT,
                           "config.json: num_attention_heads, kv_lora_rank and "
                           "n_routed_experts must be non-zero");
    if (hp->n_head_kv == 0)
        hp->n_head_kv = hp->n_head;
    return DSQ_OK;
}

/* ============================================================================================
 * The registry
 * ========================================================================================== */

static const struct {
    dsq_qz_arch a;
    dsq_status (*hparams)(const dsq_model_desc *cfg, dsq_qz_hparams *hp, dsq_err *err);
} archs[] = {
    {{"LlamaForCausalLM", "llama", llama_rows, (int)(sizeof llama_rows / sizeof llama_rows[0]),
      llama_kv, 0, llama_extra},
     llama_hparams},
    {{"DeepseekV3ForCausalLM", "deepseek2", ds2_rows, (int)(sizeof ds2_rows / sizeof ds2_rows[0]),
      ds2_kv, 1, NULL},
     ds2_hparams},
};

const dsq_qz_arch *dsq_qz_arch_find(const char *hf_name) {
    for (size_t i = 0; hf_name != NULL && i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i].a.hf_name, hf_name) == 0)
            return &archs[i].a;
    return NULL;
}

const char *dsq_qz_arch_names(void) {
    return "LlamaForCausalLM, DeepseekV3ForCausalLM";
}

dsq_status dsq_qz_hparams_read(const dsq_qz_arch *a, const dsq_model_desc *cfg,
                               dsq_qz_hparams *hp, dsq_err *err) {
    const int legacy = hp->kvb_legacy, keep_mtp = hp->keep_mtp;
    memset(hp, 0, sizeof *hp);
    hp->kvb_legacy = legacy;
    hp->keep_mtp = keep_mtp && a->drops_extra_layers;
    TRY(cfg_int(&cfg->num_hidden_layers, 1, &hp->n_layer, err));
    TRY(cfg_int(&cfg->hidden_size, 1, &hp->n_embd, err));
    TRY(cfg_int(&cfg->num_attention_heads, 1, &hp->n_head, err));
    TRY(cfg_int(&cfg->vocab_size, 1, &hp->n_vocab, err));
    if (hp->n_layer == 0 || hp->n_embd == 0 || hp->n_vocab == 0)
        return dsq_err_set(err, DSQ_FORMAT,
                           "config.json: num_hidden_layers, hidden_size and vocab_size must be "
                           "non-zero");
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (&archs[i].a == a)
            return archs[i].hparams(cfg, hp, err);
    return dsq_err_set(err, DSQ_UNSUPPORTED, "architecture '%s' has no parameter reader",
                       a->hf_name);
}

int dsq_qz_row_applies(const dsq_qz_trow *r, const dsq_qz_hparams *hp, int il) {
    const unsigned w = r->when;
    if (((w & DSQ_QZ_W_LAYER) != 0) != (il >= 0))
        return 0;
    if ((w & DSQ_QZ_W_DENSE) && il >= hp->n_dense_lead)
        return 0;
    if ((w & DSQ_QZ_W_MOE) && il < hp->n_dense_lead)
        return 0;
    if ((w & DSQ_QZ_W_QLORA) && hp->q_lora_rank == 0)
        return 0;
    if ((w & DSQ_QZ_W_NO_QLORA) && hp->q_lora_rank != 0)
        return 0;
    if ((w & DSQ_QZ_W_KVB_NEW) && hp->kvb_legacy)
        return 0;
    if ((w & DSQ_QZ_W_KVB_OLD) && !hp->kvb_legacy)
        return 0;
    if ((w & DSQ_QZ_W_NEXTN) && il < hp->n_layer)
        return 0;
    return 1;
}

int64_t dsq_qz_permute_src_row(int64_t row, int64_t n_rows, int64_t n_head) {
    const int64_t hd = n_rows / n_head, half = hd / 2;
    const int64_t h = row / hd, k = row % hd; /* k = 2i + j */
    return h * hd + (k % 2) * half + k / 2;
}
