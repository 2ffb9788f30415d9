/* model/tensor_names.h: the one Hugging Face <-> GGUF tensor-name table.
 *
 * Each DSQ_TN_* below is a pair of name patterns, the GGUF name first and the HF name
 * second, as llama.cpp's gguf-py writes them (constants.py MODEL_TENSOR names,
 * tensor_mapping.py HF names; specs/formats.md §3). "%d" is the layer and, in the expert
 * names, then the expert. Both directions use this table:
 *   gguf_export/gguf_arch.c  builds its per-architecture rows from the pairs (which
 *                            GGUF tensor is written from which HF tensor(s));
 *   weights/source_gguf.c    maps the HF names the forward pass asks for to the GGUF
 *                            tensors that hold them (dsq_tname_from_hf).
 * The pairs are macros so that gguf_arch.c's rows stay static tables of string literals;
 * a new tensor is a new pair here and a row in dsq_tnames[] (tensor_names.c). */
#ifndef DSQ_TENSOR_NAMES_H
#define DSQ_TENSOR_NAMES_H

#include <stddef.h>

#define DSQ_TN_L "model.layers.%d."

#define DSQ_TN_TOKEN_EMBD "token_embd.weight", "model.embed_tokens.weight"
#define DSQ_TN_OUTPUT_NORM "output_norm.weight", "model.norm.weight"
#define DSQ_TN_OUTPUT "output.weight", "lm_head.weight"
#define DSQ_TN_ATTN_NORM "blk.%d.attn_norm.weight", DSQ_TN_L "input_layernorm.weight"
#define DSQ_TN_FFN_NORM "blk.%d.ffn_norm.weight", DSQ_TN_L "post_attention_layernorm.weight"
#define DSQ_TN_ATTN_Q "blk.%d.attn_q.weight", DSQ_TN_L "self_attn.q_proj.weight"
#define DSQ_TN_ATTN_K "blk.%d.attn_k.weight", DSQ_TN_L "self_attn.k_proj.weight"
#define DSQ_TN_ATTN_V "blk.%d.attn_v.weight", DSQ_TN_L "self_attn.v_proj.weight"
#define DSQ_TN_ATTN_OUT "blk.%d.attn_output.weight", DSQ_TN_L "self_attn.o_proj.weight"
/* MLA (deepseek2) */
#define DSQ_TN_ATTN_Q_A "blk.%d.attn_q_a.weight", DSQ_TN_L "self_attn.q_a_proj.weight"
#define DSQ_TN_ATTN_Q_A_NORM                                                                       \
    "blk.%d.attn_q_a_norm.weight", DSQ_TN_L "self_attn.q_a_layernorm.weight"
#define DSQ_TN_ATTN_Q_B "blk.%d.attn_q_b.weight", DSQ_TN_L "self_attn.q_b_proj.weight"
#define DSQ_TN_ATTN_KV_A_MQA                                                                       \
    "blk.%d.attn_kv_a_mqa.weight", DSQ_TN_L "self_attn.kv_a_proj_with_mqa.weight"
#define DSQ_TN_ATTN_KV_A_NORM                                                                      \
    "blk.%d.attn_kv_a_norm.weight", DSQ_TN_L "self_attn.kv_a_layernorm.weight"
/* kv_b_proj is one HF tensor and, in GGUF, either attn_kv_b (older runtimes) or its two
 * halves attn_k_b / attn_v_b (current llama.cpp) */
#define DSQ_TN_ATTN_KV_B "blk.%d.attn_kv_b.weight", DSQ_TN_L "self_attn.kv_b_proj.weight"
#define DSQ_TN_ATTN_K_B "blk.%d.attn_k_b.weight", DSQ_TN_L "self_attn.kv_b_proj.weight"
#define DSQ_TN_ATTN_V_B "blk.%d.attn_v_b.weight", DSQ_TN_L "self_attn.kv_b_proj.weight"
/* dense FFN */
#define DSQ_TN_FFN_GATE "blk.%d.ffn_gate.weight", DSQ_TN_L "mlp.gate_proj.weight"
#define DSQ_TN_FFN_UP "blk.%d.ffn_up.weight", DSQ_TN_L "mlp.up_proj.weight"
#define DSQ_TN_FFN_DOWN "blk.%d.ffn_down.weight", DSQ_TN_L "mlp.down_proj.weight"
/* MoE: the router, its bias, the routed experts (one HF tensor per expert, one stacked GGUF
 * tensor) and the shared experts */
