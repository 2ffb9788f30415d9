/* tests/test_safetensors.c: the safetensors reader and writer against the
 * format's definition (huggingface/safetensors README and tensor.rs
 * validate(); specs/formats.md §1) and the safetensors project's own sample
 * files (../shared/data/safetensors-samples: one 6-element tensor per dtype
 * holding -3, -2, -1, 0, 1, 2, metadata {"test": "a"}, unpadded headers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/numeric.h"
#include "formats/safetensors.h"
#include "formats/st_checkpoint.h"
#include "tests/testutil.h"

/* An in-memory file: u64 LE header length, the header, then data_len bytes. */
static uint8_t *make_file(const char *header, size_t data_len, size_t *n) {
    const size_t h = strlen(header);
    uint8_t *p = calloc(1, 8 + h + data_len + 1);
    assert_non_null(p);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(p + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        p[8 + h + i] = (uint8_t)i;
    *n = 8 + h + data_len;
    return p;
}

/* Parses and expects failure with `code` and a message containing `frag`. */
static void expect_error(const char *header, size_t data_len, dsq_status code, const char *frag) {
    size_t n;
    uint8_t *p = make_file(header, data_len, &n);
    dsq_st *st = NULL;
    dsq_err err = {0};
    const dsq_status s = dsq_st_parse(&st, p, n, "case", &err);
    if (s != code || strstr(err.text, frag) == NULL)
        fail_msg("header %s: got %s '%s', expected %s containing '%s'", header,
                 dsq_status_name(s), err.text, dsq_status_name(code), frag);
    assert_null(st);
    free(p);
}

static void test_samples_each_dtype(void **state) {
    (void)state;
    static const struct {
        const char *file;
        dsq_dtype dtype;
    } cases[] = {
        {"B", DSQ_DTYPE_U8},  {"H", DSQ_DTYPE_U16}, {"I", DSQ_DTYPE_U32},
        {"b", DSQ_DTYPE_I8},  {"h", DSQ_DTYPE_I16}, {"i", DSQ_DTYPE_I32},
        {"d", DSQ_DTYPE_F64}, {"e", DSQ_DTYPE_F16}, {"f", DSQ_DTYPE_F32},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char rel[96];
        snprintf(rel, sizeof rel, "data/safetensors-samples/%s.safetensors", cases[k].file);
        char *path = tu_shared_path(rel);
        dsq_st *st = NULL;
        dsq_err err = {0};
        assert_int_equal(dsq_st_open(&st, path, &err), DSQ_OK);
        assert_int_equal(dsq_st_count(st), 1);
        const dsq_tensor_view *v = dsq_st_tensor(st, 0);
        assert_string_equal(v->name, cases[k].file);
        assert_int_equal(v->dtype, cases[k].dtype);
        assert_int_equal(v->ndim, 1);
        assert_int_equal(v->shape[0], 6);
        assert_string_equal(dsq_st_meta_get(st, "test"), "a");
        /* values -3..2, little-endian, in each dtype's own encoding */
        const uint8_t *d = v->data;
        for (int j = 0; j < 6; j++) {
            double x = 0;
            switch (v->dtype) {
            case DSQ_DTYPE_U8: x = (int8_t)d[j]; break; /* two's complement bytes fd fe ff 00 01 02 */
            case DSQ_DTYPE_I8: x = (int8_t)d[j]; break;
            case DSQ_DTYPE_U16:
            case DSQ_DTYPE_I16: x = (int16_t)(d[2 * j] | d[2 * j + 1] << 8); break;
            case DSQ_DTYPE_U32:
            case DSQ_DTYPE_I32: {
                uint32_t u;
                memcpy(&u, d + 4 * j, 4);
                x = (int32_t)u;
                break;
            }
            case DSQ_DTYPE_F16: x = dsq_f16_to_f32((uint16_t)(d[2 * j] | d[2 * j + 1] << 8)); break;
            case DSQ_DTYPE_F32: {
                float f;
                memcpy(&f, d + 4 * j, 4);
                x = f;
                break;
            }
            case DSQ_DTYPE_F64: memcpy(&x, d + 8 * j, 8); break;
            default: fail();
            }
            assert_true(x == (double)(j - 3));
        }
        dsq_st_close(st);
        free(path);
    }
}

static void test_sample_overall(void **state) {
    (void)state;
    char *path = tu_shared_path("data/safetensors-samples/overall.safetensors");
    dsq_st *st = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_st_open(&st, path, &err), DSQ_OK);
    assert_int_equal(dsq_st_count(st), 9);
    assert_int_equal(dsq_st_header_len(st) % 8 != 0, 1); /* unpadded: readers must accept it */
    const int64_t i = dsq_st_find(st, "d");
    assert_true(i >= 0);
    assert_int_equal(dsq_st_tensor(st, (size_t)i)->dtype, DSQ_DTYPE_F64);
    assert_int_equal(dsq_st_find(st, "nope"), -1);
    /* file order is data order */
    for (size_t k = 1; k < dsq_st_count(st); k++)
        assert_true(dsq_st_tensor_offset(st, k) > dsq_st_tensor_offset(st, k - 1));
    dsq_st_close(st);
    free(path);
}

