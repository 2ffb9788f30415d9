/* tests/test_quantize_gguf.c: the GGUF side of `dsq quantize` and `dsq inspect`:
 * GGUF input, --imatrix (gguf_export/imatrix.h, both file forms), --split-max-size, and
 * `dsq inspect FILE.gguf`.
 *
 * Where the expected values come from:
 *  - stories260K.gguf: its SOURCE.txt (GGUF v3, all F32, 48 tensors, 19 KV, a 512-token
 *    vocabulary, context_length 2048, 1,185,376 bytes).
 *  - GGUF input: the same tensors through the same rules must give what the checkpoint
 *    path gives, byte for byte (that path is tied to llama-quantize in test_quantize_cmd);
 *    llama-quantize copies a tensor whose type does not change and refuses to requantize a
 *    quantized one without --allow-requantize ("requantizing from type q8_0 is disabled").
 *  - Hand-made imatrix files, values worked out by hand from the rules in imatrix.h
 *    (specs/formats.md §2.12): legacy values / ncall; GGUF in_sum2 / counts, 1.0 for a
 *    slice with count 0.
 *  - tests/data/tiny-llama.imatrix.dat is ours: made with llama.cpp's llama-imatrix (the
 *    Feb-2025 snapshot c392e50) on dsq's F32 GGUF of tiny-models/tiny-llama, run in
 *    ../shared/data/tiny-models as `llama-imatrix -m tiny-llama-f32.gguf -f eval.txt -o
 *    tiny-llama.imatrix.dat -c 128 --chunks 8 -t 2`. The XXH64 values below are those of
 *    the files llama-quantize (same snapshot) wrote from that F32 GGUF, run from the
 *    repository root as `llama-quantize --imatrix tests/data/tiny-llama.imatrix.dat
 *    tiny-llama-f32.gguf out.gguf T 2` (the path is recorded in quantize.imatrix.file).
 *  - Progress and a NaN weight: the summary's tensor byte count, the error text of
 *    convert/quantize_gguf.c, and the rule that no output, not even a temporary, is left.
 *  - Splits: llama.cpp's gguf-split (examples/gguf-split/gguf-split.cpp): names
 *    PREFIX-%05d-of-%05d.gguf, all metadata in the first split, split.no u16, split.count
 *    u16, split.tensors.count i32. dsq's splits of the tiny llama at 1M were also compared
 *    with gguf-split's splits of dsq's unsplit file: identical bytes (not part of the suite,
 *    which must not need llama.cpp). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_export/imatrix.h"
#include "convert/quantize_gguf.h"
#include "core/file.h"
#include "formats/gguf.h"
#include "quantize/quant.h"
#include "tests/testutil.h"

#define LLAMA   "data/tiny-models/tiny-llama"
#define DS_BF16 "data/tiny-models/tiny-deepseek-v3"
#define STORIES "data/stories260K-gguf/stories260K.gguf"

static char *llama_f32; /* dsq's F32 GGUF of the tiny llama, made once */

static dsq_qz_opts opts(const char *type) {
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    o.type = type;
    o.threads = 2;
    return o;
}

/* Quantizes in -> tmp/out_name; fails the test on error. */
static void quantize(const char *in, const char *out_name, const dsq_qz_opts *o) {
    char *out = tu_group_path(out_name);
    dsq_qz_summary s;
    dsq_err err = {0};
    if (dsq_quantize_gguf(in, out, o, &s, &err) != DSQ_OK)
        fail_msg("quantize %s -> %s: %s", in, out_name, err.text);
    dsq_qz_summary_free(&s);
    free(out);
}

static dsq_gguf *open_tmp(const char *name) {
    char *p = tu_group_path(name);
    dsq_gguf *g = tu_gguf_open(p);
    free(p);
    return g;
}

/* Every tensor of a and b: same names in the same order, types, shapes and bytes. */
static void expect_same_tensors(const dsq_gguf *a, const dsq_gguf *b) {
    assert_int_equal(dsq_gguf_tensor_count(a), dsq_gguf_tensor_count(b));
    for (int64_t i = 0; i < dsq_gguf_tensor_count(a); i++) {
        const dsq_gguf_tensor *x = dsq_gguf_tensor_at(a, i), *y = dsq_gguf_tensor_at(b, i);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->nbytes, y->nbytes);
        if (memcmp(x->data, y->data, x->nbytes) != 0)
            fail_msg("tensor %s: bytes differ", x->name);
    }
}

static int files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *x = tu_read_file(a, &na), *y = tu_read_file(b, &nb);
    const int eq = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

/* Runs `dsq ARGS` (ARGS already quoted); returns the exit status; stderr in tmp/err.txt. */
static int run_dsq(const char *args) {
    char *errf = tu_group_path("err.txt");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s > /dev/null 2> '%s'", tu_dsq_bin(), args, errf);
    free(errf);
    return tu_system(cmd);
}

/* stderr of the last run_dsq is one line containing fragment. */
static void expect_one_line(const char *fragment) {
    char *errf = tu_group_path("err.txt");
    size_t n = 0;
    char *msg = (char *)tu_read_file(errf, &n);
    msg = realloc(msg, n + 1);
    msg[n] = '\0';
    if (strstr(msg, fragment) == NULL || n == 0 || strchr(msg, '\n') != msg + n - 1)
        fail_msg("expected one line with '%s', got: %s", fragment, msg);
    free(msg);
    free(errf);
}

static int setup(void **state) {
    tu_group_dir_setup(state);
    char *in = tu_shared_path(LLAMA);
    dsq_qz_opts o = opts("F32");
    quantize(in, "llama-f32.gguf", &o);
    free(in);
    llama_f32 = tu_group_path("llama-f32.gguf");
    return 0;
}

