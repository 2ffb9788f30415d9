/* quantize/fp8.h: FP8 once. Everything dsq knows about DeepSeek-style FP8
 * weights (F8_E4M3 / F8_E5M2 codes with one F32 `<name>_scale_inv` per
 * Bm x Bn block) lives here: the decode tables, the check every reader applies to a
 * scale (dsq_fp8_check_scale), the row dequantizers (to F32 for the
 * quantizers and the forward pass, to BF16 through per-block tables for
 * `dsq convert`) and their SIMD kernels. Readers (weights/source_hf.c,
 * convert/fp8_bf16.c) call these; none has its own copy. The block size is a
 * config.json member, read with the rest of the model description
 * (model/model_desc.h dsq_model_desc_fp8_block).
 *
 * FP8 x block scale -> BF16 for one run of a row:
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

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor.h"

/* quantization_config.weight_block_size when config.json does not say */
#define DSQ_FP8_DEFAULT_BLOCK 128

/* 1 for F8_E4M3 and F8_E5M2 */
int dsq_fp8_is_fp8(dsq_dtype t);

/* The check of a FP8 weight w's block scale s, the same for every reader: w 2-D, s F32 of
 * shape [ceil(M/bm), ceil(N/bn)], every value finite (s->data holds its little-endian
 * bytes). `where` (the file holding s, may be NULL) prefixes the message, which names the
 * tensor. @return DSQ_OK; DSQ_FORMAT (dimensions, shape, NaN or infinite value);
 * DSQ_UNSUPPORTED (a scale that is not F32). */
dsq_status dsq_fp8_check_scale(const char *where, const dsq_tensor_view *w,
                               const dsq_tensor_view *s, int64_t bm, int64_t bn, dsq_err *err);

/* A FP8 type's decode table and the row decoder chosen for this CPU (the portable loop or
 * its AVX2 twin: the same bits). Read-only after init, shared by threads. */
typedef struct dsq_fp8_decoder {
    float dec[256];
    int round_bf16; /* the product rounded to BF16 (DeepSeek's cast), else kept in F32 */
    void (*decode)(const uint8_t *in, float *out, int64_t n, const float dec[256], float scale,
                   int round_bf16);
} dsq_fp8_decoder;

void dsq_fp8_decoder_init(dsq_fp8_decoder *d, dsq_dtype t, int round_bf16);
/* The decode table of t (F8_E4M3 or F8_E5M2). */
void dsq_fp8_table(dsq_dtype t, float dec[256]);

/* One row of a FP8 weight as F32: q[cols] codes, scales the ceil(cols/bn) little-endian
 * F32 scales of the row's block row. */
void dsq_fp8_row_f32(const dsq_fp8_decoder *d, const uint8_t *q, const uint8_t *scales,
                     int64_t cols, int64_t bn, float *out);
/* The tables of one block row: luts[k*256 + code] = bf16(dec[code] * scale k) for the
 * ncb little-endian F32 scales. */
void dsq_fp8_build_luts(const float dec[256], const uint8_t *scales, int64_t ncb,
                        uint16_t *luts);
/* One row as BF16 through its block row's tables (simd: dsq__fp8_apply_lut_simd, which
 * needs dsq__fp8_simd_available()). */
void dsq_fp8_row_bf16(const uint8_t *q, uint16_t *out, int64_t cols, int64_t bn,
                      const uint16_t *luts, int simd);

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