static void test_scalars_and_empty(void **state) {
    (void)state;
    size_t n;
    /* rank 0 = one element; a zero dimension = zero bytes, both legal */
    uint8_t *p = make_file("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                           "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[4,4]}}",
                           4, &n);
    dsq_st *st = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_st_parse(&st, p, n, NULL, &err), DSQ_OK);
    const dsq_tensor_view *s = dsq_st_tensor(st, (size_t)dsq_st_find(st, "s"));
    const dsq_tensor_view *z = dsq_st_tensor(st, (size_t)dsq_st_find(st, "z"));
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->nbytes, 4);
    assert_int_equal(z->nbytes, 0);
    dsq_st_close(st);
    free(p);
}

/* Each malformed header gets its own error (tensor.rs validate(), §1.3). */
static void test_corrupt_headers(void **state) {
    (void)state;
    const char *t = "\"dtype\":\"F32\",\"shape\":[2]";
    char h[512];
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"b\":{%s,\"data_offsets\":[4,12]}}",
             t, t);
    expect_error(h, 12, DSQ_FORMAT, "overlap the previous tensor");
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]},\"b\":{%s,\"data_offsets\":[12,20]}}",
             t, t);
    expect_error(h, 20, DSQ_FORMAT, "hole");
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,8]}}", t);
    expect_error(h, 6, DSQ_FORMAT, "past the end of the data"); /* truncated data */
    expect_error(h, 10, DSQ_FORMAT, "bytes after the last tensor");
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[0,6]}}", t);
    expect_error(h, 6, DSQ_FORMAT, "need 8");
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[8,0]}}", t);
    expect_error(h, 8, DSQ_FORMAT, "data_offsets");
    snprintf(h, sizeof h, "{\"a\":{%s,\"data_offsets\":[4,12]}}", t);
    expect_error(h, 12, DSQ_FORMAT, "expected it to begin at 0");
    expect_error("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DSQ_FORMAT,
                 "unknown dtype 'F33'");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                 DSQ_FORMAT, "shape[0]");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8,
                 DSQ_FORMAT, "shape[0]");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-1,8]}}", 8,
                 DSQ_FORMAT, "data_offsets");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                 "\"data_offsets\":[0,8]}}",
                 8, DSQ_FORMAT, "overflows");
    expect_error("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, DSQ_FORMAT,
                 "whole number of bytes");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, DSQ_FORMAT, "data_offsets");
    expect_error("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, DSQ_FORMAT, "dtype");
    expect_error("{\"a\":[1,2]}", 0, DSQ_FORMAT, "not an object");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                 16, DSQ_FORMAT, "duplicate");
    expect_error("{\"a\":{\"dtype\":\"F32\",", 0, DSQ_FORMAT, "header JSON");
    expect_error("[1,2,3]", 0, DSQ_FORMAT, "does not start with '{'");
    expect_error("{\"__metadata__\":{\"k\":1}}", 0, DSQ_FORMAT, "__metadata__ value of 'k'");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                 "\"data_offsets\":[0,4]}}",
                 4, DSQ_UNSUPPORTED, "9 dimensions");
}

