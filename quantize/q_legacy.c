/* quantize/q_legacy.c: GGUF legacy 32-element blocks Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0 (specs/formats.md §2.6), byte-identical to ggml's quantize_q*_* with
 * and without an importance matrix.
 *
 * Byte layout of one block (32 elements x[0..31], all little-endian):
 *
 *   Q4_0 (18 B)  [0..1]  d   fp16 scale          y = d * (q - 8),  q in 0..15
 *                [2..17] qs  qs[j] = q[j] | q[j+16] << 4   (j = 0..15; the
 *                            two halves of the block share a byte, NOT
 *                            neighbouring elements)
 *   Q4_1 (20 B)  [0..1] d, [2..3] m (fp16 min), [4..19] qs as Q4_0;
 *                y = d * q + m
 *   Q5_0 (22 B)  [0..1] d, [2..5] qh, [6..21] qs: low 4 bits of q as Q4_0;
 *                qh read as a u32 LE: bit j = bit 4 of q[j] (j = 0..31);
 *                y = d * (q - 16), q in 0..31
 *   Q5_1 (24 B)  [0..1] d, [2..3] m, [4..7] qh, [8..23] qs; y = d * q + m
 *   Q8_0 (34 B)  [0..1] d, [2..33] qs int8;     y = d * qs
 *
 * Without imatrix these are ggml's quantize_row_*_ref. The 4/5-bit ones
 * round by truncation, `(int8_t)(x*id + 8.5f)`, and that is the known trap:
 * in ggml the product and the sum are two float roundings. ggml-quants.c is
 * part of libggml-base, which ggml's CMake builds without -march flags even
 * with GGML_NATIVE=ON (only the ggml-cpu backend gets them), so on x86-64
 * there is no FMA instruction to fuse them into; the oracle vectors
 * (GGML_NATIVE=OFF) agree. A compiler that fuses them into one fmaf()
 * rounds once, and the truncation changes whenever x*id + 8.5 falls within
 * half an ulp of an integer. Measured here on 10^6 blocks: with continuous
 * gaussian input that is 1 block in ~300 000, but with BF16-origin weights
 * (8 significant bits, so x*id is often a short binary fraction) it is 1
 * block in ~240: any real checkpoint would differ. The Makefile's
 * -ffp-contract=off is what keeps our two roundings; built with
 * -ffp-contract=fast -mfma instead, Q4_0 without imatrix still matched the
 * random-512 vectors by luck, while 15 of the 25 type/imatrix cases (every
 * imatrix path, and Q2_K/Q4_K/Q5_K/Q6_K without) differed in 2..34 of the
 * 64 rows. test_quant checks against ggml's bytes.
 *
 * With an imatrix (quantize_row_*_impl): per-element error weights
 * w = imatrix * sqrt(sigma2 + x^2) with sigma2 = mean of x^2 over the WHOLE
 * row, then make_qx_quants (Q4_0, Q5_0) or make_qkx3_quants (Q4_1, Q5_1).
 * Q8_0 has no imatrix path in ggml: quantize_q8_0 ignores it. */
#include "quantize/q_blocks.h"

#include <float.h>
#include <math.h>

#include "core/le.h"

/* sigma^2 of the imatrix weights: the mean square over the whole row, summed
 * in order in float as ggml does */
static float row_sigma2(const float *x, int64_t n) {
    float sum_x2 = 0.0f;
    for (int64_t j = 0; j < n; ++j)
        sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

static void imatrix_weights(const float *xb, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < DSQ_QK_LEGACY; ++j)
        w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/* the element with the largest |x|, keeping its sign; the first one wins a tie */
static float signed_absmax(const float *xb) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < DSQ_QK_LEGACY; ++j) {
        const float v = xb[j];
        if (amax < fabsf(v)) {
            amax = fabsf(v);
            max = v;
        }
    }
    return max;
}

static void min_max(const float *xb, float *mn, float *mx) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < DSQ_QK_LEGACY; ++j) {
        const float v = xb[j];
        if (v < min)
            min = v;
        if (v > max)
            max = v;
    }
    *mn = min;
    *mx = max;
}

/* ============================== Q4_0 ====================================== */

void dsq__q4_0_ref_scalar(const float *x, void *dst, int64_t nb) {
    dsq_block_q4_0 *y = dst;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * DSQ_QK_LEGACY;
        /* d is negative when the extreme element is positive, so that the
         * extreme maps to q = 0 (-8), the extra level of the -8..7 range */
        const float d = signed_absmax(xb) / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dsq__put_f16(y[i].d, d); /* quantizes with the unrounded d, as ggml */
        for (int j = 0; j < 16; ++j) {
            const float x0 = xb[j] * id;
            const float x1 = xb[j + 16] * id;
            const int q0 = (int8_t)(x0 + 8.5f); /* truncation: see the file comment */
            const int q1 = (int8_t)(x1 + 8.5f);
            y[i].qs[j] = (uint8_t)((q0 < 15 ? q0 : 15) | (q1 < 15 ? q1 : 15) << 4);
        }
    }
}

