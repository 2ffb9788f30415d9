/* quantize/q_iq4.c: GGUF non-linear 4-bit types IQ4_NL and IQ4_XS
 * (specs/formats.md §2.9), byte-identical to ggml's quantize_iq4_nl and
 * quantize_iq4_xs (what ggml_quantize_chunk calls, with or without imatrix).
 *
 * Both index the fixed 16-entry table kvalues_iq4nl instead of a linear grid.
 *
 *   IQ4_NL (18 B / 32)   [0..1] d fp16, [2..17] qs[j] = q[j] | q[j+16] << 4
 *                        y = d * kvalues[q]
 *   IQ4_XS (136 B / 256) [0..1] d fp16, [2..3] scales_h (u16 LE),
 *                        [4..7] scales_l, [8..135] qs: sub-block ib (32
 *                        elements) at qs[16ib..16ib+15], nibbles as IQ4_NL.
 *                        6-bit ls_ib = (scales_l[ib/2] >> 4*(ib%2) & 15)
 *                                    | (scales_h >> 2*ib & 3) << 4
 *                        y = d * (ls_ib - 32) * kvalues[q]
 *
 * Both go through one search (ggml's quantize_row_iq4_nl_impl with
 * ntry = 7): per 32-element block, weights imatrix*sqrt(sigma2 + x^2) with
 * sigma2 = 2*mean(x^2) over the super-block, or x^2 without imatrix; start at
 * d = -max/kvalues[0], then try 15 inverse scales (itry + kvalues[0])/max and
 * keep the best weighted least-squares fit. IQ4_NL then re-indexes with
 * 1/d; IQ4_XS quantizes the 8 block scales to 6 bits first. (ggml's
 * quantize_row_iq4_nl_ref uses ntry = -1, but it is not the path
 * ggml_quantize_chunk / llama-quantize take, so we do not offer it.) */
#include "quantize/q_blocks.h"

#include <math.h>

static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};

#define NTRY 7

/* nearest table index by bisection; exact midpoints go to the upper entry
 * (ggml's best_index_int8: the lower one only if strictly closer) */
static int best_index(float x) {
    const int8_t *val = kvalues_iq4nl;
    if (x <= (float)val[0])
        return 0;
    if (x >= (float)val[15])
        return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < (float)val[mav])
            mu = mav;
        else
            ml = mav;
    }
    return x - (float)val[mu - 1] < (float)val[mu] - x ? mu - 1 : mu;
}

static float super_sigma2(const float *x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; ++j)
        s += x[j] * x[j];
    s *= 2.0f / (float)n;
    return s;
}

/* Best scale for one 32-element block (0 for an all-zero block), writing
 * provisional indices to L. */
static float block_scale(const float *xb, const float *qw, float sigma2, uint8_t *L) {
    float w[32];
    for (int j = 0; j < 32; ++j)
        w[j] = qw ? qw[j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < DSQ_GROUP_MAX_EPS)
        return 0.0f; /* L left as is: ggml leaves it too, and re-indexes later */
    const float v0 = (float)kvalues_iq4nl[0];
    float d = -max / v0;
    float id = 1.0f / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < 32; ++j) {
        const int l = best_index(id * xb[j]);
        L[j] = (uint8_t)l;
        const float q = (float)kvalues_iq4nl[l];
        sumqx += w[j] * q * xb[j];
        sumq2 += w[j] * q * q;
    }
    d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -NTRY; itry <= NTRY; ++itry) {
        id = (float)(itry + kvalues_iq4nl[0]) / max;
        sumqx = sumq2 = 0.0f;
        for (int j = 0; j < 32; ++j) {
            const float q = (float)kvalues_iq4nl[best_index(id * xb[j])];
            sumqx += w[j] * q * xb[j];
            sumq2 += w[j] * q * q;
        }
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

static void pack_nibbles(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; ++j)
        qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
}

void dsq__quantize_iq4_nl(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_iq4_nl *y = dst;
    uint8_t L[32];
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        const float *xb = x + 32 * ib;
        /* sigma2 here is over the 32-block: for IQ4_NL the "super-block" of
         * ggml's shared search is the block itself */
        const float d =
            block_scale(xb, imatrix ? imatrix + 32 * ib : NULL, super_sigma2(xb, 32), L);
        dsq__put_f16(y[ib].d, d);
        /* re-index with the final (unrounded) scale */
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j)
            L[j] = (uint8_t)best_index(id * xb[j]);
        pack_nibbles(L, y[ib].qs);
    }
}

void dsq__dequantize_iq4_nl(const void *src, float *y, int64_t n) {
    const dsq_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / 32; ++i, y += 32) {
        const float d = dsq__get_f16(b[i].d);
        for (int j = 0; j < 16; ++j) {
            y[j] = d * (float)kvalues_iq4nl[b[i].qs[j] & 0xF];
            y[j + 16] = d * (float)kvalues_iq4nl[b[i].qs[j] >> 4];
        }
    }
}

void dsq__quantize_iq4_xs(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_iq4_xs *y = dst;
    uint8_t L[DSQ_QK_K];
    float scales[8];
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i, x += DSQ_QK_K) {
        const float *qw = imatrix ? imatrix + i * DSQ_QK_K : NULL;
        const float sigma2 = super_sigma2(x, DSQ_QK_K);
        float max_scale = 0.0f, amax_scale = 0.0f;
        for (int ib = 0; ib < 8; ++ib) {
            scales[ib] = block_scale(x + 32 * ib, qw ? qw + 32 * ib : NULL, sigma2, L + 32 * ib);
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        /* 6-bit signed block scales around one fp16 d; d is negative when the
         * largest block scale is positive, mapping it to level -32. With all
         * blocks zero, d is -0.0f and ggml stores fp16 0x8000: so do we. */
        const float d = -max_scale / 32.0f;
        dsq__put_f16(y[i].d, d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t sh = 0;
        memset(y[i].scales_l, 0, sizeof y[i].scales_l);
        for (int ib = 0; ib < 8; ++ib) {
            const int l0 = dsq__nearest_int(id * scales[ib]);
            const int l = l0 < -32 ? -32 : l0 > 31 ? 31 : l0;
            const float dl = d * (float)l;
            const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 32; ++j)
                L[32 * ib + j] = (uint8_t)best_index(idl * x[32 * ib + j]);
            const int u = l + 32;
            y[i].scales_l[ib / 2] = (uint8_t)(y[i].scales_l[ib / 2] | (u & 0xF) << (4 * (ib % 2)));
            sh = (uint16_t)(sh | (u >> 4) << (2 * ib));
        }
        y[i].scales_h[0] = (uint8_t)(sh & 0xff);
        y[i].scales_h[1] = (uint8_t)(sh >> 8);
        for (int ib = 0; ib < 8; ++ib)
            pack_nibbles(L + 32 * ib, y[i].qs + 16 * ib);
    }
}

void dsq__dequantize_iq4_xs(const void *src, float *y, int64_t n) {
    const dsq_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i) {
        const float d = dsq__get_f16(b[i].d);
        const int sh = b[i].scales_h[0] | b[i].scales_h[1] << 8;
        for (int ib = 0; ib < 8; ++ib, y += 32) {
            const int ls =
                ((b[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((sh >> (2 * ib)) & 3) << 4;
            const float dl = d * (float)(ls - 32);
            const uint8_t *qs = b[i].qs + 16 * ib;
            for (int j = 0; j < 16; ++j) {
                y[j] = dl * (float)kvalues_iq4nl[qs[j] & 0xF];
                y[j + 16] = dl * (float)kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}
