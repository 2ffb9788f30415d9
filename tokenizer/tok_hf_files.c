/* tokenizer/tok_hf_files.c: the loaders of tok_hf_files.h (jansson). */
#include "tokenizer/tok_hf_files.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "tokenizer/tokenizer.h"

/* dir/name parsed; *out = NULL when the file does not exist. */
static dsq_status load_doc(const char *dir, const char *name, json_t **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = dsq_path_join(dir, name), *text = NULL;
    size_t len = 0;
    json_error_t je;
    *out = NULL;
    DSQ_CHECK(path != NULL, DSQ_NOMEM, err, "out of memory");
    if (access(path, F_OK) != 0)
        goto cleanup;
    DSQ_TRY(dsq_read_small_file(path, DSQ_TOK_MAX_JSON, &text, &len, err));
    *out = json_loadb(text, len, 0, &je);
    DSQ_CHECK(*out != NULL, DSQ_FORMAT, err, "%s: line %d: %s", path, je.line, je.text);
cleanup:
    free(path);
    free(text);
    return st;
}

static dsq_hf_kind kind_of(const json_t *v) {
    if (v == NULL)
        return DSQ_HF_ABSENT;
    switch (json_typeof(v)) {
        case JSON_NULL: return DSQ_HF_NULL;
        case JSON_TRUE: return DSQ_HF_TRUE;
        case JSON_FALSE: return DSQ_HF_FALSE;
        case JSON_STRING: return DSQ_HF_STRING;
        case JSON_ARRAY: return DSQ_HF_ARRAY;
        case JSON_OBJECT: return DSQ_HF_OBJECT;
        default: return DSQ_HF_OTHER;
    }
}

static void *alloc_n(size_t n, size_t size) {
    return calloc(n ? n : 1, size);
}

/* ---- tokenizer.json ------------------------------------------------------------------------ */

/* The pre-tokenizer name llama.cpp would pick, from the shape of the pre_tokenizer
 * (llama.cpp hashes the tokenization of a test text instead; the tokenizers dsq knows are
 * told apart by their regexes, those of tokenizer.h). NULL when unknown. */
static const char *detect_pre(const json_t *tok) {
    const json_t *pt = json_object_get(tok, "pre_tokenizer");
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (type == NULL)
        return NULL;
    if (strcmp(type, "ByteLevel") == 0) {
        const json_t *re = json_object_get(pt, "use_regex");
        return re == NULL || json_is_true(re) ? "gpt-2" : NULL;
    }
    if (strcmp(type, "Sequence") != 0)
        return NULL;
    const json_t *seq = json_object_get(pt, "pretokenizers");
    int has_digits = 0, has_cjk = 0;
    for (size_t i = 0; i < json_array_size(seq); i++) {
        const json_t *p = json_array_get(seq, i);
        const char *re = json_string_value(
            json_object_get(json_object_get(p, "pattern"), "Regex"));
        if (re == NULL)
            continue;
        if (strcmp(re, DSQ_TOK_RE_LLAMA3) == 0)
            return "llama-bpe";
        if (strcmp(re, DSQ_TOK_RE_DSV3_DIGITS) == 0)
            has_digits = 1;
        if (strncmp(re, DSQ_TOK_RE_DSV3_CJK, 7) == 0) /* "[一-龥": the CJK class's start */
            has_cjk = 1;
    }
    return has_digits && has_cjk ? "deepseek-v3" : NULL;
}

/* The id tokenizers gives each added token when it loads the file (AddedVocabulary): a
 * content already in the vocabulary, or added before, keeps that id; a new one takes the
 * next id past the vocabulary. Kept in doc->ids ({content: id}) for dsq_hf_tokjson_token_id. */
typedef struct tokjson_doc {
    json_t *root;
    json_t *ids; /* content -> load id of the added tokens */
} tokjson_doc;

