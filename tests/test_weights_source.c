/* tests/test_weights_source.c: the weight source's tensor handles (weights/source.h).
 *
 * Expected values:
 *  - HF: the team's tiny DeepSeek-V3 FP8 model and its exact BF16 cast, both shared data
 *    (SHARED/data/tiny-models; the cast is what DeepSeek's fp8_cast_bf16.py computes, per
 *    the data README). A FP8 weight read as BF16 must be the cast's bytes, read as F32 the
 *    cast widened; the list must hold every tensor of the index except the `_scale_inv` of
 *    FP8 weights; a part's (file, offset, nbytes) must hold the tensor's bytes, as the
 *    safetensors layout defines it (8-byte length, header, data at data_offsets).
 *  - GGUF: a file written here with an architecture no forward pass knows ("mamba") and
 *    known F32 / F16 values: listed under its own names with ne reversed as the shape, read
 *    back as the values written; the forward pass's open refuses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/numeric.h"
#include "formats/gguf.h"
#include "formats/st_checkpoint.h"
#include "testutil.h"
#include "weights/source.h"

#define DS_FP8 "data/tiny-models/tiny-deepseek-v3-fp8"
#define DS_CAST "data/tiny-models/tiny-deepseek-v3-fp8-cast-bf16"

/* The bytes of a part, read from its file at its offset. */
static uint8_t *part_bytes(const dsq_wpart *p) {
    FILE *f = fopen(p->file, "rb");
    assert_non_null(f);
    uint8_t *b = malloc(p->nbytes + 1);
    assert_int_equal(fseek(f, (long)p->offset, SEEK_SET), 0);
    assert_int_equal(fread(b, 1, p->nbytes, f), p->nbytes);
    fclose(f);
    return b;
}

static void test_hf_list_and_fp8(void **state) {
    (void)state;
    char *dir = tu_shared_path(DS_FP8), *cast_dir = tu_shared_path(DS_CAST);
    dsq_wsource *ws = NULL;
    dsq_ckpt *ck = NULL, *cast = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_wsource_open_tensors(&ws, dir, NULL, &err), DSQ_OK);
    assert_int_equal(dsq_ckpt_open(&ck, dir, &err), DSQ_OK);
    assert_int_equal(dsq_ckpt_open(&cast, cast_dir, &err), DSQ_OK);

    /* every checkpoint tensor but the FP8 weights' scales, each listed once */
    size_t scales = 0, fp8 = 0;
    for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++)
        for (size_t i = 0; i < dsq_st_count(dsq_ckpt_shard(ck, s)); i++) {
            const char *n = dsq_st_tensor(dsq_ckpt_shard(ck, s), i)->name;
            scales += strstr(n, "_scale_inv") != NULL;
        }
    assert_true(scales > 0);
    assert_int_equal(dsq_wsource_count(ws), dsq_ckpt_tensor_count(ck) - scales);
    for (size_t i = 0; i < dsq_wsource_count(ws); i++) {
        dsq_wtensor t;
        assert_int_equal(dsq_wsource_at(ws, i, &t, &err), DSQ_OK);
        assert_string_equal(t.name, dsq_wsource_name(ws, i));
        assert_int_equal(t.index, i);
        assert_null(strstr(t.name, "_scale_inv"));
        uint8_t *b = part_bytes(&t.part[0]);
        assert_memory_equal(b, t.part[0].data, t.part[0].nbytes);
        free(b);
        if (t.layout != DSQ_WLAYOUT_FP8_BLOCK)
            continue;
        fp8++;
        assert_int_equal(t.dtype, DSQ_DTYPE_F8_E4M3);
        assert_int_equal(t.n_parts, 2);
        assert_int_equal(t.block_rows, 128); /* config.json: weight_block_size [128, 128] */
        assert_int_equal(t.block_cols, 128);
        assert_int_equal(t.part[1].nbytes,
                         4 * ((t.rows + 127) / 128) * ((t.cols + 127) / 128));
        /* BF16 rows: the cast's bytes; F32 rows: the cast widened */
        const dsq_tensor_view *ref = dsq_ckpt_find(cast, t.name, NULL, NULL);
        assert_non_null(ref);
        assert_int_equal(ref->dtype, DSQ_DTYPE_BF16);
        const size_t n = (size_t)(t.rows * t.cols);
        uint16_t *h = malloc(n * 2);
        float *x = malloc(n * 4);
        assert_int_equal(dsq_wsource_read_bf16(ws, &t, 0, t.rows, h, &err), DSQ_OK);
        assert_memory_equal(h, ref->data, n * 2);
        assert_int_equal(dsq_wsource_read(ws, &t, 0, t.rows, x, &err), DSQ_OK);
        for (size_t k = 0; k < n; k++)
            assert_true(dsq_f32_to_bf16(x[k]) == h[k] && dsq_bf16_to_f32(h[k]) == x[k]);
        free(h);
        free(x);
    }
    assert_int_equal(fp8, scales); /* each scale belongs to one FP8 weight */

    /* a FP8 weight by name; rows out of range; names that are not there */
    dsq_wtensor t;
    assert_int_equal(dsq_wsource_find(ws, "model.layers.0.mlp.down_proj.weight", &t, &err),
                     DSQ_OK);
    float row[4096];
    assert_true(t.cols <= 4096);
    assert_int_equal(dsq_wsource_read(ws, &t, t.rows, 1, row, &err), DSQ_INVALID_ARG);
    /* a scale is found by name (for a byte copy), though not listed */
    assert_int_equal(
        dsq_wsource_find(ws, "model.layers.0.mlp.down_proj.weight_scale_inv", &t, &err), DSQ_OK);
    assert_int_equal(dsq_wsource_find(ws, "nope", &t, &err), DSQ_NOT_FOUND);
    /* tensors only: no model description */
    dsq_model_config cfg;
    assert_int_equal(dsq_wsource_config(ws, &cfg, &err), DSQ_UNSUPPORTED);
    dsq_ckpt_close(cast);
    dsq_ckpt_close(ck);
    dsq_wsource_close(ws);
    free(dir);
    free(cast_dir);
}