static int teardown(void **state) {
    tu_group_dir_teardown(state);
    free(llama_f32);
    return 0;
}

/* ==== dsq inspect FILE.gguf ================================================================= */

static json_t *jget(const json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (v == NULL)
        fail_msg("JSON has no '%s'", k);
    return v;
}

static const json_t *meta_value(const json_t *root, const char *key, const char **type) {
    const json_t *meta = jget(root, "metadata");
    for (size_t i = 0; i < json_array_size(meta); i++) {
        const json_t *kv = json_array_get(meta, i);
        if (strcmp(json_string_value(jget(kv, "key")), key) == 0) {
            *type = json_string_value(jget(kv, "type"));
            return jget(kv, "value");
        }
    }
    fail_msg("key %s not in metadata", key);
    return NULL;
}

static void test_inspect_gguf_json(void **state) {
    (void)state;
    char *in = tu_shared_path(STORIES);
    char *out = tu_group_path("inspect.json");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' inspect --json '%s' > '%s'", tu_dsq_bin(), in, out);
    assert_int_equal(tu_system(cmd), 0);
    json_error_t je;
    json_t *root = json_load_file(out, 0, &je);
    if (root == NULL)
        fail_msg("inspect --json: %s", je.text);
    assert_string_equal(json_string_value(jget(root, "format")), "gguf");
    assert_int_equal(json_integer_value(jget(root, "version")), 3);
    assert_int_equal(json_integer_value(jget(root, "kv_count")), 19);
    assert_int_equal(json_array_size(jget(root, "metadata")), 19);
    assert_int_equal(json_integer_value(jget(root, "tensor_count")), 48);
    assert_int_equal(json_array_size(jget(root, "tensors")), 48);
    assert_int_equal(json_integer_value(jget(root, "file_bytes")), 1185376);
    /* all F32: one line of totals, and the tensor data runs to the end of the file */
    const json_t *tot = jget(root, "totals");
    assert_int_equal(json_object_size(tot), 1);
    assert_int_equal(json_integer_value(jget(jget(tot, "F32"), "count")), 48);
    assert_int_equal(json_integer_value(jget(root, "total_bytes")),
                     1185376 - json_integer_value(jget(root, "data_offset")));
    const char *type = NULL;
    const json_t *v = meta_value(root, "llama.context_length", &type);
    assert_string_equal(type, "UINT32");
    assert_int_equal(json_integer_value(v), 2048);
    v = meta_value(root, "general.architecture", &type);
    assert_string_equal(type, "STRING");
    assert_string_equal(json_string_value(v), "llama");
    v = meta_value(root, "tokenizer.ggml.tokens", &type);
    assert_string_equal(type, "ARRAY[STRING]");
    assert_int_equal(json_integer_value(jget(v, "length")), 512);
    assert_int_equal(json_array_size(jget(v, "head")), 8); /* abbreviated */
    v = meta_value(root, "tokenizer.ggml.scores", &type);
    assert_string_equal(type, "ARRAY[FLOAT32]");
    assert_int_equal(json_integer_value(jget(v, "length")), 512);
    /* a tensor: output.weight is the 512 x 64 classifier, ne order [64, 512] */
    const json_t *ts = jget(root, "tensors");
    int found = 0;
    for (size_t i = 0; i < json_array_size(ts); i++) {
        const json_t *t = json_array_get(ts, i);
        if (strcmp(json_string_value(jget(t, "name")), "output.weight") != 0)
            continue;
        found = 1;
        assert_string_equal(json_string_value(jget(t, "type")), "F32");
        assert_int_equal(json_integer_value(json_array_get(jget(t, "ne"), 0)), 64);
        assert_int_equal(json_integer_value(json_array_get(jget(t, "ne"), 1)), 512);
        assert_int_equal(json_integer_value(jget(t, "bytes")), 64 * 512 * 4);
        assert_int_equal(json_integer_value(jget(t, "file_offset")),
                         json_integer_value(jget(root, "data_offset")) +
                             json_integer_value(jget(t, "offset")));
    }
    assert_true(found);
    json_decref(root);

    /* the table: the same facts, one line per key */
    snprintf(cmd, sizeof cmd,
             "'%s' inspect '%s' > '%s' && grep -q '^llama.context_length  *UINT32  *2048$' '%s' "
             "&& grep -q '^tokenizer.ggml.tokens  *ARRAY\\[STRING\\]  *512 elements: \"<unk>\"' "
             "'%s' && grep -q '^F32  *48 ' '%s'",
             tu_dsq_bin(), in, out, out, out, out);
    assert_int_equal(tu_system(cmd), 0);
    /* a truncated copy: exit 3, one line */
    char *bad = tu_group_path("truncated.gguf");
    snprintf(cmd, sizeof cmd, "head -c 5000 '%s' > '%s'", in, bad);
    assert_int_equal(tu_system(cmd), 0);
    snprintf(cmd, sizeof cmd, "inspect '%s'", bad);
    assert_int_equal(run_dsq(cmd), 3);
    expect_one_line("truncated.gguf");
    free(bad);
    free(in);
    free(out);
}

/* ==== GGUF input ============================================================================= */

