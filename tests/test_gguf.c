/* tests/test_gguf.c: GGUF v3 reader and writer (formats/gguf.h).
 *
 * Where the expected values come from:
 *  - stories260K.gguf: the llama2.c header of stories260K.bin (data/stories260K/SOURCE.txt:
 *    dim=64 hidden=172 n_layers=5 n_heads=8 n_kv_heads=4 vocab=512) and
 *    data/stories260K-gguf/SOURCE.txt (48 tensors, 19 KVs, context_length 2048, token_embd ==
 *    output.weight == the .bin's embedding table). GGUF dims are reversed from the row-major
 *    shape, so the [512, 64] embedding is ne = [64, 512].
 *  - the quantized files: data/ggml-quant-vectors/SOURCE.txt (every 2-D tensor with
 *    ne0 % 32 == 0 quantized; ffn_down ne0 = 172 stays F32) and the block sizes of
 *    specs/formats.md §2.3 (Q8_0 32 elements in 34 bytes, Q4_0 32 in 18, Q2_K 256 in 84).
 *  - the corrupt cases: a small file assembled byte by byte below (build_base), independent
 *    of the writer, with the offsets of every field recorded so each test patches one thing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "tests/testutil.h"

#define STORIES "data/stories260K-gguf/stories260K.gguf"
#define QV      "data/ggml-quant-vectors/"

/* ==== helpers =============================================================================== */

static dsq_gguf *open_shared(const char *rel) {
    char *path = tu_shared_path(rel);
    dsq_gguf *g = NULL;
    dsq_err err = {0};
    const dsq_status st = dsq_gguf_open(&g, path, &err);
    if (st != DSQ_OK)
        fail_msg("%s: %s", path, err.text);
    free(path);
    return g;
}

static const dsq_gguf_tensor *tensor(const dsq_gguf *g, const char *name) {
    const int64_t i = dsq_gguf_find_tensor(g, name);
    if (i < 0)
        fail_msg("no tensor %s", name);
    return dsq_gguf_tensor_at(g, i);
}

static int str_eq(const char *s, size_t len, const char *want) {
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

static void assert_str_val(const dsq_gguf_val *v, const char *want) {
    const char *s = NULL;
    size_t len = 0;
    assert_int_equal(dsq_gguf_val_str(v, &s, &len, NULL), DSQ_OK);
    if (!str_eq(s, len, want))
        fail_msg("string '%.*s' != '%s'", (int)len, s, want);
}

/* ==== the real files ======================================================================== */

static void test_stories_metadata(void **state) {
    (void)state;
    dsq_gguf *g = open_shared(STORIES);
    assert_int_equal(dsq_gguf_version(g), 3);
    assert_int_equal(dsq_gguf_alignment(g), 32);
    assert_int_equal(dsq_gguf_kv_count(g), 19);
    assert_int_equal(dsq_gguf_tensor_count(g), 48);
    assert_int_equal(dsq_gguf_size(g), 1185376);

    assert_int_equal(tu_gguf_u32(g, "llama.embedding_length"), 64);
    assert_int_equal(tu_gguf_u32(g, "llama.feed_forward_length"), 172);
    assert_int_equal(tu_gguf_u32(g, "llama.block_count"), 5);
    assert_int_equal(tu_gguf_u32(g, "llama.attention.head_count"), 8);
    assert_int_equal(tu_gguf_u32(g, "llama.attention.head_count_kv"), 4);
    assert_int_equal(tu_gguf_u32(g, "llama.context_length"), 2048);
    assert_int_equal(tu_gguf_u32(g, "tokenizer.ggml.bos_token_id"), 1);
    assert_int_equal(tu_gguf_u32(g, "tokenizer.ggml.eos_token_id"), 2);
    float eps = 0;
    assert_int_equal(dsq_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, NULL),
                     DSQ_OK);
    assert_float_equal(eps, 1e-5, 1e-9);

    const char *s;
    size_t len;
    assert_int_equal(dsq_gguf_get_str(g, "general.architecture", &s, &len, NULL), DSQ_OK);
    assert_true(str_eq(s, len, "llama"));
    assert_int_equal(dsq_gguf_get_str(g, "tokenizer.ggml.model", &s, &len, NULL), DSQ_OK);
    assert_true(str_eq(s, len, "llama"));

    /* the SentencePiece vocabulary: 512 tokens, <unk> <s> </s> then the byte tokens */
    dsq_gguf_val toks, e;
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.tokens", DSQ_GGUF_STRING, &toks, NULL),
                     DSQ_OK);
    assert_int_equal(toks.n, 512);
    assert_int_equal(dsq_gguf_val_at(&toks, 0, &e, NULL), DSQ_OK);
    assert_str_val(&e, "<unk>");
    assert_int_equal(dsq_gguf_val_at(&toks, 2, &e, NULL), DSQ_OK);
    assert_str_val(&e, "</s>");
    assert_int_equal(dsq_gguf_val_at(&toks, 3, &e, NULL), DSQ_OK);
    assert_str_val(&e, "<0x00>");
    assert_int_equal(dsq_gguf_val_at(&toks, 258, &e, NULL), DSQ_OK); /* after the 256 bytes */
    assert_int_equal(e.type, DSQ_GGUF_STRING);
    dsq_err err = {0};
    assert_int_equal(dsq_gguf_val_at(&toks, 512, &e, &err), DSQ_RANGE);
    assert_non_null(strstr(err.text, "index 512 out of range"));

    dsq_gguf_val types;
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, &types,
                                      NULL), DSQ_OK);
    assert_int_equal(types.n, 512);
    int32_t tt;
    assert_int_equal(dsq_gguf_val_at(&types, 0, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i32(&e, &tt, NULL), DSQ_OK);
    assert_int_equal(tt, 2); /* UNKNOWN */
    assert_int_equal(dsq_gguf_val_at(&types, 1, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i32(&e, &tt, NULL), DSQ_OK);
    assert_int_equal(tt, 3); /* CONTROL */
    assert_int_equal(dsq_gguf_val_at(&types, 3, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i32(&e, &tt, NULL), DSQ_OK);
    assert_int_equal(tt, 6); /* BYTE */
    dsq_gguf_val scores;
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.scores", DSQ_GGUF_FLOAT32, &scores,
                                      NULL), DSQ_OK);
    assert_int_equal(scores.n, 512);

    /* absent keys and wrong types are statuses, never aborts */
    assert_int_equal(dsq_gguf_find_key(g, "llama.no_such_key"), -1);
    memset(&err, 0, sizeof err);
    uint32_t u;
    assert_int_equal(dsq_gguf_get_u32(g, "llama.no_such_key", &u, &err), DSQ_NOT_FOUND);
    assert_non_null(strstr(err.text, "no key 'llama.no_such_key'"));
    memset(&err, 0, sizeof err);
    assert_int_equal(dsq_gguf_get_u32(g, "general.architecture", &u, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "'general.architecture': value has type STRING, expected "
                                     "UINT32"));
    memset(&err, 0, sizeof err);
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.scores", DSQ_GGUF_INT32, &e, &err),
                     DSQ_FORMAT);
    assert_non_null(strstr(err.text, "array of FLOAT32, expected an array of INT32"));
    int64_t id;
    assert_int_equal(dsq_gguf_get_i64(g, "tokenizer.ggml.padding_token_id", &id, NULL), DSQ_OK);
    assert_int_equal(id, 4294967295); /* UINT32 -1 as written by convert-llama2c */

    for (int64_t i = 0; i < dsq_gguf_kv_count(g); i++)
        assert_int_equal(dsq_gguf_find_key(g, dsq_gguf_kv_key(g, i)), i);
    assert_null(dsq_gguf_kv_key(g, 19));
    assert_int_equal(dsq_gguf_kv_type(g, -1), DSQ_GGUF_TYPE_COUNT);
    dsq_gguf_close(g);
}

