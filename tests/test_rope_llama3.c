/* tests/test_rope_llama3.c: Llama 3.x rope scaling ("rope_type": "llama3") through
 * `dsq quantize` (the rope_freqs.weight tensor) and back through the GGUF forward pass.
 *
 * The model is tiny-models/tiny-llama with, added at test time, rope_scaling {rope_type
 * llama3, factor 8, low_freq_factor 1.5, high_freq_factor 4, original_max_position_embeddings
 * 1024} (and max_position_embeddings 8192 = 8 x 1024, as HF's validation expects). Its 32
 * rotary pairs (head_dim 64, rope_theta 10000) have wavelengths 2π·10000^(i/32): pairs 0-12
 * are shorter than 1024/4 = 256 (kept), 13-16 lie between (smoothed), 17-31 are longer than
 * 1024/1.5 (divided by 8). The nearest wavelength is 3.5% from a band edge, so F32 and double
 * arithmetic put every pair in the same band.
 *
 * Where the expected values come from:
 *  - rope_freqs.weight: the published formula, evaluated here in double. transformers'
 *    modeling_rope_utils.py _compute_llama3_parameters (Meta's apply_scaling) turns
 *    inv_freq_i = theta^(-2i/d) into inv_freq_i (wavelength < orig/high), inv_freq_i/factor
 *    (wavelength > orig/low), else (1-s)·inv_freq_i/factor + s·inv_freq_i with
 *    s = (orig/wavelength - low)/(high - low). llama.cpp's convert_hf_to_gguf.py (Feb 2025,
 *    LlamaModel.generate_extra_tensors) stores the divisor inv_freq_i / scaled_i, that is 1,
 *    factor or 1/((1-s)/factor + s), as F32 [d/2], and ggml_rope_ext divides pair i's angle by
 *    it. The converter computes in torch F32: the smoothed values agree with the double ones to
 *    2e-6 relative (about 2e-7 seen), the other two exactly.
 *  - Keys: the converter writes none for llama3 (its set_gguf_parameters writes
 *    rope.scaling.* only for type "linear").
 *  - Type and place: 1-D tensors are never quantized (llama-quant.cpp: quantize &=
 *    ggml_n_dims(tensor) >= 2; the converter forces n_dims <= 1 to F32), and llama-quantize
 *    writes the tensors in llama_model_loader's weight_name_comparer order, tensors outside
 *    the blocks first and by name: output, output_norm, rope_freqs, token_embd, blk.0...
 *  - Perplexity: dsq's HF forward pass applies llama3 scaling to inv_freq itself (verify/ops.c,
 *    tied to the formula in test_forward), the GGUF one divides by the stored factors; the
 *    weights are the same (F32 and BF16 GGUFs of a BF16 model are exact), so the two must
 *    agree up to the F32 rounding of the four smoothed frequencies; the README claims the same
 *    perplexity (87.416812 both) and F32 GGUFs to 1e-8, so 1e-8 relative is the bound (2e-8
 *    over the single window of a sanitizer build).
 *  - By hand, not in the suite (it needs a llama.cpp build): llama.cpp's llama-perplexity
 *    (Feb 2025, c392e50) on the F32 GGUF of this model, -c 256 over eval.txt, all 142 windows,
 *    F32 KV cache (-ctk f32 -ctv f32): 87.4168; dsq ppl --text on the GGUF and on the HF
 *    directory: 87.416812 both (the unscaled model: 86.0190). With llama.cpp's default F16
 *    KV cache: 87.4163. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/quantize_gguf.h"
#include "core/file.h"
#include "formats/gguf.h"
#include "tests/testutil.h"
#include "verify/model.h"
#include "verify/ppl.h"


/* the rope_scaling the test adds, and the tiny llama's own rope (its config.json) */
#define FACTOR 8.0
#define LOW    1.5
#define HIGH   4.0
#define ORIG   1024.0
#define THETA  10000.0
#define HEAD   64

/* tiny-llama with llama3 rope scaling, made once in the group directory */
static char *l3_dir;

static const char *llama3_model(void) {
    if (l3_dir != NULL)
        return l3_dir;
    char *src = tu_shared_path("data/tiny-models/tiny-llama");
    l3_dir = tu_group_path("tiny-llama3");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && ln -sf \"$(cd '%s' && pwd)/model.safetensors\" '%s/' && "
             "cp '%s/tokenizer.json' '%s/tokenizer_config.json' '%s/'",
             l3_dir, src, l3_dir, src, src, l3_dir);
    assert_int_equal(tu_system(cmd), 0);
    char *in = dsq_path_join(src, "config.json"), *out = dsq_path_join(l3_dir, "config.json");
    json_error_t je;
    json_t *cfg = json_load_file(in, 0, &je);
    assert_non_null(cfg);
    json_t *rs = json_pack("{s:s, s:f, s:f, s:f, s:f}", "rope_type", "llama3", "factor", FACTOR,
                           "low_freq_factor", LOW, "high_freq_factor", HIGH,
                           "original_max_position_embeddings", ORIG);
    assert_int_equal(json_object_set_new(cfg, "rope_scaling", rs), 0);
    assert_int_equal(json_object_set_new(cfg, "max_position_embeddings", json_integer(8192)), 0);
    assert_int_equal(json_dump_file(cfg, out, JSON_INDENT(2)), 0);
    json_decref(cfg);
    free(in);
    free(out);
    free(src);
    return l3_dir;
}

