/* tests/test_parse.c: core/parse.h, the parsers of option values. The expected values are
 * the decimal numbers written in the strings, the M/G multipliers llama.cpp's gguf-split
 * uses (10^6, 10^9), and the ranges the calls give. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/parse.h"

static void test_count(void **state) {
    (void)state;
    int64_t n = 0;
    dsq_err err = {0};
    assert_int_equal(dsq_parse_count("512", 4, 1 << 20, &n, &err), DSQ_OK);
    assert_int_equal(n, 512);
    assert_int_equal(dsq_parse_count("4", 4, 4, &n, &err), DSQ_OK);
    assert_int_equal(dsq_parse_count("-3", -5, 0, &n, &err), DSQ_OK);
    assert_int_equal(n, -3);
    static const char *const bad[] = {"", "3", "12abc", " 12", "+12", "1e3", "0x10",
                                      "99999999999999999999", "1048577"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsq_err e = {0};
        n = 77;
        assert_int_equal(dsq_parse_count(bad[i], 4, 1 << 20, &n, &e), DSQ_INVALID_ARG);
        assert_int_equal(n, 77); /* untouched */
        char want[128];
        snprintf(want, sizeof want, "expected a whole number from 4 to 1048576, got '%s'", bad[i]);
        assert_string_equal(e.text, want);
    }
    dsq_err e = {0};
    assert_int_equal(dsq_parse_count(NULL, 1, 2, &n, &e), DSQ_INVALID_ARG);
    assert_string_equal(e.text, "expected a whole number from 1 to 2, got ''");
}

static void test_threads(void **state) {
    (void)state;
    int t = 0;
    dsq_err err = {0};
    assert_int_equal(dsq_parse_threads("1", &t, &err), DSQ_OK);
    assert_int_equal(t, 1);
    assert_int_equal(dsq_parse_threads("4096", &t, &err), DSQ_OK);
    assert_int_equal(t, DSQ_MAX_THREADS);
    assert_int_equal(dsq_parse_threads("0", &t, &err), DSQ_INVALID_ARG);
    assert_string_equal(err.text, "expected a whole number from 1 to 4096, got '0'");
    dsq_err e2 = {0};
    assert_int_equal(dsq_parse_threads("4097", &t, &e2), DSQ_INVALID_ARG);
}

static void test_real(void **state) {
    (void)state;
    double d = 0;
    dsq_err err = {0};
    assert_int_equal(dsq_parse_real("0.9", 0, 1, &d, &err), DSQ_OK);
    assert_true(d == 0.9);
    assert_int_equal(dsq_parse_real(".5", 0, 1, &d, &err), DSQ_OK);
    assert_true(d == 0.5);
    assert_int_equal(dsq_parse_real("1e-3", 0, 1, &d, &err), DSQ_OK);
    assert_true(d == 1e-3);
    static const char *const bad[] = {"", "1.5", "-0.1", "nan", "inf", "0.5x", " 0.5", "1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsq_err e = {0};
        assert_int_equal(dsq_parse_real(bad[i], 0, 1, &d, &e), DSQ_INVALID_ARG);
        char want[128];
        snprintf(want, sizeof want, "expected a number from 0 to 1, got '%s'", bad[i]);
        assert_string_equal(e.text, want);
    }
}

static void test_size(void **state) {
    (void)state;
    uint64_t n = 0;
    dsq_err err = {0};
    assert_int_equal(dsq_parse_size("1000", &n, &err), DSQ_OK);
    assert_int_equal(n, 1000);
    assert_int_equal(dsq_parse_size("1M", &n, &err), DSQ_OK);
    assert_int_equal(n, 1000000);
    assert_int_equal(dsq_parse_size("2g", &n, &err), DSQ_OK);
    assert_int_equal(n, 2000000000u);
    static const char *const bad[] = {"", "0", "0M", "10X", "M", "-1", "1MB", "18446744073709552G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsq_err e = {0};
        assert_int_equal(dsq_parse_size(bad[i], &n, &e), DSQ_INVALID_ARG);
        assert_non_null(strstr(e.text, "expected a positive number of bytes"));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_real),
        cmocka_unit_test(test_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
