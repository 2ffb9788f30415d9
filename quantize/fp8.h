/* quantize/fp8.h: FP8 x block scale -> BF16 for one run of a row.
 *
 * The arithmetic is DeepSeek's weight_dequant: the FP8 value (exact in F32)
 * times the block's scale, rounded once to F32, then to BF16 with round to
 * nearest even. For a fixed scale that is a function of the 8-bit code alone,
 * so each block gets a 256-entry table and every element is one lookup. The
 * lookup has a portable loop and an AVX-512BW one (selected at run time,
 * never required) that give the same bits by construction.
 *
 * `dsq quantize` needs the weights as F32 rows: dsq__fp8_decode gives the
 * same value as that table widened back to F32 (round_bf16, the default:
 * what a quantizer fed the BF16 cast sees), or the F32 product itself
 * (--fp8-f32), from a 256-entry decode table, with a portable loop and an
 * AVX2 one that multiply the same two F32 operands and round the same way. */
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

/* out[i] = dec[in[i]] * scale, each product rounded once to F32, then when
 * round_bf16 to BF16 (nearest even, NaN kept quiet: dsq_f32_to_bf16) and
 * widened back */
void dsq__fp8_decode(const uint8_t *in, float *out, int64_t n, const float dec[256], float scale,
                     int round_bf16);
/* 1 when this CPU can run dsq__fp8_decode_simd */
int dsq__fp8_decode_simd_available(void);
/* The same, 8 elements per step with AVX2 (a gather from dec). */
void dsq__fp8_decode_simd(const uint8_t *in, float *out, int64_t n, const float dec[256],
                          float scale, int round_bf16);

#endif
