/* gguf_export/gguf_vocab.c: tokenizer metadata for GGUF (see gguf_vocab.h). */
#include "gguf_export/gguf_vocab.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "tokenizer/tok_spm_model.h"

#define MAX_JSON ((size_t)1 << 30)

/* gguf-py TokenType */
enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* Llama 3's pre-tokenizer regex, as tokenizer.json stores it (llama.cpp's "llama-bpe"). */
static const char llama3_re[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static dsq_status load_json(const char *dir, const char *name, int required, json_t **out,
                            dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = dsq_path_join(dir, name), *text = NULL;
    size_t len = 0;
    json_error_t je;
    *out = NULL;
    DSQ_CHECK(path != NULL, DSQ_NOMEM, err, "out of memory");
    if (access(path, F_OK) != 0) {
        DSQ_CHECK(!required, DSQ_NOT_FOUND, err, "%s: not found (the GGUF needs the tokenizer)",
                  path);
        goto cleanup;
    }
    DSQ_TRY(dsq_read_small_file(path, MAX_JSON, &text, &len, err));
    *out = json_loadb(text, len, 0, &je);
    DSQ_CHECK(*out != NULL, DSQ_FORMAT, err, "%s: line %d: %s", path, je.line, je.text);
cleanup:
    free(path);
    free(text);
    return st;
}

/* The pre-tokenizer name llama.cpp would pick, from the shape of the pre_tokenizer
 * (llama.cpp hashes the tokenization of a test text instead; the tokenizers dsq knows are
 * told apart by their regexes). NULL when unknown. */
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
        if (strcmp(re, llama3_re) == 0)
            return "llama-bpe";
        if (strcmp(re, "\\p{N}{1,3}") == 0)
            has_digits = 1;
        if (strncmp(re, "[\xe4\xb8\x80-\xe9\xbe\xa5", 7) == 0) /* "[一-龥" */
            has_cjk = 1;
    }
    return has_digits && has_cjk ? "deepseek-v3" : NULL;
}

/* convert_hf_to_gguf.py does_token_look_special */
static int looks_special(const char *t) {
    const size_t n = strlen(t);
#define STARTS(p) (strncmp(t, p, strlen(p)) == 0)
#define ENDS(s) (n >= strlen(s) && strcmp(t + n - strlen(s), s) == 0)
    if (strcmp(t, "<pad>") == 0 || strcmp(t, "<mask>") == 0 || strcmp(t, "<2mass>") == 0 ||
        strcmp(t, "[@BOS@]") == 0)
        return 1;
    return (STARTS("<|") && ENDS("|>")) ||
           (STARTS("<\xef\xbd\x9c") && ENDS("\xef\xbd\x9c>")) || /* <｜ ... ｜> */
           (STARTS("<unused") && ENDS(">"));
#undef STARTS
#undef ENDS
}

/* s with every occurrence of `from` replaced by `to` (malloc'd). */
static char *replace_all(const char *s, const char *from, const char *to) {
    const size_t fl = strlen(from), tl = strlen(to);
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, from)) != NULL; p += fl)
        n++;
    char *out = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        if (q == NULL) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
    }
    return out;
}

static const char *special_content(const json_t *e) {
    if (json_is_string(e))
        return json_string_value(e);
    if (json_is_object(e))
        return json_string_value(json_object_get(e, "content"));
    return NULL;
}

/* gguf-py SpecialVocab._set_special_token: a negative id is an error, an id >= n_vocab is
 * skipped, the first id set for a type stays. */
static dsq_status set_special(int64_t *ids, size_t t, json_int_t id, int64_t n_vocab,
                              const char *typ, size_t *order, size_t *n_order, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DSQ_CHECK(id >= 0, DSQ_FORMAT, err, "invalid value for special token type %s: %lld", typ,
              (long long)id);
    if (id < n_vocab && ids[t] < 0) {
        ids[t] = id;
        order[(*n_order)++] = t;
    }
cleanup:
    return st;
}

/* gguf-py SpecialVocab(...).add_to_gguf, after the merges: the special token ids, in the
 * order the converter's dict gets them (those found through tokenizer_config.json's
 * <typ>_token among tokenizer.json's added_tokens first, then config.json's <typ>_token_id,
 * each pass in type order); then add_bos_token / add_eos_token from tokenizer_config.json;
 * then chat_template. GGUFWriter of the Feb-2025 snapshot has no add_cls_token_id, so a cls
 * id is dropped, as the converter drops it (with a warning).
 * added: tokenizer.json's added_tokens (NULL when there is no tokenizer.json). */