static void test_corrupt_lengths(void **state) {
    (void)state;
    dsq_st *st = NULL;
    dsq_err err = {0};
    uint8_t small[5] = {1, 0, 0, 0, 0};
    assert_int_equal(dsq_st_parse(&st, small, sizeof small, "t", &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "too short"));

    /* header length past the end of the file */
    size_t n;
    uint8_t *p = make_file("{}", 0, &n);
    p[0] = 200;
    dsq_err_clear(&err);
    assert_int_equal(dsq_st_parse(&st, p, n, "t", &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "runs past the end"));

    /* over the 100 MB limit, checked before anything is read */
    const uint64_t big = DSQ_ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(big >> (8 * i));
    dsq_err_clear(&err);
    assert_int_equal(dsq_st_parse(&st, p, n, "t", &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "exceeds the limit"));
    memset(p, 0xff, 8); /* 2^64 - 1 */
    dsq_err_clear(&err);
    assert_int_equal(dsq_st_parse(&st, p, n, "t", &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "exceeds the limit"));
    free(p);

    /* a real shard cut short */
    char *src = tu_shared_path("data/tiny-models/tiny-llama/model.safetensors");
    size_t len;
    uint8_t *whole = tu_read_file(src, &len);
    char *dir = tu_mkdtemp();
    char *cut = dsq_path_join(dir, "cut.safetensors");
    tu_write_file(cut, whole, len - 100);
    dsq_err_clear(&err);
    assert_int_equal(dsq_st_open(&st, cut, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "cut.safetensors"));
    assert_non_null(strstr(err.text, "past the end of the data"));
    dsq_err_clear(&err);
    assert_int_equal(dsq_st_open(&st, "/nonexistent/x.safetensors", &err), DSQ_NOT_FOUND);
    tu_rm_rf(dir);
    free(cut);
    free(dir);
    free(whole);
    free(src);
}

