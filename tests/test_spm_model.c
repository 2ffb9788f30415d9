/* tests/test_spm_model.c: SentencePiece tokenizer.model (tokenizer/tok_spm_model.h) and the
 * GGUF "llama" vocabulary `dsq quantize` writes from it (gguf_export/gguf_vocab.h).
 *
 * Where the expected values come from:
 *  - the model is hand-encoded below in protobuf wire format, every field commented with its
 *    tag byte ((field_number << 3) | wire_type), from google/sentencepiece's
 *    src/sentencepiece_model.proto: ModelProto pieces = 1, trainer_spec = 2,
 *    normalizer_spec = 3; SentencePiece piece = 1 (string), score = 2 (float),
 *    type = 3 (enum: NORMAL 1 UNKNOWN 2 CONTROL 3 USER_DEFINED 4 UNUSED 5 BYTE 6);
 *    TrainerSpec model_type = 3, vocab_size = 4, byte_fallback = 35, unk_id = 40,
 *    bos_id = 41, eos_id = 42, pad_id = 43; NormalizerSpec add_dummy_prefix = 3,
 *    remove_extra_whitespaces = 4, escape_whitespaces = 5. The floats are IEEE-754 single
 *    little-endian (-1.0 = bf800000, -1.5 = bfc00000, -2.0 = c0000000). So the parsed values
 *    are read off the bytes, not taken from dsq.
 *  - the GGUF keys: llama.cpp convert_hf_to_gguf.py of the Feb-2025 snapshot (c392e50),
 *    _create_vocab_sentencepiece / _set_vocab_sentencepiece / LlamaModel.set_vocab, and
 *    gguf-py SpecialVocab: tokens padded to config.json's vocab_size (1024 for the tiny llama)
 *    with "[PAD<id>]" at score -10000 and type UNUSED 5; the model's types kept for UNKNOWN,
 *    CONTROL, UNUSED and BYTE, NORMAL for the rest (USER_DEFINED included); added_tokens.json
 *    and added_tokens_decoder entries at score -1000; special ids from tokenizer.json's
 *    added_tokens (via tokenizer_config.json) and config.json only.
 *  - the encoding check works by the SentencePiece merge rule by hand (tok_spm.c states it).
 *  - the corrupt inputs are each one defect of the wire format or of the model; a model with
 *    more pieces than vocab_size fails as the converter does (IndexError). A llama checkpoint
 *    whose only tokenizer is a Llama-2 style tokenizer.json is tests/test_llama_hf_vocab.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/quantize_gguf.h"
#include "formats/gguf.h"
#include "tests/testutil.h"
#include "tokenizer/tok_spm_model.h"
#include "tokenizer/tokenizer.h"

#define LLAMA "data/tiny-models/tiny-llama"

/* A 9-piece BPE model. "\xe2\x96\x81" is U+2581, SentencePiece's space. */
static const uint8_t small_model[] = {
    /* piece 0: 0a = pieces (1, len), 14 bytes */
    0x0a, 0x0e,
    0x0a, 0x05, '<', 'u', 'n', 'k', '>', /* 0a piece (1, len) "<unk>" */
    0x15, 0x00, 0x00, 0x00, 0x00,        /* 15 score (2, fixed32) 0.0 */
    0x18, 0x02,                          /* 18 type (3, varint) UNKNOWN */
    /* piece 1: "<s>" 0.0 CONTROL */
    0x0a, 0x0c, 0x0a, 0x03, '<', 's', '>', 0x15, 0x00, 0x00, 0x00, 0x00, 0x18, 0x03,
    /* piece 2: "</s>" 0.0 CONTROL */
    0x0a, 0x0d, 0x0a, 0x04, '<', '/', 's', '>', 0x15, 0x00, 0x00, 0x00, 0x00, 0x18, 0x03,
    /* piece 3: "<0x41>" 0.0 BYTE */
    0x0a, 0x0f, 0x0a, 0x06, '<', '0', 'x', '4', '1', '>', 0x15, 0x00, 0x00, 0x00, 0x00,
    0x18, 0x06,
    /* piece 4: U+2581 -1.0 NORMAL (type given explicitly) */
    0x0a, 0x0c, 0x0a, 0x03, 0xe2, 0x96, 0x81, 0x15, 0x00, 0x00, 0x80, 0xbf, 0x18, 0x01,
    /* piece 5: "a" -2.0, no type field: NORMAL by the proto default */
    0x0a, 0x08, 0x0a, 0x01, 'a', 0x15, 0x00, 0x00, 0x00, 0xc0,
    /* piece 6: U+2581 "a" -1.5, no type */
    0x0a, 0x0b, 0x0a, 0x04, 0xe2, 0x96, 0x81, 'a', 0x15, 0x00, 0x00, 0xc0, 0xbf,
    /* piece 7: "<x>" 0.0 USER_DEFINED */
    0x0a, 0x0c, 0x0a, 0x03, '<', 'x', '>', 0x15, 0x00, 0x00, 0x00, 0x00, 0x18, 0x04,
    /* piece 8: "<pad>" 0.0 UNUSED */
    0x0a, 0x0e, 0x0a, 0x05, '<', 'p', 'a', 'd', '>', 0x15, 0x00, 0x00, 0x00, 0x00, 0x18, 0x05,
    /* 12 = trainer_spec (2, len), 45 bytes */
    0x12, 0x2d,
    0x0a, 0x0a, 'c', 'o', 'r', 'p', 'u', 's', '.', 't', 'x', 't', /* 0a input (1): skipped */
    0x55, 0x3b, 0xdf, 0x7f, 0x3f, /* 55 character_coverage (10, fixed32): skipped */
    0x18, 0x02,                   /* 18 model_type (3) BPE */
    0x20, 0x09,                   /* 20 vocab_size (4) 9 */
    0x98, 0x02, 0x01,             /* 98 02 = varint 280 = byte_fallback (35, varint): true */
    0xc0, 0x02, 0x00,             /* c0 02 = 320 = unk_id (40): 0 */
    0xc8, 0x02, 0x01,             /* c8 02 = 328 = bos_id (41): 1 */
    0xd0, 0x02, 0x02,             /* d0 02 = 336 = eos_id (42): 2 */
    0xd8, 0x02,                   /* d8 02 = 344 = pad_id (43): -1, sign-extended to 10 bytes */
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    /* 1a = normalizer_spec (3, len), 16 bytes */
    0x1a, 0x10,
    0x0a, 0x08, 'i', 'd', 'e', 'n', 't', 'i', 't', 'y', /* 0a name (1): skipped */
    0x18, 0x00, /* 18 add_dummy_prefix (3): false (the default is true) */
    0x20, 0x01, /* 20 remove_extra_whitespaces (4): true */
    0x28, 0x01, /* 28 escape_whitespaces (5): true */
    /* 22 = self_test_data (4, len): an unknown message to the reader, skipped whole */
    0x22, 0x0b, 0x0a, 0x09, 0x0a, 0x01, 'a', 0x12, 0x04, 0xe2, 0x96, 0x81, 'a',
    /* 79 = field 15, fixed64: not in the schema, skipped by its wire type */
    0x79, 1, 2, 3, 4, 5, 6, 7, 8,
};

