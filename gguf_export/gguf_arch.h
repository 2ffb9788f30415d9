/* gguf_export/gguf_arch.h: Hugging Face architecture -> GGUF architecture, metadata and names.
 *
 * One table per architecture (gguf_arch.c) says which GGUF tensor comes from which HF
 * tensor(s) and how, and which {arch}.* keys come from which config.json member, exactly
 * as llama.cpp's convert_hf_to_gguf.py writes them (specs/formats.md §3). The name pairs
 * are model/tensor_names.h's (the GGUF weight source reads with the same ones); what a row
 * adds is when it applies and how its rows are made. Adding an architecture is adding rows
 * there. */
#ifndef DSQ_QZ_ARCH_H
#define DSQ_QZ_ARCH_H

#include <stdint.h>

#include "core/status.h"
#include "formats/gguf.h"
#include "model/model_desc.h"

/* How an output tensor's F32 rows are made from its source tensor(s). */
typedef enum dsq_qz_src {
    DSQ_QZ_SRC_PLAIN,     /* one HF tensor [rows, cols] -> ne [cols, rows] */
    DSQ_QZ_SRC_PERMUTE_Q, /* llama q_proj: rows permuted per head (n_head) */
    DSQ_QZ_SRC_PERMUTE_K, /* llama k_proj: the same with n_head_kv */
    DSQ_QZ_SRC_EXPERTS,   /* n_expert HF tensors [r, c] stacked -> ne [c, r, n_expert] */
    DSQ_QZ_SRC_K_B,       /* deepseek2 kv_b_proj [H*(nope+v), L] -> attn_k_b ne [nope, L, H] */
    DSQ_QZ_SRC_V_B,       /* deepseek2 kv_b_proj -> attn_v_b ne [L, v, H] */
} dsq_qz_src;

/* Conditions of a table row (all must hold). */
enum {
    DSQ_QZ_W_LAYER    = 1u << 0, /* one per layer (names take the layer number) */
    DSQ_QZ_W_DENSE    = 1u << 1, /* layers < leading_dense_block_count */
    DSQ_QZ_W_MOE      = 1u << 2, /* layers >= leading_dense_block_count */
    DSQ_QZ_W_QLORA    = 1u << 3, /* q_lora_rank set */
    DSQ_QZ_W_NO_QLORA = 1u << 4,
    DSQ_QZ_W_KVB_NEW  = 1u << 5, /* attn_k_b / attn_v_b layout (default) */
    DSQ_QZ_W_KVB_OLD  = 1u << 6, /* single attn_kv_b (--mla-legacy) */
    DSQ_QZ_W_OPTIONAL = 1u << 7, /* absent in the checkpoint is fine (output when tied) */
    DSQ_QZ_W_NEXTN    = 1u << 8, /* only in a kept multi-token-prediction layer */
};

typedef struct dsq_qz_trow {
    /* a DSQ_TN_* pair of model/tensor_names.h: */
    const char *gguf; /* "blk.%d.attn_q.weight" (%d = layer when DSQ_QZ_W_LAYER) */
    const char *hf;   /* "model.layers.%d.self_attn.q_proj.weight"; EXPERTS: layer, expert */
    unsigned when;
    dsq_qz_src src;
} dsq_qz_trow;

/* Hyper-parameters read from config.json (0 when absent). */
typedef struct dsq_qz_hparams {
    int64_t n_layer, n_embd, n_head, n_head_kv, n_vocab, n_expert, n_expert_used;
    int64_t n_dense_lead, q_lora_rank, kv_lora_rank, qk_nope, qk_rope, v_head_dim;
    int64_t n_mtp;      /* num_nextn_predict_layers: MTP layers after the n_layer ones */
    int     kvb_legacy; /* the caller's choice of MLA layout */
    int     keep_mtp;   /* the caller's choice: write the MTP layers (drops_extra_layers) */
} dsq_qz_hparams;

/* The blocks of the output: n_layer, plus the MTP layers when they are kept. llama.cpp's
 * converters that keep them (Glm4MoeModel, DeepseekV32Model) count them in block_count
 * and say how many trail in {arch}.nextn_predict_layers. */
