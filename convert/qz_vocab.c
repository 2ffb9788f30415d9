/* convert/qz_vocab.c: tokenizer metadata for GGUF (see qz_vocab.h). */
#include "convert/qz_vocab.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"

#define MAX_JSON ((size_t)1 << 30)

/* gguf-py TokenType */
enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5 };

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

dsq_status dsq_qz_add_vocab(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                            const char *pre_override, dsq_err *err) {
    static const char *const typs[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    static const char *const keys[] = {"bos_token_id",       "eos_token_id",
                                       "unknown_token_id",   "seperator_token_id",
                                       "padding_token_id",   "cls_token_id",
                                       "mask_token_id"};
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

    for (size_t t = 0; t < sizeof typs / sizeof typs[0]; t++) {
        char k[64];
        json_int_t id = -1;
        snprintf(k, sizeof k, "%s_token", typs[t]);
        const char *content = special_content(json_object_get(tcfg, k));
        for (size_t i = 0; content != NULL && i < json_array_size(added); i++) {
            const json_t *a = json_array_get(added, i);
            const char *c = json_string_value(json_object_get(a, "content"));
            if (c != NULL && strcmp(c, content) == 0) {
                id = json_integer_value(json_object_get(a, "id"));
                break;
            }
        }
        if (id < 0) {
            snprintf(k, sizeof k, "%s_token_id", typs[t]);
            const json_t *v = json_object_get(cfg, k);
            if (json_is_integer(v))
                id = json_integer_value(v);
        }
        if (id < 0 || id >= n_vocab)
            continue;
        snprintf(k, sizeof k, "tokenizer.ggml.%s", keys[t]);
        DSQ_TRY(dsq_gguf_writer_add_u32(w, k, (uint32_t)id, err));
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
