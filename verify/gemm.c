/* verify/gemm.c: packed-B F32 GEMM with run-time chosen micro-kernels.
 *
 * Loop structure (per task = one MB x NB tile of C; tasks in parallel):
 *   for each k block of KC:
 *     for each NR-wide panel of the tile:      B block [KC][NR] stays in L1
 *       for each MR-row strip of the tile:     A strip read in place (L2)
 *         micro-kernel: acc[MR][NR] = Σ_k A[r][k]·Bp[k][c];  C += acc
 * Rows of A beyond m are never read: a partial strip is copied to a
 * zero-padded buffer first. Columns beyond n are zero in the packed panel and
 * are not stored. */
#include "verify/gemm.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_MR 12
#define MAX_NR 32
/* A task is a tile of MB_STRIPS row strips x NB_PANELS panels: the B block of
 * one panel ([KC][NR], 16 KiB at NR 32) stays in L1 while all strips pass. */
#ifndef MB_STRIPS
#define MB_STRIPS 8
#endif
#ifndef NB_PANELS
#define NB_PANELS 4
#endif

typedef void (*kern_fn)(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                        int64_t ldc, int nr_valid);

typedef struct kernel {
    const char *name;
    int mr, nr;
    kern_fn fn;
} kernel;

/* Adds a full MR x NR accumulator tile (row-major, stride nr) to C, only the
 * first nr_valid columns. */
static void add_tile(const float *t, int mr, int nr, float *c, int64_t ldc, int nr_valid) {
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr_valid; j++)
            c[r * ldc + j] += t[r * nr + j];
}

/* ---- portable kernel: 4 x 16 ---- */

static void kern_c(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                   int64_t ldc, int nr_valid) {
    float acc[4][16];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++) {
        const float *b = bp + k * 16;
        for (int r = 0; r < 4; r++) {
            const float av = a[r * lda + k];
            for (int j = 0; j < 16; j++)
                acc[r][j] += av * b[j];
        }
    }
    add_tile(&acc[0][0], 4, 16, c, ldc, nr_valid);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86 1

/* ---- AVX2 + FMA kernel: 6 x 16 (12 accumulators of 8) ---- */

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static void kern_avx2(int64_t kc, const float *a, int64_t lda, const float *bp, float *c,
                           int64_t ldc, int nr_valid) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda;
    const float *a4 = a + 4 * lda, *a5 = a + 5 * lda;
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(bp + k * 16);
        const __m256 b1 = _mm256_loadu_ps(bp + k * 16 + 8);
        __m256 t;