static void test_gguf_input_same_as_checkpoint(void **state) {
    (void)state;
    char *in = tu_shared_path(LLAMA);
    dsq_qz_opts o = opts("Q4_K_M");
    quantize(in, "hf-q4km.gguf", &o);
    quantize(llama_f32, "gguf-q4km.gguf", &o);
    char *a = tu_group_path("hf-q4km.gguf"), *b = tu_group_path("gguf-q4km.gguf");
    assert_true(files_equal(a, b)); /* whole file: metadata, layout, every block */
    free(a);
    free(b);

    /* Q8_0 -> Q8_0: every type unchanged, so every tensor is copied and the file is the
     * same (general.file_type and quantization_version are re-set to the same values) */
    o = opts("Q8_0");
    quantize(in, "hf-q8.gguf", &o);
    char *q8 = tu_group_path("hf-q8.gguf");
    quantize(q8, "q8-again.gguf", &o);
    a = tu_group_path("q8-again.gguf");
    assert_true(files_equal(q8, a));
    free(a);
    free(in);

    /* requantizing: refused by default (exit 3, nothing written), as llama-quantize */
    char args[4096];
    char *out = tu_group_path("requant.gguf");
    snprintf(args, sizeof args, "quantize '%s' '%s' --type Q4_K_M -q", q8, out);
    assert_int_equal(run_dsq(args), 3);
    expect_one_line("requantizing is disabled");
    assert_false(tu_file_exists(out));
    /* allowed: ffn_gate of layer 0 is Q4_K of the dequantized Q8_0 rows */
    o = opts("Q4_K_M");
    o.allow_requantize = 1;
    quantize(q8, "requant.gguf", &o);
    dsq_gguf *src = open_tmp("hf-q8.gguf"), *g = open_tmp("requant.gguf");
    const dsq_gguf_tensor *s = tu_gguf_tensor(src, "blk.0.ffn_gate.weight");
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, "blk.0.ffn_gate.weight");
    assert_int_equal(s->dtype, DSQ_DTYPE_Q8_0);
    assert_int_equal(t->dtype, DSQ_DTYPE_Q4_K);
    const int64_t n = s->ne[0] * s->ne[1];
    float *f = malloc((size_t)n * sizeof *f);
    uint8_t *q = malloc(t->nbytes);
    assert_int_equal(dsq_dequantize_row(DSQ_DTYPE_Q8_0, s->data, f, n), DSQ_OK);
    assert_int_equal(dsq_quantize_rows(DSQ_DTYPE_Q4_K, f, q, s->ne[1], s->ne[0], NULL, 1),
                     DSQ_OK);
    assert_memory_equal(q, t->data, t->nbytes);
    /* metadata kept: the tokenizer of the input, same key count */
    assert_int_equal(dsq_gguf_kv_count(g), dsq_gguf_kv_count(src));
    free(f);
    free(q);
    dsq_gguf_close(src);
    dsq_gguf_close(g);
    free(q8);
    free(out);
}

/* ==== imatrix files ========================================================================== */

static void put_i32(uint8_t **p, int32_t v) {
    memcpy(*p, &v, 4);
    *p += 4;
}

static void put_f32s(uint8_t **p, const float *v, int n) {
    memcpy(*p, v, (size_t)n * 4);
    *p += 4 * n;
}

static void put_name(uint8_t **p, const char *s) {
    put_i32(p, (int32_t)strlen(s));
    memcpy(*p, s, strlen(s));
    *p += strlen(s);
}

/* A legacy file: a = {4, 8, 2, 0} with ncall 4; b = {3, 5} with ncall 0; a again with
 * ncall 2 and {2, 2, 2, 2} (the last of a name wins); trailer chunks 7, "eval.txt". */
static size_t legacy_fixture(uint8_t *buf) {
    uint8_t *p = buf;
    static const float a[4] = {4, 8, 2, 0}, b[2] = {3, 5}, a2[4] = {2, 2, 2, 2};
    put_i32(&p, 3);
    put_name(&p, "blk.0.attn_q.weight");
    put_i32(&p, 4);
    put_i32(&p, 4);
    put_f32s(&p, a, 4);
    put_name(&p, "b");
    put_i32(&p, 0);
    put_i32(&p, 2);
    put_f32s(&p, b, 2);
    put_name(&p, "a");
    put_i32(&p, 2);
    put_i32(&p, 4);
    put_f32s(&p, a2, 4);
    put_i32(&p, 7);
    put_name(&p, "eval.txt");
    return (size_t)(p - buf);
}

static dsq_imatrix *load_ok(const char *name) {
    char *p = tu_group_path(name);
    dsq_imatrix *m = NULL;
    dsq_err err = {0};
    if (dsq_imatrix_load(&m, p, &err) != DSQ_OK)
        fail_msg("%s: %s", name, err.text);
    free(p);
    return m;
}

static void expect_values(const dsq_imatrix *m, const char *name, const float *want, int n) {
    int64_t k = 0;
    const float *v = dsq_imatrix_find(m, name, &k);
    if (v == NULL)
        fail_msg("imatrix has no %s", name);
    assert_int_equal(k, n);
    for (int i = 0; i < n; i++)
        if (v[i] != want[i])
            fail_msg("%s[%d] = %g, expected %g", name, i, (double)v[i], (double)want[i]);
}

static void test_imatrix_legacy_by_hand(void **state) {
    (void)state;
    uint8_t buf[512];
    char *p = tu_group_path("hand.dat");
    tu_write_file(p, buf, legacy_fixture(buf));
    dsq_imatrix *m = load_ok("hand.dat");
    static const float a[4] = {1, 2, 0.5f, 0}, b[2] = {3, 5}, a2[4] = {1, 1, 1, 1};
    expect_values(m, "blk.0.attn_q.weight", a, 4); /* divided by ncall 4 */
    expect_values(m, "b", b, 2);                   /* ncall 0: kept as they are */
    expect_values(m, "a", a2, 4);
    assert_int_equal(dsq_imatrix_count(m), 3);
    assert_false(dsq_imatrix_is_gguf(m));
    assert_int_equal(dsq_imatrix_chunks(m), 7);
    assert_string_equal(dsq_imatrix_dataset(m), "eval.txt");
    assert_null(dsq_imatrix_find(m, "blk.9.attn_q.weight", &(int64_t){0}));
    dsq_imatrix_free(m);
    free(p);
}

