/* tests/test_quantize_cmd.c: `dsq quantize` (convert/quantize_gguf.h, gguf_rules.h, gguf_arch.h).
 *
 * Where the expected values come from:
 *  - Tensor names and ne[]: llama.cpp's loader, src/llama-model.cpp of the Feb-2025 snapshot
 *    (commit c392e50), llm_load_tensors:
 *      LLM_ARCH_DEEPSEEK2: token_embd {n_embd, n_vocab}; output_norm {n_embd};
 *        output {n_embd, n_vocab}; per layer: attn_norm {n_embd}; attn_q_a_norm {q_lora_rank};
 *        attn_kv_a_norm {kv_lora_rank}; attn_q_a {n_embd, q_lora_rank};
 *        attn_q_b {q_lora_rank, n_head * n_embd_head_k}; attn_kv_a_mqa {n_embd, kv_lora_rank +
 *        n_rot}; attn_kv_b {kv_lora_rank, n_head * (qk_nope + v)}; attn_output {n_head * v,
 *        n_embd}; ffn_norm {n_embd}; dense layers (< leading_dense_block_count): ffn_gate/up
 *        {n_embd, n_ff}, ffn_down {n_ff, n_embd}; MoE layers: ffn_gate_inp {n_embd, n_expert},
 *        exp_probs_b.bias {n_expert} (optional), ffn_gate/up_exps {n_embd, n_ff_exp,
 *        n_expert}, ffn_down_exps {n_ff_exp, n_embd, n_expert}, ffn_gate/up_shexp {n_embd,
 *        n_ff_exp * n_shared}, ffn_down_shexp {n_ff_exp * n_shared, n_embd}.
 *        Keys it requires (get_key without `false`): leading_dense_block_count, q_lora_rank,
 *        kv_lora_rank, expert_feed_forward_length, expert_shared_count, expert_weights_scale,
 *        rope.scaling.yarn_log_multiplier, layer_norm_rms_epsilon, plus the common ones.
 *      The current layout (attn_k_b ne {qk_nope, kv_lora_rank, n_head}, attn_v_b ne
 *        {kv_lora_rank, v, n_head}, head_count_kv 1, key_length kv_lora + rope) is from
 *        specs/formats.md §3.3; the Feb loader predates it, so that file is checked by shape.
 *      LLM_ARCH_LLAMA: token_embd {n_embd, n_vocab}, output_norm, output, attn_norm,
 *        attn_q {n_embd, n_embd_head_k * n_head}, attn_k {n_embd, n_embd_k_gqa}, attn_v {n_embd,
 *        n_embd_v_gqa}, attn_output {n_embd_head_k * n_head, n_embd}, ffn_norm, ffn_gate {n_embd,
 *        n_ff}, ffn_down {n_ff, n_embd}, ffn_up {n_embd, n_ff}.
 *  - Hyper-parameters: the tiny models' config.json (tiny-models/README.md): DeepSeek hidden 256,
 *    4 layers (layer 0 dense), 4 heads, q_lora 256, kv_lora 128, nope 64, rope 32, v 64,
 *    8 experts + 1 shared, moe_intermediate 256, intermediate 512, vocab 1024; llama hidden 256,
 *    4 layers, 4 heads, 2 KV heads, head_dim 64, intermediate 768.
 *  - Types: llama-quant.cpp's rules (arithmetic in the tests). The whole files were also
 *    compared with llama-quantize's output on dsq's own F32 GGUF, byte for byte, for every
 *    preset (not part of this suite, which must not need a llama.cpp build).
 *  - Bytes: dsq_quantize_rows on weights dequantized here independently (FP8 x block scale in
 *    F32, BF16 widened), which test_quant already ties to ggml's bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/quantize_gguf.h"
#include "gguf_export/gguf_arch.h"
#include "gguf_export/gguf_rules.h"
#include "core/numeric.h"
#include "formats/gguf.h"
#include "formats/st_checkpoint.h"
#include "quantize/quant.h"
#include "tests/testutil.h"

#define DS_FP8 "data/tiny-models/tiny-deepseek-v3-fp8"
/* the exact BF16 cast of DS_FP8 (the data README: what fp8_cast_bf16.py computes) */
#define DS_CAST "data/tiny-models/tiny-deepseek-v3-fp8-cast-bf16"
#define LLAMA  "data/tiny-models/tiny-llama"

/* ==== helpers =============================================================================== */


static dsq_status run(const char *rel, const char *out_name, dsq_qz_opts *o, dsq_qz_summary *s,
                      dsq_err *err) {
    char *in = tu_shared_path(rel);
    char *out = tu_group_path(out_name);
    const dsq_status st = dsq_quantize_gguf(in, out, o, s, err);
    free(in);
    free(out);
    return st;
}

static dsq_gguf *quantize_open(const char *rel, const char *out_name, dsq_qz_opts *o) {
    dsq_qz_summary s;
    dsq_err err = {0};
    const dsq_status st = run(rel, out_name, o, &s, &err);
    if (st != DSQ_OK)
        fail_msg("quantize %s: %s", rel, err.text);
    dsq_qz_summary_free(&s);
    char *out = tu_group_path(out_name);
    dsq_gguf *g = tu_gguf_open(out);
    free(out);
    return g;
}