static const char *const small_pieces[9] = {
    "<unk>", "<s>", "</s>", "<0x41>", "\xe2\x96\x81", "a", "\xe2\x96\x81\x61" /* "a" */, "<x>",
    "<pad>"};
static const float small_scores[9] = {0, 0, 0, 0, -1.0f, -2.0f, -1.5f, 0, 0};
static const int32_t small_types[9] = {2, 3, 3, 6, 1, 1, 1, 4, 5};

static dsq_spm_model *parse_ok(const uint8_t *p, size_t n) {
    dsq_spm_model *m = NULL;
    dsq_err err = {0};
    if (dsq_spm_model_parse(&m, p, n, "test.model", &err) != DSQ_OK)
        fail_msg("parse: %s", err.text);
    return m;
}

static void test_parse_small(void **state) {
    (void)state;
    dsq_spm_model *m = parse_ok(small_model, sizeof small_model);
    assert_int_equal(m->n, 9);
    for (size_t i = 0; i < 9; i++) {
        assert_string_equal(m->pieces[i], small_pieces[i]);
        assert_int_equal(m->piece_lens[i], strlen(small_pieces[i]));
        assert_true(m->scores[i] == small_scores[i]);
        assert_int_equal(m->types[i], small_types[i]);
    }
    assert_int_equal(m->model_type, DSQ_SPM_BPE);
    assert_int_equal(m->vocab_size, 9);
    assert_int_equal(m->byte_fallback, 1);
    assert_int_equal(m->unk_id, 0);
    assert_int_equal(m->bos_id, 1);
    assert_int_equal(m->eos_id, 2);
    assert_int_equal(m->pad_id, -1);
    assert_int_equal(m->add_dummy_prefix, 0);
    assert_int_equal(m->remove_extra_whitespaces, 1);
    assert_int_equal(m->escape_whitespaces, 1);
    dsq_spm_model_free(m);
}

