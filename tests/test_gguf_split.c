/* tests/test_gguf_split.c: split GGUF sets read as one model (formats/gguf_split.h).
 *
 * Where the expected behaviour comes from (llama.cpp, release of 2025-02, read for facts):
 *  - names: llama_split_path / llama_split_prefix (src/llama.cpp): "%s-%05d-of-%05d.gguf"
 *    with the 1-based position; a file whose name lacks that ending for its own split.no
 *    and split.count cannot be completed ("invalid split file name").
 *  - llama_model_loader's constructor (src/llama-model-loader.cpp): metadata from the file
 *    given; split.count (UINT16) > 1 makes it a set; split.no of that file must be 0 ("model
 *    must be loaded with the first split"); every other file must have split.no (UINT16)
 *    equal to its position; a tensor name seen in an earlier file is "duplicated";
 *    split.tensors.count (INT32) must equal the tensors loaded.
 *  - dsq adds: split.count and split.tensors.count of every file equal the first's.
 *  - key types: gguf-split and gguf-py write split.no and split.count as UINT16 and
 *    split.tensors.count as INT32 (examples/gguf-split, gguf-py/gguf/gguf_writer.py).
 *
 * The sets are written here with dsq's GGUF writer: every tensor F32 [4], its values
 * tag(name) + 0..3 with tag the sum of the name's bytes, so that a tensor's data can be
 * checked to come from its own file. Each failure case changes one thing in a good
 * three-file set of six tensors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/gguf_split.h"
#include "tests/testutil.h"

#define ABSENT -1

/* One file of a set as written: its split keys (ABSENT to leave one out) and tensors. */
typedef struct part {
    int no, count, tensors;
    int no_as_i32;      /* write split.no as INT32 instead of UINT16 */
    const char *names;  /* space-separated tensor names, "" for none */
} part;

static float tag(const char *name) {
    unsigned t = 0;
    for (const char *p = name; *p; p++)
        t += (unsigned char)*p;
    return (float)t;
}