/* Name, ne (the loader's create_tensor dims) and type of one tensor. */
static void expect(const dsq_gguf *g, const char *name, dsq_dtype type, int64_t ne0, int64_t ne1,
                   int64_t ne2) {
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, name);
    const uint32_t nd = ne2 ? 3 : ne1 ? 2 : 1;
    if (t->n_dims != nd || t->ne[0] != ne0 || (nd > 1 && t->ne[1] != ne1) ||
        (nd > 2 && t->ne[2] != ne2))
        fail_msg("%s: n_dims %u ne [%lld %lld %lld], expected %u [%lld %lld %lld]", name,
                 t->n_dims, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], nd,
                 (long long)ne0, (long long)ne1, (long long)ne2);
    if (type != DSQ_DTYPE_INVALID && t->dtype != type)
        fail_msg("%s: type %s, expected %s", name, dsq_dtype_name(t->dtype),
                 dsq_dtype_name(type));
}

static float get_f32(const dsq_gguf *g, const char *key) {
    float v = 0;
    dsq_err err = {0};
    if (dsq_gguf_get_f32(g, key, &v, &err) != DSQ_OK)
        fail_msg("%s: %s", key, err.text);
    return v;
}

static dsq_qz_opts opts(const char *type) {
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    o.type = type;
    o.threads = 2;
    return o;
}

/* ==== DeepSeek-V3 FP8 -> Q4_K_M ============================================================== */

enum { DS_L = 4, DS_E = 256, DS_H = 4, DS_QL = 256, DS_KVL = 128, DS_NOPE = 64, DS_ROPE = 32,
       DS_V = 64, DS_X = 8, DS_FFX = 256, DS_FF = 512, DS_VOCAB = 1024 };

/* The tensors the deepseek2 loader creates, shapes as it states them (header comment). */
static void check_ds_tensors(const dsq_gguf *g, int legacy, int q4km) {
    const dsq_dtype any = DSQ_DTYPE_INVALID, f32 = DSQ_DTYPE_F32;
    char n[64];
    expect(g, "token_embd.weight", q4km ? DSQ_DTYPE_Q4_K : any, DS_E, DS_VOCAB, 0);
    expect(g, "output_norm.weight", f32, DS_E, 0, 0);
    /* output: Q6_K for every K-quant preset (256 % 256 == 0) */
    expect(g, "output.weight", q4km ? DSQ_DTYPE_Q6_K : any, DS_E, DS_VOCAB, 0);
    int count = 3;
    for (int i = 0; i < DS_L; i++) {
#define T(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, i), count++, n)
        expect(g, T("attn_norm.weight"), f32, DS_E, 0, 0);
        expect(g, T("attn_q_a_norm.weight"), f32, DS_QL, 0, 0);
        expect(g, T("attn_kv_a_norm.weight"), f32, DS_KVL, 0, 0);
        expect(g, T("attn_q_a.weight"), q4km ? DSQ_DTYPE_Q4_K : any, DS_E, DS_QL, 0);
        expect(g, T("attn_q_b.weight"), any, DS_QL, DS_H * (DS_NOPE + DS_ROPE), 0);
        expect(g, T("attn_kv_a_mqa.weight"), any, DS_E, DS_KVL + DS_ROPE, 0);
        if (legacy) {
            /* ne0 = 128: Q4_K does not fit, fallback Q5_0 */
            expect(g, T("attn_kv_b.weight"), q4km ? DSQ_DTYPE_Q5_0 : any, DS_KVL,
                   DS_H * (DS_NOPE + DS_V), 0);
        } else {
            expect(g, T("attn_k_b.weight"), q4km ? DSQ_DTYPE_Q5_0 : any, DS_NOPE, DS_KVL, DS_H);
            expect(g, T("attn_v_b.weight"), q4km ? DSQ_DTYPE_Q5_0 : any, DS_KVL, DS_V, DS_H);
        }
        /* n_expert == 8: attn_output raised to Q5_K under Q4_K_M */
        expect(g, T("attn_output.weight"), q4km ? DSQ_DTYPE_Q5_K : any, DS_H * DS_V, DS_E, 0);
        expect(g, T("ffn_norm.weight"), f32, DS_E, 0, 0);
        /* ffn_down under Q4_K_M: use_more_bits(i, n_layer = 4) = i < 4/8 (=0) || i >= 7*4/8
         * (=3) || (i - 0) % 3 == 2, so layers 2 and 3 get Q6_K, layers 0 and 1 Q4_K. */
        const dsq_dtype down =
            !q4km ? any : (i == 2 || i == 3) ? DSQ_DTYPE_Q6_K : DSQ_DTYPE_Q4_K;
        if (i < 1) { /* leading_dense_block_count = 1 */
            expect(g, T("ffn_gate.weight"), any, DS_E, DS_FF, 0);
            expect(g, T("ffn_up.weight"), any, DS_E, DS_FF, 0);
            expect(g, T("ffn_down.weight"), down, DS_FF, DS_E, 0);
        } else {
            expect(g, T("ffn_gate_inp.weight"), f32, DS_E, DS_X, 0); /* router stays F32 */
            expect(g, T("exp_probs_b.bias"), f32, DS_X, 0, 0);
            expect(g, T("ffn_gate_exps.weight"), any, DS_E, DS_FFX, DS_X);
            expect(g, T("ffn_up_exps.weight"), any, DS_E, DS_FFX, DS_X);
            expect(g, T("ffn_down_exps.weight"), down, DS_FFX, DS_E, DS_X);
            expect(g, T("ffn_gate_shexp.weight"), any, DS_E, DS_FFX, 0);
            expect(g, T("ffn_up_shexp.weight"), any, DS_E, DS_FFX, 0);
            expect(g, T("ffn_down_shexp.weight"), down, DS_FFX, DS_E, 0);
        }
#undef T
    }
    assert_int_equal(dsq_gguf_tensor_count(g), count); /* nothing else (no MTP layer) */
}

