/* tokenizer/tok_hf.c: byte-level BPE from a Hugging Face tokenizer.json (+ tokenizer_config.json).
 *
 * The parts of tokenizer.json we read (tokenizers' serde layout):
 *   model          {"type": "BPE", "vocab": {token: id}, "merges": ["a b", ...] or [["a","b"],
 * ...], "unk_token", "ignore_merges", "dropout", "continuing_subword_prefix", ...} added_tokens
 * [{"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}] normalizer null
 * (or an empty Sequence) pre_tokenizer  ByteLevel | Split | Digits | Sequence of them
 *   post_processor TemplateProcessing | ByteLevel | RobertaProcessing | BertProcessing | Sequence
 *   decoder        not read: byte-level decoding is implied by the ByteLevel pre-tokenizer
 *
 * Limits: ids in [0, DSQ_TOK_MAX_VOCAB), token strings up to DSQ_TOK_MAX_TOKEN_LEN bytes, the
 * document up to DSQ_TOK_MAX_JSON bytes. Every id and string is checked before it sizes or
 * indexes anything, so a hostile file gives DSQ_FORMAT / DSQ_RANGE, never a crash. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/checked.h"
#include "core/file.h"
#include "tokenizer/tok_internal.h"

#define CONFIG_MAX_BYTES ((size_t)16 << 20)
#define MAX_PRETOK_STEPS 64
#define MAX_TEMPLATE_IDS 64

/* ==== strings of the vocabulary ============================================================= */

/* HF's ByteLevel decoder, per token: when every character is in the byte-level map the token
 * stands for those bytes; otherwise (added tokens such as "<｜begin▁of▁sentence｜>") its UTF-8
 * is taken as is. */
static int byte_level_decode(tok_buf *out, const char *s, size_t n) {
    const size_t start = out->n;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        const size_t l = dsq__tok_utf8_next(s + i, n - i, &cp);
        const int b = cp == 0xFFFFFFFFu ? -1 : dsq__tok_cp_to_byte(cp);
        if (b < 0) {
            out->n = start;
            return dsq__tok_buf_put(out, s, n);
        }
        const char c = (char)b;
        if (!dsq__tok_buf_put(out, &c, 1))
            return 0;
        i += l;
    }
    return 1;
}

/* Builds keys (vocabulary spelling) and decode bytes for every id. str/len give the model
 * vocabulary (NULL for ids it lacks); added tokens fill holes and, as in HF's id_to_token,
 * take precedence for what the id decodes to. */
static dsq_status build_strings(dsq_tokenizer *t, const char *const *str, const size_t *len,
                                dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_buf keys = {0}, dec = {0};
    size_t *koff = NULL, *doff = NULL;
    const char **astr = NULL;
    size_t *alen = NULL;
    const size_t nv = (size_t)t->n_vocab;
    koff = malloc((nv + 1) * sizeof(size_t));
    doff = malloc((nv + 1) * sizeof(size_t));
    astr = calloc(nv, sizeof(*astr));
    alen = calloc(nv, sizeof(*alen));
    DSQ_CHECK(koff && doff && astr && alen, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < t->n_added; i++) {
        astr[t->added[i].id] = t->added[i].content;
        alen[t->added[i].id] = t->added[i].len;
    }
    for (size_t id = 0; id < nv; id++) {
        koff[id] = keys.n;
        doff[id] = dec.n;
        const char *k = str[id] ? str[id] : astr[id];
        const size_t kn = str[id] ? len[id] : alen[id];
        if (k == NULL)
            continue; /* a hole in the id space */
        t->flags[id] |= TOK_F_PRESENT;
        DSQ_CHECK(dsq__tok_buf_put(&keys, k, kn), DSQ_NOMEM, err, "out of memory");
        const char *d = astr[id] ? astr[id] : k;
        const size_t dn = astr[id] ? alen[id] : kn;
        DSQ_CHECK(byte_level_decode(&dec, d, dn), DSQ_NOMEM, err, "out of memory");
    }
    koff[nv] = keys.n;
    doff[nv] = dec.n;
    DSQ_TRY(dsq__tok_set_strings(t, &keys, koff, &dec, doff, 0, err));
    koff = doff = NULL;
    for (int b = 0; b < 256; b++) {
        char u[2];
        const size_t un = dsq__tok_byte_to_utf8((uint8_t)b, u);
        t->byte_id[b] = dsq__tok_lookup(t, u, un);
    }
cleanup:
    free(keys.p);
    free(dec.p);
    free(koff);
    free(doff);
    free(astr);
    free(alen);
    return st;
}