static dsq_status add_special_vocab(dsq_gguf_writer *w, const json_t *added, const json_t *tcfg,
                                    const json_t *cfg, int64_t n_vocab, dsq_err *err) {
    static const char *const typs[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    static const char *const keys[] = {"bos_token_id",       "eos_token_id",
                                       "unknown_token_id",   "seperator_token_id",
                                       "padding_token_id",   NULL,
                                       "mask_token_id"};
    enum { NT = sizeof typs / sizeof typs[0] };
    dsq_status st = DSQ_OK;
    int64_t ids[NT];
    size_t order[NT], n_order = 0;
    for (size_t t = 0; t < NT; t++)
        ids[t] = -1;
    for (size_t t = 0; tcfg != NULL && t < NT; t++) {
        char k[64];
        snprintf(k, sizeof k, "%s_token", typs[t]);
        const char *content = special_content(json_object_get(tcfg, k));
        for (size_t i = 0; content != NULL && i < json_array_size(added); i++) {
            const json_t *a = json_array_get(added, i);
            const char *c = json_string_value(json_object_get(a, "content"));
            if (c != NULL && strcmp(c, content) == 0) {
                /* the first match only, even when its id is unusable */
                const json_t *id = json_object_get(a, "id");
                if (json_is_integer(id))
                    DSQ_TRY(set_special(ids, t, json_integer_value(id), n_vocab, typs[t], order,
                                        &n_order, err));
                break;
            }
        }
    }
    for (size_t t = 0; cfg != NULL && t < NT; t++) {
        char k[64];
        snprintf(k, sizeof k, "%s_token_id", typs[t]);
        const json_t *v = json_object_get(cfg, k);
        if (json_is_integer(v))
            DSQ_TRY(set_special(ids, t, json_integer_value(v), n_vocab, typs[t], order, &n_order,
                                err));
    }
    for (size_t i = 0; i < n_order; i++) {
        const size_t t = order[i];
        if (keys[t] == NULL)
            continue;
        char k[64];
        snprintf(k, sizeof k, "tokenizer.ggml.%s", keys[t]);
        DSQ_TRY(dsq_gguf_writer_add_u32(w, k, (uint32_t)ids[t], err));
    }
    const json_t *ab = json_object_get(tcfg, "add_bos_token");
    const json_t *ae = json_object_get(tcfg, "add_eos_token");
    if (json_is_boolean(ab))
        DSQ_TRY(dsq_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", json_is_true(ab), err));
    if (json_is_boolean(ae))
        DSQ_TRY(dsq_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", json_is_true(ae), err));
    const char *tmpl = json_string_value(json_object_get(tcfg, "chat_template"));
    if (tmpl != NULL)
        DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.chat_template", tmpl, strlen(tmpl), err));
cleanup:
    return st;
}

/* _set_vocab_gpt2: byte-level BPE from tokenizer.json. */
static dsq_status add_vocab_gpt2(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                                 const char *pre_override, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_t *tok = NULL, *tcfg = NULL, *cfg = NULL;
    const char **strs = NULL;
    char **owned = NULL;
    int32_t *types = NULL;
    size_t n_owned = 0, n_merges = 0;
    char **merges = NULL;

    DSQ_TRY(load_json(dir, "tokenizer.json", 1, &tok, err));
    DSQ_TRY(load_json(dir, "tokenizer_config.json", 0, &tcfg, err));
    DSQ_TRY(load_json(dir, "config.json", 0, &cfg, err));

    const json_t *model = json_object_get(tok, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    DSQ_CHECK(mtype != NULL && strcmp(mtype, "BPE") == 0, DSQ_UNSUPPORTED, err,
              "tokenizer.json: model type '%s' not supported (byte-level BPE only)",
              mtype ? mtype : "?");
    const char *pre = pre_override ? pre_override : detect_pre(tok);
    DSQ_CHECK(pre != NULL, DSQ_UNSUPPORTED, err,
              "tokenizer.json: cannot tell which llama.cpp pre-tokenizer this is; name it with "
              "--tokenizer-pre (e.g. gpt-2, llama-bpe, deepseek-v3)");

    const json_t *vocab = json_object_get(model, "vocab");
    DSQ_CHECK(json_is_object(vocab), DSQ_FORMAT, err, "tokenizer.json: model.vocab missing");
    DSQ_CHECK(n_vocab > 0 && n_vocab <= (1 << 26), DSQ_FORMAT, err, "vocab_size %lld",
              (long long)n_vocab);
    strs = calloc((size_t)n_vocab, sizeof *strs);
    types = calloc((size_t)n_vocab, sizeof *types);
    owned = calloc((size_t)n_vocab + json_array_size(json_object_get(tok, "added_tokens")),
                   sizeof *owned);
    DSQ_CHECK(strs && types && owned, DSQ_NOMEM, err, "out of memory");

    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        const json_int_t id = json_integer_value(val);
        DSQ_CHECK(json_is_integer(val) && id >= 0 && id < n_vocab, DSQ_FORMAT, err,
                  "tokenizer.json: token id %lld of '%s' not in [0, vocab_size %lld)",
                  (long long)id, key, (long long)n_vocab);
        strs[id] = key;
        types[id] = TT_NORMAL;
    }
    const json_t *added = json_object_get(tok, "added_tokens");
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        const json_int_t id = json_integer_value(json_object_get(a, "id"));
        const char *content = json_string_value(json_object_get(a, "content"));
        DSQ_CHECK(content != NULL && id >= 0 && id < n_vocab, DSQ_FORMAT, err,
                  "tokenizer.json: added_tokens[%zu] has no content or an id out of range", i);
        strs[id] = content;
        if (json_is_true(json_object_get(a, "special")) || looks_special(content)) {
            types[id] = TT_CONTROL;
        } else {
            /* the converter pre-normalizes user-defined spaces (U+2581 -> ' ') */
            char *r = replace_all(content, "\xe2\x96\x81", " ");
            DSQ_CHECK(r != NULL, DSQ_NOMEM, err, "out of memory");
            owned[n_owned++] = r;
            strs[id] = r;
            types[id] = TT_USER_DEFINED;
        }
    }
    for (int64_t i = 0; i < n_vocab; i++) {
        if (strs[i] != NULL)
            continue;
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%lld]", (long long)i);
        DSQ_CHECK((owned[n_owned] = strdup(buf)) != NULL, DSQ_NOMEM, err, "out of memory");
        strs[i] = owned[n_owned++];
        types[i] = TT_UNUSED;
    }

    DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2", 4, err));
    DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, strlen(pre), err));
    DSQ_TRY(dsq_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, NULL,
                                        (uint64_t)n_vocab, err));
    DSQ_TRY(dsq_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, types,
                                    (uint64_t)n_vocab, err));

    const json_t *jm = json_object_get(model, "merges");
    n_merges = json_array_size(jm);
    if (n_merges > 0) {
        merges = calloc(n_merges, sizeof *merges);
        DSQ_CHECK(merges != NULL, DSQ_NOMEM, err, "out of memory");
        for (size_t i = 0; i < n_merges; i++) {
            const json_t *m = json_array_get(jm, i);
            if (json_is_string(m)) {
                merges[i] = strdup(json_string_value(m));
            } else {
                const char *l = json_string_value(json_array_get(m, 0));
                const char *r = json_string_value(json_array_get(m, 1));
                DSQ_CHECK(json_array_size(m) == 2 && l && r, DSQ_FORMAT, err,
                          "tokenizer.json: merges[%zu] is neither a string nor a pair", i);
                /* gguf-py: a space inside a part becomes chr(ord(' ') + 256), U+0120 */
                char *le = replace_all(l, " ", "\xc4\xa0"), *re = replace_all(r, " ", "\xc4\xa0");
                if (le && re && (merges[i] = malloc(strlen(le) + strlen(re) + 2)) != NULL)
                    sprintf(merges[i], "%s %s", le, re);
                free(le);
                free(re);
            }
            DSQ_CHECK(merges[i] != NULL, DSQ_NOMEM, err, "out of memory");
        }
        DSQ_TRY(dsq_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges",
                                            (const char *const *)merges, NULL, n_merges, err));
    }

    DSQ_TRY(add_special_vocab(w, added, tcfg, cfg, n_vocab, err));