static void test_stories_tensors(void **state) {
    (void)state;
    dsq_gguf *g = open_shared(STORIES);
    /* header ends at 14152 (python struct walk), padded to 32 */
    assert_int_equal(dsq_gguf_data_offset(g), 14176);

    const dsq_gguf_tensor *t = tensor(g, "token_embd.weight");
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->dtype, DSQ_DTYPE_F32);
    assert_int_equal(t->ggml_type, 0);
    assert_int_equal(t->nbytes, 64 * 512 * 4);
    assert_int_equal(t->offset, 0);
    assert_ptr_equal(t->data, dsq_gguf_bytes(g) + 14176);

    const dsq_gguf_tensor *out = tensor(g, "output.weight");
    assert_int_equal(out->ne[0], 64);
    assert_int_equal(out->ne[1], 512);
    assert_memory_equal(out->data, t->data, t->nbytes); /* SOURCE.txt: same as token_embd */

    const dsq_gguf_tensor *n = tensor(g, "output_norm.weight");
    assert_int_equal(n->n_dims, 1);
    assert_int_equal(n->ne[0], 64);
    assert_int_equal(n->ne[1], 1);

    const dsq_gguf_tensor *k = tensor(g, "blk.0.attn_k.weight");
    assert_int_equal(k->ne[0], 64);
    assert_int_equal(k->ne[1], 32); /* n_kv_heads 4 x head_dim 8 */
    const dsq_gguf_tensor *d = tensor(g, "blk.4.ffn_down.weight");
    assert_int_equal(d->ne[0], 172);
    assert_int_equal(d->ne[1], 64);
    assert_int_equal(dsq_gguf_find_tensor(g, "blk.5.ffn_down.weight"), -1);
    assert_null(dsq_gguf_tensor_at(g, 48));

    /* the embedding is the llama2.c .bin's: 7 int32 header fields, then vocab x dim floats */
    char *bin_path = tu_shared_path("data/stories260K/stories260K.bin");
    size_t bin_len;
    uint8_t *bin = tu_read_file(bin_path, &bin_len);
    assert_true(bin_len >= 28 + t->nbytes);
    assert_memory_equal(t->data, bin + 28, t->nbytes);
    free(bin);
    free(bin_path);

    /* every tensor lies inside the file, in order, packed to 32 */
    uint64_t expect = 0;
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *x = dsq_gguf_tensor_at(g, i);
        assert_int_equal(x->offset, expect);
        expect += (x->nbytes + 31) / 32 * 32;
    }
    assert_int_equal(14176 + expect, dsq_gguf_size(g));
    dsq_gguf_close(g);
}

static void test_quantized_files(void **state) {
    (void)state;
    dsq_gguf *g = open_shared(QV "stories260K-q8_0.gguf");
    assert_int_equal(tu_gguf_u32(g, "general.file_type"), 7); /* MOSTLY_Q8_0 */
    const dsq_gguf_tensor *t = tensor(g, "token_embd.weight");
    assert_int_equal(t->dtype, DSQ_DTYPE_Q8_0);
    assert_int_equal(t->ggml_type, 8);
    assert_int_equal(t->nbytes, 512 * (64 / 32) * 34);
    t = tensor(g, "blk.0.ffn_down.weight"); /* ne0 = 172 is not a multiple of 32 */
    assert_int_equal(t->dtype, DSQ_DTYPE_F32);
    assert_int_equal(t->nbytes, 172 * 64 * 4);
    t = tensor(g, "blk.0.ffn_up.weight");
    assert_int_equal(t->dtype, DSQ_DTYPE_Q8_0);
    assert_int_equal(t->nbytes, 172 * 2 * 34);
    assert_int_equal(tensor(g, "blk.0.attn_norm.weight")->dtype, DSQ_DTYPE_F32);
    dsq_gguf_close(g);

    g = open_shared(QV "stories260K-q4_0.gguf");
    assert_int_equal(tu_gguf_u32(g, "general.file_type"), 2); /* MOSTLY_Q4_0 */
    t = tensor(g, "token_embd.weight");
    assert_int_equal(t->dtype, DSQ_DTYPE_Q4_0);
    assert_int_equal(t->nbytes, 512 * 2 * 18);
    assert_int_equal(tensor(g, "output_norm.weight")->offset, 18432);
    t = tensor(g, "blk.3.attn_q.weight");
    assert_int_equal(t->dtype, DSQ_DTYPE_Q4_0);
    assert_int_equal(t->nbytes, 64 * 2 * 18);
    dsq_gguf_close(g);

    g = open_shared(QV "stories260K_embd_quant_vectors.gguf");
    assert_int_equal(dsq_gguf_tensor_count(g), 27);
    static const struct {
        const char *name;
        dsq_dtype dtype;
        int64_t ne0, ne1;
        uint64_t nbytes;
    } want[] = {
        {"src.f32", DSQ_DTYPE_F32, 32768, 1, 32768 * 4},
        {"q4_1.q", DSQ_DTYPE_Q4_1, 64, 512, 1024 * 20},
        {"q5_0.q", DSQ_DTYPE_Q5_0, 64, 512, 1024 * 22},
        {"q5_1.q", DSQ_DTYPE_Q5_1, 64, 512, 1024 * 24},
        {"q2_K.q", DSQ_DTYPE_Q2_K, 256, 128, 128 * 84},
        {"q3_K.q", DSQ_DTYPE_Q3_K, 256, 128, 128 * 110},
        {"q4_K.q", DSQ_DTYPE_Q4_K, 256, 128, 128 * 144},
        {"q5_K.q", DSQ_DTYPE_Q5_K, 256, 128, 128 * 176},
        {"q6_K.q", DSQ_DTYPE_Q6_K, 256, 128, 128 * 210},
        {"iq4_nl.q", DSQ_DTYPE_IQ4_NL, 64, 512, 1024 * 18},
        {"bf16.q", DSQ_DTYPE_BF16, 64, 512, 32768 * 2},
        {"f16.q", DSQ_DTYPE_F16, 64, 512, 32768 * 2},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        t = tensor(g, want[i].name);
        assert_int_equal(t->dtype, want[i].dtype);
        assert_int_equal(t->ne[0], want[i].ne0);
        assert_int_equal(t->ne[1], want[i].ne1);
        assert_int_equal(t->nbytes, want[i].nbytes);
    }
    dsq_gguf_close(g);
}

/* ==== writer round trips ==================================================================== */

/* Copies every KV and tensor of g through the writer into dir/name. */
static void copy_through_writer(const dsq_gguf *g, const char *dir, const char *name) {
    dsq_gguf_writer *w = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    for (int64_t i = 0; i < dsq_gguf_kv_count(g); i++) {
        dsq_gguf_val v;
        assert_int_equal(dsq_gguf_kv_val(g, i, &v, &err), DSQ_OK);
        if (dsq_gguf_writer_add_val(w, dsq_gguf_kv_key(g, i), &v, &err) != DSQ_OK)
            fail_msg("%s", err.text);
    }
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        if (dsq_gguf_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->ne, &err) != DSQ_OK)
            fail_msg("%s", err.text);
    }
    if (dsq_gguf_writer_begin(w, dir, name, &err) != DSQ_OK)
        fail_msg("%s", err.text);
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        /* in two chunks, to exercise partial writes */
        const size_t half = (size_t)t->nbytes / 2;
        assert_int_equal(dsq_gguf_writer_write(w, t->data, half, &err), DSQ_OK);
        assert_int_equal(dsq_gguf_writer_write(w, t->data + half, (size_t)t->nbytes - half, &err),
                         DSQ_OK);
    }
    if (dsq_gguf_writer_commit(w, &err) != DSQ_OK)
        fail_msg("%s", err.text);
    dsq_gguf_writer_free(w);
}

