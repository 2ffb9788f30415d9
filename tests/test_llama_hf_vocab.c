/* tests/test_llama_hf_vocab.c: `dsq quantize` of a llama whose only tokenizer is a Llama-2
 * style tokenizer.json (gguf_export/gguf_vocab.h, the converter's LlamaHfVocab case).
 *
 * Where the expected values come from:
 *  - the rules, from llama.cpp's Feb-2025 snapshot (gguf-py/gguf/vocab.py LlamaHfVocab,
 *    convert_hf_to_gguf.py _set_vocab_llama_hf / LlamaModel.set_vocab), with what
 *    transformers and tokenizers do underneath (AutoTokenizer -> LlamaTokenizerFast, whose
 *    bos/eos/unk default to <s>, </s>, <unk>; tokenizers gives an added token the id of its
 *    content in the vocabulary, else the next id past it):
 *      tokens   model.vocab in id order, then the added tokens past the vocabulary; never
 *               padded to config.json's vocab_size
 *      scores   -1000 for every token (LlamaHfVocab.get_token_score is a placeholder)
 *      types    <0xXX> BYTE 6; else CONTROL 3 when the id is one of transformers'
 *               all_special_ids (bos/eos/unk/sep/pad/cls/mask and additional_special_tokens
 *               named by tokenizer_config.json); else NORMAL 1; added tokens past the
 *               vocabulary CONTROL when special in that sense, else USER_DEFINED 4, their
 *               text as is (no U+2581 -> ' ')
 *      keys     tokenizer.ggml.model "llama", pre "default", tokens, scores, token_type,
 *               then SpecialVocab(n_vocab = number of tokens): special ids, add_bos/add_eos,
 *               chat_template; no merges
 *  - the real vocabulary: stories260K.gguf's 512-piece SentencePiece vocabulary (SOURCE.txt:
 *    llama.cpp's llama2.c converter). The test writes the tokenizer.json transformers'
 *    LlamaConverter (convert_slow_tokenizer.py, SpmConverter for a BPE model) would make from
 *    it: vocab in piece order, merges by generate_merges (each piece split where both halves
 *    are pieces, ordered by the piece's score, then the halves' lengths, descending),
 *    byte_fallback, fuse_unk, normalizer Prepend U+2581 + Replace ' ' -> U+2581,
 *    pre_tokenizer null, decoder Sequence [Replace, ByteFallback, Fuse, Strip], and a
 *    tokenizer.model (protobuf, as tests/test_spm_model.c spells the wire format) with the same
 *    pieces, scores and types. Weights and config.json are the tiny llama's.
 *  - token ids of "Isaac Arellano holds a candle": printed by llama.cpp's own llama-tokenize
 *    (Feb-2025 build, by hand, outside CI) on the two GGUFs dsq wrote from these two files.
 *    They differ, and that is the converter's doing, not dsq's: with every score -1000
 *    llama.cpp's SentencePiece merge takes the leftmost pair, so "▁candle" becomes
 *    ▁c|an|d|le, where the real scores ("nd" -5 beats "an" -44) give ▁c|a|nd|le.
 *  - each hostile file is one defect; the message must name it on one line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/quantize_gguf.h"
#include "formats/gguf.h"
#include "tests/testutil.h"
#include "tokenizer/tokenizer.h"
#include "verify/model.h"

#define LLAMA "data/tiny-models/tiny-llama"
#define STORIES_GGUF "data/stories260K-gguf/stories260K.gguf"

static void put_json(const char *dir, const char *name, json_t *doc) {
    char *s = json_dumps(doc, JSON_COMPACT);
    assert_non_null(s);
    tu_put_str(dir, name, s);
    free(s);
    json_decref(doc);
}

/* The tiny llama's weights and config.json (vocab_size 1024), its bos/eos ids set to the
 * SentencePiece ones (1, 2) as a Llama-2 config.json has them. No tokenizer yet. */
