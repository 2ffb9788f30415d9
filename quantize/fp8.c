/* quantize/fp8.c: FP8 decode, scale checks, block size and row dequantizers (see fp8.h). */
#include "quantize/fp8.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "core/checked.h"
#include "core/numeric.h"

int dsq_fp8_is_fp8(dsq_dtype t) {
    return t == DSQ_DTYPE_F8_E4M3 || t == DSQ_DTYPE_F8_E5M2;
}

/* A little-endian F32 of a file, read in host order: the row data path assumes a
 * little-endian host, as its F32 row copies do. */
static inline float le_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

dsq_status dsq_fp8_check_scale(const char *where, const dsq_tensor_view *w,
                               const dsq_tensor_view *s, int64_t bm, int64_t bn, dsq_err *err) {
    const char *pre = where != NULL ? where : "", *sep = where != NULL ? ": " : "";
    if (w->ndim != 2)
        return dsq_err_set(err, DSQ_FORMAT,
                           "%s%stensor '%s': FP8 weight with %d dimensions, expected 2", pre, sep,
                           w->name, w->ndim);
    if (s->dtype != DSQ_DTYPE_F32)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "%s%stensor '%s': scale is %s, expected F32",
                           pre, sep, s->name, dsq_dtype_name(s->dtype));
    const int64_t want_r = (int64_t)dsq_ceil_div_u64((uint64_t)w->shape[0], (uint64_t)bm);
    const int64_t want_c = (int64_t)dsq_ceil_div_u64((uint64_t)w->shape[1], (uint64_t)bn);
    if (s->ndim != 2 || s->shape[0] != want_r || s->shape[1] != want_c) {
        char got[96];
        dsq_shape_format(s->shape, s->ndim, got, sizeof got);
        return dsq_err_set(err, DSQ_FORMAT,
                           "%s%stensor '%s': scale shape %s does not match weight [%" PRId64
                           ", %" PRId64 "] in %" PRId64 "x%" PRId64 " blocks (expected [%" PRId64
                           ", %" PRId64 "])",
                           pre, sep, s->name, got, w->shape[0], w->shape[1], bm, bn, want_r,
                           want_c);
    }
    /* the reader checked nbytes against the shape; a NaN or infinite scale would turn a
     * whole block into NaN or infinity, which no consumer of the weights can use */
    const uint8_t *p = s->data;
    for (int64_t i = 0; i < want_r * want_c; i++) {
        const float v = le_f32(p + 4 * i);
        if (!isfinite(v))
            return dsq_err_set(err, DSQ_FORMAT,
                               "%s%stensor '%s': scale[%" PRId64 "][%" PRId64 "] is %s", pre, sep,
                               s->name, i / want_c, i % want_c, isnan(v) ? "NaN" : "infinite");
    }
    return DSQ_OK;
}

void dsq_fp8_table(dsq_dtype t, float dec[256]) {
    for (int c = 0; c < 256; c++)
        dec[c] = t == DSQ_DTYPE_F8_E5M2 ? dsq_fp8_e5m2_to_f32((uint8_t)c)
                                        : dsq_fp8_e4m3_to_f32((uint8_t)c);
}

void dsq_fp8_decoder_init(dsq_fp8_decoder *d, dsq_dtype t, int round_bf16) {
    dsq_fp8_table(t, d->dec);
    d->round_bf16 = round_bf16;
    d->decode = dsq__fp8_decode_simd_available() ? dsq__fp8_decode_simd : dsq__fp8_decode;
}

void dsq_fp8_row_f32(const dsq_fp8_decoder *d, const uint8_t *q, const uint8_t *scales,
                     int64_t cols, int64_t bn, float *out) {
    /* W[r][j] * scale_inv[r / Bm][j / Bn], the product rounded to F32 once, then to BF16
     * with round_bf16: the value the BF16 cast (fp8_cast_bf16.py, `dsq convert`) holds */
    for (int64_t j0 = 0, k = 0; j0 < cols; j0 += bn, k++) {
        const int64_t n = j0 + bn < cols ? bn : cols - j0;
        d->decode(q + j0, out + j0, n, d->dec, le_f32(scales + 4 * k), d->round_bf16);
    }
}

void dsq_fp8_build_luts(const float dec[256], const uint8_t *scales, int64_t ncb,
                        uint16_t *luts) {
    for (int64_t k = 0; k < ncb; k++)
        dsq__fp8_build_lut(dec, le_f32(scales + 4 * k), luts + k * 256);
}

void dsq_fp8_row_bf16(const uint8_t *q, uint16_t *out, int64_t cols, int64_t bn,
                      const uint16_t *luts, int simd) {
    for (int64_t j0 = 0, k = 0; j0 < cols; j0 += bn, k++) {
        const int64_t n = j0 + bn < cols ? bn : cols - j0;
        if (simd)
            dsq__fp8_apply_lut_simd(q + j0, out + j0, n, luts + k * 256);
        else
            dsq__fp8_apply_lut(q + j0, out + j0, n, luts + k * 256);
    }
}

void dsq__fp8_build_lut(const float dec[256], float scale, uint16_t lut[256]) {
    for (int code = 0; code < 256; code++)
        lut[code] = dsq_f32_to_bf16(dec[code] * scale);
}

void dsq__fp8_apply_lut(const uint8_t *in, uint16_t *out, int64_t n, const uint16_t lut[256]) {
    for (int64_t i = 0; i < n; i++)
        out[i] = lut[in[i]];
}