static void check_ds_keys(const dsq_gguf *g, int legacy, uint32_t ftype) {
    tu_gguf_expect_str(g, "general.architecture", "deepseek2");
    assert_int_equal(tu_gguf_u32(g, "general.file_type"), ftype);
    assert_int_equal(tu_gguf_u32(g, "general.quantization_version"), 2);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.block_count"), DS_L);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.context_length"), 1024);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.embedding_length"), DS_E);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.feed_forward_length"), DS_FF);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.attention.head_count"), DS_H);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.attention.head_count_kv"), legacy ? DS_H : 1);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.leading_dense_block_count"), 1);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.vocab_size"), DS_VOCAB);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.attention.q_lora_rank"), DS_QL);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.attention.kv_lora_rank"), DS_KVL);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.attention.key_length"),
                     legacy ? DS_NOPE + DS_ROPE : DS_KVL + DS_ROPE);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.attention.value_length"), legacy ? DS_V : DS_KVL);
    if (!legacy) {
        assert_int_equal(tu_gguf_u32(g, "deepseek2.attention.key_length_mla"), DS_NOPE + DS_ROPE);
        assert_int_equal(tu_gguf_u32(g, "deepseek2.attention.value_length_mla"), DS_V);
    }
    assert_int_equal(tu_gguf_u32(g, "deepseek2.expert_feed_forward_length"), DS_FFX);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.expert_count"), DS_X);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.expert_used_count"), 2);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.expert_shared_count"), 1);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.expert_group_count"), 2);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.expert_group_used_count"), 1);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.expert_gating_func"), 2); /* sigmoid */
    assert_true(get_f32(g, "deepseek2.expert_weights_scale") == 2.5f);
    bool b = false;
    assert_int_equal(dsq_gguf_get_bool(g, "deepseek2.expert_weights_norm", &b, NULL), DSQ_OK);
    assert_true(b);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.rope.dimension_count"), DS_ROPE);
    tu_gguf_expect_str(g, "deepseek2.rope.scaling.type", "yarn");
    assert_true(get_f32(g, "deepseek2.rope.scaling.factor") == 4.0f);
    assert_int_equal(tu_gguf_u32(g, "deepseek2.rope.scaling.original_context_length"), 256);
    assert_true(get_f32(g, "deepseek2.rope.scaling.yarn_log_multiplier") == 0.1f);
    assert_true(get_f32(g, "deepseek2.rope.freq_base") == 10000.0f);
    assert_true(get_f32(g, "deepseek2.attention.layer_norm_rms_epsilon") == 1e-6f);
}

/* tokenizer metadata (tiny-models/README.md: 1024 ids, bos 0, eos 1, 766 merges) */
static void check_tokenizer(const dsq_gguf *g) {
    dsq_gguf_val v, e;
    const char *s;
    size_t n;
    tu_gguf_expect_str(g, "tokenizer.ggml.model", "gpt2");
    tu_gguf_expect_str(g, "tokenizer.ggml.pre", "gpt-2");
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.tokens", DSQ_GGUF_STRING, &v, NULL),
                     DSQ_OK);
    assert_int_equal(v.n, 1024);
    assert_int_equal(dsq_gguf_val_at(&v, 0, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_str(&e, &s, &n, NULL), DSQ_OK);
    assert_true(n == strlen("<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"));
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, &v, NULL),
                     DSQ_OK);
    int32_t tt[3];
    memcpy(tt, v.data, sizeof tt);
    assert_int_equal(tt[0], 3); /* CONTROL */
    assert_int_equal(tt[1], 3);
    assert_int_equal(tt[2], 1); /* NORMAL */
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.merges", DSQ_GGUF_STRING, &v, NULL),
                     DSQ_OK);
    assert_int_equal(v.n, 766);
    assert_int_equal(dsq_gguf_val_at(&v, 0, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_str(&e, &s, &n, NULL), DSQ_OK);
    assert_true(n == 4 && memcmp(s, "\xc4\xa0 t", 4) == 0); /* "Ġ t", rank 0 */
    assert_int_equal(tu_gguf_u32(g, "tokenizer.ggml.bos_token_id"), 0);
    assert_int_equal(tu_gguf_u32(g, "tokenizer.ggml.eos_token_id"), 1);
    assert_int_equal(tu_gguf_u32(g, "tokenizer.ggml.padding_token_id"), 1); /* pad = eos text */
    bool b = false;
    assert_int_equal(dsq_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, NULL), DSQ_OK);
    assert_true(b);
    assert_int_equal(dsq_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, NULL), DSQ_OK);
    assert_false(b);
}