/* One merge "a b" of the given rank: both halves and their concatenation must be tokens. */
static dsq_status add_merge(dsq_tokenizer *t, const char *a, size_t an, const char *b, size_t bn,
                            size_t rank, tok_buf *scratch, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int32_t ia = dsq__tok_lookup(t, a, an);
    const int32_t ib = dsq__tok_lookup(t, b, bn);
    DSQ_CHECK(ia >= 0, DSQ_FORMAT, err, "merge %zu: token '%.*s' is not in the vocabulary", rank,
              (int)(an > 64 ? 64 : an), a);
    DSQ_CHECK(ib >= 0, DSQ_FORMAT, err, "merge %zu: token '%.*s' is not in the vocabulary", rank,
              (int)(bn > 64 ? 64 : bn), b);
    scratch->n = 0;
    DSQ_CHECK(dsq__tok_buf_put(scratch, a, an) && dsq__tok_buf_put(scratch, b, bn), DSQ_NOMEM, err,
              "out of memory");
    const int32_t inew = dsq__tok_lookup(t, scratch->p, scratch->n);
    DSQ_CHECK(inew >= 0, DSQ_FORMAT, err, "merge %zu: result '%.*s' is not in the vocabulary", rank,
              (int)(scratch->n > 64 ? 64 : scratch->n), scratch->p);
    dsq__tok_merges_put(t, ia, ib, (int32_t)rank, inew);
cleanup:
    return st;
}