static char *make_ckpt(const char *name) {
    char *dir = tu_join(tu_group_dir, name), *rel = tu_shared_path(LLAMA);
    char *src_dir = realpath(rel, NULL);
    assert_non_null(src_dir);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && ln -s '%s/model.safetensors' '%s/'", dir,
             src_dir, dir);
    assert_int_equal(tu_system(cmd), 0);
    char *cfg_path = tu_join(src_dir, "config.json");
    json_error_t je;
    json_t *cfg = json_load_file(cfg_path, 0, &je);
    assert_non_null(cfg);
    json_object_set_new(cfg, "bos_token_id", json_integer(1));
    json_object_set_new(cfg, "eos_token_id", json_integer(2));
    put_json(dir, "config.json", cfg);
    free(cfg_path);
    free(rel);
    free(src_dir);
    return dir;
}

/* ---- the real SentencePiece vocabulary ----------------------------------------------------- */

typedef struct {
    size_t n;
    char **pieces;
    float *scores;
    int32_t *types;
} spm_src;

static spm_src load_stories_vocab(void) {
    char *path = tu_shared_path(STORIES_GGUF);
    dsq_gguf *g = tu_gguf_open(path);
    dsq_gguf_val tv, sv, yv, e;
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.tokens", DSQ_GGUF_STRING, &tv, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.scores", DSQ_GGUF_FLOAT32, &sv, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, &yv, NULL),
                     DSQ_OK);
    assert_int_equal(tv.n, 512); /* SOURCE.txt: a 512-token vocabulary */
    spm_src s = {tv.n, calloc(tv.n, sizeof(char *)), malloc(tv.n * sizeof(float)),
                 malloc(tv.n * sizeof(int32_t))};
    for (size_t i = 0; i < s.n; i++) {
        const char *t;
        size_t len;
        assert_int_equal(dsq_gguf_val_at(&tv, i, &e, NULL), DSQ_OK);
        assert_int_equal(dsq_gguf_val_str(&e, &t, &len, NULL), DSQ_OK);
        s.pieces[i] = strndup(t, len);
    }
    memcpy(s.scores, sv.data, s.n * sizeof(float)); /* little-endian host */
    memcpy(s.types, yv.data, s.n * sizeof(int32_t));
    dsq_gguf_close(g);
    free(path);
    return s;
}

static void free_src(spm_src *s) {
    for (size_t i = 0; i < s->n; i++)
        free(s->pieces[i]);
    free(s->pieces);
    free(s->scores);
    free(s->types);
}

