/* quantize/q_simd_x86.h: an AVX2 helper shared by the AVX2 and AVX-512
 * kernel files (an avx512f function may call it: AVX-512F implies AVX2). */
#ifndef DSQ_Q_SIMD_X86_H
#define DSQ_Q_SIMD_X86_H

#include <immintrin.h>

/* out[c] = (r0[c], r1[c], ..., r7[c]) for rows r_k = p + k*stride */
__attribute__((target("avx2"))) static inline void transpose8(const float *p, int stride, __m256 *out) {
    const __m256 r0 = _mm256_loadu_ps(p + 0 * stride), r1 = _mm256_loadu_ps(p + 1 * stride);
    const __m256 r2 = _mm256_loadu_ps(p + 2 * stride), r3 = _mm256_loadu_ps(p + 3 * stride);
    const __m256 r4 = _mm256_loadu_ps(p + 4 * stride), r5 = _mm256_loadu_ps(p + 5 * stride);
    const __m256 r6 = _mm256_loadu_ps(p + 6 * stride), r7 = _mm256_loadu_ps(p + 7 * stride);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    out[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    out[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    out[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    out[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    out[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    out[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    out[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    out[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

#endif
