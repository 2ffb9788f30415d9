/* tests/test_hostile.c: limits on hostile input (issue 5 item 5). Every
 * length, count, offset and dimension the safetensors reader, the index parser
 * and the config.json reader take from a file is fed its extreme values:
 * 2^64-1 header lengths, 1 GB length claims, dimensions whose product
 * overflows, offsets of 2^63 and below zero, JSON nested 10,000 deep. Each must
 * get its own error code and message, and the whole suite must not make the
 * process grow by more than a small bound (max RSS, getrusage). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "model/json_edit.h"
#include "model/model_desc.h"
#include "core/file.h"
#include "formats/safetensors.h"
#include "formats/st_checkpoint.h"

#define RSS_BOUND_KIB (64L * 1024) /* 64 MiB */

static long max_rss_kib(void) {
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

/* ---- builders ---------------------------------------------------------- */

/* A file: u64 LE `hlen` (the claim), then `header`, then data_len zero bytes. */
static uint8_t *st_file(uint64_t hlen, const char *header, size_t data_len, size_t *n) {
    const size_t h = strlen(header);
    uint8_t *p = calloc(1, 8 + h + data_len + 1);
    assert_non_null(p);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(p + 8, header, h);
    *n = 8 + h + data_len;
    return p;
}

/* `depth` opening brackets around a value, then the closing ones. */
static char *nested(const char *prefix, size_t depth, const char *suffix) {
    const size_t n = strlen(prefix) + 2 * depth + strlen(suffix) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    char *o = s + sprintf(s, "%s", prefix);
    for (size_t i = 0; i < depth; i++)
        *o++ = '[';
    for (size_t i = 0; i < depth; i++)
        *o++ = ']';
    strcpy(o, suffix);
    return s;
}

static void expect_st(const uint8_t *p, size_t n, dsq_status code, const char *frag) {
    dsq_st *st = NULL;
    dsq_err err = {0};
    const dsq_status got = dsq_st_parse(&st, p, n, "hostile", &err);
    if (got != code || strstr(err.text, frag) == NULL)
        fail_msg("expected %s with '%s', got %s: %s", dsq_status_name(code), frag,
                 dsq_status_name(got), err.text);
    assert_null(st);
    assert_int_equal(err.code, code);
}

static void expect_header(const char *header, size_t data_len, dsq_status code, const char *frag) {
    size_t n;
    uint8_t *p = st_file(strlen(header), header, data_len, &n);
    expect_st(p, n, code, frag);
    free(p);
}

static void expect_index(const char *text, dsq_status code, const char *frag) {
    size_t shards = 99;
    dsq_err err = {0};
    const dsq_status got = dsq_ckpt_index_parse(text, strlen(text), "index", &shards, &err);
    if (got != code || strstr(err.text, frag) == NULL)
        fail_msg("index: expected %s with '%s', got %s: %s", dsq_status_name(code), frag,
                 dsq_status_name(got), err.text);
}

/* ---- safetensors ------------------------------------------------------- */

static void test_st_header_length_claims(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = st_file(UINT64_MAX, "{}", 0, &n);
    expect_st(p, n, DSQ_FORMAT, "exceeds the limit");
    free(p);
    p = st_file((uint64_t)1 << 30, "{}", 0, &n); /* 1 GB */
    expect_st(p, n, DSQ_FORMAT, "exceeds the limit");
    free(p);
    p = st_file(DSQ_ST_MAX_HEADER, "{}", 0, &n); /* at the limit, past the end */
    expect_st(p, n, DSQ_FORMAT, "runs past the end");
    free(p);
    p = st_file((uint64_t)1 << 63, "{}", 0, &n);
    expect_st(p, n, DSQ_FORMAT, "exceeds the limit");
    free(p);
    p = st_file(2, "", 0, &n); /* 8 bytes: the claim alone */
    expect_st(p, n, DSQ_FORMAT, "runs past the end");
    free(p);
    expect_st((const uint8_t *)"\x02\0\0\0", 4, DSQ_FORMAT, "too short");
}

static void test_st_shape_overflow(void **state) {
    (void)state;
    /* 2^32 * 2^32 * 16 elements: the element count overflows */
    expect_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
                  "\"data_offsets\":[0,0]}}",
                  0, DSQ_FORMAT, "element count overflows");
    /* 2^62 F32 elements fit, their 2^64 bytes do not */
    expect_header("{\"t\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                  "\"data_offsets\":[0,0]}}",
                  0, DSQ_FORMAT, "overflow");
    /* INT64_MAX x 3: each fits, the product does not */
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[9223372036854775807,3],"
                  "\"data_offsets\":[0,0]}}",
                  0, DSQ_FORMAT, "element count overflows");
    /* a 1 GB tensor claimed in a 100-byte file */
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[1073741824],"
                  "\"data_offsets\":[0,1073741824]}}",
                  16, DSQ_FORMAT, "past the end of the data");
    /* 2^64 - 1 is not an int64: the JSON reader refuses it */
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
                  "\"data_offsets\":[0,0]}}",
                  0, DSQ_FORMAT, "header JSON");
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
                  DSQ_FORMAT, "shape[0] is not a non-negative integer");
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2]}}", 2,
                  DSQ_FORMAT, "shape[0] is not a non-negative integer");
    /* 10,000 dimensions of 1 */
    char *many = malloc(40000);
    assert_non_null(many);
    char *o = many + sprintf(many, "{\"t\":{\"dtype\":\"U8\",\"shape\":[1");
    for (int i = 1; i < 10000; i++)
        o += sprintf(o, ",1");
    sprintf(o, "],\"data_offsets\":[0,1]}}");
    expect_header(many, 1, DSQ_UNSUPPORTED, "more than 64 elements");
    free(many);
}