/* A model of one piece and nothing else takes every proto default. */
static void test_defaults(void **state) {
    (void)state;
    static const uint8_t one[] = {0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02};
    dsq_spm_model *m = parse_ok(one, sizeof one);
    assert_int_equal(m->n, 1);
    assert_true(m->scores[0] == 0.0f);
    assert_int_equal(m->model_type, DSQ_SPM_UNIGRAM);
    assert_int_equal(m->vocab_size, 8000);
    assert_int_equal(m->unk_id, 0);
    assert_int_equal(m->bos_id, 1);
    assert_int_equal(m->eos_id, 2);
    assert_int_equal(m->pad_id, -1);
    assert_int_equal(m->byte_fallback, 0);
    assert_int_equal(m->add_dummy_prefix, 1);
    dsq_spm_model_free(m);
}

/* The SPM tokenizer built from the parsed arrays. "a a" with the dummy prefix switched on
 * by hand (this model turns it off) is U+2581 a U+2581 a: the pair U+2581+a (score -1.5) is
 * the only pair that is a token; the leftmost merges first, then the second: [6, 6], after
 * bos 1. */
static void test_tokenizer_from_model(void **state) {
    (void)state;
    dsq_spm_model *m = parse_ok(small_model, sizeof small_model);
    dsq_spm_vocab v;
    dsq_spm_model_vocab(m, &v);
    assert_int_equal(v.add_space_prefix, 0);
    assert_int_equal(v.bos_id, 1);
    assert_int_equal(v.eos_id, 2);
    assert_int_equal(v.unk_id, 0);
    v.add_space_prefix = 1;
    dsq_tokenizer *tok = NULL;
    dsq_err err = {0};
    if (dsq_tokenizer_from_spm_arrays(&tok, &v, &err) != DSQ_OK)
        fail_msg("tokenizer: %s", err.text);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(dsq_tokenizer_encode(tok, "a a", 3, 1, &ids, &n, &err), DSQ_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 6);
    assert_int_equal(ids[2], 6);
    free(ids);
    dsq_tokenizer_free(tok);
    dsq_spm_model_free(m);
}

/* The same from a file, with the model's own add_dummy_prefix = false: "a a" is a U+2581 a;
 * "a" + U+2581 is no token, U+2581 + "a" is: [5, 6] after bos 1. */