static int u64_cmp(const void *x, const void *y) {
    const uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* Candidates per first byte, longest first, for the leftmost-longest search. Sorting packed
 * keys (first byte : 8 | DSQ_TOK_MAX_TOKEN_LEN - len : 17 | index : 24) keeps qsort free of
 * global state. */
static dsq_status index_added(dsq_tokenizer *t, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint64_t *keys = NULL;
    int need_word = 0;
    t->added_by_byte = calloc(257, sizeof(uint32_t));
    t->added_order = malloc((t->n_added ? t->n_added : 1) * sizeof(uint32_t));
    keys = malloc((t->n_added ? t->n_added : 1) * sizeof(uint64_t));
    DSQ_CHECK(t->added_by_byte && t->added_order && keys, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        t->added_by_byte[(uint8_t)a->content[0] + 1]++;
        need_word |= a->single_word;
        keys[i] = ((uint64_t)(uint8_t)a->content[0] << 41) |
                  ((uint64_t)(DSQ_TOK_MAX_TOKEN_LEN - a->len) << 24) | (uint64_t)i;
    }
    for (int b = 0; b < 256; b++)
        t->added_by_byte[b + 1] += t->added_by_byte[b];
    qsort(keys, t->n_added, sizeof(uint64_t), u64_cmp);
    for (size_t i = 0; i < t->n_added; i++)
        t->added_order[i] = (uint32_t)(keys[i] & 0xFFFFFF);
    if (need_word) {
        static const char word[] = "[\\p{L}\\p{N}]";
        DSQ_TRY(dsq__tok_regex_compile(&t->word_re, word, sizeof(word) - 1, err));
    }
cleanup:
    free(keys);
    return st;
}

/* ==== JSON helpers ========================================================================== */

static int jbool(const json_t *o, const char *key, int dflt) {
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* A string member, or NULL when absent or not a string. */
static const char *jstr(const json_t *o, const char *key, size_t *len) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    if (len != NULL)
        *len = json_string_length(v);
    return json_string_value(v);
}

/* An id from JSON: an integer in [0, DSQ_TOK_MAX_VOCAB). */
static int jid(const json_t *v, int32_t *id) {
    if (!json_is_integer(v))
        return 0;
    const json_int_t x = json_integer_value(v);
    if (x < 0 || x >= DSQ_TOK_MAX_VOCAB)
        return 0;
    *id = (int32_t)x;
    return 1;
}

/* ==== pre-tokenizer ========================================================================= */

static dsq_status add_step(dsq_tokenizer *t, tok_pretok s, dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_pretok *p = NULL;
    DSQ_CHECK(t->n_pretok < MAX_PRETOK_STEPS, DSQ_RANGE, err, "pre_tokenizer: more than %d steps",
              MAX_PRETOK_STEPS);
    p = realloc(t->pretok, (t->n_pretok + 1) * sizeof(*p));
    DSQ_CHECK(p != NULL, DSQ_NOMEM, err, "out of memory");
    t->pretok = p;
    t->pretok[t->n_pretok++] = s;
    s.re = NULL;
    s.literal = NULL;
cleanup:
    pcre2_code_free(s.re);
    free(s.literal);
    return st;
}

static dsq_status parse_pretok(dsq_tokenizer *t, const json_t *pt, int depth, int *byte_level,
                               dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_pretok s = {0};
    DSQ_CHECK(json_is_object(pt), DSQ_FORMAT, err, "pre_tokenizer: not an object");
    DSQ_CHECK(depth < 8, DSQ_UNSUPPORTED, err, "pre_tokenizer: Sequences nested too deeply");
    const char *type = jstr(pt, "type", NULL);
    DSQ_CHECK(type != NULL, DSQ_FORMAT, err, "pre_tokenizer: no type");
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(pt, "pretokenizers");
        DSQ_CHECK(json_is_array(arr), DSQ_FORMAT, err, "pre_tokenizer Sequence: no pretokenizers");
        for (size_t i = 0; i < json_array_size(arr); i++)
            DSQ_TRY(parse_pretok(t, json_array_get(arr, i), depth + 1, byte_level, err));
    } else if (strcmp(type, "ByteLevel") == 0) {
        *byte_level = 1;
        s.add_prefix_space = jbool(pt, "add_prefix_space", 0);
        s.behavior = TOK_SPLIT_ISOLATED;
        if (jbool(pt, "use_regex", 1))
            DSQ_TRY(dsq__tok_regex_compile(&s.re, DSQ_TOK_RE_GPT2, strlen(DSQ_TOK_RE_GPT2), err));
        DSQ_TRY(add_step(t, s, err));
        s.re = NULL;
    } else if (strcmp(type, "Split") == 0) {
        const json_t *pat = json_object_get(pt, "pattern");
        size_t n = 0;
        const char *re = jstr(pat, "Regex", &n);
        const char *lit = jstr(pat, "String", NULL);
        DSQ_CHECK(re != NULL || lit != NULL, DSQ_FORMAT, err,
                  "pre_tokenizer Split: pattern is neither {\"Regex\": ...} nor {\"String\": ...}");
        if (re != NULL) {
            DSQ_TRY(dsq__tok_regex_compile(&s.re, re, n, err));
        } else {
            n = json_string_length(json_object_get(pat, "String"));
            s.literal = malloc(n + 1);
            DSQ_CHECK(s.literal != NULL, DSQ_NOMEM, err, "out of memory");
            memcpy(s.literal, lit, n);
            s.literal[n] = '\0';
            s.literal_len = n;
        }
        const char *b = jstr(pt, "behavior", NULL);
        DSQ_CHECK(b != NULL, DSQ_FORMAT, err, "pre_tokenizer Split: no behavior");
        if (strcmp(b, "Removed") == 0)
            s.behavior = TOK_SPLIT_REMOVED;
        else if (strcmp(b, "Isolated") == 0)
            s.behavior = TOK_SPLIT_ISOLATED;
        else if (strcmp(b, "MergedWithPrevious") == 0)
            s.behavior = TOK_SPLIT_MERGED_WITH_PREVIOUS;
        else if (strcmp(b, "MergedWithNext") == 0)
            s.behavior = TOK_SPLIT_MERGED_WITH_NEXT;
        else if (strcmp(b, "Contiguous") == 0)
            s.behavior = TOK_SPLIT_CONTIGUOUS;
        else
            DSQ_CHECK(0, DSQ_UNSUPPORTED, err, "pre_tokenizer Split: behavior '%.40s'", b);
        s.invert = jbool(pt, "invert", 0);
        DSQ_TRY(add_step(t, s, err));
        s.re = NULL;
        s.literal = NULL;
    } else if (strcmp(type, "Digits") == 0) {
        /* HF splits on char::is_numeric, one char per match: Contiguous joins runs of digits,
         * individual_digits keeps them Isolated */
        static const char digit[] = "\\p{N}";
        DSQ_TRY(dsq__tok_regex_compile(&s.re, digit, sizeof(digit) - 1, err));
        s.behavior = jbool(pt, "individual_digits", 0) ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS;
        DSQ_TRY(add_step(t, s, err));
        s.re = NULL;
    } else {
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err, "pre_tokenizer type '%.40s'", type);
    }
cleanup:
    pcre2_code_free(s.re);
    free(s.literal);
    return st;
}

/* ==== post-processor ======================================================================== */

typedef struct tmpl {
    int32_t pre[MAX_TEMPLATE_IDS], post[MAX_TEMPLATE_IDS];
    size_t npre, npost;
    int seen; /* a processor that adds tokens was found */
} tmpl;

static dsq_status tmpl_add(tmpl *tp, int after, int32_t id, dsq_err *err) {
    dsq_status st = DSQ_OK;
    size_t *n = after ? &tp->npost : &tp->npre;
    DSQ_CHECK(*n < MAX_TEMPLATE_IDS, DSQ_RANGE, err, "post_processor: too many special tokens");
    (after ? tp->post : tp->pre)[(*n)++] = id;
cleanup:
    return st;
}