cleanup:
    for (size_t i = 0; owned != NULL && i < n_owned; i++)
        free(owned[i]);
    for (size_t i = 0; merges != NULL && i < n_merges; i++)
        free(merges[i]);
    free(merges);
    free(owned);
    free(strs);
    free(types);
    json_decref(tok);
    json_decref(tcfg);
    json_decref(cfg);
    return st;
}

/* convert_hf_to_gguf.py _create_vocab_sentencepiece + _set_vocab_sentencepiece. */
static dsq_status add_vocab_spm(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                                dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = NULL;
    dsq_spm_model *m = NULL;
    json_t *tok = NULL, *tcfg = NULL, *cfg = NULL, *atj = NULL;
    const char **strs = NULL;
    char **owned = NULL;
    size_t n_owned = 0;
    float *scores = NULL;
    int32_t *types = NULL;

    DSQ_CHECK((path = dsq_path_join(dir, "tokenizer.model")) != NULL, DSQ_NOMEM, err,
              "out of memory");
    DSQ_TRY(dsq_spm_model_load(&m, path, err));
    DSQ_TRY(load_json(dir, "tokenizer.json", 0, &tok, err));
    DSQ_TRY(load_json(dir, "tokenizer_config.json", 0, &tcfg, err));
    DSQ_TRY(load_json(dir, "config.json", 0, &cfg, err));
    DSQ_TRY(load_json(dir, "added_tokens.json", 0, &atj, err));

    DSQ_CHECK(n_vocab > 0 && n_vocab <= DSQ_TOK_MAX_VOCAB, DSQ_FORMAT, err, "vocab_size %lld",
              (long long)n_vocab);
    /* the converter indexes its vocab_size-long lists with every piece id */
    DSQ_CHECK((int64_t)m->n <= n_vocab, DSQ_FORMAT, err,
              "%s: %zu pieces, more than config.json's vocab_size %lld", path, m->n,
              (long long)n_vocab);
    const json_t *decoder = json_object_get(tcfg, "added_tokens_decoder");
    strs = calloc((size_t)n_vocab, sizeof *strs);
    scores = malloc((size_t)n_vocab * sizeof *scores);
    types = malloc((size_t)n_vocab * sizeof *types);
    owned = calloc((size_t)n_vocab + json_object_size(decoder), sizeof *owned);
    DSQ_CHECK(strs && scores && types && owned, DSQ_NOMEM, err, "out of memory");

    /* ids past the model's pieces: "[PAD<id>]", score -10000, UNUSED */
    for (int64_t i = (int64_t)m->n; i < n_vocab; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%lld]", (long long)i);
        DSQ_CHECK((owned[n_owned] = strdup(buf)) != NULL, DSQ_NOMEM, err, "out of memory");
        strs[i] = owned[n_owned++];
        scores[i] = -10000.0f;
        types[i] = TT_UNUSED;
    }
    /* the pieces; sentencepiece's IsUnknown/IsControl/IsUnused/IsByte pick the type, every
     * other piece (USER_DEFINED included) becomes NORMAL */
    for (size_t i = 0; i < m->n; i++) {
        const int32_t t = m->types[i];
        strs[i] = m->pieces[i];
        scores[i] = m->scores[i];
        types[i] = t == DSQ_SPM_UNKNOWN || t == DSQ_SPM_CONTROL || t == DSQ_SPM_UNUSED ||
                           t == DSQ_SPM_BYTE
                       ? t
                       : TT_NORMAL;
    }
    /* added_tokens.json {"text": id}: USER_DEFINED, score -1000; ids past the end ignored */
    if (atj != NULL) {
        DSQ_CHECK(json_is_object(atj), DSQ_FORMAT, err, "%s/added_tokens.json: not an object",
                  dir);
        const char *key;
        json_t *val;
        json_object_foreach(atj, key, val) {
            const json_int_t id = json_integer_value(val);
            DSQ_CHECK(json_is_integer(val) && id >= 0, DSQ_FORMAT, err,
                      "%s/added_tokens.json: '%s' has no valid token id", dir, key);
            if (id >= n_vocab)
                continue;
            strs[id] = key;
            scores[id] = -1000.0f;
            types[id] = TT_USER_DEFINED;
        }
    }
    /* tokenizer_config.json added_tokens_decoder {"id": {"content": ..., "special": ...}}:
     * CONTROL when special or special-looking, else USER_DEFINED with U+2581 as ' ' */
    if (decoder != NULL) {
        DSQ_CHECK(json_is_object(decoder), DSQ_FORMAT, err,
                  "%s/tokenizer_config.json: added_tokens_decoder is not an object", dir);
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)decoder, key, val) {
            char *end = NULL;
            const long long id = strtoll(key, &end, 10);
            const char *content = json_string_value(json_object_get(val, "content"));
            DSQ_CHECK(end != key && *end == '\0' && id >= 0 && id < n_vocab, DSQ_FORMAT, err,
                      "%s/tokenizer_config.json: added_tokens_decoder id '%s' not in [0, "
                      "vocab_size %lld)",
                      dir, key, (long long)n_vocab);
            DSQ_CHECK(content != NULL, DSQ_FORMAT, err,
                      "%s/tokenizer_config.json: added_tokens_decoder '%s' has no content", dir,
                      key);
            if (json_is_true(json_object_get(val, "special")) || looks_special(content)) {
                strs[id] = content;
                types[id] = TT_CONTROL;
            } else {
                char *r = replace_all(content, "\xe2\x96\x81", " ");
                DSQ_CHECK(r != NULL, DSQ_NOMEM, err, "out of memory");
                owned[n_owned++] = r;
                strs[id] = r;
                types[id] = TT_USER_DEFINED;
            }
            scores[id] = -1000.0f;
        }
    }

    DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", 5, err));
    DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default", 7, err));
    DSQ_TRY(dsq_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, NULL,
                                        (uint64_t)n_vocab, err));
    DSQ_TRY(dsq_gguf_writer_add_arr(w, "tokenizer.ggml.scores", DSQ_GGUF_FLOAT32, scores,
                                    (uint64_t)n_vocab, err));
    DSQ_TRY(dsq_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, types,
                                    (uint64_t)n_vocab, err));
    DSQ_TRY(add_special_vocab(w, json_object_get(tok, "added_tokens"), tcfg, cfg, n_vocab, err));