static void test_writer_round_trip(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dsq_st_writer *w = NULL;
    dsq_err err = {0};
    const int64_t s_a[] = {3}, s_b[] = {2, 2}, s_c[] = {5}, s_d[] = {4};
    assert_int_equal(dsq_st_writer_init(&w, &err), DSQ_OK);
    /* added in an order the layout must change */
    assert_int_equal(dsq_st_writer_add(w, "u8", DSQ_DTYPE_U8, 1, s_c, &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_add(w, "f32", DSQ_DTYPE_F32, 2, s_b, &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_add(w, "f64", DSQ_DTYPE_F64, 1, s_a, &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_add(w, "bf16", DSQ_DTYPE_BF16, 1, s_d, &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_set_meta(w, "format", "pt", &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_open(w, dir, "out.safetensors", &err), DSQ_OK);
    /* the reference order: 8-byte types first, then 4, 2, 1 (tensor.rs Dtype order) */
    static const char *const expect_order[] = {"f64", "f32", "bf16", "u8"};
    for (size_t k = 0; k < 4; k++) {
        const size_t t = dsq_st_writer_order(w, k);
        const uint64_t nb = dsq_st_writer_tensor_bytes(w, t);
        uint8_t buf[64];
        for (uint64_t i = 0; i < nb; i++)
            buf[i] = (uint8_t)(k * 16 + i);
        assert_int_equal(dsq_st_writer_write(w, buf, (size_t)nb, &err), DSQ_OK);
    }
    uint64_t hash;
    assert_int_equal(dsq_st_writer_finish(w, &hash, &err), DSQ_OK);
    dsq_st_writer_free(w);

    char *path = dsq_path_join(dir, "out.safetensors");
    dsq_st *st = NULL;
    assert_int_equal(dsq_st_open(&st, path, &err), DSQ_OK);
    assert_int_equal(dsq_st_header_len(st) % 8, 0); /* padded so every tensor is aligned */
    assert_string_equal(dsq_st_meta_get(st, "format"), "pt");
    for (size_t k = 0; k < 4; k++) {
        const dsq_tensor_view *v = dsq_st_tensor(st, k);
        assert_string_equal(v->name, expect_order[k]);
        assert_int_equal(dsq_st_tensor_offset(st, k) % (v->nbytes >= 8 ? 8 : 1), 0);
        for (uint64_t i = 0; i < v->nbytes; i++)
            assert_int_equal(((const uint8_t *)v->data)[i], (uint8_t)(k * 16 + i));
    }
    /* __metadata__ comes first in the header, padding is spaces */
    size_t len;
    uint8_t *raw = tu_read_file(path, &len);
    assert_memory_equal(raw + 8, "{\"__metadata__\":{\"format\":\"pt\"}", 31);
    size_t end = 8 + (size_t)dsq_st_header_len(st);
    size_t pad = 0;
    while (raw[end - 1 - pad] == ' ')
        pad++;
    assert_int_equal(raw[end - 1 - pad], '}');
    assert_true(pad < 8);
    uint64_t fh, fs;
    assert_int_equal(dsq_file_xxh64(path, &fh, &fs, &err), DSQ_OK);
    assert_true(fh == hash && fs == len);
    free(raw);
    dsq_st_close(st);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

static void test_writer_refuses_short_output(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dsq_st_writer *w = NULL;
    dsq_err err = {0};
    const int64_t s[] = {4};
    assert_int_equal(dsq_st_writer_init(&w, &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_add(w, "x", DSQ_DTYPE_F32, 1, s, &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_open(w, dir, "x.safetensors", &err), DSQ_OK);
    const uint8_t buf[8] = {0};
    assert_int_equal(dsq_st_writer_write(w, buf, 8, &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_finish(w, NULL, &err), DSQ_INVALID_ARG); /* 8 of 16 bytes */
    dsq_st_writer_free(w);
    /* nothing with the final name, no temporary left behind */
    char *cmd = malloc(strlen(dir) + 64);
    sprintf(cmd, "test -z \"$(ls -A '%s')\"", dir);
    assert_int_equal(tu_system(cmd), 0);
    free(cmd);
    tu_rm_rf(dir);
    free(dir);
}

static void test_checkpoint_sharded(void **state) {
    (void)state;
    char *dir = tu_shared_path("data/tiny-models/tiny-deepseek-v3-fp8");
    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_ckpt_open(&ck, dir, &err), DSQ_OK);
    assert_true(dsq_ckpt_is_sharded(ck));
    assert_int_equal(dsq_ckpt_shard_count(ck), 2);
    assert_string_equal(dsq_ckpt_shard_name(ck, 0), "model-00001-of-00002.safetensors");
    assert_int_equal(dsq_ckpt_tensor_count(ck), 233); /* the index's weight_map has 233 names */
    size_t shard;
    /* the README: layer 0 kv_b_proj's scale lives in the other shard */
    const dsq_tensor_view *w = dsq_ckpt_find(ck, "model.layers.0.self_attn.kv_b_proj.weight", &shard, NULL);
    assert_non_null(w);
    assert_int_equal(shard, 0);
    assert_int_equal(w->dtype, DSQ_DTYPE_F8_E4M3);
    assert_non_null(dsq_ckpt_find(ck, "model.layers.0.self_attn.kv_b_proj.weight_scale_inv", &shard, NULL));
    assert_int_equal(shard, 1);
    dsq_ckpt_close(ck);
    free(dir);
}

static void test_checkpoint_index_mismatch(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    size_t n;
    uint8_t *p = make_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2, &n);
    char *shard = dsq_path_join(dir, "s1.safetensors");
    char *index = dsq_path_join(dir, DSQ_INDEX_JSON);
    tu_write_file(shard, p, n);
    dsq_ckpt *ck = NULL;
    dsq_err err = {0};

    const char *idx1 = "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}";
    tu_write_file(index, idx1, strlen(idx1));
    assert_int_equal(dsq_ckpt_open(&ck, dir, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "tensor 'b' in s1.safetensors, but it is not there"));

    const char *idx2 = "{\"weight_map\":{\"a\":\"s2.safetensors\"}}";
    tu_write_file(index, idx2, strlen(idx2));
    dsq_err_clear(&err);
    assert_int_equal(dsq_ckpt_open(&ck, dir, &err), DSQ_NOT_FOUND); /* the shard file is missing */
    assert_non_null(strstr(err.text, "s2.safetensors"));

    const char *idx3 = "{\"metadata\":{}}";
    tu_write_file(index, idx3, strlen(idx3));
    dsq_err_clear(&err);
    assert_int_equal(dsq_ckpt_open(&ck, dir, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "weight_map"));

    const char *idx4 = "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}";
    tu_write_file(index, idx4, strlen(idx4));
    dsq_err_clear(&err);
    assert_int_equal(dsq_ckpt_open(&ck, dir, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "not a plain file name"));
    assert_null(ck);

    tu_rm_rf(dir);
    free(shard);
    free(index);
    free(p);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_each_dtype),
        cmocka_unit_test(test_sample_overall),
        cmocka_unit_test(test_scalars_and_empty),
        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_corrupt_lengths),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_writer_refuses_short_output),
        cmocka_unit_test(test_checkpoint_sharded),
        cmocka_unit_test(test_checkpoint_index_mismatch),
    };
    return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
