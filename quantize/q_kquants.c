/* quantize/q_kquants.c: GGUF K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
 * (specs/formats.md §2.8), byte-identical to ggml's quantize_q*_K.
 *
 * All work on super-blocks of 256 elements x[0..255]; fp16 fields are LE.
 *
 *   Q2_K (84 B)   [0..15] scales: sub-block j (16 elements) low nibble =
 *                          scale index, high nibble = min index
 *                 [16..79] qs: 2-bit q; for half h (128 elements) and
 *                          l = 0..31: qs[32h+l] = q[128h+l] | q[128h+l+32]<<2
 *                          | q[128h+l+64]<<4 | q[128h+l+96]<<6
 *                 [80..81] d, [82..83] dmin
 *                 y = d*sc_j*q - dmin*m_j
 *   Q3_K (110 B)  [0..31] hmask: bit 2 of q[e] in hmask[e%32] bit e/32
 *                 [32..95] qs: low 2 bits, packed as Q2_K
 *                 [96..107] scales: 16 six-bit values s+32: low nibble of
 *                          s_j in byte j (j<8) or high nibble of byte j-8
 *                          (j>=8); the top 2 bits in byte 8 + j%4 at bit
 *                          2*(j/4)
 *                 [108..109] d
 *                 y = d*(s_j-32)*((q&3) - (hmask bit ? 0 : 4))
 *   Q4_K (144 B)  [0..1] d, [2..3] dmin, [4..15] scales: 8 six-bit scales
 *                          and 8 six-bit mins (get_scale_min_k4 below)
 *                 [16..143] qs: for chunk c (64 elements), l = 0..31:
 *                          qs[32c+l] = q[64c+l] | q[64c+32+l] << 4
 *                 y = d*sc_j*q - dmin*m_j   (8 sub-blocks of 32)
 *   Q5_K (176 B)  as Q4_K plus [16..47] qh: bit 4 of q[64c+l] in qh[l] bit
 *                          2c, of q[64c+32+l] in qh[l] bit 2c+1; qs at 48
 *   Q6_K (210 B)  [0..127] ql, [128..191] qh, [192..207] int8 scales,
 *                 [208..209] d; per half h (ql+64h, qh+32h), l = 0..31:
 *                 ql[l] = q[l]&15 | (q[l+64]&15)<<4,
 *                 ql[l+32] = q[l+32]&15 | (q[l+96]&15)<<4,
 *                 qh[l] = q[l]>>4 | q[l+32]>>4<<2 | q[l+64]>>4<<4 | q[l+96]>>4<<6
 *                 y = d*sc_j*(q-32)   (16 sub-blocks of 16)
 *
 * Without an imatrix ggml uses the *_ref functions; with one, the *_impl
 * functions, whose weights are imatrix*sqrt(sigma2 + x^2) with sigma2 the
 * mean x^2 of the super-block (x2 for Q3_K..Q5_K, x1 for Q2_K), except Q6_K
 * which takes the raw imatrix as weights. ggml's _impl functions also carry
 * a no-imatrix branch for Q3_K/Q4_K/Q5_K, but quantize_q*_K never reaches
 * it (NULL goes to _ref), so we do not implement it.
 *
 * Bit-exactness: expressions in ggml's order, no FMA contraction
 * (-ffp-contract=off in the Makefile), scales rounded to fp16 before the
 * final requantization pass exactly where ggml rounds them.
 *
 * SIMD: for Q2_K, Q4_K, Q5_K and Q6_K (with and without imatrix) the
 * sub-block searches, the final requantization and (Q4_K, Q6_K) the bit
 * packing run in AVX2 when the CPU has it (q_simd_k.c, one sub-block per
 * lane, the scalar operations in the scalar order); the scalar code below
 * stays the reference and the fallback, and test_quant checks the two give
 * the same bytes. Q3_K, and Q2_K's make_qp_quants of the 16 scales, are
 * scalar only. */
#include "quantize/q_blocks.h"

#include <math.h>

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static float sumsq(const float *x, int n) {
    float s = 0.0f;
    for (int l = 0; l < n; ++l)
        s += x[l] * x[l];
    return s;
}

