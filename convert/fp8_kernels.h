/* convert/fp8_kernels.h: FP8 x block scale -> BF16 for one run of a row.
 *
 * The arithmetic is DeepSeek's weight_dequant: the FP8 value (exact in F32)
 * times the block's scale, rounded once to F32, then to BF16 with round to
 * nearest even. For a fixed scale that is a function of the 8-bit code alone,
 * so each block gets a 256-entry table and every element is one lookup. The
 * lookup has a portable loop and an AVX-512BW one (selected at run time,
 * never required) that give the same bits by construction.
 *
 * `dsq quantize` needs the F32 product itself, before any rounding to BF16:
 * dsq__fp8_decode gives it from the same 256-entry decode table, with a
 * portable loop and an AVX2 one that multiply the same two F32 operands and
 * so round to the same bits. */
#ifndef DSQ_FP8_KERNELS_H
#define DSQ_FP8_KERNELS_H

#include <stdint.h>

/* lut[code] = bf16(dec[code] * scale) */
void dsq__fp8_build_lut(const float dec[256], float scale, uint16_t lut[256]);
/* out[i] = lut[in[i]] */
void dsq__fp8_apply_lut(const uint8_t *in, uint16_t *out, int64_t n, const uint16_t lut[256]);
/* 1 when this CPU can run dsq__fp8_apply_lut_simd */
int dsq__fp8_simd_available(void);
/* The same lookup, 32 elements per step with AVX-512BW. */
void dsq__fp8_apply_lut_simd(const uint8_t *in, uint16_t *out, int64_t n, const uint16_t lut[256]);

/* out[i] = dec[in[i]] * scale, each product rounded once to F32 */
void dsq__fp8_decode(const uint8_t *in, float *out, int64_t n, const float dec[256], float scale);
/* 1 when this CPU can run dsq__fp8_decode_simd */
int dsq__fp8_decode_simd_available(void);
/* The same, 8 elements per step with AVX2 (a gather from dec). */
void dsq__fp8_decode_simd(const uint8_t *in, float *out, int64_t n, const float dec[256],
                          float scale);

#endif
