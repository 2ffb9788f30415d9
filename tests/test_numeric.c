/* tests/test_numeric.c: the narrow float formats against their definitions.
 *
 * Expected values are computed here from the bit layouts in
 * specs/formats.md §7.3 (OCP FP8: E4M3 bias 7, no infinities, NaN only at
 * S.1111.111; E5M2 bias 15, IEEE-like) and IEEE 754 binary16 / bfloat16 with
 * round-to-nearest-even, using integer significands scaled by exact powers of
 * two in double, a different route from core/numeric.c's. The spot values
 * (448, 57344, 2^-9, ...) are the formats' documented extremes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/numeric.h"

static double pow2(int e) {
    double r = 1.0;
    for (; e > 0; e--)
        r *= 2.0;
    for (; e < 0; e++)
        r *= 0.5;
    return r;
}

/* value = (-1)^s * (implicit + m) * 2^(e - bias - mbits), subnormal when e == 0 */
static double from_fields(int s, int e, int m, int bias, int mbits) {
    const double mag = e == 0 ? (double)m * pow2(1 - bias - mbits)
                              : (double)((1 << mbits) + m) * pow2(e - bias - mbits);
    return s ? -mag : mag;
}

static void test_e4m3_all_codes(void **state) {
    (void)state;
    float max_finite = 0;
    for (int v = 0; v < 256; v++) {
        const int s = v >> 7, e = (v >> 3) & 15, m = v & 7;
        const float got = dsq_fp8_e4m3_to_f32((uint8_t)v);
        if (e == 15 && m == 7) {
            assert_true(isnan(got));
            continue;
        }
        assert_false(isinf(got)); /* E4M3FN has no infinities */
        assert_true((double)got == from_fields(s, e, m, 7, 3));
        assert_int_equal(signbit(got) != 0, s);
        if (got > max_finite)
            max_finite = got;
    }
    assert_true(max_finite == 448.0f);
    assert_true(dsq_fp8_e4m3_to_f32(0x7E) == 448.0f);
    assert_true(dsq_fp8_e4m3_to_f32(0xFE) == -448.0f);
    assert_true(dsq_fp8_e4m3_to_f32(0x01) == 0.001953125f); /* 2^-9, smallest subnormal */
    assert_true(dsq_fp8_e4m3_to_f32(0x08) == 0.015625f);    /* 2^-6, smallest normal */
    assert_true(dsq_fp8_e4m3_to_f32(0x38) == 1.0f);
    assert_true(isnan(dsq_fp8_e4m3_to_f32(0x7F)) && isnan(dsq_fp8_e4m3_to_f32(0xFF)));
    assert_true(signbit(dsq_fp8_e4m3_to_f32(0xFF)) && !signbit(dsq_fp8_e4m3_to_f32(0x7F)));
}

static void test_e5m2_all_codes(void **state) {
    (void)state;
    for (int v = 0; v < 256; v++) {
        const int s = v >> 7, e = (v >> 2) & 31, m = v & 3;
        const float got = dsq_fp8_e5m2_to_f32((uint8_t)v);
        if (e == 31) {
            if (m == 0)
                assert_true(isinf(got) && (signbit(got) != 0) == s);
            else
                assert_true(isnan(got));
            continue;
        }
        assert_true((double)got == from_fields(s, e, m, 15, 2));
    }
    assert_true(dsq_fp8_e5m2_to_f32(0x7B) == 57344.0f);   /* max finite */
    assert_true(dsq_fp8_e5m2_to_f32(0x01) == 0x1p-16f);   /* smallest subnormal */
    assert_true(dsq_fp8_e5m2_to_f32(0x3C) == 1.0f);
}

static uint16_t bf16(uint32_t bits) {
    return dsq_f32_to_bf16(dsq_bits_f32(bits));
}

