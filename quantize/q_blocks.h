/* quantize/q_blocks.h: internal to quantize/. The on-disk GGUF block structs,
 * the rounding primitive and the per-type kernels the dispatcher in quant.c
 * calls. Nothing here is public API; include quantize/quant.h instead.
 *
 * Every field is a byte array, so sizeof(block) is the on-disk size with no
 * padding, a block may sit at any address (GGUF data, odd offsets in a
 * caller's buffer), and the fp16 scales are read and written little-endian
 * explicitly, independent of the host byte order.
 *
 * Block layouts (ggml-common.h; specs/formats.md §2.6, §2.8, §2.9). "d" and
 * "dmin"/"m" are IEEE fp16, little-endian.
 *
 *   Q4_0   18 B / 32   d[2] qs[16]                 qs[j] = q[j] | q[j+16] << 4
 *   Q4_1   20 B / 32   d[2] m[2] qs[16]            as Q4_0, y = q*d + m
 *   Q5_0   22 B / 32   d[2] qh[4] qs[16]           qh (u32 LE) bit j = bit 4 of q[j]
 *   Q5_1   24 B / 32   d[2] m[2] qh[4] qs[16]
 *   Q8_0   34 B / 32   d[2] qs[32] (int8)
 *   Q2_K   84 B / 256  scales[16] qs[64] d[2] dmin[2]
 *   Q3_K  110 B / 256  hmask[32] qs[64] scales[12] d[2]
 *   Q4_K  144 B / 256  d[2] dmin[2] scales[12] qs[128]
 *   Q5_K  176 B / 256  d[2] dmin[2] scales[12] qh[32] qs[128]
 *   Q6_K  210 B / 256  ql[128] qh[64] scales[16] (int8) d[2]
 *   IQ4_NL 18 B / 32   d[2] qs[16]                 values from kvalues_iq4nl
 *   IQ4_XS 136 B / 256 d[2] scales_h[2] scales_l[4] qs[128]
 * The bit-level packing of each is described at the top of the file that
 * writes it (q_legacy.c, q_kquants.c, q_iq4.c). */
#ifndef DSQ_Q_BLOCKS_H
#define DSQ_Q_BLOCKS_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "core/le.h"
#include "core/numeric.h"

#define DSQ_QK_LEGACY 32 /* elements per legacy / IQ4_NL block */
#define DSQ_QK_K 256     /* elements per K-quant super-block */

/* ggml's GROUP_MAX_EPS: a group whose largest |x| is below this is treated
 * as all zero. */
#define DSQ_GROUP_MAX_EPS 1e-15f

typedef struct {
    uint8_t d[2];
    uint8_t qs[16];
} dsq_block_q4_0;
typedef struct {
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qs[16];
} dsq_block_q4_1;
typedef struct {
    uint8_t d[2];
    uint8_t qh[4];
    uint8_t qs[16];
} dsq_block_q5_0;
typedef struct {
    uint8_t d[2];
    uint8_t m[2];
    uint8_t qh[4];
    uint8_t qs[16];
} dsq_block_q5_1;
typedef struct {
    uint8_t d[2];
    int8_t qs[32];
} dsq_block_q8_0;
typedef struct {
    uint8_t scales[16];
    uint8_t qs[64];
    uint8_t d[2];
    uint8_t dmin[2];
} dsq_block_q2_K;
typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint8_t d[2];
} dsq_block_q3_K;
typedef struct {
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[12];
    uint8_t qs[128];
} dsq_block_q4_K;
typedef struct {
    uint8_t d[2];
    uint8_t dmin[2];
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} dsq_block_q5_K;
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint8_t d[2];
} dsq_block_q6_K;
typedef struct {
    uint8_t d[2];
    uint8_t qs[16];
} dsq_block_iq4_nl;
typedef struct {
    uint8_t d[2];
    uint8_t scales_h[2];
    uint8_t scales_l[4];
    uint8_t qs[128];
} dsq_block_iq4_xs;

