/* tests/test_awrite.c: the writer thread of core/awrite.h.
 *
 * Expected values come from the header's contract: bytes reach the sink in
 * job order and, within a job, in order, in pieces no larger than asked; a
 * job is written only as far as it is ready; the sink's first error comes
 * back, text and status, from push and from waiting on that job or a later
 * one, while waiting on an earlier job still succeeds; stop returns with a
 * job that will never be ready. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/awrite.h"

typedef struct sink_log {
    uint8_t *got;
    size_t n, cap, max_piece;
    size_t fail_at; /* the write that would pass this many bytes fails; 0: never */
    int calls;
} sink_log;

static dsq_status sink(void *user, const void *buf, size_t n, dsq_err *err) {
    sink_log *s = user;
    s->calls++;
    if (n > s->max_piece)
        s->max_piece = n;
    if (s->fail_at != 0 && s->n + n > s->fail_at)
        return dsq_err_set(err, DSQ_IO, "out.gguf: write failed: disk full");
    assert_true(s->n + n <= s->cap);
    memcpy(s->got + s->n, buf, n);
    s->n += n;
    return DSQ_OK;
}

typedef struct feeder {
    dsq_awrite *a;
    uint64_t job;
    size_t n, step;
} feeder;

/* makes a job ready a step at a time from another thread, as the quantizer's
 * threads do */
static void *feed(void *arg) {
    const feeder *f = arg;
    for (size_t r = f->step; r < f->n + f->step; r += f->step)
        dsq_awrite_ready(f->a, f->job, r < f->n ? r : f->n);
    return NULL;
}

static void test_order_and_pieces(void **state) {
    (void)state;
    enum { A = 100000, B = 3, C = 70001 };
    static uint8_t src[A + B + C];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 31 + (i >> 8));
    sink_log log = {calloc(1, sizeof src), 0, sizeof src, 0, 0, 0};
    dsq_err err = {0};
    dsq_awrite *a = NULL;
    uint64_t ja = 0, jb = 0, jc = 0, jz = 0;
    assert_int_equal(dsq_awrite_start(&a, 4096, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_push(a, sink, &log, src, A, 0, &ja, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_push(a, sink, &log, src + A, B, B, &jb, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_push(a, sink, &log, src + A + B, 0, 0, &jz, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_push(a, sink, &log, src + A + B, C, 1000, &jc, &err), DSQ_OK);
    assert_true(ja < jb && jb < jz && jz < jc);
    assert_int_equal(dsq_awrite_wait(a, 0, &err), DSQ_OK);
    /* nothing of a is ready, so nothing after it may be written */
    assert_int_equal(log.n, 0);
    feeder f = {a, ja, A, 777};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
    pthread_join(t, NULL);
    assert_int_equal(dsq_awrite_wait(a, jz, &err), DSQ_OK);
    assert_true(log.n >= A + B && log.n <= A + B + 1000); /* c only as far as it is ready */
    dsq_awrite_ready(a, jc, C);
    assert_int_equal(dsq_awrite_wait(a, jc, &err), DSQ_OK);
    assert_int_equal(log.n, sizeof src);
    assert_memory_equal(log.got, src, sizeof src);
    assert_true(log.max_piece <= 4096);
    dsq_awrite_stop(a);
    free(log.got);
}

static void test_error(void **state) {
    (void)state;
    static uint8_t src[50000];
    sink_log log = {calloc(1, sizeof src), 0, sizeof src, 0, 30000, 0};
    dsq_err err = {0};
    dsq_awrite *a = NULL;
    uint64_t j1 = 0, j2 = 0, j3 = 0, j4 = 0;
    assert_int_equal(dsq_awrite_start(&a, 1000, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_push(a, sink, &log, src, 20000, 20000, &j1, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_push(a, sink, &log, src, 20000, 20000, &j2, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_push(a, sink, &log, src, 10000, 0, &j3, &err), DSQ_OK);
    /* job 1 was written whole: no error for it */
    assert_int_equal(dsq_awrite_wait(a, j1, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_wait(a, j2, &err), DSQ_IO);
    assert_string_equal(err.text, "out.gguf: write failed: disk full");
    memset(&err, 0, sizeof err);
    assert_int_equal(dsq_awrite_wait(a, j3, &err), DSQ_IO); /* dropped, never ready */
    assert_string_equal(err.text, "out.gguf: write failed: disk full");
    assert_int_equal(dsq_awrite_push(a, sink, &log, src, 10, 10, &j4, &err), DSQ_IO);
    assert_int_equal(log.n, 30000);
    const int calls = log.calls;
    dsq_awrite_stop(a);
    assert_int_equal(log.calls, calls); /* nothing written after the error */
    free(log.got);
}

/* an abandoned job: stop must not wait for bytes that will never be ready */
static void test_stop_with_unready_job(void **state) {
    (void)state;
    static uint8_t src[1000];
    sink_log log = {calloc(1, sizeof src), 0, sizeof src, 0, 0, 0};
    dsq_err err = {0};
    dsq_awrite *a = NULL;
    uint64_t j = 0;
    assert_int_equal(dsq_awrite_start(&a, 100, &err), DSQ_OK);
    assert_int_equal(dsq_awrite_push(a, sink, &log, src, sizeof src, 300, &j, &err), DSQ_OK);
    dsq_awrite_stop(a);
    assert_true(log.n <= 300);
    dsq_awrite_stop(NULL);
    free(log.got);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_pieces),
        cmocka_unit_test(test_error),
        cmocka_unit_test(test_stop_with_unready_job),
    };
    return cmocka_run_group_tests_name("awrite", tests, NULL, NULL);
}