static void test_tokenizer_from_file(void **state) {
    (void)state;
    char *dir = tu_mkdtemp(), *path = malloc(strlen(dir) + 32);
    sprintf(path, "%s/tokenizer.model", dir);
    tu_write_file(path, small_model, sizeof small_model);
    dsq_tokenizer *tok = NULL;
    dsq_err err = {0};
    if (dsq_tokenizer_from_spm_model(&tok, path, &err) != DSQ_OK)
        fail_msg("tokenizer: %s", err.text);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(dsq_tokenizer_encode(tok, "a a", 3, 1, &ids, &n, &err), DSQ_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 5);
    assert_int_equal(ids[2], 6);
    free(ids);
    dsq_tokenizer_free(tok);
    tu_rm_rf(dir);
    free(path);
    free(dir);
}

/* ---- corrupt inputs: each one defect, each its own error ---------------------------------- */

typedef struct bad_case {
    const char *what;
    uint8_t bytes[24];
    size_t n;
    dsq_status code;
    const char *msg; /* a substring of the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"empty file", {0}, 0, DSQ_FORMAT, "no pieces"},
    {"truncated tag varint", {0x80}, 1, DSQ_FORMAT, "varint truncated"},
    {"truncated length varint", {0x0a, 0x80}, 2, DSQ_FORMAT, "varint truncated"},
    {"varint of 11 bytes", {0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                            0x01}, 12, DSQ_FORMAT, "overflows 64 bits"},
    {"varint over 64 bits", {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
     11, DSQ_FORMAT, "overflows 64 bits"},
    {"length past the end", {0x0a, 0x05, 0x0a, 0x01, 'x'}, 5, DSQ_FORMAT, "runs past the end"},
    {"huge length (2^64-1)", {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
     11, DSQ_FORMAT, "runs past the end"},
    {"inner length past its message", {0x0a, 0x03, 0x0a, 0x05, 'x', 'y', 'z'}, 7, DSQ_FORMAT,
     "runs past the end"},
    {"pieces as fixed32", {0x0d, 0, 0, 0, 0}, 5, DSQ_FORMAT, "ModelProto.pieces has wire type"},
    {"score as varint", {0x0a, 0x05, 0x0a, 0x01, 'x', 0x10, 0x01}, 7, DSQ_FORMAT,
     "SentencePiece.score has wire type varint"},
    {"trainer_spec as varint", {0x10, 0x01}, 2, DSQ_FORMAT, "ModelProto.trainer_spec"},
    {"truncated fixed32 score", {0x0a, 0x05, 0x0a, 0x01, 'x', 0x15, 0x00}, 7, DSQ_FORMAT,
     "fixed32 truncated"},
    {"truncated fixed64", {0x79, 1, 2, 3}, 4, DSQ_FORMAT, "fixed64 truncated"},
    {"group wire type (field 9)", {0x4b}, 1, DSQ_UNSUPPORTED, "group"},
    {"wire type 7 (field 9)", {0x4f}, 1, DSQ_FORMAT, "invalid wire type 7"},
    {"field number 0", {0x02, 0x00}, 2, DSQ_FORMAT, "field number 0"},
    {"unk_id of 2^32", {0x12, 0x07, 0xc0, 0x02, 0x80, 0x80, 0x80, 0x80, 0x10}, 9, DSQ_FORMAT,
     "does not fit an int32"},
    {"piece type 7", {0x0a, 0x05, 0x0a, 0x01, 'x', 0x18, 0x07}, 7, DSQ_FORMAT,
     "not a SentencePiece type"},
    {"empty piece", {0x0a, 0x02, 0x18, 0x02}, 4, DSQ_FORMAT, "is empty"},
    {"NUL in a piece", {0x0a, 0x07, 0x0a, 0x03, 'a', 0, 'b', 0x18, 0x02}, 9, DSQ_FORMAT,
     "NUL byte"},
    {"no UNKNOWN piece", {0x0a, 0x03, 0x0a, 0x01, 'x'}, 5, DSQ_FORMAT, "0 pieces of type UNKNOWN"},
    {"two UNKNOWN pieces",
     {0x0a, 0x05, 0x0a, 0x01, 'x', 0x18, 0x02, 0x0a, 0x05, 0x0a, 0x01, 'y', 0x18, 0x02}, 14,
     DSQ_FORMAT, "2 pieces of type UNKNOWN"},
    {"duplicate piece", {0x0a, 0x05, 0x0a, 0x01, 'x', 0x18, 0x02, 0x0a, 0x03, 0x0a, 0x01, 'x'},
     12, DSQ_FORMAT, "piece 1 'x' duplicates piece 0"},
    {"BYTE piece not <0xXX>",
     {0x0a, 0x05, 0x0a, 0x01, 'x', 0x18, 0x02, 0x0a, 0x05, 0x0a, 0x01, 'b', 0x18, 0x06}, 14,
     DSQ_FORMAT, "has type BYTE"},
    {"model_type 9", {0x0a, 0x05, 0x0a, 0x01, 'x', 0x18, 0x02, 0x12, 0x02, 0x18, 0x09}, 11,
     DSQ_FORMAT, "model_type 9"},
};

static void test_corrupt(void **state) {
    (void)state;
    for (size_t k = 0; k < sizeof bad_cases / sizeof bad_cases[0]; k++) {
        const bad_case *c = &bad_cases[k];
        dsq_spm_model *m = (dsq_spm_model *)1;
        dsq_err err = {0};
        /* an exactly sized heap copy, so ASan sees any read past the end */
        uint8_t *copy = malloc(c->n ? c->n : 1);
        memcpy(copy, c->bytes, c->n);
        const dsq_status st = dsq_spm_model_parse(&m, copy, c->n, "bad.model", &err);
        free(copy);
        if (st != c->code || strstr(err.text, c->msg) == NULL)
            fail_msg("%s: got %s '%s', want %s containing '%s'", c->what, dsq_status_name(st),
                     err.text, dsq_status_name(c->code), c->msg);
        assert_null(m);
    }
    /* a file that does not exist */
    dsq_spm_model *m = NULL;
    dsq_err err = {0};
    assert_int_not_equal(dsq_spm_model_load(&m, "/nonexistent/tokenizer.model", &err), DSQ_OK);
    assert_null(m);
}