/* A GGUF imatrix by the writer: w (2 matrices of 4) with counts {2, 0}; v (1 of 2) with
 * count 3; an unrelated tensor; datasets ["calib.txt", "other.txt"], 3 chunks of 512. */
static void write_gguf_imatrix(const char *name, int with_keys, int drop_counts) {
    dsq_gguf_writer *w = NULL;
    dsq_err err = {0};
    char *dir = strdup(tu_group_dir);
    static const char *const ds[2] = {"calib.txt", "other.txt"};
    static const float ws[8] = {2, 4, 6, 8, 1, 1, 1, 1}, wc[2] = {2, 0}, vs[2] = {9, 3},
                       vc[1] = {3}, other[1] = {42};
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_str(w, "general.type", "imatrix", 7, &err), DSQ_OK);
    if (with_keys) {
        assert_int_equal(dsq_gguf_writer_add_arr_str(w, "imatrix.datasets", ds, NULL, 2, &err),
                         DSQ_OK);
        assert_int_equal(dsq_gguf_writer_add_u32(w, "imatrix.chunk_count", 3, &err), DSQ_OK);
        assert_int_equal(dsq_gguf_writer_add_u32(w, "imatrix.chunk_size", 512, &err), DSQ_OK);
    }
    const int64_t ne_ws[2] = {4, 2}, ne_wc[2] = {1, 2}, ne_vs[2] = {2, 1}, ne_vc[2] = {1, 1},
                  ne_o[1] = {1};
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "w.in_sum2", DSQ_DTYPE_F32, 2, ne_ws, &err),
                     DSQ_OK);
    if (!drop_counts)
        assert_int_equal(dsq_gguf_writer_add_tensor(w, "w.counts", DSQ_DTYPE_F32, 2, ne_wc, &err),
                         DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "v.in_sum2", DSQ_DTYPE_F32, 2, ne_vs, &err),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "v.counts", DSQ_DTYPE_F32, 2, ne_vc, &err),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "other", DSQ_DTYPE_F32, 1, ne_o, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_begin(w, dir, name, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, ws, sizeof ws, &err), DSQ_OK);
    if (!drop_counts)
        assert_int_equal(dsq_gguf_writer_write(w, wc, sizeof wc, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, vs, sizeof vs, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, vc, sizeof vc, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, other, sizeof other, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_commit(w, &err), DSQ_OK);
    dsq_gguf_writer_free(w);
    free(dir);
}

static void test_imatrix_gguf_by_hand(void **state) {
    (void)state;
    write_gguf_imatrix("hand.imatrix.gguf", 1, 0);
    dsq_imatrix *m = load_ok("hand.imatrix.gguf");
    /* w: matrix 0 = {2,4,6,8} / 2; matrix 1 had count 0 -> 1.0 each (not 1/0) */
    static const float w[8] = {1, 2, 3, 4, 1, 1, 1, 1}, v[2] = {3, 1};
    expect_values(m, "w", w, 8);
    expect_values(m, "v", v, 2);
    assert_int_equal(dsq_imatrix_count(m), 2); /* "other" ignored */
    assert_true(dsq_imatrix_is_gguf(m));
    assert_int_equal(dsq_imatrix_chunks(m), 3);
    assert_string_equal(dsq_imatrix_dataset(m), "calib.txt"); /* the first, as quantize.cpp */
    dsq_imatrix_free(m);
}

static void expect_load_error(const char *name, const char *fragment) {
    char *p = tu_group_path(name);
    dsq_imatrix *m = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_imatrix_load(&m, p, &err), DSQ_FORMAT);
    assert_null(m);
    if (strstr(err.text, fragment) == NULL)
        fail_msg("%s: expected '%s' in: %s", name, fragment, err.text);
    free(p);
}

static void write_bytes(const char *name, const void *b, size_t n) {
    char *p = tu_group_path(name);
    tu_write_file(p, b, n);
    free(p);
}

static void test_imatrix_corrupt(void **state) {
    (void)state;
    uint8_t good[512], buf[512];
    const size_t n = legacy_fixture(good);
    write_bytes("empty.dat", good, 0);
    expect_load_error("empty.dat", "no entries");
    memcpy(buf, good, n);
    memset(buf, 0, 4); /* n_entries 0 */
    write_bytes("zero.dat", buf, n);
    expect_load_error("zero.dat", "no entries");
    write_bytes("cut.dat", good, 30); /* inside the first entry's values */
    expect_load_error("cut.dat", "truncated");
    memcpy(buf, good, n);
    buf[4] = 0xff; /* name length 0x...ff: larger than the file */
    write_bytes("name.dat", buf, n);
    expect_load_error("name.dat", "bad or truncated name");
    memcpy(buf, good, n);
    memset(buf + 4 + 4 + 19 + 4, 0, 4); /* nval 0 */
    write_bytes("nval.dat", buf, n);
    expect_load_error("nval.dat", "bad or truncated value count");
    memcpy(buf, good, n);
    const float nan = NAN;
    memcpy(buf + 4 + 4 + 19 + 8, &nan, 4); /* first value NaN */
    write_bytes("nan.dat", buf, n);
    expect_load_error("nan.dat", "non-finite");
    write_bytes("trailer.dat", good, n - 10); /* dataset name cut short */
    expect_load_error("trailer.dat", "truncated trailer");
    write_gguf_imatrix("nokeys.gguf", 0, 0);
    expect_load_error("nokeys.gguf", "not an importance matrix");
    write_gguf_imatrix("nocounts.gguf", 1, 1);
    expect_load_error("nocounts.gguf", "mismatched sums and counts");
    char *missing = tu_group_path("does-not-exist.dat");
    dsq_imatrix *m = NULL;
    assert_int_not_equal(dsq_imatrix_load(&m, missing, NULL), DSQ_OK);
    free(missing);
}

