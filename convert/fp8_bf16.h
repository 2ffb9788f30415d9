/* convert/fp8_bf16.h: `dsq convert fp8 bf16 IN_DIR OUT_DIR`.
 *
 * DeepSeek-V3/V3.1/R1 ship every Linear weight W as F8_E4M3 [M, N] with an F32
 * `W_scale_inv` [ceil(M/Bm), ceil(N/Bn)] (Bm x Bn = quantization_config.
 * weight_block_size, 128 x 128 by default). The cast is DeepSeek's own
 * (inference/fp8_cast_bf16.py, kernel.py weight_dequant; specs/formats.md §7):
 *
 *   out[i][j] = bf16_rne( f32(W[i][j]) * scale_inv[i / Bm][j / Bn] )
 *
 * with the product rounded to F32 first, so the output equals the reference
 * bit for bit. Every other tensor is copied bit for bit and the scales are
 * dropped. Unlike the reference, dsq also leaves a checkpoint that loads as it
 * is: `__metadata__ {"format": "pt"}` on every shard, the index rewritten with
 * total_size, config.json without quantization_config and with torch_dtype
 * bfloat16, and every other file (tokenizer, generation config, licence, code)
 * copied.
 *
 * Everything is validated before the first byte is written. Each output file
 * is written under a temporary name and renamed when whole; config.json is
 * written last, so a directory without it is an interrupted run. The manifest
 * `dsq-manifest.json` records each finished shard's size and xxHash64 so that
 * --resume can skip it. */
#ifndef DSQ_FP8_BF16_H
#define DSQ_FP8_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "core/report.h"
#include "core/status.h"

#define DSQ_MANIFEST_NAME "dsq-manifest.json"

/* The size of a planned file that is known only once the run is done (the manifest). */
#define DSQ_FP8_SIZE_UNKNOWN UINT64_MAX

/* One file of the plan (--dry-run): the shards, the other files, the index, config.json and
 * the manifest, each with its path under the output directory, what it is made from (the
 * input shard or file; NULL for what dsq composes: the index, the manifest) and its size. */
typedef void (*dsq_fp8_plan_fn)(void *user, const char *out_path, const char *source,
                                uint64_t bytes);

typedef struct dsq_fp8_opts {
    int threads;            /* compute threads; 0 = all cores */
    int resume;             /* skip shards the manifest shows complete and intact */
    int dry_run;            /* validate and report the plan; write nothing */
    int keep_unscaled_fp8;  /* a FP8 weight without scale stays FP8 (the reference's
                               behaviour) instead of being an error */
    size_t buf_size;        /* bytes per write buffer; 0 = 256 KiB */
    dsq_log_fn log;
    void *log_user;
    dsq_progress_fn progress;
    void *progress_user;
    dsq_fp8_plan_fn plan;   /* with dry_run: each file that would be written; may be NULL */
    void *plan_user;
} dsq_fp8_opts;

typedef struct dsq_fp8_summary {
    size_t tensors_converted;  /* FP8 -> BF16 */
    size_t tensors_copied;     /* bit for bit */
    size_t tensors_kept_fp8;   /* only with keep_unscaled_fp8 */
    size_t scales_dropped;
    size_t shards_planned;
    size_t shards_written;
    size_t shards_resumed;     /* skipped by --resume */
    size_t files_copied;       /* tokenizer, generation config, ... */
    uint64_t bytes_planned;    /* all output shard bytes */
    uint64_t bytes_written;    /* shard bytes written by this run */
} dsq_fp8_summary;

dsq_status dsq_convert_fp8_bf16(const char *in_dir, const char *out_dir, const dsq_fp8_opts *opts,
                                dsq_fp8_summary *summary, dsq_err *err);

#endif