/* weights w = qw*sqrt(sigma2 + x^2) for n elements and their sum */
static float imatrix_weights(const float *x, const float *qw, float sigma2, float *w, int n) {
    float sumw = 0.0f;
    for (int l = 0; l < n; ++l)
        w[l] = qw[l] * sqrtf(sigma2 + x[l] * x[l]);
    for (int l = 0; l < n; ++l)
        sumw += w[l];
    return sumw;
}

/* 2-bit packing shared by Q2_K and Q3_K: within each 128-element half,
 * byte l carries elements l, l+32, l+64, l+96 */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < DSQ_QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] =
                (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

/* ============================== Q2_K ====================================== */

/* with the fp16-rounded d/dmin and the 4-bit indices fixed, pick each level
 * again for the scale it will actually be decoded with */
static void q2_requantize(const float *x, const dsq_block_q2_K *y, float dm, float mm, uint8_t *L) {
    float d[16], m[16];
    for (int j = 0; j < DSQ_QK_K / 16; ++j) {
        d[j] = dm * (float)(y->scales[j] & 0xF);
        m[j] = mm * (float)(y->scales[j] >> 4);
    }
    if (dsq__requant_avx2(x, 16, 16, d, m, 0, 3, 0, L))
        return;
    for (int j = 0; j < DSQ_QK_K / 16; ++j) {
        if (d[j] == 0.0f)
            continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (uint8_t)clampi(dsq__nearest_int((x[16 * j + ii] + m[j]) / d[j]), 0, 3);
    }
}

static void q2_K_ref_block(const float *x, dsq_block_q2_K *y) {
    uint8_t L[DSQ_QK_K], Laux[16];
    float w[DSQ_QK_K], mins[16], scales[16];
    float max_scale = 0.0f, max_min = 0.0f; /* the min is subtracted: scales are >= 0 */
    for (int l = 0; l < DSQ_QK_K; ++l)
        w[l] = fabsf(x[l]);
    if (!dsq__qkx_simd(16, 1, x, w, 16, 3, -0.5f, 0.1f, 15, L, scales, mins)) /* SIMD lanes */
        for (int j = 0; j < 16; ++j)
            scales[j] = dsq__make_qkx_quants(16, 3, x + 16 * j, w + 16 * j, L + 16 * j, &mins[j],
                                             Laux, -0.5f, 0.1f, 15, 1);
    for (int j = 0; j < 16; ++j) {
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    if (max_scale > 0.0f) {
        const float iscale = 15.0f / max_scale;
        for (int j = 0; j < 16; ++j)
            y->scales[j] = (uint8_t)dsq__nearest_int(iscale * scales[j]);
        dsq__put_f16(y->d, max_scale / 15.0f);
    } else {
        memset(y->scales, 0, sizeof y->scales);
        dsq__put_f16(y->d, 0.0f);
    }
    if (max_min > 0.0f) {
        const float iscale = 15.0f / max_min;
        /* a NaN product (iscale inf when max_min is denormal, times a zero min)
         * gives nearest_int -4194304: shift it as unsigned, the bits ggml's
         * signed shift leaves on x86, without the undefined behaviour */
        for (int j = 0; j < 16; ++j)
            y->scales[j] =
                (uint8_t)(y->scales[j] | (unsigned)dsq__nearest_int(iscale * mins[j]) << 4);
        dsq__put_f16(y->dmin, max_min / 15.0f);
    } else {
        dsq__put_f16(y->dmin, 0.0f);
    }
    q2_requantize(x, y, dsq__get_f16(y->d), dsq__get_f16(y->dmin), L);
    pack_2bit(L, y->qs);
}

static void q2_K_impl_block(const float *x, dsq_block_q2_K *y, const float *qw) {
    uint8_t L[DSQ_QK_K], Laux[16], Ls[16], Lm[16];
    float w[DSQ_QK_K], mins[16], scales[16], sw[16];
    const float sigma2 = sumsq(x, DSQ_QK_K) / (float)DSQ_QK_K;
    for (int j = 0; j < 16; ++j)
        sw[j] = imatrix_weights(x + 16 * j, qw + 16 * j, sigma2, w + 16 * j, 16);
    if (!dsq__qkx_simd(16, 0, x, w, 16, 3, -0.9f, 0.05f, 36, L, scales, mins))
        for (int j = 0; j < 16; ++j)
            scales[j] = dsq__make_qkx_quants(16, 3, x + 16 * j, w + 16 * j, L + 16 * j, &mins[j],
                                             Laux, -0.9f, 0.05f, 36, 0);
    /* the 16 scales and 16 mins are themselves quantized to 4 bits with a
     * weighted search, weighting each sub-block by its total importance */
    const float dm = dsq__make_qp_quants(16, 15, scales, Ls, sw);
    const float mm = dsq__make_qp_quants(16, 15, mins, Lm, sw);
    dsq__put_f16(y->d, dm);
    dsq__put_f16(y->dmin, mm);
    for (int j = 0; j < 16; ++j)
        y->scales[j] = (uint8_t)(Ls[j] | Lm[j] << 4);
    q2_requantize(x, y, dsq__get_f16(y->d), dsq__get_f16(y->dmin), L);
    pack_2bit(L, y->qs);
}

void dsq__quantize_q2_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q2_K *y = dst;
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i) {
        if (imatrix)
            q2_K_impl_block(x + i * DSQ_QK_K, y + i, imatrix + i * DSQ_QK_K);
        else
            q2_K_ref_block(x + i * DSQ_QK_K, y + i);
    }
}

