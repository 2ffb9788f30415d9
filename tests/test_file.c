/* tests/test_file.c: the output pre-flight checks of core/file.h.
 *
 * Expected values come from the header's contract (issue #10 item 6): a file
 * output needs an existing writable parent directory and must not name a
 * directory; a directory output is absent with a creatable parent or an
 * existing writable directory, non-empty when it holds anything but dsq's
 * own temporaries (".NAME.dsqtmp.XXXXXX", core/file.c's naming). Messages
 * name the path exactly as given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_file),
        cmocka_unit_test(test_out_dir),
        cmocka_unit_test(test_permission),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, tu_group_dir_teardown);
}