static void test_deepseek_fp8_q4_k_m(void **state) {
    (void)state;
    dsq_qz_opts o = opts("Q4_K_M");
    dsq_gguf *g = quantize_open(DS_FP8, "ds-q4km.gguf", &o);
    check_ds_tensors(g, 0, 1);
    check_ds_keys(g, 0, 15);
    check_tokenizer(g);
    dsq_gguf_close(g);
}

static void test_deepseek_legacy_layout_plan(void **state) {
    (void)state;
    dsq_qz_opts o = opts("Q4_K_M");
    o.mla_legacy = 1;
    o.dry_run = 1;
    dsq_qz_summary s;
    dsq_err err = {0};
    assert_int_equal(run(DS_FP8, "never.gguf", &o, &s, &err), DSQ_OK);
    int kvb = 0;
    for (size_t i = 0; i < s.n_tensors; i++) {
        assert_null(strstr(s.tensors[i].name, "attn_k_b"));
        if (strstr(s.tensors[i].name, "attn_kv_b.weight")) {
            kvb++;
            assert_int_equal(s.tensors[i].type, DSQ_DTYPE_Q5_0);
            assert_true(s.tensors[i].fallback);
        }
    }
    assert_int_equal(kvb, DS_L);
    dsq_qz_summary_free(&s);
    char *p = tu_group_path("never.gguf");
    assert_false(tu_file_exists(p)); /* dry run writes nothing */
    free(p);
}

/* ==== FP8 in = its BF16 cast in: the weights llama.cpp's pipeline quantizes ================ */

/* DeepSeek's route to llama.cpp is fp8_cast_bf16.py, then the converter and llama-quantize:
 * the quantizer sees the BF16 cast. By default dsq rounds FP8 x scale to BF16 the same way,
 * so the FP8 checkpoint and the team's exact cast of it give the same tensors, every byte;
 * with --fp8-f32 the F32 products differ from the cast's (some tensors change). */
static void test_fp8_equals_bf16_cast(void **state) {
    (void)state;
    static const char *const types[] = {"Q4_K_M", "Q8_0"};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        dsq_qz_opts o = opts(types[k]);
        char a_name[64], b_name[64], c_name[64];
        snprintf(a_name, sizeof a_name, "fp8-%s.gguf", types[k]);
        snprintf(b_name, sizeof b_name, "cast-%s.gguf", types[k]);
        snprintf(c_name, sizeof c_name, "fp8-f32-%s.gguf", types[k]);
        dsq_gguf *a = quantize_open(DS_FP8, a_name, &o), *b = quantize_open(DS_CAST, b_name, &o);
        o.fp8_f32 = 1;
        dsq_gguf *c = quantize_open(DS_FP8, c_name, &o);
        assert_int_equal(dsq_gguf_tensor_count(a), dsq_gguf_tensor_count(b));
        int differ_f32 = 0;
        for (int64_t i = 0; i < dsq_gguf_tensor_count(a); i++) {
            const dsq_gguf_tensor *ta = dsq_gguf_tensor_at(a, i);
            const dsq_gguf_tensor *tb = tu_gguf_tensor(b, ta->name);
            const dsq_gguf_tensor *tc = tu_gguf_tensor(c, ta->name);
            assert_int_equal(ta->dtype, tb->dtype);
            assert_true(ta->nbytes == tb->nbytes);
            if (memcmp(ta->data, tb->data, (size_t)ta->nbytes) != 0)
                fail_msg("%s %s: FP8 and its BF16 cast give different bytes", types[k],
                         ta->name);
            differ_f32 += memcmp(ta->data, tc->data, (size_t)ta->nbytes) != 0;
        }
        assert_true(differ_f32 > 0);
        dsq_gguf_close(a);
        dsq_gguf_close(b);
        dsq_gguf_close(c);
    }
}

/* ==== --pure Q8_0: bytes equal dsq_quantize_rows on the dequantized weights ================= */

/* W x scale_inv in F32, then (round_bf16) rounded to BF16 as dsq quantize does by default */
static float *dequant_fp8(const dsq_ckpt *ck, const char *name, int64_t *rows, int64_t *cols) {
    char sname[256];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    const dsq_tensor_view *w = dsq_ckpt_find(ck, name, NULL, NULL);
    const dsq_tensor_view *sc = dsq_ckpt_find(ck, sname, NULL, NULL);
    assert_non_null(w);
    assert_non_null(sc);
    assert_int_equal(w->dtype, DSQ_DTYPE_F8_E4M3);
    *rows = w->shape[0];
    *cols = w->shape[1];
    float *out = malloc((size_t)(*rows * *cols) * sizeof *out);
    const uint8_t *q = w->data;
    for (int64_t r = 0; r < *rows; r++)
        for (int64_t c = 0; c < *cols; c++) {
            float s;
            memcpy(&s, (const uint8_t *)sc->data + 4 * ((r / 128) * sc->shape[1] + c / 128), 4);
            out[r * *cols + c] =
                dsq_bf16_to_f32(dsq_f32_to_bf16(dsq_fp8_e4m3_to_f32(q[r * *cols + c]) * s));
        }
    return out;
}

