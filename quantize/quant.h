/* quantize/quant.h: GGUF block quantizers, byte-identical to ggml's.
 *
 * Quantizes F32 rows to the GGUF types below and back. For every type the
 * bytes equal what ggml_quantize_chunk (and so llama-quantize) writes, with
 * and without an importance matrix; test_quant checks this against bytes
 * produced by ggml itself (../shared/data/ggml-quant-vectors).
 *
 * Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, IQ4_NL, IQ4_XS.
 *
 * A "row" is one run of n_per_row elements along ne[0] (the input dimension
 * of a weight, specs/formats.md §1 conventions). Rows matter beyond being a
 * multiple of the block size: with an imatrix, Q4_0/Q4_1/Q5_0/Q5_1 weight
 * each element by the mean square of its whole row, so quantizing two rows
 * as one long row gives different bytes. The imatrix holds one weight per
 * column (n_per_row floats) and applies to every row; for a 3-D expert
 * tensor pass the slice of the expert (imatrix + e * n_per_row).
 *
 * Which types use the imatrix (as in ggml): Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K
 * Q4_K Q5_K Q6_K IQ4_NL IQ4_XS. Q8_0, F32, F16 and BF16 ignore it. */
#ifndef DSQ_QUANT_H
#define DSQ_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

typedef struct dsq_quant_traits {
    dsq_dtype type;
    const char *name;   /* "Q4_K", as core/dtype.h names it */
    int64_t block_size; /* elements per block: 1, 32 or 256 */
    size_t block_bytes; /* bytes per block */
    int uses_imatrix;   /* 1 when an imatrix changes the bytes */
} dsq_quant_traits;

/* NULL when t has no quantizer here. The pointer is to static data. */
const dsq_quant_traits *dsq_quant_traits_get(dsq_dtype t);
int dsq_quant_supported(dsq_dtype t);

/* Bytes of one row of n_per_row elements.
 * @return DSQ_UNSUPPORTED for a type without quantizer, DSQ_INVALID_ARG when
 *         n_per_row is negative or not a multiple of the block size,
 *         DSQ_RANGE on overflow. */
dsq_status dsq_quant_row_size(dsq_dtype t, int64_t n_per_row, size_t *out);

/* Quantizes one row x[0..n) into dst (row_size bytes, any alignment).
 * imatrix: NULL, or n importance weights (borrowed; ignored by the types that
 * do not use one).
 * @return DSQ_OK; DSQ_UNSUPPORTED for an unsupported type; DSQ_INVALID_ARG
 *         when n is negative or not a multiple of the block size, or a
 *         pointer is NULL; DSQ_RANGE when a block type is given a NaN or
 *         infinite input (ggml's result would be garbage and llama-quantize
 *         rejects such output; dst is then unspecified). F32/F16/BF16 convert
 *         NaN and infinities like any other value. */
dsq_status dsq_quantize_row(dsq_dtype t, const float *x, void *dst, int64_t n,
                            const float *imatrix);

/* Decodes n elements (a multiple of the block size; any number of rows) from
 * src into y, as ggml's to_float does, bit for bit.
 * @return DSQ_OK, DSQ_UNSUPPORTED or DSQ_INVALID_ARG as above. */
dsq_status dsq_dequantize_row(dsq_dtype t, const void *src, float *y, int64_t n);

/* Quantizes nrows rows of n_per_row elements (src row-major, dst rows of
 * dsq_quant_row_size bytes back to back), rows in parallel with OpenMP.
 * nthreads <= 0 means the OpenMP default. The bytes do not depend on the
 * thread count: every row is independent and uses only its own scratch.
 * imatrix: NULL or n_per_row weights, applied to every row.
 * @return as dsq_quantize_row; DSQ_RANGE also when the sizes overflow. */
dsq_status dsq_quantize_rows(dsq_dtype t, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix, int nthreads);

/* Where dsq_quantize_rows_from gets its rows. fill writes row r as n_per_row
 * floats into out; it is called from every thread at once, each with its own
 * out (a few rows' worth at most, so a row is still in L1/L2 when it is
 * quantized, instead of a whole F32 slice passing through memory twice).
 * done, if not NULL, is told that rows [0, rows) of dst are final: calls come
 * one at a time, from any thread, with rows increasing; never past a row that
 * failed (DSQ_RANGE), so a consumer can start on the prefix, e.g. write it. */
typedef struct dsq_row_source {
    void (*fill)(void *user, int64_t r, float *out);
    void (*done)(void *user, int64_t rows);
    void *user;
} dsq_row_source;

/* dsq_quantize_rows with rows from src instead of an F32 array: the same
 * bytes, the same checks and the same DSQ_RANGE for a non-finite row (such a
 * row is left unspecified and the others still quantized).
 * @return as dsq_quantize_rows; DSQ_NOMEM when a thread's row buffer cannot
 *         be allocated. */
dsq_status dsq_quantize_rows_from(dsq_dtype t, const dsq_row_source *src, void *dst,
                                  int64_t nrows, int64_t n_per_row, const float *imatrix,
                                  int nthreads);

#endif