static_assert(sizeof(dsq_block_q4_0) == 18, "Q4_0 block is 18 bytes");
static_assert(sizeof(dsq_block_q4_1) == 20, "Q4_1 block is 20 bytes");
static_assert(sizeof(dsq_block_q5_0) == 22, "Q5_0 block is 22 bytes");
static_assert(sizeof(dsq_block_q5_1) == 24, "Q5_1 block is 24 bytes");
static_assert(sizeof(dsq_block_q8_0) == 34, "Q8_0 block is 34 bytes");
static_assert(sizeof(dsq_block_q2_K) == 84, "Q2_K block is 84 bytes");
static_assert(sizeof(dsq_block_q3_K) == 110, "Q3_K block is 110 bytes");
static_assert(sizeof(dsq_block_q4_K) == 144, "Q4_K block is 144 bytes");
static_assert(sizeof(dsq_block_q5_K) == 176, "Q5_K block is 176 bytes");
static_assert(sizeof(dsq_block_q6_K) == 210, "Q6_K block is 210 bytes");
static_assert(sizeof(dsq_block_iq4_nl) == 18, "IQ4_NL block is 18 bytes");
static_assert(sizeof(dsq_block_iq4_xs) == 136, "IQ4_XS block is 136 bytes");

/* ---- little-endian fp16 fields ------------------------------------------ */

static inline void dsq__put_f16(uint8_t p[2], float f) {
    dsq_le_put_u16(p, dsq_f32_to_f16(f));
}

static inline float dsq__get_f16(const uint8_t p[2]) {
    return dsq_f16_to_f32(dsq_le_u16(p));
}

/* Round-to-nearest-even of |f| <= 4194303 through the 1.5*2^23 trick, as
 * ggml's nearest_int does (specs/formats.md §2.5). We keep the trick rather
 * than lrintf: inside the range the two agree, and outside it (which ggml
 * only guards with an assert that release builds drop) the trick's wrapped
 * result is what ended up in ggml's bytes. */
static inline int dsq__nearest_int(float f) {
    const float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- scale-search helpers (q_search.c) ---------------------------------- */

/* ggml make_qx_quants with rmse_type 1: symmetric levels -nmax..nmax-1 stored
 * as L = level + nmax; weights qw, or x^2 when qw is NULL. Returns the scale. */
float dsq__make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);
/* ggml make_q3_quants with do_rmse: levels -nmax..nmax-1 stored +nmax,
 * coordinate descent with weights x^2. Returns the scale. */
float dsq__make_q3_quants(int n, int nmax, const float *x, int8_t *L);
/* ggml make_qkx2_quants / make_qkx3_quants: levels 0..nmax, scale and min;
 * weights NULL means x^2. *the_min receives the (non-negative) offset to
 * subtract. Laux is n bytes of scratch. Returns the scale. */
float dsq__make_qkx_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                           float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                           int use_mad);
/* ggml make_qp_quants: non-negative x to 0..nmax with one positive scale;
 * quant_weights must not be NULL. Returns the scale. */
float dsq__make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights);

/* ---- kernels ------------------------------------------------------------- */

/* Quantize n elements (one row; n a multiple of the block size) to dst.
 * imatrix is NULL or n importance weights. Cannot fail. */
typedef void (*dsq__quantize_fn)(const float *x, void *dst, int64_t n, const float *imatrix);
typedef void (*dsq__dequantize_fn)(const void *src, float *y, int64_t n);

#define DSQ__KERNELS(T)                                                                            \
    void dsq__quantize_##T(const float *x, void *dst, int64_t n, const float *imatrix);            \
    void dsq__dequantize_##T(const void *src, float *y, int64_t n);

DSQ__KERNELS(f32)
DSQ__KERNELS(f16)
DSQ__KERNELS(bf16)
DSQ__KERNELS(q4_0)
DSQ__KERNELS(q4_1)
DSQ__KERNELS(q5_0)
DSQ__KERNELS(q5_1)
DSQ__KERNELS(q8_0)
DSQ__KERNELS(q2_K)
DSQ__KERNELS(q3_K)
DSQ__KERNELS(q4_K)
DSQ__KERNELS(q5_K)
DSQ__KERNELS(q6_K)
DSQ__KERNELS(iq4_nl)
DSQ__KERNELS(iq4_xs)

