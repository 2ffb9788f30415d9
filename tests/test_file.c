/* tests/test_file.c: the output pre-flight checks of core/file.h.
 *
 * Expected values come from the header's contract (issue #10 item 6): a file
 * output needs an existing writable parent directory and must not name a
 * directory; a directory output is absent with a creatable parent or an
 * existing writable directory, non-empty when it holds anything but dsq's
 * own temporaries (".NAME.dsqtmp.XXXXXX", core/file.c's naming). Messages
 * name the path exactly as given.
 *
 * core/rfile.h: the parts hash is, by its definition there, XXH3-64 of the
 * parts' XXH3-64s as 8 little-endian bytes each; the test computes that with
 * libxxhash directly and checks that setting the parts in any order, or
 * reading the file front to back, gives it. The temp sweep removes only
 * temporaries whose flock is free (core/file.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/file.h"
#include "core/rfile.h"
#include "tests/testutil.h"

static void expect_err(dsq_status got, dsq_status want, const dsq_err *err, const char *text) {
    assert_int_equal(got, want);
    assert_string_equal(err->text, text);
}

static void test_out_file(void **state) {
    (void)state;
    dsq_err err = {0};
    char *sub = tu_group_path("sub");
    char *file = tu_group_path("plain");
    char *missing = tu_group_path("nosuch/x.gguf");
    char *under_file = tu_group_path("plain/x.gguf");
    char *slash = tu_group_path("new/");
    char want[1024];
    assert_int_equal(mkdir(sub, 0777), 0);
    tu_put(tu_group_dir, "plain", "x", 1);

    /* a new file in an existing directory, and an existing file it replaces */
    char *fresh = tu_group_path("out.gguf");
    assert_int_equal(dsq_check_out_file(fresh, &err), DSQ_OK);
    assert_int_equal(dsq_check_out_file(file, &err), DSQ_OK);
    free(fresh);

    expect_err(dsq_check_out_file(sub, &err), DSQ_INVALID_ARG, &err,
               (snprintf(want, sizeof want, "%s: is a directory", sub), want));
    dsq_err_clear(&err);
    expect_err(dsq_check_out_file(slash, &err), DSQ_INVALID_ARG, &err,
               (snprintf(want, sizeof want, "%s: is a directory", slash), want));
    dsq_err_clear(&err);
    expect_err(dsq_check_out_file(missing, &err), DSQ_IO, &err,
               (snprintf(want, sizeof want, "%s: no such directory '%s/nosuch'", missing,
                         tu_group_dir),
                want));
    dsq_err_clear(&err);
    expect_err(dsq_check_out_file(under_file, &err), DSQ_IO, &err,
               (snprintf(want, sizeof want, "%s: '%s' is not a directory", under_file, file),
                want));
    dsq_err_clear(&err);
    /* a bare name lives in the working directory, named as given */
    assert_int_equal(dsq_check_out_file("x-preflight.gguf", &err), DSQ_OK);
    free(sub);
    free(file);
    free(missing);
    free(under_file);
    free(slash);
}

static void test_out_dir(void **state) {
    (void)state;
    dsq_err err = {0};
    char want[1024];
    int non_empty = -1;
    char *d = tu_group_path("outdir");
    char *absent = tu_group_path("outdir/new/");
    char *deep = tu_group_path("nosuch/new");
    char *file = tu_group_path("afile");
    tu_put(tu_group_dir, "afile", "x", 1);

    assert_int_equal(mkdir(d, 0777), 0);
    assert_int_equal(dsq_check_out_dir(d, &non_empty, &err), DSQ_OK);
    assert_int_equal(non_empty, 0);
    /* dsq's own temporary does not make it non-empty; any other entry does */
    tu_put(d, ".model.safetensors.dsqtmp.AbC123", "t", 1);
    assert_int_equal(dsq_check_out_dir(d, &non_empty, &err), DSQ_OK);
    assert_int_equal(non_empty, 0);
    non_empty = -1;
    assert_int_equal(dsq_check_out_dir(absent, &non_empty, &err), DSQ_OK);
    assert_int_equal(non_empty, 0);
    tu_put(d, ".hidden", "h", 1);
    assert_int_equal(dsq_check_out_dir(d, &non_empty, &err), DSQ_OK);
    assert_int_equal(non_empty, 1);

    expect_err(dsq_check_out_dir(deep, &non_empty, &err), DSQ_IO, &err,
               (snprintf(want, sizeof want, "%s: no such directory '%s/nosuch'", deep,
                         tu_group_dir),
                want));
    dsq_err_clear(&err);
    expect_err(dsq_check_out_dir(file, &non_empty, &err), DSQ_INVALID_ARG, &err,
               (snprintf(want, sizeof want, "%s: not a directory", file), want));
    free(d);
    free(absent);
    free(deep);
    free(file);
}

static void test_permission(void **state) {
    (void)state;
    /* root passes every permission check: only an ordinary user can see this */
    if (geteuid() == 0)
        skip();
    dsq_err err = {0};
    char want[1024];
    int non_empty = 0;
    char *ro = tu_group_path("ro");
    char *inside = tu_group_path("ro/x.gguf");
    assert_int_equal(mkdir(ro, 0555), 0);
    expect_err(dsq_check_out_file(inside, &err), DSQ_IO, &err,
               (snprintf(want, sizeof want, "%s: permission denied", inside), want));
    dsq_err_clear(&err);
    expect_err(dsq_check_out_dir(ro, &non_empty, &err), DSQ_IO, &err,
               (snprintf(want, sizeof want, "%s: permission denied", ro), want));
    chmod(ro, 0755);
    free(ro);
    free(inside);
}