dsq_status dsq_hf_tokjson_load(const char *dir, dsq_hf_tokjson **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_hf_tokjson *t = NULL;
    tokjson_doc *doc = NULL;
    json_t *root = NULL;
    *out = NULL;
    DSQ_TRY(load_doc(dir, "tokenizer.json", &root, err));
    if (root == NULL)
        return DSQ_OK;
    DSQ_CHECK((t = calloc(1, sizeof *t)) != NULL && (doc = calloc(1, sizeof *doc)) != NULL,
              DSQ_NOMEM, err, "out of memory");
    t->doc_ = doc;
    doc->root = root;
    root = NULL;
    const json_t *model = json_object_get(doc->root, "model");
    t->model_type = json_string_value(json_object_get(model, "type"));
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->decoder_type = json_string_value(json_object_get(json_object_get(doc->root, "decoder"),
                                                        "type"));
    t->pre = detect_pre(doc->root);

    const json_t *vocab = json_object_get(model, "vocab");
    t->vocab_is_object = json_is_object(vocab);
    t->n_vocab = json_object_size(vocab);
    DSQ_CHECK((t->vocab = alloc_n(t->n_vocab, sizeof *t->vocab)) != NULL, DSQ_NOMEM, err,
              "out of memory");
    const char *key;
    json_t *val;
    size_t k = 0;
    json_object_foreach((json_t *)vocab, key, val) {
        dsq_hf_vocab_entry *e = &t->vocab[k++];
        e->text = key;
        e->has_id = json_is_integer(val);
        e->id = (int64_t)json_integer_value(val);
    }

    const json_t *added = json_object_get(doc->root, "added_tokens");
    t->added_kind = kind_of(added);
    t->n_added = json_array_size(added);
    DSQ_CHECK((t->added = alloc_n(t->n_added, sizeof *t->added)) != NULL &&
                  (doc->ids = json_object()) != NULL,
              DSQ_NOMEM, err, "out of memory");
    int64_t next = (int64_t)t->n_vocab;
    for (size_t i = 0; i < t->n_added; i++) {
        const json_t *a = json_array_get(added, i);
        dsq_hf_added_token *e = &t->added[i];
        const json_t *id = json_object_get(a, "id");
        e->content = json_string_value(json_object_get(a, "content"));
        e->has_id = json_is_integer(id);
        e->id = (int64_t)json_integer_value(id);
        e->special = json_is_true(json_object_get(a, "special"));
        if (e->content == NULL || e->content[0] == '\0')
            continue; /* tokenizers cannot load it: no id */
        int64_t want = dsq_hf_tokjson_token_id(t, e->content);
        if (want < 0)
            want = next++;
        DSQ_CHECK(json_object_set_new(doc->ids, e->content, json_integer(want)) == 0, DSQ_NOMEM,
                  err, "out of memory");
    }

    const json_t *jm = json_object_get(model, "merges");
    t->n_merges = json_array_size(jm);
    DSQ_CHECK((t->merges = alloc_n(t->n_merges, sizeof *t->merges)) != NULL, DSQ_NOMEM, err,
              "out of memory");
    for (size_t i = 0; i < t->n_merges; i++) {
        const json_t *m = json_array_get(jm, i);
        dsq_hf_merge *e = &t->merges[i];
        if (json_is_string(m)) {
            e->text = json_string_value(m);
        } else if (json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            e->left = json_string_value(json_array_get(m, 0));
            e->right = json_string_value(json_array_get(m, 1));
        }
    }
    *out = t;
    t = NULL;
cleanup:
    json_decref(root);
    dsq_hf_tokjson_free(t);
    return st;
}

void dsq_hf_tokjson_free(dsq_hf_tokjson *t) {
    if (t == NULL)
        return;
    tokjson_doc *doc = t->doc_;
    if (doc != NULL) {
        json_decref(doc->root);
        json_decref(doc->ids);
        free(doc);
    }
    free(t->vocab);
    free(t->added);
    free(t->merges);
    free(t);
}

