/* tests/test_convert.c: `dsq convert fp8 bf16` end to end.
 *
 * Oracles:
 * - a generated two-shard checkpoint whose expected BF16 is computed here,
 *   independently of the converter: FP8 codes decoded from their bit fields
 *   (sign, exponent, mantissa with bias 7), the product with the block's
 *   scale formed exactly in double and rounded once to F32 (what an F32
 *   multiply does), then rounded to BF16 by comparing the distances to the
 *   two neighbouring BF16 values (ties to the even one) -- DeepSeek's
 *   weight_dequant arithmetic as specs/formats.md §7.2 states it;
 * - the team's trained FP8 model and its exact cast, computed by two other
 *   implementations (../shared/data/tiny-models/README.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert/fp8_bf16.h"
#include "quantize/fp8.h"
#include "core/numeric.h"
#include "core/file.h"
#include "formats/st_checkpoint.h"
#include "tests/testutil.h"

/* ---- the independent oracle ---- */

static double e4m3_value(uint8_t v) {
    const int s = v >> 7, e = (v >> 3) & 15, m = v & 7;
    const double mag = e == 0 ? m / 512.0 : ldexp(8 + m, e - 10);
    return s ? -mag : mag;
}

static uint16_t bf16_nearest_even(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
    const uint32_t lo = mag & 0xffff0000u, hi = lo + 0x10000u;
    float flo, fhi, fabs_;
    const uint32_t ulo = lo, uhi = hi, umag = mag;
    memcpy(&flo, &ulo, 4);
    memcpy(&fhi, &uhi, 4);
    memcpy(&fabs_, &umag, 4);
    const double dlo = (double)fabs_ - (double)flo, dhi = (double)fhi - (double)fabs_;
    uint32_t pick;
    if (dlo < dhi)
        pick = lo;
    else if (dhi < dlo)
        pick = hi;
    else
        pick = ((lo >> 16) & 1) ? hi : lo;
    return (uint16_t)((sign | pick) >> 16);
}

static uint16_t expect_bf16(uint8_t code, float scale) {
    const float prod = (float)(e4m3_value(code) * (double)scale); /* exact, then one rounding */
    return bf16_nearest_even(prod);
}

/* ---- building input checkpoints by hand ---- */

typedef struct tens {
    const char *name;
    const char *dtype;
    int64_t r, c; /* c == 0: 1-D of r */
    uint8_t *data;
    size_t nbytes;
} tens;

static void write_shard(const char *path, const tens *t, size_t n) {
    char header[4096];
    size_t h = 0, off = 0;
    h += (size_t)snprintf(header + h, sizeof header - h, "{\"__metadata__\":{\"src\":\"test\"}");
    for (size_t i = 0; i < n; i++) {
        if (t[i].c)
            h += (size_t)snprintf(header + h, sizeof header - h,
                                  ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%" PRId64 ",%" PRId64
                                  "],\"data_offsets\":[%zu,%zu]}",
                                  t[i].name, t[i].dtype, t[i].r, t[i].c, off, off + t[i].nbytes);
        else
            h += (size_t)snprintf(header + h, sizeof header - h,
                                  ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%" PRId64
                                  "],\"data_offsets\":[%zu,%zu]}",
                                  t[i].name, t[i].dtype, t[i].r, off, off + t[i].nbytes);
        off += t[i].nbytes;
    }
    h += (size_t)snprintf(header + h, sizeof header - h, "}");
    uint8_t *file = malloc(8 + h + off);
    assert_non_null(file);
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(file + 8, header, h);
    size_t o = 8 + h;
    for (size_t i = 0; i < n; i++) {
        memcpy(file + o, t[i].data, t[i].nbytes);
        o += t[i].nbytes;
    }
    tu_write_file(path, file, o);
    free(file);
}

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static uint8_t *fp8_data(int64_t r, int64_t c, uint32_t seed) {
    uint8_t *p = malloc((size_t)(r * c));
    assert_non_null(p);
    for (int64_t i = 0; i < r * c; i++) {
        uint8_t v = (uint8_t)lcg(&seed);
        if ((v & 0x7f) == 0x7f) /* NaN codes: the reference's NaN payload is not specified */
            v ^= 1;
        p[i] = v;
    }
    return p;
}

