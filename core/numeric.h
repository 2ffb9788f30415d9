/* core/numeric.h: scalar conversions between F32 and the narrow float types.
 *
 * These are the definitions the rest of dsq is checked against: BF16 and F16
 * with IEEE round-to-nearest-even (ggml's ggml_compute_fp32_to_bf16 and
 * ggml_compute_fp32_to_fp16 behave the same; specs/formats.md §2.4), and the
 * OCP FP8 decodings of §7.3. */
#ifndef DSQ_NUMERIC_H
#define DSQ_NUMERIC_H

#include <stdint.h>
#include <string.h>

static inline uint32_t dsq_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float dsq_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float dsq_bf16_to_f32(uint16_t h) {
    return dsq_bits_f32((uint32_t)h << 16);
}

/* Round to nearest even; NaN stays NaN (quiet bit forced, as ggml does). */
static inline uint16_t dsq_f32_to_bf16(float f) {
    const uint32_t u = dsq_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* n little-endian BF16 values to F32 (exact: the 16 bits moved up), 8 at a
 * time with AVX2 when the CPU has it; the same bits either way. */
void dsq_bf16_row_to_f32(const uint8_t *in, float *out, int64_t n);

float dsq_f16_to_f32(uint16_t h);
uint16_t dsq_f32_to_f16(float f); /* IEEE RNE, subnormals, overflow to inf */

/* F8_E4M3 (the "FN" variant): bias 7, no infinities, NaN at 0x7F/0xFF. */
float dsq_fp8_e4m3_to_f32(uint8_t v);
/* F8_E5M2: bias 15, IEEE-like with infinities and NaNs. */
float dsq_fp8_e5m2_to_f32(uint8_t v);

#endif