/* code points of a UTF-8 string, and the byte offset of each boundary */
static size_t utf8_bounds(const char *s, size_t *off) {
    size_t n = 0;
    for (size_t i = 0; s[i] != '\0'; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            off[n++] = i;
    off[n] = strlen(s);
    return n;
}

typedef struct {
    char *l, *r;
    float score;
    size_t ll, rl, seq; /* lengths in code points; seq keeps the sort stable */
} merge;

/* generate_merges: higher score first, then longer left, then longer right half */
static int merge_cmp(const void *pa, const void *pb) {
    const merge *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    if (a->ll != b->ll)
        return a->ll > b->ll ? -1 : 1;
    if (a->rl != b->rl)
        return a->rl > b->rl ? -1 : 1;
    return a->seq < b->seq ? -1 : 1;
}

static json_t *added_token(int id, const char *content) {
    return json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", id, "content", content,
                     "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
}

/* What LlamaConverter writes for this SentencePiece BPE model (see the top of the file). */
static void write_llama2_tokenizer_json(const char *dir, const spm_src *s) {
    json_t *vocab = json_object();
    for (size_t i = 0; i < s->n; i++)
        json_object_set_new(vocab, s->pieces[i], json_integer((json_int_t)i));
    merge *m = NULL;
    size_t nm = 0, cap = 0, off[64];
    for (size_t i = 0; i < s->n; i++) {
        const size_t ncp = strlen(s->pieces[i]) < 63 ? utf8_bounds(s->pieces[i], off) : 0;
        const size_t first = nm;
        for (size_t k = 1; k < ncp; k++) {
            char *l = strndup(s->pieces[i], off[k]), *r = strdup(s->pieces[i] + off[k]);
            if (json_object_get(vocab, l) == NULL || json_object_get(vocab, r) == NULL) {
                free(l);
                free(r);
                continue;
            }
            if (nm == cap)
                m = realloc(m, (cap = cap ? 2 * cap : 256) * sizeof *m);
            m[nm] = (merge){l, r, s->scores[i], k, ncp - k, nm};
            nm++;
        }
        /* within one piece: by the halves' ids */
        for (size_t a = first; a < nm; a++)
            for (size_t b = a + 1; b < nm; b++) {
                const json_int_t la = json_integer_value(json_object_get(vocab, m[a].l));
                const json_int_t lb = json_integer_value(json_object_get(vocab, m[b].l));
                const json_int_t ra = json_integer_value(json_object_get(vocab, m[a].r));
                const json_int_t rb = json_integer_value(json_object_get(vocab, m[b].r));
                if (lb < la || (lb == la && rb < ra)) {
                    merge t = m[a];
                    m[a] = m[b];
                    m[b] = t;
                    const size_t q = m[a].seq;
                    m[a].seq = m[b].seq;
                    m[b].seq = q;
                }
            }
    }
    qsort(m, nm, sizeof *m, merge_cmp);
    json_t *merges = json_array();
    for (size_t i = 0; i < nm; i++) {
        char *pair = malloc(strlen(m[i].l) + strlen(m[i].r) + 2);
        sprintf(pair, "%s %s", m[i].l, m[i].r);
        json_array_append_new(merges, json_string(pair));
        free(pair);
        free(m[i].l);
        free(m[i].r);
    }
    free(m);
    json_t *tok = json_pack(
        "{s:s,s:n,s:n,s:[o,o,o],"
        "s:{s:s,s:[{s:s,s:s},{s:s,s:{s:s},s:s}]},s:n,s:n,"
        "s:{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s},{s:s,s:s,s:i,s:i}]},"
        "s:{s:s,s:n,s:s,s:n,s:n,s:b,s:b,s:b,s:o,s:o}}",
        "version", "1.0", "truncation", "padding", "added_tokens", added_token(0, "<unk>"),
        added_token(1, "<s>"), added_token(2, "</s>"), "normalizer", "type", "Sequence",
        "normalizers", "type", "Prepend", "prepend", "\xe2\x96\x81", "type", "Replace",
        "pattern", "String", " ", "content", "\xe2\x96\x81", "pre_tokenizer", "post_processor",
        "decoder", "type", "Sequence", "decoders", "type", "Replace", "pattern", "String",
        "\xe2\x96\x81", "content", " ", "type", "ByteFallback", "type", "Fuse", "type", "Strip",
        "content", " ", "start", 1, "stop", 0, "model", "type", "BPE", "dropout",
        "unk_token", "<unk>", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 1,
        "byte_fallback", 1, "ignore_merges", 0, "vocab", vocab, "merges", merges);
    assert_non_null(tok);
    put_json(dir, "tokenizer.json", tok);
}

/* Llama-2-7b-hf's tokenizer_config.json, trimmed to what the converter reads. */
static void write_llama2_tokenizer_config(const char *dir) {
    tu_put_str(dir, "tokenizer_config.json",
            "{\"add_bos_token\":true,\"add_eos_token\":false,"
            "\"added_tokens_decoder\":{"
            "\"0\":{\"content\":\"<unk>\",\"special\":true},"
            "\"1\":{\"content\":\"<s>\",\"special\":true},"
            "\"2\":{\"content\":\"</s>\",\"special\":true}},"
            "\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"unk_token\":\"<unk>\","
            "\"pad_token\":null,\"legacy\":false,\"tokenizer_class\":\"LlamaTokenizer\"}");
}

/* The same pieces as a tokenizer.model: ModelProto pieces = 1 {piece = 1, score = 2 (fixed32),
 * type = 3}, trainer_spec = 2 {model_type = 3: BPE 2, byte_fallback = 35}. */
static void write_tokenizer_model(const char *dir, const spm_src *s) {
    uint8_t *buf = malloc(s->n * 96 + 64), *q = buf;
    for (size_t i = 0; i < s->n; i++) {
        const size_t len = strlen(s->pieces[i]);
        assert_true(len < 64);
        *q++ = 0x0a;                          /* pieces (1, len) */
        *q++ = (uint8_t)(2 + len + 5 + 2);    /* < 128 */
        *q++ = 0x0a;                          /* piece (1, len) */
        *q++ = (uint8_t)len;
        memcpy(q, s->pieces[i], len);
        q += len;
        *q++ = 0x15;                          /* score (2, fixed32) */
        memcpy(q, &s->scores[i], 4);          /* little-endian host */
        q += 4;
        *q++ = 0x18;                          /* type (3, varint) */
        *q++ = (uint8_t)s->types[i];
    }
    const uint8_t trainer[] = {0x12, 0x05, 0x18, 0x02, 0x98, 0x02, 0x01};
    memcpy(q, trainer, sizeof trainer);
    q += sizeof trainer;
    tu_put(dir, "tokenizer.model", buf, (size_t)(q - buf));
    free(buf);
}

/* ---- quantize and read back ---------------------------------------------------------------- */

static dsq_status quantize(const char *dir, char **out_path, dsq_err *err) {
    dsq_qz_opts o;
    memset(&o, 0, sizeof o);
    o.type = "Q8_0";
    o.threads = 2;
    dsq_qz_summary s;
    *out_path = tu_join(dir, "out.gguf");
    const dsq_status st = dsq_quantize_gguf(dir, *out_path, &o, &s, err);
    if (st == DSQ_OK)
        dsq_qz_summary_free(&s);
    return st;
}

static dsq_gguf *quantize_open(const char *dir, char **out_path) {
    dsq_err err = {0};
    if (quantize(dir, out_path, &err) != DSQ_OK)
        fail_msg("quantize %s: %s", dir, err.text);
    return tu_gguf_open(*out_path);
}

typedef struct {
    dsq_gguf_val toks;
    float *scores;
    int32_t *types;
    uint64_t n;
} vocab_view;

static vocab_view get_vocab(const dsq_gguf *g, uint64_t n_want) {
    vocab_view v;
    dsq_gguf_val sv, tv;
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.tokens", DSQ_GGUF_STRING, &v.toks, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.scores", DSQ_GGUF_FLOAT32, &sv, NULL),
                     DSQ_OK);
    assert_int_equal(dsq_gguf_get_arr(g, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, &tv, NULL),
                     DSQ_OK);
    assert_int_equal(v.toks.n, n_want);
    assert_int_equal(sv.n, n_want);
    assert_int_equal(tv.n, n_want);
    v.scores = malloc(n_want * sizeof *v.scores);
    v.types = malloc(n_want * sizeof *v.types);
    assert_true(v.scores != NULL && v.types != NULL);
    memcpy(v.scores, sv.data, n_want * sizeof *v.scores); /* little-endian host */
    memcpy(v.types, tv.data, n_want * sizeof *v.types);
    v.n = n_want;
    return v;
}