/* dsq quantize (the CLI) of the llama3 model; returns the owned output path */
static char *make_gguf(const char *type) {
    char name[64], cmd[2048];
    snprintf(name, sizeof name, "tiny-llama3-%s.gguf", type);
    char *out = tu_group_path(name);
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' --type %s -q", tu_dsq_bin(),
             llama3_model(), out, type);
    assert_int_equal(tu_system(cmd), 0);
    return out;
}

/* The divisor of pair i, from the published formula in double (header comment). */
static double expected_factor(int i, int *band) {
    const double inv = pow(THETA, -2.0 * i / HEAD), wl = 2 * M_PI / inv;
    if (wl < ORIG / HIGH) {
        *band = 0;
        return 1.0;
    }
    if (wl > ORIG / LOW) {
        *band = 2;
        return FACTOR;
    }
    *band = 1;
    const double s = (ORIG / wl - LOW) / (HIGH - LOW);
    const double scaled = (1 - s) * inv / FACTOR + s * inv;
    return inv / scaled;
}

static void test_rope_freqs_values(void **state) {
    (void)state;
    char *p = make_gguf("F32");
    dsq_gguf *g = tu_gguf_open(p);
    const dsq_gguf_tensor *t = tu_gguf_tensor(g, "rope_freqs.weight");
    assert_int_equal(t->dtype, DSQ_DTYPE_F32);
    assert_int_equal(t->n_dims, 1);
    assert_int_equal(t->ne[0], HEAD / 2);
    int in_band[3] = {0, 0, 0};
    for (int i = 0; i < HEAD / 2; i++) {
        float got;
        memcpy(&got, t->data + 4 * i, sizeof got);
        int band;
        const double want = expected_factor(i, &band);
        in_band[band]++;
        if (band != 1 ? got != (float)want : fabs(got / want - 1) > 2e-6)
            fail_msg("rope_freqs[%d] = %.9g, the formula gives %.9g", i, (double)got, want);
    }
    /* the bands the header comment works out: every one of them is exercised */
    assert_int_equal(in_band[0], 13);
    assert_int_equal(in_band[1], 4);
    assert_int_equal(in_band[2], 15);
    assert_true(dsq_gguf_find_key(g, "llama.rope.scaling.type") < 0);
    assert_true(dsq_gguf_find_key(g, "llama.rope.scaling.factor") < 0);
    /* third, after output and output_norm */
    assert_int_equal(dsq_gguf_find_tensor(g, "rope_freqs.weight"), 2);
    dsq_gguf_close(g);
    free(p);
}

/* F32 under every kind of preset, and listed by --dry-run */
static void test_rope_freqs_never_quantized(void **state) {
    (void)state;
    static const struct {
        const char *type;
        int pure;
    } cases[] = {{"Q4_K_M", 0}, {"Q2_K", 0}, {"Q8_0", 0}, {"Q4_0", 1}, {"F16", 0}, {"BF16", 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dsq_qz_opts o;
        memset(&o, 0, sizeof o);
        o.type = cases[k].type;
        o.pure = cases[k].pure;
        o.dry_run = 1;
        dsq_qz_summary s;
        dsq_err err = {0};
        if (dsq_quantize_gguf(llama3_model(), NULL, &o, &s, &err) != DSQ_OK)
            fail_msg("%s: %s", cases[k].type, err.text);
        assert_true(s.n_tensors > 2);
        const dsq_qz_tensor *t = &s.tensors[2];
        assert_string_equal(t->name, "rope_freqs.weight");
        if (t->type != DSQ_DTYPE_F32 || t->n_dims != 1 || t->ne[0] != HEAD / 2 ||
            t->nbytes != 4 * HEAD / 2)
            fail_msg("%s: rope_freqs.weight is %s [%lld], %llu bytes", cases[k].type,
                     dsq_dtype_name(t->type), (long long)t->ne[0],
                     (unsigned long long)t->nbytes);
        dsq_qz_summary_free(&s);
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' quantize '%s' --type Q4_K_M --dry-run | "
             "grep -q '^rope_freqs.weight  *F32  *\\[32\\]  *128$'",
             tu_dsq_bin(), llama3_model());
    assert_int_equal(tu_system(cmd), 0);
    /* without rope_scaling there is no such tensor */
    char *plain = tu_shared_path("data/tiny-models/tiny-llama");
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' --type Q4_K_M --dry-run | grep -q rope_freqs",
             tu_dsq_bin(), plain);
    assert_int_not_equal(tu_system(cmd), 0);
    free(plain);
}

