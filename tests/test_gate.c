/* tests/test_gate.c: the verify gate (verify/gate.h) on hand-made results,
 * where the expected verdicts follow from the thresholds' definitions
 * (inclusive limits, a NaN fails, no threshold is no verdict). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "verify/gate.h"

static dsq_kld_result result(double ratio, double kld, double p99, double top1, int exact) {
    dsq_kld_result r;
    memset(&r, 0, sizeof r);
    r.ppl_ratio = ratio;
    r.kld_mean = kld;
    r.kld_p99 = p99;
    r.top1 = top1;
    r.exact = exact;
    return r;
}

static void test_no_threshold_is_no_verdict(void **state) {
    (void)state;
    dsq_gate g;
    dsq_gate_init(&g);
    assert_int_equal(dsq_gate_count(&g), 0);
    /* a different model altogether (the tiny llama against the tiny DeepSeek) */
    const dsq_kld_result r = result(1.28, 0.53, 2.1, 0.30, 1);
    dsq_gate_result out;
    dsq_gate_eval(&g, &r, &out);
    assert_int_equal(out.verdict, DSQ_VERDICT_NONE);
    assert_int_equal(out.n_failed, 0);
    assert_string_equal(out.message, "");
}

static void test_limits(void **state) {
    (void)state;
    dsq_gate g;
    dsq_gate_init(&g);
    g.limit[DSQ_GATE_PPL_RATIO] = 1.02;
    g.limit[DSQ_GATE_KLD] = 0.01;
    g.limit[DSQ_GATE_TOP1] = 0.9;
    assert_int_equal(dsq_gate_count(&g), 3);
    dsq_gate_result out;
    /* on the limits: inclusive, a pass; the unset p99 is not checked */
    dsq_kld_result r = result(1.02, 0.01, 99.0, 0.9, 1);
    dsq_gate_eval(&g, &r, &out);
    assert_int_equal(out.verdict, DSQ_VERDICT_PASS);
    assert_false(out.kld_is_bound);
    /* two crossed, named in order */
    r = result(1.28, 0.53, 2.0, 0.95, 1);
    dsq_gate_eval(&g, &r, &out);
    assert_int_equal(out.verdict, DSQ_VERDICT_FAIL);
    assert_int_equal(out.n_failed, 2);
    assert_true(out.failed[DSQ_GATE_PPL_RATIO] && out.failed[DSQ_GATE_KLD] &&
                !out.failed[DSQ_GATE_TOP1] && !out.failed[DSQ_GATE_KLD_P99]);
    assert_string_equal(out.message,
                        "ppl ratio 1.280000 > max-ppl-ratio 1.02; mean KLD 0.530000 > max-kld 0.01");
    /* top-1 fails below its minimum; a NaN fails any check */
    r = result(NAN, 0.0, 0.0, 0.5, 1);
    dsq_gate_eval(&g, &r, &out);
    assert_true(out.failed[DSQ_GATE_PPL_RATIO] && out.failed[DSQ_GATE_TOP1] &&
                !out.failed[DSQ_GATE_KLD]);
    assert_non_null(strstr(out.message, "top-1 agreement 0.500000 < min-top1 0.9"));
    /* a KLD threshold checked against a lower bound is flagged */
    r = result(1.0, 0.001, 0.01, 0.99, 0);
    dsq_gate_eval(&g, &r, &out);
    assert_int_equal(out.verdict, DSQ_VERDICT_PASS);
    assert_true(out.kld_is_bound);
    assert_string_equal(dsq_gate_name(DSQ_GATE_KLD_P99), "max-kld-p99");
    assert_string_equal(dsq_gate_key(DSQ_GATE_TOP1), "min_top1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_threshold_is_no_verdict),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
