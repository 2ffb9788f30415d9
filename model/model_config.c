/* model/model_config.c: config.json -> dsq_model_config (jansson). */
#include "model/model_config.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "quantize/fp8.h"

/* ---- typed getters: absent -> default, present with the wrong type -> error ---- */

typedef struct getter {
    const json_t *obj;
    const char *label;
    const char *where; /* "" or "rope_scaling." */
    dsq_err *err;
} getter;

/* A null value counts as absent (q_lora_rank: null means "no q LoRA"). */
static dsq_status get_int(const getter *g, const char *key, int required, int64_t def,
                          int64_t lo, int64_t hi, int64_t *out) {
    const json_t *v = json_object_get(g->obj, key);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return dsq_err_set(g->err, DSQ_FORMAT, "%s: %s%s is missing", g->label, g->where, key);
        *out = def;
        return DSQ_OK;
    }
    int64_t x;
    if (json_is_integer(v)) {
        x = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (int64_t)json_real_value(v);
    } else {
        return dsq_err_set(g->err, DSQ_FORMAT, "%s: %s%s is not an integer", g->label, g->where,
                           key);
    }
    if (x < lo || x > hi)
        return dsq_err_set(g->err, DSQ_FORMAT, "%s: %s%s = %lld is out of range [%lld, %lld]",
                           g->label, g->where, key, (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return DSQ_OK;
}

static dsq_status get_num(const getter *g, const char *key, int required, double def,
                          double *out) {
    const json_t *v = json_object_get(g->obj, key);
    if (v == NULL || json_is_null(v)) {
        if (required)
            return dsq_err_set(g->err, DSQ_FORMAT, "%s: %s%s is missing", g->label, g->where, key);
        *out = def;
        return DSQ_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return dsq_err_set(g->err, DSQ_FORMAT, "%s: %s%s is not a finite number", g->label,
                           g->where, key);
    *out = json_number_value(v);
    return DSQ_OK;
}

static dsq_status get_bool(const getter *g, const char *key, int def, int *out) {
    const json_t *v = json_object_get(g->obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = def;
        return DSQ_OK;
    }
    if (!json_is_boolean(v))
        return dsq_err_set(g->err, DSQ_FORMAT, "%s: %s%s is not a boolean", g->label, g->where,
                           key);
    *out = json_is_true(v);
    return DSQ_OK;
}

/* NULL when absent or null; an error when present but not a string. */
static dsq_status get_str(const getter *g, const char *key, const char **out) {
    const json_t *v = json_object_get(g->obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return DSQ_OK;
    if (!json_is_string(v))
        return dsq_err_set(g->err, DSQ_FORMAT, "%s: %s%s is not a string", g->label, g->where,
                           key);
    *out = json_string_value(v);
    return DSQ_OK;
}

#define BIG ((int64_t)1 << 40)

static dsq_status parse_rope(const json_t *root, const char *label, dsq_model_config *c,
                             dsq_err *err) {
    dsq_status st = DSQ_OK;
    const getter g = {root, label, "", err};
    dsq_rope_config *r = &c->rope;
    DSQ_TRY(get_num(&g, "rope_theta", 0, 10000.0, &r->theta));
    DSQ_CHECK(r->theta > 1.0, DSQ_FORMAT, err, "%s: rope_theta = %g must be > 1", label, r->theta);
    r->type = DSQ_ROPE_DEFAULT;
    r->factor = 1.0;
    const json_t *rs = json_object_get(root, "rope_scaling");
    if (rs == NULL || json_is_null(rs))
        return DSQ_OK;
    DSQ_CHECK(json_is_object(rs), DSQ_FORMAT, err, "%s: rope_scaling is not an object", label);
    const getter s = {rs, label, "rope_scaling.", err};
    const char *type = NULL, *type2 = NULL;
    DSQ_TRY(get_str(&s, "rope_type", &type));
    DSQ_TRY(get_str(&s, "type", &type2));
    if (type == NULL)
        type = type2;
    DSQ_CHECK(type != NULL, DSQ_FORMAT, err, "%s: rope_scaling has no rope_type", label);
    DSQ_TRY(get_num(&s, "factor", strcmp(type, "default") != 0, 1.0, &r->factor));
    DSQ_CHECK(r->factor > 0, DSQ_FORMAT, err, "%s: rope_scaling.factor must be > 0", label);
    if (strcmp(type, "default") == 0) {
        r->type = DSQ_ROPE_DEFAULT;
    } else if (strcmp(type, "linear") == 0) {
        r->type = DSQ_ROPE_LINEAR;
    } else if (strcmp(type, "yarn") == 0) {
        r->type = DSQ_ROPE_YARN;
        int64_t orig;
        DSQ_TRY(get_int(&s, "original_max_position_embeddings", 1, 0, 1, BIG, &orig));
        r->orig_max_pos = orig;
        DSQ_TRY(get_num(&s, "beta_fast", 0, 32.0, &r->beta_fast));
        DSQ_TRY(get_num(&s, "beta_slow", 0, 1.0, &r->beta_slow));
        DSQ_TRY(get_num(&s, "mscale", 0, 0.0, &r->mscale));
        DSQ_TRY(get_num(&s, "mscale_all_dim", 0, 0.0, &r->mscale_all_dim));
        DSQ_TRY(get_num(&s, "attention_factor", 0, 0.0, &r->attn_factor));
        DSQ_CHECK(r->beta_fast > 0 && r->beta_slow > 0, DSQ_FORMAT, err,
                  "%s: rope_scaling.beta_fast/beta_slow must be > 0", label);
    } else if (strcmp(type, "llama3") == 0) {
        r->type = DSQ_ROPE_LLAMA3;
        int64_t orig;
        DSQ_TRY(get_int(&s, "original_max_position_embeddings", 1, 0, 1, BIG, &orig));
        r->orig_max_pos = orig;
        DSQ_TRY(get_num(&s, "low_freq_factor", 1, 0, &r->low_freq_factor));
        DSQ_TRY(get_num(&s, "high_freq_factor", 1, 0, &r->high_freq_factor));
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

static dsq_status parse_moe(const getter *g, dsq_model_config *c) {
    dsq_status st = DSQ_OK;
    dsq_err *err = g->err;
    const char *label = g->label;
    DSQ_TRY(get_int(g, "n_routed_experts", 0, 0, 0, 1 << 20, &c->n_experts));
    if (c->n_experts == 0)
        return DSQ_OK;
    DSQ_TRY(get_int(g, "num_experts_per_tok", 1, 0, 1, c->n_experts, &c->n_experts_used));
    DSQ_TRY(get_int(g, "n_shared_experts", 0, 0, 0, 1 << 10, &c->n_shared_experts));
    DSQ_TRY(get_int(g, "moe_intermediate_size", 1, 0, 1, BIG, &c->moe_ffn_dim));
    DSQ_TRY(get_int(g, "n_group", 0, 1, 1, DSQ_MOE_MAX_GROUPS, &c->n_group));
    DSQ_TRY(get_int(g, "topk_group", 0, c->n_group, 1, c->n_group, &c->topk_group));
    DSQ_TRY(get_int(g, "first_k_dense_replace", 0, 0, 0, BIG, &c->first_dense));
    DSQ_TRY(get_int(g, "moe_layer_freq", 0, 1, 1, BIG, &c->moe_layer_freq));
    DSQ_TRY(get_num(g, "routed_scaling_factor", 0, 1.0, &c->routed_scaling));
    DSQ_TRY(get_bool(g, "norm_topk_prob", 0, &c->norm_topk_prob));
    DSQ_CHECK(c->n_experts % c->n_group == 0, DSQ_FORMAT, err,
              "%s: n_routed_experts %lld is not a multiple of n_group %lld", label,
              (long long)c->n_experts, (long long)c->n_group);
    const char *scoring = NULL, *method = NULL;
    DSQ_TRY(get_str(g, "scoring_func", &scoring));
    DSQ_TRY(get_str(g, "topk_method", &method));
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

dsq_status dsq_model_config_parse(const char *text, size_t len, const char *label,
                                  dsq_model_config *cfg, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    dsq_model_config c;
    memset(&c, 0, sizeof c);
    DSQ_CHECK(root != NULL, DSQ_FORMAT, err, "%s: line %d: %s", label, je.line, je.text);
    DSQ_CHECK(json_is_object(root), DSQ_FORMAT, err, "%s: not a JSON object", label);
    const getter g = {root, label, "", err};

    const char *mtype = NULL, *arch0 = NULL;
    DSQ_TRY(get_str(&g, "model_type", &mtype));
    const json_t *archs = json_object_get(root, "architectures");
    if (json_is_array(archs) && json_array_size(archs) > 0 &&
        json_is_string(json_array_get(archs, 0)))
        arch0 = json_string_value(json_array_get(archs, 0));
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

    DSQ_TRY(get_int(&g, "vocab_size", 1, 0, 1, 1 << 24, &c.vocab));
    DSQ_TRY(get_int(&g, "hidden_size", 1, 0, 1, 1 << 20, &c.dim));
    DSQ_TRY(get_int(&g, "num_hidden_layers", 1, 0, 1, 1 << 12, &c.n_layers));
    DSQ_TRY(get_int(&g, "num_attention_heads", 1, 0, 1, 1 << 14, &c.n_heads));
    DSQ_TRY(get_int(&g, "num_key_value_heads", 0, c.n_heads, 1, c.n_heads, &c.n_kv_heads));
    DSQ_TRY(get_int(&g, "intermediate_size", 1, 0, 1, BIG, &c.ffn_dim));
    /* only for `dsq ppl`'s warning: any integer is taken */
    DSQ_TRY(get_int(&g, "max_position_embeddings", 0, 0, INT64_MIN, INT64_MAX, &c.n_ctx_train));
    DSQ_TRY(get_num(&g, "rms_norm_eps", 0, 1e-6, &c.norm_eps));
    DSQ_CHECK(c.norm_eps >= 0, DSQ_FORMAT, err, "%s: rms_norm_eps is negative", label);
    DSQ_TRY(get_bool(&g, "tie_word_embeddings", 0, &c.tie_embeddings));
    int64_t tok;
    DSQ_TRY(get_int(&g, "bos_token_id", 0, -1, -1, c.vocab - 1, &tok));
    c.bos = (int32_t)tok;
    if (json_is_array(json_object_get(root, "eos_token_id"))) {
        c.eos = -1; /* several eos ids: not needed by the forward pass */
    } else {
        DSQ_TRY(get_int(&g, "eos_token_id", 0, -1, -1, c.vocab - 1, &tok));
        c.eos = (int32_t)tok;
    }

    const char *act = NULL;
    DSQ_TRY(get_str(&g, "hidden_act", &act));
    DSQ_CHECK(act == NULL || strcmp(act, "silu") == 0, DSQ_UNSUPPORTED, err,
              "%s: hidden_act '%s' is not supported (only silu)", label, act);
    int bias = 0;
    DSQ_TRY(get_bool(&g, "attention_bias", 0, &bias));
    DSQ_CHECK(!bias, DSQ_UNSUPPORTED, err, "%s: attention_bias is not supported", label);
    DSQ_TRY(get_bool(&g, "mlp_bias", 0, &bias));
    DSQ_CHECK(!bias, DSQ_UNSUPPORTED, err, "%s: mlp_bias is not supported", label);

    DSQ_TRY(parse_rope(root, label, &c, err));

    if (c.arch == DSQ_ARCH_LLAMA) {
        DSQ_CHECK(c.n_heads % c.n_kv_heads == 0, DSQ_FORMAT, err,
                  "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                  label, (long long)c.n_heads, (long long)c.n_kv_heads);
        DSQ_TRY(get_int(&g, "head_dim", 0, c.dim / c.n_heads, 2, 1 << 16, &c.head_dim));
        DSQ_CHECK(c.head_dim % 2 == 0, DSQ_FORMAT, err, "%s: head_dim must be even", label);
        c.rope.dim = c.head_dim;
        c.rope.layout = DSQ_ROPE_PAIRS_HALF;
    } else {
        DSQ_TRY(get_int(&g, "q_lora_rank", 0, 0, 0, BIG, &c.q_lora_rank));
        DSQ_TRY(get_int(&g, "kv_lora_rank", 1, 0, 1, BIG, &c.kv_lora_rank));
        DSQ_TRY(get_int(&g, "qk_nope_head_dim", 1, 0, 0, 1 << 16, &c.qk_nope_dim));
        DSQ_TRY(get_int(&g, "qk_rope_head_dim", 1, 0, 2, 1 << 16, &c.qk_rope_dim));
        DSQ_TRY(get_int(&g, "v_head_dim", 1, 0, 1, 1 << 16, &c.v_head_dim));
        DSQ_CHECK(c.qk_rope_dim % 2 == 0, DSQ_FORMAT, err, "%s: qk_rope_head_dim must be even",
                  label);
        c.head_dim = c.qk_nope_dim + c.qk_rope_dim;
        c.rope.dim = c.qk_rope_dim;
        int interleave = 1;
        DSQ_TRY(get_bool(&g, "rope_interleave", 1, &interleave));
        c.rope.layout = interleave ? DSQ_ROPE_PAIRS_ADJACENT : DSQ_ROPE_PAIRS_HALF;
        DSQ_TRY(parse_moe(&g, &c));
    }

    /* quantization_config: only DeepSeek's fp8 block layout is read here;
     * any other method is a source the forward pass cannot read yet. */
    const json_t *qc = json_object_get(root, "quantization_config");
    c.fp8_block_rows = c.fp8_block_cols = 128;
    if (qc != NULL && !json_is_null(qc)) {
        DSQ_CHECK(json_is_object(qc), DSQ_FORMAT, err, "%s: quantization_config is not an object",
                  label);
        const getter q = {qc, label, "quantization_config.", err};
        const char *method = NULL;
        DSQ_TRY(get_str(&q, "quant_method", &method));
        DSQ_CHECK(method != NULL && strcmp(method, "fp8") == 0, DSQ_UNSUPPORTED, err,
                  "%s: quantization_config.quant_method '%s' is not supported (only fp8)", label,
                  method ? method : "?");
        c.has_fp8_block = 1;
        int found = 0;
        DSQ_TRY(dsq_fp8_block_parse(qc, label, &c.fp8_block_rows, &c.fp8_block_cols, &found,
                                    err));
    }
    *cfg = c;
cleanup:
    json_decref(root);
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