static void roundtrip_bytes(const char *rel) {
    char *dir = tu_mkdtemp();
    char *src_path = tu_shared_path(rel);
    dsq_gguf *g = open_shared(rel);
    copy_through_writer(g, dir, "copy.gguf");
    char out_path[4096];
    snprintf(out_path, sizeof out_path, "%s/copy.gguf", dir);
    size_t a_len, b_len;
    uint8_t *a = tu_read_file(src_path, &a_len);
    uint8_t *b = tu_read_file(out_path, &b_len);
    /* ggml's writer and ours lay files out identically, so the copy is byte-exact */
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    free(a);
    free(b);
    dsq_gguf_close(g);
    free(src_path);
    tu_rm_rf(dir);
    free(dir);
}

static void test_roundtrip_stories(void **state) {
    (void)state;
    roundtrip_bytes(STORIES);
}

static void test_roundtrip_quantized(void **state) {
    (void)state;
    roundtrip_bytes(QV "stories260K-q8_0.gguf");
    roundtrip_bytes(QV "stories260K-q4_0.gguf");
    roundtrip_bytes(QV "stories260K_embd_quant_vectors.gguf");
}

/* A file with every value type, nested arrays, odd tensors and a non-default alignment. */
static void write_all_types(dsq_gguf_writer *w) {
    dsq_err err = {0};
#define OK(call)                                                                                   \
    do {                                                                                           \
        if ((call) != DSQ_OK)                                                                      \
            fail_msg("%s: %s", #call, err.text);                                                  \
    } while (0)
    OK(dsq_gguf_writer_add_u8(w, "t.u8", 200, &err));
    OK(dsq_gguf_writer_add_i8(w, "t.i8", -100, &err));
    OK(dsq_gguf_writer_add_u16(w, "t.u16", 60000, &err));
    OK(dsq_gguf_writer_add_i16(w, "t.i16", -30000, &err));
    OK(dsq_gguf_writer_add_u32(w, "t.u32", 4000000000u, &err));
    OK(dsq_gguf_writer_add_i32(w, "t.i32", -2000000000, &err));
    OK(dsq_gguf_writer_add_f32(w, "t.f32", 0.15625f, &err));
    OK(dsq_gguf_writer_add_bool(w, "t.bool", true, &err));
    OK(dsq_gguf_writer_add_str(w, "t.str", "h\0llo", 5, &err)); /* strings may hold NUL */
    OK(dsq_gguf_writer_add_str(w, "t.empty", "", 0, &err));
    OK(dsq_gguf_writer_add_u64(w, "t.u64", UINT64_MAX, &err));
    OK(dsq_gguf_writer_add_i64(w, "t.i64", INT64_MIN, &err));
    OK(dsq_gguf_writer_add_f64(w, "t.f64", -1.0 / 3.0, &err));
    OK(dsq_gguf_writer_add_u32(w, "general.alignment", 64, &err));

    const uint8_t u8s[] = {1, 2, 255};
    const int16_t i16s[] = {-1, 2, -3};
    const float f32s[] = {1.5f, -2.25f};
    const double f64s[] = {1e300, -0.0};
    const uint64_t u64s[] = {0, UINT64_MAX};
    const uint8_t bools[] = {0, 7, 1}; /* non-zero = true */
    OK(dsq_gguf_writer_add_arr(w, "a.u8", DSQ_GGUF_UINT8, u8s, 3, &err));
    OK(dsq_gguf_writer_add_arr(w, "a.i16", DSQ_GGUF_INT16, i16s, 3, &err));
    OK(dsq_gguf_writer_add_arr(w, "a.f32", DSQ_GGUF_FLOAT32, f32s, 2, &err));
    OK(dsq_gguf_writer_add_arr(w, "a.f64", DSQ_GGUF_FLOAT64, f64s, 2, &err));
    OK(dsq_gguf_writer_add_arr(w, "a.u64", DSQ_GGUF_UINT64, u64s, 2, &err));
    OK(dsq_gguf_writer_add_arr(w, "a.bool", DSQ_GGUF_BOOL, bools, 3, &err));
    OK(dsq_gguf_writer_add_arr(w, "a.empty", DSQ_GGUF_INT32, NULL, 0, &err));
    const char *strs[] = {"alpha", "", "gamma"};
    OK(dsq_gguf_writer_add_arr_str(w, "a.str", strs, NULL, 3, &err));
    /* [[1, 2], [], [3]] of UINT32 */
    const uint32_t one_two[] = {1, 2}, three[] = {3};
    OK(dsq_gguf_writer_begin_arr(w, "n.u32", DSQ_GGUF_ARRAY, &err));
    OK(dsq_gguf_writer_add_arr(w, NULL, DSQ_GGUF_UINT32, one_two, 2, &err));
    OK(dsq_gguf_writer_add_arr(w, NULL, DSQ_GGUF_UINT32, NULL, 0, &err));
    OK(dsq_gguf_writer_add_arr(w, NULL, DSQ_GGUF_UINT32, three, 1, &err));
    OK(dsq_gguf_writer_end_arr(w, &err));
    /* [[["x"], ["y", "z"]]]: strings three levels down */
    OK(dsq_gguf_writer_begin_arr(w, "n.str", DSQ_GGUF_ARRAY, &err));
    OK(dsq_gguf_writer_begin_arr(w, NULL, DSQ_GGUF_ARRAY, &err));
    OK(dsq_gguf_writer_begin_arr(w, NULL, DSQ_GGUF_STRING, &err));
    OK(dsq_gguf_writer_add_str(w, NULL, "x", 1, &err));
    OK(dsq_gguf_writer_end_arr(w, &err));
    OK(dsq_gguf_writer_begin_arr(w, NULL, DSQ_GGUF_STRING, &err));
    OK(dsq_gguf_writer_add_str(w, NULL, "y", 1, &err));
    OK(dsq_gguf_writer_add_str(w, NULL, "z", 1, &err));
    OK(dsq_gguf_writer_end_arr(w, &err));
    OK(dsq_gguf_writer_end_arr(w, &err));
    OK(dsq_gguf_writer_end_arr(w, &err));
    /* elements one at a time */
    OK(dsq_gguf_writer_begin_arr(w, "a.i64", DSQ_GGUF_INT64, &err));
    OK(dsq_gguf_writer_add_i64(w, NULL, -5, &err));
    OK(dsq_gguf_writer_add_i64(w, NULL, 6, &err));
    OK(dsq_gguf_writer_end_arr(w, &err));

    const int64_t ne_a[] = {4, 2}, ne_b[] = {64, 3}, ne_z[] = {0, 3}, ne_d[] = {2, 1, 1, 3};
    OK(dsq_gguf_writer_add_tensor(w, "a", DSQ_DTYPE_F32, 2, ne_a, &err));   /* 32 B */
    OK(dsq_gguf_writer_add_tensor(w, "b", DSQ_DTYPE_Q8_0, 2, ne_b, &err));  /* 6 x 34 = 204 B */
    OK(dsq_gguf_writer_add_tensor(w, "zero", DSQ_DTYPE_F16, 2, ne_z, &err)); /* 0 B */
    OK(dsq_gguf_writer_add_tensor(w, "scalar", DSQ_DTYPE_F16, 0, NULL, &err)); /* 2 B */
    OK(dsq_gguf_writer_add_tensor(w, "d4", DSQ_DTYPE_I8, 4, ne_d, &err));    /* 6 B */
#undef OK
}

static void test_write_all_types(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dsq_err err = {0};
    dsq_gguf_writer *w = NULL;
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    write_all_types(w);
    uint64_t size;
    assert_int_equal(dsq_gguf_writer_file_size(w, &size, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_begin(w, dir, "all.gguf", &err), DSQ_OK);
    uint8_t data[256];
    for (int i = 0; i < 256; i++)
        data[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(dsq_gguf_writer_write(w, data, 32, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, data, 204, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, data, 0, &err), DSQ_OK); /* "zero" */
    assert_int_equal(dsq_gguf_writer_write(w, data + 10, 2, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, data + 20, 6, &err), DSQ_OK);
    if (dsq_gguf_writer_commit(w, &err) != DSQ_OK)
        fail_msg("%s", err.text);
    dsq_gguf_writer_free(w);

    char path[4096];
    snprintf(path, sizeof path, "%s/all.gguf", dir);
    dsq_gguf *g = NULL;
    if (dsq_gguf_open(&g, path, &err) != DSQ_OK)
        fail_msg("%s", err.text);
    assert_int_equal(dsq_gguf_size(g), size);
    assert_int_equal(dsq_gguf_alignment(g), 64);
    assert_int_equal(dsq_gguf_data_offset(g) % 64, 0);
    assert_int_equal(dsq_gguf_kv_count(g), 25);

    dsq_gguf_val v, e, e2;
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    assert_int_equal(dsq_gguf_get(g, "t.u8", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_u8(&v, &u8, NULL), DSQ_OK);
    assert_int_equal(u8, 200);
    assert_int_equal(dsq_gguf_get(g, "t.i8", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i8(&v, &i8, NULL), DSQ_OK);
    assert_int_equal(i8, -100);
    assert_int_equal(dsq_gguf_get(g, "t.u16", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_u16(&v, &u16, NULL), DSQ_OK);
    assert_int_equal(u16, 60000);
    assert_int_equal(dsq_gguf_get(g, "t.i16", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i16(&v, &i16, NULL), DSQ_OK);
    assert_int_equal(i16, -30000);
    assert_int_equal(dsq_gguf_get_u32(g, "t.u32", &u32, NULL), DSQ_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(dsq_gguf_get(g, "t.i32", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i32(&v, &i32, NULL), DSQ_OK);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(dsq_gguf_get_f32(g, "t.f32", &f32, NULL), DSQ_OK);
    assert_true(f32 == 0.15625f);
    assert_int_equal(dsq_gguf_get_bool(g, "t.bool", &b, NULL), DSQ_OK);
    assert_true(b);
    const char *s;
    size_t len;
    assert_int_equal(dsq_gguf_get_str(g, "t.str", &s, &len, NULL), DSQ_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "h\0llo", 5);
    assert_int_equal(dsq_gguf_get_str(g, "t.empty", &s, &len, NULL), DSQ_OK);
    assert_int_equal(len, 0);
    assert_int_equal(dsq_gguf_get(g, "t.u64", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_u64(&v, &u64, NULL), DSQ_OK);
    assert_true(u64 == UINT64_MAX);
    assert_int_equal(dsq_gguf_val_as_i64(&v, &i64, NULL), DSQ_RANGE);
    assert_int_equal(dsq_gguf_get(g, "t.i64", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i64(&v, &i64, NULL), DSQ_OK);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(dsq_gguf_get(g, "t.f64", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_f64(&v, &f64, NULL), DSQ_OK);
    assert_true(f64 == -1.0 / 3.0);
    assert_int_equal(dsq_gguf_get(g, "t.i16", &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_as_f64(&v, &f64, NULL), DSQ_OK);
    assert_true(f64 == -30000.0);
    assert_int_equal(dsq_gguf_val_as_i64(&v, &i64, NULL), DSQ_OK);
    assert_int_equal(i64, -30000);

    assert_int_equal(dsq_gguf_get_arr(g, "a.u8", DSQ_GGUF_UINT8, &v, NULL), DSQ_OK);
    assert_int_equal(v.n, 3);
    assert_memory_equal(v.data, "\x01\x02\xff", 3);
    assert_int_equal(dsq_gguf_get_arr(g, "a.i16", DSQ_GGUF_INT16, &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_at(&v, 2, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i16(&e, &i16, NULL), DSQ_OK);
    assert_int_equal(i16, -3);
    assert_int_equal(dsq_gguf_get_arr(g, "a.f32", DSQ_GGUF_FLOAT32, &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_at(&v, 1, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_f32(&e, &f32, NULL), DSQ_OK);
    assert_true(f32 == -2.25f);
    assert_int_equal(dsq_gguf_get_arr(g, "a.f64", DSQ_GGUF_FLOAT64, &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_at(&v, 0, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_f64(&e, &f64, NULL), DSQ_OK);
    assert_true(f64 == 1e300);
    assert_int_equal(dsq_gguf_get_arr(g, "a.u64", DSQ_GGUF_UINT64, &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_at(&v, 1, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_u64(&e, &u64, NULL), DSQ_OK);
    assert_true(u64 == UINT64_MAX);
    assert_int_equal(dsq_gguf_get_arr(g, "a.bool", DSQ_GGUF_BOOL, &v, NULL), DSQ_OK);
    assert_int_equal(v.n, 3);
    assert_memory_equal(v.data, "\0\1\1", 3); /* normalized to 0/1 */
    assert_int_equal(dsq_gguf_get_arr(g, "a.empty", DSQ_GGUF_INT32, &v, NULL), DSQ_OK);
    assert_int_equal(v.n, 0);
    assert_int_equal(dsq_gguf_get_arr(g, "a.str", DSQ_GGUF_STRING, &v, NULL), DSQ_OK);
    assert_int_equal(v.n, 3);
    assert_int_equal(dsq_gguf_val_at(&v, 1, &e, NULL), DSQ_OK);
    assert_str_val(&e, "");
    assert_int_equal(dsq_gguf_val_at(&v, 2, &e, NULL), DSQ_OK);
    assert_str_val(&e, "gamma");
    assert_int_equal(dsq_gguf_get_arr(g, "a.i64", DSQ_GGUF_INT64, &v, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_at(&v, 0, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_i64(&e, &i64, NULL), DSQ_OK);
    assert_int_equal(i64, -5);

    /* nested: [[1, 2], [], [3]] */
    assert_int_equal(dsq_gguf_get_arr(g, "n.u32", DSQ_GGUF_ARRAY, &v, NULL), DSQ_OK);
    assert_int_equal(v.n, 3);
    assert_int_equal(dsq_gguf_val_at(&v, 0, &e, NULL), DSQ_OK);
    assert_int_equal(e.type, DSQ_GGUF_ARRAY);
    assert_int_equal(e.elem_type, DSQ_GGUF_UINT32);
    assert_int_equal(e.n, 2);
    assert_int_equal(dsq_gguf_val_at(&e, 1, &e2, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_u32(&e2, &u32, NULL), DSQ_OK);
    assert_int_equal(u32, 2);
    assert_int_equal(dsq_gguf_val_at(&v, 1, &e, NULL), DSQ_OK);
    assert_int_equal(e.n, 0);
    assert_int_equal(dsq_gguf_val_at(&v, 2, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_at(&e, 0, &e2, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_u32(&e2, &u32, NULL), DSQ_OK);
    assert_int_equal(u32, 3);
    /* nested: [[["x"], ["y", "z"]]] */
    assert_int_equal(dsq_gguf_get_arr(g, "n.str", DSQ_GGUF_ARRAY, &v, NULL), DSQ_OK);
    assert_int_equal(v.n, 1);
    assert_int_equal(dsq_gguf_val_at(&v, 0, &e, NULL), DSQ_OK);
    assert_int_equal(e.elem_type, DSQ_GGUF_ARRAY);
    assert_int_equal(e.n, 2);
    assert_int_equal(dsq_gguf_val_at(&e, 1, &e2, NULL), DSQ_OK);
    assert_int_equal(e2.elem_type, DSQ_GGUF_STRING);
    dsq_gguf_val e3;
    assert_int_equal(dsq_gguf_val_at(&e2, 1, &e3, NULL), DSQ_OK);
    assert_str_val(&e3, "z");
    /* a scalar is not an array */
    memset(&err, 0, sizeof err);
    assert_int_equal(dsq_gguf_val_at(&e3, 0, &e, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "value has type STRING, expected ARRAY"));

    /* tensors */
    assert_int_equal(dsq_gguf_tensor_count(g), 5);
    const dsq_gguf_tensor *t = tensor(g, "b");
    assert_int_equal(t->dtype, DSQ_DTYPE_Q8_0);
    assert_int_equal(t->nbytes, 204);
    assert_int_equal(t->offset, 64);
    assert_memory_equal(t->data, data, 204);
    t = tensor(g, "zero");
    assert_int_equal(t->nbytes, 0);
    assert_int_equal(t->offset, 64 + 256);
    t = tensor(g, "scalar");
    assert_int_equal(t->n_dims, 0);
    assert_int_equal(t->nbytes, 2);
    assert_int_equal(t->offset, 64 + 256);
    assert_memory_equal(t->data, data + 10, 2);
    t = tensor(g, "d4");
    assert_int_equal(t->n_dims, 4);
    assert_int_equal(t->ne[3], 3);
    assert_int_equal(t->offset, 64 + 256 + 64);
    assert_memory_equal(t->data, data + 20, 6);
    /* padding between tensors is zeros */
    const uint8_t *pad = dsq_gguf_bytes(g) + dsq_gguf_data_offset(g) + 32;
    for (int i = 0; i < 32; i++)
        assert_int_equal(pad[i], 0);

    /* copying it through the writer again gives the same bytes (determinism + add_val) */
    copy_through_writer(g, dir, "again.gguf");
    char path2[4096];
    snprintf(path2, sizeof path2, "%s/again.gguf", dir);
    size_t n1, n2;
    uint8_t *b1 = tu_read_file(path, &n1);
    uint8_t *b2 = tu_read_file(path2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    dsq_gguf_close(g);
    tu_rm_rf(dir);
    free(dir);
}

static void test_writer_misuse(void **state) {
    (void)state;
    dsq_gguf_writer *w = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_u32(w, "k", 1, &err), DSQ_OK);
#define BAD(call, code, frag)                                                                      \
    do {                                                                                           \
        memset(&err, 0, sizeof err);                                                               \
        assert_int_equal((call), (code));                                                          \
        if (strstr(err.text, (frag)) == NULL)                                                      \
            fail_msg("'%s' lacks '%s'", err.text, (frag));                                        \
    } while (0)
    BAD(dsq_gguf_writer_add_u32(w, "k", 2, &err), DSQ_INVALID_ARG, "duplicate key 'k'");
    BAD(dsq_gguf_writer_add_u32(w, "", 2, &err), DSQ_INVALID_ARG, "empty or missing key");
    BAD(dsq_gguf_writer_add_u32(w, "general.alignment", 48, &err), DSQ_INVALID_ARG,
        "48 is not a non-zero power of two");
    BAD(dsq_gguf_writer_add_u32(w, "general.alignment", 0, &err), DSQ_INVALID_ARG,
        "0 is not a non-zero power of two");
    BAD(dsq_gguf_writer_add_u64(w, "general.alignment", 64, &err), DSQ_INVALID_ARG,
        "must be UINT32, not UINT64");
    assert_int_equal(dsq_gguf_writer_begin_arr(w, "arr", DSQ_GGUF_INT32, &err), DSQ_OK);
    BAD(dsq_gguf_writer_add_u32(w, NULL, 1, &err), DSQ_INVALID_ARG,
        "UINT32 element added to an array of INT32");
    BAD(dsq_gguf_writer_add_i32(w, "x", 1, &err), DSQ_INVALID_ARG, "key 'x' given for an array");
    uint8_t *hdr;
    size_t hlen;
    BAD(dsq_gguf_writer_header(w, &hdr, &hlen, &err), DSQ_INVALID_ARG, "1 array(s) still open");
    assert_int_equal(dsq_gguf_writer_end_arr(w, &err), DSQ_OK);
    BAD(dsq_gguf_writer_end_arr(w, &err), DSQ_INVALID_ARG, "end_arr without begin_arr");
    for (int i = 0; i < DSQ_GGUF_MAX_DEPTH; i++)
        assert_int_equal(dsq_gguf_writer_begin_arr(w, i ? NULL : "deep", DSQ_GGUF_ARRAY, &err),
                         DSQ_OK);
    BAD(dsq_gguf_writer_begin_arr(w, NULL, DSQ_GGUF_ARRAY, &err), DSQ_INVALID_ARG,
        "nested deeper than 8");
    for (int i = 0; i < DSQ_GGUF_MAX_DEPTH; i++)
        assert_int_equal(dsq_gguf_writer_end_arr(w, &err), DSQ_OK);

    const int64_t ne[] = {33, 2}, ne5[] = {1, 1, 1, 1, 1}, ne_big[] = {INT64_MAX, 2};
    BAD(dsq_gguf_writer_add_tensor(w, "t", DSQ_DTYPE_Q8_0, 2, ne, &err), DSQ_INVALID_ARG,
        "ne[0] = 33 is not a multiple of the block size 32");
    BAD(dsq_gguf_writer_add_tensor(w, "t", DSQ_DTYPE_F32, 5, ne5, &err), DSQ_INVALID_ARG,
        "n_dims 5 > 4");
    BAD(dsq_gguf_writer_add_tensor(w, "t", DSQ_DTYPE_F32, 2, ne_big, &err), DSQ_INVALID_ARG,
        "product over INT64_MAX");
    BAD(dsq_gguf_writer_add_tensor(w, "t", DSQ_DTYPE_U32, 2, ne, &err), DSQ_UNSUPPORTED,
        "dtype U32 has no ggml type");
    BAD(dsq_gguf_writer_add_tensor(w, "", DSQ_DTYPE_F32, 2, ne, &err), DSQ_INVALID_ARG,
        "must be 1..63 bytes");
    char longname[80];
    memset(longname, 'n', 64);
    longname[64] = '\0';
    BAD(dsq_gguf_writer_add_tensor(w, longname, DSQ_DTYPE_F32, 2, ne, &err), DSQ_INVALID_ARG,
        "must be 1..63 bytes");
    const int64_t ok_ne[] = {4};
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "t", DSQ_DTYPE_F32, 1, ok_ne, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "u", DSQ_DTYPE_F32, 1, ok_ne, &err), DSQ_OK);
    BAD(dsq_gguf_writer_add_tensor(w, "t", DSQ_DTYPE_F32, 1, ok_ne, &err), DSQ_INVALID_ARG,
        "duplicate tensor name 't'");

    /* streaming: too many bytes for a tensor; the output is discarded */
    char *dir = tu_mkdtemp();
    BAD(dsq_gguf_writer_write(w, "x", 1, &err), DSQ_INVALID_ARG, "write before begin");
    assert_int_equal(dsq_gguf_writer_begin(w, dir, "out.gguf", &err), DSQ_OK);
    BAD(dsq_gguf_writer_add_u32(w, "late", 1, &err), DSQ_INVALID_ARG, "header already written");
    const float four[5] = {1, 2, 3, 4, 5};
    BAD(dsq_gguf_writer_write(w, four, 20, &err), DSQ_INVALID_ARG,
        "tensor 't': 20 bytes given, only 16 left");
    BAD(dsq_gguf_writer_commit(w, &err), DSQ_INVALID_ARG, "commit before begin or after an error");
    dsq_gguf_writer_free(w);
    char path[4096];
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    assert_false(tu_file_exists(path));

    /* commit with a tensor short of bytes: error, and no file appears */
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "t", DSQ_DTYPE_F32, 1, ok_ne, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_begin(w, dir, "out.gguf", &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, four, 8, &err), DSQ_OK);
    BAD(dsq_gguf_writer_commit(w, &err), DSQ_INVALID_ARG, "tensor 't' got 8 of its 16 bytes");
    dsq_gguf_writer_free(w);
    assert_false(tu_file_exists(path));
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir); /* no temporary left behind */
    assert_int_equal(tu_system(cmd), 0);
#undef BAD
    tu_rm_rf(dir);
    free(dir);
}

/* ==== corrupt inputs ======================================================================== */

/* A tiny valid file assembled by hand, with the offset of every field a test patches:
 *   KV0  general.architecture = "llama"           (STRING)
 *   KV1  general.alignment    = 32                (UINT32 unless align_type says otherwise)
 *   KV2  tokenizer.ggml.tokens = ["a", "bc"]      (ARRAY of STRING)
 *   T0   a.weight  Q8_0 ne [32, 2]  68 bytes at 0 (padded to 96)
 *   T1   b.weight  F32  ne [4]      16 bytes at 96 (padded to 128) */
typedef struct base {
    uint8_t buf[1024];
    size_t n;
    size_t at_version, at_nt, at_nkv, at_kv0_type, at_align_val, at_arr_count, at_str1_len;
    size_t at_t0_ndims, at_t0_ne0, at_t0_ne1, at_t0_type, at_t1_off, at_t1_ne0;
    size_t header_end, data_offset;
} base;

typedef struct base_opts {
    const char *key0, *key2, *t0_name, *t1_name;
    uint32_t align_type; /* UINT32, INT32 or UINT64 */
} base_opts;

static void put_le(base *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        b->buf[b->n++] = (uint8_t)(v >> (8 * i));
}
static void put_str(base *b, const char *s) {
    put_le(b, strlen(s), 8);
    memcpy(b->buf + b->n, s, strlen(s));
    b->n += strlen(s);
}
static void patch(base *b, size_t at, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        b->buf[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static void build(base *b, const base_opts *o) {
    memset(b, 0, sizeof *b);
    put_le(b, 0x46554747, 4); /* "GGUF" */
    b->at_version = b->n;
    put_le(b, 3, 4);
    b->at_nt = b->n;
    put_le(b, 2, 8);
    b->at_nkv = b->n;
    put_le(b, 3, 8);
    put_str(b, o->key0 ? o->key0 : "general.architecture");
    b->at_kv0_type = b->n;
    put_le(b, 8, 4);
    put_str(b, "llama");
    put_str(b, "general.alignment");
    const uint32_t at = o->align_type ? o->align_type : 4;
    put_le(b, at, 4);
    b->at_align_val = b->n;
    put_le(b, 32, at == 10 ? 8 : 4);
    put_str(b, o->key2 ? o->key2 : "tokenizer.ggml.tokens");
    put_le(b, 9, 4);
    put_le(b, 8, 4);
    b->at_arr_count = b->n;
    put_le(b, 2, 8);
    put_str(b, "a");
    b->at_str1_len = b->n;
    put_str(b, "bc");
    put_str(b, o->t0_name ? o->t0_name : "a.weight");
    b->at_t0_ndims = b->n;
    put_le(b, 2, 4);
    b->at_t0_ne0 = b->n;
    put_le(b, 32, 8);
    b->at_t0_ne1 = b->n;
    put_le(b, 2, 8);
    b->at_t0_type = b->n;
    put_le(b, 8, 4);
    put_le(b, 0, 8);
    put_str(b, o->t1_name ? o->t1_name : "b.weight");
    put_le(b, 1, 4);
    b->at_t1_ne0 = b->n;
    put_le(b, 4, 8);
    put_le(b, 0, 4);
    b->at_t1_off = b->n;
    put_le(b, 96, 8);
    b->header_end = b->n;
    b->n = (b->n + 31) / 32 * 32;
    b->data_offset = b->n;
    for (int i = 0; i < 68; i++)
        b->buf[b->n + (size_t)i] = (uint8_t)i;
    b->n += 96;
    for (int i = 0; i < 16; i++)
        b->buf[b->n + (size_t)i] = (uint8_t)(100 + i);
    b->n += 32;
}

static void build_default(base *b) {
    const base_opts o = {0};
    build(b, &o);
}

/* Parses b and expects `code` with `frag` in the message; returns nothing, fails the test. */
static void expect_fail(const uint8_t *p, size_t n, dsq_status code, const char *frag) {
    dsq_gguf *g = NULL;
    dsq_err err = {0};
    const dsq_status st = dsq_gguf_parse(&g, p, n, &err);
    assert_null(g);
    if (st != code || strstr(err.text, frag) == NULL)
        fail_msg("got %s '%s', want %s with '%s'", dsq_status_name(st), err.text,
                 dsq_status_name(code), frag);
    assert_int_equal(err.code, code);
}

static void test_base_is_valid(void **state) {
    (void)state;
    base b;
    build_default(&b);
    dsq_gguf *g = NULL;
    dsq_err err = {0};
    if (dsq_gguf_parse(&g, b.buf, b.n, &err) != DSQ_OK)
        fail_msg("%s", err.text);
    assert_int_equal(dsq_gguf_data_offset(g), b.data_offset);
    assert_int_equal(dsq_gguf_tensor_at(g, 0)->nbytes, 68);
    assert_int_equal(dsq_gguf_tensor_at(g, 1)->data[0], 100);
    dsq_gguf_close(g);
    /* without the last tensor's padding it is still valid (ggml does not read it) */
    assert_int_equal(dsq_gguf_parse(&g, b.buf, b.data_offset + 96 + 16, &err), DSQ_OK);
    dsq_gguf_close(g);
}

static void test_bad_magic(void **state) {
    (void)state;
    base b;
    build_default(&b);
    b.buf[0] = 'X';
    expect_fail(b.buf, b.n, DSQ_FORMAT, "byte 0: bad magic 58 47 55 46: not a GGUF file");
}

static void test_version_2(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_version, 2, 4);
    expect_fail(b.buf, b.n, DSQ_UNSUPPORTED, "byte 4: GGUF version 2 is not supported");
}

static void test_version_1(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_version, 1, 4);
    expect_fail(b.buf, b.n, DSQ_UNSUPPORTED, "version 1 is no longer supported");
}

static void test_version_4(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_version, 4, 4);
    expect_fail(b.buf, b.n, DSQ_UNSUPPORTED, "version 4 is newer than the supported version 3");
}

static void test_version_byteswapped(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_version, 0x03000000, 4); /* a big-endian writer's 3 */
    expect_fail(b.buf, b.n, DSQ_UNSUPPORTED, "0x03000000 is byte-swapped");
}

static void test_truncated_header(void **state) {
    (void)state;
    base b;
    build_default(&b);
    expect_fail(b.buf, 0, DSQ_FORMAT, "truncated: 0 bytes, too short for the GGUF magic");
    expect_fail(b.buf, 3, DSQ_FORMAT, "truncated: 3 bytes");
    expect_fail(b.buf, 20, DSQ_FORMAT, "byte 16: truncated: KV count needs 8 bytes, only 4 left");
    /* every cut inside the header fails cleanly (ASan watches the reads) */
    for (size_t n = 0; n < b.data_offset; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.buf, n);
        dsq_gguf *g = NULL;
        dsq_err err = {0};
        assert_int_equal(dsq_gguf_parse(&g, copy, n, &err), DSQ_FORMAT);
        assert_null(g);
        assert_true(strstr(err.text, "truncated") || strstr(err.text, "past the end") ||
                    strstr(err.text, "cannot fit"));
        free(copy);
    }
}

static void test_truncated_data(void **state) {
    (void)state;
    base b;
    build_default(&b);
    expect_fail(b.buf, b.data_offset + 96 + 15, DSQ_FORMAT,
                "tensor 'b.weight': data [");
    expect_fail(b.buf, b.data_offset + 96 + 15, DSQ_FORMAT, "runs past the end of the file");
}

static void test_string_past_eof(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_str1_len, 100000, 8);
    char frag[96];
    snprintf(frag, sizeof frag, "byte %zu: key 'tokenizer.ggml.tokens': string length 100000 "
             "runs past the end", b.at_str1_len);
    expect_fail(b.buf, b.n, DSQ_FORMAT, frag);
}

static void test_huge_string(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_str1_len, UINT64_MAX, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "string length 18446744073709551615 runs past the end");
}

static void test_huge_array_count(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_arr_count, (uint64_t)1 << 62, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT,
                "'tokenizer.ggml.tokens': array count 4611686018427387904 exceeds the limit");
    patch(&b, b.at_arr_count, (uint64_t)1 << 29, 8); /* under the limit, still cannot fit */
    expect_fail(b.buf, b.n, DSQ_FORMAT, "array of 536870912 STRING cannot fit");
}

static void test_huge_tensor_count(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_nt, (uint64_t)1 << 62, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "byte 8: tensor count 4611686018427387904 cannot fit");
    patch(&b, b.at_nt, UINT64_MAX, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "tensor count -1 is negative");
}

static void test_huge_kv_count(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_nkv, (uint64_t)1 << 62, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "byte 16: KV count 4611686018427387904 cannot fit");
    patch(&b, b.at_nkv, (uint64_t)1 << 63, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "KV count -9223372036854775808 is negative");
}

static void test_n_dims_5(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t0_ndims, 5, 4);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "tensor 'a.weight': n_dims 5 > 4");
}

static void test_dims_overflow(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t0_ne0, (uint64_t)1 << 32, 8);
    patch(&b, b.at_t0_ne1, (uint64_t)1 << 32, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT,
                "tensor 'a.weight': dimensions [4294967296, 4294967296, 1, 1] have a product "
                "over INT64_MAX");
    patch(&b, b.at_t0_ne1, UINT64_MAX, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "tensor 'a.weight': ne[1] = -1 is negative");
}

static void test_duplicate_key(void **state) {
    (void)state;
    base b;
    const base_opts o = {.key2 = "general.architecture"};
    build(&b, &o);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "duplicate key 'general.architecture' (first at byte 24)");
}

static void test_empty_key(void **state) {
    (void)state;
    base b;
    const base_opts o = {.key0 = ""};
    build(&b, &o);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "byte 24: KV 0: empty key");
}

static void test_invalid_value_type(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_kv0_type, 13, 4);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "key 'general.architecture': invalid value type 13");
}

static void test_duplicate_tensor_name(void **state) {
    (void)state;
    base b;
    const base_opts o = {.t1_name = "a.weight"};
    build(&b, &o);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "duplicate tensor name 'a.weight'");
}

static void test_long_tensor_name(void **state) {
    (void)state;
    base b;
    char name[65];
    memset(name, 'x', 64);
    name[64] = '\0';
    const base_opts o = {.t1_name = name};
    build(&b, &o);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "name of 64 bytes is longer than 63");
}

static void test_unknown_type_id(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t0_type, 99, 4);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "tensor 'a.weight': unknown ggml type id 99");
    patch(&b, b.at_t0_type, 4, 4);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "tensor 'a.weight': ggml type 4 was removed");
    patch(&b, b.at_t0_type, 40, 4);
    expect_fail(b.buf, b.n, DSQ_UNSUPPORTED, "ggml type 40 (NVFP4) is not supported by dsq");
    patch(&b, b.at_t0_type, 0xffffffffu, 4);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "unknown ggml type id -1");
}

static void test_ne0_not_block_multiple(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t0_ne0, 48, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT,
                "tensor 'a.weight' (Q8_0): ne[0] = 48 is not a multiple of the block size 32");
}