/* ==== quantizing with an imatrix ============================================================= */

/* Hand-made weights for every quantizable tensor of the tiny llama except token_embd and
 * output: value j of a row of n = 1 + (j * 7 % 13) / 4, written in both forms with the same
 * values (legacy: x ncall 2, GGUF: in_sum2 = 3 x value with count 3). Plus, when extra,
 * an entry for a tensor the model does not have. */
static const char *const llama_w[] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                      "ffn_gate", "ffn_up", "ffn_down"};

static float hand_weight(int64_t j) {
    return 1.0f + (float)(j * 7 % 13) / 4.0f;
}

static void write_llama_imatrices(const char *legacy, const char *gguf, int wrong_size) {
    const int nl = 4, nw = 7;
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap), *p = buf;
    dsq_gguf_writer *w = NULL;
    char *dir = strdup(tu_group_dir);
    static const char *const ds[1] = {"hand-made"};
    assert_int_equal(dsq_gguf_writer_init(&w, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_arr_str(w, "imatrix.datasets", ds, NULL, 1, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_u32(w, "imatrix.chunk_count", 5, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_u32(w, "imatrix.chunk_size", 64, NULL), DSQ_OK);
    put_i32(&p, nl * nw);
    for (int l = 0; l < nl; l++)
        for (int k = 0; k < nw; k++) {
            char name[64], tn[80];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, llama_w[k]);
            int64_t ne0 = strcmp(llama_w[k], "ffn_down") == 0 ? 768 : 256;
            if (wrong_size && l == 1 && k == 0)
                ne0 = 128;
            put_name(&p, name);
            put_i32(&p, 2);
            put_i32(&p, (int32_t)ne0);
            for (int64_t j = 0; j < ne0; j++) {
                const float v = 2 * hand_weight(j);
                put_f32s(&p, &v, 1);
            }
            const int64_t ne_s[2] = {ne0, 1}, ne_c[2] = {1, 1};
            snprintf(tn, sizeof tn, "%s.in_sum2", name);
            assert_int_equal(dsq_gguf_writer_add_tensor(w, tn, DSQ_DTYPE_F32, 2, ne_s, NULL),
                             DSQ_OK);
            snprintf(tn, sizeof tn, "%s.counts", name);
            assert_int_equal(dsq_gguf_writer_add_tensor(w, tn, DSQ_DTYPE_F32, 2, ne_c, NULL),
                             DSQ_OK);
        }
    put_i32(&p, 5);
    put_name(&p, "hand-made");
    write_bytes(legacy, buf, (size_t)(p - buf));
    assert_int_equal(dsq_gguf_writer_begin(w, dir, gguf, NULL), DSQ_OK);
    for (int l = 0; l < nl; l++)
        for (int k = 0; k < nw; k++) {
            int64_t ne0 = strcmp(llama_w[k], "ffn_down") == 0 ? 768 : 256;
            if (wrong_size && l == 1 && k == 0)
                ne0 = 128;
            for (int64_t j = 0; j < ne0; j++) {
                const float v = 3 * hand_weight(j);
                assert_int_equal(dsq_gguf_writer_write(w, &v, 4, NULL), DSQ_OK);
            }
            const float c = 3;
            assert_int_equal(dsq_gguf_writer_write(w, &c, 4, NULL), DSQ_OK);
        }
    assert_int_equal(dsq_gguf_writer_commit(w, NULL), DSQ_OK);
    dsq_gguf_writer_free(w);
    free(dir);
    free(buf);
}

static int64_t get_i64(const dsq_gguf *g, const char *key) {
    int64_t v = 0;
    dsq_err err = {0};
    if (dsq_gguf_get_i64(g, key, &v, &err) != DSQ_OK)
        fail_msg("%s: %s", key, err.text);
    return v;
}

static void test_imatrix_quantize(void **state) {
    (void)state;
    write_llama_imatrices("llama.dat", "llama.imatrix.gguf", 0);
    char *dat = tu_group_path("llama.dat"), *gim = tu_group_path("llama.imatrix.gguf");
    char *hf = tu_shared_path(LLAMA);
    dsq_qz_opts o = opts("Q4_K_M");
    o.imatrix = dat;
    quantize(hf, "im-legacy.gguf", &o);
    o.imatrix = gim;
    quantize(llama_f32, "im-gguf.gguf", &o); /* GGUF input, GGUF imatrix */
    o.imatrix = NULL;
    quantize(hf, "im-none.gguf", &o);
    dsq_gguf *a = open_tmp("im-legacy.gguf"), *b = open_tmp("im-gguf.gguf");
    dsq_gguf *none = open_tmp("im-none.gguf"), *src = NULL;
    /* both forms, both inputs: the same weights, so the same tensors */
    expect_same_tensors(a, b);
    /* provenance (quantize.cpp's KV overrides) */
    tu_gguf_expect_str(a, "quantize.imatrix.file", dat);
    tu_gguf_expect_str(a, "quantize.imatrix.dataset", "hand-made");
    assert_int_equal(get_i64(a, "quantize.imatrix.entries_count"), 28);
    assert_int_equal(get_i64(a, "quantize.imatrix.chunks_count"), 5);
    tu_gguf_expect_str(b, "quantize.imatrix.file", gim);
    assert_int_equal(get_i64(b, "quantize.imatrix.chunks_count"), 5);
    assert_int_equal(dsq_gguf_kv_count(none) + 4, dsq_gguf_kv_count(a));
    /* the bytes: blk.0.ffn_down (Q4_K, 768 per row) and blk.3.attn_v (Q6_K) are
     * dsq_quantize_rows of the F32 weights with the hand-made weights; token_embd (no
     * entry) is as without an imatrix */
    dsq_err err = {0};
    assert_int_equal(dsq_gguf_open(&src, llama_f32, &err), DSQ_OK);
    static const char *const names[2] = {"blk.0.ffn_down.weight", "blk.3.attn_v.weight"};
    for (int k = 0; k < 2; k++) {
        const dsq_gguf_tensor *s = tu_gguf_tensor(src, names[k]), *t = tu_gguf_tensor(a, names[k]);
        float *imx = malloc((size_t)s->ne[0] * sizeof *imx);
        for (int64_t j = 0; j < s->ne[0]; j++)
            imx[j] = hand_weight(j);
        uint8_t *q = malloc(t->nbytes);
        assert_int_equal(dsq_quantize_rows(t->dtype, (const float *)s->data, q, s->ne[1],
                                           s->ne[0], imx, 1),
                         DSQ_OK);
        assert_memory_equal(q, t->data, t->nbytes);
        /* and the imatrix changed them */
        assert_true(memcmp(q, tu_gguf_tensor(none, names[k])->data, t->nbytes) != 0);
        free(q);
        free(imx);
    }
    assert_int_equal(tu_gguf_tensor(a, names[0])->dtype, DSQ_DTYPE_Q4_K);
    assert_int_equal(tu_gguf_tensor(a, names[1])->dtype, DSQ_DTYPE_Q6_K);
    assert_memory_equal(tu_gguf_tensor(a, "token_embd.weight")->data,
                        tu_gguf_tensor(none, "token_embd.weight")->data,
                        tu_gguf_tensor(none, "token_embd.weight")->nbytes);
    dsq_gguf_close(a);
    dsq_gguf_close(b);
    dsq_gguf_close(none);
    dsq_gguf_close(src);

    /* an entry whose size fits no tensor: llama-quantize throws "imatrix size 128 is
     * different from tensor size 256"; so do we (exit 3, nothing written) */
    write_llama_imatrices("wrong.dat", "wrong.imatrix.gguf", 1);
    char args[4096];
    char *w = tu_group_path("wrong.dat"), *out = tu_group_path("never.gguf");
    snprintf(args, sizeof args, "quantize '%s' '%s' --type Q4_K_M --imatrix '%s' -q", hf, out, w);
    assert_int_equal(run_dsq(args), 3);
    expect_one_line("imatrix entry 'blk.1.attn_q.weight' has 128 values but the tensor needs 256");
    assert_false(tu_file_exists(out));
    free(w);
    w = tu_group_path("wrong.imatrix.gguf");
    snprintf(args, sizeof args, "quantize '%s' '%s' --type Q4_K_M --imatrix '%s' -q", llama_f32,
             out, w);
    assert_int_equal(run_dsq(args), 3);
    assert_false(tu_file_exists(out));
    free(w);

    /* entries for tensors the model does not have: llama-quantize ignores them (no error,
     * no warning); the tensors are those of a run without an imatrix */
    uint8_t buf[64], *p = buf;
    static const float one[4] = {1, 2, 3, 4};
    put_i32(&p, 1);
    put_name(&p, "blk.99.ffn_up.weight");
    put_i32(&p, 1);
    put_i32(&p, 4);
    put_f32s(&p, one, 4);
    write_bytes("alien.dat", buf, (size_t)(p - buf));
    char *alien = tu_group_path("alien.dat");
    o.imatrix = alien;
    quantize(hf, "im-alien.gguf", &o);
    a = open_tmp("im-alien.gguf");
    none = open_tmp("im-none.gguf");
    expect_same_tensors(a, none);
    assert_int_equal(get_i64(a, "quantize.imatrix.entries_count"), 1);
    dsq_gguf_close(a);
    dsq_gguf_close(none);
    /* a corrupt imatrix on the command line: exit 3, one line, nothing written */
    char *cut = tu_group_path("cut.dat");
    write_bytes("cut.dat", buf, 20);
    snprintf(args, sizeof args, "quantize '%s' '%s' --type Q4_K_M --imatrix '%s' -q", hf, out,
             cut);
    assert_int_equal(run_dsq(args), 3);
    expect_one_line("cut.dat");
    assert_false(tu_file_exists(out));
    free(cut);
    free(alien);
    free(out);
    free(hf);
    free(dat);
    free(gim);
}

/* The imatrix llama-imatrix made (tests/data, see the header) against the files
 * llama-quantize made from it: whole files, by XXH64. */
static void test_imatrix_matches_llama_quantize(void **state) {
    (void)state;
    static const struct {
        const char *type;
        uint64_t xxh64, size;
    } ref[] = {{"Q4_K_M", 0x459e637fa7e6da35ull, 2288864},
               {"Q4_0", 0x4092aded825d1b56ull, 2170592},
               {"IQ4_XS", 0x2ac90e2a0dca0d5cull, 2064096}};
    char *hf = tu_shared_path(LLAMA);
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        dsq_qz_opts o = opts(ref[i].type);
        o.imatrix = "tests/data/tiny-llama.imatrix.dat"; /* as given to llama-quantize */
        quantize(hf, "ref.gguf", &o);
        char *p = tu_group_path("ref.gguf");
        uint64_t h = 0, n = 0;
        assert_int_equal(dsq_file_xxh64(p, &h, &n, NULL), DSQ_OK);
        if (h != ref[i].xxh64 || n != ref[i].size)
            fail_msg("%s: xxh64 %016llx size %llu, llama-quantize wrote %016llx size %llu",
                     ref[i].type, (unsigned long long)h, (unsigned long long)n,
                     (unsigned long long)ref[i].xxh64, (unsigned long long)ref[i].size);
        free(p);
    }
    free(hf);
}