static dsq_status parse_post(const json_t *pp, int depth, tmpl *tp, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DSQ_CHECK(json_is_object(pp), DSQ_FORMAT, err, "post_processor: not an object");
    DSQ_CHECK(depth < 8, DSQ_UNSUPPORTED, err, "post_processor: Sequences nested too deeply");
    const char *type = jstr(pp, "type", NULL);
    DSQ_CHECK(type != NULL, DSQ_FORMAT, err, "post_processor: no type");
    if (strcmp(type, "ByteLevel") == 0) {
        /* only trims offsets */
    } else if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(pp, "processors");
        DSQ_CHECK(json_is_array(arr), DSQ_FORMAT, err, "post_processor Sequence: no processors");
        for (size_t i = 0; i < json_array_size(arr); i++)
            DSQ_TRY(parse_post(json_array_get(arr, i), depth + 1, tp, err));
    } else if (strcmp(type, "TemplateProcessing") == 0) {
        const json_t *single = json_object_get(pp, "single");
        const json_t *specials = json_object_get(pp, "special_tokens");
        DSQ_CHECK(json_is_array(single), DSQ_FORMAT, err, "TemplateProcessing: no single");
        int after = 0;
        tp->seen = 1;
        for (size_t i = 0; i < json_array_size(single); i++) {
            const json_t *item = json_array_get(single, i);
            if (json_object_get(item, "Sequence") != NULL) {
                after = 1;
                continue;
            }
            const json_t *sp = json_object_get(item, "SpecialToken");
            const char *name = jstr(sp, "id", NULL);
            DSQ_CHECK(name != NULL, DSQ_FORMAT, err, "TemplateProcessing: bad item %zu", i);
            const json_t *ids = json_object_get(json_object_get(specials, name), "ids");
            DSQ_CHECK(json_is_array(ids), DSQ_FORMAT, err,
                      "TemplateProcessing: special token '%.60s' has no ids", name);
            for (size_t k = 0; k < json_array_size(ids); k++) {
                int32_t id;
                DSQ_CHECK(jid(json_array_get(ids, k), &id), DSQ_RANGE, err,
                          "TemplateProcessing: id of '%.60s' out of range", name);
                DSQ_TRY(tmpl_add(tp, after, id, err));
            }
        }
    } else if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        int32_t cls, sep;
        DSQ_CHECK(jid(json_array_get(json_object_get(pp, "cls"), 1), &cls) &&
                      jid(json_array_get(json_object_get(pp, "sep"), 1), &sep),
                  DSQ_FORMAT, err, "%s: bad cls/sep", type);
        tp->seen = 1;
        DSQ_TRY(tmpl_add(tp, 0, cls, err));
        DSQ_TRY(tmpl_add(tp, 1, sep, err));
    } else {
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err, "post_processor type '%.40s'", type);
    }
cleanup:
    return st;
}

/* ==== the loader ============================================================================ */

/* bos_token / eos_token in tokenizer_config.json: a string or an AddedToken object. */
static int32_t config_token(const dsq_tokenizer *t, const json_t *cfg, const char *key) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    const size_t n = json_string_length(v);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].content, s, n) == 0)
            return t->added[i].id;
    return dsq__tok_lookup(t, s, n);
}

static dsq_status parse_added(dsq_tokenizer *t, const json_t *arr, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (arr == NULL || json_is_null(arr))
        goto cleanup;
    DSQ_CHECK(json_is_array(arr), DSQ_FORMAT, err, "added_tokens: not an array");
    const size_t n = json_array_size(arr);
    DSQ_CHECK(n < DSQ_TOK_MAX_VOCAB, DSQ_RANGE, err, "added_tokens: %zu entries", n);
    t->added = calloc(n ? n : 1, sizeof(tok_added));
    DSQ_CHECK(t->added != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_array_get(arr, i);
        tok_added *d = &t->added[t->n_added];
        size_t len = 0;
        const char *c = jstr(a, "content", &len);
        DSQ_CHECK(jid(json_object_get(a, "id"), &d->id), DSQ_RANGE, err,
                  "added_tokens[%zu]: id missing or out of range", i);
        DSQ_CHECK(c != NULL && len > 0 && len <= DSQ_TOK_MAX_TOKEN_LEN, DSQ_FORMAT, err,
                  "added_tokens[%zu]: content missing, empty or too long", i);
        d->content = malloc(len + 1);
        DSQ_CHECK(d->content != NULL, DSQ_NOMEM, err, "out of memory");
        memcpy(d->content, c, len);
        d->content[len] = '\0';
        d->len = len;
        d->special = jbool(a, "special", 0);
        d->lstrip = jbool(a, "lstrip", 0);
        d->rstrip = jbool(a, "rstrip", 0);
        d->single_word = jbool(a, "single_word", 0);
        d->normalized = jbool(a, "normalized", !d->special);
        t->n_added++;
    }
cleanup:
    return st;
}