/* A 100 KB tensor name: the message still says what is wrong with it, since
 * an over-long message keeps its end (core/status.c). */
static void test_st_long_name(void **state) {
    (void)state;
    enum { NAME = 100000 };
    char *h = malloc(NAME + 128);
    assert_non_null(h);
    char *o = h + sprintf(h, "{\"");
    memset(o, 'n', NAME);
    o += NAME;
    sprintf(o, "\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}");
    expect_header(h, 0, DSQ_FORMAT, "shape[0] is not a non-negative integer");
    size_t n;
    uint8_t *p = st_file(strlen(h), h, 0, &n);
    dsq_st *st = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_st_parse(&st, p, n, "hostile", &err), DSQ_FORMAT);
    assert_true(strncmp(err.text, "hostile: tensor 'nnn", 20) == 0); /* the start kept */
    assert_non_null(strstr(err.text, "n...n"));                     /* the middle cut */
    assert_true(strlen(err.text) == sizeof err.text - 1);
    free(p);
    free(h);
}

static void test_st_offsets(void **state) {
    (void)state;
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[4],"
                  "\"data_offsets\":[0,9223372036854775808]}}",
                  4, DSQ_FORMAT, "header JSON"); /* 2^63: not an int64 */
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[4],"
                  "\"data_offsets\":[9223372036854775807,9223372036854775807]}}",
                  4, DSQ_FORMAT, "data_offsets");
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[4],"
                  "\"data_offsets\":[0,9223372036854775807]}}",
                  4, DSQ_FORMAT, "data_offsets span");
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-1,3]}}", 4,
                  DSQ_FORMAT, "not non-negative integers");
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,-4]}}", 4,
                  DSQ_FORMAT, "not non-negative integers");
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,0]}}", 4,
                  DSQ_FORMAT, "data_offsets");
    expect_header("{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 4,
                  DSQ_FORMAT, "two integers");
}

static void test_st_deep_json(void **state) {
    (void)state;
    char *h = nested("{\"__metadata__\":{\"k\":\"v\"},\"t\":", 10000, "}");
    expect_header(h, 0, DSQ_FORMAT, "nested deeper");
    free(h);
    /* 2 MB of one array: refused before the JSON parser turns it into nodes */
    const size_t big = (size_t)1 << 20;
    h = malloc(2 * big + 64);
    assert_non_null(h);
    char *o = h + sprintf(h, "{\"t\":{\"dtype\":\"U8\",\"shape\":[0");
    for (size_t i = 1; i < big; i++, o += 2)
        memcpy(o, ",0", 2);
    strcpy(o, "],\"data_offsets\":[0,0]}}");
    expect_header(h, 0, DSQ_UNSUPPORTED, "more than 64 elements");
    free(h);
    h = nested("", 10000, "");
    expect_header(h, 0, DSQ_FORMAT, "header does not start with '{'");
    free(h);
    /* a NUL that the JSON library would take for the end of a number */
    static const char nul_hdr[] = "{\"t\":{\"dtype\":\"U8\",\"shape\":[4\0],\"data_offsets\":[0,4]}}";
    size_t n;
    uint8_t *p = st_file(sizeof nul_hdr - 1, "", sizeof nul_hdr - 1 + 4, &n);
    memcpy(p + 8, nul_hdr, sizeof nul_hdr - 1);
    expect_st(p, n, DSQ_FORMAT, "NUL byte");
    free(p);
}

