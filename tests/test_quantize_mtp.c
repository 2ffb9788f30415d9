/* tests/test_quantize_mtp.c: `dsq quantize --keep-mtp` (convert/quantize_gguf.h, gguf_arch.c).
 *
 * The tiny DeepSeek models have no multi-token-prediction layer (num_nextn_predict_layers
 * 0), so each test's model is built here: the tiny model with num_nextn_predict_layers 1
 * and a layer 4 made of a copy of layer 3's tensors (weights, FP8 scales included) plus the
 * six tensors only DeepSeek-V3's MTP layer has, with V3's shapes for hidden D = 256 and
 * vocab V = 1024 (its model.layers.61 in the published index; specs/formats.md §8.2):
 *   embed_tokens [V, D], enorm [D], hnorm [D], eh_proj [D, 2D], shared_head.norm [D],
 *   shared_head.head [V, D]; BF16, or eh_proj F8_E4M3 with a [2, 4] F32 weight_scale_inv
 *   in the FP8 model (the 128x128 blocks of the others).
 *
 * Where the expected values come from:
 *  - Dropped by default: convert_hf_to_gguf.py's DeepseekV2Model skips model.layers.N with
 *    N >= num_hidden_layers (Feb 2025, and still `skip_mtp = True` in 2026 upstream), so the
 *    output must be the file the model without the layer gives, byte for byte.
 *  - Kept: the layout of upstream's converters that keep such layers (Glm4MoeModel,
 *    DeepseekV32Model): block_count = num_hidden_layers + num_nextn_predict_layers,
 *    {arch}.nextn_predict_layers = the count, the layer's usual tensors under blk.4, and
 *    gguf-py tensor_mapping.py / constants.py: model.layers.{bid}.eh_proj ->
 *    blk.{bid}.nextn.eh_proj, .embed_tokens -> .nextn.embed_tokens, .enorm -> .nextn.enorm,
 *    .hnorm -> .nextn.hnorm, .shared_head.norm -> .nextn.shared_head_norm,
 *    .shared_head.head -> .nextn.shared_head_head (".weight" kept). ne = HF shape reversed.
 *  - Types: llama-quant.cpp's tensor_allows_quantization (2-D, name ending in "weight", not
 *    "_norm.weight") and llama_tensor_get_type, which matches token_embd/output by their
 *    exact names: nextn.embed_tokens and nextn.shared_head_head get the preset's base type,
 *    not the token_embd/output rules; 1-D tensors stay F32. Its counters use block_count
 *    (hparams.n_layer): use_more_bits(i, 5) = i < 0 || i >= 4 || i % 3 == 2.
 *  - Forward pass: llama.cpp's graphs run n_layer - nextn_predict_layers blocks, so a GGUF
 *    with the kept layer has the perplexity of the one without. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/quantize_gguf.h"
#include "core/numeric.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "formats/st_checkpoint.h"
#include "tests/testutil.h"
#include "verify/ppl.h"

#define DS_BF16 "data/tiny-models/tiny-deepseek-v3"
#define DS_FP8  "data/tiny-models/tiny-deepseek-v3-fp8"
#define LLAMA   "data/tiny-models/tiny-llama"

enum { D = 256, V = 1024, MTP = 4 /* = num_hidden_layers */ };

/* ==== building the model with an MTP layer ================================================== */

typedef struct new_tensor {
    char name[128];
    dsq_dtype dtype;
    int ndim;
    int64_t shape[2];
    const void *data;
    uint64_t nbytes;
} new_tensor;

