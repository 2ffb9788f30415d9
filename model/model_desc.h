/* model/model_desc.h: what a Hugging Face config.json says about the model, read once.
 *
 * The one reader of config.json. It describes; it does not judge: every member any part
 * of dsq uses is recorded with its JSON kind and value, and each user decides what it
 * accepts:
 *   model/model_config.h     the forward pass: can it run this model (dsq_model_config)
 *   gguf_export/gguf_arch.h  the GGUF export: {arch}.* keys, the tensor table's
 *                            conditions, the MTP layer count, llama3's rope factors
 *   gguf_export/gguf_vocab.h the special token ids config.json names
 *   dsq_model_desc_fp8_block the FP8 block size (dsq convert, dsq quantize)
 * They accept different things on purpose (the export copies max_position_embeddings the
 * forward pass never needs, the forward pass refuses biases the export ignores), so the
 * description keeps "absent", "null", "an integer", "a real" and "another type" apart.
 *
 * A member is a field named as in config.json (X-macros below: the name is written once,
 * as the field and as the key). Members of rope_scaling and quantization_config are read
 * only when that member is an object. */
#ifndef DSQ_MODEL_DESC_H
#define DSQ_MODEL_DESC_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum dsq_cfg_kind {
    DSQ_CFG_ABSENT = 0, /* not in the file (or its parent is not an object) */
    DSQ_CFG_NULL,
    DSQ_CFG_INT,  /* a JSON integer: i and num */
    DSQ_CFG_REAL, /* a JSON real: num */
    DSQ_CFG_TRUE,
    DSQ_CFG_FALSE,
    DSQ_CFG_STRING, /* str */
    DSQ_CFG_ARRAY,
    DSQ_CFG_OBJECT,
} dsq_cfg_kind;

typedef struct dsq_cfg_val {
    const char *key;   /* "factor" */
    const char *where; /* "" or the parent and a dot: "rope_scaling." */
    dsq_cfg_kind kind;
    int64_t i;       /* DSQ_CFG_INT */
    double num;      /* DSQ_CFG_INT, DSQ_CFG_REAL: the value as a double */
    const char *str; /* DSQ_CFG_STRING: NUL-terminated, owned by the description */
} dsq_cfg_val;

/* absent or null: what every reader treats as "not given" */
static inline int dsq_cfg_none(const dsq_cfg_val *v) {
    return v->kind == DSQ_CFG_ABSENT || v->kind == DSQ_CFG_NULL;
}
static inline int dsq_cfg_is_num(const dsq_cfg_val *v) {
    return v->kind == DSQ_CFG_INT || v->kind == DSQ_CFG_REAL;
}
static inline int dsq_cfg_is_bool(const dsq_cfg_val *v) {
    return v->kind == DSQ_CFG_TRUE || v->kind == DSQ_CFG_FALSE;
}

/* Top-level members. */
#define DSQ_MODEL_DESC_TOP(X)                                                                     \
    X(model_type) X(vocab_size) X(hidden_size) X(num_hidden_layers) X(num_attention_heads)        \
    X(num_key_value_heads) X(head_dim) X(intermediate_size) X(max_position_embeddings)            \
    X(original_max_position_embeddings) X(rms_norm_eps) X(rope_theta) X(tie_word_embeddings)      \
    X(hidden_act) X(attention_bias) X(mlp_bias) X(rope_scaling) X(quantization_config)            \
    X(bos_token_id) X(eos_token_id) X(unk_token_id) X(sep_token_id) X(pad_token_id)               \
    X(cls_token_id) X(mask_token_id) X(eot_token_id)                                              \
    /* MLA and MoE (DeepSeek) */                                                                  \
    X(q_lora_rank) X(kv_lora_rank) X(qk_nope_head_dim) X(qk_rope_head_dim) X(v_head_dim)          \
    X(rope_interleave) X(n_routed_experts) X(num_experts_per_tok) X(n_shared_experts)             \
    X(moe_intermediate_size) X(n_group) X(topk_group) X(first_k_dense_replace)                    \
    X(moe_layer_freq) X(routed_scaling_factor) X(norm_topk_prob) X(scoring_func) X(topk_method)   \
    X(num_nextn_predict_layers)
/* rope_scaling's members */
#define DSQ_MODEL_DESC_ROPE(X)                                                                    \
    X(rope_type) X(type) X(factor) X(original_max_position_embeddings) X(beta_fast)               \
    X(beta_slow) X(mscale) X(mscale_all_dim) X(attention_factor) X(low_freq_factor)               \
    X(high_freq_factor)
/* quantization_config's members */
#define DSQ_MODEL_DESC_QUANT(X) X(quant_method) X(weight_block_size)

#define DSQ_MODEL_DESC_FIELD_(name) dsq_cfg_val name;

typedef struct dsq_model_desc {
    /* architectures[0] when architectures is a non-empty array starting with a string */
    const char *architecture;
    DSQ_MODEL_DESC_TOP(DSQ_MODEL_DESC_FIELD_)
    struct {
        DSQ_MODEL_DESC_ROPE(DSQ_MODEL_DESC_FIELD_)
    } rs; /* rope_scaling.* */
    struct {
        DSQ_MODEL_DESC_QUANT(DSQ_MODEL_DESC_FIELD_)
    } qc; /* quantization_config.* */
    /* quantization_config.weight_block_size when it is an array of exactly two integers */
    int block_is_pair;
    int64_t block[2];
    char *strings_; /* private: the strings the values point into */
} dsq_model_desc;

/* Reads config.json text (`label` names it in messages). Fails only when the text is not
 * a JSON object.
 * @return DSQ_OK; DSQ_FORMAT ("label: line N: what" or "label: not a JSON object");
 *         DSQ_NOMEM. Free with dsq_model_desc_free (also after a failure). */
dsq_status dsq_model_desc_parse(const char *text, size_t len, const char *label,
                                dsq_model_desc *d, dsq_err *err);

void dsq_model_desc_free(dsq_model_desc *d);

/* The member called key at the top level ("hidden_size"), NULL when the description has no
 * such member (a caller's typo, not a property of the file). */
const dsq_cfg_val *dsq_model_desc_get(const dsq_model_desc *d, const char *key);

/* quantization_config.weight_block_size as `dsq convert` and `dsq quantize` read it:
 * [rows, cols], each in [1, 2^20]; *found = 0 and 128 x 128 (DeepSeek's block) when the
 * config has no such member.
 * @return DSQ_OK or DSQ_FORMAT (present but not two integers, or out of range). */
dsq_status dsq_model_desc_fp8_block(const dsq_model_desc *d, const char *label, int64_t *rows,
                                    int64_t *cols, int *found, dsq_err *err);

/* The same from config.json text (dsq_model_desc_parse first, so also DSQ_FORMAT for text
 * that is not a JSON object). */
dsq_status dsq_config_fp8_block(const char *text, size_t len, const char *label, int64_t *rows,
                                int64_t *cols, int *found, dsq_err *err);

#endif
