/* tests/test_tokenizer.c: BPE (tokenizer.json) and SentencePiece (llama2.c) tokenizers.
 *
 * Oracles: eval.tokens.txt (HF tokenizers' own output on eval.txt, see
 * ../shared/data/tiny-models/README.md) for byte-level BPE; run.c's algorithm, traced by hand
 * below, for llama2.c's tok512.bin. The pre-tokenizer cases state the split each regex gives and
 * why, alternative by alternative. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/testutil.h"
#include "tokenizer/tokenizer.h"

/* ==== helpers =============================================================================== */

static dsq_tokenizer *load_tiny(void) {
    char *tj = tu_shared_path("data/tiny-models/tokenizer.json");
    char *tc = tu_shared_path("data/tiny-models/tokenizer_config.json");
    dsq_tokenizer *t = NULL;
    dsq_err e = {0};
    const dsq_status st = dsq_tokenizer_from_hf(&t, tj, tc, &e);
    if (st != DSQ_OK)
        fail_msg("load: %s", e.text);
    free(tj);
    free(tc);
    return t;
}

/* A tokenizer.json around a pre_tokenizer (built with jansson so the regexes need only C
 * escaping) and, optionally, a vocabulary/merges/added tokens. */
static dsq_tokenizer *from_doc(json_t *doc, dsq_status want, const char *want_text) {
    char *s = json_dumps(doc, JSON_COMPACT);
    assert_non_null(s);
    dsq_tokenizer *t = NULL;
    dsq_err e = {0};
    const dsq_status st = dsq_tokenizer_from_hf_json(&t, s, strlen(s), NULL, 0, "test", &e);
    if (st != want)
        fail_msg("want %s got %s: %s", dsq_status_name(want), dsq_status_name(st), e.text);
    if (want_text != NULL && strstr(e.text, want_text) == NULL)
        fail_msg("error text '%s' lacks '%s'", e.text, want_text);
    free(s);
    json_decref(doc);
    return t;
}

static json_t *tiny_model(void) {
    return json_pack("{s:s, s:{s:i}, s:[]}", "type", "BPE", "vocab", "a", 0, "merges");
}

static json_t *split_step(const char *regex) {
    return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", regex,
                     "behavior", "Isolated", "invert", 0);
}

static json_t *byte_level(int use_regex) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                     "trim_offsets", 1, "use_regex", use_regex);
}

static dsq_tokenizer *gpt2_pretok(void) {
    return from_doc(json_pack("{s:o, s:o}", "model", tiny_model(), "pre_tokenizer", byte_level(1)),
                    DSQ_OK, NULL);
}

/* Llama-3's tokenizer.json: Sequence[Split(its regex, Isolated), ByteLevel(use_regex false)] */
static dsq_tokenizer *llama3_pretok(void) {
    return from_doc(json_pack("{s:o, s:{s:s, s:[o,o]}}", "model", tiny_model(), "pre_tokenizer",
                              "type", "Sequence", "pretokenizers", split_step(DSQ_TOK_RE_LLAMA3),
                              byte_level(0)),
                    DSQ_OK, NULL);
}

/* DeepSeek-V3's tokenizer.json: three Split(Isolated) then ByteLevel(use_regex false) */
static dsq_tokenizer *dsv3_pretok(void) {
    return from_doc(json_pack("{s:o, s:{s:s, s:[o,o,o,o]}}", "model", tiny_model(), "pre_tokenizer",
                              "type", "Sequence", "pretokenizers",
                              split_step(DSQ_TOK_RE_DSV3_DIGITS), split_step(DSQ_TOK_RE_DSV3_CJK),
                              split_step(DSQ_TOK_RE_DSV3_MAIN), byte_level(0)),
                    DSQ_OK, NULL);
}

/* Checks the pieces of text against a NULL-terminated list. */
static void expect_pieces(const dsq_tokenizer *t, const char *text, const char *const *want) {
    char *blob = NULL;
    size_t *lens = NULL, n = 0;
    dsq_err e = {0};
    assert_int_equal(dsq_tokenizer_pretokenize(t, text, strlen(text), &blob, &lens, &n, &e),
                     DSQ_OK);
    size_t nw = 0;
    while (want[nw] != NULL)
        nw++;
    const char *p = blob;
    for (size_t i = 0; i < n || i < nw; i++) {
        if (i >= n || i >= nw || strlen(want[i]) != lens[i] || memcmp(p, want[i], lens[i]) != 0)
            fail_msg("'%s': piece %zu is '%.*s' (%zu pieces), want '%s' (%zu pieces)", text, i,
                     i < n ? (int)lens[i] : 0, i < n ? p : "", n, i < nw ? want[i] : "(none)", nw);
        p += lens[i];
    }
    free(blob);
    free(lens);
}