static inline int64_t dsq_qz_n_blocks(const dsq_qz_hparams *hp) {
    return hp->n_layer + (hp->keep_mtp ? hp->n_mtp : 0);
}

/* A tensor the converter computes from config.json instead of reading it from the
 * checkpoint (LlamaModel.generate_extra_tensors: rope_freqs.weight). Always F32 and 1-D,
 * so no preset quantizes it (gguf_rules.h: 1-D tensors stay F32). */
typedef struct dsq_qz_extra {
    const char *gguf; /* "rope_freqs.weight" */
    float *data;      /* n values, owned (free) */
    int64_t n;
} dsq_qz_extra;

typedef struct dsq_qz_arch {
    const char *hf_name;   /* "DeepseekV3ForCausalLM" */
    const char *gguf_name; /* "deepseek2" */
    const dsq_qz_trow *rows;
    int n_rows;
    /* Adds general.* is not its job: writes the {arch}.* keys from config.json. */
    dsq_status (*add_kv)(dsq_gguf_writer *w, const dsq_model_desc *cfg, const dsq_qz_hparams *hp,
                         dsq_err *err);
    /* The checkpoint may hold MTP layers (model.layers.N.* with N >= num_hidden_layers):
     * left out, as llama.cpp's converter does, unless hparams.keep_mtp. */
    int drops_extra_layers;
    /* The computed tensor this config asks for: out->data == NULL when none. NULL for an
     * architecture that never has one. */
    dsq_status (*extra)(const dsq_model_desc *cfg, const dsq_qz_hparams *hp, dsq_qz_extra *out,
                        dsq_err *err);
} dsq_qz_arch;

/* NULL when the architecture is not supported. */
const dsq_qz_arch *dsq_qz_arch_find(const char *hf_name);
/* "LlamaForCausalLM, DeepseekV3ForCausalLM" */
const char *dsq_qz_arch_names(void);

/* Reads the hyper-parameters the tensor table needs from config.json's description.
 * hp->kvb_legacy and hp->keep_mtp are the caller's and kept; keep_mtp is cleared for an
 * architecture that has no MTP layers.
 * @return DSQ_OK or DSQ_FORMAT naming the missing or mistyped member. */
dsq_status dsq_qz_hparams_read(const dsq_qz_arch *a, const dsq_model_desc *cfg,
                               dsq_qz_hparams *hp, dsq_err *err);

/* 1 when row `r` applies to layer `il` (il = -1 for non-layer rows) of this model; layer
 * rows apply to every block (dsq_qz_n_blocks), DSQ_QZ_W_NEXTN rows to the MTP ones only. */
int dsq_qz_row_applies(const dsq_qz_trow *r, const dsq_qz_hparams *hp, int il);

/* The HF row index that GGUF row `row` of a permuted Q/K tensor comes from
 * (LlamaModel.permute: within each head of hd rows, new 2i+j <- old j*hd/2+i). */
int64_t dsq_qz_permute_src_row(int64_t row, int64_t n_rows, int64_t n_head);

/* Llama 3.1 rope scaling as config.json's rope_scaling gives it. */
typedef struct dsq_qz_llama3_rope {
    double theta;            /* rope_theta */
    int64_t dim;             /* rotated dims per head (head_dim), even */
    double factor;           /* rope_scaling.factor */
    double low_freq_factor;  /* rope_scaling.low_freq_factor */
    double high_freq_factor; /* rope_scaling.high_freq_factor */
    double orig_ctx;         /* rope_scaling.original_max_position_embeddings */
} dsq_qz_llama3_rope;

/* The dim/2 values of rope_freqs.weight, as LlamaModel.generate_extra_tensors computes
 * them in torch F32: per rotary pair, 1 (short wavelengths), factor (long ones) or the
 * smoothed 1/((1-s)/factor + s) between. llama.cpp divides the pair's angle by it. */
void dsq_qz_llama3_rope_factors(const dsq_qz_llama3_rope *p, float *out);

#endif