static void test_gguf_ppl_equals_hf(void **state) {
    (void)state;
    int64_t n = 0;
    int32_t *ids = tu_eval_tokens(&n);
    char *plain = tu_shared_path("data/tiny-models/tiny-llama");
    char *f32 = make_gguf("F32"), *bf16 = make_gguf("BF16");
    const double p_hf = tu_ppl_of(llama3_model(), ids, n), p_f32 = tu_ppl_of(f32, ids, n),
                 p_bf16 = tu_ppl_of(bf16, ids, n), p_plain = tu_ppl_of(plain, ids, n);
    printf("  llama3-scaled tiny llama: ppl HF %.8f, F32 GGUF %.8f (rel %.2g), BF16 GGUF %.8f "
           "(rel %.2g); unscaled %.6f\n",
           p_hf, p_f32, fabs(p_f32 / p_hf - 1), p_bf16, fabs(p_bf16 / p_hf - 1), p_plain);
    /* the sanitizer build scores one window, where the rounding averages out less (1.2e-8) */
    const double tol = UNDER_SANITIZER ? 2e-8 : 1e-8;
    assert_true(fabs(p_f32 / p_hf - 1) < tol);
    assert_true(fabs(p_bf16 / p_hf - 1) < tol);
    /* the comparison can tell: on these windows the scaling moves perplexity by far more
     * than the tolerance, so a GGUF reader that ignored rope_freqs would fail it */
    assert_true(fabs(p_hf / p_plain - 1) > 1e-4);
    free(plain);
    free(f32);
    free(bf16);
    free(ids);
}

static int teardown(void **state) {
    free(l3_dir);
    l3_dir = NULL;
    return tu_group_dir_teardown(state);
}

/* A llama3 rope_scaling llama.cpp's converter could not turn into factors is refused by
 * dsq quantize: exit 3 (bad input), one line saying what is wrong, no GGUF left behind.
 * The rules are the converter's and transformers' (_compute_llama3_parameters divides by
 * high - low and by the factor, and pairs head dimensions). */
static void test_bad_llama3_config(void **state) {
    (void)state;
    static const struct {
        const char *rope_scaling, *want;
    } cases[] = {
        {"{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,"
         "\"high_freq_factor\":4}",
         "low_freq_factor < high_freq_factor"},
        {"{\"rope_type\":\"llama3\",\"factor\":0,\"low_freq_factor\":1,"
         "\"high_freq_factor\":4}",
         "factor > 0"},
        {"{\"rope_type\":\"llama3\",\"factor\":\"eight\"}", "rope_scaling.factor is not a number"},
    };
    const char *src = llama3_model();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char name[32], cmd[4096];
        snprintf(name, sizeof name, "bad-l3-%zu", k);
        char *dir = tu_group_path(name), *out = tu_join(dir, "out.gguf");
        char *err_path = tu_join(dir, "stderr.txt");
        snprintf(cmd, sizeof cmd,
                 "mkdir -p '%s' && ln -sf \"$(cd '%s' && pwd)\"/model.safetensors '%s/' && "
                 "cp '%s/tokenizer.json' '%s/tokenizer_config.json' '%s/'",
                 dir, src, dir, src, src, dir);
        assert_int_equal(tu_system(cmd), 0);
        /* the llama3 model's config.json with only rope_scaling changed */
        char *in = tu_join(src, "config.json"), *cfg_path = tu_join(dir, "config.json");
        json_error_t je;
        json_t *cfg = json_load_file(in, 0, &je), *rs = json_loads(cases[k].rope_scaling, 0, &je);
        assert_non_null(cfg);
        assert_non_null(rs);
        assert_int_equal(json_object_set_new(cfg, "rope_scaling", rs), 0);
        assert_int_equal(json_dump_file(cfg, cfg_path, 0), 0);
        json_decref(cfg);
        free(in);
        free(cfg_path);
        snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' --type Q8_0 -q 2>'%s'", tu_dsq_bin(),
                 dir, out, err_path);
        assert_int_equal(tu_system(cmd), 3);
        size_t n = 0;
        char *msg = (char *)tu_read_file(err_path, &n);
        msg = realloc(msg, n + 1);
        msg[n] = '\0';
        if (strstr(msg, cases[k].want) == NULL)
            fail_msg("case %zu: expected '%s' in: %s", k, cases[k].want, msg);
        assert_false(tu_file_exists(out));
        free(msg);
        free(err_path);
        free(out);
        free(dir);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope_freqs_values),
        cmocka_unit_test(test_rope_freqs_never_quantized),
        cmocka_unit_test(test_gguf_ppl_equals_hf),
        cmocka_unit_test(test_bad_llama3_config),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, teardown);
}