/* Every truncation of the valid model is rejected or parses, never reads out of bounds. */
static void test_every_truncation(void **state) {
    (void)state;
    for (size_t n = 0; n < sizeof small_model; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, small_model, n);
        dsq_spm_model *m = NULL;
        dsq_err err = {0};
        if (dsq_spm_model_parse(&m, copy, n, "cut.model", &err) != DSQ_OK)
            assert_true(err.text[0] != '\0');
        dsq_spm_model_free(m);
        free(copy);
    }
}

/* ---- dsq quantize of the tiny llama with this tokenizer.model ----------------------------- */


/* A checkpoint directory: the tiny llama's config.json and weights plus small_model. */
static char *make_ckpt(const char *name) {
    char *dir = tu_join(tu_group_dir, name), *rel = tu_shared_path(LLAMA);
    /* absolute, so the weights' symlink does not depend on the working directory */
    char *src_dir = realpath(rel, NULL);
    assert_non_null(src_dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/config.json' '%s/' && "
             "ln -s '%s/model.safetensors' '%s/'", dir, src_dir, dir, src_dir, dir);
    assert_int_equal(tu_system(cmd), 0);
    free(rel);
    tu_put(dir, "tokenizer.model", small_model, sizeof small_model);
    free(src_dir);
    return dir;
}