static uint32_t rng = 12345u;
static uint32_t next_u32(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* n BF16 values around `center` (+-0.05): what trained norms and weights look like. */
static uint16_t *bf16_values(size_t n, float center) {
    uint16_t *b = malloc(n * sizeof *b);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = dsq_f32_to_bf16(center + ((float)(next_u32() % 2001) - 1000.0f) * 5e-5f);
    return b;
}

static void add_new(new_tensor *t, size_t *n, const char *name, dsq_dtype dt, int ndim,
                    int64_t d0, int64_t d1, const void *data, uint64_t nbytes) {
    new_tensor *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->dtype = dt;
    x->ndim = ndim;
    x->shape[0] = d0;
    x->shape[1] = d1;
    x->data = data;
    x->nbytes = nbytes;
}

/* dst/<basename of src>: src's tokenizer files, its config.json with
 * num_nextn_predict_layers 1, and one model.safetensors holding every tensor of src plus
 * the MTP layer (see the header). Returns the directory (caller frees). */
static char *make_mtp_model(const char *src_rel, const char *sub, int fp8) {
    char *src = tu_shared_path(src_rel);
    const char *base = strrchr(src_rel, '/') + 1;
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s", sub, base);
    char *dst = tu_group_path(rel);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && cp '%s/tokenizer.json' '%s/tokenizer_config.json' '%s/' && "
             "sed -e 's/\"num_nextn_predict_layers\": 0/\"num_nextn_predict_layers\": 1/' "
             "'%s/config.json' > '%s/config.json' && grep -q 'nextn_predict_layers\": 1' "
             "'%s/config.json'",
             dst, src, src, dst, src, dst, dst);
    assert_int_equal(tu_system(cmd), 0);

    dsq_err err = {0};
    dsq_ckpt *ck = NULL;
    if (dsq_ckpt_open(&ck, src, &err) != DSQ_OK)
        fail_msg("%s: %s", src, err.text);
    const size_t n_src = dsq_ckpt_tensor_count(ck);
    new_tensor *t = calloc(2 * n_src + 16, sizeof *t);
    assert_non_null(t);
    size_t n = 0;
    for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++) {
        const dsq_st *sh = dsq_ckpt_shard(ck, s);
        for (size_t i = 0; i < dsq_st_count(sh); i++) {
            const dsq_tensor_view *v = dsq_st_tensor(sh, i);
            assert_true(v->ndim <= 2);
            add_new(t, &n, v->name, v->dtype, v->ndim, v->shape[0], v->ndim > 1 ? v->shape[1] : 0,
                    v->data, v->nbytes);
            if (strncmp(v->name, "model.layers.3.", 15) == 0) {
                char name[128];
                snprintf(name, sizeof name, "model.layers.4.%s", v->name + 15);
                add_new(t, &n, name, v->dtype, v->ndim, v->shape[0],
                        v->ndim > 1 ? v->shape[1] : 0, v->data, v->nbytes);
            }
        }
    }
    uint16_t *embed = bf16_values((size_t)V * D, 0.0f), *head = bf16_values((size_t)V * D, 0.0f);
    uint16_t *enorm = bf16_values(D, 1.0f), *hnorm = bf16_values(D, 0.5f);
    uint16_t *snorm = bf16_values(D, 2.0f), *eh = NULL;
    uint8_t *eh8 = NULL;
    float scale[2 * 4];
    add_new(t, &n, "model.layers.4.embed_tokens.weight", DSQ_DTYPE_BF16, 2, V, D, embed,
            (uint64_t)V * D * 2);
    add_new(t, &n, "model.layers.4.enorm.weight", DSQ_DTYPE_BF16, 1, D, 0, enorm, D * 2);
    add_new(t, &n, "model.layers.4.hnorm.weight", DSQ_DTYPE_BF16, 1, D, 0, hnorm, D * 2);
    add_new(t, &n, "model.layers.4.shared_head.norm.weight", DSQ_DTYPE_BF16, 1, D, 0, snorm,
            D * 2);
    add_new(t, &n, "model.layers.4.shared_head.head.weight", DSQ_DTYPE_BF16, 2, V, D, head,
            (uint64_t)V * D * 2);
    if (fp8) {
        eh8 = malloc((size_t)D * 2 * D);
        assert_non_null(eh8);
        for (size_t i = 0; i < (size_t)D * 2 * D; i++) {
            eh8[i] = (uint8_t)(next_u32() & 0xff);
            if ((eh8[i] & 0x7f) == 0x7f) /* E4M3's NaNs: no checkpoint has them */
                eh8[i] ^= 1;
        }
        for (int i = 0; i < 8; i++)
            scale[i] = 1e-3f * (float)(i + 1);
        add_new(t, &n, "model.layers.4.eh_proj.weight", DSQ_DTYPE_F8_E4M3, 2, D, 2 * D, eh8,
                (uint64_t)D * 2 * D);
        add_new(t, &n, "model.layers.4.eh_proj.weight_scale_inv", DSQ_DTYPE_F32, 2, 2, 4, scale,
                sizeof scale);
    } else {
        eh = bf16_values((size_t)D * 2 * D, 0.0f);
        add_new(t, &n, "model.layers.4.eh_proj.weight", DSQ_DTYPE_BF16, 2, D, 2 * D, eh,
                (uint64_t)D * 2 * D * 2);
    }

    dsq_st_writer *w = NULL;
    assert_int_equal(dsq_st_writer_init(&w, &err), DSQ_OK);
    for (size_t i = 0; i < n; i++)
        if (dsq_st_writer_add(w, t[i].name, t[i].dtype, t[i].ndim, t[i].shape, &err) != DSQ_OK)
            fail_msg("%s", err.text);
    assert_int_equal(dsq_st_writer_set_meta(w, "format", "pt", &err), DSQ_OK);
    assert_int_equal(dsq_st_writer_layout(w, &err), DSQ_OK);
    if (dsq_st_writer_open(w, dst, "model.safetensors", &err) != DSQ_OK)
        fail_msg("%s", err.text);
    for (size_t k = 0; k < dsq_st_writer_count(w); k++) {
        const new_tensor *x = &t[dsq_st_writer_order(w, k)];
        assert_int_equal(dsq_st_writer_write(w, x->data, (size_t)x->nbytes, &err), DSQ_OK);
    }
    if (dsq_st_writer_finish(w, NULL, &err) != DSQ_OK)
        fail_msg("%s", err.text);
    dsq_st_writer_free(w);
    dsq_ckpt_close(ck);
    free(t);
    free(embed);
    free(head);
    free(enorm);
    free(hnorm);
    free(snorm);
    free(eh);
    free(eh8);
    free(src);
    return dst;
}

