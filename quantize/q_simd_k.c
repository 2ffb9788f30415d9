/* quantize/q_simd_k.c: SIMD versions of the K-quant scale searches, chosen
 * at run time with __builtin_cpu_supports, never required: AVX2 here (8
 * lanes), AVX-512 in q_simd_k512.c (16 lanes), one algorithm for both in
 * q_simd_k_body.h.
 *
 * The searches of q_search.c work on one sub-block at a time, and the
 * sub-blocks of a super-block are independent of each other until their
 * scales are combined. So the vector code puts one sub-block in each lane
 * and runs the scalar algorithm in every lane:
 *  - dsq__qkx_simd: make_qkx2/qkx3 on the sub-blocks of 32 of Q4_K/Q5_K
 *    super-blocks or of 16 of Q2_K ones (use_mad 1 in its ref path), ref
 *    and imatrix paths;
 *  - dsq__qx_simd: make_qx_quants on the 16 sub-blocks of 16 of Q6_K
 *    super-blocks, weights x^2 or the imatrix.
 * Two vectors of sub-blocks go through each loop side by side, since each
 * lane's running sums are chains of dependent adds whose latency one vector
 * alone cannot hide. On this machine's Xeon (2 cores, Sapphire Rapids) the
 * 512-bit form is about 1.3x the 256-bit one, not 2x: 256-bit adds and
 * multiplies issue on three ports, 512-bit ones on two.
 * Element i of every lane is processed in step i, so each lane's running
 * sums are added in the scalar order, every expression keeps the scalar
 * code's operand order and association ((w*l)*x, never w*(l*x)), and every
 * multiply and add is a separate multiply and add instruction: this file is
 * compiled for "avx2" only, never "fma", so the compiler cannot fuse them;
 * the AVX-512 target does include FMA, and there -ffp-contract=off (always
 * in the Makefile) is what forbids fusing (test_quant would catch a fused
 * build: its bytes differ). Divisions and square roots are IEEE-exact
 * (divps, sqrtps), never rcp/rsqrt approximations.
 *
 * Branches become per-lane masks. Where the scalar code skips work (D <= 0,
 * a candidate that does not improve), the lane computes it anyway and the
 * result is discarded by a blend, so the discarded values (inf, NaN from a
 * zero division) never reach a kept one. Where it copies the candidate's
 * levels (memcpy(L, Laux)), we keep instead the candidate's inverse scale and
 * offset and recompute the levels once at the end with the same operations:
 * nearest_int(iscale * (x - min)) gives the same integer both times.
 *
 * nearest_int is ggml's 1.5*2^23 trick done the same way: one float add,
 * then the integer bit operations on the result, so even out-of-range values
 * wrap as in the scalar code. Inside the candidate loops, where the argument
 * is known to be small, the level comes out of the same float add by a
 * second float subtraction and float clamps instead (level_f, exact there;
 * float_ok checks the bound per candidate and falls back to the integer
 * form). Min/max use minps/maxps, whose "a < b ? a : b" rule is the scalar
 * `if (x < min) min = x` (ties and -0.0 included).
 *
 * Also here: the final requantization with the fp16 scales (dsq__requant_avx2,
 * elementwise, divps) and the Q4_K / Q6_K bit packing (integer only).
 *
 * Inputs are finite (quant.c rejects NaN/inf before any kernel runs). */
#include "quantize/q_blocks.h"

int dsq__simd_disabled;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include "quantize/q_simd_x86.h"

#define AVX2 __attribute__((target("avx2")))

static int use_avx2(void) { return dsq__simd_disabled != 1 && __builtin_cpu_supports("avx2"); }

/* dsq__nearest_int in every lane: (bits(v + 1.5*2^23) & 0x7fffff) - 0x400000 */
AVX2 static inline __m256i nearest8(__m256 v) {
    const __m256 t = _mm256_add_ps(v, _mm256_set1_ps(12582912.f));
    const __m256i b = _mm256_and_si256(_mm256_castps_si256(t), _mm256_set1_epi32(0x007fffff));
    return _mm256_sub_epi32(b, _mm256_set1_epi32(0x00400000));
}

/* ---- the searches (q_simd_k_body.h), 8 lanes ----------------------------- */