#define OK(x)                                                                                      \
    do {                                                                                           \
        if ((x) != DSQ_OK)                                                                         \
            fail_msg("%s failed", #x);                                                             \
    } while (0)

static void write_part(const char *dir, const char *file, const part *p, int first) {
    dsq_gguf_writer *w = NULL;
    char names[256], *save = NULL;
    const int64_t ne[1] = {4};
    OK(dsq_gguf_writer_init(&w, NULL));
    if (first) /* only the first file of a set has metadata */
        OK(dsq_gguf_writer_add_str(w, "general.architecture", "llama", 5, NULL));
    if (p->no != ABSENT) {
        if (p->no_as_i32)
            OK(dsq_gguf_writer_add_i32(w, "split.no", p->no, NULL));
        else
            OK(dsq_gguf_writer_add_u16(w, "split.no", (uint16_t)p->no, NULL));
    }
    if (p->count != ABSENT)
        OK(dsq_gguf_writer_add_u16(w, "split.count", (uint16_t)p->count, NULL));
    if (p->tensors != ABSENT)
        OK(dsq_gguf_writer_add_i32(w, "split.tensors.count", p->tensors, NULL));
    snprintf(names, sizeof names, "%s", p->names);
    for (char *n = strtok_r(names, " ", &save); n; n = strtok_r(NULL, " ", &save))
        OK(dsq_gguf_writer_add_tensor(w, n, DSQ_DTYPE_F32, 1, ne, NULL));
    OK(dsq_gguf_writer_begin(w, dir, file, NULL));
    snprintf(names, sizeof names, "%s", p->names);
    for (char *n = strtok_r(names, " ", &save); n; n = strtok_r(NULL, " ", &save)) {
        const float v[4] = {tag(n), tag(n) + 1, tag(n) + 2, tag(n) + 3};
        OK(dsq_gguf_writer_write(w, v, sizeof v, NULL));
    }
    OK(dsq_gguf_writer_commit(w, NULL));
    dsq_gguf_writer_free(w);
}

/* Writes parts[0..n) as dir/m-0000k-of-0000n.gguf (named by array position, whatever
 * their keys say). */
static void write_set(const char *dir, const part *parts, int n) {
    for (int k = 0; k < n; k++) {
        char file[64];
        snprintf(file, sizeof file, "m-%05d-of-%05d.gguf", k + 1, n);
        write_part(dir, file, &parts[k], k == 0);
    }
}

static char *path_in(const char *dir, const char *file) {
    const size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

/* The good set: three files, six tensors, two per file. */
static void good_set(part p[3]) {
    p[0] = (part){0, 3, 6, 0, "token_embd.weight output_norm.weight"};
    p[1] = (part){1, 3, 6, 0, "blk.0.attn_q.weight blk.0.attn_k.weight"};
    p[2] = (part){2, 3, 6, 0, "blk.1.attn_q.weight output.weight"};
}

/* Opens dir/file and expects failure `want` with a message naming `names` (a file) and
 * containing `what`. */
static void expect_fail(const char *dir, const char *file, dsq_status want, const char *names,
                        const char *what) {
    char *path = path_in(dir, file);
    dsq_gguf_set *s = NULL;
    dsq_err err = {0};
    const dsq_status st = dsq_gguf_set_open(&s, path, &err);
    assert_null(s);
    if (st != want)
        fail_msg("%s: status %s, expected %s: %s", file, dsq_status_name(st),
                 dsq_status_name(want), err.text);
    if (strstr(err.text, names) == NULL || strstr(err.text, what) == NULL)
        fail_msg("message '%s' lacks '%s' or '%s'", err.text, names, what);
    if (strchr(err.text, '\n') != NULL)
        fail_msg("message is not one line: %s", err.text);
    free(path);
}

static dsq_gguf_set *open_ok(const char *dir, const char *file) {
    char *path = path_in(dir, file);
    dsq_gguf_set *s = NULL;
    dsq_err err = {0};
    if (dsq_gguf_set_open(&s, path, &err) != DSQ_OK)
        fail_msg("%s: %s", path, err.text);
    free(path);
    return s;
}

/* Every tensor of s has its own values (so its data points into the right file). */
static void check_data(const dsq_gguf_set *s) {
    for (int64_t i = 0; i < dsq_gguf_set_tensor_count(s); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_set_tensor_at(s, i);
        float v[4];
        assert_int_equal(t->nbytes, sizeof v);
        memcpy(v, t->data, sizeof v);
        for (int j = 0; j < 4; j++)
            assert_true(v[j] == tag(t->name) + (float)j);
    }
}

/* ==== sets that open ======================================================================== */

static void test_three_files(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    write_set(dir, p, 3);
    dsq_gguf_set *s = open_ok(dir, "m-00001-of-00003.gguf");
    assert_int_equal(dsq_gguf_set_file_count(s), 3);
    assert_int_equal(dsq_gguf_set_tensor_count(s), 6);
    /* file by file, each in its own order */
    static const char *const order[] = {"token_embd.weight",   "output_norm.weight",
                                        "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                                        "blk.1.attn_q.weight", "output.weight"};
    for (int64_t i = 0; i < 6; i++) {
        assert_string_equal(dsq_gguf_set_tensor_at(s, i)->name, order[i]);
        assert_int_equal(dsq_gguf_set_tensor_file(s, i), (int)(i / 2));
        assert_int_equal(dsq_gguf_set_find_tensor(s, order[i]), i);
    }
    assert_null(dsq_gguf_set_tensor_at(s, 6));
    assert_null(dsq_gguf_set_tensor_at(s, -1));
    assert_int_equal(dsq_gguf_set_tensor_file(s, 6), -1);
    assert_int_equal(dsq_gguf_set_find_tensor(s, "blk.9.attn_q.weight"), -1);
    check_data(s);
    /* offsets are per file: the second tensor of file 1 follows the first, 32-aligned */
    assert_int_equal(dsq_gguf_set_tensor_at(s, 3)->offset, 32);
    /* metadata is the first file's */
    assert_ptr_equal(dsq_gguf_set_meta(s), dsq_gguf_set_file(s, 0));
    assert_true(dsq_gguf_find_key(dsq_gguf_set_meta(s), "general.architecture") >= 0);
    assert_int_equal(dsq_gguf_find_key(dsq_gguf_set_file(s, 1), "general.architecture"), -1);
    uint64_t bytes = 0;
    for (int k = 0; k < 3; k++)
        bytes += dsq_gguf_size(dsq_gguf_set_file(s, k));
    assert_int_equal(dsq_gguf_set_bytes(s), bytes);
    char *p2 = path_in(dir, "m-00002-of-00003.gguf");
    assert_string_equal(dsq_gguf_set_path(s, 1), p2);
    assert_null(dsq_gguf_set_path(s, 3));
    assert_null(dsq_gguf_set_file(s, 3));
    free(p2);
    dsq_gguf_set_close(s);
    tu_rm_rf(dir);
    free(dir);
}

/* gguf-split --no-tensor-first-split: the first file holds only metadata */
static void test_first_file_without_tensors(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    p[0].names = "";
    p[0].tensors = p[1].tensors = p[2].tensors = 4;
    write_set(dir, p, 3);
    dsq_gguf_set *s = open_ok(dir, "m-00001-of-00003.gguf");
    assert_int_equal(dsq_gguf_set_tensor_count(s), 4);
    assert_int_equal(dsq_gguf_set_tensor_file(s, 0), 1);
    assert_int_equal(dsq_gguf_set_tensor_file(s, 3), 2);
    assert_int_equal(dsq_gguf_set_find_tensor(s, "output.weight"), 3);
    check_data(s);
    dsq_gguf_set_close(s);
    tu_rm_rf(dir);
    free(dir);
}

/* no split keys, split.count 1, split.count 0 (gguf-split --merge's output): one file,
 * whatever its name */
static void test_single_files(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    const part plain = {ABSENT, ABSENT, ABSENT, 0, "a b c"};
    const part one = {0, 1, 3, 0, "a b c"};
    const part merged = {0, 0, 3, 0, "a b c"};
    write_part(dir, "plain.gguf", &plain, 1);
    write_part(dir, "one-00001-of-00001.gguf", &one, 1);
    write_part(dir, "merged.gguf", &merged, 1);
    static const char *const files[] = {"plain.gguf", "one-00001-of-00001.gguf", "merged.gguf"};
    for (int f = 0; f < 3; f++) {
        dsq_gguf_set *s = open_ok(dir, files[f]);
        assert_int_equal(dsq_gguf_set_file_count(s), 1);
        assert_int_equal(dsq_gguf_set_tensor_count(s), 3);
        assert_int_equal(dsq_gguf_set_find_tensor(s, "c"), 2);
        check_data(s);
        dsq_gguf_set_close(s);
    }
    tu_rm_rf(dir);
    free(dir);
}

/* ==== sets that do not ====================================================================== */

static void test_later_split_given(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    write_set(dir, p, 3);
    expect_fail(dir, "m-00002-of-00003.gguf", DSQ_FORMAT, "m-00001-of-00003.gguf",
                "this is split 2 of 3 (split.no 1); pass the first split");
    expect_fail(dir, "m-00003-of-00003.gguf", DSQ_FORMAT, "m-00003-of-00003.gguf",
                "pass the first split, ");
    tu_rm_rf(dir);
    free(dir);
}

static void test_missing_split(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    write_set(dir, p, 3);
    char *gone = path_in(dir, "m-00003-of-00003.gguf");
    assert_int_equal(remove(gone), 0);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_NOT_FOUND, gone, "missing: split 3 of 3");
    free(gone);
    tu_rm_rf(dir);
    free(dir);
}

static void test_first_misnamed(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    write_part(dir, "model.gguf", &p[0], 1);
    expect_fail(dir, "model.gguf", DSQ_FORMAT, "model.gguf",
                "split 1 of 3 but the name does not end in -00001-of-00003.gguf");
    /* the name of another set size: its files are not this set's */
    write_part(dir, "m-00001-of-00004.gguf", &p[0], 1);
    expect_fail(dir, "m-00001-of-00004.gguf", DSQ_FORMAT, "m-00001-of-00004.gguf",
                "does not end in -00001-of-00003.gguf");
    tu_rm_rf(dir);
    free(dir);
}

/* split 2 copied from a four-file set */
static void test_split_count_differs(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    p[1].count = 4;
    write_set(dir, p, 3);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, "m-00002-of-00003.gguf",
                "split.count is 4 but");
    tu_rm_rf(dir);
    free(dir);
}

/* split 3 is split 2 of a set of the same size (renamed, or written by a buggy tool) */
static void test_split_no_differs(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    p[2].no = 1;
    write_set(dir, p, 3);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, "m-00003-of-00003.gguf",
                "split.no is 1 but the file is split 3 of 3 (split.no 2)");
    tu_rm_rf(dir);
    free(dir);
}