/* Built once per run, on first use. */
static char *mtp_bf16, *mtp_fp8;
static const char *bf16_model(void) {
    if (mtp_bf16 == NULL)
        mtp_bf16 = make_mtp_model(DS_BF16, "bf16", 0);
    return mtp_bf16;
}
static const char *fp8_model(void) {
    if (mtp_fp8 == NULL)
        mtp_fp8 = make_mtp_model(DS_FP8, "fp8", 1);
    return mtp_fp8;
}

/* ==== helpers =============================================================================== */

static dsq_qz_opts opts(const char *type, int keep) {
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    o.type = type;
    o.threads = 2;
    o.keep_mtp = keep;
    return o;
}

/* Quantizes `in` (a path) to group file `out_name`; returns its path (caller frees). */
static char *quantize(const char *in, const char *out_name, dsq_qz_opts *o) {
    char *out = tu_group_path(out_name);
    dsq_qz_summary s;
    dsq_err err = {0};
    if (dsq_quantize_gguf(in, out, o, &s, &err) != DSQ_OK)
        fail_msg("quantize %s: %s", in, err.text);
    dsq_qz_summary_free(&s);
    return out;
}

static char *quantize_shared(const char *rel, const char *out_name, dsq_qz_opts *o) {
    char *in = tu_shared_path(rel);
    char *out = quantize(in, out_name, o);
    free(in);
    return out;
}

static void expect_same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *pa = tu_read_file(a, &na), *pb = tu_read_file(b, &nb);
    if (na != nb || memcmp(pa, pb, na) != 0)
        fail_msg("%s and %s differ (%zu and %zu bytes)", a, b, na, nb);
    free(pa);
    free(pb);
}

static void expect_tensor(const dsq_gguf *g, const char *name, dsq_dtype type, uint32_t nd,
                          int64_t ne0, int64_t ne1) {
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, name);
    if (t->dtype != type || t->n_dims != nd || t->ne[0] != ne0 || (nd > 1 && t->ne[1] != ne1))
        fail_msg("%s: %s, %u dims [%lld, %lld]; expected %s, %u dims [%lld, %lld]", name,
                 dsq_dtype_name(t->dtype), t->n_dims, (long long)t->ne[0], (long long)t->ne[1],
                 dsq_dtype_name(type), nd, (long long)ne0, (long long)ne1);
}

/* The tensor's data equals the source tensor's: bytes when both are BF16, else every F32
 * output value equals the BF16 value widened (exact). */
