/* weights/source.h: where the forward pass gets its weights from.
 *
 * A weight source answers two questions about a tensor named the Hugging Face
 * way ("model.layers.3.mlp.experts.5.up_proj.weight"): its shape, and the F32
 * values of a range of its rows. A row is the last (fastest) dimension: for a
 * Linear weight [out, in] a row is one output channel, and every block format
 * dsq reads (FP8 128x128 blocks, GGUF blocks along ne[0], GPTQ/AWQ groups,
 * NVFP4 blocks of 16) runs along it, so rows dequantize independently.
 *
 * Each storage format is one source behind dsq_wsource_ops; the forward pass
 * never sees the format. Today: a Hugging Face safetensors checkpoint (single
 * or sharded) with F32, F16, BF16 and F8_E4M3 + `<name>_scale_inv` block
 * scales; and a llama.cpp GGUF file (weights/source_gguf.c: one table maps HF
 * names to blk.N.* names, blocks decode with dsq_dequantize_row, the 3-D expert
 * tensors ffn_*_exps slice into experts.E.*, attn_k_b/attn_v_b join back into
 * kv_b_proj). Planned, as further sources with the same ops: GPTQ, AWQ and
 * NVFP4 layouts (adapters over the safetensors reader). A source also supplies the model config, because a GGUF file
 * carries it as metadata rather than as config.json; that is also how a GGUF
 * llama, whose Q/K rows convert_hf_to_gguf permuted, says its RoPE pairs are
 * adjacent (dsq_rope_layout) instead of the forward pass knowing about GGUF. */
#ifndef DSQ_WEIGHTS_H
#define DSQ_WEIGHTS_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"
#include "tokenizer/tokenizer.h"
#include "model/model_config.h"

typedef struct dsq_winfo {
    dsq_dtype dtype;             /* storage type (F8_E4M3 for a block-scaled weight) */
    int ndim;
    int64_t shape[DSQ_MAX_DIMS]; /* slowest first */
    int64_t rows, cols;          /* cols = shape[ndim-1] (1 for a scalar), rows = the rest */
} dsq_winfo;

/* What a source implements. `impl` is the source's own state. */
typedef struct dsq_wsource_ops {
    const char *kind; /* "safetensors", "gguf", ... */
    /* DSQ_NOT_FOUND (with a message naming the tensor) when absent. */
    dsq_status (*info)(void *impl, const char *name, dsq_winfo *out, dsq_err *err);
    /* Rows [row0, row0 + nrows) as F32 into dst [nrows][cols]. Must be safe to
     * call from several threads at once on different rows or tensors. */
    dsq_status (*read_rows)(void *impl, const char *name, int64_t row0, int64_t nrows, float *dst,
                            dsq_err *err);
    /* The model's hyper-parameters. */
    dsq_status (*config)(void *impl, dsq_model_config *cfg, dsq_err *err);
    /* The model's tokenizer (*out owned by the caller); NULL op: DSQ_NOT_FOUND.
     * HF: dir/tokenizer.json (+ tokenizer_config.json for bos/eos); GGUF: the
     * tokenizer.ggml.* metadata. */
    dsq_status (*tokenizer)(void *impl, dsq_tokenizer **out, dsq_err *err);
    /* Hint that the tensor's storage is not needed again soon (streaming). */
    void (*release)(void *impl, const char *name);
    void (*close)(void *impl);
} dsq_wsource_ops;

typedef struct dsq_wsource dsq_wsource;

typedef struct dsq_wsource_opts {
    /* FP8 weights: round W·scale_inv to BF16 (nearest even) before use, as
     * DeepSeek's own inference does (kernel.py weight_dequant writes the
     * default dtype, bf16) and as `dsq convert fp8 bf16` writes it. 0 keeps
     * the F32 product. The team's reference values use the BF16 rounding. */
    int fp8_no_bf16_round;
} dsq_wsource_opts;

/* Wraps a source implementation; takes ownership of impl (ops->close frees it,
 * also when this fails). */
dsq_status dsq_wsource_wrap(dsq_wsource **out, const dsq_wsource_ops *ops, void *impl,
                            dsq_err *err);

/* A Hugging Face checkpoint: a directory with config.json and
 * model.safetensors or model.safetensors.index.json + shards. opts may be NULL.
 * @return DSQ_OK, DSQ_IO/DSQ_FORMAT from the reader, DSQ_NOMEM. */
dsq_status dsq_wsource_open_hf(dsq_wsource **out, const char *dir, const dsq_wsource_opts *opts,
                               dsq_err *err);

/* A llama.cpp GGUF file (architectures llama and deepseek2), or a split set
 * given by its first file (formats/gguf_split.h), see weights/source_gguf.c
 * for the name mapping. opts may be NULL (unused).
 * @return DSQ_OK; the GGUF and split-set readers' errors; DSQ_FORMAT for missing or
 *         inconsistent metadata; DSQ_UNSUPPORTED for another architecture. */
dsq_status dsq_wsource_open_gguf(dsq_wsource **out, const char *path,
                                 const dsq_wsource_opts *opts, dsq_err *err);

/* Opens whatever `path` is: a file starting with the GGUF magic is a GGUF
 * file, anything else an HF checkpoint directory. */
dsq_status dsq_wsource_open(dsq_wsource **out, const char *path, const dsq_wsource_opts *opts,
                            dsq_err *err);

void dsq_wsource_close(dsq_wsource *ws); /* accepts NULL */
const char *dsq_wsource_kind(const dsq_wsource *ws);

dsq_status dsq_wsource_config(const dsq_wsource *ws, dsq_model_config *cfg, dsq_err *err);
/* 1 when the tensor exists. */
int dsq_wsource_has(const dsq_wsource *ws, const char *name);
dsq_status dsq_wsource_info(const dsq_wsource *ws, const char *name, dsq_winfo *out,
                            dsq_err *err);
dsq_status dsq_wsource_read_rows(const dsq_wsource *ws, const char *name, int64_t row0,
                                 int64_t nrows, float *dst, dsq_err *err);
void dsq_wsource_release(const dsq_wsource *ws, const char *name);
/* The tokenizer the source carries (*out owned by the caller, dsq_tokenizer_free).
 * @return DSQ_OK; DSQ_NOT_FOUND when the source has none; the tokenizer's errors. */
dsq_status dsq_wsource_tokenizer(const dsq_wsource *ws, dsq_tokenizer **out, dsq_err *err);

/* Reads a whole tensor as F32 [rows][cols] into a fresh buffer (owned by the
 * caller, free()). When want_rows/want_cols are >= 0 the tensor must be 2-D
 * with exactly that shape (a 1-D tensor of want_cols when want_rows == 0),
 * otherwise DSQ_FORMAT naming the tensor and both shapes. */
dsq_status dsq_wsource_load(const dsq_wsource *ws, const char *name, int64_t want_rows,
                            int64_t want_cols, float **out, dsq_err *err);

#endif