static void free_view(vocab_view *v) {
    free(v->scores);
    free(v->types);
}

static void expect_token(const vocab_view *v, uint64_t i, const char *text, int32_t type) {
    dsq_gguf_val e;
    const char *s;
    size_t len;
    assert_int_equal(dsq_gguf_val_at(&v->toks, i, &e, NULL), DSQ_OK);
    assert_int_equal(dsq_gguf_val_str(&e, &s, &len, NULL), DSQ_OK);
    const float score = v->scores[i];
    if (len != strlen(text) || memcmp(s, text, len) != 0 || score != -1000.0f ||
        v->types[i] != type)
        fail_msg("token %llu: '%.*s' %g %d, want '%s' -1000 %d", (unsigned long long)i,
                 (int)len, s, (double)score, (int)v->types[i], text, (int)type);
}

static void check_u32(const dsq_gguf *g, const char *key, uint32_t want) {
    assert_int_equal(tu_gguf_u32(g, key), want);
}

static void check_bool(const dsq_gguf *g, const char *key, bool want) {
    bool v = !want;
    if (dsq_gguf_get_bool(g, key, &v, NULL) != DSQ_OK)
        fail_msg("%s missing or not bool", key);
    assert_int_equal(v, want);
}

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

/* dsq's own tokenizer on a GGUF it wrote, with bos */
static void expect_ids(const char *gguf, const char *text, const int32_t *want, size_t n_want) {
    dsq_model *m = NULL;
    dsq_tokenizer *t = NULL;
    dsq_err err = {0};
    if (dsq_model_open(&m, gguf, NULL, &err) != DSQ_OK ||
        dsq_model_tokenizer(m, &t, &err) != DSQ_OK)
        fail_msg("%s: %s", gguf, err.text);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(dsq_tokenizer_encode(t, text, strlen(text), 1, &ids, &n, &err), DSQ_OK);
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != want[i])
            fail_msg("%s: id %zu is %d, llama.cpp gives %d", gguf, i, (int)ids[i],
                     (int)want[i]);
    free(ids);
    dsq_tokenizer_free(t);
    dsq_model_close(m);
}

