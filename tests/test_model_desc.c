/* tests/test_model_desc.c: the model description (model/model_desc.h), the HF<->GGUF name
 * table (model/tensor_names.h) and the tokenizer-file description (tokenizer/tok_hf_files.h).
 *
 * Where the expected values come from:
 *  - config.json members: the JSON text itself (what it says, with its JSON type), and the
 *    block-size rule dsq convert documents (README: 128x128 when the config has none).
 *  - Tensor names: llama.cpp's gguf-py (constants.py MODEL_TENSOR names, tensor_mapping.py
 *    HF names), e.g. blk.{bid}.ffn_up_exps <- model.layers.{bid}.mlp.experts.{xid}.up_proj.
 *  - Added-token ids: Hugging Face tokenizers' AddedVocabulary: a content already in the
 *    vocabulary keeps its id, a new one takes the next id past the vocabulary, a repeated
 *    one the id it got first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model_desc.h"
#include "model/tensor_names.h"
#include "tokenizer/tok_hf_files.h"

static void test_desc_kinds(void **state) {
    (void)state;
    static const char cfg[] =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"rms_norm_eps\": 1e-05,"
        " \"head_dim\": null, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false,"
        " \"eos_token_id\": [1, 2], \"vocab_size\": 64.0, \"rope_scaling\": {\"factor\": 8,"
        " \"rope_type\": \"llama3\"}, \"quantization_config\": 3}";
    dsq_model_desc d;
    dsq_err err = {0};
    assert_int_equal(dsq_model_desc_parse(cfg, strlen(cfg), "c", &d, &err), DSQ_OK);
    assert_string_equal(d.architecture, "LlamaForCausalLM");
    assert_int_equal(d.hidden_size.kind, DSQ_CFG_INT);
    assert_int_equal(d.hidden_size.i, 64);
    assert_int_equal(d.rms_norm_eps.kind, DSQ_CFG_REAL);
    assert_true(d.rms_norm_eps.num == 1e-05);
    assert_int_equal(d.vocab_size.kind, DSQ_CFG_REAL);
    assert_int_equal(d.head_dim.kind, DSQ_CFG_NULL);
    assert_int_equal(d.num_hidden_layers.kind, DSQ_CFG_ABSENT);
    assert_string_equal(d.hidden_act.str, "silu");
    assert_int_equal(d.tie_word_embeddings.kind, DSQ_CFG_FALSE);
    assert_int_equal(d.eos_token_id.kind, DSQ_CFG_ARRAY);
    assert_int_equal(d.rope_scaling.kind, DSQ_CFG_OBJECT);
    assert_int_equal(d.rs.factor.kind, DSQ_CFG_INT);
    assert_string_equal(d.rs.factor.where, "rope_scaling.");
    assert_string_equal(d.rs.rope_type.str, "llama3");
    /* quantization_config is not an object: its members are absent */
    assert_int_equal(d.quantization_config.kind, DSQ_CFG_INT);
    assert_int_equal(d.qc.weight_block_size.kind, DSQ_CFG_ABSENT);
    assert_ptr_equal(dsq_model_desc_get(&d, "hidden_size"), &d.hidden_size);
    assert_null(dsq_model_desc_get(&d, "no_such_member"));
    dsq_model_desc_free(&d);

    assert_int_equal(dsq_model_desc_parse("[1]", 3, "c", &d, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "c: not a JSON object"));
    dsq_model_desc_free(&d);
}