void dsq__dequantize_q2_K(const void *src, float *y, int64_t n) {
    const dsq_block_q2_K *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i, y += DSQ_QK_K) {
        const float d = dsq__get_f16(b[i].d);
        const float dmin = dsq__get_f16(b[i].dmin);
        for (int e = 0; e < DSQ_QK_K; ++e) {
            const int h = e / 128, r = e % 128;
            const int q = (b[i].qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            const uint8_t sc = b[i].scales[e / 16];
            const float dl = d * (float)(sc & 0xF);
            const float ml = dmin * (float)(sc >> 4);
            y[e] = dl * (float)q - ml;
        }
    }
}

/* ============================== Q3_K ====================================== */

static void q3_pack_scales(const int *s, uint8_t *scales) {
    memset(scales, 0, 12);
    for (int j = 0; j < 16; ++j) {
        const int l = s[j]; /* 0..63 */
        if (j < 8)
            scales[j] = (uint8_t)(l & 0xF);
        else
            scales[j - 8] = (uint8_t)(scales[j - 8] | (l & 0xF) << 4);
        scales[8 + j % 4] = (uint8_t)(scales[8 + j % 4] | (l >> 4) << (2 * (j / 4)));
    }
}

static int q3_scale(const uint8_t *scales, int j) {
    const int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    return (lo | ((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

/* requantize with the packed scales and fp16 d, then split the 3-bit levels
 * into hmask (bit 2) and qs (bits 0..1) */
static void q3_finish(const float *x, dsq_block_q3_K *y, int8_t *L) {
    const float dall = dsq__get_f16(y->d);
    for (int j = 0; j < 16; ++j) {
        const float d = dall * (float)q3_scale(y->scales, j);
        if (d == 0.0f)
            continue;
        for (int ii = 0; ii < 16; ++ii)
            L[16 * j + ii] = (int8_t)(clampi(dsq__nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
    }
    uint8_t low[DSQ_QK_K];
    memset(y->hmask, 0, sizeof y->hmask);
    for (int j = 0; j < DSQ_QK_K; ++j) {
        int l = L[j];
        if (l > 3) {
            y->hmask[j % 32] = (uint8_t)(y->hmask[j % 32] | 1 << (j / 32));
            l -= 4;
        }
        low[j] = (uint8_t)l;
    }
    pack_2bit(low, y->qs);
}

static void q3_K_ref_block(const float *x, dsq_block_q3_K *y) {
    int8_t L[DSQ_QK_K];
    float scales[16];
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < 16; ++j) {
        scales[j] = dsq__make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        const float a = fabsf(scales[j]);
        if (a > amax) {
            amax = a;
            max_scale = scales[j];
        }
    }
    int s[16];
    if (max_scale != 0.0f) {
        const float iscale = -32.0f / max_scale;
        for (int j = 0; j < 16; ++j) {
            /* ggml narrows to int8_t before clamping */
            const int l = (int8_t)dsq__nearest_int(iscale * scales[j]);
            s[j] = clampi(l, -32, 31) + 32;
        }
        q3_pack_scales(s, y->scales);
        dsq__put_f16(y->d, 1.0f / iscale);
    } else {
        memset(y->scales, 0, sizeof y->scales);
        dsq__put_f16(y->d, 0.0f);
    }
    q3_finish(x, y, L);
}

static void q3_K_impl_block(const float *x, dsq_block_q3_K *y, const float *qw) {
    int8_t L[DSQ_QK_K], Ls[16];
    float scales[16], sw[16], w[16];
    const float sigma2 = 2.0f * sumsq(x, DSQ_QK_K) / (float)DSQ_QK_K;
    for (int j = 0; j < 16; ++j) {
        sw[j] = imatrix_weights(x + 16 * j, qw + 16 * j, sigma2, w, 16);
        scales[j] = dsq__make_qx_quants(16, 4, x + 16 * j, L + 16 * j, w);
    }
    /* the signed sub-block scales get a 6-bit symmetric quantization of
     * their own, weighted by sub-block importance */
    const float d_block = dsq__make_qx_quants(16, 32, scales, Ls, sw);
    int s[16];
    for (int j = 0; j < 16; ++j)
        s[j] = Ls[j];
    q3_pack_scales(s, y->scales);
    dsq__put_f16(y->d, d_block);
    q3_finish(x, y, L);
}

void dsq__quantize_q3_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q3_K *y = dst;
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i) {
        if (imatrix)
            q3_K_impl_block(x + i * DSQ_QK_K, y + i, imatrix + i * DSQ_QK_K);
        else
            q3_K_ref_block(x + i * DSQ_QK_K, y + i);
    }
}

void dsq__dequantize_q3_K(const void *src, float *y, int64_t n) {
    const dsq_block_q3_K *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i, y += DSQ_QK_K) {
        const float dall = dsq__get_f16(b[i].d);
        for (int e = 0; e < DSQ_QK_K; ++e) {
            const int h = e / 128, r = e % 128;
            const int lo = (b[i].qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            const int hi = (b[i].hmask[e % 32] >> (e / 32)) & 1;
            const float dl = dall * (float)q3_scale(b[i].scales, e / 16);
            y[e] = dl * (float)(lo - (hi ? 0 : 4));
        }
    }
}

/* ============================== Q4_K / Q5_K =============================== */

/* 8 six-bit scales and mins in 12 bytes: j < 4 in the low 6 bits of bytes
 * j (scale) and j+4 (min); j >= 4 in the nibbles of byte j+4, with their top
 * 2 bits in the spare high bits of bytes j-4 (scale) and j (min). */
static void k4_pack_scales(const uint8_t *ls, const uint8_t *lm, uint8_t *scales) {
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            scales[j] = ls[j];
            scales[j + 4] = lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | (lm[j] & 0xF) << 4);
            scales[j - 4] = (uint8_t)(scales[j - 4] | (ls[j] >> 4) << 6);
            scales[j] = (uint8_t)(scales[j] | (lm[j] >> 4) << 6);
        }
    }
}