static int64_t vocab_id(const dsq_hf_tokjson *t, const char *text) {
    const tokjson_doc *doc = t->doc_;
    const json_t *v = json_object_get(json_object_get(json_object_get(doc->root, "model"),
                                                      "vocab"),
                                      text);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

int64_t dsq_hf_tokjson_vocab_id(const dsq_hf_tokjson *t, const char *text) {
    return vocab_id(t, text);
}

int64_t dsq_hf_tokjson_token_id(const dsq_hf_tokjson *t, const char *text) {
    const tokjson_doc *doc = t->doc_;
    const json_t *v = json_object_get(doc->ids, text);
    return v != NULL ? (int64_t)json_integer_value(v) : vocab_id(t, text);
}

const dsq_hf_added_token *dsq_hf_tokjson_added(const dsq_hf_tokjson *t, const char *text) {
    for (size_t i = 0; t != NULL && i < t->n_added; i++)
        if (t->added[i].content != NULL && strcmp(t->added[i].content, text) == 0)
            return &t->added[i];
    return NULL;
}

/* ---- tokenizer_config.json / special_tokens_map.json --------------------------------------- */

static const char *const special_names[DSQ_HF_N_SPECIAL] = {"bos", "eos", "unk", "sep",
                                                            "pad", "cls", "mask"};

const char *dsq_hf_special_name(int which) {
    return which >= 0 && which < DSQ_HF_N_SPECIAL ? special_names[which] : "?";
}

static dsq_hf_special special_of(const json_t *e) {
    dsq_hf_special s = {kind_of(e), NULL};
    if (json_is_string(e))
        s.content = json_string_value(e);
    else if (json_is_object(e))
        s.content = json_string_value(json_object_get(e, "content"));
    return s;
}

dsq_status dsq_hf_tokcfg_load(const char *dir, const char *name, dsq_hf_tokcfg **out,
                              dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_hf_tokcfg *c = NULL;
    json_t *root = NULL;
    *out = NULL;
    DSQ_TRY(load_doc(dir, name, &root, err));
    if (root == NULL)
        return DSQ_OK;
    DSQ_CHECK((c = calloc(1, sizeof *c)) != NULL, DSQ_NOMEM, err, "out of memory");
    c->doc_ = root;
    root = NULL;
    const json_t *r = c->doc_;
    c->is_object = json_is_object(r);
    for (int t = 0; t < DSQ_HF_N_SPECIAL; t++) {
        char k[32];
        snprintf(k, sizeof k, "%s_token", special_names[t]);
        c->special[t] = special_of(json_object_get(r, k));
    }
    c->eot = special_of(json_object_get(r, "eot_token"));
    c->add_bos_token = kind_of(json_object_get(r, "add_bos_token"));
    c->add_eos_token = kind_of(json_object_get(r, "add_eos_token"));
    c->add_prefix_space = kind_of(json_object_get(r, "add_prefix_space"));
    c->chat_template = json_string_value(json_object_get(r, "chat_template"));
    c->tokenizer_class = json_string_value(json_object_get(r, "tokenizer_class"));

    const json_t *dec = json_object_get(r, "added_tokens_decoder");
    c->decoder_kind = kind_of(dec);
    c->n_decoder = json_object_size(dec);
    DSQ_CHECK((c->decoder = alloc_n(c->n_decoder, sizeof *c->decoder)) != NULL, DSQ_NOMEM, err,
              "out of memory");
    const char *key;
    json_t *val;
    size_t k = 0;
    json_object_foreach((json_t *)dec, key, val) {
        dsq_hf_decoder_entry *e = &c->decoder[k++];
        e->key = key;
        e->content = json_string_value(json_object_get(val, "content"));
        e->special = json_is_true(json_object_get(val, "special"));
    }
    const json_t *extra = json_object_get(r, "additional_special_tokens");
    c->additional_kind = kind_of(extra);
    c->n_additional = json_array_size(extra);
    DSQ_CHECK((c->additional = alloc_n(c->n_additional, sizeof *c->additional)) != NULL,
              DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < c->n_additional; i++)
        c->additional[i] = special_of(json_array_get(extra, i));
    *out = c;
    c = NULL;
cleanup:
    json_decref(root);
    dsq_hf_tokcfg_free(c);
    return st;
}

void dsq_hf_tokcfg_free(dsq_hf_tokcfg *c) {
    if (c == NULL)
        return;
    json_decref(c->doc_);
    free(c->decoder);
    free(c->additional);
    free(c);
}

/* ---- added_tokens.json --------------------------------------------------------------------- */

dsq_status dsq_hf_added_json_load(const char *dir, dsq_hf_added_json **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_hf_added_json *a = NULL;
    json_t *root = NULL;
    *out = NULL;
    DSQ_TRY(load_doc(dir, "added_tokens.json", &root, err));
    if (root == NULL)
        return DSQ_OK;
    DSQ_CHECK((a = calloc(1, sizeof *a)) != NULL, DSQ_NOMEM, err, "out of memory");
    a->doc_ = root;
    const json_t *r = root;
    root = NULL;
    a->is_object = json_is_object(r);
    a->n = json_object_size(r);
    DSQ_CHECK((a->entries = alloc_n(a->n, sizeof *a->entries)) != NULL, DSQ_NOMEM, err,
              "out of memory");
    const char *key;
    json_t *val;
    size_t k = 0;
    json_object_foreach((json_t *)r, key, val) {
        dsq_hf_vocab_entry *e = &a->entries[k++];
        e->text = key;
        e->has_id = json_is_integer(val);
        e->id = (int64_t)json_integer_value(val);
    }
    *out = a;
    a = NULL;
cleanup:
    json_decref(root);
    dsq_hf_added_json_free(a);
    return st;
}

void dsq_hf_added_json_free(dsq_hf_added_json *a) {
    if (a == NULL)
        return;
    json_decref(a->doc_);
    free(a->entries);
    free(a);
}