/* 3-D expert tensors: expert e is quantized with values [e * ne0, (e + 1) * ne0), and an
 * expert with count 0 gets 1.0 everywhere (GGUF form). */
static void test_imatrix_experts(void **state) {
    (void)state;
    char *ds = tu_shared_path(DS_BF16);
    dsq_qz_opts o = opts("F32");
    o.mla_legacy = 1;
    quantize(ds, "ds-f32.gguf", &o);
    free(ds);
    char *f32 = tu_group_path("ds-f32.gguf");
    dsq_gguf *src = open_tmp("ds-f32.gguf");
    const dsq_gguf_tensor *s = tu_gguf_tensor(src, "blk.1.ffn_up_exps.weight");
    const int64_t ne0 = s->ne[0], ne1 = s->ne[1], nx = s->ne[2];
    assert_int_equal(nx, 8);
    /* in_sum2[e][j] = (e + 1) * (1 + j % 5), counts[e] = e + 1 except expert 3: 0 */
    dsq_gguf_writer *w = NULL;
    static const char *const dsn[1] = {"x"};
    assert_int_equal(dsq_gguf_writer_init(&w, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_arr_str(w, "imatrix.datasets", dsn, NULL, 1, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_u32(w, "imatrix.chunk_count", 1, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_u32(w, "imatrix.chunk_size", 1, NULL), DSQ_OK);
    const int64_t ne_s[2] = {ne0, nx}, ne_c[2] = {1, nx};
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "blk.1.ffn_up_exps.weight.in_sum2",
                                                DSQ_DTYPE_F32, 2, ne_s, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "blk.1.ffn_up_exps.weight.counts",
                                                DSQ_DTYPE_F32, 2, ne_c, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_writer_begin(w, tu_group_dir, "exps.imatrix.gguf", NULL), DSQ_OK);
    float *want = malloc((size_t)(ne0 * nx) * sizeof *want);
    for (int64_t e = 0; e < nx; e++)
        for (int64_t j = 0; j < ne0; j++) {
            const float v = (float)(e + 1) * (float)(1 + j % 5);
            assert_int_equal(dsq_gguf_writer_write(w, &v, 4, NULL), DSQ_OK);
            want[e * ne0 + j] = e == 3 ? 1.0f : (float)(1 + j % 5);
        }
    for (int64_t e = 0; e < nx; e++) {
        const float c = e == 3 ? 0.0f : (float)(e + 1);
        assert_int_equal(dsq_gguf_writer_write(w, &c, 4, NULL), DSQ_OK);
    }
    assert_int_equal(dsq_gguf_writer_commit(w, NULL), DSQ_OK);
    dsq_gguf_writer_free(w);

    o = opts("Q4_K_M");
    char *im = tu_group_path("exps.imatrix.gguf");
    o.imatrix = im;
    quantize(f32, "ds-im.gguf", &o);
    dsq_gguf *g = open_tmp("ds-im.gguf");
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, "blk.1.ffn_up_exps.weight");
    const size_t slice = t->nbytes / (size_t)nx;
    uint8_t *q = malloc(slice);
    for (int64_t e = 0; e < nx; e++) {
        assert_int_equal(dsq_quantize_rows(t->dtype, (const float *)s->data + e * ne0 * ne1, q,
                                           ne1, ne0, want + e * ne0, 1),
                         DSQ_OK);
        if (memcmp(q, t->data + (size_t)e * slice, slice) != 0)
            fail_msg("expert %lld: bytes differ from its imatrix slice", (long long)e);
    }
    free(q);
    free(want);
    free(im);
    free(f32);
    dsq_gguf_close(g);
    dsq_gguf_close(src);
}

/* ==== --split-max-size ======================================================================= */

static void test_split(void **state) {
    (void)state;
    dsq_qz_opts o = opts("Q8_0");
    quantize(llama_f32, "whole.gguf", &o);
    o.split_max_bytes = 1000000; /* 1M */
    quantize(llama_f32, "parts.gguf", &o);
    dsq_gguf *whole = open_tmp("whole.gguf");
    /* the tiny llama in Q8_0: 3.9 MB of tensor data (token_embd and output 278528 bytes
     * each, 837632 per layer), filled in order into files of at most 10^6: 5 files */
    int64_t seen = 0;
    for (int k = 0; k < 5; k++) {
        char name[64];
        snprintf(name, sizeof name, "parts-%05d-of-00005.gguf", k + 1);
        dsq_gguf *g = open_tmp(name);
        uint32_t v = 0;
        uint16_t u = 0;
        dsq_gguf_val val;
        assert_int_equal(dsq_gguf_get(g, "split.no", &val, NULL), DSQ_OK);
        assert_int_equal(dsq_gguf_val_u16(&val, &u, NULL), DSQ_OK);
        assert_int_equal(u, k);
        assert_int_equal(dsq_gguf_get(g, "split.count", &val, NULL), DSQ_OK);
        assert_int_equal(dsq_gguf_val_u16(&val, &u, NULL), DSQ_OK);
        assert_int_equal(u, 5);
        assert_int_equal(get_i64(g, "split.tensors.count"), 39);
        /* all metadata in the first split only */
        assert_int_equal(dsq_gguf_kv_count(g), k == 0 ? dsq_gguf_kv_count(whole) + 3 : 3);
        if (k == 0) {
            assert_int_equal(dsq_gguf_get_u32(g, "general.file_type", &v, NULL), DSQ_OK);
            assert_int_equal(v, 7);
        }
        uint64_t data = 0;
        for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++, seen++) {
            const dsq_gguf_tensor *x = dsq_gguf_tensor_at(g, i);
            const dsq_gguf_tensor *y = dsq_gguf_tensor_at(whole, seen);
            assert_non_null(y);
            assert_string_equal(x->name, y->name);
            assert_int_equal(x->dtype, y->dtype);
            assert_int_equal(x->nbytes, y->nbytes);
            assert_memory_equal(x->data, y->data, x->nbytes);
            data += x->nbytes + (32 - x->nbytes % 32) % 32;
        }
        assert_true(data <= 1000000);
        dsq_gguf_close(g);
    }
    assert_int_equal(seen, dsq_gguf_tensor_count(whole)); /* concatenated = unsplit */
    dsq_gguf_close(whole);

    /* a limit below one tensor: exit 3, one line, no split left behind */
    char args[4096], *out = tu_group_path("small.gguf");
    snprintf(args, sizeof args, "quantize '%s' '%s' --type Q8_0 --split-max-size 100000 -q",
             llama_f32, out);
    assert_int_equal(run_dsq(args), 3);
    expect_one_line("more than --split-max-size");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q small", tu_group_dir);
    assert_int_not_equal(tu_system(cmd), 0);
    /* bad sizes are usage errors */
    static const char *const bad[] = {"0", "12K", "M", "-5M", "1.5G"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "quantize '%s' '%s' --type Q8_0 --split-max-size '%s'",
                 llama_f32, out, bad[i]);
        assert_int_equal(run_dsq(args), 2);
    }
    free(out);
}