static uint8_t *f32_data(const float *v, size_t n) {
    uint8_t *p = malloc(4 * n);
    assert_non_null(p);
    memcpy(p, v, 4 * n);
    return p;
}

static uint8_t *bytes_data(size_t n, uint32_t seed) {
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)lcg(&seed);
    return p;
}

/* The generated checkpoint: A is 200x300 (edge blocks both ways), B 130x129
 * with its scale in the other shard, C 64x64 with a scale small enough that
 * some products are BF16 subnormals; a BF16 norm, an F32 bias, a BF16
 * embedding; config.json with 128x128 blocks; a tokenizer file and a
 * subdirectory to be copied. */
typedef struct gen {
    char *dir;
    tens s1[5], s2[3];
    float scale_a[6], scale_b[4], scale_c[1];
} gen;

static void gen_checkpoint(gen *g, const char *config_extra) {
    g->dir = tu_mkdtemp();
    const float sa[6] = {0.00123f, 3.5e-4f, 1.0f, 2.75f, 1e-3f, 0.5f};
    const float sb[4] = {0.01f, 0.02f, 0.03f, 7.0f};
    const float sc[1] = {1e-37f};
    memcpy(g->scale_a, sa, sizeof sa);
    memcpy(g->scale_b, sb, sizeof sb);
    memcpy(g->scale_c, sc, sizeof sc);
    tens s1[5] = {
        {"model.a.weight", "F8_E4M3", 200, 300, fp8_data(200, 300, 1), 200 * 300},
        {"model.a.weight_scale_inv", "F32", 2, 3, f32_data(sa, 6), 24},
        {"model.b.weight", "F8_E4M3", 130, 129, fp8_data(130, 129, 2), 130 * 129},
        {"model.norm.weight", "BF16", 300, 0, bytes_data(600, 3), 600},
        {"model.c.weight", "F8_E4M3", 64, 64, fp8_data(64, 64, 4), 64 * 64},
    };
    tens s2[3] = {
        {"model.b.weight_scale_inv", "F32", 2, 2, f32_data(sb, 4), 16},
        {"model.bias", "F32", 7, 0, bytes_data(28, 5), 28},
        {"model.c.weight_scale_inv", "F32", 1, 1, f32_data(sc, 1), 4},
    };
    memcpy(g->s1, s1, sizeof s1);
    memcpy(g->s2, s2, sizeof s2);
    char *p1 = dsq_path_join(g->dir, "model-00001-of-00002.safetensors");
    char *p2 = dsq_path_join(g->dir, "model-00002-of-00002.safetensors");
    write_shard(p1, g->s1, 5);
    write_shard(p2, g->s2, 3);
    char idx[2048];
    snprintf(idx, sizeof idx,
             "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {"
             "\"model.a.weight\": \"model-00001-of-00002.safetensors\", "
             "\"model.a.weight_scale_inv\": \"model-00001-of-00002.safetensors\", "
             "\"model.b.weight\": \"model-00001-of-00002.safetensors\", "
             "\"model.norm.weight\": \"model-00001-of-00002.safetensors\", "
             "\"model.c.weight\": \"model-00001-of-00002.safetensors\", "
             "\"model.b.weight_scale_inv\": \"model-00002-of-00002.safetensors\", "
             "\"model.bias\": \"model-00002-of-00002.safetensors\", "
             "\"model.c.weight_scale_inv\": \"model-00002-of-00002.safetensors\"}}");
    char *pi = dsq_path_join(g->dir, DSQ_INDEX_JSON);
    tu_write_file(pi, idx, strlen(idx));
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\n  \"model_type\": \"deepseek_v3\",\n  \"rms_norm_eps\": 1e-06,\n"
             "  \"quantization_config\": {\"quant_method\": \"fp8\", "
             "\"weight_block_size\": [128, 128]},\n  \"torch_dtype\": \"float8\"%s\n}\n",
             config_extra ? config_extra : "");
    char *pc = dsq_path_join(g->dir, "config.json");
    tu_write_file(pc, cfg, strlen(cfg));
    char *pt = dsq_path_join(g->dir, "tokenizer.json");
    tu_write_file(pt, "{\"model\":{}}", 12);
    char *sub = dsq_path_join(g->dir, "inference");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && echo 'print(1)' > '%s/model.py'", sub, sub);
    assert_int_equal(tu_system(cmd), 0);
    free(p1), free(p2), free(pi), free(pc), free(pt), free(sub);
}