/* ---- the real vocabulary --------------------------------------------------------------------- */

static const char sentence[] = "Isaac Arellano holds a candle"; /* cnn_dailymail story 3 */

/* llama-tokenize (llama.cpp, Feb-2025) on each GGUF; identical up to "▁c" */
static const int32_t ids_from_model[] = {1,   359, 419, 412, 412, 429, 410, 447, 276, 306, 303,
                                         414, 270, 414, 341, 419, 261, 280, 412, 264, 305};
static const int32_t ids_from_json[] = {1,   359, 419, 412, 412, 429, 410, 447, 276, 306, 303,
                                        414, 270, 414, 341, 419, 261, 280, 303, 418, 305};

/* tokenizer.json + tokenizer_config.json only: 512 tokens (not padded to vocab_size 1024), the
 * pieces in id order, all -1000; <unk> <s> </s> CONTROL (named by tokenizer_config.json;
 * <unk> is not UNKNOWN here), the 256 <0xXX> BYTE, the other 253 NORMAL; bos/eos/unk from the
 * config's names found among added_tokens; add_bos/add_eos as the config says. */
static void test_real_llama2_json(void **state) {
    (void)state;
    spm_src src = load_stories_vocab();
    char *dir = make_ckpt("real-json"), *out = NULL;
    write_llama2_tokenizer_json(dir, &src);
    write_llama2_tokenizer_config(dir);
    dsq_gguf *g = quantize_open(dir, &out);
    tu_gguf_expect_str(g, "tokenizer.ggml.model", "llama");
    tu_gguf_expect_str(g, "tokenizer.ggml.pre", "default");
    vocab_view v = get_vocab(g, 512);
    size_t n_control = 0, n_byte = 0, n_normal = 0;
    for (uint64_t i = 0; i < 512; i++) {
        const char *p = src.pieces[i];
        const int byte = strlen(p) == 6 && strncmp(p, "<0x", 3) == 0;
        const int32_t type = byte ? 6 : i <= 2 ? 3 : 1;
        n_control += type == 3;
        n_byte += type == 6;
        n_normal += type == 1;
        expect_token(&v, i, p, type);
    }
    /* the SentencePiece model's own split: 3 special pieces, 256 bytes, 253 others */
    assert_int_equal(n_control, 3);
    assert_int_equal(n_byte, 256);
    assert_int_equal(n_normal, 253);
    check_u32(g, "tokenizer.ggml.bos_token_id", 1);
    check_u32(g, "tokenizer.ggml.eos_token_id", 2);
    check_u32(g, "tokenizer.ggml.unknown_token_id", 0);
    check_bool(g, "tokenizer.ggml.add_bos_token", true);
    check_bool(g, "tokenizer.ggml.add_eos_token", false);
    static const char *const order[] = {
        "tokenizer.ggml.model",           "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",          "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",      "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",    "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.add_bos_token",   "tokenizer.ggml.add_eos_token"};
    check_key_order(g, order, sizeof order / sizeof order[0]);
    free_view(&v);
    dsq_gguf_close(g);
    expect_ids(out, sentence, ids_from_json, sizeof ids_from_json / sizeof ids_from_json[0]);
    free(out);
    free(dir);
    free_src(&src);
}