static dsq_gguf *quantize_open(const char *dir, char **out_path) {
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    o.type = "Q8_0";
    o.threads = 2;
    dsq_qz_summary s;
    dsq_err err = {0};
    *out_path = tu_join(dir, "out.gguf");
    if (dsq_quantize_gguf(dir, *out_path, &o, &s, &err) != DSQ_OK)
        fail_msg("quantize %s: %s", dir, err.text);
    dsq_qz_summary_free(&s);
    dsq_gguf *g = NULL;
    if (dsq_gguf_open(&g, *out_path, &err) != DSQ_OK)
        fail_msg("open: %s", err.text);
    return g;
}

static void str_at(const dsq_gguf_val *arr, uint64_t i, char *buf, size_t size) {
    dsq_gguf_val e;
    const char *s;
    size_t len;
    assert_int_equal(dsq_gguf_val_at(arr, i, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_str(&e, &s, &len, NULL), DSQ_OK);
    assert_true(len < size);
    memcpy(buf, s, len);
    buf[len] = '\0';
}

/* The tokenizer.* keys in file order. */
static void check_key_order(const dsq_gguf *g, const char *const *want, size_t n) {
    size_t k = 0;
    for (int64_t i = 0; i < dsq_gguf_kv_count(g); i++) {
        const char *key = dsq_gguf_kv_key(g, i);
        if (strncmp(key, "tokenizer.", 10) != 0)
            continue;
        if (k >= n || strcmp(key, want[k]) != 0)
            fail_msg("tokenizer key %zu is %s, want %s", k, key, k < n ? want[k] : "(none)");
        k++;
    }
    assert_int_equal(k, n);
}

/* Expected token text, score and type of id i, for ids no file other than the model sets. */
static void expect_token(const dsq_gguf_val *toks, const float *scores, const int32_t *types,
                         uint64_t i, const char *text, float score, int32_t type) {
    char buf[64];
    str_at(toks, i, buf, sizeof buf);
    if (strcmp(buf, text) != 0 || scores[i] != score || types[i] != type)
        fail_msg("token %llu: '%s' %g %d, want '%s' %g %d", (unsigned long long)i, buf,
                 (double)scores[i], (int)types[i], text, (double)score, (int)type);
}

static void get_arrays(const dsq_gguf *g, dsq_gguf_val *toks, float **scores, int32_t **types) {
    dsq_gguf_val sv, tv;
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.tokens", DSQ_GGUF_STRING, toks, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.scores", DSQ_GGUF_FLOAT32, &sv, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, &tv, NULL),
                     DSQ_OK);
    assert_int_equal(toks->n, 1024);
    assert_int_equal(sv.n, 1024);
    assert_int_equal(tv.n, 1024);
    *scores = malloc(1024 * sizeof **scores);
    *types = malloc(1024 * sizeof **types);
    memcpy(*scores, sv.data, 1024 * sizeof **scores); /* little-endian host */
    memcpy(*types, tv.data, 1024 * sizeof **types);
}