static dsq_status load_hf(dsq_tokenizer **out, const json_t *root, const json_t *cfg,
                          dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_tokenizer *t = NULL;
    const char **str = NULL;
    size_t *slen = NULL;
    tok_buf scratch = {0};
    tmpl tp = {0};
    int byte_level = 0;

    DSQ_CHECK(json_is_object(root), DSQ_FORMAT, err, "not a JSON object");
    const json_t *model = json_object_get(root, "model");
    DSQ_CHECK(json_is_object(model), DSQ_FORMAT, err, "no \"model\" object");
    const char *mtype = jstr(model, "type", NULL);
    DSQ_CHECK(mtype == NULL || strcmp(mtype, "BPE") == 0, DSQ_UNSUPPORTED, err,
              "model type '%.40s' (only BPE)", mtype ? mtype : "");
    json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    DSQ_CHECK(json_is_object(vocab), DSQ_FORMAT, err, "model.vocab is not an object");
    DSQ_CHECK(json_is_array(merges), DSQ_FORMAT, err, "model.merges is not an array");
    DSQ_CHECK(jstr(model, "continuing_subword_prefix", NULL) == NULL &&
                  jstr(model, "end_of_word_suffix", NULL) == NULL,
              DSQ_UNSUPPORTED, err, "BPE with continuing_subword_prefix/end_of_word_suffix");
    const json_t *dropout = json_object_get(model, "dropout");
    DSQ_CHECK(dropout == NULL || json_is_null(dropout) ||
                  (json_is_number(dropout) && json_number_value(dropout) <= 0.0),
              DSQ_UNSUPPORTED, err, "BPE dropout (random, not reproducible)");
    const json_t *norm = json_object_get(root, "normalizer");
    if (norm != NULL && !json_is_null(norm)) {
        const char *nt = jstr(norm, "type", NULL);
        DSQ_CHECK(nt != NULL && strcmp(nt, "Sequence") == 0 &&
                      json_array_size(json_object_get(norm, "normalizers")) == 0,
                  DSQ_UNSUPPORTED, err, "normalizer '%.40s'", nt ? nt : "?");
    }

    /* the id space: one past the largest id of the vocabulary and the added tokens */
    int32_t max_id = -1;
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach(vocab, key, klen, val) {
        int32_t id;
        DSQ_CHECK(jid(val, &id), DSQ_RANGE, err,
                  "vocab: id of token '%.60s' is not an integer in [0, %d)", key,
                  DSQ_TOK_MAX_VOCAB);
        DSQ_CHECK(klen > 0 && klen <= DSQ_TOK_MAX_TOKEN_LEN, DSQ_FORMAT, err,
                  "vocab: token %ld is empty or longer than %d bytes", (long)id,
                  DSQ_TOK_MAX_TOKEN_LEN);
        if (id > max_id)
            max_id = id;
    }
    const json_t *added = json_object_get(root, "added_tokens");
    for (size_t i = 0; json_is_array(added) && i < json_array_size(added); i++) {
        int32_t id;
        if (jid(json_object_get(json_array_get(added, i), "id"), &id) && id > max_id)
            max_id = id;
    }
    DSQ_CHECK(max_id >= 0, DSQ_FORMAT, err, "empty vocabulary");
    DSQ_TRY(dsq__tok_alloc(&t, TOK_KIND_BPE, max_id + 1, err));
    DSQ_TRY(parse_added(t, added, err));

    str = calloc((size_t)t->n_vocab, sizeof(*str));
    slen = calloc((size_t)t->n_vocab, sizeof(*slen));
    DSQ_CHECK(str != NULL && slen != NULL, DSQ_NOMEM, err, "out of memory");
    json_object_keylen_foreach(vocab, key, klen, val) {
        const int32_t id = (int32_t)json_integer_value(val);
        DSQ_CHECK(str[id] == NULL, DSQ_FORMAT, err,
                  "vocab: tokens '%.60s' and '%.60s' share id %ld", str[id], key, (long)id);
        str[id] = key;
        slen[id] = klen;
    }
    DSQ_TRY(build_strings(t, str, slen, err));
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].special)
            t->flags[t->added[i].id] |= TOK_F_SPECIAL;
    DSQ_TRY(index_added(t, err));

    const size_t nm = json_array_size(merges);
    DSQ_CHECK(nm < (size_t)INT32_MAX / 4, DSQ_RANGE, err, "%zu merges", nm);
    DSQ_TRY(dsq__tok_merges_init(t, nm, err));
    for (size_t r = 0; r < nm; r++) {
        const json_t *m = json_array_get(merges, r);
        if (json_is_string(m)) { /* "a b": split at the first space (tokens hold no raw space) */
            const char *s = json_string_value(m);
            const size_t n = json_string_length(m);
            const char *sp = memchr(s, ' ', n);
            DSQ_CHECK(sp != NULL, DSQ_FORMAT, err, "merge %zu: '%.60s' is not \"a b\"", r, s);
            DSQ_TRY(add_merge(t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp - s) - 1, r, &scratch,
                              err));
        } else {
            const json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            DSQ_CHECK(json_is_array(m) && json_array_size(m) == 2 && json_is_string(a) &&
                          json_is_string(b),
                      DSQ_FORMAT, err, "merge %zu: neither \"a b\" nor [\"a\", \"b\"]", r);
            DSQ_TRY(add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
                              json_string_length(b), r, &scratch, err));
        }
    }
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    size_t un = 0;
    const char *unk = jstr(model, "unk_token", &un);
    if (unk != NULL)
        t->unk_id = dsq__tok_lookup(t, unk, un);

    const json_t *pt = json_object_get(root, "pre_tokenizer");
    if (pt != NULL && !json_is_null(pt))
        DSQ_TRY(parse_pretok(t, pt, 0, &byte_level, err));
    DSQ_CHECK(byte_level, DSQ_UNSUPPORTED, err,
              "no ByteLevel pre-tokenizer: only byte-level BPE tokenizer.json is supported");

    const json_t *pp = json_object_get(root, "post_processor");
    if (pp != NULL && !json_is_null(pp))
        DSQ_TRY(parse_post(pp, 0, &tp, err));
    for (size_t i = 0; i < tp.npre; i++)
        DSQ_CHECK(tp.pre[i] < t->n_vocab && (t->flags[tp.pre[i]] & TOK_F_PRESENT), DSQ_RANGE, err,
                  "post_processor: id %ld is not in the vocabulary", (long)tp.pre[i]);
    for (size_t i = 0; i < tp.npost; i++)
        DSQ_CHECK(tp.post[i] < t->n_vocab && (t->flags[tp.post[i]] & TOK_F_PRESENT), DSQ_RANGE, err,
                  "post_processor: id %ld is not in the vocabulary", (long)tp.post[i]);

    /* bos/eos: the config names them; without one, a one-token template prefix is bos */
    t->bos_id = cfg ? config_token(t, cfg, "bos_token") : -1;
    t->eos_id = cfg ? config_token(t, cfg, "eos_token") : -1;
    if (t->bos_id < 0 && tp.npre == 1)
        t->bos_id = tp.pre[0];
    const json_t *ab = cfg ? json_object_get(cfg, "add_bos_token") : NULL;
    const json_t *ae = cfg ? json_object_get(cfg, "add_eos_token") : NULL;
    if (json_is_boolean(ab)) {
        DSQ_CHECK(!json_is_true(ab) || t->bos_id >= 0, DSQ_FORMAT, err,
                  "tokenizer_config: add_bos_token without a known bos_token");
        tp.npre = 0;
        if (json_is_true(ab))
            tp.pre[tp.npre++] = t->bos_id;
    }
    if (json_is_boolean(ae)) {
        DSQ_CHECK(!json_is_true(ae) || t->eos_id >= 0, DSQ_FORMAT, err,
                  "tokenizer_config: add_eos_token without a known eos_token");
        tp.npost = 0;
        if (json_is_true(ae))
            tp.post[tp.npost++] = t->eos_id;
    }
    t->prefix = malloc((tp.npre + 1) * sizeof(int32_t));
    t->suffix = malloc((tp.npost + 1) * sizeof(int32_t));
    DSQ_CHECK(t->prefix && t->suffix, DSQ_NOMEM, err, "out of memory");
    memcpy(t->prefix, tp.pre, tp.npre * sizeof(int32_t));
    memcpy(t->suffix, tp.post, tp.npost * sizeof(int32_t));
    t->n_prefix = tp.npre;
    t->n_suffix = tp.npost;

    *out = t;
    t = NULL;