static void expect_q8_bytes(const dsq_gguf *g, const char *name, const float *x, int64_t rows,
                            int64_t cols, uint64_t offset) {
    size_t rb = 0;
    assert_int_equal(dsq_quant_row_size(DSQ_DTYPE_Q8_0, cols, &rb), DSQ_OK);
    uint8_t *want = malloc(rb * (size_t)rows);
    assert_int_equal(dsq_quantize_rows(DSQ_DTYPE_Q8_0, x, want, rows, cols, NULL, 1), DSQ_OK);
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, name);
    assert_int_equal(t->dtype, DSQ_DTYPE_Q8_0);
    if (memcmp(t->data + offset, want, rb * (size_t)rows) != 0)
        fail_msg("%s: bytes differ from dsq_quantize_rows at offset %llu", name,
                 (unsigned long long)offset);
    free(want);
}

static void test_pure_q8_0_bytes(void **state) {
    (void)state;
    dsq_qz_opts o = opts("Q8_0");
    o.pure = 1;
    dsq_gguf *g = quantize_open(DS_FP8, "ds-pure-q8.gguf", &o);
    assert_int_equal(tu_gguf_u32(g, "general.file_type"), 7);
    check_ds_tensors(g, 0, 0);
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        const int keep = t->n_dims == 1 || strstr(t->name, "ffn_gate_inp") != NULL;
        assert_int_equal(t->dtype, keep ? DSQ_DTYPE_F32 : DSQ_DTYPE_Q8_0);
    }
    char *dir = tu_shared_path(DS_FP8);
    dsq_ckpt *ck = NULL;
    assert_int_equal(dsq_ckpt_open(&ck, dir, NULL), DSQ_OK);
    int64_t r, c;
    /* a plain FP8 weight */
    float *x = dequant_fp8(ck, "model.layers.0.self_attn.q_a_proj.weight", &r, &c);
    expect_q8_bytes(g, "blk.0.attn_q_a.weight", x, r, c, 0);
    free(x);
    /* experts stacked expert by expert: expert 5 is the 6th [256, 256] slice */
    x = dequant_fp8(ck, "model.layers.3.mlp.experts.5.down_proj.weight", &r, &c);
    expect_q8_bytes(g, "blk.3.ffn_down_exps.weight", x, r, c, 5 * (uint64_t)r * (c / 32) * 34);
    free(x);
    /* attn_k_b head 2: kv_b rows 2*(64+64) + j, transposed: row k = kv_b[128 + j][k] */
    x = dequant_fp8(ck, "model.layers.1.self_attn.kv_b_proj.weight", &r, &c);
    float *kb = malloc(sizeof(float) * DS_KVL * DS_NOPE);
    for (int k = 0; k < DS_KVL; k++)
        for (int j = 0; j < DS_NOPE; j++)
            kb[k * DS_NOPE + j] = x[(2 * (DS_NOPE + DS_V) + j) * c + k];
    expect_q8_bytes(g, "blk.1.attn_k_b.weight", kb, DS_KVL, DS_NOPE,
                    2 * (uint64_t)DS_KVL * (DS_NOPE / 32) * 34);
    /* attn_v_b head 1: rows 1*(128) + 64 + j of kv_b, as they are */
    expect_q8_bytes(g, "blk.1.attn_v_b.weight", x + (size_t)(DS_NOPE + DS_V + DS_NOPE) * c, DS_V,
                    DS_KVL, 1 * (uint64_t)DS_V * (DS_KVL / 32) * 34);
    free(kb);
    free(x);
    /* a BF16 tensor (the embedding) widened exactly */
    const dsq_tensor_view *emb = dsq_ckpt_find(ck, "model.embed_tokens.weight", NULL, NULL);
    assert_int_equal(emb->dtype, DSQ_DTYPE_BF16);
    x = malloc(sizeof(float) * DS_VOCAB * DS_E);
    for (int i = 0; i < DS_VOCAB * DS_E; i++) {
        const uint8_t *p = (const uint8_t *)emb->data + 2 * i;
        x[i] = dsq_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    }
    expect_q8_bytes(g, "token_embd.weight", x, DS_VOCAB, DS_E, 0);
    free(x);
    dsq_ckpt_close(ck);
    free(dir);
    dsq_gguf_close(g);
}

/* ==== llama ================================================================================== */

static void test_permutation_by_hand(void **state) {
    (void)state;
    /* 8 rows, 2 heads of hd = 4: HF pairs RoPE dims (i, i + hd/2); llama.cpp pairs (2i, 2i+1).
     * new row 2i + j <- old row j*hd/2 + i: head 0 new [0 1 2 3] <- old [0 2 1 3],
     * head 1 new [4 5 6 7] <- old [4 6 5 7]. */
    static const int64_t want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int r = 0; r < 8; r++)
        assert_int_equal(dsq_qz_permute_src_row(r, 8, 2), want[r]);
    /* 12 rows, 1 head of hd = 12: new [0..11] <- old [0 6 1 7 2 8 3 9 4 10 5 11] */
    static const int64_t want1[12] = {0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11};
    for (int r = 0; r < 12; r++)
        assert_int_equal(dsq_qz_permute_src_row(r, 12, 1), want1[r]);
}

