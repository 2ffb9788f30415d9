/* quantize/quant.c: the quant type table and the row / multi-row entry
 * points of quant.h. The kernels live in q_float.c, q_legacy.c,
 * q_kquants.c and q_iq4.c; their block layouts are in q_blocks.h.
 *
 * This file owns argument checking, so the kernels can assume whole blocks
 * and valid pointers, and the OpenMP row loop. */
#include "quantize/quant.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/checked.h"
#include "quantize/q_blocks.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct quant_entry {
    dsq_quant_traits traits;
    dsq__quantize_fn quantize;
    dsq__dequantize_fn dequantize;
} quant_entry;

#define ENTRY(T, fn, bs, bb, im)                                                                   \
    [DSQ_DTYPE_##T] = {{DSQ_DTYPE_##T, #T, bs, bb, im}, dsq__quantize_##fn, dsq__dequantize_##fn}

/* block sizes and bytes repeat core/dtype.c's table on purpose: the kernels
 * are written for exactly these, and test_quant checks the two agree */
static const quant_entry quant_table[DSQ_DTYPE_COUNT] = {
    ENTRY(F32, f32, 1, 4, 0),
    ENTRY(F16, f16, 1, 2, 0),
    ENTRY(BF16, bf16, 1, 2, 0),
    ENTRY(Q4_0, q4_0, 32, sizeof(dsq_block_q4_0), 1),
    ENTRY(Q4_1, q4_1, 32, sizeof(dsq_block_q4_1), 1),
    ENTRY(Q5_0, q5_0, 32, sizeof(dsq_block_q5_0), 1),
    ENTRY(Q5_1, q5_1, 32, sizeof(dsq_block_q5_1), 1),
    ENTRY(Q8_0, q8_0, 32, sizeof(dsq_block_q8_0), 0),
    ENTRY(Q2_K, q2_K, 256, sizeof(dsq_block_q2_K), 1),
    ENTRY(Q3_K, q3_K, 256, sizeof(dsq_block_q3_K), 1),
    ENTRY(Q4_K, q4_K, 256, sizeof(dsq_block_q4_K), 1),
    ENTRY(Q5_K, q5_K, 256, sizeof(dsq_block_q5_K), 1),
    ENTRY(Q6_K, q6_K, 256, sizeof(dsq_block_q6_K), 1),
    ENTRY(IQ4_NL, iq4_nl, 32, sizeof(dsq_block_iq4_nl), 1),
    ENTRY(IQ4_XS, iq4_xs, 256, sizeof(dsq_block_iq4_xs), 1),
};

#undef ENTRY

static const quant_entry *lookup(dsq_dtype t) {
    if ((int)t <= (int)DSQ_DTYPE_INVALID || (int)t >= (int)DSQ_DTYPE_COUNT)
        return NULL;
    return quant_table[t].quantize ? &quant_table[t] : NULL;
}

const dsq_quant_traits *dsq_quant_traits_get(dsq_dtype t) {
    const quant_entry *e = lookup(t);
    return e ? &e->traits : NULL;
}

int dsq_quant_supported(dsq_dtype t) { return lookup(t) != NULL; }

static dsq_status check_n(const quant_entry *e, int64_t n) {
    if (e == NULL)
        return DSQ_UNSUPPORTED;
    if (n < 0 || n % e->traits.block_size != 0)
        return DSQ_INVALID_ARG;
    return DSQ_OK;
}

dsq_status dsq_quant_row_size(dsq_dtype t, int64_t n_per_row, size_t *out) {
    const quant_entry *e = lookup(t);
    const dsq_status st = check_n(e, n_per_row);
    if (st != DSQ_OK)
        return st;
    size_t bytes;
    if (!dsq_mul_size((size_t)(n_per_row / e->traits.block_size), e->traits.block_bytes, &bytes))
        return DSQ_RANGE;
    *out = bytes;
    return DSQ_OK;
}

/* ggml's float-to-int conversions in the legacy quantizers are undefined for
 * NaN/inf, and the searches compare NaN sums: there are no meaningful bytes
 * for such a row. */
static int all_finite(const float *x, int64_t n) {
    const int r = dsq__all_finite_avx2(x, n);
    if (r >= 0)
        return r;
    int ok = 1;
    for (int64_t i = 0; i < n; ++i)
        ok &= isfinite(x[i]) != 0;
    return ok;
}

dsq_status dsq_quantize_row(dsq_dtype t, const float *x, void *dst, int64_t n,
                            const float *imatrix) {
    const quant_entry *e = lookup(t);
    const dsq_status st = check_n(e, n);
    if (st != DSQ_OK)
        return st;
    if (n == 0)
        return DSQ_OK;
    if (x == NULL || dst == NULL)
        return DSQ_INVALID_ARG;
    if (e->traits.block_size > 1 && !all_finite(x, n))
        return DSQ_RANGE;
    e->quantize(x, dst, n, e->traits.uses_imatrix ? imatrix : NULL);
    return DSQ_OK;
}

dsq_status dsq_dequantize_row(dsq_dtype t, const void *src, float *y, int64_t n) {
    const quant_entry *e = lookup(t);
    const dsq_status st = check_n(e, n);
    if (st != DSQ_OK)
        return st;
    if (n == 0)
        return DSQ_OK;
    if (src == NULL || y == NULL)
        return DSQ_INVALID_ARG;
    e->dequantize(src, y, n);
    return DSQ_OK;
}

/* The size checks both multi-row entry points share. */
static dsq_status check_rows(dsq_dtype t, int64_t nrows, int64_t n_per_row, size_t *row_size) {
    size_t total;
    uint64_t nel;
    const dsq_status st = dsq_quant_row_size(t, n_per_row, row_size);
    if (st != DSQ_OK)
        return st;
    if (nrows < 0)
        return DSQ_INVALID_ARG;
    if (!dsq_mul_size(*row_size, (size_t)nrows, &total) ||
        !dsq_mul_u64((uint64_t)nrows, (uint64_t)n_per_row, &nel) || nel > (uint64_t)INT64_MAX)
        return DSQ_RANGE;
    return DSQ_OK;
}

static int thread_count(int nthreads) {
#ifdef _OPENMP
    return nthreads > 0 ? nthreads : omp_get_max_threads();
#else
    (void)nthreads;
    return 1;
#endif
}

/* Rows in chunks of about 16K elements (at least 4 chunks per thread), not
 * one by one: a 1024-element Q8_0/Q4_0 row takes about a microsecond with
 * the AVX2 kernels, and the shared iteration counter then costs 10-20% (8.9
 * against 7.2-7.7 GB/s for Q8_0 on 2 threads). */
static int64_t row_chunk(int64_t nrows, int64_t n_per_row, int nt) {
    int64_t chunk = 16384 / n_per_row;
    if (chunk > nrows / (4 * (int64_t)nt))
        chunk = nrows / (4 * (int64_t)nt);
    return chunk < 1 ? 1 : chunk;
}

dsq_status dsq_quantize_rows(dsq_dtype t, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix, int nthreads) {
    size_t row_size;
    const dsq_status st = check_rows(t, nrows, n_per_row, &row_size);
    if (st != DSQ_OK)
        return st;
    if (nrows == 0 || n_per_row == 0)
        return DSQ_OK;
    if (src == NULL || dst == NULL)
        return DSQ_INVALID_ARG;

    const quant_entry *e = lookup(t);
    const float *qw = e->traits.uses_imatrix ? imatrix : NULL;
    const int check = e->traits.block_size > 1;
    const int nt = thread_count(nthreads);
    const int64_t chunk = row_chunk(nrows, n_per_row, nt);
    int bad = 0; /* set by any row with a non-finite value */
    (void)chunk;
#pragma omp parallel for schedule(dynamic, chunk) num_threads(nt) reduction(| : bad)
    for (int64_t r = 0; r < nrows; ++r) {
        const float *x = src + r * n_per_row;
        if (check && !all_finite(x, n_per_row)) {
            bad |= 1;
            continue;
        }
        e->quantize(x, (uint8_t *)dst + (size_t)r * row_size, n_per_row, qw);
    }
    return bad ? DSQ_RANGE : DSQ_OK;
}

/* One parallel region whose threads each fill, check and quantize a chunk of
 * rows at a time through one row buffer of their own. Chunks are dealt
 * dynamically as in dsq_quantize_rows; `fin` records the finished ones (under
 * a critical section) so that done can be given the finished prefix. */
dsq_status dsq_quantize_rows_from(dsq_dtype t, const dsq_row_source *src, void *dst,
                                  int64_t nrows, int64_t n_per_row, const float *imatrix,
                                  int nthreads) {
    size_t row_size;
    const dsq_status st = check_rows(t, nrows, n_per_row, &row_size);
    if (st != DSQ_OK)
        return st;
    if (nrows == 0 || n_per_row == 0)
        return DSQ_OK;
    if (src == NULL || src->fill == NULL || dst == NULL)
        return DSQ_INVALID_ARG;

    const quant_entry *e = lookup(t);
    const float *qw = e->traits.uses_imatrix ? imatrix : NULL;
    const int check = e->traits.block_size > 1;
    const int nt = thread_count(nthreads);
    const int64_t chunk = row_chunk(nrows, n_per_row, nt);
    const int64_t nchunks = (nrows + chunk - 1) / chunk;
    /* 64-byte aligned so that no vector load of the row splits a cache line */
    const size_t buf_bytes = ((size_t)n_per_row * sizeof(float) + 63) & ~(size_t)63;
    uint8_t *fin = NULL;
    _Atomic int64_t next = 0;               /* chunks [0, next) are finished */
    atomic_flag reporting = ATOMIC_FLAG_INIT; /* held by the thread calling done */
    int64_t reported = 0;                   /* the chunks done was told about */
    int bad = 0, nomem = 0;
    if (src->done != NULL && (fin = calloc((size_t)nchunks, 1)) == NULL)
        return DSQ_NOMEM;
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(| : bad, nomem)
    {
        float *x = aligned_alloc(64, buf_bytes);
        nomem |= x == NULL;
        /* every thread must reach the loop, even one without a buffer */
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t ci = 0; ci < nchunks; ci++) {
            const int64_t r1 = (ci + 1) * chunk < nrows ? (ci + 1) * chunk : nrows;
            int ok = x != NULL;
            for (int64_t r = ci * chunk; x != NULL && r < r1; r++) {
                src->fill(src->user, r, x);
                if (check && !all_finite(x, n_per_row)) {
                    ok = 0;
                    continue;
                }
                e->quantize(x, (uint8_t *)dst + (size_t)r * row_size, n_per_row, qw);
            }
            bad |= !ok;
            if (fin == NULL)
                continue;
#pragma omp critical(dsq_quant_done)
            {
                int64_t n = atomic_load_explicit(&next, memory_order_relaxed);
                fin[ci] = (uint8_t)ok;
                while (n < nchunks && fin[n])
                    n++;
                atomic_store_explicit(&next, n, memory_order_release);
            }
            /* done is called outside the critical section, by one thread at a time,
             * the others going on without it: done may wake a thread (the writer of
             * dsq quantize), which the kernel may run in this one's place, and the
             * other threads must not spin on the critical section meanwhile (that
             * was 3-4% of a 2-core Q4_K_M run) */
            if (!atomic_flag_test_and_set_explicit(&reporting, memory_order_acquire)) {
                const int64_t n = atomic_load_explicit(&next, memory_order_acquire);
                if (n > reported) {
                    reported = n;
                    src->done(src->user, n * chunk < nrows ? n * chunk : nrows);
                }
                atomic_flag_clear_explicit(&reporting, memory_order_release);
            }
        }
        free(x);
    }
    /* a prefix finished while another thread was reporting */
    if (fin != NULL && next > reported)
        src->done(src->user, next * chunk < nrows ? next * chunk : nrows);
    free(fin);
    if (nomem)
        return DSQ_NOMEM;
    return bad ? DSQ_RANGE : DSQ_OK;
}