static void check_str(const dsq_gguf *g, const char *key, const char *want) {
    const char *s;
    size_t len;
    assert_int_equal(dsq_gguf_get_str(g, key, &s, &len, NULL), DSQ_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(s, want, len);
}

static void check_u32(const dsq_gguf *g, const char *key, uint32_t want) {
    uint32_t v = 0;
    if (dsq_gguf_get_u32(g, key, &v, NULL) != DSQ_OK)
        fail_msg("%s missing or not u32", key);
    assert_int_equal(v, want);
}

static void check_bool(const dsq_gguf *g, const char *key, bool want) {
    bool v = !want;
    if (dsq_gguf_get_bool(g, key, &v, NULL) != DSQ_OK)
        fail_msg("%s missing or not bool", key);
    assert_int_equal(v, want);
}

/* tokenizer.model beside config.json only: the pieces, then [PAD9] .. [PAD1023]; bos and eos
 * from config.json (bos_token_id 0, eos_token_id 1: the converter never asks the model), no
 * unknown id (no tokenizer.json), no add_* flags (no tokenizer_config.json). */
static void test_quantize_spm_plain(void **state) {
    (void)state;
    char *dir = make_ckpt("plain"), *out = NULL;
    dsq_gguf *g = quantize_open(dir, &out);
    check_str(g, "tokenizer.ggml.model", "llama");
    check_str(g, "tokenizer.ggml.pre", "default");
    dsq_gguf_val toks;
    float *scores;
    int32_t *types;
    get_arrays(g, &toks, &scores, &types);
    /* the model's types, USER_DEFINED (piece 7) written as NORMAL */
    static const int32_t gguf_types[9] = {2, 3, 3, 6, 1, 1, 1, 1, 5};
    for (uint64_t i = 0; i < 9; i++)
        expect_token(&toks, scores, types, i, small_pieces[i], small_scores[i], gguf_types[i]);
    for (uint64_t i = 9; i < 1024; i++) {
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)i);
        expect_token(&toks, scores, types, i, pad, -10000.0f, 5);
    }
    check_u32(g, "tokenizer.ggml.bos_token_id", 0);
    check_u32(g, "tokenizer.ggml.eos_token_id", 1);
    static const char *const order[] = {
        "tokenizer.ggml.model",      "tokenizer.ggml.pre",         "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores",     "tokenizer.ggml.token_type",  "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id"};
    check_key_order(g, order, sizeof order / sizeof order[0]);
    assert_true(dsq_gguf_find_key(g, "tokenizer.ggml.merges") < 0);
    free(scores);
    free(types);
    dsq_gguf_close(g);
    free(out);
    free(dir);
}

/* With a tokenizer.json (which still loses to tokenizer.model for llama), tokenizer_config.json
 * and added_tokens.json:
 *   bos/eos/unk from tokenizer_config's <typ>_token found in tokenizer.json's added_tokens
 *     (1, 2, 0), ahead of config.json (bos 0, eos 1); pad_token "<pad>" is not among the
 *     added tokens and config.json's pad_token_id is null: no padding id;
 *   added_tokens.json "<extra>": 9 -> USER_DEFINED -1000; "<far>": 5000 >= 1024 ignored;
 *   added_tokens_decoder "8" <pad> special -> CONTROL -1000; "10" "<|im|>" not special but
 *     special-looking -> CONTROL; "11" U+2581 "hi" -> USER_DEFINED " hi";
 *   add_bos_token true, add_eos_token false, add_prefix_space false -> add_space_prefix. */
static void test_quantize_spm_with_json(void **state) {
    (void)state;
    char *dir = make_ckpt("json"), *out = NULL;
    tu_put_str(dir, "tokenizer.json",
            "{\"version\":\"1.0\",\"added_tokens\":["
            "{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
            "{\"id\":1,\"content\":\"<s>\",\"special\":true},"
            "{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
            "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}");
    tu_put_str(dir, "tokenizer_config.json",
            "{\"add_bos_token\":true,\"add_eos_token\":false,\"add_prefix_space\":false,"
            "\"bos_token\":\"<s>\",\"eos_token\":{\"content\":\"</s>\"},\"unk_token\":\"<unk>\","
            "\"pad_token\":\"<pad>\",\"added_tokens_decoder\":{"
            "\"8\":{\"content\":\"<pad>\",\"special\":true},"
            "\"10\":{\"content\":\"<|im|>\",\"special\":false},"
            "\"11\":{\"content\":\"\xe2\x96\x81hi\",\"special\":false}}}");
    tu_put_str(dir, "added_tokens.json", "{\"<extra>\": 9, \"<far>\": 5000}");
    dsq_gguf *g = quantize_open(dir, &out);
    check_str(g, "tokenizer.ggml.model", "llama");
    dsq_gguf_val toks;
    float *scores;
    int32_t *types;
    get_arrays(g, &toks, &scores, &types);
    expect_token(&toks, scores, types, 0, "<unk>", 0.0f, 2);
    expect_token(&toks, scores, types, 7, "<x>", 0.0f, 1);
    expect_token(&toks, scores, types, 8, "<pad>", -1000.0f, 3);
    expect_token(&toks, scores, types, 9, "<extra>", -1000.0f, 4);
    expect_token(&toks, scores, types, 10, "<|im|>", -1000.0f, 3);
    expect_token(&toks, scores, types, 11, " hi", -1000.0f, 4);
    expect_token(&toks, scores, types, 12, "[PAD12]", -10000.0f, 5);
    expect_token(&toks, scores, types, 1023, "[PAD1023]", -10000.0f, 5);
    check_u32(g, "tokenizer.ggml.bos_token_id", 1);
    check_u32(g, "tokenizer.ggml.eos_token_id", 2);
    check_u32(g, "tokenizer.ggml.unknown_token_id", 0);
    check_bool(g, "tokenizer.ggml.add_bos_token", true);
    check_bool(g, "tokenizer.ggml.add_eos_token", false);
    check_bool(g, "tokenizer.ggml.add_space_prefix", false);
    static const char *const order[] = {
        "tokenizer.ggml.model",          "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",         "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",     "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",   "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.add_bos_token",  "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_space_prefix"};
    check_key_order(g, order, sizeof order / sizeof order[0]);
    free(scores);
    free(types);
    dsq_gguf_close(g);
    free(out);
    free(dir);
}

