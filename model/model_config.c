/* model/model_config.c: the forward pass's reading of a model description
 * (dsq_model_desc -> dsq_model_config): which models it can run, and their numbers. */
#include "model/model_config.h"

#include <math.h>
#include <string.h>

/* ---- typed getters: absent or null -> default, present with the wrong type -> error ---- */

/* A null value counts as absent (q_lora_rank: null means "no q LoRA"). */
static dsq_status get_int(const char *label, const dsq_cfg_val *v, int required, int64_t def,
                          int64_t lo, int64_t hi, int64_t *out, dsq_err *err) {
    if (dsq_cfg_none(v)) {
        if (required)
            return dsq_err_set(err, DSQ_FORMAT, "%s: %s%s is missing", label, v->where, v->key);
        *out = def;
        return DSQ_OK;
    }
    int64_t x;
    if (v->kind == DSQ_CFG_INT) {
        x = v->i;
    } else if (v->kind == DSQ_CFG_REAL && v->num == floor(v->num) && fabs(v->num) < 9e15) {
        x = (int64_t)v->num;
    } else {
        return dsq_err_set(err, DSQ_FORMAT, "%s: %s%s is not an integer", label, v->where,
                           v->key);
    }
    if (x < lo || x > hi)
        return dsq_err_set(err, DSQ_FORMAT, "%s: %s%s = %lld is out of range [%lld, %lld]",
                           label, v->where, v->key, (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return DSQ_OK;
}

static dsq_status get_num(const char *label, const dsq_cfg_val *v, int required, double def,
                          double *out, dsq_err *err) {
    if (dsq_cfg_none(v)) {
        if (required)
            return dsq_err_set(err, DSQ_FORMAT, "%s: %s%s is missing", label, v->where, v->key);
        *out = def;
        return DSQ_OK;
    }
    if (!dsq_cfg_is_num(v) || !isfinite(v->num))
        return dsq_err_set(err, DSQ_FORMAT, "%s: %s%s is not a finite number", label, v->where,
                           v->key);
    *out = v->num;
    return DSQ_OK;
}

static dsq_status get_bool(const char *label, const dsq_cfg_val *v, int def, int *out,
                           dsq_err *err) {
    if (dsq_cfg_none(v)) {
        *out = def;
        return DSQ_OK;
    }
    if (!dsq_cfg_is_bool(v))
        return dsq_err_set(err, DSQ_FORMAT, "%s: %s%s is not a boolean", label, v->where, v->key);
    *out = v->kind == DSQ_CFG_TRUE;
    return DSQ_OK;
}

/* NULL when absent or null; an error when present but not a string. */
static dsq_status get_str(const char *label, const dsq_cfg_val *v, const char **out,
                          dsq_err *err) {
    *out = NULL;
    if (dsq_cfg_none(v))
        return DSQ_OK;
    if (v->kind != DSQ_CFG_STRING)
        return dsq_err_set(err, DSQ_FORMAT, "%s: %s%s is not a string", label, v->where, v->key);
    *out = v->str;
    return DSQ_OK;
}

#define BIG ((int64_t)1 << 40)

static dsq_status parse_rope(const dsq_model_desc *d, const char *label, dsq_model_config *c,
                             dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_rope_config *r = &c->rope;
    DSQ_TRY(get_num(label, &d->rope_theta, 0, 10000.0, &r->theta, err));
    DSQ_CHECK(r->theta > 1.0, DSQ_FORMAT, err, "%s: rope_theta = %g must be > 1", label, r->theta);
    r->type = DSQ_ROPE_DEFAULT;
    r->factor = 1.0;
    if (dsq_cfg_none(&d->rope_scaling))
        return DSQ_OK;
    DSQ_CHECK(d->rope_scaling.kind == DSQ_CFG_OBJECT, DSQ_FORMAT, err,
              "%s: rope_scaling is not an object", label);
    const char *type = NULL, *type2 = NULL;
    DSQ_TRY(get_str(label, &d->rs.rope_type, &type, err));
    DSQ_TRY(get_str(label, &d->rs.type, &type2, err));
    if (type == NULL)
        type = type2;
    DSQ_CHECK(type != NULL, DSQ_FORMAT, err, "%s: rope_scaling has no rope_type", label);
    DSQ_TRY(get_num(label, &d->rs.factor, strcmp(type, "default") != 0, 1.0, &r->factor, err));
    DSQ_CHECK(r->factor > 0, DSQ_FORMAT, err, "%s: rope_scaling.factor must be > 0", label);
    if (strcmp(type, "default") == 0) {
        r->type = DSQ_ROPE_DEFAULT;
    } else if (strcmp(type, "linear") == 0) {
        r->type = DSQ_ROPE_LINEAR;
    } else if (strcmp(type, "yarn") == 0) {
        r->type = DSQ_ROPE_YARN;
        DSQ_TRY(get_int(label, &d->rs.original_max_position_embeddings, 1, 0, 1, BIG,
                        &r->orig_max_pos, err));
        DSQ_TRY(get_num(label, &d->rs.beta_fast, 0, 32.0, &r->beta_fast, err));
        DSQ_TRY(get_num(label, &d->rs.beta_slow, 0, 1.0, &r->beta_slow, err));
        DSQ_TRY(get_num(label, &d->rs.mscale, 0, 0.0, &r->mscale, err));
        DSQ_TRY(get_num(label, &d->rs.mscale_all_dim, 0, 0.0, &r->mscale_all_dim, err));
        DSQ_TRY(get_num(label, &d->rs.attention_factor, 0, 0.0, &r->attn_factor, err));
        DSQ_CHECK(r->beta_fast > 0 && r->beta_slow > 0, DSQ_FORMAT, err,
                  "%s: rope_scaling.beta_fast/beta_slow must be > 0", label);
    } else if (strcmp(type, "llama3") == 0) {
        r->type = DSQ_ROPE_LLAMA3;
        DSQ_TRY(get_int(label, &d->rs.original_max_position_embeddings, 1, 0, 1, BIG,
                        &r->orig_max_pos, err));
        DSQ_TRY(get_num(label, &d->rs.low_freq_factor, 1, 0, &r->low_freq_factor, err));
        DSQ_TRY(get_num(label, &d->rs.high_freq_factor, 1, 0, &r->high_freq_factor, err));
        DSQ_CHECK(r->high_freq_factor > r->low_freq_factor && r->low_freq_factor > 0,
                  DSQ_FORMAT, err, "%s: rope_scaling needs 0 < low_freq_factor < high_freq_factor",
                  label);
    } else {
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err, "%s: rope_scaling type '%s' is not supported "
                  "(default, linear, llama3, yarn are)", label, type);
    }
cleanup:
    return st;
}

static dsq_status parse_moe(const dsq_model_desc *d, const char *label, dsq_model_config *c,
                            dsq_err *err) {
    dsq_status st = DSQ_OK;
    DSQ_TRY(get_int(label, &d->n_routed_experts, 0, 0, 0, 1 << 20, &c->n_experts, err));
    if (c->n_experts == 0)
        return DSQ_OK;
    DSQ_TRY(get_int(label, &d->num_experts_per_tok, 1, 0, 1, c->n_experts, &c->n_experts_used,
                    err));
    DSQ_TRY(get_int(label, &d->n_shared_experts, 0, 0, 0, 1 << 10, &c->n_shared_experts, err));
    DSQ_TRY(get_int(label, &d->moe_intermediate_size, 1, 0, 1, BIG, &c->moe_ffn_dim, err));
    DSQ_TRY(get_int(label, &d->n_group, 0, 1, 1, DSQ_MOE_MAX_GROUPS, &c->n_group, err));
    DSQ_TRY(get_int(label, &d->topk_group, 0, c->n_group, 1, c->n_group, &c->topk_group, err));
    DSQ_TRY(get_int(label, &d->first_k_dense_replace, 0, 0, 0, BIG, &c->first_dense, err));
    DSQ_TRY(get_int(label, &d->moe_layer_freq, 0, 1, 1, BIG, &c->moe_layer_freq, err));
    DSQ_TRY(get_num(label, &d->routed_scaling_factor, 0, 1.0, &c->routed_scaling, err));
    DSQ_TRY(get_bool(label, &d->norm_topk_prob, 0, &c->norm_topk_prob, err));
    DSQ_CHECK(c->n_experts % c->n_group == 0, DSQ_FORMAT, err,
              "%s: n_routed_experts %lld is not a multiple of n_group %lld", label,
              (long long)c->n_experts, (long long)c->n_group);
    const char *scoring = NULL, *method = NULL;
    DSQ_TRY(get_str(label, &d->scoring_func, &scoring, err));
    DSQ_TRY(get_str(label, &d->topk_method, &method, err));
    if (scoring == NULL || strcmp(scoring, "softmax") == 0)
        c->scoring = DSQ_MOE_SOFTMAX;
    else if (strcmp(scoring, "sigmoid") == 0)
        c->scoring = DSQ_MOE_SIGMOID;
    else
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err, "%s: scoring_func '%s' is not supported", label,
                  scoring);
    if (method == NULL || strcmp(method, "greedy") == 0)
        c->topk_method = DSQ_MOE_TOPK_GREEDY;
    else if (strcmp(method, "group_limited_greedy") == 0)
        c->topk_method = DSQ_MOE_TOPK_GROUP_MAX;
    else if (strcmp(method, "noaux_tc") == 0)
        c->topk_method = DSQ_MOE_TOPK_GROUP_TOP2SUM;
    else
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err, "%s: topk_method '%s' is not supported", label, method);
    if (c->topk_method == DSQ_MOE_TOPK_GROUP_TOP2SUM)
        DSQ_CHECK(c->n_experts / c->n_group >= 2, DSQ_FORMAT, err,
                  "%s: noaux_tc needs at least 2 experts per group", label);
    if (c->topk_method != DSQ_MOE_TOPK_GREEDY)
        DSQ_CHECK(c->n_experts_used <= c->topk_group * (c->n_experts / c->n_group), DSQ_FORMAT,
                  err, "%s: num_experts_per_tok exceeds the experts of topk_group groups", label);