static void test_offset_misaligned(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t1_off, 100, 8);
    char frag[96];
    snprintf(frag, sizeof frag, "byte %zu: tensor 'b.weight': offset 100 is not a multiple of "
             "the alignment 32", b.at_t1_off);
    expect_fail(b.buf, b.n, DSQ_FORMAT, frag);
}

static void test_offset_overlapping(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t1_off, 64, 8); /* a.weight occupies [0, 68) */
    expect_fail(b.buf, b.n, DSQ_FORMAT,
                "tensor 'b.weight': offset 64 overlaps the previous tensor (expected 96)");
}

static void test_offset_gap(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t1_off, 128, 8);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "offset 128 leaves a gap after the previous tensor");
}

static void test_offset_out_of_file(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t1_ne0, 1000, 8); /* 4000 bytes of F32 in a 32-byte tail */
    expect_fail(b.buf, b.n, DSQ_FORMAT, "tensor 'b.weight': data [");
    expect_fail(b.buf, b.n, DSQ_FORMAT, "+4000) runs past the end of the file");
}

static void test_alignment_zero(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_align_val, 0, 4);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "general.alignment = 0 is not a non-zero power of two");
}

static void test_alignment_not_power_of_two(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_align_val, 48, 4);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "general.alignment = 48 is not a non-zero power of two");
}