#undef DSQ__KERNELS

/* The imatrix-free Q8_0 and Q4_0 paths over nb blocks: the scalar reference
 * (q_legacy.c) and an AVX2 version (q_simd.c) that must give identical
 * bytes. The AVX2 ones return 0 and do nothing when the CPU (or the build
 * target) lacks AVX2; the callers then use the scalar one. test_quant
 * compares the two directly. */
void dsq__q8_0_ref_scalar(const float *x, void *dst, int64_t nb);
void dsq__q4_0_ref_scalar(const float *x, void *dst, int64_t nb);
int dsq__q8_0_ref_avx2(const float *x, void *dst, int64_t nb);
int dsq__q4_0_ref_avx2(const float *x, void *dst, int64_t nb);

/* K-quant searches in SIMD (q_simd_k.c: AVX2, 8 lanes; q_simd_k512.c:
 * AVX-512, 16 lanes), one sub-block per lane, bit-identical to the scalar
 * helpers; each returns 0 and does nothing without AVX2 (or when
 * dsq__simd_disabled is 1), and the caller then runs the scalar ones.
 *  dsq__qkx_simd: dsq__make_qkx_quants(n, nmax, x + n*j, w + n*j,
 *      L + n*j, &the_mins[j], .., rmin, rdelta, nstep, use_mad) for
 *      j < nsub (a multiple of 8) into scales[j]; n = 32 without use_mad,
 *      or n = 16 (else returns 0); w NULL: the weights of Q4_K/Q5_K's ref
 *      path, sqrtf(sum of the sub-block's x^2 / n) + fabsf(x), made in the
 *      lanes;
 *  dsq__qx_simd: dsq__make_qx_quants(16, nmax, x + 16j, L + 16j,
 *      qw ? qw + 16j : NULL) for the j < 16 * nsb sub-blocks of nsb
 *      super-blocks into scales[j]. */
int dsq__qkx_simd(int n, int use_mad, const float *x, const float *w, int nsub, int nmax,
                  float rmin, float rdelta, int nstep, uint8_t *L, float *scales,
                  float *the_mins);
int dsq__qx_simd(const float *x, const float *qw, int nsb, int nmax, int8_t *L, float *scales);
/* q_simd_k512.c, for q_simd_k.c: whether to use it, and G * 16 sub-blocks
 * (qkx, G = 1 or 2) or two super-blocks (qx) at a time */
int dsq__use_avx512(void);
void dsq__qkx_avx512(int G, int n, int use_mad, const float *x, const float *w, int nmax,
                     float rmin, float rdelta, int nstep, uint8_t *L, float *scales,
                     float *the_mins);
void dsq__qx32_avx512(const float *x, const float *qw, int nmax, int8_t *L, float *scales);
/* The final pass of Q4_K/Q5_K/Q6_K: for each sub-block j < nsub of `sub`
 * elements (a multiple of 16) with d[j] != 0, L[e] = clamp(nearest_int(
 * (x[e] + dm[j]) / d[j]), lo, hi) + off, or x[e] / d[j] when dm is NULL;
 * sub-blocks with d[j] == 0 keep their L. */
int dsq__requant_avx2(const float *x, int sub, int nsub, const float *d, const float *dm, int lo,
                      int hi, int off, uint8_t *L);
/* The bit packing of Q6_K (L: 256 levels 0..63 -> ql, qh) and Q4_K (levels
 * 0..15 -> qs), as in q_kquants.c. */
int dsq__q6_pack_avx2(const uint8_t *L, uint8_t *ql, uint8_t *qh);
int dsq__q4_pack_avx2(const uint8_t *L, uint8_t *qs);
/* 1 if all n floats are finite, 0 if not; -1 without AVX2 (q_simd.c) */
int dsq__all_finite_avx2(const float *x, int64_t n);
/* 1: every SIMD kernel reports "unavailable", so the scalar reference runs;
 * 2: AVX2 only, no AVX-512; for tests and benchmarks (set it while no
 * quantization runs) */
extern int dsq__simd_disabled;

#endif