void dsq__fp8_decode(const uint8_t *in, float *out, int64_t n, const float dec[256], float scale,
                     int round_bf16) {
    if (round_bf16)
        for (int64_t i = 0; i < n; i++)
            out[i] = dsq_bf16_to_f32(dsq_f32_to_bf16(dec[in[i]] * scale));
    else
        for (int64_t i = 0; i < n; i++)
            out[i] = dec[in[i]] * scale;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

int dsq__fp8_simd_available(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

/* The 256-entry table lives in eight zmm registers. vpermt2w picks from 64
 * entries (two registers) with the code's low 6 bits; bits 6 and 7 then
 * choose among the four 64-entry quarters. Measured cache-hot on this
 * machine: 0.32 ns an element for the scalar loop; an AVX2 version that
 * recomputed the product arithmetically took 0.38. */
__attribute__((target("avx512f,avx512bw"))) void
dsq__fp8_apply_lut_simd(const uint8_t *in, uint16_t *out, int64_t n, const uint16_t lut[256]) {
    const __m512i t0 = _mm512_loadu_si512((const void *)(lut + 0));
    const __m512i t1 = _mm512_loadu_si512((const void *)(lut + 32));
    const __m512i t2 = _mm512_loadu_si512((const void *)(lut + 64));
    const __m512i t3 = _mm512_loadu_si512((const void *)(lut + 96));
    const __m512i t4 = _mm512_loadu_si512((const void *)(lut + 128));
    const __m512i t5 = _mm512_loadu_si512((const void *)(lut + 160));
    const __m512i t6 = _mm512_loadu_si512((const void *)(lut + 192));
    const __m512i t7 = _mm512_loadu_si512((const void *)(lut + 224));
    const __m512i bit6 = _mm512_set1_epi16(64), bit7 = _mm512_set1_epi16(128);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512i idx =
            _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(in + i)));
        const __m512i q0 = _mm512_permutex2var_epi16(t0, idx, t1);
        const __m512i q1 = _mm512_permutex2var_epi16(t2, idx, t3);
        const __m512i q2 = _mm512_permutex2var_epi16(t4, idx, t5);
        const __m512i q3 = _mm512_permutex2var_epi16(t6, idx, t7);
        const __mmask32 m6 = _mm512_test_epi16_mask(idx, bit6);
        const __mmask32 m7 = _mm512_test_epi16_mask(idx, bit7);
        const __m512i lo = _mm512_mask_blend_epi16(m6, q0, q1);
        const __m512i hi = _mm512_mask_blend_epi16(m6, q2, q3);
        _mm512_storeu_si512((void *)(out + i), _mm512_mask_blend_epi16(m7, lo, hi));
    }
    for (; i < n; i++)
        out[i] = lut[in[i]];
}
int dsq__fp8_decode_simd_available(void) {
    return __builtin_cpu_supports("avx2");
}

/* A gather straight from the F32 table, not arithmetic on the code: the table
 * is what the portable loop reads, so NaN codes keep exactly its bits, and
 * subnormal codes need no special case. Measured cache-hot on this machine for
 * 128-element runs: 0.14 ns an element against 0.30 for the portable loop;
 * 16-wide AVX-512 gathers were no faster (0.145), and an AVX-512 permute over
 * the table in 16 registers slower (0.21). */
/* dsq_f32_to_bf16 and back, on 8 lanes of F32 bits, for products that are
 * finite or quiet NaNs of the default payload (a finite scale: the only NaNs
 * are the NaN codes' own): the rounding add cannot carry out of them */
__attribute__((target("avx2"))) static inline __m256 bf16_round8_fast(__m256 p) {
    const __m256i u = _mm256_castps_si256(p);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd);
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
}

/* dsq_f32_to_bf16 and back, on 8 lanes of F32 bits, any NaN kept NaN */
__attribute__((target("avx2"))) static inline __m256 bf16_round8(__m256 p) {
    const __m256i u = _mm256_castps_si256(p);
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_and_si256(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), hi);
    const __m256i q = _mm256_or_si256(_mm256_and_si256(u, hi), _mm256_set1_epi32(0x00400000));
    return _mm256_castsi256_ps(_mm256_blendv_epi8(r, q, nan));
}

__attribute__((target("avx2"))) void dsq__fp8_decode_simd(const uint8_t *in, float *out,
                                                          int64_t n, const float dec[256],
                                                          float scale, int round_bf16) {
    const __m256 s = _mm256_set1_ps(scale);
    /* 0: the product as it is; 1: rounded, the NaN-safe way; 2: rounded, fast */
    const int mode = !round_bf16 ? 0 : isfinite(scale) ? 2 : 1;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i idx =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(in + i)));
        const __m256 p = _mm256_mul_ps(_mm256_i32gather_ps(dec, idx, 4), s);
        _mm256_storeu_ps(out + i, mode == 2 ? bf16_round8_fast(p) : mode ? bf16_round8(p) : p);
    }
    /* the tail here, not a tail call to dsq__fp8_decode: GCC 12 jumps there
     * without a vzeroupper, and the dirty upper halves then slowed every SSE
     * instruction after it (FP8 -> Q4_K_M took 20% more time) */
    for (; i < n; i++) {
        const float p = dec[in[i]] * scale;
        out[i] = round_bf16 ? dsq_bf16_to_f32(dsq_f32_to_bf16(p)) : p;
    }
}
#else
int dsq__fp8_simd_available(void) {
    return 0;
}

void dsq__fp8_apply_lut_simd(const uint8_t *in, uint16_t *out, int64_t n, const uint16_t lut[256]) {
    dsq__fp8_apply_lut(in, out, n, lut);
}

int dsq__fp8_decode_simd_available(void) {
    return 0;
}

void dsq__fp8_decode_simd(const uint8_t *in, float *out, int64_t n, const float dec[256],
                          float scale, int round_bf16) {
    dsq__fp8_decode(in, out, n, dec, scale, round_bf16);
}
#endif