static void test_alignment_wrong_type(void **state) {
    (void)state;
    base b;
    base_opts o = {.align_type = 5};
    build(&b, &o);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "'general.alignment' has type INT32, must be UINT32");
    o.align_type = 10;
    build(&b, &o);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "'general.alignment' has type UINT64, must be UINT32");
}

static void test_nesting_too_deep(void **state) {
    (void)state;
    /* one KV "deep" = ARRAY of ARRAY ... 9 levels, each with one element */
    base b;
    memset(&b, 0, sizeof b);
    put_le(&b, 0x46554747, 4);
    put_le(&b, 3, 4);
    put_le(&b, 0, 8);
    put_le(&b, 1, 8);
    put_str(&b, "deep");
    put_le(&b, 9, 4);
    for (int level = 1; level <= 9; level++) {
        put_le(&b, level < 9 ? 9 : 0, 4); /* element type: ARRAY, the innermost UINT8 */
        put_le(&b, 1, 8);
    }
    put_le(&b, 42, 1);
    expect_fail(b.buf, b.n, DSQ_FORMAT, "key 'deep': arrays nested deeper than 8 levels");

    /* 8 levels are fine and readable */
    memset(&b, 0, sizeof b);
    put_le(&b, 0x46554747, 4);
    put_le(&b, 3, 4);
    put_le(&b, 0, 8);
    put_le(&b, 1, 8);
    put_str(&b, "deep");
    put_le(&b, 9, 4);
    for (int level = 1; level <= 8; level++) {
        put_le(&b, level < 8 ? 9 : 0, 4);
        put_le(&b, 1, 8);
    }
    put_le(&b, 42, 1);
    dsq_gguf *g = NULL;
    dsq_err err = {0};
    if (dsq_gguf_parse(&g, b.buf, b.n, &err) != DSQ_OK)
        fail_msg("%s", err.text);
    dsq_gguf_val v;
    assert_int_equal(dsq_gguf_kv_val(g, 0, &v, NULL), DSQ_OK);
    for (int level = 1; level <= 8; level++) {
        dsq_gguf_val e;
        assert_int_equal(v.type, DSQ_GGUF_ARRAY);
        assert_int_equal(dsq_gguf_val_at(&v, 0, &e, NULL), DSQ_OK);
        v = e;
    }
    uint8_t u8;
    assert_int_equal(dsq_gguf_val_u8(&v, &u8, NULL), DSQ_OK);
    assert_int_equal(u8, 42);
    assert_int_equal(dsq_gguf_data_offset(g), b.n); /* no tensors: no padding */
    dsq_gguf_close(g);
}