#define DSQ_TN_FFN_GATE_INP "blk.%d.ffn_gate_inp.weight", DSQ_TN_L "mlp.gate.weight"
#define DSQ_TN_EXP_PROBS_B "blk.%d.exp_probs_b.bias", DSQ_TN_L "mlp.gate.e_score_correction_bias"
#define DSQ_TN_FFN_GATE_EXPS                                                                       \
    "blk.%d.ffn_gate_exps.weight", DSQ_TN_L "mlp.experts.%d.gate_proj.weight"
#define DSQ_TN_FFN_UP_EXPS "blk.%d.ffn_up_exps.weight", DSQ_TN_L "mlp.experts.%d.up_proj.weight"
#define DSQ_TN_FFN_DOWN_EXPS                                                                       \
    "blk.%d.ffn_down_exps.weight", DSQ_TN_L "mlp.experts.%d.down_proj.weight"
#define DSQ_TN_FFN_GATE_SHEXP                                                                      \
    "blk.%d.ffn_gate_shexp.weight", DSQ_TN_L "mlp.shared_experts.gate_proj.weight"
#define DSQ_TN_FFN_UP_SHEXP                                                                        \
    "blk.%d.ffn_up_shexp.weight", DSQ_TN_L "mlp.shared_experts.up_proj.weight"
#define DSQ_TN_FFN_DOWN_SHEXP                                                                      \
    "blk.%d.ffn_down_shexp.weight", DSQ_TN_L "mlp.shared_experts.down_proj.weight"
/* A multi-token-prediction layer's own tensors (gguf-py MODEL_TENSOR.NEXTN_*) */
#define DSQ_TN_NEXTN_EH_PROJ "blk.%d.nextn.eh_proj.weight", DSQ_TN_L "eh_proj.weight"
#define DSQ_TN_NEXTN_ENORM "blk.%d.nextn.enorm.weight", DSQ_TN_L "enorm.weight"
#define DSQ_TN_NEXTN_HNORM "blk.%d.nextn.hnorm.weight", DSQ_TN_L "hnorm.weight"
#define DSQ_TN_NEXTN_SHARED_HEAD_NORM                                                              \
    "blk.%d.nextn.shared_head_norm.weight", DSQ_TN_L "shared_head.norm.weight"
#define DSQ_TN_NEXTN_EMBED_TOKENS "blk.%d.nextn.embed_tokens.weight", DSQ_TN_L "embed_tokens.weight"
#define DSQ_TN_NEXTN_SHARED_HEAD_HEAD                                                              \
    "blk.%d.nextn.shared_head_head.weight", DSQ_TN_L "shared_head.head.weight"

/* How the two sides of a pair correspond. */
typedef enum dsq_tname_form {
    DSQ_TNAME_PLAIN,   /* one tensor on each side, the GGUF ne = the HF shape reversed */
    DSQ_TNAME_EXPERTS, /* HF: one [r, c] tensor per expert; GGUF: one ne [c, r, n_expert] */
    DSQ_TNAME_KV_B,    /* HF kv_b_proj as one GGUF attn_kv_b */
    DSQ_TNAME_K_B,     /* HF kv_b_proj's nope rows per head, transposed: GGUF attn_k_b */
    DSQ_TNAME_V_B,     /* HF kv_b_proj's v rows per head: GGUF attn_v_b */
} dsq_tname_form;

typedef struct dsq_tname {
    const char *gguf; /* pattern, "%d" = layer */
    const char *hf;   /* pattern, "%d" = layer (then expert) */
    dsq_tname_form form;
} dsq_tname;

/* Every GGUF tensor the HF tensor `hf` feeds, in table order (for kv_b_proj: attn_kv_b,
 * attn_k_b, attn_v_b), up to max of them into rows; *layer and *expert get the numbers in
 * the name (-1 when it has none).
 * @return how many rows match (0: no GGUF name). */
size_t dsq_tname_from_hf(const char *hf, const dsq_tname **rows, size_t max, int *layer,
                         int *expert);

/* pattern with its "%d"s replaced by a, then b (the patterns are not printf formats: only
 * "%d" is special). Cut to size - 1 bytes; returns the untruncated length. */
size_t dsq_tname_format(char *buf, size_t size, const char *pattern, int a, int b);

#endif