cleanup:
    return st;
}

/* quantization_config: only DeepSeek's fp8 block layout is read here; any other method
 * is a source the forward pass cannot read yet. */
static dsq_status parse_quant(const dsq_model_desc *d, const char *label, dsq_model_config *c,
                              dsq_err *err) {
    dsq_status st = DSQ_OK;
    c->fp8_block_rows = c->fp8_block_cols = 128;
    if (dsq_cfg_none(&d->quantization_config))
        return DSQ_OK;
    DSQ_CHECK(d->quantization_config.kind == DSQ_CFG_OBJECT, DSQ_FORMAT, err,
              "%s: quantization_config is not an object", label);
    const char *method = NULL;
    DSQ_TRY(get_str(label, &d->qc.quant_method, &method, err));
    DSQ_CHECK(method != NULL && strcmp(method, "fp8") == 0, DSQ_UNSUPPORTED, err,
              "%s: quantization_config.quant_method '%s' is not supported (only fp8)", label,
              method ? method : "?");
    c->has_fp8_block = 1;
    if (dsq_cfg_none(&d->qc.weight_block_size))
        return DSQ_OK;
    DSQ_CHECK(d->block_is_pair && d->block[0] > 0 && d->block[1] > 0 &&
                  d->block[0] <= (1 << 20) && d->block[1] <= (1 << 20),
              DSQ_FORMAT, err,
              "%s: quantization_config.weight_block_size must be [rows, cols] > 0", label);
    c->fp8_block_rows = d->block[0];
    c->fp8_block_cols = d->block[1];
cleanup:
    return st;
}