static void test_llama_f32_names_and_permutation(void **state) {
    (void)state;
    dsq_qz_opts o = opts("F32");
    dsq_gguf *g = quantize_open(LLAMA, "llama-f32.gguf", &o);
    const dsq_dtype f32 = DSQ_DTYPE_F32;
    tu_gguf_expect_str(g, "general.architecture", "llama");
    assert_int_equal(tu_gguf_u32(g, "general.file_type"), 0);
    assert_int_equal(tu_gguf_u32(g, "llama.attention.head_count_kv"), 2);
    assert_int_equal(tu_gguf_u32(g, "llama.rope.dimension_count"), 64);
    assert_int_equal(tu_gguf_u32(g, "llama.vocab_size"), 1024);
    assert_int_equal(tu_gguf_u32(g, "llama.attention.key_length"), 64);
    check_tokenizer(g);
    expect(g, "token_embd.weight", f32, 256, 1024, 0);
    expect(g, "output_norm.weight", f32, 256, 0, 0);
    expect(g, "output.weight", f32, 256, 1024, 0);
    char n[64];
    for (int i = 0; i < 4; i++) {
#define T(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, i), n)
        expect(g, T("attn_norm.weight"), f32, 256, 0, 0);
        expect(g, T("attn_q.weight"), f32, 256, 64 * 4, 0);
        expect(g, T("attn_k.weight"), f32, 256, 64 * 2, 0);
        expect(g, T("attn_v.weight"), f32, 256, 64 * 2, 0);
        expect(g, T("attn_output.weight"), f32, 64 * 4, 256, 0);
        expect(g, T("ffn_norm.weight"), f32, 256, 0, 0);
        expect(g, T("ffn_gate.weight"), f32, 256, 768, 0);
        expect(g, T("ffn_down.weight"), f32, 768, 256, 0);
        expect(g, T("ffn_up.weight"), f32, 256, 768, 0);
#undef T
    }
    assert_int_equal(dsq_gguf_tensor_count(g), 3 + 4 * 9);
    /* the permutation on real data: GGUF attn_k row r = HF k_proj row permute(r) (2 kv heads),
     * attn_q with 4 heads; attn_v untouched */
    char *dir = tu_shared_path(LLAMA);
    dsq_ckpt *ck = NULL;
    assert_int_equal(dsq_ckpt_open(&ck, dir, NULL), DSQ_OK);
    static const struct {
        const char *hf, *gguf;
        int heads;
    } cases[] = {{"model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", 2},
                 {"model.layers.2.self_attn.q_proj.weight", "blk.2.attn_q.weight", 4},
                 {"model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight", 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const dsq_tensor_view *v = dsq_ckpt_find(ck, cases[k].hf, NULL, NULL);
        const dsq_gguf_tensor *t = tu_gguf_tensor(g, cases[k].gguf);
        const int64_t rows = v->shape[0], cols = v->shape[1];
        for (int64_t r = 0; r < rows; r++) {
            const int64_t sr = cases[k].heads ? dsq_qz_permute_src_row(r, rows, cases[k].heads) : r;
            for (int64_t c = 0; c < cols; c++) {
                const uint8_t *p = (const uint8_t *)v->data + 2 * (sr * cols + c);
                float got;
                memcpy(&got, t->data + 4 * (r * cols + c), 4);
                if (got != dsq_bf16_to_f32((uint16_t)(p[0] | p[1] << 8)))
                    fail_msg("%s row %lld col %lld", cases[k].gguf, (long long)r, (long long)c);
            }
        }
    }
    dsq_ckpt_close(ck);
    free(dir);
    dsq_gguf_close(g);
}

static dsq_dtype plan_type(const dsq_qz_summary *s, const char *name) {
    for (size_t i = 0; i < s->n_tensors; i++)
        if (strcmp(s->tensors[i].name, name) == 0)
            return s->tensors[i].type;
    fail_msg("%s not in plan", name);
    return DSQ_DTYPE_INVALID;
}

static void test_llama_preset_rules(void **state) {
    (void)state;
    dsq_qz_summary s;
    dsq_err err = {0};
    dsq_qz_opts o = opts("Q4_K_M");
    o.dry_run = 1;
    assert_int_equal(run(LLAMA, "x.gguf", &o, &s, &err), DSQ_OK);
    /* Q4_K_M, n_layer = 4, n_attention_wv = 4: use_more_bits(i, 4) = i < 0 || i >= 3 ||
     * i % 3 == 2 -> layers 2 and 3. attn_v counts attn_v tensors in order (blk.0..3), ffn_down
     * uses the same counter arithmetic: Q6_K on 2 and 3, Q4_K on 0 and 1. */
    static const char *const v[4] = {"blk.0.attn_v.weight", "blk.1.attn_v.weight",
                                      "blk.2.attn_v.weight", "blk.3.attn_v.weight"};
    static const char *const d[4] = {"blk.0.ffn_down.weight", "blk.1.ffn_down.weight",
                                      "blk.2.ffn_down.weight", "blk.3.ffn_down.weight"};
    for (int i = 0; i < 4; i++) {
        const dsq_dtype want = i >= 2 ? DSQ_DTYPE_Q6_K : DSQ_DTYPE_Q4_K;
        assert_int_equal(plan_type(&s, v[i]), want);
        assert_int_equal(plan_type(&s, d[i]), want);
    }
    assert_int_equal(plan_type(&s, "output.weight"), DSQ_DTYPE_Q6_K);
    assert_int_equal(plan_type(&s, "token_embd.weight"), DSQ_DTYPE_Q4_K);
    assert_int_equal(plan_type(&s, "blk.0.attn_output.weight"), DSQ_DTYPE_Q4_K); /* no experts */
    assert_int_equal(plan_type(&s, "blk.0.attn_norm.weight"), DSQ_DTYPE_F32);
    dsq_qz_summary_free(&s);

    /* Q3_K_M: attn_v Q5_K for the first two (i_attention_wv < 2), then Q4_K; attn_output Q4_K;
     * ffn_down: i < 4/16 = 0 never, so Q4_K. Overrides win over the rules. */
    const char *tt[] = {"ffn_up=Q8_0"};
    o = opts("Q3_K_M");
    o.dry_run = 1;
    o.tensor_types = tt;
    o.n_tensor_types = 1;
    o.output_tensor_type = "q5_k";
    o.token_embedding_type = "Q8_0";
    assert_int_equal(run(LLAMA, "x.gguf", &o, &s, &err), DSQ_OK);
    assert_int_equal(plan_type(&s, "blk.1.attn_v.weight"), DSQ_DTYPE_Q5_K);
    assert_int_equal(plan_type(&s, "blk.2.attn_v.weight"), DSQ_DTYPE_Q4_K);
    assert_int_equal(plan_type(&s, "blk.2.attn_output.weight"), DSQ_DTYPE_Q4_K);
    assert_int_equal(plan_type(&s, "blk.0.ffn_down.weight"), DSQ_DTYPE_Q4_K);
    assert_int_equal(plan_type(&s, "blk.0.ffn_gate.weight"), DSQ_DTYPE_Q3_K);
    assert_int_equal(plan_type(&s, "blk.3.ffn_up.weight"), DSQ_DTYPE_Q8_0);
    assert_int_equal(plan_type(&s, "output.weight"), DSQ_DTYPE_Q5_K);
    assert_int_equal(plan_type(&s, "token_embd.weight"), DSQ_DTYPE_Q8_0);
    dsq_qz_summary_free(&s);
}

static void test_rules_units(void **state) {
    (void)state;
    /* use_more_bits for 32 layers: i < 4 || i >= 28 || (i - 4) % 3 == 2 */
    int n = 0;
    for (int i = 0; i < 32; i++)
        n += dsq_qz_use_more_bits(i, 32);
    assert_int_equal(n, 4 + 4 + 8); /* 0-3, 28-31, and 6 9 12 15 18 21 24 27 */
    assert_true(dsq_qz_use_more_bits(6, 32) && !dsq_qz_use_more_bits(7, 32));
    assert_non_null(dsq_ftype_find("q4_k"));
    assert_int_equal(dsq_ftype_find("Q4_K")->ftype, DSQ_FTYPE_Q4_K_M);
    assert_null(dsq_ftype_find("Q1_X"));
    /* fallbacks: Q6_K with ne0 = 96 -> Q8_0; Q4_K with ne0 = 48 -> Q5_0 does not fit -> F16 */
    dsq_qz_state s;
    memset(&s, 0, sizeof s);
    s.m.n_layer = 4;
    s.m.has_output = 1;
    dsq_dtype t;
    int fb;
    assert_int_equal(dsq_qz_rule_type(&s, dsq_ftype_find("Q6_K"), "blk.0.attn_q.weight", 96, &t,
                                      &fb, NULL), DSQ_OK);
    assert_int_equal(t, DSQ_DTYPE_Q8_0);
    assert_true(fb);
    assert_int_equal(dsq_qz_rule_type(&s, dsq_ftype_find("Q4_K_S"), "blk.0.attn_q.weight", 48,
                                      &t, &fb, NULL), DSQ_OK);
    assert_int_equal(t, DSQ_DTYPE_F16);
    /* Q8_0 has no fallback: llama.cpp throws "Unsupported tensor size encountered" */
    assert_int_equal(dsq_qz_rule_type(&s, dsq_ftype_find("Q8_0"), "blk.0.attn_q.weight", 48, &t,
                                      &fb, NULL), DSQ_UNSUPPORTED);
    assert_true(dsq_qz_is_quantizable("blk.0.ffn_up_exps.weight", 3));
    assert_false(dsq_qz_is_quantizable("blk.0.ffn_gate_inp.weight", 2));
    assert_false(dsq_qz_is_quantizable("blk.0.attn_kv_a_norm.weight", 1));
    assert_false(dsq_qz_is_quantizable("blk.0.exp_probs_b.bias", 1));
}

/* ==== bad input ============================================================================== */

/* A checkpoint dir in tmp: the tiny llama's weights (symlinked by absolute path, DSQ_SHARED
 * may be relative) with config.json edited by sed. */
static char *edited_llama(const char *name, const char *sed_expr) {
    char *src = tu_shared_path(LLAMA);
    char *dir = tu_group_path(name);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && ln -sf \"$(cd '%s' && pwd)/model.safetensors\" '%s/' && "
             "cp '%s/tokenizer.json' "
             "'%s/tokenizer_config.json' '%s/' && sed -e '%s' '%s/config.json' > '%s/config.json'",
             dir, src, dir, src, src, dir, sed_expr, src, dir);
    assert_int_equal(tu_system(cmd), 0);
    free(src);
    return dir;
}

