/* gguf_export/gguf_rules.h: which GGUF type each tensor gets under a llama.cpp preset.
 *
 * The facts (not the code) are those of llama.cpp's src/llama-quant.cpp (Feb 2025):
 * llama_model_quantize_impl decides whether a tensor is quantized at all, and
 * llama_tensor_get_type raises some tensors above the preset's default type. The rules
 * depend on counters (how many attn_v / ffn_down tensors came before), so the caller must
 * present the tensors in llama-quantize's order: non-layer tensors first, then layer by
 * layer, each group sorted by name (llama_model_loader's weight_name_comparer). */
#ifndef DSQ_QZ_RULES_H
#define DSQ_QZ_RULES_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

/* llama_ftype values (specs/formats.md §3.1 general.file_type). */
typedef enum dsq_ftype {
    DSQ_FTYPE_ALL_F32 = 0,
    DSQ_FTYPE_F16     = 1,
    DSQ_FTYPE_Q4_0    = 2,
    DSQ_FTYPE_Q4_1    = 3,
    DSQ_FTYPE_Q8_0    = 7,
    DSQ_FTYPE_Q5_0    = 8,
    DSQ_FTYPE_Q5_1    = 9,
    DSQ_FTYPE_Q2_K    = 10,
    DSQ_FTYPE_Q3_K_S  = 11,
    DSQ_FTYPE_Q3_K_M  = 12,
    DSQ_FTYPE_Q3_K_L  = 13,
    DSQ_FTYPE_Q4_K_S  = 14,
    DSQ_FTYPE_Q4_K_M  = 15,
    DSQ_FTYPE_Q5_K_S  = 16,
    DSQ_FTYPE_Q5_K_M  = 17,
    DSQ_FTYPE_Q6_K    = 18,
    DSQ_FTYPE_IQ4_NL  = 25,
    DSQ_FTYPE_IQ4_XS  = 30,
    DSQ_FTYPE_BF16    = 32,
} dsq_ftype;

typedef struct dsq_ftype_info {
    const char *name;   /* "Q4_K_M" */
    dsq_ftype   ftype;
    dsq_dtype   base;   /* the preset's default tensor type */
} dsq_ftype_info;

/* A preset by name, case-insensitive; llama-quantize's aliases Q3_K, Q4_K and Q5_K mean
 * Q3_K_M, Q4_K_M and Q5_K_M. NULL when unknown. */
const dsq_ftype_info *dsq_ftype_find(const char *name);
/* All presets, for --help; *n gets the count. */
const dsq_ftype_info *dsq_ftype_list(int *n);

/* What llama-quantize knows about the model when it picks types. */
typedef struct dsq_qz_model {
    int n_layer;     /* {arch}.block_count */
    int n_expert;    /* {arch}.expert_count, 0 for dense models */
    int n_head, n_head_kv;
    int is_70b;      /* llama.cpp's LLM_TYPE_70B (llama with 80 layers and GQA) */
    int has_output;  /* an output.weight exists (else token_embd is the output) */
    int has_imatrix;
    int n_attention_wv; /* tensors whose name contains attn_v/attn_qkv/attn_kv_b.weight */
} dsq_qz_model;

/* The running state of one pass over the tensors, in llama-quantize's order. */
typedef struct dsq_qz_state {
    dsq_qz_model m;
    int i_attention_wv, i_ffn_down, i_ffn_gate, i_ffn_up;
} dsq_qz_state;

/* 1 when llama-quantize quantizes this tensor at all: a name ending in "weight", at least
 * two dimensions, not a norm, not the MoE router (ffn_gate_inp), not pos_embd or
 * token_types. Everything else is kept as the converter wrote it (F32 here). */
int dsq_qz_is_quantizable(const char *name, int n_dims);

/* llama_tensor_get_type for the presets above: the type of quantizable tensor `name` with
 * row length ne0, starting from the preset's base type. Advances the counters. When the
 * row length is not a multiple of the chosen block size the fallback of llama.cpp applies
 * (*fallback = 1): Q2_K/Q3_K/IQ4_XS -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0,
 * then F16 if that still does not fit.
 * @return DSQ_OK; DSQ_UNSUPPORTED when the type has no fallback (llama.cpp's "Unsupported
 *         tensor size encountered"); DSQ_FORMAT when a layer number cannot be parsed. */
dsq_status dsq_qz_rule_type(dsq_qz_state *s, const dsq_ftype_info *ft, const char *name,
                            int64_t ne0, dsq_dtype *out, int *fallback, dsq_err *err);

/* llama.cpp's use_more_bits(i_layer, n_layers). */
int dsq_qz_use_more_bits(int i_layer, int n_layers);

#endif
