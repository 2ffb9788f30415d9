/* tests/test_fp8_scales.c: every command refuses a bad FP8 block scale the same way.
 *
 * The checkpoint is the team's tiny DeepSeek-V3 FP8 model (SHARED/data/tiny-models) with one
 * scale of a layer-0 weight spoiled in a copy of its shard: a NaN, an infinity, a shape that
 * is not [ceil(M/128), ceil(N/128)] (the same values as [rows*cols, 1]), or a BF16 scale.
 * What a scale must be is the format's definition (specs/formats.md: DeepSeek FP8,
 * weight_dequant's per-block scale_inv, F32); what each command must do is issue #9's: exit 3
 * (bad input), one line on stderr naming the scale tensor and the fault, no output. Commands:
 * `convert fp8 bf16`, `quantize` to F32 (which used to pass a NaN scale through) and to
 * Q8_0, and `ppl` (the forward pass's reader). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "formats/safetensors.h"
#include "testutil.h"

#define DS_FP8 "data/tiny-models/tiny-deepseek-v3-fp8"

typedef enum fault { F_NAN, F_INF, F_SHAPE, F_DTYPE } fault;

/* Copies the model into dir, rewriting the shard that holds a layer-0 scale with `f`
 * applied to it; *scale gets its name. */
static void spoiled_copy(const char *dir, fault f, char *scale, size_t scale_size) {
    char *src = tu_shared_path(DS_FP8);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s'/* '%s'/ && chmod u+w '%s'/*", dir, src,
             dir, dir);
    assert_int_equal(tu_system(cmd), 0);
    scale[0] = '\0';
    for (int k = 1; k <= 2 && scale[0] == '\0'; k++) {
        char name[64];
        snprintf(name, sizeof name, "model-0000%d-of-00002.safetensors", k);
        char *path = tu_join(src, name);
        dsq_st *st = NULL;
        dsq_err err = {0};
        assert_int_equal(dsq_st_open(&st, path, &err), DSQ_OK);
        size_t target = SIZE_MAX;
        for (size_t i = 0; i < dsq_st_count(st) && target == SIZE_MAX; i++) {
            const char *n = dsq_st_tensor(st, i)->name;
            const size_t len = strlen(n);
            if (strncmp(n, "model.layers.0.", 15) == 0 && len > 10 &&
                strcmp(n + len - 10, "_scale_inv") == 0)
                target = i;
        }
        if (target != SIZE_MAX) {
            const dsq_tensor_view *sv = dsq_st_tensor(st, target);
            snprintf(scale, scale_size, "%s", sv->name);
            dsq_st_writer *w = NULL;
            assert_int_equal(dsq_st_writer_init(&w, &err), DSQ_OK);
            for (size_t i = 0; i < dsq_st_count(st); i++) {
                const dsq_tensor_view *v = dsq_st_tensor(st, i);
                int64_t shape[2] = {v->ndim > 0 ? v->shape[0] : 1, v->ndim > 1 ? v->shape[1] : 1};
                dsq_dtype dt = v->dtype;
                if (i == target && f == F_SHAPE) {
                    shape[0] *= shape[1];
                    shape[1] = 1;
                    if (shape[0] == v->shape[0]) /* [n, 1] already: make it [1, n] */
                        shape[1] = shape[0], shape[0] = 1;
                }
                if (i == target && f == F_DTYPE)
                    dt = DSQ_DTYPE_BF16;
                assert_int_equal(dsq_st_writer_add(w, v->name, dt, v->ndim,
                                                   i == target ? shape : v->shape, &err),
                                 DSQ_OK);
            }
            assert_int_equal(dsq_st_writer_open(w, dir, name, &err), DSQ_OK);
            for (size_t k2 = 0; k2 < dsq_st_writer_count(w); k2++) {
                const size_t i = dsq_st_writer_order(w, k2);
                const dsq_tensor_view *v = dsq_st_tensor(st, i);
                const size_t nb = (size_t)dsq_st_writer_tensor_bytes(w, i);
                uint8_t *buf = malloc(nb + 1);
                memcpy(buf, v->data, nb); /* BF16: the first half of the F32 bytes */
                if (i == target && (f == F_NAN || f == F_INF)) {
                    const float bad = f == F_NAN ? NAN : INFINITY;
                    memcpy(buf, &bad, 4); /* scale[0][0], little-endian like the file */
                }
                assert_int_equal(dsq_st_writer_write(w, buf, nb, &err), DSQ_OK);
                free(buf);
            }
            assert_int_equal(dsq_st_writer_finish(w, NULL, &err), DSQ_OK);
            dsq_st_writer_free(w);
        }
        dsq_st_close(st);
        free(path);
    }
    assert_true(scale[0] != '\0');
    free(src);
}

/* `dsq ARGS` exits 3 with one stderr line holding every fragment, and writes no `out`. */
static void expect_refused(const char *args, const char *out, const char *frag1,
                           const char *frag2) {
    char *errf = tu_group_path("err.txt");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s 2> '%s' > /dev/null", tu_dsq_bin(), args, errf);
    const int rc = tu_system(cmd);
    size_t n = 0;
    char *msg = (char *)tu_read_file(errf, &n);
    msg = realloc(msg, n + 1);
    msg[n] = '\0';
    if (rc != 3 || strstr(msg, frag1) == NULL || strstr(msg, frag2) == NULL || n == 0 ||
        strchr(msg, '\n') != msg + n - 1)
        fail_msg("dsq %s: exit %d, expected 3 and one line with '%s' and '%s', got: %s", args,
                 rc, frag1, frag2, msg);
    assert_false(tu_file_exists(out));
    free(msg);
    free(errf);
}

static void check_fault(fault f, const char *what) {
    char *dir = tu_group_path(what);
    char *out = tu_group_path("out");
    char *gguf = tu_group_path("out.gguf");
    char *tokens = tu_shared_path("data/tiny-models/eval.tokens.txt");
    char scale[256], quoted[300], args[4096];
    spoiled_copy(dir, f, scale, sizeof scale);
    snprintf(quoted, sizeof quoted, "tensor '%s'", scale);
    const char *frag = f == F_NAN     ? "scale[0][0] is NaN"
                       : f == F_INF   ? "scale[0][0] is infinite"
                       : f == F_SHAPE ? "does not match weight"
                                      : "scale is BF16, expected F32";
    snprintf(args, sizeof args, "convert fp8 bf16 '%s' '%s' -q", dir, out);
    expect_refused(args, out, quoted, frag);
    snprintf(args, sizeof args, "quantize '%s' '%s' --type F32 -q", dir, gguf);
    expect_refused(args, gguf, quoted, frag);
    snprintf(args, sizeof args, "quantize '%s' '%s' --type Q8_0 -q", dir, gguf);
    expect_refused(args, gguf, quoted, frag);
    snprintf(args, sizeof args, "ppl '%s' --tokens '%s' --ctx 64 --chunks 1 -q", dir, tokens);
    expect_refused(args, gguf, quoted, frag);
    tu_rm_rf(dir);
    free(dir);
    free(out);
    free(gguf);
    free(tokens);
}

static void test_nan_scale(void **state) {
    (void)state;
    check_fault(F_NAN, "nan");
}

static void test_inf_scale(void **state) {
    (void)state;
    check_fault(F_INF, "inf");
}

static void test_shape(void **state) {
    (void)state;
    check_fault(F_SHAPE, "shape");
}

static void test_dtype(void **state) {
    (void)state;
    check_fault(F_DTYPE, "dtype");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nan_scale),
        cmocka_unit_test(test_inf_scale),
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_dtype),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, tu_group_dir_teardown);
}