static void k4_get_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Q4_K/Q5_K search the sub-blocks of up to four super-blocks at once: 32
 * sub-blocks fill the two vectors of 16 lanes the AVX-512 search carries. */
enum { K45_BATCH = 4 };

/* the imatrix path's searches of nsb (1 to K45_BATCH) super-blocks */
static void k45_search(const float *x, const float *w, int nsb, int nmax, float rmin,
                       float rdelta, int nstep, uint8_t *L, float *scales, float *mins) {
    uint8_t Laux[32];
    if (!dsq__qkx_simd(32, 0, x, w, 8 * nsb, nmax, rmin, rdelta, nstep, L, scales, mins))
        for (int j = 0; j < 8 * nsb; ++j)
            scales[j] = dsq__make_qkx_quants(32, nmax, x + 32 * j, w + 32 * j, L + 32 * j,
                                             &mins[j], Laux, rmin, rdelta, nstep, 0);
}

/* One super-block's scales and mins after its search, as the ggml path
 * does it, into the packed 12 bytes and d/dmin. */
typedef struct {
    uint8_t scales[12];
    float d, dmin;
} k45_head;

/* ggml's ref path: a per-sub-block search, then the 8 scales and mins
 * linearly mapped to 0..63 by the largest one; nsb super-blocks at x */
