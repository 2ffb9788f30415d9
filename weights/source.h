/* weights/source.h: the one weight source. Every command that reads a checkpoint's
 * weights (quantize, ppl, verify; convert and inspect next) reads them through it.
 *
 * A source is one checkpoint: a Hugging Face safetensors directory (weights/source_hf.c:
 * F32, F16, BF16, F8_E4M3/F8_E5M2 with `<name>_scale_inv` block scales, and every other
 * safetensors dtype for a byte copy) or a llama.cpp GGUF file or split set
 * (weights/source_gguf.c). Each format is one implementation of dsq_wsource_ops; callers
 * never see the format. The quantized layouts still to come (GPTQ, AWQ, compressed-tensors,
 * ModelOpt, MLX) plug in here as further implementations.
 *
 * Tensors: a caller looks a tensor up once (dsq_wsource_find, or walks them with
 * dsq_wsource_count / dsq_wsource_at) and gets a dsq_wtensor, a small value that both
 * describes the tensor (storage dtype, logical shape, block structure, where its stored
 * parts are in which file) and lets the source read its rows without looking the name up
 * again. A row is the last (fastest) dimension: for a Linear weight [out, in] one output
 * channel; every block format dsq reads (FP8 Bm x Bn blocks, GGUF blocks along ne[0], the
 * GPTQ/AWQ groups and NVFP4 blocks to come) runs along it, so rows decode independently.
 * Reads fill caller buffers and are safe from several threads at once.
 *
 * Names: an HF source names tensors the Hugging Face way ("model.layers.3.mlp.up_proj.
 * weight"); a FP8 weight and its `_scale_inv` are one logical tensor (the scale is its
 * second part and is not listed on its own). A GGUF source lists its own tensors under their
 * GGUF names ("blk.3.ffn_up.weight"), for any architecture, and for llama and deepseek2 also
 * answers the HF names the forward pass asks for (one table maps them; 3-D expert tensors
 * slice into experts.E.*, attn_k_b/attn_v_b join back into kv_b_proj).
 *
 * A source also supplies the model description (config.json, or a GGUF's metadata) and the
 * tokenizer, unless it was opened for its tensors only. That is also how a GGUF llama, whose Q/K
 * rows convert_hf_to_gguf permuted, says its RoPE pairs are adjacent (dsq_rope_layout)
 * instead of the forward pass knowing about GGUF. */
#ifndef DSQ_WEIGHTS_H
#define DSQ_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"
#include "tokenizer/tokenizer.h"
#include "model/model_config.h"

struct dsq_gguf;

/* How a tensor's values are stored. */
typedef enum dsq_wlayout {
    DSQ_WLAYOUT_PLAIN,      /* dtype elements, row-major, in part[0] */
    DSQ_WLAYOUT_FP8_BLOCK,  /* FP8 codes in part[0], F32 scales [ceil(M/Bm), ceil(N/Bn)] in
                             * part[1], block_rows x block_cols = Bm x Bn */
    DSQ_WLAYOUT_GGUF_BLOCK, /* a ggml block type: rows of ne[0] / block_cols blocks */
    DSQ_WLAYOUT_DERIVED,    /* computed from several stored tensors (a GGUF kv_b_proj rebuilt
                             * from attn_k_b and attn_v_b): no byte copy */
} dsq_wlayout;

/* Where a stored part lives. */
typedef struct dsq_wpart {
    const char *file;   /* path of the file holding it (borrowed from the source) */
    uint64_t offset;    /* of its first byte in that file */
    uint64_t nbytes;
    const void *data;   /* its bytes while the source maps them, else NULL (read through
                         * the source) */
} dsq_wpart;

/* A tensor of a source: its description, and the source's own resolution of it. Valid
 * until the source is closed; may be copied. */
typedef struct dsq_wtensor {
    const char *name;            /* the stored tensor's name (for an expert slice or a
                                  * rebuilt kv_b: the GGUF tensor it is read from) */
    size_t index;                /* its position in the source's list (dsq_wsource_at), or
                                  * SIZE_MAX for a view that is not stored as it is */
    dsq_dtype dtype;             /* storage type of the values (F8_E4M3 for a FP8 weight) */
    dsq_wlayout layout;
    int ndim;
    int64_t shape[DSQ_MAX_DIMS]; /* logical shape, slowest first */
    int64_t rows, cols;          /* cols = shape[ndim-1] (1 for a scalar), rows = the rest */
    int64_t block_rows, block_cols; /* FP8: Bm x Bn; GGUF blocks: 1 x elements a block;
                                     * plain: 1 x 1 */
    int readable;                /* dsq_wsource_read can decode it (else: byte copy only) */
    int n_parts;                 /* 1; 2 with FP8 block scales or a rebuilt kv_b */
    dsq_wpart part[2];
    struct {                     /* the source's own; callers do not touch */
        const void *p[3];
        int64_t i[3];
        int kind;
    } src_;
} dsq_wtensor;

