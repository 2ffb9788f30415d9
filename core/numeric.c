/* core/numeric.c: the conversions of numeric.h, written from the bit layouts. */
#include "core/numeric.h"

#include <math.h>

#include "core/le.h"

static void bf16_row_c(const uint8_t *in, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = dsq_bf16_to_f32(dsq_le_u16(in + 2 * i));
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

__attribute__((target("avx2"))) static void bf16_row_avx2(const uint8_t *in, float *out,
                                                          int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(in + 2 * i));
        _mm256_storeu_si256((__m256i *)(void *)(out + i),
                            _mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    }
    bf16_row_c(in + 2 * i, out + i, n - i); /* static, so inlined: vzeroupper stays */
}

void dsq_bf16_row_to_f32(const uint8_t *in, float *out, int64_t n) {
    if (__builtin_cpu_supports("avx2"))
        bf16_row_avx2(in, out, n);
    else
        bf16_row_c(in, out, n);
}
#else
void dsq_bf16_row_to_f32(const uint8_t *in, float *out, int64_t n) {
    bf16_row_c(in, out, n);
}
#endif

float dsq_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;
    if (exp == 0x1f)
        return dsq_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in F32 */
        const float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return dsq_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t dsq_f32_to_f16(float f) {
    const uint32_t u = dsq_f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
    if (abs >= 0x47800000u) /* >= 65536: above the rounding range of 65504 */
        return (uint16_t)(sign | 0x7c00u);
    if (abs < 0x38800000u) {
        /* result is subnormal (or zero): units of 2^-24, rounded to even */
        if (abs < 0x33000000u) /* < 2^-25: rounds to zero */
            return sign;
        const uint32_t e = abs >> 23;
        const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e; /* value = m * 2^(e-150); want units of 2^-24 */
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias 127 -> 15, keep 10 mantissa bits, RNE on the other 13;
     * a carry into the exponent is the correct rounding up (to inf as well). */
    uint32_t r = abs - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

float dsq_fp8_e4m3_to_f32(uint8_t v) {
    const int s = v >> 7, e = (v >> 3) & 0xf, m = v & 7;
    float r;
    if (e == 0xf && m == 7)
        return s ? -NAN : NAN; /* the sign survives, as in PyTorch's decoder */
    if (e == 0)
        r = ldexpf((float)m, -9);
    else
        r = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return s ? -r : r;
}

float dsq_fp8_e5m2_to_f32(uint8_t v) {
    const int s = v >> 7, e = (v >> 2) & 0x1f, m = v & 3;
    float r;
    if (e == 0x1f)
        r = m ? NAN : INFINITY;
    else if (e == 0)
        r = ldexpf((float)m, -16);
    else
        r = ldexpf(1.0f + (float)m / 4.0f, e - 15);
    return s ? -r : r;
}