static void expect_data_of(const dsq_gguf *g, const char *name, const dsq_ckpt *ck,
                           const char *hf) {
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, name);
    const dsq_tensor_view *v = dsq_ckpt_find(ck, hf, NULL, NULL);
    assert_non_null(v);
    assert_int_equal(v->dtype, DSQ_DTYPE_BF16);
    const uint64_t n = v->nbytes / 2;
    const uint8_t *src = v->data;
    if (t->dtype == DSQ_DTYPE_BF16) {
        assert_int_equal(t->nbytes, v->nbytes);
        if (memcmp(t->data, src, v->nbytes) != 0)
            fail_msg("%s: bytes differ from %s", name, hf);
        return;
    }
    assert_int_equal(t->dtype, DSQ_DTYPE_F32);
    assert_int_equal(t->nbytes, 4 * n);
    for (uint64_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, t->data + 4 * i, 4);
        const uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
        if (f != dsq_bf16_to_f32(h))
            fail_msg("%s[%llu] = %g, source %g", name, (unsigned long long)i, (double)f,
                     (double)dsq_bf16_to_f32(h));
    }
}

/* Every blk.3.* tensor has a blk.4.* twin with the same type, shape and bytes: the MTP
 * layer is built from layer 3's tensors and goes through the same rows of the table.
 * Returns how many there are. */
static int expect_block4_is_block3(const dsq_gguf *g) {
    int n = 0;
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *a = dsq_gguf_tensor_at(g, i);
        if (strncmp(a->name, "blk.3.", 6) != 0)
            continue;
        char name[80];
        snprintf(name, sizeof name, "blk.4.%s", a->name + 6);
        const dsq_gguf_tensor *b = tu_gguf_tensor(g, name);
        if (b->dtype != a->dtype || b->n_dims != a->n_dims || b->nbytes != a->nbytes ||
            memcmp(b->ne, a->ne, sizeof a->ne) != 0 || memcmp(b->data, a->data, a->nbytes) != 0)
            fail_msg("%s differs from %s", name, a->name);
        n++;
    }
    return n;
}

static int count_prefix(const dsq_gguf *g, const char *prefix) {
    int n = 0;
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++)
        n += strncmp(dsq_gguf_tensor_at(g, i)->name, prefix, strlen(prefix)) == 0;
    return n;
}

/* ==== without --keep-mtp: the converter's output, unchanged ================================== */

static void test_default_leaves_the_mtp_layer_out(void **state) {
    (void)state;
    static const struct {
        const char *rel, *type;
        int fp8;
    } cases[] = {{DS_BF16, "Q4_K_M", 0}, {DS_FP8, "Q4_K_M", 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dsq_qz_opts o = opts(cases[k].type, 0);
        /* the same directory name: general.name comes from it */
        char *plain = quantize_shared(cases[k].rel, "plain.gguf", &o);
        char *mtp = quantize(cases[k].fp8 ? fp8_model() : bf16_model(), "dropped.gguf", &o);
        expect_same_file(mtp, plain);
        dsq_gguf *g = tu_gguf_open(mtp);
        assert_int_equal(tu_gguf_u32(g, "deepseek2.block_count"), 4);
        assert_true(dsq_gguf_find_key(g, "deepseek2.nextn_predict_layers") < 0);
        assert_int_equal(count_prefix(g, "blk.4."), 0);
        dsq_gguf_close(g);
        free(plain);
        free(mtp);
    }
}

/* ==== with --keep-mtp ======================================================================== */

/* BF16 preset: the 2-D MTP tensors keep their BF16 bytes, the 1-D ones are their values in
 * F32; names, shapes and keys as the header says. */
static void test_keep_mtp_bf16_names_shapes_data(void **state) {
    (void)state;
    dsq_qz_opts o = opts("BF16", 1);
    char *out = quantize(bf16_model(), "keep-bf16.gguf", &o);
    dsq_gguf *g = tu_gguf_open(out);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.block_count"), 5);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.nextn_predict_layers"), 1);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.leading_dense_block_count"), 1);
    expect_tensor(g, "blk.4.nextn.eh_proj.weight", DSQ_DTYPE_BF16, 2, 2 * D, D);
    expect_tensor(g, "blk.4.nextn.embed_tokens.weight", DSQ_DTYPE_BF16, 2, D, V);
    expect_tensor(g, "blk.4.nextn.shared_head_head.weight", DSQ_DTYPE_BF16, 2, D, V);
    expect_tensor(g, "blk.4.nextn.enorm.weight", DSQ_DTYPE_F32, 1, D, 0);
    expect_tensor(g, "blk.4.nextn.hnorm.weight", DSQ_DTYPE_F32, 1, D, 0);
    expect_tensor(g, "blk.4.nextn.shared_head_norm.weight", DSQ_DTYPE_F32, 1, D, 0);
    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_ckpt_open(&ck, bf16_model(), &err), DSQ_OK);
    expect_data_of(g, "blk.4.nextn.eh_proj.weight", ck, "model.layers.4.eh_proj.weight");
    expect_data_of(g, "blk.4.nextn.embed_tokens.weight", ck, "model.layers.4.embed_tokens.weight");
    expect_data_of(g, "blk.4.nextn.shared_head_head.weight", ck,
                   "model.layers.4.shared_head.head.weight");
    expect_data_of(g, "blk.4.nextn.enorm.weight", ck, "model.layers.4.enorm.weight");
    expect_data_of(g, "blk.4.nextn.hnorm.weight", ck, "model.layers.4.hnorm.weight");
    expect_data_of(g, "blk.4.nextn.shared_head_norm.weight", ck,
                   "model.layers.4.shared_head.norm.weight");
    /* the layer's attention and MoE tensors under their usual names */
    const int per_layer = expect_block4_is_block3(g);
    /* as blk.3: 9 attention (attn_norm, q_a/kv_a norms, q_a, q_b, kv_a_mqa, k_b, v_b,
     * output), ffn_norm, 8 MoE (router, bias, 3 expert stacks, 3 shared) */
    assert_int_equal(per_layer, 18);
    /* nothing else: 3 global + 4 blocks of the model + block 4 */
    const int blocks = count_prefix(g, "blk.0.") + count_prefix(g, "blk.1.") +
                       count_prefix(g, "blk.2.") + count_prefix(g, "blk.3.");
    assert_int_equal(count_prefix(g, "blk.4."), per_layer + 6);
    assert_int_equal(dsq_gguf_tensor_count(g), 3 + blocks + per_layer + 6);
    dsq_ckpt_close(ck);
    dsq_gguf_close(g);
    free(out);
}