static void test_bf16_rounding(void **state) {
    (void)state;
    assert_int_equal(bf16(0x3F800000), 0x3F80);               /* 1.0 exact */
    assert_int_equal(bf16(0x3F808000), 0x3F80);               /* 1 + 2^-8: tie, even stays */
    assert_int_equal(bf16(0x3F818000), 0x3F82);               /* tie, odd rounds up to even */
    assert_int_equal(bf16(0x3F808001), 0x3F81);               /* just above the tie */
    assert_int_equal(bf16(0x3F807FFF), 0x3F80);               /* just below the tie */
    assert_int_equal(bf16(0xBF808000), 0xBF80);               /* negative tie */
    assert_int_equal(bf16(0x7F7FFFFF), 0x7F80);               /* FLT_MAX overflows to inf */
    assert_int_equal(bf16(0x7F7F7FFF), 0x7F7F);               /* largest that stays finite */
    assert_int_equal(bf16(0x7F800000), 0x7F80);               /* +inf */
    assert_int_equal(bf16(0xFF800000), 0xFF80);               /* -inf */
    assert_int_equal(bf16(0x00008000), 0x0000);               /* subnormal tie to even 0 */
    assert_int_equal(bf16(0x00018000), 0x0002);               /* subnormal tie to even 2 */
    assert_int_equal(bf16(0x80000000), 0x8000);               /* -0 keeps its sign */
    /* NaN stays NaN: exponent all ones, mantissa non-zero (the quiet bit forced) */
    const uint16_t qn = bf16(0x7FC00000), sn = bf16(0x7F800001), nn = bf16(0xFFFFFFFF);
    assert_int_equal(qn & 0x7F80, 0x7F80);
    assert_true((qn & 0x7F) != 0 && (sn & 0x7F) != 0 && (nn & 0x7F) != 0);
    assert_int_equal(sn, 0x7FC0);
    /* widening is exact */
    assert_true(dsq_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(dsq_bf16_to_f32(0xC0A0) == -5.0f);
}

static void test_f16_rounding(void **state) {
    (void)state;
    assert_int_equal(dsq_f32_to_f16(1.0f), 0x3C00);
    assert_int_equal(dsq_f32_to_f16(-2.0f), 0xC000);
    assert_int_equal(dsq_f32_to_f16(65504.0f), 0x7BFF);   /* max finite */
    assert_int_equal(dsq_f32_to_f16(65519.0f), 0x7BFF);   /* below the tie to inf */
    assert_int_equal(dsq_f32_to_f16(65520.0f), 0x7C00);   /* tie between 65504 and 2^16: even=inf */
    assert_int_equal(dsq_f32_to_f16(1e9f), 0x7C00);
    assert_int_equal(dsq_f32_to_f16(0x1p-24f), 0x0001);   /* smallest subnormal */
    assert_int_equal(dsq_f32_to_f16(0x1p-25f), 0x0000);   /* tie to even zero */
    assert_int_equal(dsq_f32_to_f16(0x1.8p-25f), 0x0001); /* above the tie */
    assert_int_equal(dsq_f32_to_f16(0x3p-24f), 0x0003);
    assert_int_equal(dsq_f32_to_f16(0x1p-14f), 0x0400);   /* smallest normal */
    assert_int_equal(dsq_f32_to_f16(1.0f + 0x1p-11f), 0x3C00); /* tie, even */
    assert_int_equal(dsq_f32_to_f16(1.0f + 0x3p-11f), 0x3C02); /* tie, odd up */
    assert_int_equal(dsq_f32_to_f16(INFINITY), 0x7C00);
    const uint16_t n = dsq_f32_to_f16(NAN);
    assert_true((n & 0x7C00) == 0x7C00 && (n & 0x3FF) != 0);
    /* every finite half decodes to its definition and encodes back to itself */
    for (uint32_t h = 0; h < 65536; h++) {
        const int s = (int)(h >> 15), e = (int)((h >> 10) & 31), m = (int)(h & 1023);
        const float f = dsq_f16_to_f32((uint16_t)h);
        if (e == 31) {
            assert_true(m ? isnan(f) : isinf(f));
            continue;
        }
        assert_true((double)f == from_fields(s, e, m, 15, 10));
        assert_int_equal(dsq_f32_to_f16(f), h);
    }
}

static void test_dtype_table(void **state) {
    (void)state;
    int ok;
    /* sizes from safetensors' bit widths and ggml's block table (formats.md §1.2, §2.3) */
    assert_int_equal(dsq_dtype_nbytes(DSQ_DTYPE_BF16, 6, &ok), 12);
    assert_true(ok);
    assert_int_equal(dsq_dtype_nbytes(DSQ_DTYPE_F4, 6, &ok), 3);
    assert_true(ok);
    dsq_dtype_nbytes(DSQ_DTYPE_F4, 7, &ok); /* 28 bits: not whole bytes */
    assert_false(ok);
    assert_int_equal(dsq_dtype_nbytes(DSQ_DTYPE_F6_E2M3, 8, &ok), 6);
    assert_int_equal(dsq_dtype_nbytes(DSQ_DTYPE_Q4_K, 512, &ok), 288);
    assert_int_equal(dsq_dtype_nbytes(DSQ_DTYPE_Q8_0, 64, &ok), 68);
    dsq_dtype_nbytes(DSQ_DTYPE_F64, UINT64_MAX / 4, &ok); /* overflow */
    assert_false(ok);
    assert_int_equal(dsq_dtype_from_safetensors("F8_E4M3", 7), DSQ_DTYPE_F8_E4M3);
    assert_int_equal(dsq_dtype_from_safetensors("F8_E4M3x", 7), DSQ_DTYPE_F8_E4M3);
    assert_int_equal(dsq_dtype_from_safetensors("Q4_K", 4), DSQ_DTYPE_INVALID); /* not a st dtype */
    assert_int_equal(dsq_dtype_from_safetensors("f32", 3), DSQ_DTYPE_INVALID);  /* case matters */
    assert_int_equal(dsq_dtype_from_ggml(12), DSQ_DTYPE_Q4_K);
    assert_int_equal(dsq_dtype_from_ggml(30), DSQ_DTYPE_BF16);
    assert_int_equal(dsq_dtype_from_ggml(4), DSQ_DTYPE_INVALID); /* removed Q4_2 */
    /* every safetensors dtype name round-trips */
    for (int t = 1; t < DSQ_DTYPE_COUNT; t++) {
        const dsq_dtype_info *d = dsq_dtype_get((dsq_dtype)t);
        assert_non_null(d);
        if (d->in_safetensors)
            assert_int_equal(dsq_dtype_from_safetensors(d->name, strlen(d->name)), t);
    }
}

/* The BF16 row widening of `dsq quantize` and the forward pass (dsq_bf16_row_to_f32): every one of the 65536 values moved up 16 bits
 * (the definition of BF16: the top half of an F32), at every tail length. */
static void test_bf16_widen_all_values(void **state) {
    (void)state;
    enum { N = 65536 + 13 };
    uint8_t *in = malloc(2 * (size_t)N);
    float *out = malloc(sizeof(float) * (size_t)N);
    assert_true(in && out);
    for (int i = 0; i < N; i++) {
        in[2 * i] = (uint8_t)(i & 0xff);
        in[2 * i + 1] = (uint8_t)((i >> 8) & 0xff);
    }
    for (int n = N - 9; n <= N; n++) {
        dsq_bf16_row_to_f32(in, out, n);
        for (int i = 0; i < n; i++)
            assert_int_equal(dsq_f32_bits(out[i]), (uint32_t)(i & 0xffff) << 16);
    }
    free(in);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e4m3_all_codes), cmocka_unit_test(test_e5m2_all_codes),
        cmocka_unit_test(test_bf16_rounding),  cmocka_unit_test(test_f16_rounding),
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_bf16_widen_all_values),
    };
    return cmocka_run_group_tests_name("numeric", tests, NULL, NULL);
}
