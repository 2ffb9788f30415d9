/* tests/test_fp8_decode.c: FP8 x block scale -> F32 (quantize/fp8.h),
 * the row decode of `dsq quantize`.
 *
 * Expected values: every E4M3 / E5M2 code decoded here from its bit layout
 * (specs/formats.md §7.3) in double, times the scale in double (exact: 4 + 24
 * significant bits), converted once to float: the correctly rounded F32
 * product, which is what one F32 multiply gives, subnormal and overflowing
 * results included; with round_bf16 (quantize's default), that F32 rounded
 * again to BF16, nearest even, here by scaling in double: 8 significant bits
 * for normal values, multiples of 2^-133 below 2^-126. NaN codes must stay
 * NaN whatever the scale, so that the quantizer's finite check rejects them.
 * The AVX2 decode must give the portable loop's bits for every code, scale,
 * mode and run length (its vector body and scalar tail). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quantize/fp8.h"
#include "core/numeric.h"

/* (-1)^s * (implicit + m) * 2^(e - bias - mbits); *nan for the NaN codes,
 * infinities only in E5M2 */
static double fp8_value(uint8_t v, int e5m2, int *nan) {
    const int mbits = e5m2 ? 2 : 3, ebits = e5m2 ? 5 : 4, bias = e5m2 ? 15 : 7;
    const int s = v >> 7, e = (v >> mbits) & ((1 << ebits) - 1), m = v & ((1 << mbits) - 1);
    *nan = 0;
    if (e5m2 && e == 31) {
        *nan = m != 0;
        return s ? -INFINITY : INFINITY;
    }
    if (!e5m2 && e == 15 && m == 7) {
        *nan = 1;
        return 0.0;
    }
    const double r = ldexp(e ? (double)((1 << mbits) + m) : (double)m,
                           (e ? e : 1) - bias - mbits);
    return s ? -r : r;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static const float scales[] = {
    1.0f, 0.00123f, 3.5e-4f, 2.75f, -0.5f, 0.0f, -0.0f,
    0x1p-9f,        /* small codes times this are subnormal */
    1e-38f, 1e-40f, /* subnormal scales: most products subnormal or zero */
    0x1.0101p-140f, /* rounding inside the subnormal range */
    1e38f, 3e38f,   /* products past FLT_MAX round to infinity */
    INFINITY,       /* code 0 times infinity is NaN */
    NAN,
};
#define N_SCALES (sizeof scales / sizeof scales[0])

/* f rounded to BF16 (nearest even) and widened, computed in double */
static float bf16_oracle(float f) {
    if (isnan(f) || isinf(f) || f == 0.0f)
        return f;
    if (fabsf(f) < 0x1p-126f)
        return (float)ldexp(nearbyint(ldexp((double)f, 133)), -133);
    int e;
    const double m = frexp((double)f, &e); /* 0.5 <= |m| < 1 */
    return (float)ldexp(nearbyint(ldexp(m, 8)), e - 8);
}

static void check_table(int e5m2, int round_bf16) {
    float dec[256], out[256];
    uint8_t in[256];
    for (int i = 0; i < 256; i++) {
        dec[i] = e5m2 ? dsq_fp8_e5m2_to_f32((uint8_t)i) : dsq_fp8_e4m3_to_f32((uint8_t)i);
        in[i] = (uint8_t)i;
    }
    for (size_t k = 0; k < N_SCALES; k++) {
        dsq__fp8_decode(in, out, 256, dec, scales[k], round_bf16);
        for (int code = 0; code < 256; code++) {
            int nan;
            const double v = fp8_value((uint8_t)code, e5m2, &nan);
            if (nan || isnan(scales[k])) {
                assert_true(isnan(out[code]));
                continue;
            }
            float want = (float)(v * (double)scales[k]);
            if (round_bf16)
                want = bf16_oracle(want);
            if (isnan(want)) /* 0 x inf */
                assert_true(isnan(out[code]));
            else
                assert_int_equal(bits(out[code]), bits(want));
        }
    }
}

static void test_e4m3_against_oracle(void **state) {
    (void)state;
    check_table(0, 0);
    check_table(0, 1);
}

static void test_e5m2_against_oracle(void **state) {
    (void)state;
    check_table(1, 0);
    check_table(1, 1);
}

static void test_simd_matches_portable(void **state) {
    (void)state;
    enum { N = 256 + 37 };
    float dec[2][256], a[N], b[N];
    uint8_t in[N];
    if (!dsq__fp8_decode_simd_available())
        skip();
    for (int i = 0; i < 256; i++) {
        dec[0][i] = dsq_fp8_e4m3_to_f32((uint8_t)i);
        dec[1][i] = dsq_fp8_e5m2_to_f32((uint8_t)i);
    }
    for (int i = 0; i < N; i++)
        in[i] = (uint8_t)(i * 7 + 3); /* every code, in an order unlike the table's */
    for (int t = 0; t < 4; t++) { /* E4M3, E5M2; then both rounded to BF16 */
        for (size_t k = 0; k < N_SCALES; k++) {
            for (int n = 0; n <= N; n += (n < 70 ? 1 : 61)) {
                memset(a, 0, sizeof a);
                memset(b, 0, sizeof b);
                dsq__fp8_decode(in, a, n, dec[t % 2], scales[k], t / 2);
                dsq__fp8_decode_simd(in, b, n, dec[t % 2], scales[k], t / 2);
                for (int i = 0; i < n; i++) {
                    /* which of two NaN operands a multiply returns depends on
                     * the operand order the compiler picked; both are NaN */
                    if (isnan(scales[k]) && isnan(dec[t % 2][in[i]]))
                        assert_true(isnan(a[i]) && isnan(b[i]));
                    else
                        assert_int_equal(bits(a[i]), bits(b[i]));
                }
            }
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e4m3_against_oracle),
        cmocka_unit_test(test_e5m2_against_oracle),
        cmocka_unit_test(test_simd_matches_portable),
    };
    return cmocka_run_group_tests_name("fp8_decode", tests, NULL, NULL);
}