/* Q4_K_M: the types llama-quantize gives a file with block_count 5 (header). */
static void test_keep_mtp_q4_k_m_types(void **state) {
    (void)state;
    dsq_qz_opts o = opts("Q4_K_M", 1);
    o.dry_run = 1;
    dsq_qz_summary s;
    dsq_err err = {0};
    if (dsq_quantize_gguf(bf16_model(), "", &o, &s, &err) != DSQ_OK)
        fail_msg("%s", err.text);
    static const struct {
        const char *name;
        dsq_dtype type;
    } want[] = {
        /* llama-quant matches "token_embd.weight" / "output.weight" exactly: the MTP
         * layer's embedding and head get the base type */
        {"blk.4.nextn.embed_tokens.weight", DSQ_DTYPE_Q4_K},
        {"blk.4.nextn.shared_head_head.weight", DSQ_DTYPE_Q4_K},
        {"blk.4.nextn.eh_proj.weight", DSQ_DTYPE_Q4_K}, /* ne0 512 */
        {"blk.4.nextn.enorm.weight", DSQ_DTYPE_F32},    /* 1-D */
        {"blk.4.nextn.hnorm.weight", DSQ_DTYPE_F32},
        {"blk.4.nextn.shared_head_norm.weight", DSQ_DTYPE_F32},
        {"token_embd.weight", DSQ_DTYPE_Q4_K},
        {"output.weight", DSQ_DTYPE_Q6_K},
        {"blk.4.attn_output.weight", DSQ_DTYPE_Q5_K}, /* n_expert == 8 */
        {"blk.4.attn_k_b.weight", DSQ_DTYPE_Q5_0},    /* ne0 64: Q4_K's fallback */
        {"blk.4.ffn_gate_inp.weight", DSQ_DTYPE_F32},
        /* ffn_down: use_more_bits(i, 5) holds for i = 2 and 4 only; without the MTP layer
         * (n_layer 4) it held for 2 and 3 (test_quantize_cmd) */
        {"blk.0.ffn_down.weight", DSQ_DTYPE_Q4_K},
        {"blk.1.ffn_down_exps.weight", DSQ_DTYPE_Q4_K},
        {"blk.2.ffn_down_exps.weight", DSQ_DTYPE_Q6_K},
        {"blk.3.ffn_down_exps.weight", DSQ_DTYPE_Q4_K},
        {"blk.4.ffn_down_exps.weight", DSQ_DTYPE_Q6_K},
        {"blk.4.ffn_down_shexp.weight", DSQ_DTYPE_Q6_K},
    };
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        size_t i = 0;
        while (i < s.n_tensors && strcmp(s.tensors[i].name, want[k].name) != 0)
            i++;
        if (i == s.n_tensors)
            fail_msg("%s not in the plan", want[k].name);
        if (s.tensors[i].type != want[k].type)
            fail_msg("%s: %s, expected %s", want[k].name, dsq_dtype_name(s.tensors[i].type),
                     dsq_dtype_name(want[k].type));
    }
    dsq_qz_summary_free(&s);
}