cleanup:
    dsq_tokenizer_free(t);
    free(str);
    free(slen);
    free(scratch.p);
    return st;
}

dsq_status dsq_tokenizer_from_hf_json(dsq_tokenizer **out, const char *json, size_t len,
                                      const char *config_json, size_t config_len,
                                      const char *source, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_t *root = NULL, *cfg = NULL;
    json_error_t je;
    dsq_err local = {0};
    const char *src = source ? source : "tokenizer.json";
    *out = NULL;
    DSQ_CHECK(json != NULL, DSQ_INVALID_ARG, err, "%s: no JSON given", src);
    DSQ_CHECK(len <= DSQ_TOK_MAX_JSON, DSQ_RANGE, err, "%s: %zu bytes is too large", src, len);
    root = json_loadb(json, len, JSON_ALLOW_NUL, &je);
    DSQ_CHECK(root != NULL, DSQ_FORMAT, err, "%s: line %d column %d: %s", src, je.line, je.column,
              je.text);
    if (config_json != NULL) {
        cfg = json_loadb(config_json, config_len, JSON_ALLOW_NUL, &je);
        DSQ_CHECK(cfg != NULL && json_is_object(cfg), DSQ_FORMAT, err,
                  "tokenizer_config.json: line %d column %d: %s", je.line, je.column,
                  cfg ? "not an object" : je.text);
    }
    /* load through a local record so that the message can be prefixed with the source name */
    st = load_hf(out, root, cfg, &local);
    if (st != DSQ_OK)
        dsq_err_set(err, st, "%s: %s", src, local.text);
cleanup:
    json_decref(root);
    json_decref(cfg);
    return st;
}