/* The same directory plus tokenizer.model: the SentencePiece path wins (its real scores), and
 * dsq's tokenizer on that GGUF gives llama.cpp's ids for it, which differ from the ones above
 * at "▁candle". */
static void test_real_model_beats_json(void **state) {
    (void)state;
    spm_src src = load_stories_vocab();
    char *dir = make_ckpt("real-model"), *out = NULL;
    write_llama2_tokenizer_json(dir, &src);
    write_llama2_tokenizer_config(dir);
    write_tokenizer_model(dir, &src);
    dsq_gguf *g = quantize_open(dir, &out);
    vocab_view v = get_vocab(g, 1024); /* padded to vocab_size on this path */
    assert_true(v.scores[264] == src.scores[264] && v.scores[264] != -1000.0f);
    free_view(&v);
    dsq_gguf_close(g);
    expect_ids(out, sentence, ids_from_model, sizeof ids_from_model / sizeof ids_from_model[0]);
    free(out);
    free(dir);
    free_src(&src);
}

/* ---- added and special tokens, small hand-made files ----------------------------------------- */

#define SMALL_VOCAB                                                                                \
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x0A>\":3,\"\xe2\x96\x81\":4,\"a\":5,"       \
    "\"\xe2\x96\x81" "a\":6}"

static void put_small_json(const char *dir, const char *added) {
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"added_tokens\":[%s],\"decoder\":{\"type\":\"Sequence\",\"decoders\":[]},"
             "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true," SMALL_VOCAB
             ",\"merges\":[\"\xe2\x96\x81 a\"]}}",
             added);
    tu_put_str(dir, "tokenizer.json", buf);
}

static const char small_added[] =
    "{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"special\":true},"
    "{\"id\":7,\"content\":\"<pad>\",\"special\":true},"
    "{\"id\":8,\"content\":\"<|im_start|>\",\"special\":true},"
    "{\"id\":9,\"content\":\"\xe2\x96\x81hi\",\"special\":false}";

/* Added tokens past the vocabulary (7, 8, 9) are appended: <pad> is the pad_token, so CONTROL
 * and the padding id; <|im_start|> is special in tokenizer.json but named nowhere in
 * tokenizer_config.json, so USER_DEFINED (only all_special_ids count, unlike the gpt2 path's
 * special-looking rule); U+2581 "hi" stays as written. additional_special_tokens ["a"] makes
 * base token 5 CONTROL. add_bos false / add_eos true and the chat template are copied. */
static void test_added_and_special(void **state) {
    (void)state;
    char *dir = make_ckpt("added"), *out = NULL;
    put_small_json(dir, small_added);
    tu_put_str(dir, "tokenizer_config.json",
            "{\"tokenizer_class\":\"LlamaTokenizerFast\",\"add_bos_token\":false,"
            "\"add_eos_token\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\","
            "\"unk_token\":\"<unk>\",\"pad_token\":{\"content\":\"<pad>\"},"
            "\"additional_special_tokens\":[\"a\"],\"chat_template\":\"{{x}}\"}");
    dsq_gguf *g = quantize_open(dir, &out);
    vocab_view v = get_vocab(g, 10);
    expect_token(&v, 0, "<unk>", 3);
    expect_token(&v, 1, "<s>", 3);
    expect_token(&v, 2, "</s>", 3);
    expect_token(&v, 3, "<0x0A>", 6);
    expect_token(&v, 4, "\xe2\x96\x81", 1);
    expect_token(&v, 5, "a", 3);
    expect_token(&v, 6, "\xe2\x96\x81" "a", 1);
    expect_token(&v, 7, "<pad>", 3);
    expect_token(&v, 8, "<|im_start|>", 4);
    expect_token(&v, 9, "\xe2\x96\x81hi", 4);
    check_u32(g, "tokenizer.ggml.bos_token_id", 1);
    check_u32(g, "tokenizer.ggml.eos_token_id", 2);
    check_u32(g, "tokenizer.ggml.unknown_token_id", 0);
    check_u32(g, "tokenizer.ggml.padding_token_id", 7);
    check_bool(g, "tokenizer.ggml.add_bos_token", false);
    check_bool(g, "tokenizer.ggml.add_eos_token", true);
    tu_gguf_expect_str(g, "tokenizer.chat_template", "{{x}}");
    assert_true(dsq_gguf_find_key(g, "tokenizer.ggml.merges") < 0);
    free_view(&v);
    dsq_gguf_close(g);
    free(out);
    free(dir);
}