static void test_parts_hash(void **state) {
    (void)state;
    enum { N = 100000 };
    static uint8_t data[N];
    for (size_t i = 0; i < N; i++)
        data[i] = (uint8_t)(i * 131 + (i >> 9));
    tu_put(tu_group_dir, "parts.bin", data, N);
    char *path = tu_group_path("parts.bin");
    const uint64_t ends[4] = {8, 4096, 70001, N};
    /* the definition, with the library */
    uint8_t le[32];
    uint64_t begin = 0;
    for (int i = 0; i < 4; i++) {
        const uint64_t h = XXH3_64bits(data + begin, (size_t)(ends[i] - begin));
        for (int b = 0; b < 8; b++)
            le[8 * i + b] = (uint8_t)(h >> (8 * b));
        begin = ends[i];
    }
    const uint64_t want = XXH3_64bits(le, sizeof le);

    dsq_parts_hash p;
    dsq_err err = {0};
    uint64_t got = 0;
    assert_int_equal(dsq_parts_init(&p, 4, ends, &err), DSQ_OK);
    assert_int_equal(dsq_parts_find(&p, 4096), 2);
    assert_int_equal(dsq_parts_find(&p, 4097), 4); /* no part starts there */
    /* set out of order, as a converter reads them */
    const int order[4] = {2, 0, 3, 1};
    for (int k = 0; k < 3; k++) {
        const int i = order[k];
        const uint64_t b0 = i == 0 ? 0 : ends[i - 1];
        dsq_parts_set(&p, (size_t)i, XXH3_64bits(data + b0, (size_t)(ends[i] - b0)));
    }
    assert_int_equal(dsq_parts_digest(&p, &got, &err), DSQ_INVALID_ARG); /* part 1 missing */
    dsq_parts_set(&p, 1, XXH3_64bits(data + 8, 4096 - 8));
    assert_int_equal(dsq_parts_digest(&p, &got, &err), DSQ_OK);
    assert_true(got == want);
    dsq_parts_free(&p);

    /* front to back through a buffer smaller than a part */
    uint8_t buf[1000];
    assert_int_equal(dsq_parts_init(&p, 4, ends, &err), DSQ_OK);
    assert_int_equal(dsq_parts_hash_file(&p, path, buf, sizeof buf, &err), DSQ_OK);
    assert_int_equal(dsq_parts_digest(&p, &got, &err), DSQ_OK);
    assert_true(got == want);
    dsq_parts_free(&p);
    /* a file of another size is a mismatch, not a read error */
    const uint64_t longer[1] = {N + 1};
    assert_int_equal(dsq_parts_init(&p, 1, longer, &err), DSQ_OK);
    assert_int_equal(dsq_parts_hash_file(&p, path, buf, sizeof buf, &err), DSQ_MISMATCH);
    dsq_parts_free(&p);

    /* pread: exact ranges, a range past the end named as truncation */
    dsq_rfile f;
    dsq_err_clear(&err);
    assert_int_equal(dsq_rfile_open(&f, path, &err), DSQ_OK);
    assert_int_equal(dsq_rfile_read(&f, buf, 1000, N - 1000, &err), DSQ_OK);
    assert_memory_equal(buf, data + N - 1000, 1000);
    assert_int_equal(dsq_rfile_read(&f, buf, 1000, N - 999, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "truncated"));
    dsq_rfile_close(&f);
    free(path);
}

static void test_sweep_temps(void **state) {
    (void)state;
    dsq_err err = {0};
    char *d = tu_group_path("sweep");
    assert_int_equal(mkdir(d, 0777), 0);
    tu_put(d, ".a.gguf.dsqtmp.dead01", "x", 1); /* no process holds it */
    tu_put(d, ".b.gguf.dsqtmp.dead02", "x", 1);
    tu_put(d, "a.gguf", "keep", 4);
    tu_put(d, ".a.gguf.notours", "keep", 4);
    dsq_outfile *live = NULL; /* this process writes it: locked */
    assert_int_equal(dsq_outfile_open(&live, d, "a.gguf", &err), DSQ_OK);
    size_t removed = 0;
    assert_int_equal(dsq_sweep_temps(d, "a.gguf", &removed, &err), DSQ_OK);
    assert_int_equal(removed, 1); /* a's dead one; not b's, not the live one */
    char *b = tu_join(d, ".b.gguf.dsqtmp.dead02");
    assert_true(tu_file_exists(b));
    assert_int_equal(dsq_sweep_temps(d, NULL, &removed, &err), DSQ_OK);
    assert_int_equal(removed, 1);
    assert_false(tu_file_exists(b));
    int non_empty = 0;
    assert_int_equal(dsq_outfile_write(live, "z", 1, &err), DSQ_OK);
    assert_int_equal(dsq_outfile_commit(live, &err), DSQ_OK);
    char *a = tu_join(d, "a.gguf");
    size_t n = 0;
    uint8_t *got = tu_read_file(a, &n);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 'z');
    assert_int_equal(dsq_check_out_dir(d, &non_empty, &err), DSQ_OK);
    assert_int_equal(non_empty, 1);
    free(got), free(a), free(b), free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_file),
        cmocka_unit_test(test_out_dir),
        cmocka_unit_test(test_permission),
        cmocka_unit_test(test_parts_hash),
        cmocka_unit_test(test_sweep_temps),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, tu_group_dir_teardown);
}