/* split 2 from another model of three files: its tensor total differs */
static void test_tensor_total_differs(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    p[1].tensors = 7;
    write_set(dir, p, 3);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, "m-00002-of-00003.gguf",
                "split.tensors.count is 7 but");
    tu_rm_rf(dir);
    free(dir);
}

/* every file agrees on 7, but only 6 tensors are there */
static void test_tensor_total_wrong(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    p[0].tensors = p[1].tensors = p[2].tensors = 7;
    write_set(dir, p, 3);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, "m-00001-of-00003.gguf",
                "split.tensors.count is 7 but the 3 splits hold 6 tensors");
    tu_rm_rf(dir);
    free(dir);
}

static void test_duplicated_tensor(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    p[2].names = "blk.1.attn_q.weight blk.0.attn_k.weight";
    write_set(dir, p, 3);
    char *two = path_in(dir, "m-00002-of-00003.gguf");
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, two,
                "m-00003-of-00003.gguf: tensor 'blk.0.attn_k.weight' is also in");
    free(two);
    tu_rm_rf(dir);
    free(dir);
}

static void test_split_key_missing_or_mistyped(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    p[1].no = ABSENT;
    write_set(dir, p, 3);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, "m-00002-of-00003.gguf",
                "no split.no key");
    good_set(p);
    p[2].tensors = ABSENT;
    write_set(dir, p, 3);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, "m-00003-of-00003.gguf",
                "no split.tensors.count key");
    good_set(p);
    p[1].no_as_i32 = 1;
    write_set(dir, p, 3);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, "m-00002-of-00003.gguf",
                "split.no is INT32, expected UINT16");
    tu_rm_rf(dir);
    free(dir);
}

/* a damaged split gets the single-file reader's message, which names it */
static void test_damaged_split(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    part p[3];
    good_set(p);
    write_set(dir, p, 3);
    char *two = path_in(dir, "m-00002-of-00003.gguf");
    size_t n = 0;
    uint8_t *bytes = tu_read_file(two, &n);
    tu_write_file(two, bytes, n - 20); /* the last tensor's data cut short */
    free(bytes);
    expect_fail(dir, "m-00001-of-00003.gguf", DSQ_FORMAT, two, "byte");
    free(two);
    tu_rm_rf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_files),
        cmocka_unit_test(test_first_file_without_tensors),
        cmocka_unit_test(test_single_files),
        cmocka_unit_test(test_later_split_given),
        cmocka_unit_test(test_missing_split),
        cmocka_unit_test(test_first_misnamed),
        cmocka_unit_test(test_split_count_differs),
        cmocka_unit_test(test_split_no_differs),
        cmocka_unit_test(test_tensor_total_differs),
        cmocka_unit_test(test_tensor_total_wrong),
        cmocka_unit_test(test_duplicated_tensor),
        cmocka_unit_test(test_split_key_missing_or_mistyped),
        cmocka_unit_test(test_damaged_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