dsq_status dsq_model_config_from_desc(const dsq_model_desc *d, const char *label,
                                      dsq_model_config *cfg, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_model_config c;
    memset(&c, 0, sizeof c);
    const char *mtype = NULL, *arch0 = d->architecture;
    DSQ_TRY(get_str(label, &d->model_type, &mtype, err));
    if ((mtype && strcmp(mtype, "llama") == 0) || (arch0 && strcmp(arch0, "LlamaForCausalLM") == 0))
        c.arch = DSQ_ARCH_LLAMA;
    else if ((mtype && strcmp(mtype, "deepseek_v3") == 0) ||
             (arch0 && strcmp(arch0, "DeepseekV3ForCausalLM") == 0))
        c.arch = DSQ_ARCH_DEEPSEEK_V3;
    else
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err,
                  "%s: architecture %s (model_type %s) is not supported; the forward pass "
                  "runs LlamaForCausalLM and DeepseekV3ForCausalLM",
                  label, arch0 ? arch0 : "?", mtype ? mtype : "?");

    DSQ_TRY(get_int(label, &d->vocab_size, 1, 0, 1, 1 << 24, &c.vocab, err));
    DSQ_TRY(get_int(label, &d->hidden_size, 1, 0, 1, 1 << 20, &c.dim, err));
    DSQ_TRY(get_int(label, &d->num_hidden_layers, 1, 0, 1, 1 << 12, &c.n_layers, err));
    DSQ_TRY(get_int(label, &d->num_attention_heads, 1, 0, 1, 1 << 14, &c.n_heads, err));
    DSQ_TRY(get_int(label, &d->num_key_value_heads, 0, c.n_heads, 1, c.n_heads, &c.n_kv_heads,
                    err));
    DSQ_TRY(get_int(label, &d->intermediate_size, 1, 0, 1, BIG, &c.ffn_dim, err));
    /* only for `dsq ppl`'s warning: any integer is taken */
    DSQ_TRY(get_int(label, &d->max_position_embeddings, 0, 0, INT64_MIN, INT64_MAX,
                    &c.n_ctx_train, err));
    DSQ_TRY(get_num(label, &d->rms_norm_eps, 0, 1e-6, &c.norm_eps, err));
    DSQ_CHECK(c.norm_eps >= 0, DSQ_FORMAT, err, "%s: rms_norm_eps is negative", label);
    DSQ_TRY(get_bool(label, &d->tie_word_embeddings, 0, &c.tie_embeddings, err));
    int64_t tok;
    DSQ_TRY(get_int(label, &d->bos_token_id, 0, -1, -1, c.vocab - 1, &tok, err));
    c.bos = (int32_t)tok;
    if (d->eos_token_id.kind == DSQ_CFG_ARRAY) {
        c.eos = -1; /* several eos ids: not needed by the forward pass */
    } else {
        DSQ_TRY(get_int(label, &d->eos_token_id, 0, -1, -1, c.vocab - 1, &tok, err));
        c.eos = (int32_t)tok;
    }

    const char *act = NULL;
    DSQ_TRY(get_str(label, &d->hidden_act, &act, err));
    DSQ_CHECK(act == NULL || strcmp(act, "silu") == 0, DSQ_UNSUPPORTED, err,
              "%s: hidden_act '%s' is not supported (only silu)", label, act);
    int bias = 0;
    DSQ_TRY(get_bool(label, &d->attention_bias, 0, &bias, err));
    DSQ_CHECK(!bias, DSQ_UNSUPPORTED, err, "%s: attention_bias is not supported", label);
    DSQ_TRY(get_bool(label, &d->mlp_bias, 0, &bias, err));
    DSQ_CHECK(!bias, DSQ_UNSUPPORTED, err, "%s: mlp_bias is not supported", label);

    DSQ_TRY(parse_rope(d, label, &c, err));

    if (c.arch == DSQ_ARCH_LLAMA) {
        DSQ_CHECK(c.n_heads % c.n_kv_heads == 0, DSQ_FORMAT, err,
                  "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                  label, (long long)c.n_heads, (long long)c.n_kv_heads);
        DSQ_TRY(get_int(label, &d->head_dim, 0, c.dim / c.n_heads, 2, 1 << 16, &c.head_dim, err));
        DSQ_CHECK(c.head_dim % 2 == 0, DSQ_FORMAT, err, "%s: head_dim must be even", label);
        c.rope.dim = c.head_dim;
        c.rope.layout = DSQ_ROPE_PAIRS_HALF;
    } else {
        DSQ_TRY(get_int(label, &d->q_lora_rank, 0, 0, 0, BIG, &c.q_lora_rank, err));
        DSQ_TRY(get_int(label, &d->kv_lora_rank, 1, 0, 1, BIG, &c.kv_lora_rank, err));
        DSQ_TRY(get_int(label, &d->qk_nope_head_dim, 1, 0, 0, 1 << 16, &c.qk_nope_dim, err));
        DSQ_TRY(get_int(label, &d->qk_rope_head_dim, 1, 0, 2, 1 << 16, &c.qk_rope_dim, err));
        DSQ_TRY(get_int(label, &d->v_head_dim, 1, 0, 1, 1 << 16, &c.v_head_dim, err));
        DSQ_CHECK(c.qk_rope_dim % 2 == 0, DSQ_FORMAT, err, "%s: qk_rope_head_dim must be even",
                  label);
        c.head_dim = c.qk_nope_dim + c.qk_rope_dim;
        c.rope.dim = c.qk_rope_dim;
        int interleave = 1;
        DSQ_TRY(get_bool(label, &d->rope_interleave, 1, &interleave, err));
        c.rope.layout = interleave ? DSQ_ROPE_PAIRS_ADJACENT : DSQ_ROPE_PAIRS_HALF;
        DSQ_TRY(parse_moe(d, label, &c, err));
    }
    DSQ_TRY(parse_quant(d, label, &c, err));
    *cfg = c;
cleanup:
    return st;
}