/* FP8: eh_proj is dequantized as every FP8 weight (W x scale_inv of its 128x128 block, in
 * F32), its scale consumed; the copied layer's FP8 tensors come out as layer 3's. */
static void test_keep_mtp_fp8(void **state) {
    (void)state;
    dsq_qz_opts o = opts("F32", 1);
    char *out = quantize(fp8_model(), "keep-fp8.gguf", &o);
    dsq_gguf *g = tu_gguf_open(out);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.block_count"), 5);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.nextn_predict_layers"), 1);
    assert_int_equal(expect_block4_is_block3(g), 18);
    assert_int_equal(count_prefix(g, "blk.4.nextn."), 6);
    expect_tensor(g, "blk.4.nextn.eh_proj.weight", DSQ_DTYPE_F32, 2, 2 * D, D);
    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_ckpt_open(&ck, fp8_model(), &err), DSQ_OK);
    const dsq_tensor_view *w = dsq_ckpt_find(ck, "model.layers.4.eh_proj.weight", NULL, NULL);
    const dsq_tensor_view *sc =
        dsq_ckpt_find(ck, "model.layers.4.eh_proj.weight_scale_inv", NULL, NULL);
    assert_non_null(w);
    assert_non_null(sc);
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, "blk.4.nextn.eh_proj.weight");
    const uint8_t *q = w->data;
    for (int64_t r = 0; r < D; r++)
        for (int64_t c = 0; c < 2 * D; c++) {
            float s, got;
            memcpy(&s, (const uint8_t *)sc->data + 4 * ((r / 128) * 4 + c / 128), 4);
            memcpy(&got, t->data + 4 * (r * 2 * D + c), 4);
            /* FP8 x scale rounded to BF16, as quantize does unless --fp8-f32 */
            const float want =
                dsq_bf16_to_f32(dsq_f32_to_bf16(dsq_fp8_e4m3_to_f32(q[r * 2 * D + c]) * s));
            if (got != want)
                fail_msg("eh_proj[%lld][%lld] = %g, expected %g", (long long)r, (long long)c,
                         (double)got, (double)want);
        }
    expect_data_of(g, "blk.4.nextn.embed_tokens.weight", ck, "model.layers.4.embed_tokens.weight");
    expect_data_of(g, "blk.4.nextn.enorm.weight", ck, "model.layers.4.enorm.weight");
    dsq_ckpt_close(ck);
    dsq_gguf_close(g);
    free(out);
}

/* The kept block is loaded but not run: blocks 0-3 are the bytes of the file without it
 * (Q8_0 has no layer-dependent rule), and the perplexity is the same number. */
static void test_forward_pass_skips_the_mtp_block(void **state) {
    (void)state;
    dsq_qz_opts o = opts("Q8_0", 1);
    char *keep = quantize(bf16_model(), "keep-q8.gguf", &o);
    o.keep_mtp = 0;
    char *plain = quantize_shared(DS_BF16, "plain-q8.gguf", &o);
    dsq_gguf *gk = tu_gguf_open(keep), *gp = tu_gguf_open(plain);
    for (int64_t i = 0; i < dsq_gguf_tensor_count(gp); i++) {
        const dsq_gguf_tensor *a = dsq_gguf_tensor_at(gp, i);
        const dsq_gguf_tensor *b = tu_gguf_tensor(gk, a->name);
        if (b->dtype != a->dtype || b->nbytes != a->nbytes ||
            memcmp(b->data, a->data, a->nbytes) != 0)
            fail_msg("%s differs with the MTP layer kept", a->name);
    }
    dsq_gguf_close(gk);
    dsq_gguf_close(gp);
    char *path = tu_shared_path("data/tiny-models/eval.tokens.txt");
    int32_t *ids = NULL;
    int64_t n = 0;
    dsq_err err = {0};
    assert_int_equal(dsq_tokens_read(path, &ids, &n, &err), DSQ_OK);
    const double p_keep = tu_ppl_of(keep, ids, n), p_plain = tu_ppl_of(plain, ids, n);
    if (p_keep != p_plain)
        fail_msg("ppl %.6f with the MTP block, %.6f without", p_keep, p_plain);
    free(ids);
    free(path);
    free(keep);
    free(plain);
}