/* ---- the index ---------------------------------------------------------- */

static void test_index_hostile(void **state) {
    (void)state;
    char *deep = nested("{\"weight_map\":{\"a\":\"a.safetensors\"},\"x\":", 10000, "}");
    expect_index(deep, DSQ_FORMAT, "index");
    free(deep);
    expect_index("{\"weight_map\":{\"a\":18446744073709551615}}", DSQ_FORMAT, "index");
    expect_index("{\"weight_map\":{\"a\":-1}}", DSQ_FORMAT, "not a string");
    expect_index("{\"weight_map\":[\"a.safetensors\"]}", DSQ_FORMAT, "weight_map");
    expect_index("[]", DSQ_FORMAT, "weight_map");
    expect_index("{\"weight_map\":{\"a\":\"../../x.safetensors\"}}", DSQ_FORMAT,
                 "not a plain file name");
    expect_index("{\"weight_map\":{\"a\":\"/etc/passwd.safetensors\"}}", DSQ_FORMAT,
                 "not a plain file name");
    expect_index("{\"weight_map\":{\"a\":\"x.safetensors\",\"b\":\"x\\ny.safetensors\"}}",
                 DSQ_FORMAT, "not a plain file name");
    expect_index("{\"weight_map\":{\"a\":\"x.safetensors\\u0000.txt\"}}", DSQ_FORMAT, "u0000");
    expect_index("{\"weight_map\":{\"a\":\"x.bin\"}}", DSQ_FORMAT, "not a .safetensors file");
    expect_index("{\"weight_map\":{\"a\":\"x.safetensors\"}}\0junk", DSQ_OK, "");
    /* a 1 MB shard name: parsed, then refused as a file name (at most 255 bytes) */
    const size_t big = (size_t)1 << 20;
    char *t = malloc(big + 64);
    assert_non_null(t);
    char *o = t + sprintf(t, "{\"weight_map\":{\"a\":\"");
    memset(o, 'x', big);
    strcpy(o + big, ".safetensors\"}}");
    expect_index(t, DSQ_FORMAT, "not a plain file name");
    free(t);
    /* a million tiny members: refused on the raw text, before jansson builds
     * a node for each (DSQ_INDEX_MAX_MEMBERS is 2^20; a real index has ~1e5) */
    const size_t members = ((size_t)1 << 20) + 10;
    char *wide = malloc(members * 12 + 64);
    assert_non_null(wide);
    char *w = wide + sprintf(wide, "{\"weight_map\":{");
    for (size_t i = 0; i < members; i++)
        w += sprintf(w, "%s\"%zx\":\"s\"", i ? "," : "", i);
    strcpy(w, "}}");
    expect_index(wide, DSQ_UNSUPPORTED, "more than 1048576 JSON object members");
    free(wide);
    size_t shards = 0;
    dsq_err err = {0};
    static const char ok[] = "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\","
                             "\"c\":\"s1.safetensors\"}}";
    assert_int_equal(dsq_ckpt_index_parse(ok, sizeof ok - 1, NULL, &shards, &err), DSQ_OK);
    assert_int_equal(shards, 2);
}

/* ---- config.json -------------------------------------------------------- */

