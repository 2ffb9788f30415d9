/* convert/fp8_kernels.c: see fp8_kernels.h. */
#include "convert/fp8_kernels.h"

#include "core/numeric.h"

void dsq__fp8_build_lut(const float dec[256], float scale, uint16_t lut[256]) {
    for (int code = 0; code < 256; code++)
        lut[code] = dsq_f32_to_bf16(dec[code] * scale);
}

void dsq__fp8_apply_lut(const uint8_t *in, uint16_t *out, int64_t n, const uint16_t lut[256]) {
    for (int64_t i = 0; i < n; i++)
        out[i] = lut[in[i]];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

int dsq__fp8_simd_available(void) {
    return __builtin_cpu_supports("avx2");
}

/* Eight codes. Normal E4M3 values get their F32 bits by rebiasing the exponent
 * in the integer domain (bias 7 -> 127); subnormals (exponent field 0) are
 * m * 2^-9, made by an exact int->float conversion. No denormal F32 is ever an
 * operand: on x86 each one costs a microcode assist of ~100 cycles, which made
 * an earlier version that scaled denormals by 2^120 ten times slower than the
 * table path. */
static inline __attribute__((target("avx2"), always_inline)) __m256i e4m3x8_to_bf16(__m256i x, __m256 scale) {
    const __m256i m7f = _mm256_set1_epi32(0x7f), m80 = _mm256_set1_epi32(0x80);
    const __m256i mag = _mm256_and_si256(x, m7f);
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(x, m80), 24);
    const __m256 normal = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23)));
    const __m256 subnormal = _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_and_si256(x, _mm256_set1_epi32(7))), _mm256_set1_ps(0x1p-9f));
    const __m256i is_sub =
        _mm256_cmpeq_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x78)), _mm256_setzero_si256());
    __m256 f = _mm256_blendv_ps(normal, subnormal, _mm256_castsi256_ps(is_sub));
    f = _mm256_or_ps(f, _mm256_castsi256_ps(sign));
    const __m256i u = _mm256_castps_si256(_mm256_mul_ps(f, scale));
    /* round to nearest even: add 0x7fff plus the lowest kept bit, keep the top half */
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    /* S.1111.111 is NaN: the scalar path yields the quiet NaN with that sign */
    const __m256i nan = _mm256_or_si256(_mm256_set1_epi32(0x7fc0), _mm256_srli_epi32(sign, 16));
    return _mm256_blendv_epi8(r, nan, _mm256_cmpeq_epi32(mag, m7f));
}

__attribute__((target("avx2"))) void dsq__fp8_e4m3_row_simd(const uint8_t *in, uint16_t *out,
                                                              int64_t n, float scale) {
    const __m256 s = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        const __m256i lo = e4m3x8_to_bf16(_mm256_cvtepu8_epi32(b), s);
        const __m256i hi = e4m3x8_to_bf16(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), s);
        /* packus works within 128-bit lanes: restore element order */
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xd8);
        _mm256_storeu_si256((__m256i *)(void *)(out + i), packed);
    }
    for (; i < n; i++)
        out[i] = dsq_f32_to_bf16(dsq_fp8_e4m3_to_f32(in[i]) * scale);
}
#else
int dsq__fp8_simd_available(void) {
    return 0;
}

void dsq__fp8_e4m3_row_simd(const uint8_t *in, uint16_t *out, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++)
        out[i] = dsq_f32_to_bf16(dsq_fp8_e4m3_to_f32(in[i]) * scale);
}
#endif
