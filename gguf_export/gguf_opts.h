/* gguf_export/gguf_opts.h: what a caller asks of a GGUF export (dsq_qz_opts: the preset,
 * overrides, imatrix, splits, the MLA and MTP choices) and what one output tensor of the
 * plan is (dsq_qz_tensor). The driver is convert/quantize_gguf.h; the plan
 * gguf_export/gguf_plan.h. */
#ifndef DSQ_GGUF_OPTS_H
#define DSQ_GGUF_OPTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/report.h"

typedef struct dsq_qz_opts {
    const char *type;                 /* preset or type name: "Q4_K_M", "Q8_0", ... */
    int pure;                         /* every quantizable tensor gets the base type */
    const char *const *tensor_types;  /* "REGEX=TYPE" overrides, first match wins */
    size_t n_tensor_types;
    const char *output_tensor_type;   /* NULL: the preset's rule */
    const char *token_embedding_type; /* NULL: the preset's rule */
    const char *tokenizer_pre;        /* NULL: guessed from tokenizer.json */
    int mla_legacy;                   /* deepseek2: one attn_kv_b instead of attn_k_b/attn_v_b */
    int fp8_f32;                      /* FP8 x scale kept in F32, not rounded to BF16 as
                                         DeepSeek's cast (and so llama.cpp's input) has it */
    int keep_mtp;                     /* deepseek2: write the multi-token-prediction layers
                                       * (num_nextn_predict_layers) as the last blocks, in
                                       * llama.cpp's nextn layout, instead of dropping them */
    int dry_run;                      /* plan only, write nothing */
    const char *imatrix;              /* importance matrix file (GGUF or legacy .dat), or NULL */
    int allow_requantize;             /* GGUF input: quantized tensors may be requantized */
    uint64_t split_max_bytes;         /* > 0: split the output, at most this much tensor data
                                       * (padded to 32 bytes per tensor) per file */
    int threads;                      /* 0 = OpenMP default */
    dsq_log_fn log;
    void *log_user;
    dsq_progress_fn progress; /* bytes of tensor data written / total */
    void *progress_user;
} dsq_qz_opts;

/* One output tensor of the plan. */
typedef struct dsq_qz_tensor {
    char      name[64];  /* GGUF name */
    uint32_t  n_dims;
    int64_t   ne[4];     /* ne[0] fastest */
    dsq_dtype type;
    uint64_t  nbytes;
    int       fallback;  /* the row-length fallback picked the type */
} dsq_qz_tensor;

#endif