cleanup:
    for (size_t i = 0; owned != NULL && i < n_owned; i++)
        free(owned[i]);
    free(owned);
    free(strs);
    free(scores);
    free(types);
    json_decref(tok);
    json_decref(tcfg);
    json_decref(cfg);
    json_decref(atj);
    dsq_spm_model_free(m);
    free(path);
    return st;
}

/* ---- LlamaHfVocab: a Llama-2 style tokenizer.json without tokenizer.model ---------------- */

/* gguf-py LlamaHfVocab.get_token_type: re.fullmatch(br"<0x[0-9A-Fa-f]{2}>", text) */
static int is_byte_token(const char *t) {
    return strlen(t) == 6 && strncmp(t, "<0x", 3) == 0 && isxdigit((unsigned char)t[3]) &&
           isxdigit((unsigned char)t[4]) && t[5] == '>';
}

/* The id tokenizers gives text once tokenizer.json is loaded (an added token first, then
 * model.vocab: AddedVocabulary::token_to_id); -1 when it has none. */
static json_int_t hf_token_id(const json_t *vocab, const json_t *added_ids, const char *text) {
    const json_t *v = json_object_get(added_ids, text);
    if (v == NULL)
        v = json_object_get(vocab, text);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Marks the special token named by entry e (a string or an AddedToken object; null names
 * none) in is_special. `what` and `file` name the entry in messages. */
static dsq_status mark_special(const json_t *e, const char *what, const char *file,
                               const json_t *vocab, const json_t *added_ids, size_t n_tokens,
                               uint8_t *is_special, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (e == NULL || json_is_null(e))
        goto cleanup;
    const char *c = special_content(e);
    DSQ_CHECK(c != NULL, DSQ_FORMAT, err, "%s: %s is neither a string nor a token object", file,
              what);
    const json_int_t id = hf_token_id(vocab, added_ids, c);
    /* transformers would add the missing token at load time, at an id dsq would have to
     * guess, and the converter would write it */
    DSQ_CHECK(id >= 0 && (size_t)id < n_tokens, DSQ_UNSUPPORTED, err,
              "%s: %s '%s' is not a token of tokenizer.json (transformers would add it when "
              "loading; dsq does not)",
              file, what, c);
    is_special[id] = 1;
cleanup:
    return st;
}

/* gguf-py LlamaHfVocab (Feb-2025) as _set_vocab_llama_hf writes it; see gguf_vocab.h for the
 * rules. The converter reads the vocabulary through transformers' AutoTokenizer; dsq reads
 * the same files and refuses the cases where transformers would change the vocabulary while
 * loading it, rather than guess what it would do. */
static dsq_status add_vocab_llama_hf(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                                     dsq_err *err) {
    static const char *const attrs[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                        "pad_token", "cls_token", "mask_token"};
    dsq_status st = DSQ_OK;
    json_t *tok = NULL, *tcfg = NULL, *cfg = NULL, *stm = NULL, *added_ids = NULL;
    const char **strs = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    uint8_t *is_special = NULL;
    char *atj = NULL;

    DSQ_TRY(load_json(dir, "tokenizer.json", 1, &tok, err));
    DSQ_TRY(load_json(dir, "tokenizer_config.json", 0, &tcfg, err));
    DSQ_TRY(load_json(dir, "config.json", 0, &cfg, err));
    DSQ_CHECK(tcfg == NULL || json_is_object(tcfg), DSQ_FORMAT, err,
              "%s/tokenizer_config.json: not an object", dir);
    DSQ_CHECK(n_vocab > 0 && n_vocab <= DSQ_TOK_MAX_VOCAB, DSQ_FORMAT, err, "vocab_size %lld",
              (long long)n_vocab);

    /* AutoTokenizer's class: tokenizer_class, else the one of config.json's model_type
     * (llama: LlamaTokenizerFast). Only these two are modelled. */
    const char *cls = json_string_value(json_object_get(tcfg, "tokenizer_class"));
    const int llama_cls = cls == NULL || strcmp(cls, "LlamaTokenizer") == 0 ||
                          strcmp(cls, "LlamaTokenizerFast") == 0;
    DSQ_CHECK(llama_cls || strcmp(cls, "PreTrainedTokenizerFast") == 0, DSQ_UNSUPPORTED, err,
              "%s/tokenizer_config.json: tokenizer_class '%s' (dsq models LlamaTokenizerFast and "
              "PreTrainedTokenizerFast only)",
              dir, cls);
    /* LlamaTokenizerFast rebuilds itself from tokenizer.model when add_prefix_space is set,
     * and there is none: the converter fails */
    const json_t *aps = json_object_get(tcfg, "add_prefix_space");
    DSQ_CHECK(!llama_cls || aps == NULL || json_is_null(aps), DSQ_UNSUPPORTED, err,
              "%s: tokenizer_config.json sets add_prefix_space, which makes LlamaTokenizerFast "
              "need a tokenizer.model: llama.cpp's converter fails on this checkpoint",
              dir);
    /* without added_tokens_decoder transformers takes the legacy path, where
     * special_tokens_map.json overrides the config and added_tokens.json adds tokens */
    const int legacy = json_object_get(tcfg, "added_tokens_decoder") == NULL;
    if (legacy) {
        DSQ_TRY(load_json(dir, "special_tokens_map.json", 0, &stm, err));
        DSQ_CHECK(stm == NULL || json_is_object(stm), DSQ_FORMAT, err,
                  "%s/special_tokens_map.json: not an object", dir);
        DSQ_CHECK((atj = dsq_path_join(dir, "added_tokens.json")) != NULL, DSQ_NOMEM, err,
                  "out of memory");
        DSQ_CHECK(access(atj, F_OK) != 0, DSQ_UNSUPPORTED, err,
                  "%s: transformers would add the tokens of added_tokens.json to "
                  "tokenizer.json's when loading; dsq does not",
                  dir);
    }

    const json_t *model = json_object_get(tok, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    DSQ_CHECK(json_is_object(vocab) && json_object_size(vocab) > 0, DSQ_FORMAT, err,
              "%s/tokenizer.json: model.vocab missing or empty", dir);
    const json_t *added = json_object_get(tok, "added_tokens");
    DSQ_CHECK(added == NULL || json_is_array(added), DSQ_FORMAT, err,
              "%s/tokenizer.json: added_tokens is not an array", dir);
    const size_t base = json_object_size(vocab), n_added = json_array_size(added);
    DSQ_CHECK(base <= DSQ_TOK_MAX_VOCAB && n_added <= DSQ_TOK_MAX_VOCAB, DSQ_FORMAT, err,
              "%s/tokenizer.json: %zu tokens and %zu added tokens, too many", dir, base,
              n_added);
    strs = calloc(base + n_added, sizeof *strs);
    DSQ_CHECK(strs != NULL && (added_ids = json_object()) != NULL, DSQ_NOMEM, err,
              "out of memory");

    /* the converter walks ids 0 .. len(vocab)-1 and looks each up (KeyError on a gap), so
     * the ids must be exactly those, each once */
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        const json_int_t id = json_integer_value(val);
        DSQ_CHECK(json_is_integer(val) && id >= 0 && (size_t)id < base, DSQ_FORMAT, err,
                  "%s/tokenizer.json: model.vocab id of '%s' is not in [0, %zu) (the vocabulary "
                  "has %zu entries)",
                  dir, key, base, base);
        DSQ_CHECK(strs[id] == NULL, DSQ_FORMAT, err,
                  "%s/tokenizer.json: model.vocab gives id %lld to both '%s' and '%s'", dir,
                  (long long)id, strs[id], key);
        strs[id] = key;
    }

    /* tokenizers loads added_tokens by content, ignoring their ids: a content in the vocab
     * (or added before) keeps that id, a new one takes the next id past the vocabulary. An
     * id the file states otherwise would silently move; dsq refuses such a file. */
    size_t n_tokens = base;
    for (size_t i = 0; i < n_added; i++) {
        const json_t *a = json_array_get(added, i);
        const char *c = json_string_value(json_object_get(a, "content"));
        const json_t *jid = json_object_get(a, "id");
        DSQ_CHECK(c != NULL && c[0] != '\0' && json_is_integer(jid), DSQ_FORMAT, err,
                  "%s/tokenizer.json: added_tokens[%zu] has no content or no id", dir, i);
        json_int_t want = hf_token_id(vocab, added_ids, c);
        if (want < 0)
            want = (json_int_t)n_tokens;
        DSQ_CHECK(json_integer_value(jid) == want, DSQ_FORMAT, err,
                  "%s/tokenizer.json: added_tokens[%zu] '%s' has id %lld but loads as id %lld "
                  "(its vocabulary id, or the next one past the vocabulary)",
                  dir, i, c, (long long)json_integer_value(jid), (long long)want);
        if ((size_t)want == n_tokens)
            strs[n_tokens++] = c;
        DSQ_CHECK(json_object_set_new(added_ids, c, json_integer(want)) == 0, DSQ_NOMEM, err,
                  "out of memory");
    }
    /* the converter writes them all; ids past the embedding would have no row */
    DSQ_CHECK((int64_t)n_tokens <= n_vocab, DSQ_FORMAT, err,
              "%s/tokenizer.json: %zu tokens, more than config.json's vocab_size %lld", dir,
              n_tokens, (long long)n_vocab);

    /* tokenizer_config.json's added_tokens_decoder is applied on top of tokenizer.json; an
     * entry that is not already there as it says would be added or moved */
    const json_t *decoder = json_object_get(tcfg, "added_tokens_decoder");
    DSQ_CHECK(decoder == NULL || json_is_object(decoder), DSQ_FORMAT, err,
              "%s/tokenizer_config.json: added_tokens_decoder is not an object", dir);
    json_object_foreach((json_t *)decoder, key, val) {
        const char *c = json_string_value(json_object_get(val, "content"));
        char *end = NULL;
        const long long id = strtoll(key, &end, 10);
        DSQ_CHECK(c != NULL && end != key && *end == '\0', DSQ_FORMAT, err,
                  "%s/tokenizer_config.json: added_tokens_decoder '%s' has no content or is not "
                  "an id",
                  dir, key);
        DSQ_CHECK(hf_token_id(vocab, added_ids, c) == id, DSQ_UNSUPPORTED, err,
                  "%s/tokenizer_config.json: added_tokens_decoder %s '%s' is not that token of "
                  "tokenizer.json (transformers would add it when loading; dsq does not)",
                  dir, key, c);
    }

    /* all_special_tokens: the seven named tokens (LlamaTokenizerFast defaults bos, eos and
     * unk to <s>, </s>, <unk> when the config does not name them) and
     * additional_special_tokens, from tokenizer_config.json, in the legacy case overridden
     * by special_tokens_map.json */
    is_special = calloc(n_tokens, 1);
    DSQ_CHECK(is_special != NULL, DSQ_NOMEM, err, "out of memory");
    const char *bos = NULL, *eos = NULL;
    for (size_t t = 0; t < sizeof attrs / sizeof attrs[0]; t++) {
        const json_t *e = json_object_get(tcfg, attrs[t]);
        const char *file = "tokenizer_config.json";
        json_t *dflt = NULL;
        if (json_object_get(stm, attrs[t]) != NULL) {
            e = json_object_get(stm, attrs[t]);
            file = "special_tokens_map.json";
        }
        if (e == NULL && llama_cls && t < 3) {
            static const char *const defaults[] = {"<s>", "</s>", "<unk>"};
            e = dflt = json_string(defaults[t]);
            file = "LlamaTokenizerFast's default";
            DSQ_CHECK(dflt != NULL, DSQ_NOMEM, err, "out of memory");
        }
        st = mark_special(e, attrs[t], file, vocab, added_ids, n_tokens, is_special, err);
        if (t == 0)
            bos = special_content(e);
        if (t == 1)
            eos = special_content(e);
        json_decref(dflt);
        if (st != DSQ_OK)
            goto cleanup;
    }
    for (int f = 0; f < 2; f++) {
        const json_t *doc = f == 0 ? tcfg : stm;
        const json_t *extra = json_object_get(doc, "additional_special_tokens");
        const char *file = f == 0 ? "tokenizer_config.json" : "special_tokens_map.json";
        DSQ_CHECK(extra == NULL || json_is_null(extra) || json_is_array(extra), DSQ_FORMAT, err,
                  "%s/%s: additional_special_tokens is not a list", dir, file);
        for (size_t i = 0; i < json_array_size(extra); i++)
            DSQ_TRY(mark_special(json_array_get(extra, i), "additional_special_tokens", file,
                                 vocab, added_ids, n_tokens, is_special, err));
    }
    /* LlamaTokenizerFast.update_post_processor raises on these, and so the converter */
    if (llama_cls) {
        const json_t *ab = json_object_get(tcfg, "add_bos_token");
        const json_t *ae = json_object_get(tcfg, "add_eos_token");
        DSQ_CHECK(bos != NULL || json_is_false(ab), DSQ_UNSUPPORTED, err,
                  "%s: add_bos_token is on but there is no bos_token: llama.cpp's converter "
                  "fails on this checkpoint",
                  dir);
        DSQ_CHECK(eos != NULL || !json_is_true(ae), DSQ_UNSUPPORTED, err,
                  "%s: add_eos_token is on but there is no eos_token: llama.cpp's converter "
                  "fails on this checkpoint",
                  dir);
    }

    /* every score -1000 (get_token_score is a placeholder); types: <0xXX> BYTE, then
     * CONTROL for all_special_ids, NORMAL otherwise; added tokens past the vocabulary
     * CONTROL when special, else USER_DEFINED */
    scores = malloc(n_tokens * sizeof *scores);
    types = malloc(n_tokens * sizeof *types);
    DSQ_CHECK(scores != NULL && types != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < n_tokens; i++) {
        scores[i] = -1000.0f;
        if (i >= base)
            types[i] = is_special[i] ? TT_CONTROL : TT_USER_DEFINED;
        else if (is_byte_token(strs[i]))
            types[i] = TT_BYTE;
        else
            types[i] = is_special[i] ? TT_CONTROL : TT_NORMAL;
    }

    DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", 5, err));
    DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default", 7, err));
    DSQ_TRY(dsq_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, NULL,
                                        (uint64_t)n_tokens, err));
    DSQ_TRY(dsq_gguf_writer_add_arr(w, "tokenizer.ggml.scores", DSQ_GGUF_FLOAT32, scores,
                                    (uint64_t)n_tokens, err));
    DSQ_TRY(dsq_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, types,
                                    (uint64_t)n_tokens, err));
    /* SpecialVocab(n_vocab=len(tokens)): ids past the written tokens are skipped */
    DSQ_TRY(add_special_vocab(w, added, tcfg, cfg, (int64_t)n_tokens, err));