void dsq__quantize_q4_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q4_0 *y = dst;
    const int64_t nb = n / DSQ_QK_LEGACY;
    if (imatrix == NULL) {
        if (!dsq__q4_0_ref_avx2(x, y, nb))
            dsq__q4_0_ref_scalar(x, y, nb);
        return;
    }
    const float sigma2 = row_sigma2(x, n);
    float w[DSQ_QK_LEGACY];
    int8_t L[DSQ_QK_LEGACY];
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float *xb = x + ib * DSQ_QK_LEGACY;
        imatrix_weights(xb, imatrix + ib * DSQ_QK_LEGACY, sigma2, w);
        const float d = dsq__make_qx_quants(DSQ_QK_LEGACY, 8, xb, L, w);
        dsq__put_f16(y[ib].d, d);
        for (int j = 0; j < 16; ++j)
            y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

void dsq__dequantize_q4_0(const void *src, float *y, int64_t n) {
    const dsq_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_LEGACY; i++, y += DSQ_QK_LEGACY) {
        const float d = dsq__get_f16(b[i].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = (float)((b[i].qs[j] & 0x0F) - 8) * d;
            y[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ============================== Q4_1 ====================================== */

static void q4_1_ref(const float *x, dsq_block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * DSQ_QK_LEGACY;
        float min, max;
        min_max(xb, &min, &max);
        const float d = (max - min) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dsq__put_f16(y[i].d, d);
        dsq__put_f16(y[i].m, min);
        for (int j = 0; j < 16; ++j) {
            const float x0 = (xb[j] - min) * id;
            const float x1 = (xb[j + 16] - min) * id;
            const int q0 = (int8_t)(x0 + 0.5f);
            const int q1 = (int8_t)(x1 + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 < 15 ? q0 : 15) | (q1 < 15 ? q1 : 15) << 4);
        }
    }
}

void dsq__quantize_q4_1(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q4_1 *y = dst;
    const int64_t nb = n / DSQ_QK_LEGACY;
    if (imatrix == NULL) {
        q4_1_ref(x, y, nb);
        return;
    }
    const float sigma2 = row_sigma2(x, n);
    float w[DSQ_QK_LEGACY];
    uint8_t L[DSQ_QK_LEGACY], Laux[DSQ_QK_LEGACY];
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float *xb = x + ib * DSQ_QK_LEGACY;
        imatrix_weights(xb, imatrix + ib * DSQ_QK_LEGACY, sigma2, w);
        float the_min;
        const float d =
            dsq__make_qkx_quants(DSQ_QK_LEGACY, 15, xb, w, L, &the_min, Laux, -0.9f, 0.05f, 36, 0);
        dsq__put_f16(y[ib].d, d);
        dsq__put_f16(y[ib].m, -the_min);
        for (int j = 0; j < 16; ++j)
            y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

void dsq__dequantize_q4_1(const void *src, float *y, int64_t n) {
    const dsq_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_LEGACY; i++, y += DSQ_QK_LEGACY) {
        const float d = dsq__get_f16(b[i].d);
        const float m = dsq__get_f16(b[i].m);
        for (int j = 0; j < 16; ++j) {
            y[j] = (float)(b[i].qs[j] & 0x0F) * d + m;
            y[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

/* ============================== Q5_0 / Q5_1 =============================== */

/* low nibbles to qs, bit 4 of element j to bit j of the little-endian qh */
static void pack5(const uint8_t q[DSQ_QK_LEGACY], uint8_t qh[4], uint8_t qs[16]) {
    uint32_t h = 0;
    for (int j = 0; j < 16; ++j) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | (q[j + 16] & 0x0F) << 4);
        h |= (uint32_t)((q[j] & 0x10u) >> 4) << j;
        h |= (uint32_t)((q[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    dsq_le_put_u32(qh, h);
}

static void unpack5(const uint8_t qh[4], const uint8_t qs[16], int q[DSQ_QK_LEGACY]) {
    const uint32_t h = dsq_le_u32(qh);
    for (int j = 0; j < 16; ++j) {
        q[j] = (qs[j] & 0x0F) | (int)((h >> j) << 4 & 0x10);
        q[j + 16] = (qs[j] >> 4) | (int)((h >> (j + 12)) & 0x10);
    }
}

void dsq__quantize_q5_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q5_0 *y = dst;
    const int64_t nb = n / DSQ_QK_LEGACY;
    uint8_t q[DSQ_QK_LEGACY];
    if (imatrix == NULL) {
        for (int64_t i = 0; i < nb; i++) {
            const float *xb = x + i * DSQ_QK_LEGACY;
            const float d = signed_absmax(xb) / -16.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            dsq__put_f16(y[i].d, d);
            for (int j = 0; j < DSQ_QK_LEGACY; ++j) {
                const int l = (int8_t)(xb[j] * id + 16.5f);
                q[j] = (uint8_t)(l < 31 ? l : 31);
            }
            pack5(q, y[i].qh, y[i].qs);
        }
        return;
    }
    const float sigma2 = row_sigma2(x, n);
    float w[DSQ_QK_LEGACY];
    int8_t L[DSQ_QK_LEGACY];
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float *xb = x + ib * DSQ_QK_LEGACY;
        imatrix_weights(xb, imatrix + ib * DSQ_QK_LEGACY, sigma2, w);
        const float d = dsq__make_qx_quants(DSQ_QK_LEGACY, 16, xb, L, w);
        dsq__put_f16(y[ib].d, d);
        for (int j = 0; j < DSQ_QK_LEGACY; ++j)
            q[j] = (uint8_t)L[j];
        pack5(q, y[ib].qh, y[ib].qs);
    }
}

void dsq__dequantize_q5_0(const void *src, float *y, int64_t n) {
    const dsq_block_q5_0 *b = src;
    int q[DSQ_QK_LEGACY];
    for (int64_t i = 0; i < n / DSQ_QK_LEGACY; i++, y += DSQ_QK_LEGACY) {
        const float d = dsq__get_f16(b[i].d);
        unpack5(b[i].qh, b[i].qs, q);
        for (int j = 0; j < DSQ_QK_LEGACY; ++j)
            y[j] = (float)(q[j] - 16) * d;
    }
}

void dsq__quantize_q5_1(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q5_1 *y = dst;
    const int64_t nb = n / DSQ_QK_LEGACY;
    uint8_t q[DSQ_QK_LEGACY];
    if (imatrix == NULL) {
        for (int64_t i = 0; i < nb; i++) {
            const float *xb = x + i * DSQ_QK_LEGACY;
            float min, max;
            min_max(xb, &min, &max);
            const float d = (max - min) / 31.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            dsq__put_f16(y[i].d, d);
            dsq__put_f16(y[i].m, min);
            /* ggml has no clamp here: (x - min)*id + 0.5 <= 31.5 */
            for (int j = 0; j < DSQ_QK_LEGACY; ++j)
                q[j] = (uint8_t)((xb[j] - min) * id + 0.5f);
            pack5(q, y[i].qh, y[i].qs);
        }
        return;
    }
    const float sigma2 = row_sigma2(x, n);
    float w[DSQ_QK_LEGACY];
    uint8_t Laux[DSQ_QK_LEGACY];
    for (int64_t ib = 0; ib < nb; ++ib) {
        const float *xb = x + ib * DSQ_QK_LEGACY;
        imatrix_weights(xb, imatrix + ib * DSQ_QK_LEGACY, sigma2, w);
        float the_min;
        const float d =
            dsq__make_qkx_quants(DSQ_QK_LEGACY, 31, xb, w, q, &the_min, Laux, -0.9f, 0.05f, 36, 0);
        dsq__put_f16(y[ib].d, d);
        dsq__put_f16(y[ib].m, -the_min);
        pack5(q, y[ib].qh, y[ib].qs);
    }
}

void dsq__dequantize_q5_1(const void *src, float *y, int64_t n) {
    const dsq_block_q5_1 *b = src;
    int q[DSQ_QK_LEGACY];
    for (int64_t i = 0; i < n / DSQ_QK_LEGACY; i++, y += DSQ_QK_LEGACY) {
        const float d = dsq__get_f16(b[i].d);
        const float m = dsq__get_f16(b[i].m);
        unpack5(b[i].qh, b[i].qs, q);
        for (int j = 0; j < DSQ_QK_LEGACY; ++j)
            y[j] = (float)q[j] * d + m;
    }
}

/* ============================== Q8_0 ====================================== */

void dsq__q8_0_ref_scalar(const float *x, void *dst, int64_t nb) {
    dsq_block_q8_0 *y = dst;
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * DSQ_QK_LEGACY;
        float amax = 0.0f;
        for (int j = 0; j < DSQ_QK_LEGACY; j++) {
            const float a = fabsf(xb[j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        dsq__put_f16(y[i].d, d);
        /* roundf: half away from zero, unlike the K-quants' nearest_int */
        for (int j = 0; j < DSQ_QK_LEGACY; ++j)
            y[i].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

void dsq__quantize_q8_0(const float *x, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's quantize_q8_0 ignores it too */
    if (!dsq__q8_0_ref_avx2(x, dst, n / DSQ_QK_LEGACY))
        dsq__q8_0_ref_scalar(x, dst, n / DSQ_QK_LEGACY);
}

void dsq__dequantize_q8_0(const void *src, float *y, int64_t n) {
    const dsq_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_LEGACY; i++, y += DSQ_QK_LEGACY) {
        const float d = dsq__get_f16(b[i].d);
        for (int j = 0; j < DSQ_QK_LEGACY; ++j)
            y[j] = (float)b[i].qs[j] * d;
    }
}
