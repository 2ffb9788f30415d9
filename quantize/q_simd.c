/* quantize/q_simd.c: AVX2 versions of the imatrix-free Q8_0 and Q4_0
 * quantizers, chosen at run time with __builtin_cpu_supports("avx2"), never
 * required. The block layouts are those of q_legacy.c / q_blocks.h:
 *   Q8_0 (34 B / 32): d fp16, qs[32] int8;     y = d * qs
 *   Q4_0 (18 B / 32): d fp16, qs[j] = q[j] | q[j+16] << 4; y = d * (q - 8)
 *
 * The bytes must equal the scalar reference (and so ggml's); the vector
 * code is built so that every lane performs the scalar code's IEEE
 * operations, no more and no fewer:
 *  - the block maximum of |x| is exact in any order (max does not round);
 *    Q4_0 then needs the FIRST element reaching it (its sign picks the sign
 *    of d), which a compare + movemask finds; an all-zero block keeps
 *    max = +0 as the scalar loop does, since a -0.0 element would otherwise
 *    flip the sign of d = max / -8 and the fp16 bits with it;
 *  - d, 1/d and the fp16 rounding stay scalar, once per block;
 *  - x*id and +8.5f are separate _mm256_mul_ps / _mm256_add_ps, never an
 *    FMA (the q_legacy.c comment explains why that matters), then
 *    truncation (cvttps) like the C cast;
 *  - Q8_0's roundf (half away from zero) is t = trunc(v) plus sign(v) when
 *    |v - t| >= 0.5; v - t is exact because it only drops the integer bits
 *    of v.
 * Inputs are finite (quant.c rejects NaN/inf before any kernel runs). */
#include "quantize/q_blocks.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

static int have_avx2(void) { return dsq__simd_disabled != 1 && __builtin_cpu_supports("avx2"); }

AVX2 static float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

AVX2 static void q8_0_avx2(const float *x, dsq_block_q8_0 *y, int64_t nb) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < nb; i++, x += DSQ_QK_LEGACY) {
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
        }
        const float d = hmax8(amax) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dsq__put_f16(y[i].d, d);
        const __m256 vid = _mm256_set1_ps(id);
        int32_t q[32];
        for (int k = 0; k < 4; k++) {
            const __m256 p = _mm256_mul_ps(v[k], vid);
            const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(p, t));
            const __m256 away = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ),
                                              _mm256_or_ps(one, _mm256_and_ps(sign, p)));
            _mm256_storeu_si256((__m256i *)(q + 8 * k),
                                _mm256_cvttps_epi32(_mm256_add_ps(t, away)));
        }
        for (int j = 0; j < 32; j++)
            y[i].qs[j] = (int8_t)q[j];
    }
}

AVX2 static void q4_0_avx2(const float *x, dsq_block_q4_0 *y, int64_t nb) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 c85 = _mm256_set1_ps(8.5f);
    const __m256i c15 = _mm256_set1_epi32(15);
    for (int64_t i = 0; i < nb; i++, x += DSQ_QK_LEGACY) {
        __m256 v[4], a[4];
        __m256 amaxv = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            a[k] = _mm256_andnot_ps(sign, v[k]);
            amaxv = _mm256_max_ps(amaxv, a[k]);
        }
        const float amax = hmax8(amaxv);
        float max = 0.0f;
        if (amax > 0.0f) {
            const __m256 m = _mm256_set1_ps(amax);
            for (int k = 0; k < 4; k++) {
                const int bits = _mm256_movemask_ps(_mm256_cmp_ps(a[k], m, _CMP_EQ_OQ));
                if (bits) {
                    max = x[8 * k + __builtin_ctz((unsigned)bits)];
                    break;
                }
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dsq__put_f16(y[i].d, d);
        const __m256 vid = _mm256_set1_ps(id);
        int32_t q[32];
        for (int k = 0; k < 4; k++) {
            const __m256 s = _mm256_add_ps(_mm256_mul_ps(v[k], vid), c85);
            _mm256_storeu_si256((__m256i *)(q + 8 * k),
                                _mm256_min_epi32(_mm256_cvttps_epi32(s), c15));
        }
        for (int j = 0; j < 16; j++)
            y[i].qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
    }
}

AVX2 static int all_finite_avx2(const float *x, int64_t n) {
    const __m256i expo = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i e = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), expo);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, expo));
    }
    int ok = _mm256_testz_si256(bad, bad);
    for (; i < n; ++i) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        ok &= (u & 0x7f800000u) != 0x7f800000u;
    }
    return ok;
}

/* all exponent bits set is inf or NaN */
int dsq__all_finite_avx2(const float *x, int64_t n) {
    if (!have_avx2())
        return -1;
    return all_finite_avx2(x, n);
}

int dsq__q8_0_ref_avx2(const float *x, void *dst, int64_t nb) {
    if (!have_avx2())
        return 0;
    q8_0_avx2(x, dst, nb);
    return 1;
}

int dsq__q4_0_ref_avx2(const float *x, void *dst, int64_t nb) {
    if (!have_avx2())
        return 0;
    q4_0_avx2(x, dst, nb);
    return 1;
}

#else /* not x86-64 with GCC/Clang: scalar only */

int dsq__all_finite_avx2(const float *x, int64_t n) {
    (void)x, (void)n;
    return -1;
}

int dsq__q8_0_ref_avx2(const float *x, void *dst, int64_t nb) {
    (void)x, (void)dst, (void)nb;
    return 0;
}

int dsq__q4_0_ref_avx2(const float *x, void *dst, int64_t nb) {
    (void)x, (void)dst, (void)nb;
    return 0;
}

#endif
