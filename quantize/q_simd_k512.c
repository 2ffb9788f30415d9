/* quantize/q_simd_k512.c: the K-quant scale searches of q_simd_k_body.h in
 * AVX-512 (16 lanes, two vectors in flight: the sub-blocks of four Q4_K/Q5_K
 * super-blocks, of two Q2_K or of two Q6_K ones), chosen at
 * run time when the CPU has AVX-512F and DQ; q_simd_k.c calls them and falls
 * back to its 8-lane AVX2 versions for the rest. Same algorithm, same
 * operation order, so the same bits as the scalar code (q_simd_k.c explains
 * why); twice the lanes per instruction is the whole gain. Masks are k
 * registers instead of vectors, which is only a change of spelling. */
#include "quantize/q_blocks.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "quantize/q_simd_x86.h"

#if defined(__GNUC__) && !defined(__clang__)
/* GCC 12's avx512fintrin.h gives _mm512_min/max_ps, _min/max_epi32 and
 * _cvtepi32_ps an undefined pass-through operand (__Y = __Y), which
 * -Wuninitialized then reports at every inlined use in this file */
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define AVX512 __attribute__((target("avx512f,avx512dq")))

int dsq__use_avx512(void) {
    return dsq__simd_disabled == 0 && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512dq");
}

/* dsq__nearest_int in every lane: (bits(v + 1.5*2^23) & 0x7fffff) - 0x400000 */
AVX512 static inline __m512i nearest16(__m512 v) {
    const __m512 t = _mm512_add_ps(v, _mm512_set1_ps(12582912.f));
    const __m512i b = _mm512_and_si512(_mm512_castps_si512(t), _mm512_set1_epi32(0x007fffff));
    return _mm512_sub_epi32(b, _mm512_set1_epi32(0x00400000));
}

/* out[c] = column c of 16 rows p + k*stride, for the 8 columns c < 8 */
AVX512 static inline void transpose16x8(const float *p, int stride, __m512 *out) {
    __m256 lo[8], hi[8];
    transpose8(p, stride, lo);
    transpose8(p + 8 * stride, stride, hi);
    for (int c = 0; c < 8; ++c)
        out[c] = _mm512_insertf32x8(_mm512_castps256_ps512(lo[c]), hi[c], 1);
}

#define LANES 16
#define VF __m512
#define VI __m512i
#define VM __mmask16
#define KFN(name) name##_avx512
#define KATTR AVX512
#define V1 _mm512_set1_ps
#define VZ _mm512_setzero_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VSQRT _mm512_sqrt_ps
#define VMIN _mm512_min_ps
#define VMAX _mm512_max_ps
#define VABS _mm512_abs_ps
#define VNEG(a) _mm512_xor_ps((a), _mm512_set1_ps(-0.0f))
#define VCVTI _mm512_cvtepi32_ps
#define VCMP _mm512_cmp_ps_mask
#define MAND(a, b) ((__mmask16)((a) & (b)))
#define MANDN(a, b) ((__mmask16)(~(a) & (b)))
#define MOR(a, b) ((__mmask16)((a) | (b)))
#define MANY(m) ((m) != 0)
#define MALL(m) ((m) == 0xFFFF)
#define VBLEND(a, b, m) _mm512_mask_blend_ps((m), (a), (b))
#define VZEROIF(m, a) _mm512_maskz_mov_ps((__mmask16)~(m), (a))
#define VKEEPIF(m, a) _mm512_maskz_mov_ps((m), (a))
#define VNEAREST nearest16
#define VI1 _mm512_set1_epi32
#define VIMIN _mm512_min_epi32
#define VIMAX _mm512_max_epi32
#define VIADD _mm512_add_epi32
#define VIZEROIF(m, i) _mm512_maskz_mov_epi32((__mmask16)~(m), (i))
#define VISTORE(p, i) _mm512_storeu_si512((p), (i))
#define VSTORE _mm512_storeu_ps
#define TRANSPOSE transpose16x8
#include "quantize/q_simd_k_body.h"

void dsq__qkx_avx512(int G, int n, int use_mad, const float *x, const float *w, int nmax,
                     float rmin, float rdelta, int nstep, uint8_t *L, float *scales,
                     float *the_mins) {
    qkx_lanes_avx512(G, n, use_mad, x, w, nmax, rmin, rdelta, nstep, L, scales, the_mins);
}

void dsq__qx32_avx512(const float *x, const float *qw, int nmax, int8_t *L, float *scales) {
    qx_avx512(x, qw, nmax, L, scales);
}

#else /* not x86-64 with GCC/Clang: never called */

int dsq__use_avx512(void) { return 0; }

void dsq__qkx_avx512(int G, int n, int use_mad, const float *x, const float *w, int nmax,
                     float rmin, float rdelta, int nstep, uint8_t *L, float *scales,
                     float *the_mins) {
    (void)G, (void)n, (void)use_mad, (void)x, (void)w, (void)nmax, (void)rmin, (void)rdelta, (void)nstep;
    (void)L, (void)scales, (void)the_mins;
}

void dsq__qx32_avx512(const float *x, const float *qw, int nmax, int8_t *L, float *scales) {
    (void)x, (void)qw, (void)nmax, (void)L, (void)scales;
}

#endif