#define AVX2_ROW(r)                                                                                \
    t = _mm256_broadcast_ss(a##r + k);                                                             \
    c##r##0 = _mm256_fmadd_ps(t, b0, c##r##0);                                                     \
    c##r##1 = _mm256_fmadd_ps(t, b1, c##r##1);
        AVX2_ROW(0) AVX2_ROW(1) AVX2_ROW(2) AVX2_ROW(3) AVX2_ROW(4) AVX2_ROW(5)
#undef AVX2_ROW
    }
    if (nr_valid == 16) {
#define AVX2_ST(r)                                                                                 \
    _mm256_storeu_ps(c + r * ldc, _mm256_add_ps(_mm256_loadu_ps(c + r * ldc), c##r##0));          \
    _mm256_storeu_ps(c + r * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + r * ldc + 8), c##r##1));
        AVX2_ST(0) AVX2_ST(1) AVX2_ST(2) AVX2_ST(3) AVX2_ST(4) AVX2_ST(5)
#undef AVX2_ST
    } else {
        float t6[6 * 16];
#define AVX2_TS(r)                                                                                 \
    _mm256_storeu_ps(t6 + r * 16, c##r##0);                                                        \
    _mm256_storeu_ps(t6 + r * 16 + 8, c##r##1);
        AVX2_TS(0) AVX2_TS(1) AVX2_TS(2) AVX2_TS(3) AVX2_TS(4) AVX2_TS(5)
#undef AVX2_TS
        add_tile(t6, 6, 16, c, ldc, nr_valid);
    }
}

/* ---- AVX-512F kernel: 12 x 32 (24 accumulators of 16) ---- */

#define AVX512 __attribute__((target("avx512f")))

AVX512 static void kern_avx512(int64_t kc, const float *a, int64_t lda, const float *bp,
                               float *c, int64_t ldc, int nr_valid) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    __m512 c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
    __m512 c90 = c00, c91 = c00, cA0 = c00, cA1 = c00, cB0 = c00, cB1 = c00;
    const float *a0 = a, *a6 = a + 6 * lda;
    const int64_t l1 = lda, l2 = 2 * lda, l3 = 3 * lda, l4 = 4 * lda, l5 = 5 * lda;
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(bp + k * 32);
        const __m512 b1 = _mm512_loadu_ps(bp + k * 32 + 16);
        __m512 t;
#define AVX512_ROW(r, p, off)                                                                      \
    t = _mm512_set1_ps(p[off + k]);                                                                \
    c##r##0 = _mm512_fmadd_ps(t, b0, c##r##0);                                                     \
    c##r##1 = _mm512_fmadd_ps(t, b1, c##r##1);
        AVX512_ROW(0, a0, 0) AVX512_ROW(1, a0, l1) AVX512_ROW(2, a0, l2)
        AVX512_ROW(3, a0, l3) AVX512_ROW(4, a0, l4) AVX512_ROW(5, a0, l5)
        AVX512_ROW(6, a6, 0) AVX512_ROW(7, a6, l1) AVX512_ROW(8, a6, l2)
        AVX512_ROW(9, a6, l3) AVX512_ROW(A, a6, l4) AVX512_ROW(B, a6, l5)
#undef AVX512_ROW
    }
    if (nr_valid == 32) {
#define AVX512_ST(r, i)                                                                            \
    _mm512_storeu_ps(c + i * ldc, _mm512_add_ps(_mm512_loadu_ps(c + i * ldc), c##r##0));          \
    _mm512_storeu_ps(c + i * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + i * ldc + 16), c##r##1));
        AVX512_ST(0, 0) AVX512_ST(1, 1) AVX512_ST(2, 2) AVX512_ST(3, 3) AVX512_ST(4, 4)
        AVX512_ST(5, 5) AVX512_ST(6, 6) AVX512_ST(7, 7) AVX512_ST(8, 8) AVX512_ST(9, 9)
        AVX512_ST(A, 10) AVX512_ST(B, 11)
#undef AVX512_ST
    } else {
        float t12[12 * 32];
#define AVX512_TS(r, i)                                                                            \
    _mm512_storeu_ps(t12 + i * 32, c##r##0);                                                       \
    _mm512_storeu_ps(t12 + i * 32 + 16, c##r##1);
        AVX512_TS(0, 0) AVX512_TS(1, 1) AVX512_TS(2, 2) AVX512_TS(3, 3) AVX512_TS(4, 4)
        AVX512_TS(5, 5) AVX512_TS(6, 6) AVX512_TS(7, 7) AVX512_TS(8, 8) AVX512_TS(9, 9)
        AVX512_TS(A, 10) AVX512_TS(B, 11)
#undef AVX512_TS
        add_tile(t12, 12, 32, c, ldc, nr_valid);
    }
}
#endif

/* The best kernel the CPU has. DSQ_GEMM_KERNEL=avx2|c in the environment
 * picks a lesser one (tests and benchmarks: every kernel gets run on a machine
 * that has the best); it must not change while packed matrices exist. */
static kernel pick_kernel(void) {
    const char *want = getenv("DSQ_GEMM_KERNEL");
    const int any = want == NULL || *want == '\0';
#ifdef HAVE_X86
    if ((any || strcmp(want, "avx512") == 0) && __builtin_cpu_supports("avx512f"))
        return (kernel){"avx512", 12, 32, kern_avx512};
    if ((any || strcmp(want, "avx512") == 0 || strcmp(want, "avx2") == 0) &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (kernel){"avx2", 6, 16, kern_avx2};
#endif
    (void)any;
    return (kernel){"c", 4, 16, kern_c};
}

int dsq_gemm_nr(void) {
    return pick_kernel().nr;
}

const char *dsq_gemm_kernel_name(void) {
    return pick_kernel().name;
}

/* ---- packed weights ---- */

dsq_status dsq_pmat_alloc(dsq_pmat *out, int64_t n, int64_t k, dsq_err *err) {
    memset(out, 0, sizeof *out);
    const int nr = dsq_gemm_nr();
    const int64_t panels = (n + nr - 1) / nr;
    size_t bytes;
    if (n < 0 || k < 0 || !dsq_mul_size((size_t)panels, (size_t)k, &bytes) ||
        !dsq_mul_size(bytes, (size_t)nr * sizeof(float), &bytes))
        return dsq_err_set(err, DSQ_RANGE, "matrix [%lld, %lld] too large", (long long)n,
                           (long long)k);
    out->data = calloc(bytes ? bytes : 1, 1);
    if (out->data == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory (%zu bytes for a packed matrix)", bytes);
    out->n = n;
    out->k = k;
    out->nr = nr;
    return DSQ_OK;
}

void dsq_pmat_pack_rows(dsq_pmat *p, int64_t r0, const float *B, int64_t nrows, int64_t ldb) {
    const int nr = p->nr;
    for (int64_t r = 0; r < nrows; r++) {
        const int64_t row = r0 + r, q = row / nr, c = row % nr;
        float *dst = p->data + (size_t)q * (size_t)p->k * (size_t)nr + (size_t)c;
        const float *src = B + r * ldb;
        for (int64_t kk = 0; kk < p->k; kk++)
            dst[kk * nr] = src[kk];
    }
}

dsq_status dsq_pmat_pack(dsq_pmat *out, const float *B, int64_t n, int64_t k, int64_t ldb,
                         dsq_err *err) {
    const dsq_status st = dsq_pmat_alloc(out, n, k, err);
    if (st == DSQ_OK)
        dsq_pmat_pack_rows(out, 0, B, n, ldb);
    return st;
}

void dsq_pmat_free(dsq_pmat *p) {
    if (p == NULL)
        return;
    free(p->data);
    memset(p, 0, sizeof *p);
}

size_t dsq_pmat_floats(int64_t n, int64_t k) {
    const int nr = dsq_gemm_nr();
    return (size_t)((n + nr - 1) / nr) * (size_t)k * (size_t)nr;
}

dsq_pmat dsq_pmat_view(float *buf, int64_t n, int64_t k) {
    const dsq_pmat p = {n, k, dsq_gemm_nr(), buf};
    return p;
}

void dsq_pmat_pack_cols(dsq_pmat *p, const float *V, int64_t ldv) {
    const int nr = p->nr;
    for (int64_t q = 0; q * nr < p->n; q++) {
        const int64_t c0 = q * nr, nc = p->n - c0 < nr ? p->n - c0 : nr;
        float *dst = p->data + (size_t)q * (size_t)p->k * (size_t)nr;
        for (int64_t kk = 0; kk < p->k; kk++)
            memcpy(dst + kk * nr, V + kk * ldv + c0, (size_t)nc * sizeof(float));
    }
}

void dsq_pmat_get_row(const dsq_pmat *p, int64_t r, float *dst) {
    const int nr = p->nr;
    const float *src = p->data + (size_t)(r / nr) * (size_t)p->k * (size_t)nr + (size_t)(r % nr);
    for (int64_t kk = 0; kk < p->k; kk++)
        dst[kk] = src[kk * nr];
}

/* ---- the driver ---- */

void dsq_gemm_packed(int64_t m, const float *A, int64_t lda, const dsq_pmat *B, float *C,
                     int64_t ldc, int accumulate, int nthreads) {
    dsq_gemm_packed_part(m, A, lda, B, B->n, B->k, C, ldc, accumulate, nthreads);
}

void dsq_gemm_packed_part(int64_t m, const float *A, int64_t lda, const dsq_pmat *B, int64_t n,
                          int64_t k, float *C, int64_t ldc, int accumulate, int nthreads) {
    const kernel kn = pick_kernel();
    const int64_t kstride = B->k; /* panels keep their full depth */
    assert(n <= B->n && k <= B->k);
    const int mr = kn.mr, nr = kn.nr;
    if (m <= 0 || n <= 0)
        return;
    /* a pmat packed for another kernel cannot happen on one machine */
    assert(B->nr == nr);
    const int64_t MB = MB_STRIPS * (int64_t)mr, NB = NB_PANELS * (int64_t)nr;
    const int64_t ti_n = (m + MB - 1) / MB, tj_n = (n + NB - 1) / NB;
    const int64_t tasks = ti_n * tj_n;
#ifdef _OPENMP
    const int nt = nthreads > 0 ? nthreads : omp_get_max_threads();
    /* Small products are not worth waking threads for: a parallel region
     * costs microseconds on an idle machine, but a scheduler time slice
     * (milliseconds) when another process holds a core. 3e7 multiply-adds
     * are about 0.3 ms on one core. */
    const int par = nt > 1 && tasks > 1 && (double)m * (double)n * (double)k > 3e7;
#else
    (void)nthreads; /* no OpenMP (the fuzz builds): the pragma below is ignored */
#endif
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (par)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t tj = t / ti_n, ti = t % ti_n;
        const int64_t i0 = ti * MB, i1 = i0 + MB < m ? i0 + MB : m;
        const int64_t j0 = tj * NB, j1 = j0 + NB < n ? j0 + NB : n;
        float apad[MAX_MR * DSQ_GEMM_KC]; /* [mr][KC] for a partial strip of rows */
        if (!accumulate)
            for (int64_t i = i0; i < i1; i++)
                memset(C + i * ldc + j0, 0, (size_t)(j1 - j0) * sizeof(float));
        for (int64_t p0 = 0; p0 < k; p0 += DSQ_GEMM_KC) {
            const int64_t kc = p0 + DSQ_GEMM_KC < k ? DSQ_GEMM_KC : k - p0;
            for (int64_t j = j0; j < j1; j += nr) {
                const float *bp = B->data + (size_t)(j / nr) * (size_t)kstride * (size_t)nr +
                                  (size_t)p0 * (size_t)nr;
                const int nv = j1 - j < nr ? (int)(j1 - j) : nr;
                for (int64_t i = i0; i < i1; i += mr) {
                    if (i + mr <= i1) {
                        kn.fn(kc, A + i * lda + p0, lda, bp, C + i * ldc + j, ldc, nv);
                    } else {
                        /* partial strip: pad with zero rows, keep only real rows */
                        const int rows = (int)(i1 - i);
                        float ctmp[MAX_MR * MAX_NR];
                        memset(apad, 0, sizeof(float) * (size_t)mr * (size_t)kc);
                        for (int r = 0; r < rows; r++)
                            memcpy(apad + r * kc, A + (i + r) * lda + p0,
                                   (size_t)kc * sizeof(float));
                        memset(ctmp, 0, sizeof ctmp);
                        kn.fn(kc, apad, kc, bp, ctmp, nr, nr);
                        for (int r = 0; r < rows; r++)
                            for (int c = 0; c < nv; c++)
                                C[(i + r) * ldc + j + c] += ctmp[r * nr + c];
                    }
                }
            }
        }
    }
}

dsq_status dsq_gemm_nt(int64_t m, int64_t n, int64_t k, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float *C, int64_t ldc, int accumulate,
                       int nthreads, dsq_err *err) {
    dsq_pmat p;
    const dsq_status st = dsq_pmat_pack(&p, B, n, k, ldb, err);
    if (st != DSQ_OK)
        return st;
    dsq_gemm_packed(m, A, lda, &p, C, ldc, accumulate, nthreads);
    dsq_pmat_free(&p);
    return DSQ_OK;
}