/* The subset of a description the forward pass asks for by name. */
typedef struct dsq_winfo {
    dsq_dtype dtype;             /* storage type (F8_E4M3 for a block-scaled weight) */
    int ndim;
    int64_t shape[DSQ_MAX_DIMS]; /* slowest first */
    int64_t rows, cols;          /* cols = shape[ndim-1] (1 for a scalar), rows = the rest */
} dsq_winfo;

/* What a source implements. `impl` is the source's own state. Row ranges are checked by the
 * wrapper before read_f32/read_bf16 are called. */
typedef struct dsq_wsource_ops {
    const char *kind; /* "safetensors", "gguf", ... */
    size_t (*count)(void *impl);
    const char *(*name)(void *impl, size_t i); /* of tensor i, without checking it */
    dsq_status (*at)(void *impl, size_t i, dsq_wtensor *out, dsq_err *err);
    /* DSQ_NOT_FOUND (with a message naming the tensor) when absent. */
    dsq_status (*find)(void *impl, const char *name, dsq_wtensor *out, dsq_err *err);
    /* Rows [row0, row0 + nrows) as F32 into dst [nrows][cols]. */
    dsq_status (*read_f32)(void *impl, const dsq_wtensor *t, int64_t row0, int64_t nrows,
                           float *dst, dsq_err *err);
    /* The same as BF16 bits; NULL: the wrapper rounds the F32 rows. */
    dsq_status (*read_bf16)(void *impl, const dsq_wtensor *t, int64_t row0, int64_t nrows,
                            uint16_t *dst, dsq_err *err);
    /* The directory of an HF checkpoint, the (first) file of a GGUF. */
    const char *(*path)(void *impl);
    /* The model's hyper-parameters. */
    dsq_status (*config)(void *impl, dsq_model_config *cfg, dsq_err *err);
    /* The model's tokenizer (*out owned by the caller); NULL op: DSQ_NOT_FOUND. */
    dsq_status (*tokenizer)(void *impl, dsq_tokenizer **out, dsq_err *err);
    /* A GGUF source's metadata (the first file's); NULL op: not a GGUF. */
    const struct dsq_gguf *(*gguf)(void *impl);
    /* Hint that the tensor's storage is not needed again soon (streaming); may be NULL. */
    void (*release)(void *impl, const dsq_wtensor *t);
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
 * Every FP8 weight's scale is checked (quantize/fp8.h) when the weight is looked up.
 * @return DSQ_OK, DSQ_IO/DSQ_FORMAT from the reader, DSQ_NOMEM. */
dsq_status dsq_wsource_open_hf(dsq_wsource **out, const char *dir, const dsq_wsource_opts *opts,
                               dsq_err *err);

/* A llama.cpp GGUF file (architectures llama and deepseek2), or a
 * split set given by its first file (formats/gguf_split.h), see weights/source_gguf.c
 * for the name mapping. opts may be NULL.
 * @return DSQ_OK; the GGUF and split-set readers' errors; DSQ_FORMAT for missing or
 *         inconsistent metadata; DSQ_UNSUPPORTED for another architecture. */
dsq_status dsq_wsource_open_gguf(dsq_wsource **out, const char *path,
                                 const dsq_wsource_opts *opts, dsq_err *err);

/* Opens whatever `path` is: a file starting with the GGUF magic is a GGUF
 * file, anything else an HF checkpoint directory. */
dsq_status dsq_wsource_open(dsq_wsource **out, const char *path, const dsq_wsource_opts *opts,
                            dsq_err *err);

/* The same for its tensors only, without a model description (dsq_wsource_config and the
 * HF names of a GGUF's kv_b are then unavailable): an HF directory needs no config.json the
 * forward pass could read (its quantization_config.weight_block_size is still honoured; no
 * config.json: 128 x 128), a GGUF may be of any architecture. What `dsq quantize` reads. */
dsq_status dsq_wsource_open_tensors(dsq_wsource **out, const char *path,
                                    const dsq_wsource_opts *opts, dsq_err *err);

void dsq_wsource_close(dsq_wsource *ws); /* accepts NULL */
const char *dsq_wsource_kind(const dsq_wsource *ws);
/* The directory of an HF checkpoint (where its config.json and tokenizer are), the first
 * file of a GGUF. */
const char *dsq_wsource_path(const dsq_wsource *ws);
/* The GGUF metadata of a GGUF source, NULL for any other. */
const struct dsq_gguf *dsq_wsource_gguf(const dsq_wsource *ws);

dsq_status dsq_wsource_config(const dsq_wsource *ws, dsq_model_config *cfg, dsq_err *err);
/* The tokenizer the source carries (*out owned by the caller, dsq_tokenizer_free).
 * @return DSQ_OK; DSQ_NOT_FOUND when the source has none; the tokenizer's errors. */
dsq_status dsq_wsource_tokenizer(const dsq_wsource *ws, dsq_tokenizer **out, dsq_err *err);

/* ---- tensors by handle ---- */

/* The tensors the source stores, in its own order (an HF checkpoint's shards in order, each
 * in header order, FP8 scales folded into their weights; a GGUF's tensors in file order). */
size_t dsq_wsource_count(const dsq_wsource *ws);
/* The name of tensor i < count, without the checks dsq_wsource_at makes. */
const char *dsq_wsource_name(const dsq_wsource *ws, size_t i);
dsq_status dsq_wsource_at(const dsq_wsource *ws, size_t i, dsq_wtensor *out, dsq_err *err);
/* @return DSQ_OK; DSQ_NOT_FOUND naming the tensor; DSQ_FORMAT/DSQ_UNSUPPORTED for a tensor
 *         that exists but is inconsistent (a FP8 weight without a good scale). */
dsq_status dsq_wsource_find(const dsq_wsource *ws, const char *name, dsq_wtensor *out,
                            dsq_err *err);
/* Rows [row0, row0 + nrows) of t as F32 into dst [nrows][cols]; as BF16 bits.
 * @return DSQ_OK; DSQ_INVALID_ARG for rows out of range; DSQ_UNSUPPORTED when t is not
 *         readable; the source's read errors. */
dsq_status dsq_wsource_read(const dsq_wsource *ws, const dsq_wtensor *t, int64_t row0,
                            int64_t nrows, float *dst, dsq_err *err);
dsq_status dsq_wsource_read_bf16(const dsq_wsource *ws, const dsq_wtensor *t, int64_t row0,
                                 int64_t nrows, uint16_t *dst, dsq_err *err);
void dsq_wsource_release_tensor(const dsq_wsource *ws, const dsq_wtensor *t);

/* ---- by name: one lookup per call ---- */

/* 1 when the tensor exists. */
int dsq_wsource_has(const dsq_wsource *ws, const char *name);
/* As dsq_wsource_find, and DSQ_UNSUPPORTED for a tensor that cannot be read as F32. */
dsq_status dsq_wsource_info(const dsq_wsource *ws, const char *name, dsq_winfo *out,
                            dsq_err *err);
dsq_status dsq_wsource_read_rows(const dsq_wsource *ws, const char *name, int64_t row0,
                                 int64_t nrows, float *dst, dsq_err *err);
void dsq_wsource_release(const dsq_wsource *ws, const char *name);

/* Reads a whole tensor as F32 [rows][cols] into a fresh buffer (owned by the
 * caller, free()). When want_rows/want_cols are >= 0 the tensor must be 2-D
 * with exactly that shape (a 1-D tensor of want_cols when want_rows == 0),
 * otherwise DSQ_FORMAT naming the tensor and both shapes. */
dsq_status dsq_wsource_load(const dsq_wsource *ws, const char *name, int64_t want_rows,
                            int64_t want_cols, float **out, dsq_err *err);

/* For implementations: the opens with the tensors-only switch; rows and cols of a shape as
 * dsq_wtensor counts them. */
dsq_status dsq__wsource_open_hf(dsq_wsource **out, const char *dir, const dsq_wsource_opts *opts,
                                int tensors_only, dsq_err *err);
dsq_status dsq__wsource_open_gguf(dsq_wsource **out, const char *path,
                                  const dsq_wsource_opts *opts, int tensors_only, dsq_err *err);
void dsq_wtensor_set_shape(dsq_wtensor *t, int ndim, const int64_t *shape);

#endif