static void k45_ref_scales(const float *x, int nsb, int nmax, float rmin, float rdelta, int nstep,
                           uint8_t *L, k45_head *h) {
    float mins[8 * K45_BATCH], scales[8 * K45_BATCH];
    /* the SIMD search makes these weights itself, in its lanes */
    if (!dsq__qkx_simd(32, 0, x, NULL, 8 * nsb, nmax, rmin, rdelta, nstep, L, scales, mins)) {
        for (int j = 0; j < 8 * nsb; ++j) {
            float w[32];
            uint8_t Laux[32];
            const float av_x = sqrtf(sumsq(x + 32 * j, 32) / 32.0f);
            for (int l = 0; l < 32; ++l)
                w[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = dsq__make_qkx_quants(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux,
                                             rmin, rdelta, nstep, 0);
        }
    }
    for (int b = 0; b < nsb; ++b) {
        const float *sc = scales + 8 * b, *mn = mins + 8 * b;
        uint8_t ls[8], lm[8];
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; ++j) {
            if (sc[j] > max_scale)
                max_scale = sc[j];
            if (mn[j] > max_min)
                max_min = mn[j];
        }
        const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
        const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
        for (int j = 0; j < 8; ++j) {
            /* ggml stores nearest_int into a uint8_t (wrapping) and then clamps */
            const uint8_t s = (uint8_t)dsq__nearest_int(inv_scale * sc[j]);
            const uint8_t m = (uint8_t)dsq__nearest_int(inv_min * mn[j]);
            ls[j] = s < 63 ? s : 63;
            lm[j] = m < 63 ? m : 63;
        }
        k4_pack_scales(ls, lm, h[b].scales);
        h[b].d = max_scale / 63.0f;
        h[b].dmin = max_min / 63.0f;
    }
}

/* ggml's imatrix path: qkx3 search per sub-block, then make_qp_quants for
 * the scales and the mins. clamp63 is Q5_K's extra MIN(63, .) that Q4_K's
 * impl does not have (it only matters for wrapped negative levels). */
static void k45_impl_scales(const float *x, const float *qw, int nsb, int nmax, int clamp63,
                            uint8_t *L, k45_head *h) {
    /* zeroed: only nsb blocks are set, and GCC cannot see that only those are read */
    float w[K45_BATCH * DSQ_QK_K] = {0}, mins[8 * K45_BATCH], scales[8 * K45_BATCH];
    float sw[8 * K45_BATCH];
    for (int b = 0; b < nsb; ++b) {
        const float *xb = x + DSQ_QK_K * b;
        const float sigma2 = 2.0f * sumsq(xb, DSQ_QK_K) / (float)DSQ_QK_K;
        for (int j = 8 * b; j < 8 * b + 8; ++j)
            sw[j] = imatrix_weights(x + 32 * j, qw + 32 * j, sigma2, w + 32 * j, 32);
    }
    k45_search(x, w, nsb, nmax, -0.9f, 0.05f, 36, L, scales, mins);
    for (int b = 0; b < nsb; ++b) {
        uint8_t ls[8], lm[8];
        h[b].d = dsq__make_qp_quants(8, 63, scales + 8 * b, ls, sw + 8 * b);
        h[b].dmin = dsq__make_qp_quants(8, 63, mins + 8 * b, lm, sw + 8 * b);
        if (clamp63) {
            for (int j = 0; j < 8; ++j) {
                ls[j] = ls[j] < 63 ? ls[j] : 63;
                lm[j] = lm[j] < 63 ? lm[j] : 63;
            }
        }
        k4_pack_scales(ls, lm, h[b].scales);
    }
}

/* the heads of nsb super-blocks at x: Q4_K's or Q5_K's parameters */
static void k45_scales(const float *x, const float *qw, int nsb, int nmax, uint8_t *L,
                       k45_head *h) {
    if (qw)
        k45_impl_scales(x, qw, nsb, nmax, nmax == 31, L, h);
    else if (nmax == 15)
        k45_ref_scales(x, nsb, 15, -1.0f, 0.1f, 20, L, h);
    else
        k45_ref_scales(x, nsb, 31, -0.5f, 0.1f, 15, L, h);
}