#define LANES 8
#define VF __m256
#define VI __m256i
#define VM __m256
#define KFN(name) name##_avx2
#define KATTR AVX2
#define V1 _mm256_set1_ps
#define VZ _mm256_setzero_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VSQRT _mm256_sqrt_ps
#define VMIN _mm256_min_ps
#define VMAX _mm256_max_ps
#define VABS(a) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (a))
#define VNEG(a) _mm256_xor_ps((a), _mm256_set1_ps(-0.0f))
#define VCVTI _mm256_cvtepi32_ps
#define VCMP _mm256_cmp_ps
#define MAND _mm256_and_ps
#define MANDN _mm256_andnot_ps
#define MOR _mm256_or_ps
#define MANY(m) (_mm256_movemask_ps(m) != 0)
#define MALL(m) (_mm256_movemask_ps(m) == 0xff)
#define VBLEND(a, b, m) _mm256_blendv_ps((a), (b), (m))
#define VZEROIF(m, a) _mm256_andnot_ps((m), (a))
#define VKEEPIF(m, a) _mm256_and_ps((m), (a))
#define VNEAREST nearest8
#define VI1 _mm256_set1_epi32
#define VIMIN _mm256_min_epi32
#define VIMAX _mm256_max_epi32
#define VIADD _mm256_add_epi32
#define VIZEROIF(m, i) _mm256_andnot_si256(_mm256_castps_si256(m), (i))
#define VISTORE(p, i) _mm256_storeu_si256((__m256i *)(p), (i))
#define VSTORE _mm256_storeu_ps
#define TRANSPOSE transpose8
#include "quantize/q_simd_k_body.h"

/* nsub sub-blocks (a multiple of 8): 32 or 16 at a time in AVX-512 when the
 * CPU has it (q_simd_k512.c), the rest 16 or 8 at a time in AVX2 */
int dsq__qkx_simd(int n, int use_mad, const float *x, const float *w, int nsub, int nmax,
                  float rmin, float rdelta, int nstep, uint8_t *L, float *scales,
                  float *the_mins) {
    if (!use_avx2() || nsub % 8 != 0 || !(n == 16 || (n == 32 && !use_mad)))
        return 0;
    int j = 0;
    if (dsq__use_avx512())
        for (int G = 2; G >= 1; --G)
            for (; j + 16 * G <= nsub; j += 16 * G)
                dsq__qkx_avx512(G, n, use_mad, x + n * j, w ? w + n * j : NULL, nmax, rmin, rdelta, nstep,
                                L + n * j, scales + j, the_mins + j);
    for (int G = 2; G >= 1; --G)
        for (; j + 8 * G <= nsub; j += 8 * G)
            qkx_lanes_avx2(G, n, use_mad, x + n * j, w ? w + n * j : NULL, nmax, rmin, rdelta, nstep,
                           L + n * j, scales + j, the_mins + j);
    return 1;
}

/* nsb super-blocks: two at a time in AVX-512 when the CPU has it, else one
 * at a time in AVX2 (two groups of 8 lanes) */
int dsq__qx_simd(const float *x, const float *qw, int nsb, int nmax, int8_t *L, float *scales) {
    if (!use_avx2())
        return 0;
    int b = 0;
    if (dsq__use_avx512())
        for (; b + 2 <= nsb; b += 2)
            dsq__qx32_avx512(x + 256 * b, qw ? qw + 256 * b : NULL, nmax, L + 256 * b,
                             scales + 16 * b);
    for (; b < nsb; ++b)
        qx_avx2(x + 256 * b, qw ? qw + 256 * b : NULL, nmax, L + 256 * b, scales + 16 * b);
    return 1;
}

/* ---- final requantization with the packed scales ------------------------ */

/* 16 int32 levels (a: elements 0..7, b: 8..15), each in 0..255, to bytes */
AVX2 static inline void store16_u8(uint8_t *dst, __m256i a, __m256i b) {
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
    const __m128i q = _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)dst, q);
}

AVX2 static void requant(const float *x, int sub, int nsub, const float *d, const float *dm, int lo,
                         int hi, int off, uint8_t *L) {
    const __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
    const __m256i voff = _mm256_set1_epi32(off);
    for (int j = 0; j < nsub; ++j) {
        if (d[j] == 0.0f)
            continue;
        const __m256 vd = _mm256_set1_ps(d[j]);
        const __m256 vm = _mm256_set1_ps(dm ? dm[j] : 0.0f);
        for (int k = 0; k < sub; k += 16) {
            const float *xs = x + sub * j + k;
            __m256 v0 = _mm256_loadu_ps(xs), v1 = _mm256_loadu_ps(xs + 8);
            if (dm) {
                v0 = _mm256_add_ps(v0, vm);
                v1 = _mm256_add_ps(v1, vm);
            }
            __m256i l0 = nearest8(_mm256_div_ps(v0, vd)), l1 = nearest8(_mm256_div_ps(v1, vd));
            l0 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(l0, vlo), vhi), voff);
            l1 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(l1, vlo), vhi), voff);
            store16_u8(L + sub * j + k, l0, l1);
        }
    }
}

