/* gguf_export/gguf_vocab.c: tokenizer metadata for GGUF (see gguf_vocab.h). */
#include "gguf_export/gguf_vocab.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "tokenizer/tok_hf_files.h"
#include "tokenizer/tok_spm_model.h"

/* gguf-py TokenType: tokenizer.h's DSQ_TOKTYPE_* */
enum {
    TT_NORMAL = DSQ_TOKTYPE_NORMAL,
    TT_CONTROL = DSQ_TOKTYPE_CONTROL,
    TT_USER_DEFINED = DSQ_TOKTYPE_USER_DEFINED,
    TT_UNUSED = DSQ_TOKTYPE_UNUSED,
    TT_BYTE = DSQ_TOKTYPE_BYTE,
};

/* dir/tokenizer.json, which this vocabulary cannot do without. */
static dsq_status need_tokjson(const char *dir, dsq_hf_tokjson **out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = NULL;
    DSQ_TRY(dsq_hf_tokjson_load(dir, out, err));
    if (*out != NULL)
        return DSQ_OK;
    DSQ_CHECK((path = dsq_path_join(dir, "tokenizer.json")) != NULL, DSQ_NOMEM, err,
              "out of memory");
    DSQ_CHECK(0, DSQ_NOT_FOUND, err, "%s: not found (the GGUF needs the tokenizer)", path);
cleanup:
    free(path);
    return st;
}

/* config.json's <name>_token_id when it is an integer, else -1 (no config: -1). */
static int64_t cfg_token_id(const dsq_model_desc *cfg, const char *name, int *found) {
    char k[32];
    snprintf(k, sizeof k, "%s_token_id", name);
    const dsq_cfg_val *v = cfg ? dsq_model_desc_get(cfg, k) : NULL;
    *found = v != NULL && v->kind == DSQ_CFG_INT;
    return *found ? v->i : -1;
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

/* gguf-py SpecialVocab._set_special_token: a negative id is an error, an id >= n_vocab is
 * skipped, the first id set for a type stays. */
static dsq_status set_special(int64_t *ids, size_t t, int64_t id, int64_t n_vocab,
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
 * tok, tcfg and cfg may each be NULL (no such file). */
static dsq_status add_special_vocab(dsq_gguf_writer *w, const dsq_hf_tokjson *tok,
                                    const dsq_hf_tokcfg *tcfg, const dsq_model_desc *cfg,
                                    int64_t n_vocab, dsq_err *err) {
    static const char *const keys[DSQ_HF_N_SPECIAL] = {
        "bos_token_id",     "eos_token_id",     "unknown_token_id", "seperator_token_id",
        "padding_token_id", NULL /* cls */, "mask_token_id"};
    enum { NT = DSQ_HF_N_SPECIAL };
    dsq_status st = DSQ_OK;
    int64_t ids[NT];
    size_t order[NT], n_order = 0;
    for (size_t t = 0; t < NT; t++)
        ids[t] = -1;
    for (size_t t = 0; tcfg != NULL && t < NT; t++) {
        const char *content = tcfg->special[t].content;
        /* the first match only, even when its id is unusable */
        const dsq_hf_added_token *a = content ? dsq_hf_tokjson_added(tok, content) : NULL;
        if (a != NULL && a->has_id)
            DSQ_TRY(set_special(ids, t, a->id, n_vocab, dsq_hf_special_name((int)t), order,
                                &n_order, err));
    }
    for (size_t t = 0; cfg != NULL && t < NT; t++) {
        int found = 0;
        const int64_t id = cfg_token_id(cfg, dsq_hf_special_name((int)t), &found);
        if (found)
            DSQ_TRY(set_special(ids, t, id, n_vocab, dsq_hf_special_name((int)t), order,
                                &n_order, err));
    }
    for (size_t i = 0; i < n_order; i++) {
        const size_t t = order[i];
        if (keys[t] == NULL)
            continue;
        char k[64];
        snprintf(k, sizeof k, "tokenizer.ggml.%s", keys[t]);
        DSQ_TRY(dsq_gguf_writer_add_u32(w, k, (uint32_t)ids[t], err));
    }
    if (tcfg != NULL && dsq_hf_is_bool(tcfg->add_bos_token))
        DSQ_TRY(dsq_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token",
                                         tcfg->add_bos_token == DSQ_HF_TRUE, err));
    if (tcfg != NULL && dsq_hf_is_bool(tcfg->add_eos_token))
        DSQ_TRY(dsq_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token",
                                         tcfg->add_eos_token == DSQ_HF_TRUE, err));
    const char *tmpl = tcfg ? tcfg->chat_template : NULL;
    if (tmpl != NULL)
        DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.chat_template", tmpl, strlen(tmpl), err));
cleanup:
    return st;
}

