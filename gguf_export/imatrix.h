/* gguf_export/imatrix.h: llama.cpp importance matrix files, for `dsq quantize --imatrix`.
 *
 * Two forms (specs/formats.md §2.12), told apart by the first four bytes:
 *
 *  GGUF ("GGUF" magic; current llama-imatrix): KVs imatrix.datasets (ARRAY of STRING),
 *    imatrix.chunk_count (UINT32) and imatrix.chunk_size (UINT32), all three required;
 *    per weight W two F32 tensors, "W.in_sum2" ne [n_per_row, n_mat] (sums of x^2) and
 *    "W.counts" ne [1, n_mat] (token counts), n_mat = experts of a 3-D weight, else 1.
 *    Value [j][i] = in_sum2[j][i] / counts[j], or 1.0 for every i of a slice j whose
 *    count is 0 (a slice that saw no token during calibration). Other tensors are ignored.
 *
 *  legacy .dat (llama-imatrix of the Feb-2025 snapshot; all little-endian):
 *      i32 n_entries (>= 1)
 *      n_entries x { i32 len; char name[len]; i32 ncall; i32 nval (>= 1); f32 values[nval] }
 *      optional trailer: i32 chunks; i32 len; char dataset[len]
 *    values were saved multiplied by ncall; the loader divides them by ncall when ncall > 0
 *    (as a float division, like llama-quantize's `v /= ncall`). A name seen twice keeps
 *    the last entry, as llama-quantize's map does.
 *
 * Either way the result is, per GGUF weight name, n_per_row x n_mat floats: what
 * llama-quantize passes to ggml as quant_weights (slice e for expert e of a 3-D tensor).
 * Non-finite values are rejected, as llama-quantize does ("imatrix contains non-finite
 * value"). Everything read from the file is bounds-checked before use. */
#ifndef DSQ_IMATRIX_H
#define DSQ_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct dsq_imatrix dsq_imatrix;

/* Reads `path` (either form). *out is owned: dsq_imatrix_free.
 * @return DSQ_OK; DSQ_NOT_FOUND / DSQ_IO (open, read); DSQ_FORMAT (malformed, truncated,
 *         missing keys, in_sum2 without counts or the reverse, no entries, non-finite
 *         values; the message says which entry and why); DSQ_NOMEM. */
dsq_status dsq_imatrix_load(dsq_imatrix **out, const char *path, dsq_err *err);
/* The same parser on a caller's buffer (fuzzing, tests); the result owns its
 * data, the buffer may go away afterwards. `label` names it in messages. */
dsq_status dsq_imatrix_parse(dsq_imatrix **out, const uint8_t *p, size_t n, const char *label,
                             dsq_err *err);
void       dsq_imatrix_free(dsq_imatrix *m); /* accepts NULL */

/* Number of entries (distinct weight names). */
size_t      dsq_imatrix_count(const dsq_imatrix *m);
const char *dsq_imatrix_name(const dsq_imatrix *m, size_t i);
/* The values of weight `name` (borrowed, *n floats), or NULL when absent. */
const float *dsq_imatrix_find(const dsq_imatrix *m, const char *name, int64_t *n);
/* 1 for the GGUF form, 0 for the legacy one. */
int dsq_imatrix_is_gguf(const dsq_imatrix *m);
/* The (first) dataset name, NUL-terminated; "" when the file names none. */
const char *dsq_imatrix_dataset(const dsq_imatrix *m);
/* Chunks the statistics were computed on (legacy trailer or imatrix.chunk_count); 0 when
 * the file does not say. */
int64_t dsq_imatrix_chunks(const dsq_imatrix *m);

#endif