static void gen_free(gen *g) {
    for (int i = 0; i < 5; i++)
        free(g->s1[i].data);
    for (int i = 0; i < 3; i++)
        free(g->s2[i].data);
    tu_rm_rf(g->dir);
    free(g->dir);
}

static void check_converted(const dsq_ckpt *out, const char *name, const uint8_t *codes,
                            int64_t r, int64_t c, const float *scales) {
    const dsq_tensor_view *v = dsq_ckpt_find(out, name, NULL, NULL);
    assert_non_null(v);
    assert_int_equal(v->dtype, DSQ_DTYPE_BF16);
    assert_int_equal(v->shape[0], r);
    assert_int_equal(v->shape[1], c);
    const int64_t ncb = (c + 127) / 128;
    const uint8_t *d = v->data;
    for (int64_t i = 0; i < r; i++) {
        for (int64_t j = 0; j < c; j++) {
            const uint16_t want = expect_bf16(codes[i * c + j], scales[(i / 128) * ncb + j / 128]);
            const uint16_t got = (uint16_t)(d[2 * (i * c + j)] | d[2 * (i * c + j) + 1] << 8);
            if (want != got)
                fail_msg("%s[%" PRId64 "][%" PRId64 "]: code 0x%02x: got 0x%04x, expected 0x%04x",
                         name, i, j, codes[i * c + j], got, want);
        }
    }
}

static dsq_status run(const char *in, const char *out, int threads, int resume, int keep,
                      dsq_fp8_summary *s, dsq_err *err) {
    dsq_fp8_opts o;
    memset(&o, 0, sizeof o);
    o.threads = threads;
    o.resume = resume;
    o.keep_unscaled_fp8 = keep;
    o.buf_size = 4096; /* small buffers: many chunks, edge rows */
    return dsq_convert_fp8_bf16(in, out, &o, s, err);
}

static char *read_text(const char *dir, const char *name) {
    char *p = dsq_path_join(dir, name);
    size_t n;
    char *t = (char *)tu_read_file(p, &n);
    free(p);
    return t;
}