static void expect_cli_error(const char *in, const char *extra, const char *fragment) {
    char *out = tu_group_path("bad.gguf");
    char *errf = tu_group_path("err.txt");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' %s -q 2> '%s'", tu_dsq_bin(), in, out,
             extra, errf);
    assert_int_equal(tu_system(cmd), 3);
    assert_false(tu_file_exists(out));
    size_t n = 0;
    char *msg = (char *)tu_read_file(errf, &n);
    msg = realloc(msg, n + 1);
    msg[n] = '\0';
    if (strstr(msg, fragment) == NULL || strchr(msg, '\n') != msg + n - 1)
        fail_msg("expected one line with '%s', got: %s", fragment, msg);
    free(msg);
    free(out);
    free(errf);
}

static void test_bad_input(void **state) {
    (void)state;
    char *d = edited_llama("arch", "s/LlamaForCausalLM/MistralForCausalLM/");
    expect_cli_error(d, "--type Q8_0", "architecture 'MistralForCausalLM' is not supported");
    free(d);
    d = edited_llama("layers", "s/\"num_hidden_layers\": 4/\"num_hidden_layers\": 5/");
    expect_cli_error(d, "--type Q8_0",
                     "no tensor 'model.layers.4.input_layernorm.weight' (needed for llama");
    free(d);
    d = edited_llama("fewer", "s/\"num_hidden_layers\": 4/\"num_hidden_layers\": 3/");
    /* llama has no MTP layers: a tensor nobody maps is an error, not silently dropped */
    expect_cli_error(d, "--type Q8_0", "llama mapping");
    free(d);
    /* llama3 bands out of order: the converter would write factors for bands that cannot
     * exist, and no forward pass (dsq's, HF's validation) accepts the config */
    d = edited_llama("llama3", "s/\"rope_scaling\": null/\"rope_scaling\": {\"rope_type\": "
                               "\"llama3\", \"factor\": 8, \"low_freq_factor\": 4, "
                               "\"high_freq_factor\": 1, "
                               "\"original_max_position_embeddings\": 1024}/");
    expect_cli_error(d, "--type Q8_0", "0 < low_freq_factor < high_freq_factor");
    free(d);
    char *ds = tu_shared_path(DS_FP8);
    /* ne0 = 128 (kv_b split) with --pure Q4_K: no 256-block fits, and --pure has no fallback */
    expect_cli_error(ds, "--type Q4_K --pure", "row length 64 is not a multiple of Q4_K");
    free(ds);
    /* an unsupported dtype: a one-tensor checkpoint of I32 */
    char *dir = tu_group_path("i32");
    char *sf = tu_group_path("i32/model.safetensors");
    char *cfg = tu_group_path("i32/config.json");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    assert_int_equal(tu_system(cmd), 0);
    static const char hdr[] =
        "{\"model.embed_tokens.weight\":{\"dtype\":\"I32\",\"shape\":[2,32],"
        "\"data_offsets\":[0,256]}}";
    uint8_t buf[8 + sizeof hdr - 1 + 256];
    memset(buf, 0, sizeof buf);
    buf[0] = (uint8_t)(sizeof hdr - 1);
    memcpy(buf + 8, hdr, sizeof hdr - 1);
    tu_write_file(sf, buf, sizeof buf);
    static const char config[] =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"num_hidden_layers\": 1, \"hidden_size\": "
        "32, \"num_attention_heads\": 2, \"vocab_size\": 2}";
    tu_write_file(cfg, config, sizeof config - 1);
    expect_cli_error(dir, "--type Q8_0", "dtype I32 cannot be quantized");
    free(dir);
    free(sf);
    free(cfg);
    /* usage errors are exit 2 */
    char *llama = tu_shared_path(LLAMA);
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' /tmp/x.gguf --type Q9_9 -q 2>/dev/null",
             tu_dsq_bin(), llama);
    assert_int_equal(tu_system(cmd), 2);
    free(llama);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_units),
        cmocka_unit_test(test_permutation_by_hand),
        cmocka_unit_test(test_deepseek_fp8_q4_k_m),
        cmocka_unit_test(test_fp8_equals_bf16_cast),
        cmocka_unit_test(test_deepseek_legacy_layout_plan),
        cmocka_unit_test(test_pure_q8_0_bytes),
        cmocka_unit_test(test_llama_f32_names_and_permutation),
        cmocka_unit_test(test_llama_preset_rules),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, tu_group_dir_teardown);
}
