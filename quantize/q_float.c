/* quantize/q_float.c: the plain element types F32, F16 and BF16 through the
 * same row API as the block types (ggml_quantize_chunk does the same).
 *
 * Layout: one element per "block", little-endian: F32 4 B, F16 2 B (IEEE
 * half), BF16 2 B (top half of the F32 bits). Conversions are core/numeric.h's
 * round-to-nearest-even ones, which match ggml's GGML_FP32_TO_FP16 and
 * ggml_compute_fp32_to_bf16 (specs/formats.md §2.4). An imatrix does not
 * apply to these types and is ignored. */
#include "quantize/q_blocks.h"

void dsq__quantize_f32(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; ++i) {
        dsq_le_put_u32(p + 4 * i, dsq_f32_bits(x[i]));
    }
}

void dsq__dequantize_f32(const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; ++i)
        y[i] = dsq_le_f32(p + 4 * i);
}

void dsq__quantize_f16(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; ++i)
        dsq__put_f16(p + 2 * i, x[i]);
}

void dsq__dequantize_f16(const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; ++i)
        y[i] = dsq__get_f16(p + 2 * i);
}

void dsq__quantize_bf16(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; ++i) {
        dsq_le_put_u16(p + 2 * i, dsq_f32_to_bf16(x[i]));
    }
}

void dsq__dequantize_bf16(const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; ++i)
        y[i] = dsq_bf16_to_f32(dsq_le_u16(p + 2 * i));
}