static void test_generated_checkpoint(void **state) {
    (void)state;
    gen g;
    gen_checkpoint(&g, NULL);
    char *out = tu_mkdtemp();
    char *outdir = dsq_path_join(out, "bf16");
    dsq_fp8_summary s;
    dsq_err err = {0};
    assert_int_equal(run(g.dir, outdir, 2, 0, 0, &s, &err), DSQ_OK);
    assert_int_equal(s.tensors_converted, 3);
    assert_int_equal(s.tensors_copied, 2);
    assert_int_equal(s.scales_dropped, 3);
    assert_int_equal(s.shards_written, 2);

    dsq_ckpt *ck = NULL;
    assert_int_equal(dsq_ckpt_open(&ck, outdir, &err), DSQ_OK);
    check_converted(ck, "model.a.weight", g.s1[0].data, 200, 300, g.scale_a);
    check_converted(ck, "model.b.weight", g.s1[2].data, 130, 129, g.scale_b);
    check_converted(ck, "model.c.weight", g.s1[4].data, 64, 64, g.scale_c);
    /* other tensors bit for bit, scales gone, metadata kept plus format pt */
    const dsq_tensor_view *norm = dsq_ckpt_find(ck, "model.norm.weight", NULL, NULL);
    const dsq_tensor_view *bias = dsq_ckpt_find(ck, "model.bias", NULL, NULL);
    assert_non_null(norm);
    assert_non_null(bias);
    assert_int_equal(norm->dtype, DSQ_DTYPE_BF16);
    assert_int_equal(bias->dtype, DSQ_DTYPE_F32);
    assert_memory_equal(norm->data, g.s1[3].data, 600);
    assert_memory_equal(bias->data, g.s2[1].data, 28);
    assert_null(dsq_ckpt_find(ck, "model.a.weight_scale_inv", NULL, NULL));
    assert_null(dsq_ckpt_find(ck, "model.b.weight_scale_inv", NULL, NULL));
    for (size_t i = 0; i < dsq_ckpt_shard_count(ck); i++) {
        assert_string_equal(dsq_st_meta_get(dsq_ckpt_shard(ck, i), "format"), "pt");
        assert_string_equal(dsq_st_meta_get(dsq_ckpt_shard(ck, i), "src"), "test");
    }
    assert_string_equal(dsq_ckpt_shard_name(ck, 1), "model-00002-of-00002.safetensors");
    dsq_ckpt_close(ck);

    /* the index: every output tensor, total_size = sum of tensor bytes */
    char *idx = read_text(outdir, DSQ_INDEX_JSON);
    json_error_t je;
    json_t *j = json_loads(idx, 0, &je);
    assert_non_null(j);
    const json_t *wm = json_object_get(j, "weight_map");
    assert_int_equal(json_object_size(wm), 5);
    assert_null(json_object_get(wm, "model.a.weight_scale_inv"));
    assert_string_equal(json_string_value(json_object_get(wm, "model.bias")),
                        "model-00002-of-00002.safetensors");
    const json_int_t total = 2 * (200 * 300 + 130 * 129 + 64 * 64) + 600 + 28;
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "metadata"),
                                                        "total_size")),
                     total);
    json_decref(j);
    free(idx);

    /* config: quantization_config gone, torch_dtype bfloat16, the rest as written */
    char *cfg = read_text(outdir, "config.json");
    assert_string_equal(cfg, "{\n  \"model_type\": \"deepseek_v3\",\n  \"rms_norm_eps\": 1e-06,\n"
                             "  \"torch_dtype\": \"bfloat16\"\n}\n");
    free(cfg);
    char *tok = read_text(outdir, "tokenizer.json");
    assert_string_equal(tok, "{\"model\":{}}");
    free(tok);
    char *code = read_text(outdir, "inference/model.py");
    assert_string_equal(code, "print(1)\n");
    free(code);
    char *man = read_text(outdir, DSQ_MANIFEST_NAME);
    assert_non_null(strstr(man, "\"complete\": true"));
    free(man);

    tu_rm_rf(out);
    free(outdir);
    free(out);
    gen_free(&g);
}