int dsq__requant_avx2(const float *x, int sub, int nsub, const float *d, const float *dm, int lo,
                      int hi, int off, uint8_t *L) {
    if (!use_avx2() || sub % 16 != 0)
        return 0;
    requant(x, sub, nsub, d, dm, lo, hi, off, L);
    return 1;
}

/* ---- bit packing --------------------------------------------------------- */

/* Q6_K: L[0..255] levels 0..63 to ql[128], qh[64] (layout in q_kquants.c).
 * Byte-wise shifts done as 16-bit shifts of values whose bits cannot cross
 * into the neighbouring byte (masked before or after). */
AVX2 static void q6_pack(const uint8_t *L, uint8_t *ql, uint8_t *qh) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    for (int h = 0; h < 2; ++h) {
        const uint8_t *Lh = L + 128 * h;
        const __m256i a = _mm256_loadu_si256((const __m256i *)(Lh + 0));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(Lh + 32));
        const __m256i c = _mm256_loadu_si256((const __m256i *)(Lh + 64));
        const __m256i d = _mm256_loadu_si256((const __m256i *)(Lh + 96));
        const __m256i lo0 = _mm256_or_si256(_mm256_and_si256(a, m4),
                                            _mm256_slli_epi16(_mm256_and_si256(c, m4), 4));
        const __m256i lo1 = _mm256_or_si256(_mm256_and_si256(b, m4),
                                            _mm256_slli_epi16(_mm256_and_si256(d, m4), 4));
        const __m256i ha = _mm256_and_si256(_mm256_srli_epi16(a, 4), m2);
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(b, 4), m2);
        const __m256i hc = _mm256_and_si256(_mm256_srli_epi16(c, 4), m2);
        const __m256i hd = _mm256_and_si256(_mm256_srli_epi16(d, 4), m2);
        const __m256i hi = _mm256_or_si256(
            _mm256_or_si256(ha, _mm256_slli_epi16(hb, 2)),
            _mm256_or_si256(_mm256_slli_epi16(hc, 4), _mm256_slli_epi16(hd, 6)));
        _mm256_storeu_si256((__m256i *)(ql + 64 * h), lo0);
        _mm256_storeu_si256((__m256i *)(ql + 64 * h + 32), lo1);
        _mm256_storeu_si256((__m256i *)(qh + 32 * h), hi);
    }
}

int dsq__q6_pack_avx2(const uint8_t *L, uint8_t *ql, uint8_t *qh) {
    if (!use_avx2())
        return 0;
    q6_pack(L, ql, qh);
    return 1;
}

/* Q4_K: L[0..255] levels 0..15 to qs[128]: qs[32c + l] = L[64c + l] |
 * L[64c + 32 + l] << 4 */
AVX2 static void q4_pack(const uint8_t *L, uint8_t *qs) {
    for (int c = 0; c < 4; ++c) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(L + 64 * c));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(L + 64 * c + 32));
        _mm256_storeu_si256((__m256i *)(qs + 32 * c), _mm256_or_si256(a, _mm256_slli_epi16(b, 4)));
    }
}

int dsq__q4_pack_avx2(const uint8_t *L, uint8_t *qs) {
    if (!use_avx2())
        return 0;
    q4_pack(L, qs);
    return 1;
}

#else /* not x86-64 with GCC/Clang: scalar only */

int dsq__qkx_simd(int n, int use_mad, const float *x, const float *w, int nsub, int nmax,
                  float rmin, float rdelta, int nstep, uint8_t *L, float *scales,
                  float *the_mins) {
    (void)n, (void)use_mad, (void)x, (void)w, (void)nsub, (void)nmax, (void)rmin, (void)rdelta;
    (void)nstep, (void)L, (void)scales, (void)the_mins;
    return 0;
}

int dsq__qx_simd(const float *x, const float *qw, int nsb, int nmax, int8_t *L, float *scales) {
    (void)x, (void)qw, (void)nsb, (void)nmax, (void)L, (void)scales;
    return 0;
}

int dsq__q6_pack_avx2(const uint8_t *L, uint8_t *ql, uint8_t *qh) {
    (void)L, (void)ql, (void)qh;
    return 0;
}

int dsq__q4_pack_avx2(const uint8_t *L, uint8_t *qs) {
    (void)L, (void)qs;
    return 0;
}

int dsq__requant_avx2(const float *x, int sub, int nsub, const float *d, const float *dm, int lo,
                      int hi, int off, uint8_t *L) {
    (void)x, (void)sub, (void)nsub, (void)d, (void)dm, (void)lo, (void)hi, (void)off, (void)L;
    return 0;
}

#endif
