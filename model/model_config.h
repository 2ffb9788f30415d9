/* model/model_config.h: the hyper-parameters of the architectures the
 * reference forward pass runs, from a Hugging Face config.json's description
 * (model/model_desc.h): what the forward pass can run, not what the file says.
 *
 * Two families (specs/formats.md §8):
 *   llama      LlamaForCausalLM / model_type "llama": GQA attention, rotate-half
 *              RoPE (none, linear, llama3 or yarn scaling), SwiGLU MLP.
 *   deepseek_v3 DeepseekV3ForCausalLM: MLA (q_lora_rank may be null), RoPE on the
 *              rope slice only, YaRN with the mscale² softmax correction, MoE with
 *              sigmoid (or softmax) scores, group-limited top-k, shared experts,
 *              the first first_k_dense_replace layers dense.
 *
 * A GGUF source will fill the same struct from its metadata, so nothing below
 * the config depends on where the numbers came from. */
#ifndef DSQ_MODEL_CONFIG_H
#define DSQ_MODEL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/model_desc.h"

typedef enum dsq_arch {
    DSQ_ARCH_LLAMA = 1,
    DSQ_ARCH_DEEPSEEK_V3 = 2,
} dsq_arch;

typedef enum dsq_rope_type {
    DSQ_ROPE_DEFAULT = 0, /* plain inv_freq = base^(-2i/d) */
    DSQ_ROPE_LINEAR,      /* inv_freq / factor */
    DSQ_ROPE_LLAMA3,      /* Llama 3.1 wavelength-band scaling */
    DSQ_ROPE_YARN,        /* YaRN ramp between extrapolation and interpolation */
} dsq_rope_type;

/* Which pairs of a head's rope dims rotate together. */
typedef enum dsq_rope_layout {
    DSQ_ROPE_PAIRS_HALF = 0,    /* (i, i + d/2): HF rotate_half (llama HF weights) */
    DSQ_ROPE_PAIRS_ADJACENT = 1 /* (2i, 2i+1): DeepSeek's interleaved pairs, GGUF llama */
} dsq_rope_layout;

#define DSQ_MOE_MAX_GROUPS 64 /* n_group limit (V3: 8) */
/* rope_freqs.weight values held in the config (a head dim of 1024; Llama's is 128), so the
 * config stays a plain value that outlives its source */
#define DSQ_ROPE_MAX_FREQ_FACTORS 512

typedef enum dsq_moe_scoring { DSQ_MOE_SIGMOID = 0, DSQ_MOE_SOFTMAX = 1 } dsq_moe_scoring;

typedef enum dsq_moe_topk {
    DSQ_MOE_TOPK_GREEDY = 0,        /* top-k over all experts */
    DSQ_MOE_TOPK_GROUP_MAX = 1,     /* "group_limited_greedy": group score = max */
    DSQ_MOE_TOPK_GROUP_TOP2SUM = 2, /* "noaux_tc": group score = sum of top-2 biased scores */
} dsq_moe_topk;

typedef struct dsq_rope_config {
    dsq_rope_type type;
    dsq_rope_layout layout;
    int64_t dim;            /* rotated dims per head (head_dim or qk_rope_head_dim) */
    double theta;           /* rope_theta */
    double factor;          /* scaling factor (1 when none) */
    int64_t orig_max_pos;   /* original_max_position_embeddings (yarn, llama3) */
    double beta_fast;       /* yarn, default 32 */
    double beta_slow;       /* yarn, default 1 */
    double mscale;          /* yarn, 0 when absent */
    double mscale_all_dim;  /* yarn, 0 when absent */
    double attn_factor;     /* yarn attention_factor if given, else 0 (derived) */
    double low_freq_factor;  /* llama3 */
    double high_freq_factor; /* llama3 */
    /* A GGUF's rope_freqs.weight (how llama.cpp stores llama3 scaling): 0, or dim/2
     * divisors, pair i's angle divided by freq_factors[i] on top of the type's scaling */
    int64_t n_freq_factors;
    float freq_factors[DSQ_ROPE_MAX_FREQ_FACTORS];
} dsq_rope_config;