#define PIECES(t, text, ...)                                                                       \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__, NULL};                                    \
        expect_pieces((t), (text), want_);                                                         \
    } while (0)

static void expect_ids(const dsq_tokenizer *t, const char *text, int add_special,
                       const int32_t *want, size_t nw) {
    int32_t *ids = NULL;
    size_t n = 0;
    dsq_err e = {0};
    if (dsq_tokenizer_encode(t, text, strlen(text), add_special, &ids, &n, &e) != DSQ_OK)
        fail_msg("encode '%s': %s", text, e.text);
    for (size_t i = 0; i < n || i < nw; i++)
        if (i >= n || i >= nw || ids[i] != want[i])
            fail_msg("'%s': id %zu is %ld, want %ld (%zu ids, want %zu)", text, i,
                     i < n ? (long)ids[i] : -1L, i < nw ? (long)want[i] : -1L, n, nw);
    free(ids);
}

#define IDS(t, text, add, ...)                                                                     \
    do {                                                                                           \
        static const int32_t want_[] = {__VA_ARGS__};                                              \
        expect_ids((t), (text), (add), want_, sizeof(want_) / sizeof(want_[0]));                   \
    } while (0)

static void expect_decode(const dsq_tokenizer *t, const int32_t *ids, size_t n, int skip,
                          const char *want, size_t wn) {
    char *out = NULL;
    size_t len = 0;
    dsq_err e = {0};
    if (dsq_tokenizer_decode(t, ids, n, skip, &out, &len, &e) != DSQ_OK)
        fail_msg("decode: %s", e.text);
    if (len != wn || memcmp(out, want, wn) != 0)
        fail_msg("decode gave '%.*s', want '%.*s'", (int)len, out, (int)wn, want);
    free(out);
}

/* ==== the eval.txt oracle =================================================================== */

static void test_eval_oracle(void **state) {
    (void)state;
    dsq_tokenizer *t = load_tiny();
    assert_int_equal(dsq_tokenizer_n_vocab(t), 1024);
    assert_int_equal(dsq_tokenizer_bos(t), 0);
    assert_int_equal(dsq_tokenizer_eos(t), 1);

    char *tp = tu_shared_path("data/tiny-models/eval.txt");
    char *kp = tu_shared_path("data/tiny-models/eval.tokens.txt");
    size_t tn = 0, kn = 0;
    uint8_t *text = tu_read_file(tp, &tn);
    uint8_t *ktxt = tu_read_file(kp, &kn);

    /* the reference: bos + ids, one per line */
    size_t nref = 0, cap = 1 << 16;
    int32_t *ref = malloc(cap * sizeof(int32_t));
    assert_non_null(ref);
    for (char *p = (char *)ktxt, *end; *p != '\0'; p = end) {
        const long v = strtol(p, &end, 10);
        if (end == p)
            break;
        if (nref == cap) {
            cap *= 2;
            ref = realloc(ref, cap * sizeof(int32_t));
            assert_non_null(ref);
        }
        ref[nref++] = (int32_t)v;
    }
    assert_int_equal(nref, 36433);

    int32_t *ids = NULL;
    size_t n = 0;
    dsq_err e = {0};
    const clock_t c0 = clock();
    assert_int_equal(dsq_tokenizer_encode(t, (const char *)text, tn, 1, &ids, &n, &e), DSQ_OK);
    const double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    /* 89 KB must take well under a second (about 15 ms here; generous for sanitizers) */
    assert_true(secs < 1.0);
    assert_int_equal(n, nref);
    for (size_t i = 0; i < n; i++)
        if (ids[i] != ref[i])
            fail_msg("eval: id %zu is %ld, HF says %ld", i, (long)ids[i], (long)ref[i]);

    /* decoding gives eval.txt back exactly: after bos, and with bos skipped as special */
    expect_decode(t, ids + 1, n - 1, 0, (const char *)text, tn);
    expect_decode(t, ids, n, 1, (const char *)text, tn);

    free(ids);
    free(ref);
    free(text);
    free(ktxt);
    free(tp);
    free(kp);
    dsq_tokenizer_free(t);
}