static void test_nul_in_key(void **state) {
    (void)state;
    base b;
    build_default(&b);
    b.buf[24 + 8 + 3] = '\0'; /* "gen\0ral.architecture" */
    expect_fail(b.buf, b.n, DSQ_FORMAT, "contains a NUL byte");
}

static void test_error_names_the_file(void **state) {
    (void)state;
    base b;
    build_default(&b);
    patch(&b, b.at_t0_ndims, 5, 4);
    char *dir = tu_mkdtemp();
    char path[4096];
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    tu_write_file(path, b.buf, b.n);
    dsq_gguf *g = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_gguf_open(&g, path, &err), DSQ_FORMAT);
    assert_null(g);
    char frag[4200];
    snprintf(frag, sizeof frag, "%s: byte %zu: tensor 'a.weight': n_dims 5 > 4", path,
             b.at_t0_ndims);
    assert_string_equal(err.text, frag);
    memset(&err, 0, sizeof err);
    snprintf(path, sizeof path, "%s/missing.gguf", dir);
    assert_int_equal(dsq_gguf_open(&g, path, &err), DSQ_NOT_FOUND);
    tu_rm_rf(dir);
    free(dir);
}

/* Hostile inputs from the corrupt-case tests, kept for fuzz replay (fuzz/regress/gguf). */
static void write_regress(const char *dir) {
    static const struct {
        const char *name;
        int field; /* 0 arr count, 1 tensor count, 2 ne overflow, 3 string length, 4 offset */
        uint64_t value;
    } cases[] = {
        {"array_count_2p62.gguf", 0, (uint64_t)1 << 62},
        {"tensor_count_2p62.gguf", 1, (uint64_t)1 << 62},
        {"dims_overflow.gguf", 2, (uint64_t)1 << 32},
        {"string_len_max.gguf", 3, UINT64_MAX},
        {"offset_overlap.gguf", 4, 64},
    };
    char path[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        base b;
        build_default(&b);
        const size_t at[] = {b.at_arr_count, b.at_nt, b.at_t0_ne0, b.at_str1_len, b.at_t1_off};
        patch(&b, at[cases[i].field], cases[i].value, 8);
        if (cases[i].field == 2)
            patch(&b, b.at_t0_ne1, cases[i].value, 8);
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].name);
        tu_write_file(path, b.buf, b.n);
    }
}