/* final levels 0..nmax with the packed 6-bit scales/mins and fp16 d/dmin */
static void k45_requantize(const float *x, const uint8_t *scales, const uint8_t *dh,
                           const uint8_t *dminh, int nmax, uint8_t *L) {
    const float dall = dsq__get_f16(dh), mall = dsq__get_f16(dminh);
    float d[8], dm[8];
    for (int j = 0; j < 8; ++j) {
        int sc, m;
        k4_get_scale_min(j, scales, &sc, &m);
        d[j] = dall * (float)sc;
        dm[j] = mall * (float)m;
    }
    if (dsq__requant_avx2(x, 32, 8, d, dm, 0, nmax, 0, L))
        return;
    for (int j = 0; j < 8; ++j) {
        if (d[j] == 0.0f)
            continue;
        for (int ii = 0; ii < 32; ++ii)
            L[32 * j + ii] =
                (uint8_t)clampi(dsq__nearest_int((x[32 * j + ii] + dm[j]) / d[j]), 0, nmax);
    }
}

/* A Q4_K/Q5_K block's head from its search (h) and its final levels L, the
 * two types' common part: both blocks begin d, dmin, scales[12]. */
static void k45_block_head(const k45_head *h, const float *xb, int nmax, uint8_t *d,
                           uint8_t *dmin, uint8_t *scales, uint8_t *L) {
    memcpy(scales, h->scales, sizeof h->scales);
    dsq__put_f16(d, h->d);
    dsq__put_f16(dmin, h->dmin);
    k45_requantize(xb, scales, d, dmin, nmax, L);
}

void dsq__quantize_q4_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q4_K *y = dst;
    uint8_t L[K45_BATCH * DSQ_QK_K];
    k45_head h[K45_BATCH];
    const int64_t nb = n / DSQ_QK_K;
    for (int64_t i = 0; i < nb; i += K45_BATCH) {
        const int nsb = nb - i >= K45_BATCH ? K45_BATCH : (int)(nb - i);
        k45_scales(x + i * DSQ_QK_K, imatrix ? imatrix + i * DSQ_QK_K : NULL, nsb, 15, L, h);
        for (int b = 0; b < nsb; ++b) {
            dsq_block_q4_K *yb = y + i + b;
            uint8_t *Lb = L + DSQ_QK_K * b;
            k45_block_head(&h[b], x + (i + b) * DSQ_QK_K, 15, yb->d, yb->dmin, yb->scales, Lb);
            if (dsq__q4_pack_avx2(Lb, yb->qs))
                continue;
            for (int c = 0; c < 4; ++c)
                for (int l = 0; l < 32; ++l)
                    yb->qs[32 * c + l] = (uint8_t)(Lb[64 * c + l] | Lb[64 * c + 32 + l] << 4);
        }
    }
}

void dsq__dequantize_q4_K(const void *src, float *y, int64_t n) {
    const dsq_block_q4_K *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i, y += DSQ_QK_K) {
        const float d = dsq__get_f16(b[i].d), min = dsq__get_f16(b[i].dmin);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k4_get_scale_min(j, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            const uint8_t *q = b[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l)
                y[32 * j + l] = d1 * (float)((q[l] >> shift) & 0xF) - m1;
        }
    }
}

void dsq__quantize_q5_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q5_K *y = dst;
    uint8_t L[K45_BATCH * DSQ_QK_K];
    k45_head h[K45_BATCH];
    const int64_t nb = n / DSQ_QK_K;
    for (int64_t i = 0; i < nb; i += K45_BATCH) {
        const int nsb = nb - i >= K45_BATCH ? K45_BATCH : (int)(nb - i);
        k45_scales(x + i * DSQ_QK_K, imatrix ? imatrix + i * DSQ_QK_K : NULL, nsb, 31, L, h);
        for (int b = 0; b < nsb; ++b) {
            dsq_block_q5_K *yb = y + i + b;
            uint8_t *Lb = L + DSQ_QK_K * b;
            k45_block_head(&h[b], x + (i + b) * DSQ_QK_K, 31, yb->d, yb->dmin, yb->scales, Lb);
            memset(yb->qh, 0, sizeof yb->qh);
            for (int c = 0; c < 4; ++c) {
                for (int l = 0; l < 32; ++l) {
                    const int l1 = Lb[64 * c + l], l2 = Lb[64 * c + 32 + l];
                    yb->qh[l] =
                        (uint8_t)(yb->qh[l] | (l1 >> 4) << (2 * c) | (l2 >> 4) << (2 * c + 1));
                    yb->qs[32 * c + l] = (uint8_t)((l1 & 0xF) | (l2 & 0xF) << 4);
                }
            }
        }
    }
}