static void test_hf_dir_and_specials(void **state) {
    (void)state;
    char *dir = tu_shared_path("data/tiny-models/tiny-llama");
    dsq_tokenizer *t = NULL;
    dsq_err e = {0};
    assert_int_equal(dsq_tokenizer_from_hf_dir(&t, dir, &e), DSQ_OK);
    /* the special tokens in the text are cut out before pre-tokenization: the bos string gives
     * id 0 even though the regex alone would split it into '<', '｜', ... */
    static const char text[] = "hi<｜end▁of▁sentence｜>hi";
    int32_t *hi = NULL, *ids = NULL;
    size_t nhi = 0, n = 0;
    assert_int_equal(dsq_tokenizer_encode(t, "hi", 2, 0, &hi, &nhi, &e), DSQ_OK);
    assert_int_equal(dsq_tokenizer_encode(t, text, strlen(text), 0, &ids, &n, &e), DSQ_OK);
    assert_int_equal(n, 2 * nhi + 1);
    assert_memory_equal(ids, hi, nhi * sizeof(int32_t));
    assert_int_equal(ids[nhi], 1);
    assert_memory_equal(ids + nhi + 1, hi, nhi * sizeof(int32_t));
    /* decoding writes the special token's text, or drops it with skip_special */
    expect_decode(t, ids, n, 0, text, strlen(text));
    expect_decode(t, ids, n, 1, "hihi", 4);
    free(ids);
    free(hi);
    /* add_special: bos only (add_bos_token true, add_eos_token false) */
    IDS(t, "", 1, 0);
    int32_t *none = NULL;
    assert_int_equal(dsq_tokenizer_encode(t, "", 0, 0, &none, &n, &e), DSQ_OK);
    assert_non_null(none);
    assert_int_equal(n, 0);
    free(none);
    /* a token's vocabulary spelling: byte 0x20 is 'Ġ' (U+0120) in the byte-level alphabet */
    size_t len = 0;
    const char *sp = dsq_tokenizer_token_text(t, 2 + 0x20, &len);
    assert_non_null(sp);
    assert_int_equal(len, 2);
    assert_memory_equal(sp, "\xc4\xa0", 2);
    assert_int_equal(dsq_tokenizer_token_id(t, "\xc4\xa0", 2), 2 + 0x20);
    assert_null(dsq_tokenizer_token_text(t, 1024, NULL));
    dsq_tokenizer_free(t);
    free(dir);
}

/* The same vocabulary handed over as GGUF-style arrays (the way the tiny models' GGUF files
 * carry it: "gpt2" model, pre "gpt-2", bos 0 added): the eval.txt oracle must still hold. */
static void test_bpe_arrays(void **state) {
    (void)state;
    char *tj = tu_shared_path("data/tiny-models/tokenizer.json");
    json_error_t je;
    json_t *root = json_load_file(tj, 0, &je);
    assert_non_null(root);
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    const json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    const size_t nv = json_object_size(vocab), nm = json_array_size(merges);
    const char **toks = calloc(nv, sizeof(*toks));
    const char **mer = calloc(nm, sizeof(*mer));
    int32_t *types = calloc(nv, sizeof(int32_t));
    assert_true(toks && mer && types);
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        const json_int_t id = json_integer_value(val);
        assert_true(id >= 0 && (size_t)id < nv);
        toks[id] = key;
        types[id] = id < 2 ? DSQ_TOKTYPE_CONTROL : DSQ_TOKTYPE_NORMAL;
    }
    for (size_t i = 0; i < nm; i++)
        mer[i] = json_string_value(json_array_get(merges, i));
    dsq_bpe_vocab v = {.n = nv,
                       .tokens = toks,
                       .types = types,
                       .n_merges = nm,
                       .merges = mer,
                       .pre = "gpt-2",
                       .bos_id = 0,
                       .eos_id = 1,
                       .add_bos = 1};
    dsq_tokenizer *t = NULL;
    dsq_err e = {0};
    assert_int_equal(dsq_tokenizer_from_bpe_arrays(&t, &v, &e), DSQ_OK);
    dsq_tokenizer *ref = load_tiny();

    char *tp = tu_shared_path("data/tiny-models/eval.txt");
    size_t tn = 0;
    uint8_t *text = tu_read_file(tp, &tn);
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    assert_int_equal(dsq_tokenizer_encode(t, (const char *)text, tn, 1, &a, &na, &e), DSQ_OK);
    assert_int_equal(dsq_tokenizer_encode(ref, (const char *)text, tn, 1, &b, &nb, &e), DSQ_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof(int32_t));
    expect_decode(t, a, na, 1, (const char *)text, tn);
    /* the control tokens are matched in the text, as HF's added tokens are */
    IDS(t, "<｜end▁of▁sentence｜>", 0, 1);
    dsq_tokenizer_free(t);

    /* the other named chains load; unknown names and bad merges are errors */
    v.pre = "llama-bpe";
    assert_int_equal(dsq_tokenizer_from_bpe_arrays(&t, &v, &e), DSQ_OK);
    dsq_tokenizer_free(t);
    v.pre = "deepseek-v3";
    assert_int_equal(dsq_tokenizer_from_bpe_arrays(&t, &v, &e), DSQ_OK);
    dsq_tokenizer_free(t);
    v.pre = "qwen2";
    dsq_err_clear(&e);
    assert_int_equal(dsq_tokenizer_from_bpe_arrays(&t, &v, &e), DSQ_UNSUPPORTED);
    assert_null(t);
    v.pre = NULL;
    mer[0] = "\xc4\xa0 zz";
    dsq_err_clear(&e);
    assert_int_equal(dsq_tokenizer_from_bpe_arrays(&t, &v, &e), DSQ_FORMAT);
    assert_null(t);

    free(a);
    free(b);
    free(text);
    free(tp);
    free(toks);
    free(mer);
    free(types);
    free(tj);
    json_decref(root);
    dsq_tokenizer_free(ref);
}