/* No tokenizer_config.json: AutoTokenizer picks LlamaTokenizerFast from config.json's
 * model_type, whose defaults make <unk> <s> </s> special; the ids come from config.json only
 * (bos 1, eos 2), as SpecialVocab finds no names to look up. With PreTrainedTokenizerFast
 * there are no defaults: the three are NORMAL. */
static void test_class_defaults(void **state) {
    (void)state;
    char *dir = make_ckpt("defaults"), *out = NULL;
    put_small_json(dir, "");
    dsq_gguf *g = quantize_open(dir, &out);
    vocab_view v = get_vocab(g, 7);
    expect_token(&v, 0, "<unk>", 3);
    expect_token(&v, 2, "</s>", 3);
    expect_token(&v, 5, "a", 1);
    check_u32(g, "tokenizer.ggml.bos_token_id", 1);
    check_u32(g, "tokenizer.ggml.eos_token_id", 2);
    assert_true(dsq_gguf_find_key(g, "tokenizer.ggml.unknown_token_id") < 0);
    free_view(&v);
    dsq_gguf_close(g);
    free(out);
    free(dir);

    dir = make_ckpt("plainfast");
    put_small_json(dir, "");
    tu_put_str(dir, "tokenizer_config.json", "{\"tokenizer_class\":\"PreTrainedTokenizerFast\"}");
    g = quantize_open(dir, &out);
    v = get_vocab(g, 7);
    expect_token(&v, 0, "<unk>", 1);
    expect_token(&v, 1, "<s>", 1);
    expect_token(&v, 3, "<0x0A>", 6);
    free_view(&v);
    dsq_gguf_close(g);
    free(out);
    free(dir);
}

/* ---- hostile files ----------------------------------------------------------------------------- */

typedef struct {
    const char *what, *json, *config; /* config NULL: none */
    dsq_status status;
    const char *msg; /* a part of the message */
} hostile;

#define BPE_HEAD                                                                                   \
    "{\"decoder\":{\"type\":\"Sequence\"},\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,"