/* A merge as gguf-py writes it: the "a b" form as it is; the pair form joined by a space,
 * with a space inside a part as chr(ord(' ') + 256), U+0120. NULL: out of memory. */
static char *merge_text(const dsq_hf_merge *m) {
    if (m->text != NULL)
        return strdup(m->text);
    char *le = replace_all(m->left, " ", "\xc4\xa0"), *re = replace_all(m->right, " ", "\xc4\xa0");
    char *out = NULL;
    if (le && re && (out = malloc(strlen(le) + strlen(re) + 2)) != NULL)
        sprintf(out, "%s %s", le, re);
    free(le);
    free(re);
    return out;
}

/* _set_vocab_gpt2: byte-level BPE from tokenizer.json. */
static dsq_status add_vocab_gpt2(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                                 const dsq_model_desc *cfg, const char *pre_override,
                                 dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_hf_tokjson *tok = NULL;
    dsq_hf_tokcfg *tcfg = NULL;
    const char **strs = NULL;
    char **owned = NULL;
    int32_t *types = NULL;
    size_t n_owned = 0, n_merges = 0;
    char **merges = NULL;

    DSQ_TRY(need_tokjson(dir, &tok, err));
    DSQ_TRY(dsq_hf_tokcfg_load(dir, "tokenizer_config.json", &tcfg, err));

    const char *mtype = tok->model_type;
    DSQ_CHECK(mtype != NULL && strcmp(mtype, "BPE") == 0, DSQ_UNSUPPORTED, err,
              "tokenizer.json: model type '%s' not supported (byte-level BPE only)",
              mtype ? mtype : "?");
    const char *pre = pre_override ? pre_override : tok->pre;
    DSQ_CHECK(pre != NULL, DSQ_UNSUPPORTED, err,
              "tokenizer.json: cannot tell which llama.cpp pre-tokenizer this is; name it with "
              "--tokenizer-pre (e.g. gpt-2, llama-bpe, deepseek-v3)");

    DSQ_CHECK(tok->vocab_is_object, DSQ_FORMAT, err, "tokenizer.json: model.vocab missing");
    DSQ_CHECK(n_vocab > 0 && n_vocab <= (1 << 26), DSQ_FORMAT, err, "vocab_size %lld",
              (long long)n_vocab);
    strs = calloc((size_t)n_vocab, sizeof *strs);
    types = calloc((size_t)n_vocab, sizeof *types);
    owned = calloc((size_t)n_vocab + tok->n_added, sizeof *owned);
    DSQ_CHECK(strs && types && owned, DSQ_NOMEM, err, "out of memory");

    for (size_t i = 0; i < tok->n_vocab; i++) {
        const dsq_hf_vocab_entry *v = &tok->vocab[i];
        DSQ_CHECK(v->has_id && v->id >= 0 && v->id < n_vocab, DSQ_FORMAT, err,
                  "tokenizer.json: token id %lld of '%s' not in [0, vocab_size %lld)",
                  (long long)v->id, v->text, (long long)n_vocab);
        strs[v->id] = v->text;
        types[v->id] = TT_NORMAL;
    }
    for (size_t i = 0; i < tok->n_added; i++) {
        const dsq_hf_added_token *a = &tok->added[i];
        const int64_t id = a->id; /* 0 when not an integer, as the converter reads it */
        DSQ_CHECK(a->content != NULL && id >= 0 && id < n_vocab, DSQ_FORMAT, err,
                  "tokenizer.json: added_tokens[%zu] has no content or an id out of range", i);
        strs[id] = a->content;
        if (a->special || looks_special(a->content)) {
            types[id] = TT_CONTROL;
        } else {
            /* the converter pre-normalizes user-defined spaces (U+2581 -> ' ') */
            char *r = replace_all(a->content, "\xe2\x96\x81", " ");
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

    n_merges = tok->n_merges;
    if (n_merges > 0) {
        merges = calloc(n_merges, sizeof *merges);
        DSQ_CHECK(merges != NULL, DSQ_NOMEM, err, "out of memory");
        for (size_t i = 0; i < n_merges; i++) {
            const dsq_hf_merge *m = &tok->merges[i];
            DSQ_CHECK(m->text != NULL || m->left != NULL, DSQ_FORMAT, err,
                      "tokenizer.json: merges[%zu] is neither a string nor a pair", i);
            DSQ_CHECK((merges[i] = merge_text(m)) != NULL, DSQ_NOMEM, err, "out of memory");
        }
        DSQ_TRY(dsq_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges",
                                            (const char *const *)merges, NULL, n_merges, err));
    }

    DSQ_TRY(add_special_vocab(w, tok, tcfg, cfg, n_vocab, err));

cleanup:
    for (size_t i = 0; owned != NULL && i < n_owned; i++)
        free(owned[i]);
    for (size_t i = 0; merges != NULL && i < n_merges; i++)
        free(merges[i]);
    free(merges);
    free(owned);
    free(strs);
    free(types);
    dsq_hf_tokjson_free(tok);
    dsq_hf_tokcfg_free(tcfg);
    return st;
}

/* tokenizer_config.json added_tokens_decoder {"id": {"content": ..., "special": ...}} on
 * top of a SentencePiece vocabulary: CONTROL when special or special-looking, else
 * USER_DEFINED with U+2581 as ' '; score -1000. Strings it makes go to owned. */
static dsq_status spm_decoder(const char *dir, const dsq_hf_tokcfg *tcfg, int64_t n_vocab,
                              const char **strs, float *scores, int32_t *types, char **owned,
                              size_t *n_owned, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_hf_kind dec_kind = tcfg ? tcfg->decoder_kind : DSQ_HF_ABSENT;
    if (dec_kind == DSQ_HF_ABSENT)
        return DSQ_OK;
    DSQ_CHECK(dec_kind == DSQ_HF_OBJECT, DSQ_FORMAT, err,
              "%s/tokenizer_config.json: added_tokens_decoder is not an object", dir);
    for (size_t i = 0; i < tcfg->n_decoder; i++) {
        const dsq_hf_decoder_entry *e = &tcfg->decoder[i];
        char *end = NULL;
        const long long id = strtoll(e->key, &end, 10);
        DSQ_CHECK(end != e->key && *end == '\0' && id >= 0 && id < n_vocab, DSQ_FORMAT, err,
                  "%s/tokenizer_config.json: added_tokens_decoder id '%s' not in [0, "
                  "vocab_size %lld)",
                  dir, e->key, (long long)n_vocab);
        DSQ_CHECK(e->content != NULL, DSQ_FORMAT, err,
                  "%s/tokenizer_config.json: added_tokens_decoder '%s' has no content", dir,
                  e->key);
        if (e->special || looks_special(e->content)) {
            strs[id] = e->content;
            types[id] = TT_CONTROL;
        } else {
            char *r = replace_all(e->content, "\xe2\x96\x81", " ");
            DSQ_CHECK(r != NULL, DSQ_NOMEM, err, "out of memory");
            owned[(*n_owned)++] = r;
            strs[id] = r;
            types[id] = TT_USER_DEFINED;
        }
        scores[id] = -1000.0f;
    }
cleanup:
    return st;
}

/* convert_hf_to_gguf.py _create_vocab_sentencepiece + _set_vocab_sentencepiece. */
static dsq_status add_vocab_spm(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                                const dsq_model_desc *cfg, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = NULL;
    dsq_spm_model *m = NULL;
    dsq_hf_tokjson *tok = NULL;
    dsq_hf_tokcfg *tcfg = NULL;
    dsq_hf_added_json *atj = NULL;
    const char **strs = NULL;
    char **owned = NULL;
    size_t n_owned = 0;
    float *scores = NULL;
    int32_t *types = NULL;

    DSQ_CHECK((path = dsq_path_join(dir, "tokenizer.model")) != NULL, DSQ_NOMEM, err,
              "out of memory");
    DSQ_TRY(dsq_spm_model_load(&m, path, err));
    DSQ_TRY(dsq_hf_tokjson_load(dir, &tok, err));
    DSQ_TRY(dsq_hf_tokcfg_load(dir, "tokenizer_config.json", &tcfg, err));
    DSQ_TRY(dsq_hf_added_json_load(dir, &atj, err));

    DSQ_CHECK(n_vocab > 0 && n_vocab <= DSQ_TOK_MAX_VOCAB, DSQ_FORMAT, err, "vocab_size %lld",
              (long long)n_vocab);
    /* the converter indexes its vocab_size-long lists with every piece id */
    DSQ_CHECK((int64_t)m->n <= n_vocab, DSQ_FORMAT, err,
              "%s: %zu pieces, more than config.json's vocab_size %lld", path, m->n,
              (long long)n_vocab);
    const size_t n_dec = tcfg ? tcfg->n_decoder : 0;
    strs = calloc((size_t)n_vocab, sizeof *strs);
    scores = malloc((size_t)n_vocab * sizeof *scores);
    types = malloc((size_t)n_vocab * sizeof *types);
    owned = calloc((size_t)n_vocab + n_dec, sizeof *owned);
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
        DSQ_CHECK(atj->is_object, DSQ_FORMAT, err, "%s/added_tokens.json: not an object", dir);
        for (size_t i = 0; i < atj->n; i++) {
            const dsq_hf_vocab_entry *e = &atj->entries[i];
            DSQ_CHECK(e->has_id && e->id >= 0, DSQ_FORMAT, err,
                      "%s/added_tokens.json: '%s' has no valid token id", dir, e->text);
            if (e->id >= n_vocab)
                continue;
            strs[e->id] = e->text;
            scores[e->id] = -1000.0f;
            types[e->id] = TT_USER_DEFINED;
        }
    }
    DSQ_TRY(spm_decoder(dir, tcfg, n_vocab, strs, scores, types, owned, &n_owned, err));

    DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", 5, err));
    DSQ_TRY(dsq_gguf_writer_add_str(w, "tokenizer.ggml.pre", "default", 7, err));
    DSQ_TRY(dsq_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", strs, NULL,
                                        (uint64_t)n_vocab, err));
    DSQ_TRY(dsq_gguf_writer_add_arr(w, "tokenizer.ggml.scores", DSQ_GGUF_FLOAT32, scores,
                                    (uint64_t)n_vocab, err));
    DSQ_TRY(dsq_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", DSQ_GGUF_INT32, types,
                                    (uint64_t)n_vocab, err));
    DSQ_TRY(add_special_vocab(w, tok, tcfg, cfg, n_vocab, err));