dsq_status dsq_model_config_parse(const char *text, size_t len, const char *label,
                                  dsq_model_config *cfg, dsq_err *err) {
    dsq_model_desc d;
    dsq_status st = dsq_model_desc_parse(text, len, label, &d, err);
    if (st == DSQ_OK)
        st = dsq_model_config_from_desc(&d, label, cfg, err);
    dsq_model_desc_free(&d);
    return st;
}

int dsq_model_config_layer_is_moe(const dsq_model_config *cfg, int64_t l) {
    return cfg->n_experts > 0 && l >= cfg->first_dense && l % cfg->moe_layer_freq == 0;
}

int64_t dsq_model_config_qk_dim(const dsq_model_config *cfg) {
    return cfg->head_dim;
}

/* HF yarn_get_mscale (modeling_deepseek_v3 / modeling_rope_utils get_mscale). */
static double yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

double dsq_model_config_softmax_scale(const dsq_model_config *cfg) {
    double s = 1.0 / sqrt((double)dsq_model_config_qk_dim(cfg));
    if (cfg->arch == DSQ_ARCH_DEEPSEEK_V3 && cfg->rope.type == DSQ_ROPE_YARN &&
        cfg->rope.mscale_all_dim != 0.0) {
        const double m = yarn_mscale(cfg->rope.factor, cfg->rope.mscale_all_dim);
        s *= m * m;
    }
    return s;
}