/* ==== pre-tokenizer regexes ================================================================= */

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void test_regex_gpt2(void **state) {
    (void)state;
    dsq_tokenizer *t = gpt2_pretok();
    /* words take one leading space: " world"; the contraction alternatives come first */
    PIECES(t, "Hello world's end", "Hello", " world", "'s", " end");
    PIECES(t, "I'm don't", "I", "'m", " don", "'t");
    /* contractions are case-sensitive in GPT-2: "'T" is not one, so "'" is punctuation and "T"
     * a word */
    PIECES(t, "DON'T", "DON", "'", "T");
    /* "a  b": at the first space, no word/number/punct alternative fits (space, space);
     * \s+(?!\S) takes both spaces, fails the lookahead at 'b', backs off to one space (followed
     * by a space, not \S): " ", and the second space joins the word: " b" */
    PIECES(t, "a  b", "a", " ", " b");
    /* numbers are one run with an optional space */
    PIECES(t, "abc 12345 x", "abc", " 12345", " x");
    /* trailing whitespace: \s+(?!\S) succeeds at the end of the text */
    PIECES(t, "hi  ", "hi", "  ");
    /* "\n\n": \s+(?!\S) backs off to the first "\n"; the last one before 'b' only fits \s+ */
    PIECES(t, "a\n\nb", "a", "\n", "\n", "b");
    /* \p{L} is Unicode-aware (UCP): accented letters stay inside words, CJK is one run */
    PIECES(t, "héllo wörld", "héllo", " wörld");
    PIECES(t, "hello 你好世界", "hello", " 你好世界");
    /* emoji are So: neither letter, number nor space, so they group with punctuation */
    PIECES(t, "hi 😀😀!", "hi", " 😀😀!");
    PIECES(t, "x+=1;", "x", "+=", "1", ";");
    dsq_tokenizer_free(t);
}

/* Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void test_regex_llama3(void **state) {
    (void)state;
    dsq_tokenizer *t = llama3_pretok();
    /* contractions ignore case */
    PIECES(t, "DON'T I'm", "DON", "'T", " I", "'m");
    /* digits in groups of at most three, and never with a leading space: at " 1" the only
     * alternative that fits is \s+ (the \s+(?!\S) one fails before '1') */
    PIECES(t, "abc 12345", "abc", " ", "123", "45");
    PIECES(t, "1234567", "123", "456", "7");
    /* a word may take one non-letter, non-digit, non-newline char in front: "$" alone can't
     * (digits follow), but "'" before letters becomes part of the word only via the
     * contraction list; "(hello" is one word */
    PIECES(t, "$100", "$", "100");
    PIECES(t, "(hello", "(hello");
    PIECES(t, "hello, world", "hello", ",", " world");
    /* newlines: \s*[\r\n]+ takes a whole run of them; punctuation swallows following newlines */
    PIECES(t, "a\n\nb", "a", "\n\n", "b");
    PIECES(t, "x.\n\ny", "x", ".\n\n", "y");
    /* runs of spaces before a word: " " then " hello", as in GPT-2 */
    PIECES(t, "  hello", " ", " hello");
    PIECES(t, "end  ", "end", "  ");
    PIECES(t, "héllo wörld 你好", "héllo", " wörld", " 你好");
    PIECES(t, "ok 😀😀", "ok", " 😀😀");
    dsq_tokenizer_free(t);
}