dsq_status dsq_tokenizer_from_hf(dsq_tokenizer **out, const char *tokenizer_json_path,
                                 const char *tokenizer_config_path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_map m = {0};
    char *cfg = NULL;
    size_t cfg_len = 0;
    *out = NULL;
    DSQ_CHECK(tokenizer_json_path != NULL, DSQ_INVALID_ARG, err, "no tokenizer.json path");
    DSQ_TRY(dsq_map_open(&m, tokenizer_json_path, err));
    if (tokenizer_config_path != NULL)
        DSQ_TRY(dsq_read_small_file(tokenizer_config_path, CONFIG_MAX_BYTES, &cfg, &cfg_len, err));
    DSQ_TRY(dsq_tokenizer_from_hf_json(out, m.data ? (const char *)m.data : "", m.size, cfg,
                                       cfg_len, tokenizer_json_path, err));
cleanup:
    dsq_map_close(&m);
    free(cfg);
    return st;
}

dsq_status dsq_tokenizer_from_hf_dir(dsq_tokenizer **out, const char *dir, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *tj = NULL, *tc = NULL;
    *out = NULL;
    DSQ_CHECK(dir != NULL, DSQ_INVALID_ARG, err, "no directory");
    tj = dsq_path_join(dir, "tokenizer.json");
    tc = dsq_path_join(dir, "tokenizer_config.json");
    DSQ_CHECK(tj != NULL && tc != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_CHECK(access(tj, F_OK) == 0, DSQ_NOT_FOUND, err, "%s: not found", tj);
    DSQ_TRY(dsq_tokenizer_from_hf(out, tj, access(tc, F_OK) == 0 ? tc : NULL, err));
cleanup:
    free(tj);
    free(tc);
    return st;
}

/* ==== byte-level BPE from arrays (GGUF "gpt2") ============================================== */

/* A Split(Isolated) step; ByteLevel with use_regex is the same step with the GPT-2 regex, and
 * ByteLevel without regex or prefix space is a no-op, so these chains need no other kind. */
static dsq_status add_regex_step(dsq_tokenizer *t, const char *re, dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_pretok s = {0};
    s.behavior = TOK_SPLIT_ISOLATED;
    DSQ_TRY(dsq__tok_regex_compile(&s.re, re, strlen(re), err));
    DSQ_TRY(add_step(t, s, err));
    s.re = NULL;
cleanup:
    pcre2_code_free(s.re);
    return st;
}

/* The pre-tokenizer chains of the tokenizer.json files llama.cpp names these after. */
static dsq_status pretok_by_name(dsq_tokenizer *t, const char *pre, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (pre == NULL || strcmp(pre, "default") == 0 || strcmp(pre, "gpt-2") == 0 ||
        strcmp(pre, "gpt2") == 0) {
        DSQ_TRY(add_regex_step(t, DSQ_TOK_RE_GPT2, err));
    } else if (strcmp(pre, "llama-bpe") == 0 || strcmp(pre, "llama3") == 0 ||
               strcmp(pre, "llama-v3") == 0) {
        DSQ_TRY(add_regex_step(t, DSQ_TOK_RE_LLAMA3, err));
        t->ignore_merges = 1;
    } else if (strcmp(pre, "deepseek-v3") == 0) {
        DSQ_TRY(add_regex_step(t, DSQ_TOK_RE_DSV3_DIGITS, err));
        DSQ_TRY(add_regex_step(t, DSQ_TOK_RE_DSV3_CJK, err));
        DSQ_TRY(add_regex_step(t, DSQ_TOK_RE_DSV3_MAIN, err));
    } else {
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err, "BPE pre-tokenizer '%.40s'", pre);
    }
cleanup:
    return st;
}