static void test_config_hostile(void **state) {
    (void)state;
    char *out = NULL;
    size_t out_len = 0;
    int64_t r, c;
    int found;
    dsq_err err = {0};
    char *deep = nested("{\"a\":", 10000, "}");
    assert_int_equal(dsq_json_edit_top(deep, strlen(deep), "quantization_config", "torch_dtype",
                                       "bfloat16", "config", &out, &out_len, &err),
                     DSQ_FORMAT);
    assert_null(out);
    dsq_err_clear(&err);
    assert_int_equal(dsq_config_fp8_block(deep, strlen(deep), "config", &r, &c, &found, &err),
                     DSQ_FORMAT);
    free(deep);
    static const char *const bad_blocks[] = {
        "{\"quantization_config\":{\"weight_block_size\":[9223372036854775807,1]}}",
        "{\"quantization_config\":{\"weight_block_size\":[0,128]}}",
        "{\"quantization_config\":{\"weight_block_size\":[-128,128]}}",
        "{\"quantization_config\":{\"weight_block_size\":[128]}}",
        "{\"quantization_config\":{\"weight_block_size\":[128.0,128]}}",
        "{\"quantization_config\":{\"weight_block_size\":[128,18446744073709551615]}}",
    };
    for (size_t i = 0; i < sizeof bad_blocks / sizeof bad_blocks[0]; i++) {
        dsq_err_clear(&err);
        const dsq_status st = dsq_config_fp8_block(bad_blocks[i], strlen(bad_blocks[i]), "config",
                                                   &r, &c, &found, &err);
        if (st != DSQ_FORMAT || err.text[0] == '\0')
            fail_msg("%s: got %s", bad_blocks[i], dsq_status_name(st));
    }
    /* a NUL after a number, accepted by the JSON library, refused by the editor */
    static const char nul_cfg[] = "{\"a\": 25\0, \"torch_dtype\": \"float16\"}";
    dsq_err_clear(&err);
    assert_int_equal(dsq_json_edit_top(nul_cfg, sizeof nul_cfg - 1, "quantization_config",
                                       "torch_dtype", "bfloat16", "config", &out, &out_len, &err),
                     DSQ_FORMAT);
    assert_non_null(strstr(err.text, "NUL byte"));
    /* a separator of 100,000 spaces, repeated when a member is appended */
    const size_t pad = 100000;
    char *t = malloc(pad + 64);
    assert_non_null(t);
    char *o = t + sprintf(t, "{\"a\": 1,");
    memset(o, ' ', pad);
    strcpy(o + pad, "\"b\": 2}");
    dsq_err_clear(&err);
    assert_int_equal(dsq_json_edit_top(t, strlen(t), NULL, "torch_dtype", "bfloat16", "config",
                                       &out, &out_len, &err),
                     DSQ_OK);
    assert_int_equal(out_len, strlen(out));
    assert_non_null(strstr(out, "\"torch_dtype\": \"bfloat16\"}"));
    free(out);
    free(t);
}

static void test_name_is_safe(void **state) {
    (void)state;
    static const char *const bad[] = {"", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b",
                                      ".hidden", "x\ny", "x\ty", "x\x7fy", "x\x1b[31m"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (dsq_name_is_safe(bad[i], strlen(bad[i])))
            fail_msg("'%s' accepted as a file name", bad[i]);
    }
    assert_false(dsq_name_is_safe("a\0b", 3));
    char long_name[300];
    memset(long_name, 'x', sizeof long_name);
    assert_false(dsq_name_is_safe(long_name, sizeof long_name));
    assert_true(dsq_name_is_safe("model-00001-of-00002.safetensors", 32));
    assert_true(dsq_name_is_safe("w\xc3\xa9ird name.safetensors", 23));
}

static long rss_before;

static int record_rss(void **state) {
    (void)state;
    rss_before = max_rss_kib();
    return 0;
}

/* Runs last: everything above together grew the process by less than the bound. */
static void test_memory_bound(void **state) {
    (void)state;
    const long grown = max_rss_kib() - rss_before;
    if (grown > RSS_BOUND_KIB)
        fail_msg("max RSS grew by %ld KiB on hostile input (bound %ld KiB)", grown,
                 RSS_BOUND_KIB);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st_header_length_claims),
        cmocka_unit_test(test_st_shape_overflow),
        cmocka_unit_test(test_st_offsets),
        cmocka_unit_test(test_st_long_name),
        cmocka_unit_test(test_st_deep_json),
        cmocka_unit_test(test_index_hostile),
        cmocka_unit_test(test_config_hostile),
        cmocka_unit_test(test_name_is_safe),
        cmocka_unit_test(test_memory_bound),
    };
    return cmocka_run_group_tests(tests, record_rss, NULL);
}