/* DeepSeek-V3: Split \p{N}{1,3}, then Split on the CJK/kana run, then Split on the main regex
 * [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|
 *  ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * each Isolated: gaps between matches are pieces too. */
static void test_regex_dsv3(void **state) {
    (void)state;
    dsq_tokenizer *t = dsv3_pretok();
    /* step 1 cuts "123" and "45" out of "abc 12345 日本語テスト"; step 2 cuts the CJK+katakana run
     * "日本語テスト" out of " 日本語テスト"; step 3 splits "abc " into "abc" and " ", and leaves
     * "123"/"45" alone (no alternative matches digits: they stay as one gap) and " " too */
    PIECES(t, "abc 12345 日本語テスト", "abc", " ", "123", "45", " ", "日本語テスト");
    /* an ASCII punctuation mark glues to the ASCII letters after it; but at " (x" the space
     * comes first: alternative 1 needs punctuation there, alternative 2 a letter after the
     * optional space, so alternative 3 " ?[\p{P}\p{S}]+" wins with " (" and "x" is left */
    PIECES(t, "Hello.World (x", "Hello", ".World", " (", "x");
    PIECES(t, "don't", "don", "'t");
    /* punctuation with a space in front, plus following newlines */
    PIECES(t, "a, b!\n\nc", "a", ",", " b", "!\n\n", "c");
    dsq_tokenizer_free(t);
}

/* ==== BPE mechanics on a synthetic vocabulary =============================================== */