/* The trained FP8 model against its exact cast (two other implementations). */
static void test_tiny_deepseek_matches_reference_cast(void **state) {
    (void)state;
    char *in = tu_shared_path("data/tiny-models/tiny-deepseek-v3-fp8");
    char *ref = tu_shared_path("data/tiny-models/tiny-deepseek-v3-fp8-cast-bf16");
    char *out = tu_mkdtemp();
    char *outdir = dsq_path_join(out, "bf16");
    dsq_fp8_summary s;
    dsq_err err = {0};
    assert_int_equal(run(in, outdir, 0, 0, 0, &s, &err), DSQ_OK);
    assert_int_equal(s.tensors_converted, 104);

    dsq_ckpt *a = NULL, *b = NULL;
    assert_int_equal(dsq_ckpt_open(&a, outdir, &err), DSQ_OK);
    assert_int_equal(dsq_ckpt_open(&b, ref, &err), DSQ_OK);
    assert_int_equal(dsq_ckpt_tensor_count(a), dsq_ckpt_tensor_count(b));
    for (size_t sh = 0; sh < dsq_ckpt_shard_count(b); sh++) {
        const dsq_st *st = dsq_ckpt_shard(b, sh);
        for (size_t i = 0; i < dsq_st_count(st); i++) {
            const dsq_tensor_view *want = dsq_st_tensor(st, i);
            size_t got_shard;
            const dsq_tensor_view *got = dsq_ckpt_find(a, want->name, &got_shard, NULL);
            if (got == NULL)
                fail_msg("missing %s", want->name);
            assert_int_equal(got_shard, sh); /* shard names and placement kept */
            assert_int_equal(got->dtype, want->dtype);
            assert_int_equal(got->nbytes, want->nbytes);
            if (memcmp(got->data, want->data, (size_t)want->nbytes) != 0)
                fail_msg("tensor %s differs from the reference cast", want->name);
        }
    }
    dsq_ckpt_close(a);
    dsq_ckpt_close(b);

    /* index and config equal the reference's as JSON; other files byte-identical */
    static const char *const json_files[] = {DSQ_INDEX_JSON, "config.json"};
    for (int k = 0; k < 2; k++) {
        char *x = read_text(outdir, json_files[k]), *y = read_text(ref, json_files[k]);
        json_error_t je;
        json_t *jx = json_loads(x, 0, &je), *jy = json_loads(y, 0, &je);
        if (!json_equal(jx, jy))
            fail_msg("%s differs from the reference", json_files[k]);
        json_decref(jx), json_decref(jy), free(x), free(y);
    }
    static const char *const same[] = {"tokenizer.json", "tokenizer_config.json",
                                       "generation_config.json"};
    for (int k = 0; k < 3; k++) {
        char *p = dsq_path_join(outdir, same[k]), *q = dsq_path_join(ref, same[k]);
        size_t n1, n2;
        uint8_t *x = tu_read_file(p, &n1), *y = tu_read_file(q, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(x, y, n1);
        free(x), free(y), free(p), free(q);
    }
    tu_rm_rf(out);
    free(outdir), free(out), free(in), free(ref);
}

/* Each inconsistency is its own error naming the tensor, and nothing is written. */
static void expect_convert_error(const char *idx_fix_tensor, const char *dtype, int64_t r,
                                 int64_t c, const float *scale, int64_t sr, int64_t sc,
                                 const char *scale_dtype, const char *frag) {
    char *dir = tu_mkdtemp();
    uint8_t *w = fp8_data(r, c, 9);
    const size_t sbytes = (size_t)(sr * sc) * (strcmp(scale_dtype, "F32") == 0 ? 4 : 2);
    uint8_t *s = calloc(1, sbytes + 4);
    if (scale != NULL)
        memcpy(s, scale, sbytes);
    tens t[2] = {{idx_fix_tensor, dtype, r, c, w, (size_t)(r * c)},
                 {"x.weight_scale_inv", scale_dtype, sr, sc, s, sbytes}};
    char *p = dsq_path_join(dir, "model.safetensors");
    write_shard(p, t, scale == NULL ? 1 : 2);
    char *out = dsq_path_join(dir, "out");
    dsq_err err = {0};
    dsq_fp8_summary sum;
    const dsq_status st = run(dir, out, 1, 0, 0, &sum, &err);
    if (st == DSQ_OK || strstr(err.text, frag) == NULL)
        fail_msg("got %s '%s', expected an error containing '%s'", dsq_status_name(st), err.text,
                 frag);
    assert_false(tu_file_exists(out)); /* validated before anything was created */
    tu_rm_rf(dir);
    free(w), free(s), free(p), free(out), free(dir);
}

static void test_inconsistent_inputs(void **state) {
    (void)state;
    const float ok4[4] = {1, 1, 1, 1};
    const float nan4[4] = {1, NAN, 1, 1};
    const float inf4[4] = {1, 1, INFINITY, 1};
    expect_convert_error("x.weight", "F8_E4M3", 200, 300, NULL, 0, 0, "F32",
                         "'x.weight' is F8_E4M3 but has no 'x.weight_scale_inv'");
    expect_convert_error("x.weight", "F8_E4M3", 200, 300, ok4, 2, 2, "F32",
                         "'x.weight_scale_inv': scale shape [2, 2] does not match");
    expect_convert_error("x.weight", "F8_E4M3", 200, 200, nan4, 2, 2, "F32",
                         "'x.weight_scale_inv': scale[0][1] is NaN");
    expect_convert_error("x.weight", "F8_E4M3", 200, 200, inf4, 2, 2, "F32",
                         "'x.weight_scale_inv': scale[1][0] is infinite");
    expect_convert_error("x.weight", "F8_E4M3", 200, 200, ok4, 2, 2, "BF16",
                         "'x.weight_scale_inv': scale is BF16, expected F32");
}

static void test_missing_scale_kept_when_allowed(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    uint8_t *w = fp8_data(4, 8, 3);
    tens t[1] = {{"x.weight", "F8_E4M3", 4, 8, w, 32}};
    char *p = dsq_path_join(dir, "model.safetensors");
    write_shard(p, t, 1);
    char *out = dsq_path_join(dir, "out");
    dsq_err err = {0};
    dsq_fp8_summary s;
    assert_int_equal(run(dir, out, 1, 0, 1, &s, &err), DSQ_OK);
    assert_int_equal(s.tensors_kept_fp8, 1);
    dsq_ckpt *ck = NULL;
    assert_int_equal(dsq_ckpt_open(&ck, out, &err), DSQ_OK);
    const dsq_tensor_view *v = dsq_ckpt_find(ck, "x.weight", NULL, NULL);
    assert_int_equal(v->dtype, DSQ_DTYPE_F8_E4M3);
    assert_memory_equal(v->data, w, 32);
    dsq_ckpt_close(ck);
    tu_rm_rf(dir);
    free(w), free(p), free(out), free(dir);
}

static void test_block_size_from_config(void **state) {
    (void)state;
    /* 64 x 32 blocks: the scale of a 200x300 weight is [4, 10] */
    char *dir = tu_mkdtemp();
    uint8_t *w = fp8_data(200, 300, 11);
    float sc[40];
    for (int i = 0; i < 40; i++)
        sc[i] = 0.001f * (float)(i + 1);
    tens t[2] = {{"x.weight", "F8_E4M3", 200, 300, w, 60000},
                 {"x.weight_scale_inv", "F32", 4, 10, f32_data(sc, 40), 160}};
    char *p = dsq_path_join(dir, "model.safetensors");
    write_shard(p, t, 2);
    const char *cfg = "{\"quantization_config\": {\"weight_block_size\": [64, 32]}}";
    char *pc = dsq_path_join(dir, "config.json");
    tu_write_file(pc, cfg, strlen(cfg));
    char *out = dsq_path_join(dir, "out");
    dsq_err err = {0};
    dsq_fp8_summary s;
    assert_int_equal(run(dir, out, 2, 0, 0, &s, &err), DSQ_OK);
    dsq_ckpt *ck = NULL;
    assert_int_equal(dsq_ckpt_open(&ck, out, &err), DSQ_OK);
    const dsq_tensor_view *v = dsq_ckpt_find(ck, "x.weight", NULL, NULL);
    const uint8_t *d = v->data;
    for (int64_t i = 0; i < 200; i++)
        for (int64_t j = 0; j < 300; j++) {
            const uint16_t want = expect_bf16(w[i * 300 + j], sc[(i / 64) * 10 + j / 32]);
            assert_int_equal(d[2 * (i * 300 + j)] | d[2 * (i * 300 + j) + 1] << 8, want);
        }
    dsq_ckpt_close(ck);
    tu_rm_rf(dir);
    free(w), free(t[1].data), free(p), free(pc), free(out), free(dir);
}

static void test_resume_and_dry_run(void **state) {
    (void)state;
    gen g;
    gen_checkpoint(&g, NULL);
    char *out = dsq_path_join(g.dir, "out");
    dsq_err err = {0};
    dsq_fp8_summary s;

    dsq_fp8_opts o;
    memset(&o, 0, sizeof o);
    o.dry_run = 1;
    assert_int_equal(dsq_convert_fp8_bf16(g.dir, out, &o, &s, &err), DSQ_OK);
    assert_false(tu_file_exists(out)); /* a dry run writes nothing */
    assert_int_equal(s.shards_planned, 2);

    assert_int_equal(run(g.dir, out, 1, 0, 0, &s, &err), DSQ_OK);
    char *p2 = dsq_path_join(out, "model-00002-of-00002.safetensors");
    size_t n_before;
    uint8_t *before = tu_read_file(p2, &n_before);

    /* a killed run's temporary in a copied subdirectory is swept by the next run */
    char *stale = dsq_path_join(out, "inference/.model.py.dsqtmp.AbC123");
    tu_write_file(stale, "half", 4);

    /* everything intact: both shards skipped */
    assert_int_equal(run(g.dir, out, 1, 1, 0, &s, &err), DSQ_OK);
    assert_false(tu_file_exists(stale));
    free(stale);
    assert_int_equal(s.shards_resumed, 2);
    assert_int_equal(s.shards_written, 0);

    /* one byte of shard 2 damaged: only that shard is rewritten */
    before[n_before - 1] ^= 0xff;
    tu_write_file(p2, before, n_before);
    before[n_before - 1] ^= 0xff;
    assert_int_equal(run(g.dir, out, 1, 1, 0, &s, &err), DSQ_OK);
    assert_int_equal(s.shards_resumed, 1);
    assert_int_equal(s.shards_written, 1);
    size_t n_after;
    uint8_t *after = tu_read_file(p2, &n_after);
    assert_int_equal(n_after, n_before);
    assert_memory_equal(after, before, n_before);
    free(before), free(after), free(p2), free(out);
    gen_free(&g);
}

/* Flips one bit of byte `at` of tensor `name`'s data in the shard at path. */
static void flip_tensor_byte(const char *path, const char *name, uint64_t at) {
    dsq_st *st = NULL;
    assert_int_equal(dsq_st_open(&st, path, NULL), DSQ_OK);
    const int64_t i = dsq_st_find(st, name);
    assert_true(i >= 0);
    const uint64_t off = dsq_st_tensor_offset(st, (size_t)i) + at;
    dsq_st_close(st);
    size_t n;
    uint8_t *b = tu_read_file(path, &n);
    assert_true(off < n);
    b[off] ^= 0x01;
    tu_write_file(path, b, n);
    free(b);
}

/* Issue #10 item 4, exactly: one byte of tensor data changed in a source
 * shard, and --resume must convert that shard again (the old identity, size
 * and header hash, said "intact"); the result is what a fresh conversion of
 * the changed source gives. A scale that shard 1 takes from shard 2 is part
 * of shard 1's source too. */
static void test_resume_notices_changed_source(void **state) {
    (void)state;
    gen g;
    gen_checkpoint(&g, NULL);
    char *out = dsq_path_join(g.dir, "out"), *fresh = dsq_path_join(g.dir, "fresh");
    char *src1 = dsq_path_join(g.dir, "model-00001-of-00002.safetensors");
    char *src2 = dsq_path_join(g.dir, "model-00002-of-00002.safetensors");
    dsq_err err = {0};
    dsq_fp8_summary s;
    assert_int_equal(run(g.dir, out, 1, 0, 0, &s, &err), DSQ_OK);

    flip_tensor_byte(src1, "model.b.weight", 1000);
    assert_int_equal(run(g.dir, out, 1, 1, 0, &s, &err), DSQ_OK);
    assert_int_equal(s.shards_written, 1);
    assert_int_equal(s.shards_resumed, 1);
    assert_int_equal(run(g.dir, fresh, 1, 0, 0, &s, &err), DSQ_OK);
    size_t na, nb;
    char *pa = dsq_path_join(out, "model-00001-of-00002.safetensors");
    char *pb = dsq_path_join(fresh, "model-00001-of-00002.safetensors");
    uint8_t *a = tu_read_file(pa, &na), *b = tu_read_file(pb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a), free(b);

    /* nothing changed since: both kept */
    assert_int_equal(run(g.dir, out, 1, 1, 0, &s, &err), DSQ_OK);
    assert_int_equal(s.shards_resumed, 2);

    /* shard 1's scale lives in shard 2: both are redone */
    flip_tensor_byte(src2, "model.b.weight_scale_inv", 1);
    assert_int_equal(run(g.dir, out, 1, 1, 0, &s, &err), DSQ_OK);
    assert_int_equal(s.shards_written, 2);
    assert_int_equal(s.shards_resumed, 0);
    free(pa), free(pb), free(src1), free(src2), free(out), free(fresh);
    gen_free(&g);
}

/* Issue #10 item 6: a non-empty output directory is refused unless --force
 * or --resume, and the output is checked before any weight is read: a broken
 * input behind a bad output reports the output. */
static void test_output_checked_first(void **state) {
    (void)state;
    gen g;
    gen_checkpoint(&g, NULL);
    char *out = dsq_path_join(g.dir, "busy");
    char *missing = dsq_path_join(g.dir, "nosuch/out");
    dsq_err err = {0};
    dsq_fp8_summary s;
    assert_int_equal(mkdir(out, 0777), 0);
    tu_put(out, "notes.txt", "mine", 4);
    assert_int_equal(run(g.dir, out, 1, 0, 0, &s, &err), DSQ_INVALID_ARG);
    assert_non_null(strstr(err.text, "directory not empty"));
    dsq_fp8_opts o;
    memset(&o, 0, sizeof o);
    o.force = 1;
    dsq_err_clear(&err);
    assert_int_equal(dsq_convert_fp8_bf16(g.dir, out, &o, &s, &err), DSQ_OK);
    assert_int_equal(s.shards_written, 2);
    char *notes = dsq_path_join(out, "notes.txt");
    assert_true(tu_file_exists(notes)); /* --force replaces same-named files only */
    free(notes);

    /* a truncated shard behind a missing output parent: the output is named */
    char *src1 = dsq_path_join(g.dir, "model-00001-of-00002.safetensors");
    assert_int_equal(truncate(src1, 100), 0);
    dsq_err_clear(&err);
    assert_int_equal(run(g.dir, missing, 1, 0, 0, &s, &err), DSQ_IO);
    char want[1024];
    snprintf(want, sizeof want, "%s: no such directory '%s/nosuch'", missing, g.dir);
    assert_string_equal(err.text, want);
    free(src1), free(out), free(missing);
    gen_free(&g);
}

static void test_refuses_in_place(void **state) {
    (void)state;
    gen g;
    gen_checkpoint(&g, NULL);
    dsq_err err = {0};
    dsq_fp8_summary s;
    assert_int_equal(run(g.dir, g.dir, 1, 0, 0, &s, &err), DSQ_INVALID_ARG);
    assert_non_null(strstr(err.text, "is the input directory"));
    gen_free(&g);
}

static const float lut_scales[] = {1.0f,   0.00123f, 3.5e-4f, 2.75f,   1e-37f,
                                   1e-40f, 1e38f,    -0.5f,   0x1p-9f, 0x1.0101p-3f};

/* The tables against the independent oracle for every code (NaN codes
 * included, which must come out as quiet NaNs keeping their sign) at scales
 * that make normal, subnormal, overflowing and tie products. */
static void test_tables(void **state) {
    (void)state;
    float dec[256];
    uint16_t lut[256];
    for (int i = 0; i < 256; i++)
        dec[i] = dsq_fp8_e4m3_to_f32((uint8_t)i);
    for (size_t k = 0; k < sizeof lut_scales / sizeof lut_scales[0]; k++) {
        dsq__fp8_build_lut(dec, lut_scales[k], lut);
        for (int code = 0; code < 256; code++) {
            if ((code & 0x7f) == 0x7f)
                assert_int_equal(lut[code], code & 0x80 ? 0xffc0 : 0x7fc0);
            else if (lut_scales[k] > 0 && lut_scales[k] < 1e37f) /* no overflow: the oracle applies */
                assert_int_equal(lut[code], expect_bf16((uint8_t)code, lut_scales[k]));
        }
    }
}

/* The AVX-512 lookup against the portable one over run lengths that exercise
 * its vector body and scalar tail; skipped on a CPU without it. */
static void test_simd_lookup(void **state) {
    (void)state;
    if (!dsq__fp8_simd_available())
        skip();
    float dec[256];
    uint8_t in[256 + 37];
    uint16_t lut[256], a[256 + 37], b[256 + 37];
    for (int i = 0; i < 256; i++)
        dec[i] = dsq_fp8_e4m3_to_f32((uint8_t)i);
    for (int i = 0; i < 256 + 37; i++)
        in[i] = (uint8_t)(i * 7 + 3);
    for (size_t k = 0; k < sizeof lut_scales / sizeof lut_scales[0]; k++) {
        dsq__fp8_build_lut(dec, lut_scales[k], lut);
        for (int n = 0; n <= 256 + 37; n += (n < 70 ? 1 : 61)) {
            dsq__fp8_apply_lut(in, a, n, lut);
            dsq__fp8_apply_lut_simd(in, b, n, lut);
            assert_memory_equal(a, b, (size_t)n * 2);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_checkpoint),
        cmocka_unit_test(test_tiny_deepseek_matches_reference_cast),
        cmocka_unit_test(test_inconsistent_inputs),
        cmocka_unit_test(test_missing_scale_kept_when_allowed),
        cmocka_unit_test(test_block_size_from_config),
        cmocka_unit_test(test_resume_and_dry_run),
        cmocka_unit_test(test_resume_notices_changed_source),
        cmocka_unit_test(test_output_checked_first),
        cmocka_unit_test(test_refuses_in_place),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_simd_lookup),
    };
    return cmocka_run_group_tests_name("convert", tests, NULL, NULL);
}