void dsq__dequantize_q5_K(const void *src, float *y, int64_t n) {
    const dsq_block_q5_K *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i, y += DSQ_QK_K) {
        const float d = dsq__get_f16(b[i].d), min = dsq__get_f16(b[i].dmin);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            k4_get_scale_min(j, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            const uint8_t *q = b[i].qs + 32 * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < 32; ++l) {
                const int hi = (b[i].qh[l] >> j) & 1; /* chunk j/2, bit 2*(j/2) + j%2 = j */
                y[32 * j + l] = d1 * (float)(((q[l] >> shift) & 0xF) + (hi ? 16 : 0)) - m1;
            }
        }
    }
}

/* ============================== Q6_K ====================================== */

/* one super-block after its search: L and scales from q6_K_search */
static void q6_K_block(const float *x, dsq_block_q6_K *y, int8_t *L, const float *scales) {
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < 16; ++ib) {
        const float scale = scales[ib];
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    if (max_abs_scale < DSQ_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float iscale = -128.0f / max_scale;
    dsq__put_f16(y->d, 1.0f / iscale);
    for (int ib = 0; ib < 16; ++ib) {
        const int l = dsq__nearest_int(iscale * scales[ib]);
        y->scales[ib] = (int8_t)(l < 127 ? l : 127);
    }
    const float dall = dsq__get_f16(y->d);
    float d[16];
    for (int j = 0; j < 16; ++j)
        d[j] = dall * (float)y->scales[j];
    if (!dsq__requant_avx2(x, 16, 16, d, NULL, -32, 31, 32, (uint8_t *)L)) {
        for (int j = 0; j < 16; ++j) {
            if (d[j] == 0.0f)
                continue;
            for (int ii = 0; ii < 16; ++ii)
                L[16 * j + ii] =
                    (int8_t)(clampi(dsq__nearest_int(x[16 * j + ii] / d[j]), -32, 31) + 32);
        }
    }
    if (dsq__q6_pack_avx2((const uint8_t *)L, y->ql, y->qh))
        return;
    for (int h = 0; h < 2; ++h) {
        const int8_t *Lh = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; ++l) {
            ql[l] = (uint8_t)((Lh[l] & 0xF) | (Lh[l + 64] & 0xF) << 4);
            ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | (Lh[l + 96] & 0xF) << 4);
            qh[l] = (uint8_t)(Lh[l] >> 4 | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 |
                              (Lh[l + 96] >> 4) << 6);
        }
    }
}

void dsq__quantize_q6_K(const float *x, void *dst, int64_t n, const float *imatrix) {
    dsq_block_q6_K *y = dst;
    int8_t L[2 * DSQ_QK_K];
    float scales[32];
    const int64_t nb = n / DSQ_QK_K;
    for (int64_t i = 0; i < nb; i += 2) {
        /* ref: weights x^2; impl: the raw imatrix (no sigma2 term in Q6_K).
         * The searches of two super-blocks at once in SIMD lanes if we can. */
        const int nsb = nb - i >= 2 ? 2 : 1;
        const float *xi = x + i * DSQ_QK_K, *qw = imatrix ? imatrix + i * DSQ_QK_K : NULL;
        if (!dsq__qx_simd(xi, qw, nsb, 32, L, scales))
            for (int ib = 0; ib < 16 * nsb; ++ib)
                scales[ib] =
                    dsq__make_qx_quants(16, 32, xi + 16 * ib, L + 16 * ib, qw ? qw + 16 * ib : NULL);
        for (int b = 0; b < nsb; ++b)
            q6_K_block(xi + DSQ_QK_K * b, y + i + b, L + DSQ_QK_K * b, scales + 16 * b);
    }
}

void dsq__dequantize_q6_K(const void *src, float *y, int64_t n) {
    const dsq_block_q6_K *b = src;
    for (int64_t i = 0; i < n / DSQ_QK_K; ++i, y += DSQ_QK_K) {
        const float d = dsq__get_f16(b[i].d);
        for (int e = 0; e < DSQ_QK_K; ++e) {
            const int h = e / 128, r = e % 128, l = r % 32, k = r / 32; /* k: which quarter */
            const uint8_t lo = b[i].ql[64 * h + l + 32 * (k & 1)];
            const int q =
                ((k < 2 ? lo & 0xF : lo >> 4) | ((b[i].qh[32 * h + l] >> (2 * k)) & 3) << 4);
            y[e] = d * (float)b[i].scales[e / 16] * (float)(q - 32);
        }
    }
}