static void test_bpe_rules(void **state) {
    (void)state;
    /* vocab: a=0 b=1 aa=2 ab=3 aab=4; merges "a a" (rank 0) then ["a","b"] (rank 1, the pair
     * form), then "aa b" */
    json_t *model = json_pack("{s:s, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:[s, [s,s], s]}",
                              "type", "BPE", "vocab", "a", 0, "b", 1, "aa", 2, "ab", 3, "aab", 4,
                              "<x>", 5, "\xc4\xa0", 6, "merges", "a a", "a", "b", "aa b");
    json_t *added =
        json_pack("[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}]", "id", 5, "content", "<x>", "special", 1,
                  "lstrip", 1, "rstrip", 0, "single_word", 0, "normalized", 0);
    dsq_tokenizer *t = from_doc(json_pack("{s:o, s:o, s:o}", "model", model, "added_tokens", added,
                                          "pre_tokenizer", byte_level(1)),
                                DSQ_OK, NULL);
    /* "aaa": the lowest rank applies leftmost first: (aa)a, not a(aa) */
    IDS(t, "aaa", 0, 2, 0);
    /* "aab": a a -> aa (rank 0) beats a b (rank 1); then aa b -> aab */
    IDS(t, "aab", 0, 4);
    /* "abab": two "ab" */
    IDS(t, "abab", 0, 3, 3);
    /* lstrip: the special token swallows the spaces before it */
    IDS(t, "a  <x>b", 0, 0, 5, 1);
    /* " <" is one GPT-2 piece; byte 0x20 is token 6 ('Ġ'), and '<' alone is not a token and
     * there is no unk_token, so HF's BPE drops it */
    IDS(t, "a <", 0, 0, 6);
    /* no post_processor and no config: no bos */
    assert_int_equal(dsq_tokenizer_bos(t), -1);
    dsq_tokenizer_free(t);

    /* ignore_merges (Llama-3): a piece that is a token is taken whole even when the merges
     * would not build it: "ab" is a token but no merge makes it */
    model = json_pack("{s:s, s:b, s:{s:i, s:i, s:i}, s:[]}", "type", "BPE", "ignore_merges", 1,
                      "vocab", "a", 0, "b", 1, "ab", 2, "merges");
    t = from_doc(json_pack("{s:o, s:o}", "model", model, "pre_tokenizer", byte_level(1)), DSQ_OK,
                 NULL);
    IDS(t, "ab", 0, 2);
    IDS(t, "ba", 0, 1, 0);
    dsq_tokenizer_free(t);

    /* Split behaviours on a literal: "a-b" split on "-" */
    static const struct {
        const char *behavior;
        const char *want[4];
    } cases[] = {
        {"Removed", {"a", "b", NULL}},
        {"Isolated", {"a", "-", "b", NULL}},
        {"MergedWithPrevious", {"a-", "b", NULL}},
        {"MergedWithNext", {"a", "-b", NULL}},
        {"Contiguous", {"a", "--", "b", NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *sp = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "String",
                               "-", "behavior", cases[i].behavior, "invert", 0);
        t = from_doc(json_pack("{s:o, s:{s:s, s:[o,o]}}", "model", tiny_model(), "pre_tokenizer",
                               "type", "Sequence", "pretokenizers", sp, byte_level(0)),
                     DSQ_OK, NULL);
        expect_pieces(t, strcmp(cases[i].behavior, "Contiguous") == 0 ? "a--b" : "a-b",
                      cases[i].want);
        dsq_tokenizer_free(t);
    }
}

/* ==== llama2.c tok512.bin =================================================================== */

static dsq_tokenizer *load_tok512(void) {
    char *p = tu_shared_path("data/stories260K/tok512.bin");
    dsq_tokenizer *t = NULL;
    dsq_err e = {0};
    if (dsq_tokenizer_from_llama2c(&t, p, 512, &e) != DSQ_OK)
        fail_msg("tok512: %s", e.text);
    free(p);
    return t;
}

static void test_llama2c(void **state) {
    (void)state;
    dsq_tokenizer *t = load_tok512();
    assert_int_equal(dsq_tokenizer_n_vocab(t), 512);
    assert_int_equal(dsq_tokenizer_bos(t), 1);
    assert_int_equal(dsq_tokenizer_eos(t), 2);

    /* run.c encode("Once upon a time", bos=1, eos=0), by hand from tok512.bin: bos 1, then the
     * dummy prefix " " (410) and one token per char: ' ' O n c e ' ' u p o n ' ' a ' ' t i m e.
     * Then the best-scoring adjacent pair, leftmost on ties, again and again (score in
     * parentheses, higher first):
     *   " t" 259 (0)     " a" 261 (-2)    "im" 288 (-29)   "on" 289 (-30)   " u" 318 (-59)
     *   " O" 319 (-60)   " On" 321 (-62)  "ce" 331 (-72)   " up" 350 (-91)  "ime" 369 (-110)
     *   " time" 378 (-119)  " Once" 403 (-144)  " upon" 407 (-148)
     * after which no adjacent pair is a token: 1, " Once", " upon", " a", " time". */
    IDS(t, "Once upon a time", 1, 1, 403, 407, 261, 378);
    IDS(t, "Once upon a time", 0, 403, 407, 261, 378);
    IDS(t, "", 1, 1);

    /* byte fallback: '日' (E6 97 A5) is not in the vocabulary, so it becomes <0xE6> <0x97>
     * <0xA5> = ids 3 + byte; '€' is a token of its own (503) */
    IDS(t, "日€", 0, 410, 3 + 0xE6, 3 + 0x97, 3 + 0xA5, 503);
    static const int32_t bytes[] = {1, 410, 3 + 0xE6, 3 + 0x97, 3 + 0xA5, 3 + '\n', 414};
    /* decode: byte tokens give their byte; the dummy-prefix space after bos is dropped, as in
     * run.c's decode */
    expect_decode(t, bytes, 7, 1, "日\no", strlen("日\no"));
    expect_decode(t, bytes + 1, 6, 0, "日\no", strlen("日\no"));

    /* greedy_256_run_c.txt is what run.c printed from the prompt "Once upon a time": the decoded
     * pieces after bos, then its timing line. Its text starts with our prompt encoding, and
     * encoding then decoding it gives it back byte for byte. */
    char *gp = tu_shared_path("data/stories260K/greedy_256_run_c.txt");
    size_t gn = 0;
    char *g = (char *)tu_read_file(gp, &gn);
    char *tail = strstr(g, "achieved tok/s");
    assert_non_null(tail);
    gn = (size_t)(tail - g);
    int32_t *ids = NULL;
    size_t n = 0;
    dsq_err e = {0};
    assert_int_equal(dsq_tokenizer_encode(t, g, gn, 1, &ids, &n, &e), DSQ_OK);
    static const int32_t prompt[] = {1, 403, 407, 261, 378};
    assert_true(n > 5);
    assert_memory_equal(ids, prompt, sizeof(prompt));
    /* run.c -n 256 runs 256 steps and prints the token after each: bos + 256 tokens, and our
     * encoding of the printed text comes out the same length */
    assert_int_equal(n, 257);
    expect_decode(t, ids, n, 1, g, gn);
    free(ids);
    free(g);
    free(gp);
    dsq_tokenizer_free(t);
}

/* SentencePiece spelling (GGUF "llama"): spaces are U+2581 and the dummy prefix is one too */
static void test_spm_arrays(void **state) {
    (void)state;
#define SP "\xe2\x96\x81"
    static const char *const toks[] = {"<unk>", "<s>",   "</s>", "<0x21>",  SP,
                                       "h",     "e",     "l",    "o",       SP "h",
                                       "ll",    SP "he", "llo",  SP "hello"};
    static const float scores[] = {0, 0, 0, 0, -1, -2, -3, -4, -5, -6, -7, -8, -9, -10};
    static const int32_t types[] = {2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const dsq_spm_vocab v = {
        .n = 14,
        .tokens = toks,
        .scores = scores,
        .types = types,
        .bos_id = 1,
        .eos_id = 2,
        .unk_id = 0,
        .add_bos = 1,
        .add_eos = 1,
        .add_space_prefix = 1,
        .escape_whitespace = 1,
    };
    dsq_tokenizer *t = NULL;
    dsq_err e = {0};
    assert_int_equal(dsq_tokenizer_from_spm_arrays(&t, &v, &e), DSQ_OK);
    /* "▁hello▁hello": ▁h (-6) first, then ll (-7), ▁he (-8), llo (-9), ▁hello (-10), twice;
     * the '!' has only a byte token; 'x' has none, so it is unk */
    IDS(t, "hello hello!x", 1, 1, 13, 13, 3, 0, 2);
    static const int32_t ids[] = {1, 13, 13, 3, 2};
    expect_decode(t, ids, 5, 1, "hello hello!", 12);
    dsq_tokenizer_free(t);
#undef SP
}

/* ==== bad input ============================================================================= */

static void test_bad_input(void **state) {
    (void)state;
    dsq_tokenizer *t = NULL;
    dsq_err e = {0};
    assert_int_equal(dsq_tokenizer_from_hf(&t, "/nonexistent/tokenizer.json", NULL, &e),
                     DSQ_NOT_FOUND);
    assert_null(t);
    assert_non_null(strstr(e.text, "/nonexistent/tokenizer.json"));
    dsq_err_clear(&e);
    assert_int_equal(dsq_tokenizer_from_hf_dir(&t, "/nonexistent", &e), DSQ_NOT_FOUND);
    dsq_err_clear(&e);
    assert_int_equal(dsq_tokenizer_from_llama2c(&t, "/nonexistent/tok.bin", 0, &e), DSQ_NOT_FOUND);

    /* malformed JSON */
    static const char bad_json[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}";
    dsq_err_clear(&e);
    assert_int_equal(dsq_tokenizer_from_hf_json(&t, bad_json, strlen(bad_json), NULL, 0, "x", &e),
                     DSQ_FORMAT);
    assert_null(t);
    assert_non_null(strstr(e.text, "line 1"));

    /* a merge naming an unknown token */
    json_t *m = json_pack("{s:s, s:{s:i, s:i}, s:[s]}", "type", "BPE", "vocab", "a", 0, "b", 1,
                          "merges", "a c");
    assert_null(from_doc(json_pack("{s:o, s:o}", "model", m, "pre_tokenizer", byte_level(1)),
                         DSQ_FORMAT, "'c' is not in the vocabulary"));
    /* a merge whose result is not a token */
    m = json_pack("{s:s, s:{s:i, s:i}, s:[s]}", "type", "BPE", "vocab", "a", 0, "b", 1, "merges",
                  "a b");
    assert_null(from_doc(json_pack("{s:o, s:o}", "model", m, "pre_tokenizer", byte_level(1)),
                         DSQ_FORMAT, "result 'ab'"));
    /* a merge that is not "a b" */
    m = json_pack("{s:s, s:{s:i}, s:[s]}", "type", "BPE", "vocab", "a", 0, "merges", "aa");
    assert_null(from_doc(json_pack("{s:o, s:o}", "model", m, "pre_tokenizer", byte_level(1)),
                         DSQ_FORMAT, "merge 0"));
    /* vocab ids out of range: negative, huge, not an integer */
    m = json_pack("{s:s, s:{s:i}, s:[]}", "type", "BPE", "vocab", "a", -1, "merges");
    assert_null(from_doc(json_pack("{s:o, s:o}", "model", m, "pre_tokenizer", byte_level(1)),
                         DSQ_RANGE, "'a'"));
    m = json_pack("{s:s, s:{s:I}, s:[]}", "type", "BPE", "vocab", "a", (json_int_t)1 << 40,
                  "merges");
    assert_null(from_doc(json_pack("{s:o, s:o}", "model", m, "pre_tokenizer", byte_level(1)),
                         DSQ_RANGE, NULL));
    m = json_pack("{s:s, s:{s:s}, s:[]}", "type", "BPE", "vocab", "a", "0", "merges");
    assert_null(from_doc(json_pack("{s:o, s:o}", "model", m, "pre_tokenizer", byte_level(1)),
                         DSQ_RANGE, NULL));
    /* two tokens with one id */
    m = json_pack("{s:s, s:{s:i, s:i}, s:[]}", "type", "BPE", "vocab", "a", 0, "b", 0, "merges");
    assert_null(from_doc(json_pack("{s:o, s:o}", "model", m, "pre_tokenizer", byte_level(1)),
                         DSQ_FORMAT, "share id 0"));
    /* an added token with an id out of range */
    assert_null(
        from_doc(json_pack("{s:o, s:[{s:i, s:s}], s:o}", "model", tiny_model(), "added_tokens",
                           "id", 1 << 30, "content", "<x>", "pre_tokenizer", byte_level(1)),
                 DSQ_RANGE, "added_tokens[0]"));
    /* a bad regex, an unsupported model, no ByteLevel */
    assert_null(from_doc(json_pack("{s:o, s:{s:s, s:[o,o]}}", "model", tiny_model(),
                                   "pre_tokenizer", "type", "Sequence", "pretokenizers",
                                   split_step("(unclosed"), byte_level(0)),
                         DSQ_FORMAT, "regex"));
    assert_null(from_doc(json_pack("{s:{s:s, s:{}}}", "model", "type", "Unigram", "vocab"),
                         DSQ_UNSUPPORTED, "Unigram"));
    assert_null(from_doc(json_pack("{s:o}", "model", tiny_model()), DSQ_UNSUPPORTED, "ByteLevel"));

    /* truncated tok512.bin: cut inside a token's bytes, inside a record header, and before the
     * header ends; each is DSQ_FORMAT with where it happened */
    char *p = tu_shared_path("data/stories260K/tok512.bin");
    size_t n = 0;
    uint8_t *bin = tu_read_file(p, &n);
    const size_t cuts[] = {n - 1, n - 9, 4 + 8 + 2, 3, 0};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        dsq_err_clear(&e);
        assert_int_equal(dsq_tokenizer_from_llama2c_mem(&t, bin, cuts[i], 512, "tok", &e),
                         DSQ_FORMAT);
        assert_null(t);
        assert_true(strstr(e.text, "truncated") != NULL || strstr(e.text, "too short") != NULL);
    }
    /* a token length beyond max_token_length */
    uint8_t *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, bin, n);
    copy[4 + 4] = 0xFF; /* first token's length 5 -> 255, above max_token_length 7 */
    dsq_err_clear(&e);
    assert_int_equal(dsq_tokenizer_from_llama2c_mem(&t, copy, n, 512, "tok", &e), DSQ_FORMAT);
    free(copy);
    free(bin);
    free(p);

    /* decode of an id outside the vocabulary */
    t = load_tok512();
    static const int32_t bad_ids[] = {5, 512};
    char *out = NULL;
    dsq_err_clear(&e);
    assert_int_equal(dsq_tokenizer_decode(t, bad_ids, 2, 0, &out, NULL, &e), DSQ_RANGE);
    assert_null(out);
    dsq_tokenizer_free(t);
    dsq_tokenizer_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_oracle),  cmocka_unit_test(test_hf_dir_and_specials),
        cmocka_unit_test(test_bpe_arrays),   cmocka_unit_test(test_regex_gpt2),
        cmocka_unit_test(test_regex_llama3), cmocka_unit_test(test_regex_dsv3),
        cmocka_unit_test(test_bpe_rules),    cmocka_unit_test(test_llama2c),
        cmocka_unit_test(test_spm_arrays),   cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