static const hostile hostiles[] = {
    {"a gap in the ids (no id 1)", BPE_HEAD "\"vocab\":{\"<unk>\":0,\"b\":2}}}", NULL,
     DSQ_FORMAT, "id of 'b' is not in [0, 2)"},
    {"two tokens with one id", BPE_HEAD "\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":1}}}", NULL,
     DSQ_FORMAT, "gives id 1 to both"},
    {"a negative id", BPE_HEAD "\"vocab\":{\"<unk>\":-1}}}", NULL, DSQ_FORMAT,
     "not in [0, 1)"},
    {"an id that is not a number", BPE_HEAD "\"vocab\":{\"<unk>\":\"0\"}}}", NULL, DSQ_FORMAT,
     "not in [0, 1)"},
    {"an empty vocabulary", BPE_HEAD "\"vocab\":{}}}", NULL, DSQ_FORMAT, "missing or empty"},
    {"an added token at an id tokenizers would not give it",
     BPE_HEAD "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2}},\"added_tokens\":["
              "{\"id\":5,\"content\":\"<x>\"}]}",
     NULL, DSQ_FORMAT, "'<x>' has id 5 but loads as id 3"},
    {"an added token moved off its vocabulary id",
     BPE_HEAD "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2}},\"added_tokens\":["
              "{\"id\":0,\"content\":\"<s>\"}]}",
     NULL, DSQ_FORMAT, "'<s>' has id 0 but loads as id 1"},
    {"an added token with a huge id",
     BPE_HEAD "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2}},\"added_tokens\":["
              "{\"id\":99999999999,\"content\":\"<x>\"}]}",
     NULL, DSQ_FORMAT, "has id 99999999999 but loads as id 3"},
    {"added_tokens not a list", BPE_HEAD "\"vocab\":{\"<unk>\":0}},\"added_tokens\":{}}", NULL,
     DSQ_FORMAT, "added_tokens is not an array"},
    {"a special token tokenizer.json lacks",
     BPE_HEAD "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2}}}", "{\"pad_token\":\"<pad>\"}",
     DSQ_UNSUPPORTED, "pad_token '<pad>' is not a token of tokenizer.json"},
    {"LlamaTokenizerFast's default <unk> missing",
     BPE_HEAD "\"vocab\":{\"<s>\":0,\"</s>\":1}}}", NULL, DSQ_UNSUPPORTED,
     "unk_token '<unk>' is not a token"},
    {"added_tokens_decoder naming another token",
     BPE_HEAD "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2}}}",
     "{\"added_tokens_decoder\":{\"3\":{\"content\":\"<new>\"}}}", DSQ_UNSUPPORTED,
     "added_tokens_decoder 3 '<new>' is not that token"},
    {"an unknown tokenizer_class", BPE_HEAD "\"vocab\":{\"<unk>\":0}}}",
     "{\"tokenizer_class\":\"GemmaTokenizer\"}", DSQ_UNSUPPORTED,
     "tokenizer_class 'GemmaTokenizer'"},
    {"add_prefix_space with LlamaTokenizerFast",
     BPE_HEAD "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2}}}", "{\"add_prefix_space\":true}",
     DSQ_UNSUPPORTED, "add_prefix_space"},
    {"add_bos_token without a bos_token",
     BPE_HEAD "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2}}}", "{\"bos_token\":null}",
     DSQ_UNSUPPORTED, "no bos_token"},
    {"a bos_token that is a number", BPE_HEAD "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2}}}",
     "{\"bos_token\":7}", DSQ_FORMAT, "bos_token is neither a string nor a token object"},
};

/* Each defect: the status and a one-line message naming it, no GGUF left behind. */
static void test_hostile(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof hostiles / sizeof hostiles[0]; i++) {
        const hostile *h = &hostiles[i];
        char name[32], *out = NULL;
        snprintf(name, sizeof name, "hostile%zu", i);
        char *dir = make_ckpt(name);
        tu_put_str(dir, "tokenizer.json", h->json);
        if (h->config != NULL)
            tu_put_str(dir, "tokenizer_config.json", h->config);
        dsq_err err = {0};
        const dsq_status st = quantize(dir, &out, &err);
        if (st != h->status || strstr(err.text, h->msg) == NULL || strchr(err.text, '\n'))
            fail_msg("%s: %s '%s', want %s with '%s'", h->what, dsq_status_name(st), err.text,
                     dsq_status_name(h->status), h->msg);
        assert_false(tu_file_exists(out));
        free(out);
        free(dir);
    }
}

/* 7 tokens + 3 added = 10 tokens against a vocab_size of 8: ids 8 and 9 would have no row of
 * the embedding. The converter writes them; dsq stops. */
static void test_more_tokens_than_vocab_size(void **state) {
    (void)state;
    char *dir = make_ckpt("toomany"), *out = NULL;
    put_small_json(dir, small_added);
    char *cfg_path = tu_join(dir, "config.json");
    json_error_t je;
    json_t *cfg = json_load_file(cfg_path, 0, &je);
    assert_non_null(cfg);
    json_object_set_new(cfg, "vocab_size", json_integer(8));
    put_json(dir, "config.json", cfg);
    dsq_err err = {0};
    const dsq_status st = quantize(dir, &out, &err);
    if (st == DSQ_OK || strstr(err.text, "10 tokens, more than config.json's vocab_size 8") == NULL)
        fail_msg("%s '%s'", dsq_status_name(st), err.text);
    free(cfg_path);
    free(out);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_llama2_json),
        cmocka_unit_test(test_real_model_beats_json),
        cmocka_unit_test(test_added_and_special),
        cmocka_unit_test(test_class_defaults),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_more_tokens_than_vocab_size),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, tu_group_dir_teardown);
}
