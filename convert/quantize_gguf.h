/* convert/quantize_gguf.h: `dsq quantize IN OUT.gguf --type T`, the driver of a GGUF
 * export: the input through the weight source (weights/source.h), the plan, header and
 * transforms from gguf_export/ (gguf_plan.h), the write side in quantize_gguf.c.
 *
 * IN is a Hugging Face checkpoint directory (sharded or not) of F32, F16 or BF16 weights,
 * or DeepSeek's FP8 (F8_E4M3 with F32 *_scale_inv block scales, dequantized on the fly as
 * quantize/fp8.h defines it, rounded to BF16 as DeepSeek's cast is unless fp8_f32; no copy
 * on disk),
 * or a GGUF file or split set given by its first file (formats/gguf_split.h; any
 * architecture: its metadata, the first file's, is kept as llama-quantize keeps it, and
 * the rules key on its tensor names; F32/F16/BF16 tensors are widened exactly, quantized
 * ones are dequantized as ggml does, which llama-quantize refuses unless
 * --allow-requantize; a tensor whose type does not change is copied byte for byte).
 *
 * --imatrix (gguf_export/imatrix.h) gives each quantized tensor the importance weights of its
 * GGUF name (per expert slice for 3-D tensors) and records quantize.imatrix.* provenance
 * keys, exactly as llama-quantize. --split-max-size writes llama.cpp's split convention
 * (gguf-split): OUT-0000k-of-0000n.gguf, tensors distributed in order so that no split
 * holds more than the limit of tensor data (each tensor counted padded to 32 bytes), the
 * first split carrying all metadata, every split the keys split.no (u16, 0-based),
 * split.tensors.count (i32, tensors in all splits) and split.count (u16), in that order.
 *
 * DeepSeek's multi-token-prediction layers (model.layers.N.* for N >= num_hidden_layers) are
 * left out, as the converter does, unless keep_mtp: then they become blocks
 * num_hidden_layers.. with their usual tensors plus blk.N.nextn.* (gguf_export/gguf_arch.c),
 * block_count counts them and {arch}.nextn_predict_layers says how many trail. Asking for
 * them when the model has none (num_nextn_predict_layers 0, or llama) changes nothing and
 * is said as a warning; asking when config.json has some but the checkpoint lacks the first
 * of them is DSQ_NOT_FOUND.
 *
 * The output is the GGUF llama.cpp's convert_hf_to_gguf.py + llama-quantize would make:
 * the same tensor names, shapes, metadata (gguf_export/gguf_arch.h, gguf_vocab.h), the same type
 * for every tensor (gguf_export/gguf_rules.h) and, for every quantized block, the same bytes
 * (quantize/quant.h). Tensors are written in llama-quantize's order.
 *
 * Streaming: one output tensor at a time (a 3-D tensor one expert / head slice at a time)
 * is dequantized to F32 rows, transformed (Q/K permutation, expert stacking, the MLA
 * kv_b split), quantized and handed to the GGUF writer, which writes under a temporary name
 * and renames on commit. Peak memory is about 5 bytes per element of the largest 2-D
 * slice, whatever the model size. */
#ifndef DSQ_QUANTIZE_GGUF_H
#define DSQ_QUANTIZE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "gguf_export/gguf_opts.h"

typedef struct dsq_qz_summary {
    char            arch[32];    /* "deepseek2" */
    char            ftype[16];   /* "Q4_K_M" */
    int             file_type;   /* general.file_type */
    dsq_qz_tensor  *tensors;     /* owned: dsq_qz_summary_free */
    size_t          n_tensors;
    uint64_t        tensor_bytes; /* sum of nbytes */
    uint64_t        file_bytes;   /* whole GGUF */
    uint64_t        input_bytes;  /* checkpoint tensor bytes read */
    int             n_splits;     /* files written (1 without --split-max-size) */
    size_t          imatrix_used; /* tensors quantized with importance weights */
} dsq_qz_summary;

void dsq_qz_summary_free(dsq_qz_summary *s); /* frees the tensors; accepts NULL */

/* in: a checkpoint directory or a GGUF file (told apart by the GGUF magic); a split GGUF
 * by its first file, PREFIX-00001-of-0000N.gguf.
 * out_path: with split_max_bytes, a trailing ".gguf" is dropped and each split is named
 * "<rest>-%05d-of-%05d.gguf"; all splits are written under temporary names and renamed
 * only when every one of them is complete.
 * @return DSQ_OK; DSQ_INVALID_ARG (bad type or pattern); DSQ_UNSUPPORTED (unknown
 *         architecture, a dtype dsq cannot read, a row length no type fits); DSQ_NOT_FOUND
 *         (a tensor the architecture needs is missing); DSQ_FORMAT (bad config, shapes,
 *         an unmapped tensor, a bad imatrix or one whose size does not fit a tensor);
 *         DSQ_UNSUPPORTED also for requantizing without allow_requantize; DSQ_RANGE (NaN/Inf
 *         in a weight, a tensor larger than split_max_bytes); DSQ_IO; DSQ_NOMEM.
 *         On error nothing is left at out_path. */
dsq_status dsq_quantize_gguf(const char *in, const char *out_path, const dsq_qz_opts *o,
                             dsq_qz_summary *s, dsq_err *err);

#endif