/* ==== hostile and no-op cases ================================================================ */

/* Runs `dsq quantize IN OUT.gguf EXTRA -q`; returns the exit status, stderr in *msg. */
static int run_cli(const char *in, const char *out, const char *extra, char **msg) {
    char *errf = tu_group_path("stderr.txt");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' %s -q 2> '%s'", tu_dsq_bin(), in, out,
             extra, errf);
    const int rc = tu_system(cmd);
    size_t len = 0;
    *msg = (char *)tu_read_file(errf, &len);
    *msg = realloc(*msg, len + 1);
    (*msg)[len] = '\0';
    free(errf);
    return rc;
}

static void expect_in(const char *msg, const char *fragment) {
    if (strstr(msg, fragment) == NULL)
        fail_msg("expected '%s' in: %s", fragment, msg);
}

static void test_keep_mtp_without_mtp_layers(void **state) {
    (void)state;
    char *msg = NULL;
    /* num_nextn_predict_layers 0: the same file as without the flag, and a warning */
    char *ds = tu_shared_path(DS_BF16);
    char *with = tu_group_path("noop-keep.gguf"), *without = tu_group_path("noop.gguf");
    assert_int_equal(run_cli(ds, with, "--type Q8_0 --keep-mtp", &msg), 0);
    expect_in(msg, "warning: --keep-mtp");
    expect_in(msg, "num_nextn_predict_layers is 0 or absent");
    free(msg);
    assert_int_equal(run_cli(ds, without, "--type Q8_0", &msg), 0);
    assert_string_equal(msg, "");
    free(msg);
    expect_same_file(with, without);
    /* an architecture without MTP layers */
    char *llama = tu_shared_path(LLAMA);
    assert_int_equal(run_cli(llama, with, "--type Q8_0 --keep-mtp", &msg), 0);
    expect_in(msg, "LlamaForCausalLM has no multi-token-prediction layers");
    free(msg);
    /* a GGUF input keeps its blocks whatever the flag says */
    char *re = tu_group_path("noop-re.gguf");
    assert_int_equal(run_cli(without, re, "--type Q8_0 --keep-mtp", &msg), 0);
    expect_in(msg, "GGUF input keeps whatever blocks it has");
    free(msg);
    /* config.json declares the layer the checkpoint lacks (a copy with layer 61 removed):
     * named, exit 3, nothing written; without the flag it converts as always */
    char *dir = tu_group_path("stripped/tiny-deepseek-v3");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && ln -sf \"$(cd '%s' && pwd)/model.safetensors\" '%s/' && "
             "cp '%s/tokenizer.json' '%s/tokenizer_config.json' '%s/' && "
             "sed -e 's/\"num_nextn_predict_layers\": 0/\"num_nextn_predict_layers\": 1/' "
             "'%s/config.json' > '%s/config.json'",
             dir, ds, dir, ds, ds, dir, ds, dir);
    assert_int_equal(tu_system(cmd), 0);
    char *bad = tu_group_path("stripped.gguf");
    assert_int_equal(run_cli(dir, bad, "--type Q8_0 --keep-mtp", &msg), 3);
    expect_in(msg, "--keep-mtp: config.json has num_nextn_predict_layers 1 but the checkpoint "
                   "has no model.layers.4.* tensors");
    assert_false(tu_file_exists(bad));
    free(msg);
    assert_int_equal(run_cli(dir, bad, "--type Q8_0", &msg), 0);
    free(msg);
    expect_same_file(bad, without);
    free(bad);
    free(dir);
    free(re);
    free(llama);
    free(with);
    free(without);
    free(ds);
}

static int teardown(void **state) {
    free(mtp_bf16);
    free(mtp_fp8);
    return tu_group_dir_teardown(state);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_leaves_the_mtp_layer_out),
        cmocka_unit_test(test_keep_mtp_bf16_names_shapes_data),
        cmocka_unit_test(test_keep_mtp_q4_k_m_types),
        cmocka_unit_test(test_keep_mtp_fp8),
        cmocka_unit_test(test_forward_pass_skips_the_mtp_block),
        cmocka_unit_test(test_keep_mtp_without_mtp_layers),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, teardown);
}