cleanup:
    free(atj);
    free(strs);
    free(scores);
    free(types);
    free(is_special);
    json_decref(added_ids);
    json_decref(tok);
    json_decref(tcfg);
    json_decref(cfg);
    json_decref(stm);
    return st;
}

/* LlamaModel.set_vocab after the vocabulary: CodeLlama's (vocab_size 32016) EOT id (the
 * converter also asks for prefix/suffix/middle ids, but its GGUFWriter has no setter for
 * them and skips them), add_space_prefix from tokenizer_config.json's add_prefix_space,
 * and add_bos_token false for vocab_size 49152 (Granite). */
static dsq_status add_llama_extras(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                                   dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_t *tcfg = NULL, *cfg = NULL, *tok = NULL;
    DSQ_TRY(load_json(dir, "tokenizer_config.json", 0, &tcfg, err));
    if (n_vocab == 32016) {
        /* SpecialVocab(types=[prefix, suffix, middle, eot]): eot from the files first */
        int64_t eot = -1;
        DSQ_TRY(load_json(dir, "tokenizer.json", 0, &tok, err));
        DSQ_TRY(load_json(dir, "config.json", 0, &cfg, err));
        const char *content = special_content(json_object_get(tcfg, "eot_token"));
        const json_t *added = json_object_get(tok, "added_tokens");
        for (size_t i = 0; content != NULL && i < json_array_size(added); i++) {
            const json_t *a = json_array_get(added, i);
            const char *c = json_string_value(json_object_get(a, "content"));
            if (c != NULL && strcmp(c, content) == 0) {
                const json_t *id = json_object_get(a, "id");
                if (json_is_integer(id))
                    eot = json_integer_value(id);
                break;
            }
        }
        if (eot < 0 || eot >= n_vocab) {
            const json_t *v = json_object_get(cfg, "eot_token_id");
            eot = json_is_integer(v) ? json_integer_value(v) : -1;
        }
        DSQ_TRY(dsq_gguf_writer_add_u32(w, "tokenizer.ggml.eot_token_id",
                                        (uint32_t)(eot >= 0 && eot < n_vocab ? eot : 32010),
                                        err));
    }
    const json_t *aps = json_object_get(tcfg, "add_prefix_space");
    if (aps != NULL) {
        DSQ_CHECK(json_is_boolean(aps), DSQ_FORMAT, err,
                  "%s/tokenizer_config.json: add_prefix_space is not a boolean", dir);
        DSQ_TRY(dsq_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix",
                                         json_is_true(aps), err));
    }
    if (n_vocab == 49152) {
        /* the converter raises "Duplicated key name" when add_bos_token was already set */
        DSQ_CHECK(!json_is_boolean(json_object_get(tcfg, "add_bos_token")), DSQ_UNSUPPORTED, err,
                  "%s: vocab_size 49152 with add_bos_token in tokenizer_config.json: "
                  "llama.cpp's converter fails on this checkpoint (duplicate key)",
                  dir);
        DSQ_TRY(dsq_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, err));
    }