static void test_desc_fp8_block(void **state) {
    (void)state;
    static const struct {
        const char *cfg;
        dsq_status st;
        int64_t rows, cols;
        int found;
    } cases[] = {
        {"{}", DSQ_OK, 128, 128, 0},
        {"{\"quantization_config\": {\"weight_block_size\": [64, 32]}}", DSQ_OK, 64, 32, 1},
        {"{\"quantization_config\": {\"weight_block_size\": null}}", DSQ_FORMAT, 128, 128, 0},
        {"{\"quantization_config\": {\"weight_block_size\": [0, 32]}}", DSQ_FORMAT, 0, 32, 0},
        {"{\"quantization_config\": \"fp8\"}", DSQ_OK, 128, 128, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t r = 0, c = 0;
        int found = -1;
        dsq_err err = {0};
        const dsq_status st = dsq_config_fp8_block(cases[i].cfg, strlen(cases[i].cfg), "c", &r,
                                                   &c, &found, &err);
        if (st != cases[i].st || (st == DSQ_OK && (r != cases[i].rows || c != cases[i].cols ||
                                                   found != cases[i].found)))
            fail_msg("%s: %d %lldx%lld found %d", cases[i].cfg, (int)st, (long long)r,
                     (long long)c, found);
    }
}

static void test_tensor_names(void **state) {
    (void)state;
    const dsq_tname *rows[4];
    int layer = 0, expert = 0;
    char buf[128];
    assert_int_equal(dsq_tname_from_hf("model.layers.3.mlp.experts.17.up_proj.weight", rows, 4,
                                       &layer, &expert),
                     1);
    assert_int_equal(rows[0]->form, DSQ_TNAME_EXPERTS);
    assert_int_equal(layer, 3);
    assert_int_equal(expert, 17);
    dsq_tname_format(buf, sizeof buf, rows[0]->gguf, layer, expert);
    assert_string_equal(buf, "blk.3.ffn_up_exps.weight");

    assert_int_equal(dsq_tname_from_hf("model.layers.0.self_attn.kv_b_proj.weight", rows, 4,
                                       &layer, &expert),
                     3);
    assert_int_equal(rows[0]->form, DSQ_TNAME_KV_B);
    assert_int_equal(rows[1]->form, DSQ_TNAME_K_B);
    assert_int_equal(rows[2]->form, DSQ_TNAME_V_B);
    dsq_tname_format(buf, sizeof buf, rows[2]->gguf, layer, 0);
    assert_string_equal(buf, "blk.0.attn_v_b.weight");

    assert_int_equal(dsq_tname_from_hf("lm_head.weight", rows, 4, &layer, &expert), 1);
    assert_string_equal(rows[0]->gguf, "output.weight");
    assert_int_equal(layer, -1);
    /* not the converter's spelling of a layer number, or no such tensor */
    assert_int_equal(dsq_tname_from_hf("model.layers.03.input_layernorm.weight", rows, 4, &layer,
                                       &expert),
                     0);
    assert_int_equal(dsq_tname_from_hf("model.layers.1.input_layernorm.bias", rows, 4, &layer,
                                       &expert),
                     0);
    /* the formatter cuts and says how long the name would have been */
    assert_int_equal(dsq_tname_format(buf, 8, "blk.%d.attn_q.weight", 12, 0), 20);
    assert_string_equal(buf, "blk.12.");
}

static void test_added_token_ids(void **state) {
    (void)state;
    char dir[] = "/tmp/dsq-test-model-desc.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2},"
          " \"merges\": [\"a b\", [\"a b\", \"c\"], 7]},"
          " \"added_tokens\": [{\"id\": 3, \"content\": \"<x>\", \"special\": true},"
          " {\"id\": 1, \"content\": \"b\"}, {\"id\": 9, \"content\": \"<y>\"},"
          " {\"id\": 3, \"content\": \"<x>\"}]}",
          f);
    assert_int_equal(fclose(f), 0);
    dsq_hf_tokjson *t = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_hf_tokjson_load(dir, &t, &err), DSQ_OK);
    assert_non_null(t);
    assert_string_equal(t->model_type, "BPE");
    assert_int_equal(t->n_vocab, 3);
    assert_string_equal(t->vocab[2].text, "c");
    assert_int_equal(t->n_added, 4);
    assert_true(t->added[0].special);
    assert_int_equal(dsq_hf_tokjson_token_id(t, "<x>"), 3);
    assert_int_equal(dsq_hf_tokjson_token_id(t, "b"), 1);
    assert_int_equal(dsq_hf_tokjson_token_id(t, "<y>"), 4); /* not the 9 it states */
    assert_int_equal(dsq_hf_tokjson_token_id(t, "<z>"), -1);
    assert_int_equal(t->n_merges, 3);
    assert_string_equal(t->merges[0].text, "a b");
    assert_string_equal(t->merges[1].left, "a b");
    assert_null(t->merges[2].text);
    assert_null(t->merges[2].left);
    dsq_hf_tokjson_free(t);
    unlink(path);
    assert_int_equal(dsq_hf_tokjson_load(dir, &t, &err), DSQ_OK); /* no file: no description */
    assert_null(t);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_desc_kinds),
        cmocka_unit_test(test_desc_fp8_block),
        cmocka_unit_test(test_tensor_names),
        cmocka_unit_test(test_added_token_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
