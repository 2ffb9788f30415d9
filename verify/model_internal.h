/* verify/model_internal.h: the model's weight layout, shared by model.c and
 * forward.c only. Every Linear keeps its HF weight name, which is what the
 * calibration hook reports. */
#ifndef DSQ_MODEL_INTERNAL_H
#define DSQ_MODEL_INTERNAL_H

#include "verify/gemm.h"
#include "verify/model.h"

typedef struct dsq__linear {
    char name[128];  /* HF weight name, "model.layers.3.self_attn.q_a_proj.weight" */
    int64_t n_out, n_in;
    dsq_pmat w;      /* packed [n_out][n_in]; data NULL when the layer is not loaded */
} dsq__linear;

typedef struct dsq__ffn {
    dsq__linear gate, up; /* [F, D] */
    dsq__linear down;     /* [D, F] */
} dsq__ffn;

typedef struct dsq__layer {
    int loaded;
    int is_moe;
    float *attn_norm; /* [D] input_layernorm */
    float *ffn_norm;  /* [D] post_attention_layernorm */
    /* llama: wq [H·hd, D], wk/wv [Hkv·hd, D]; MLA without q LoRA: wq [H·(nope+rope), D] */
    dsq__linear wq, wk, wv;
    /* MLA: q_a [qr, D], q_b [H·(nope+rope), qr], kv_a [C+R, D], kv_b [H·(nope+v), C] */
    dsq__linear q_a, q_b, kv_a, kv_b;
    float *q_a_norm;  /* [qr] */
    float *kv_a_norm; /* [C] */
    dsq__linear wo;   /* [D, H·hd] (llama) or [D, H·v] (MLA) */
    dsq__ffn mlp;     /* dense FFN: F = intermediate_size */
    /* MoE */
    dsq__linear router;  /* [E, D] mlp.gate.weight */
    float *router_bias;  /* [E] e_score_correction_bias, NULL when absent */
    dsq__ffn *experts;   /* [E], F = moe_intermediate_size */
    dsq__ffn shared;     /* F = n_shared_experts · moe_intermediate_size; unused when 0 */
} dsq__layer;

struct dsq_model {
    dsq_model_config cfg;
    dsq_wsource *ws;
    int nthreads;
    float *embed;        /* [V, D] model.embed_tokens.weight, plain rows for lookup */
    float *final_norm;   /* [D] model.norm.weight */
    dsq__linear head;    /* [V, D] lm_head (or the embeddings when tied) */
    dsq__layer *layers;  /* [n_layers] */
};

#endif