dsq_status dsq_tokenizer_from_bpe_arrays(dsq_tokenizer **out, const dsq_bpe_vocab *v,
                                         dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_tokenizer *t = NULL;
    const char **str = NULL;
    size_t *slen = NULL;
    tok_buf scratch = {0};
    *out = NULL;
    DSQ_CHECK(v != NULL && v->tokens != NULL && (v->merges != NULL || v->n_merges == 0),
              DSQ_INVALID_ARG, err, "bpe: no tokens");
    DSQ_CHECK(v->n > 0 && v->n <= DSQ_TOK_MAX_VOCAB, DSQ_RANGE, err,
              "bpe: %zu tokens (1 .. %d allowed)", v->n, DSQ_TOK_MAX_VOCAB);
    const int32_t nv = (int32_t)v->n;
    DSQ_CHECK(v->bos_id >= -1 && v->bos_id < nv && v->eos_id >= -1 && v->eos_id < nv, DSQ_RANGE,
              err, "bpe: bos %ld / eos %ld outside the %ld tokens", (long)v->bos_id,
              (long)v->eos_id, (long)nv);
    DSQ_CHECK(!v->add_bos || v->bos_id >= 0, DSQ_INVALID_ARG, err, "bpe: add_bos without bos");
    DSQ_CHECK(!v->add_eos || v->eos_id >= 0, DSQ_INVALID_ARG, err, "bpe: add_eos without eos");
    DSQ_CHECK(v->n_merges < (size_t)INT32_MAX / 4, DSQ_RANGE, err, "bpe: %zu merges", v->n_merges);
    DSQ_TRY(dsq__tok_alloc(&t, TOK_KIND_BPE, nv, err));
    str = calloc(v->n, sizeof(*str));
    slen = calloc(v->n, sizeof(*slen));
    t->added = calloc(v->n, sizeof(tok_added));
    t->prefix = malloc(sizeof(int32_t));
    t->suffix = malloc(sizeof(int32_t));
    DSQ_CHECK(str && slen && t->added && t->prefix && t->suffix, DSQ_NOMEM, err, "out of memory");
    for (size_t id = 0; id < v->n; id++) {
        DSQ_CHECK(v->tokens[id] != NULL, DSQ_INVALID_ARG, err, "bpe: token %zu is NULL", id);
        str[id] = v->tokens[id];
        slen[id] = v->token_lens ? v->token_lens[id] : strlen(str[id]);
        DSQ_CHECK(slen[id] <= DSQ_TOK_MAX_TOKEN_LEN, DSQ_RANGE, err, "bpe: token %zu is %zu bytes",
                  id, slen[id]);
        const int32_t type = v->types ? v->types[id] : DSQ_TOKTYPE_NORMAL;
        if ((type == DSQ_TOKTYPE_CONTROL || type == DSQ_TOKTYPE_USER_DEFINED) && slen[id] > 0) {
            tok_added *a = &t->added[t->n_added];
            a->content = malloc(slen[id] + 1);
            DSQ_CHECK(a->content != NULL, DSQ_NOMEM, err, "out of memory");
            memcpy(a->content, str[id], slen[id]);
            a->content[slen[id]] = '\0';
            a->len = slen[id];
            a->id = (int32_t)id;
            a->special = type == DSQ_TOKTYPE_CONTROL;
            t->n_added++;
        }
    }
    DSQ_TRY(build_strings(t, str, slen, err));
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].special)
            t->flags[t->added[i].id] |= TOK_F_SPECIAL;
    DSQ_TRY(index_added(t, err));
    DSQ_TRY(dsq__tok_merges_init(t, v->n_merges, err));
    for (size_t r = 0; r < v->n_merges; r++) {
        const char *s = v->merges[r];
        DSQ_CHECK(s != NULL, DSQ_INVALID_ARG, err, "bpe: merge %zu is NULL", r);
        const size_t n = v->merge_lens ? v->merge_lens[r] : strlen(s);
        const char *sp = memchr(s, ' ', n);
        DSQ_CHECK(sp != NULL, DSQ_FORMAT, err, "bpe: merge %zu: '%.60s' is not \"a b\"", r, s);
        DSQ_TRY(
            add_merge(t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp - s) - 1, r, &scratch, err));
    }
    DSQ_TRY(pretok_by_name(t, v->pre, err));
    t->bos_id = v->bos_id;
    t->eos_id = v->eos_id;
    if (v->add_bos)
        t->prefix[t->n_prefix++] = v->bos_id;
    if (v->add_eos)
        t->suffix[t->n_suffix++] = v->eos_id;
    *out = t;
    t = NULL;
cleanup:
    dsq_tokenizer_free(t);
    free(str);
    free(slen);
    free(scratch.p);
    return st;
}