/* Writes small valid files for fuzz/corpus/gguf when DSQ_GGUF_SEEDS names a directory, and
 * hostile ones for fuzz/regress/gguf when DSQ_GGUF_REGRESS does. */
static void test_write_fuzz_seeds(void **state) {
    (void)state;
    const char *regress = getenv("DSQ_GGUF_REGRESS");
    if (regress != NULL && regress[0] != '\0')
        write_regress(regress);
    const char *dir = getenv("DSQ_GGUF_SEEDS");
    if (dir == NULL || dir[0] == '\0')
        skip();
    dsq_err err = {0};
    base b;
    build_default(&b);
    char path[4096];
    snprintf(path, sizeof path, "%s/base.gguf", dir);
    tu_write_file(path, b.buf, b.n);

    dsq_gguf_writer *w = NULL;
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    write_all_types(w);
    assert_int_equal(dsq_gguf_writer_begin(w, dir, "all_types.gguf", &err), DSQ_OK);
    uint8_t data[256] = {1, 2, 3};
    assert_int_equal(dsq_gguf_writer_write(w, data, 32, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, data, 204, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, data, 2, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, data, 6, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_commit(w, &err), DSQ_OK);
    dsq_gguf_writer_free(w);

    /* arrays nested to the limit, no tensors (so no padding after the header) */
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    for (int i = 0; i < DSQ_GGUF_MAX_DEPTH; i++)
        assert_int_equal(dsq_gguf_writer_begin_arr(w, i ? NULL : "deep",
                                                   i + 1 < DSQ_GGUF_MAX_DEPTH ? DSQ_GGUF_ARRAY
                                                                              : DSQ_GGUF_UINT8,
                                                   &err),
                         DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_u8(w, NULL, 42, &err), DSQ_OK);
    for (int i = 0; i < DSQ_GGUF_MAX_DEPTH; i++)
        assert_int_equal(dsq_gguf_writer_end_arr(w, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_str(w, "general.architecture", "llama", 5, &err),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_writer_begin(w, dir, "deep_no_tensors.gguf", &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_commit(w, &err), DSQ_OK);
    dsq_gguf_writer_free(w);

    /* stories260K's metadata (the whole vocabulary) with two of its small tensors */
    dsq_gguf *g = open_shared(STORIES);
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    for (int64_t i = 0; i < dsq_gguf_kv_count(g); i++) {
        dsq_gguf_val v;
        assert_int_equal(dsq_gguf_kv_val(g, i, &v, &err), DSQ_OK);
        assert_int_equal(dsq_gguf_writer_add_val(w, dsq_gguf_kv_key(g, i), &v, &err), DSQ_OK);
    }
    const char *names[] = {"output_norm.weight", "blk.0.attn_k.weight"};
    for (int i = 0; i < 2; i++) {
        const dsq_gguf_tensor *t = tensor(g, names[i]);
        assert_int_equal(dsq_gguf_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->ne, &err),
                         DSQ_OK);
    }
    assert_int_equal(dsq_gguf_writer_begin(w, dir, "stories_meta.gguf", &err), DSQ_OK);
    for (int i = 0; i < 2; i++) {
        const dsq_gguf_tensor *t = tensor(g, names[i]);
        assert_int_equal(dsq_gguf_writer_write(w, t->data, (size_t)t->nbytes, &err), DSQ_OK);
    }
    assert_int_equal(dsq_gguf_writer_commit(w, &err), DSQ_OK);
    dsq_gguf_writer_free(w);
    dsq_gguf_close(g);

    /* a quantized model's head: first 3 tensors of the Q4_0 file, no vocabulary */
    g = open_shared(QV "stories260K-q4_0.gguf");
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    for (int64_t i = 0; i < dsq_gguf_kv_count(g); i++) {
        if (strncmp(dsq_gguf_kv_key(g, i), "tokenizer.", 10) == 0)
            continue;
        dsq_gguf_val v;
        assert_int_equal(dsq_gguf_kv_val(g, i, &v, &err), DSQ_OK);
        assert_int_equal(dsq_gguf_writer_add_val(w, dsq_gguf_kv_key(g, i), &v, &err), DSQ_OK);
    }
    const char *qnames[] = {"blk.0.attn_k.weight", "blk.0.attn_norm.weight"};
    for (int i = 0; i < 2; i++) {
        const dsq_gguf_tensor *t = tensor(g, qnames[i]);
        assert_int_equal(dsq_gguf_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->ne, &err),
                         DSQ_OK);
    }
    assert_int_equal(dsq_gguf_writer_begin(w, dir, "q4_0_head.gguf", &err), DSQ_OK);
    for (int i = 0; i < 2; i++) {
        const dsq_gguf_tensor *t = tensor(g, qnames[i]);
        assert_int_equal(dsq_gguf_writer_write(w, t->data, (size_t)t->nbytes, &err), DSQ_OK);
    }
    assert_int_equal(dsq_gguf_writer_commit(w, &err), DSQ_OK);
    dsq_gguf_writer_free(w);
    dsq_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_metadata),
        cmocka_unit_test(test_stories_tensors),
        cmocka_unit_test(test_quantized_files),
        cmocka_unit_test(test_roundtrip_stories),
        cmocka_unit_test(test_roundtrip_quantized),
        cmocka_unit_test(test_write_all_types),
        cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_base_is_valid),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_version_2),
        cmocka_unit_test(test_version_1),
        cmocka_unit_test(test_version_4),
        cmocka_unit_test(test_version_byteswapped),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_string_past_eof),
        cmocka_unit_test(test_huge_string),
        cmocka_unit_test(test_huge_array_count),
        cmocka_unit_test(test_huge_tensor_count),
        cmocka_unit_test(test_huge_kv_count),
        cmocka_unit_test(test_n_dims_5),
        cmocka_unit_test(test_dims_overflow),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_empty_key),
        cmocka_unit_test(test_invalid_value_type),
        cmocka_unit_test(test_duplicate_tensor_name),
        cmocka_unit_test(test_long_tensor_name),
        cmocka_unit_test(test_unknown_type_id),
        cmocka_unit_test(test_ne0_not_block_multiple),
        cmocka_unit_test(test_offset_misaligned),
        cmocka_unit_test(test_offset_overlapping),
        cmocka_unit_test(test_offset_gap),
        cmocka_unit_test(test_offset_out_of_file),
        cmocka_unit_test(test_alignment_zero),
        cmocka_unit_test(test_alignment_not_power_of_two),
        cmocka_unit_test(test_alignment_wrong_type),
        cmocka_unit_test(test_nesting_too_deep),
        cmocka_unit_test(test_nul_in_key),
        cmocka_unit_test(test_error_names_the_file),
        cmocka_unit_test(test_write_fuzz_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