typedef struct dsq_model_config {
    dsq_arch arch;
    int64_t vocab;        /* vocab_size */
    int64_t dim;          /* hidden_size, D */
    int64_t n_layers;     /* num_hidden_layers (MTP layers excluded) */
    int64_t n_heads;      /* num_attention_heads, H */
    int64_t n_kv_heads;   /* num_key_value_heads (llama GQA) */
    int64_t head_dim;     /* llama: head_dim or D / H */
    int64_t ffn_dim;      /* intermediate_size (dense MLP) */
    double norm_eps;      /* rms_norm_eps */
    int tie_embeddings;   /* tie_word_embeddings */
    int32_t bos;          /* bos_token_id, -1 if none */
    int32_t eos;          /* eos_token_id, -1 if none */
    int64_t n_ctx_train;  /* max_position_embeddings (GGUF {arch}.context_length): the
                             context it was trained for; <= 0 when not given */
    dsq_rope_config rope;

    /* MLA (deepseek_v3) */
    int64_t q_lora_rank;  /* 0 when null: plain q_proj */
    int64_t kv_lora_rank; /* C */
    int64_t qk_nope_dim;  /* qk_nope_head_dim */
    int64_t qk_rope_dim;  /* qk_rope_head_dim, R */
    int64_t v_head_dim;

    /* MoE (deepseek_v3); n_experts == 0 means every layer is dense */
    int64_t n_experts;        /* n_routed_experts, E */
    int64_t n_experts_used;   /* num_experts_per_tok, K */
    int64_t n_shared_experts;
    int64_t moe_ffn_dim;      /* moe_intermediate_size */
    int64_t n_group;          /* 1 when absent */
    int64_t topk_group;       /* 1 when absent */
    dsq_moe_topk topk_method;
    dsq_moe_scoring scoring;
    int norm_topk_prob;
    double routed_scaling;    /* routed_scaling_factor, 1 when absent */
    int64_t first_dense;      /* first_k_dense_replace */
    int64_t moe_layer_freq;   /* 1 when absent */

    /* FP8 block scales: quantization_config.weight_block_size, 128x128 default */
    int has_fp8_block;
    int64_t fp8_block_rows, fp8_block_cols;
} dsq_model_config;

/* The forward pass's reading of a description (`label` names the file in
 * messages). Every field the forward pass needs is checked for presence, type
 * and range. The same returns as dsq_model_config_parse but DSQ_FORMAT for
 * invalid JSON. */
dsq_status dsq_model_config_from_desc(const dsq_model_desc *d, const char *label,
                                      dsq_model_config *cfg, dsq_err *err);

/* Parses config.json text (`label` names it in messages): dsq_model_desc_parse,
 * then dsq_model_config_from_desc.
 * @return DSQ_OK; DSQ_FORMAT for invalid JSON or a missing/mistyped field;
 *         DSQ_UNSUPPORTED for another architecture or a feature the forward
 *         pass does not implement (attention or MLP biases, a non-silu
 *         activation, an unknown rope or routing type), naming it. */
dsq_status dsq_model_config_parse(const char *text, size_t len, const char *label,
                                  dsq_model_config *cfg, dsq_err *err);

/* 1 when layer l has a routed MoE FFN, 0 when it is dense. */
int dsq_model_config_layer_is_moe(const dsq_model_config *cfg, int64_t l);

/* Query-key dims per head: head_dim (llama) or qk_nope + qk_rope (MLA). */
int64_t dsq_model_config_qk_dim(const dsq_model_config *cfg);

/* The attention softmax scale: qk_dim^-0.5, times mscale² for DeepSeek YaRN
 * (HF: when rope_scaling has mscale_all_dim; m = 0.1·mscale_all_dim·ln(factor)+1). */
double dsq_model_config_softmax_scale(const dsq_model_config *cfg);

#endif