cleanup:
    for (size_t i = 0; owned != NULL && i < n_owned; i++)
        free(owned[i]);
    free(owned);
    free(strs);
    free(scores);
    free(types);
    dsq_hf_tokjson_free(tok);
    dsq_hf_tokcfg_free(tcfg);
    dsq_hf_added_json_free(atj);
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

/* Marks the special token named by entry e (a string or an AddedToken object; absent or
 * null names none) in is_special, by the id tokenizers gives it once tokenizer.json is
 * loaded (an added token first, then model.vocab). `what` and `file` name the entry. */
static dsq_status mark_special(const dsq_hf_special *e, const char *what, const char *file,
                               const dsq_hf_tokjson *tok, size_t n_tokens, uint8_t *is_special,
                               dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (e->kind == DSQ_HF_ABSENT || e->kind == DSQ_HF_NULL)
        goto cleanup;
    const char *c = e->content;
    DSQ_CHECK(c != NULL, DSQ_FORMAT, err, "%s: %s is neither a string nor a token object", file,
              what);
    const int64_t id = dsq_hf_tokjson_token_id(tok, c);
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

/* AutoTokenizer's class and the legacy layout's files: what transformers would change while
 * loading, refused (see gguf_vocab.h). *stm: special_tokens_map.json in the legacy layout. */
static dsq_status llama_hf_checks(const char *dir, const dsq_hf_tokcfg *tcfg, int *llama_cls,
                                  dsq_hf_tokcfg **stm, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *atj = NULL;
    /* AutoTokenizer's class: tokenizer_class, else the one of config.json's model_type
     * (llama: LlamaTokenizerFast). Only these two are modelled. */
    const char *cls = tcfg ? tcfg->tokenizer_class : NULL;
    *llama_cls = cls == NULL || strcmp(cls, "LlamaTokenizer") == 0 ||
                 strcmp(cls, "LlamaTokenizerFast") == 0;
    DSQ_CHECK(*llama_cls || strcmp(cls, "PreTrainedTokenizerFast") == 0, DSQ_UNSUPPORTED, err,
              "%s/tokenizer_config.json: tokenizer_class '%s' (dsq models LlamaTokenizerFast and "
              "PreTrainedTokenizerFast only)",
              dir, cls);
    /* LlamaTokenizerFast rebuilds itself from tokenizer.model when add_prefix_space is set,
     * and there is none: the converter fails */
    const dsq_hf_kind aps = tcfg ? tcfg->add_prefix_space : DSQ_HF_ABSENT;
    DSQ_CHECK(!*llama_cls || aps == DSQ_HF_ABSENT || aps == DSQ_HF_NULL, DSQ_UNSUPPORTED, err,
              "%s: tokenizer_config.json sets add_prefix_space, which makes LlamaTokenizerFast "
              "need a tokenizer.model: llama.cpp's converter fails on this checkpoint",
              dir);
    /* without added_tokens_decoder transformers takes the legacy path, where
     * special_tokens_map.json overrides the config and added_tokens.json adds tokens */
    if (tcfg == NULL || tcfg->decoder_kind == DSQ_HF_ABSENT) {
        DSQ_TRY(dsq_hf_tokcfg_load(dir, "special_tokens_map.json", stm, err));
        DSQ_CHECK(*stm == NULL || (*stm)->is_object, DSQ_FORMAT, err,
                  "%s/special_tokens_map.json: not an object", dir);
        DSQ_CHECK((atj = dsq_path_join(dir, "added_tokens.json")) != NULL, DSQ_NOMEM, err,
                  "out of memory");
        DSQ_CHECK(access(atj, F_OK) != 0, DSQ_UNSUPPORTED, err,
                  "%s: transformers would add the tokens of added_tokens.json to "
                  "tokenizer.json's when loading; dsq does not",
                  dir);
    }
cleanup:
    free(atj);
    return st;
}

/* tokens in id order: model.vocab (ids exactly 0 .. len-1: the converter walks them and
 * looks each up, a KeyError on a gap), then the added tokens new to it, at the ids
 * tokenizers gives them (it loads added_tokens by content, ignoring their ids: a content in
 * the vocab, or added before, keeps that id, a new one takes the next id past the
 * vocabulary; a stated id that would silently move is refused). */
static dsq_status llama_hf_tokens(const char *dir, const dsq_hf_tokjson *tok, const char **strs,
                                  size_t *n_tokens, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t base = tok->n_vocab;
    for (size_t i = 0; i < base; i++) {
        const dsq_hf_vocab_entry *v = &tok->vocab[i];
        DSQ_CHECK(v->has_id && v->id >= 0 && (size_t)v->id < base, DSQ_FORMAT, err,
                  "%s/tokenizer.json: model.vocab id of '%s' is not in [0, %zu) (the vocabulary "
                  "has %zu entries)",
                  dir, v->text, base, base);
        DSQ_CHECK(strs[v->id] == NULL, DSQ_FORMAT, err,
                  "%s/tokenizer.json: model.vocab gives id %lld to both '%s' and '%s'", dir,
                  (long long)v->id, strs[v->id], v->text);
        strs[v->id] = v->text;
    }
    *n_tokens = base;
    for (size_t i = 0; i < tok->n_added; i++) {
        const dsq_hf_added_token *a = &tok->added[i];
        const char *c = a->content;
        DSQ_CHECK(c != NULL && c[0] != '\0' && a->has_id, DSQ_FORMAT, err,
                  "%s/tokenizer.json: added_tokens[%zu] has no content or no id", dir, i);
        const int64_t want = dsq_hf_tokjson_token_id(tok, c);
        DSQ_CHECK(a->id == want, DSQ_FORMAT, err,
                  "%s/tokenizer.json: added_tokens[%zu] '%s' has id %lld but loads as id %lld "
                  "(its vocabulary id, or the next one past the vocabulary)",
                  dir, i, c, (long long)a->id, (long long)want);
        if ((size_t)want == *n_tokens)
            strs[(*n_tokens)++] = c;
    }
cleanup:
    return st;
}

/* all_special_tokens: the seven named tokens (LlamaTokenizerFast defaults bos, eos and unk
 * to <s>, </s>, <unk> when the config does not name them) and additional_special_tokens,
 * from tokenizer_config.json, in the legacy case overridden by special_tokens_map.json.
 * *bos / *eos: the contents named (NULL: none). */
static dsq_status llama_hf_specials(const char *dir, const dsq_hf_tokjson *tok,
                                    const dsq_hf_tokcfg *tcfg, const dsq_hf_tokcfg *stm,
                                    int llama_cls, size_t n_tokens, uint8_t *is_special,
                                    const char **bos, const char **eos, dsq_err *err) {
    static const char *const attrs[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                        "pad_token", "cls_token", "mask_token"};
    static const char *const defaults[] = {"<s>", "</s>", "<unk>"};
    dsq_status st = DSQ_OK;
    *bos = *eos = NULL;
    for (int t = 0; t < DSQ_HF_N_SPECIAL; t++) {
        dsq_hf_special e = {DSQ_HF_ABSENT, NULL};
        const char *file = "tokenizer_config.json";
        if (tcfg != NULL)
            e = tcfg->special[t];
        if (stm != NULL && stm->special[t].kind != DSQ_HF_ABSENT) {
            e = stm->special[t];
            file = "special_tokens_map.json";
        }
        if (e.kind == DSQ_HF_ABSENT && llama_cls && t < 3) {
            e.kind = DSQ_HF_STRING;
            e.content = defaults[t];
            file = "LlamaTokenizerFast's default";
        }
        DSQ_TRY(mark_special(&e, attrs[t], file, tok, n_tokens, is_special, err));
        if (t == DSQ_HF_BOS)
            *bos = e.content;
        if (t == DSQ_HF_EOS)
            *eos = e.content;
    }
    for (int f = 0; f < 2; f++) {
        const dsq_hf_tokcfg *doc = f == 0 ? tcfg : stm;
        const char *file = f == 0 ? "tokenizer_config.json" : "special_tokens_map.json";
        const dsq_hf_kind k = doc ? doc->additional_kind : DSQ_HF_ABSENT;
        DSQ_CHECK(k == DSQ_HF_ABSENT || k == DSQ_HF_NULL || k == DSQ_HF_ARRAY, DSQ_FORMAT, err,
                  "%s/%s: additional_special_tokens is not a list", dir, file);
        for (size_t i = 0; doc != NULL && i < doc->n_additional; i++)
            DSQ_TRY(mark_special(&doc->additional[i], "additional_special_tokens", file, tok,
                                 n_tokens, is_special, err));
    }
cleanup:
    return st;
}

/* gguf-py LlamaHfVocab (Feb-2025) as _set_vocab_llama_hf writes it; see gguf_vocab.h for the
 * rules. The converter reads the vocabulary through transformers' AutoTokenizer; dsq reads
 * the same files and refuses the cases where transformers would change the vocabulary while
 * loading it, rather than guess what it would do. */
static dsq_status add_vocab_llama_hf(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                                     const dsq_model_desc *cfg, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_hf_tokjson *tok = NULL;
    dsq_hf_tokcfg *tcfg = NULL, *stm = NULL;
    const char **strs = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    uint8_t *is_special = NULL;
    int llama_cls = 0;

    DSQ_TRY(need_tokjson(dir, &tok, err));
    DSQ_TRY(dsq_hf_tokcfg_load(dir, "tokenizer_config.json", &tcfg, err));
    DSQ_CHECK(tcfg == NULL || tcfg->is_object, DSQ_FORMAT, err,
              "%s/tokenizer_config.json: not an object", dir);
    DSQ_CHECK(n_vocab > 0 && n_vocab <= DSQ_TOK_MAX_VOCAB, DSQ_FORMAT, err, "vocab_size %lld",
              (long long)n_vocab);
    DSQ_TRY(llama_hf_checks(dir, tcfg, &llama_cls, &stm, err));

    DSQ_CHECK(tok->vocab_is_object && tok->n_vocab > 0, DSQ_FORMAT, err,
              "%s/tokenizer.json: model.vocab missing or empty", dir);
    DSQ_CHECK(tok->added_kind == DSQ_HF_ABSENT || tok->added_kind == DSQ_HF_ARRAY, DSQ_FORMAT,
              err, "%s/tokenizer.json: added_tokens is not an array", dir);
    const size_t base = tok->n_vocab, n_added = tok->n_added;
    DSQ_CHECK(base <= DSQ_TOK_MAX_VOCAB && n_added <= DSQ_TOK_MAX_VOCAB, DSQ_FORMAT, err,
              "%s/tokenizer.json: %zu tokens and %zu added tokens, too many", dir, base,
              n_added);
    strs = calloc(base + n_added, sizeof *strs);
    DSQ_CHECK(strs != NULL, DSQ_NOMEM, err, "out of memory");
    size_t n_tokens = 0;
    DSQ_TRY(llama_hf_tokens(dir, tok, strs, &n_tokens, err));
    /* the converter writes them all; ids past the embedding would have no row */
    DSQ_CHECK((int64_t)n_tokens <= n_vocab, DSQ_FORMAT, err,
              "%s/tokenizer.json: %zu tokens, more than config.json's vocab_size %lld", dir,
              n_tokens, (long long)n_vocab);

    /* tokenizer_config.json's added_tokens_decoder is applied on top of tokenizer.json; an
     * entry that is not already there as it says would be added or moved */
    const dsq_hf_kind dec_kind = tcfg ? tcfg->decoder_kind : DSQ_HF_ABSENT;
    DSQ_CHECK(dec_kind == DSQ_HF_ABSENT || dec_kind == DSQ_HF_OBJECT, DSQ_FORMAT, err,
              "%s/tokenizer_config.json: added_tokens_decoder is not an object", dir);
    for (size_t i = 0; tcfg != NULL && i < tcfg->n_decoder; i++) {
        const dsq_hf_decoder_entry *e = &tcfg->decoder[i];
        char *end = NULL;
        const long long id = strtoll(e->key, &end, 10);
        DSQ_CHECK(e->content != NULL && end != e->key && *end == '\0', DSQ_FORMAT, err,
                  "%s/tokenizer_config.json: added_tokens_decoder '%s' has no content or is not "
                  "an id",
                  dir, e->key);
        DSQ_CHECK(dsq_hf_tokjson_token_id(tok, e->content) == id, DSQ_UNSUPPORTED, err,
                  "%s/tokenizer_config.json: added_tokens_decoder %s '%s' is not that token of "
                  "tokenizer.json (transformers would add it when loading; dsq does not)",
                  dir, e->key, e->content);
    }

    is_special = calloc(n_tokens, 1);
    DSQ_CHECK(is_special != NULL, DSQ_NOMEM, err, "out of memory");
    const char *bos = NULL, *eos = NULL;
    DSQ_TRY(llama_hf_specials(dir, tok, tcfg, stm, llama_cls, n_tokens, is_special, &bos, &eos,
                              err));
    /* LlamaTokenizerFast.update_post_processor raises on these, and so the converter */
    if (llama_cls) {
        const dsq_hf_kind ab = tcfg ? tcfg->add_bos_token : DSQ_HF_ABSENT;
        const dsq_hf_kind ae = tcfg ? tcfg->add_eos_token : DSQ_HF_ABSENT;
        DSQ_CHECK(bos != NULL || ab == DSQ_HF_FALSE, DSQ_UNSUPPORTED, err,
                  "%s: add_bos_token is on but there is no bos_token: llama.cpp's converter "
                  "fails on this checkpoint",
                  dir);
        DSQ_CHECK(eos != NULL || ae != DSQ_HF_TRUE, DSQ_UNSUPPORTED, err,
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
    DSQ_TRY(add_special_vocab(w, tok, tcfg, cfg, (int64_t)n_tokens, err));

cleanup:
    free(strs);
    free(scores);
    free(types);
    free(is_special);
    dsq_hf_tokjson_free(tok);
    dsq_hf_tokcfg_free(tcfg);
    dsq_hf_tokcfg_free(stm);
    return st;
}

/* LlamaModel.set_vocab after the vocabulary: CodeLlama's (vocab_size 32016) EOT id (the
 * converter also asks for prefix/suffix/middle ids, but its GGUFWriter has no setter for
 * them and skips them), add_space_prefix from tokenizer_config.json's add_prefix_space,
 * and add_bos_token false for vocab_size 49152 (Granite). */
static dsq_status add_llama_extras(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                                   const dsq_model_desc *cfg, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_hf_tokcfg *tcfg = NULL;
    dsq_hf_tokjson *tok = NULL;
    DSQ_TRY(dsq_hf_tokcfg_load(dir, "tokenizer_config.json", &tcfg, err));
    if (n_vocab == 32016) {
        /* SpecialVocab(types=[prefix, suffix, middle, eot]): eot from the files first */
        int64_t eot = -1;
        DSQ_TRY(dsq_hf_tokjson_load(dir, &tok, err));
        const char *content = tcfg ? tcfg->eot.content : NULL;
        const dsq_hf_added_token *a = content ? dsq_hf_tokjson_added(tok, content) : NULL;
        if (a != NULL && a->has_id)
            eot = a->id;
        if (eot < 0 || eot >= n_vocab) {
            int found = 0;
            eot = cfg_token_id(cfg, "eot", &found);
        }
        DSQ_TRY(dsq_gguf_writer_add_u32(w, "tokenizer.ggml.eot_token_id",
                                        (uint32_t)(eot >= 0 && eot < n_vocab ? eot : 32010),
                                        err));
    }
    const dsq_hf_kind aps = tcfg ? tcfg->add_prefix_space : DSQ_HF_ABSENT;
    if (aps != DSQ_HF_ABSENT) {
        DSQ_CHECK(dsq_hf_is_bool(aps), DSQ_FORMAT, err,
                  "%s/tokenizer_config.json: add_prefix_space is not a boolean", dir);
        DSQ_TRY(dsq_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix",
                                         aps == DSQ_HF_TRUE, err));
    }
    if (n_vocab == 49152) {
        /* the converter raises "Duplicated key name" when add_bos_token was already set */
        DSQ_CHECK(tcfg == NULL || !dsq_hf_is_bool(tcfg->add_bos_token), DSQ_UNSUPPORTED, err,
                  "%s: vocab_size 49152 with add_bos_token in tokenizer_config.json: "
                  "llama.cpp's converter fails on this checkpoint (duplicate key)",
                  dir);
        DSQ_TRY(dsq_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false, err));
    }
cleanup:
    dsq_hf_tokcfg_free(tcfg);
    dsq_hf_tokjson_free(tok);
    return st;
}

dsq_status dsq_qz_add_vocab(dsq_gguf_writer *w, const char *dir, const char *arch,
                            int64_t n_vocab, const dsq_model_desc *cfg, const char *pre_override,
                            dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *spm = NULL;
    dsq_hf_tokjson *tok = NULL;
    const int llama = strcmp(arch, "llama") == 0;
    DSQ_CHECK((spm = dsq_path_join(dir, "tokenizer.model")) != NULL, DSQ_NOMEM, err,
              "out of memory");
    /* LlamaModel.set_vocab tries sentencepiece first and falls back only when
     * tokenizer.model does not exist; DeepseekV2Model always uses gpt2 */
    if (llama && access(spm, F_OK) == 0) {
        DSQ_TRY(add_vocab_spm(w, dir, n_vocab, cfg, err));
    } else {
        /* next the converter tries LlamaHfVocab: a tokenizer.json whose model is BPE with
         * byte_fallback and whose decoder is a Sequence (a Llama-2 style tokenizer saved
         * without its tokenizer.model) becomes a "llama" vocabulary, anything else gpt2 */
        int hf = 0;
        if (llama) {
            DSQ_TRY(dsq_hf_tokjson_load(dir, &tok, err));
            hf = tok != NULL && tok->model_type != NULL &&
                 strcmp(tok->model_type, "BPE") == 0 && tok->byte_fallback &&
                 tok->decoder_type != NULL && strcmp(tok->decoder_type, "Sequence") == 0;
            /* the vocabulary below loads it again, as it always has */
            dsq_hf_tokjson_free(tok);
            tok = NULL;
        }
        if (hf)
            DSQ_TRY(add_vocab_llama_hf(w, dir, n_vocab, cfg, err));
        else
            DSQ_TRY(add_vocab_gpt2(w, dir, n_vocab, cfg, pre_override, err));
    }
    if (llama)
        DSQ_TRY(add_llama_extras(w, dir, n_vocab, cfg, err));
cleanup:
    dsq_hf_tokjson_free(tok);
    free(spm);
    return st;
}
