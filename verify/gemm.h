/* verify/gemm.h: F32 matrix products for the forward pass.
 *
 * Everything the forward pass multiplies is C = A·Bᵀ with A the activations
 * [m][k] (one token per row) and B a Linear weight [n][k] as stored (torch
 * [out, in]), so that is the one product here.
 *
 * Weights are constant, so they are packed once when loaded (dsq_pmat): panels
 * of NR consecutive output rows, stored k-major ([panel][k][NR], zero-padded
 * to a multiple of NR), which the micro-kernel streams without any further
 * copying. A is read in place. The micro-kernel is chosen at run time:
 * AVX-512F (12x32 tile), AVX2+FMA (6x16), or portable C (4x16).
 *
 * Determinism: every element of C is summed in the same order (k ascending in
 * blocks of DSQ_GEMM_KC, each block's partial sum added to C in order) whatever
 * the thread count, the tiling of m and n or the position of the row in A, so
 * results do not depend on threads or on how many windows are batched. They
 * do depend on the kernel (FMA rounds once, the portable kernel twice). */
#ifndef DSQ_GEMM_H
#define DSQ_GEMM_H

#include <stdint.h>

#include "core/status.h"

#define DSQ_GEMM_KC 128 /* k block: a 32-wide panel block is 16 KiB, L1-sized */

typedef struct dsq_pmat {
    int64_t n, k;  /* logical shape of B [n][k] */
    int nr;        /* panel width of the kernel it was packed for */
    float *data;   /* [ceil(n/nr)][k][nr], owned (dsq_pmat_free) */
} dsq_pmat;

/* Panel width of the kernel this CPU uses. */
int dsq_gemm_nr(void);
/* Name of the kernel this CPU uses ("avx512", "avx2", "c"). */
const char *dsq_gemm_kernel_name(void);

/* Packs B [n][k] (row stride ldb). */
dsq_status dsq_pmat_pack(dsq_pmat *out, const float *B, int64_t n, int64_t k, int64_t ldb,
                         dsq_err *err);
/* Packs rows [r0, r0 + nrows) of an already allocated pmat from B [nrows][k]
 * (loaders fill a pmat chunk by chunk; r0 must be a multiple of nr). */
void dsq_pmat_pack_rows(dsq_pmat *p, int64_t r0, const float *B, int64_t nrows, int64_t ldb);
/* Allocates a zeroed pmat for [n][k]. */
dsq_status dsq_pmat_alloc(dsq_pmat *out, int64_t n, int64_t k, dsq_err *err);
void dsq_pmat_free(dsq_pmat *p); /* accepts a zeroed or freed pmat */
/* Floats a packed [n][k] occupies, and a pmat over a caller's buffer of that
 * size (scratch for products whose B changes every time; never freed). */
size_t dsq_pmat_floats(int64_t n, int64_t k);
dsq_pmat dsq_pmat_view(float *buf, int64_t n, int64_t k);
/* Packs Bᵀ: B given as its transpose V [k][n] (row stride ldv), e.g. the
 * values [T][d] of attention, whose product P·V is P·(Vᵀ)ᵀ. */
void dsq_pmat_pack_cols(dsq_pmat *p, const float *V, int64_t ldv);
/* Row r of B back as F32 (k values). */
void dsq_pmat_get_row(const dsq_pmat *p, int64_t r, float *dst);

/* C[m][n] (row stride ldc) = A[m][k] (row stride lda) · Bᵀ, or C += that when
 * accumulate. nthreads <= 0: the OpenMP default; 1 inside parallel regions. */
void dsq_gemm_packed(int64_t m, const float *A, int64_t lda, const dsq_pmat *B, float *C,
                     int64_t ldc, int accumulate, int nthreads);

/* The same product using only B's first n rows and first k columns (A has k
 * columns): causal attention skips the scores and values a row cannot see. */
void dsq_gemm_packed_part(int64_t m, const float *A, int64_t lda, const dsq_pmat *B, int64_t n,
                          int64_t k, float *C, int64_t ldc, int accumulate, int nthreads);

/* The same with an unpacked B [n][k] (row stride ldb), packed on the fly:
 * attention's Q·Kᵀ and P·V. Only fails for lack of memory. */
dsq_status dsq_gemm_nt(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc, int accumulate,
                       int nthreads, dsq_err *err);

#endif