/* ==== progress and a failure part way ======================================================== */

typedef struct progress_log {
    uint64_t last, total;
    int calls, backwards;
} progress_log;

static void on_progress(void *user, uint64_t done, uint64_t total) {
    progress_log *p = user;
    p->backwards += done < p->last;
    p->last = done;
    p->total = total;
    p->calls++;
}

/* Progress rises to the tensor data total. A NaN weight in a late tensor, after earlier
 * tensors already went to the temporary file: DSQ_RANGE naming the tensor, and nothing left
 * in the output directory. */
static void test_progress_and_nan_weight(void **state) {
    (void)state;
    dsq_qz_opts o = opts("Q4_K_M");
    progress_log pl = {0, 0, 0, 0};
    o.progress = on_progress;
    o.progress_user = &pl;
    char *out = tu_group_path("progress.gguf");
    dsq_qz_summary s;
    dsq_err err = {0};
    assert_int_equal(dsq_quantize_gguf(llama_f32, out, &o, &s, &err), DSQ_OK);
    assert_true(pl.calls >= 39);
    assert_int_equal(pl.backwards, 0);
    assert_int_equal(pl.last, s.tensor_bytes);
    assert_int_equal(pl.total, s.tensor_bytes);
    dsq_qz_summary_free(&s);
    free(out);

    dsq_gguf *g = tu_gguf_open(llama_f32);
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, "blk.3.ffn_down.weight");
    size_t n = 0;
    uint8_t *b = tu_read_file(llama_f32, &n);
    const float nan = NAN;
    const uint64_t at = dsq_gguf_data_offset(g) + t->offset + 4 * (uint64_t)(3 * t->ne[0] + 5);
    assert_true(at + 4 <= n);
    memcpy(b + at, &nan, 4); /* row 3 */
    dsq_gguf_close(g);
    char *in = tu_group_path("nan-in.gguf"), *dir = tu_group_path("nan-out");
    tu_write_file(in, b, n);
    assert_int_equal(dsq_mkdir(dir, &err), DSQ_OK);
    out = tu_group_path("nan-out/q.gguf");
    o = opts("Q4_K_M");
    const dsq_status st = dsq_quantize_gguf(in, out, &o, &s, &err);
    if (st != DSQ_RANGE ||
        strstr(err.text, "tensor 'blk.3.ffn_down.weight' has NaN or infinite weights") == NULL)
        fail_msg("expected DSQ_RANGE for the NaN, got %s: %s", dsq_status_str(st), err.text);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "[ -z \"$(ls -A '%s')\" ]", dir);
    assert_int_equal(tu_system(cmd), 0);
    free(b);
    free(in);
    free(dir);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inspect_gguf_json),
        cmocka_unit_test(test_gguf_input_same_as_checkpoint),
        cmocka_unit_test(test_imatrix_legacy_by_hand),
        cmocka_unit_test(test_imatrix_gguf_by_hand),
        cmocka_unit_test(test_imatrix_corrupt),
        cmocka_unit_test(test_imatrix_quantize),
        cmocka_unit_test(test_imatrix_matches_llama_quantize),
        cmocka_unit_test(test_imatrix_experts),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_progress_and_nan_weight),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