static void test_gguf_any_architecture(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    dsq_err err = {0};
    dsq_gguf_writer *w = NULL;
    const float a[6] = {1.5f, -2, 0.25f, 3, 4, -0.125f};
    const uint16_t b[4] = {0x3c00, 0xc000, 0x3800, 0x0000}; /* F16 1, -2, 0.5, 0 */
    const int64_t ne_a[2] = {3, 2}, ne_b[1] = {4};
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_str(w, "general.architecture", "mamba", 5, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "blk.0.ssm_a", DSQ_DTYPE_F32, 2, ne_a, &err),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, "blk.0.ssm_d", DSQ_DTYPE_F16, 1, ne_b, &err),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_writer_begin(w, dir, "m.gguf", &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, a, sizeof a, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, b, sizeof b, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_commit(w, &err), DSQ_OK);
    dsq_gguf_writer_free(w);
    char *path = tu_join(dir, "m.gguf");

    dsq_wsource *ws = NULL;
    assert_int_equal(dsq_wsource_open(&ws, path, NULL, &err), DSQ_UNSUPPORTED);
    assert_int_equal(dsq_wsource_open_tensors(&ws, path, NULL, &err), DSQ_OK);
    assert_non_null(dsq_wsource_gguf(ws));
    assert_int_equal(dsq_wsource_count(ws), 2);
    dsq_wtensor t;
    assert_int_equal(dsq_wsource_at(ws, 0, &t, &err), DSQ_OK);
    assert_string_equal(t.name, "blk.0.ssm_a");
    assert_int_equal(t.ndim, 2);
    assert_int_equal(t.shape[0], 2); /* ne reversed */
    assert_int_equal(t.shape[1], 3);
    assert_int_equal(t.part[0].nbytes, sizeof a);
    uint8_t *bytes = part_bytes(&t.part[0]);
    assert_memory_equal(bytes, a, sizeof a);
    free(bytes);
    float x[6];
    assert_int_equal(dsq_wsource_read(ws, &t, 0, 2, x, &err), DSQ_OK);
    assert_memory_equal(x, a, sizeof a);
    assert_int_equal(dsq_wsource_find(ws, "blk.0.ssm_d", &t, &err), DSQ_OK);
    assert_int_equal(t.index, 1);
    assert_int_equal(dsq_wsource_read(ws, &t, 0, 1, x, &err), DSQ_OK);
    assert_true(x[0] == 1 && x[1] == -2 && x[2] == 0.5f && x[3] == 0);
    uint16_t h[4];
    assert_int_equal(dsq_wsource_read_bf16(ws, &t, 0, 1, h, &err), DSQ_OK);
    assert_true(h[0] == 0x3f80 && h[1] == 0xc000 && h[2] == 0x3f00 && h[3] == 0);
    dsq_wsource_close(ws);
    tu_rm_rf(dir);
    free(path);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_list_and_fp8),
        cmocka_unit_test(test_gguf_any_architecture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