cleanup:
    json_decref(tcfg);
    json_decref(cfg);
    json_decref(tok);
    return st;
}

dsq_status dsq_qz_add_vocab(dsq_gguf_writer *w, const char *dir, const char *arch,
                            int64_t n_vocab, const char *pre_override, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *spm = NULL;
    json_t *tok = NULL;
    const int llama = strcmp(arch, "llama") == 0;
    DSQ_CHECK((spm = dsq_path_join(dir, "tokenizer.model")) != NULL, DSQ_NOMEM, err,
              "out of memory");
    /* LlamaModel.set_vocab tries sentencepiece first and falls back only when
     * tokenizer.model does not exist; DeepseekV2Model always uses gpt2 */
    if (llama && access(spm, F_OK) == 0) {
        DSQ_TRY(add_vocab_spm(w, dir, n_vocab, err));
    } else {
        /* next the converter tries LlamaHfVocab: a tokenizer.json whose model is BPE with
         * byte_fallback and whose decoder is a Sequence (a Llama-2 style tokenizer saved
         * without its tokenizer.model) becomes a "llama" vocabulary, anything else gpt2 */
        int hf = 0;
        if (llama) {
            DSQ_TRY(load_json(dir, "tokenizer.json", 0, &tok, err));
            const json_t *model = json_object_get(tok, "model");
            const char *mt = json_string_value(json_object_get(model, "type"));
            const char *dt = json_string_value(json_object_get(json_object_get(tok, "decoder"),
                                                               "type"));
            hf = mt != NULL && strcmp(mt, "BPE") == 0 &&
                 json_is_true(json_object_get(model, "byte_fallback")) && dt != NULL &&
                 strcmp(dt, "Sequence") == 0;
        }
        if (hf)
            DSQ_TRY(add_vocab_llama_hf(w, dir, n_vocab, err));
        else
            DSQ_TRY(add_vocab_gpt2(w, dir, n_vocab, pre_override, err));
    }
    if (llama)
        DSQ_TRY(add_llama_extras(w, dir, n_vocab, err));
cleanup:
    json_decref(tok);
    free(spm);
    return st;
}