/* A broken tokenizer.model stops the quantization with the reader's message. */
static void test_quantize_spm_corrupt(void **state) {
    (void)state;
    char *dir = make_ckpt("corrupt"), *out = tu_join(dir, "out.gguf");
    tu_put(dir, "tokenizer.model", small_model, 37); /* cut inside piece 2 */
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    o.type = "Q8_0";
    o.threads = 2;
    dsq_qz_summary s;
    dsq_err err = {0};
    assert_int_equal(dsq_quantize_gguf(dir, out, &o, &s, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "tokenizer.model"));
    assert_false(tu_file_exists(out));
    free(out);
    free(dir);
}

/* More pieces than config.json's vocab_size (1024): the converter fails (IndexError), so
 * does dsq, naming both numbers. The 1025 pieces are "<unk>" (UNKNOWN) and "p0" .. "p1023",
 * each `0a len 0a n text` with no score or type. */
static void test_quantize_spm_too_many_pieces(void **state) {
    (void)state;
    char *dir = make_ckpt("toomany"), *out = tu_join(dir, "out.gguf");
    uint8_t *buf = malloc(16 * 1025), *q = buf;
    const uint8_t unk[] = {0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02};
    memcpy(q, unk, sizeof unk);
    q += sizeof unk;
    for (int i = 0; i < 1024; i++) {
        char t[8];
        const int n = snprintf(t, sizeof t, "p%d", i);
        *q++ = 0x0a;                /* pieces (1, len) */
        *q++ = (uint8_t)(n + 2);    /* < 128: one varint byte */
        *q++ = 0x0a;                /* piece (1, len) */
        *q++ = (uint8_t)n;
        memcpy(q, t, (size_t)n);
        q += n;
    }
    tu_put(dir, "tokenizer.model", buf, (size_t)(q - buf));
    free(buf);
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    o.type = "Q8_0";
    dsq_qz_summary s;
    dsq_err err = {0};
    assert_int_equal(dsq_quantize_gguf(dir, out, &o, &s, &err), DSQ_FORMAT);
    if (strstr(err.text, "1025 pieces, more than config.json's vocab_size 1024") == NULL)
        fail_msg("message: %s", err.text);
    free(out);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_small),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_tokenizer_from_model),
        cmocka_unit_test(test_tokenizer_from_file),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_quantize_spm_plain),
        cmocka_unit_test(test_quantize_spm_with_json),
        cmocka_unit_test(test_quantize_spm_corrupt),
        cmocka_unit_test(test_quantize_spm_too_many_pieces),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, tu_group_dir_teardown);
}
