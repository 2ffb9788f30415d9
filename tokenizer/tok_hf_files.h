/* tokenizer/tok_hf_files.h: the Hugging Face tokenizer files as written, for a converter.
 *
 * dsq_tokenizer (tokenizer.h) is a tokenizer built from tokenizer.json; a converter such as
 * the GGUF vocabulary writer (gguf_export/gguf_vocab.h) needs the files themselves instead:
 * the vocabulary in file order, the added tokens with their stated ids, the merges as
 * spelled, the special tokens tokenizer_config.json names, the pre-tokenizer's llama.cpp
 * name. This is that description, one struct per file:
 *   tokenizer.json                          dsq_hf_tokjson
 *   tokenizer_config.json,
 *   special_tokens_map.json (the same shape) dsq_hf_tokcfg
 *   added_tokens.json                       dsq_hf_added_json
 * (tokenizer.model is tok_spm_model.h's.) The loaders judge nothing but the JSON syntax:
 * a member of the wrong type is recorded as such, and the user decides what to refuse
 * (a converter must refuse exactly what the converter it follows refuses). Strings are
 * borrowed from the loaded document and live until its free. */
#ifndef DSQ_TOK_HF_FILES_H
#define DSQ_TOK_HF_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The kind of a member where "absent", "null" and "another type" lead to different
 * outcomes. */
typedef enum dsq_hf_kind {
    DSQ_HF_ABSENT = 0,
    DSQ_HF_NULL,
    DSQ_HF_TRUE,
    DSQ_HF_FALSE,
    DSQ_HF_STRING,
    DSQ_HF_ARRAY,
    DSQ_HF_OBJECT,
    DSQ_HF_OTHER, /* a number */
} dsq_hf_kind;

static inline int dsq_hf_is_bool(dsq_hf_kind k) {
    return k == DSQ_HF_TRUE || k == DSQ_HF_FALSE;
}

/* ---- tokenizer.json ---------------------------------------------------------------------- */

typedef struct dsq_hf_vocab_entry {
    const char *text;
    int64_t id;  /* the value when it is an integer, else 0 */
    int has_id;  /* the value is a JSON integer */
} dsq_hf_vocab_entry;

typedef struct dsq_hf_added_token {
    const char *content; /* NULL when not a string */
    int64_t id;          /* when an integer, else 0 */
    int has_id;
    int special; /* "special": true */
} dsq_hf_added_token;

typedef struct dsq_hf_merge {
    const char *text;        /* the "a b" form, else NULL */
    const char *left, *right; /* the ["a", "b"] form, else NULL */
} dsq_hf_merge;

typedef struct dsq_hf_tokjson {
    const char *model_type;   /* model.type, NULL when not a string */
    int byte_fallback;        /* model.byte_fallback is true */
    const char *decoder_type; /* decoder.type */
    /* the llama.cpp pre-tokenizer this pre_tokenizer is ("gpt-2", "llama-bpe",
     * "deepseek-v3"), told from its shape; NULL when dsq cannot name it */
    const char *pre;
    int vocab_is_object; /* model.vocab */
    size_t n_vocab;
    dsq_hf_vocab_entry *vocab; /* in file order */
    dsq_hf_kind added_kind;    /* added_tokens: ARRAY, ABSENT or another */
    size_t n_added;
    dsq_hf_added_token *added;
    size_t n_merges;        /* model.merges when an array */
    dsq_hf_merge *merges;   /* neither form: both NULL */
    void *doc_;             /* private */
} dsq_hf_tokjson;

/* dir/tokenizer.json; *out = NULL (DSQ_OK) when the file does not exist.
 * @return DSQ_OK, DSQ_FORMAT (not JSON: "path: line N: what"), DSQ_IO, DSQ_NOMEM. */
dsq_status dsq_hf_tokjson_load(const char *dir, dsq_hf_tokjson **out, dsq_err *err);
void dsq_hf_tokjson_free(dsq_hf_tokjson *t);
/* The model.vocab id of text as tokenizers stores it (-1 when absent or not an integer). */
int64_t dsq_hf_tokjson_vocab_id(const dsq_hf_tokjson *t, const char *text);
/* The id tokenizers gives text once it has loaded the file: an added token's (the id
 * AddedVocabulary gives it: its vocabulary id, or the one it was given when first added,
 * or the next one past the vocabulary), else its model.vocab id; -1 when none. */
int64_t dsq_hf_tokjson_token_id(const dsq_hf_tokjson *t, const char *text);
/* The first added token whose content is text, or NULL (also when t is NULL). */
const dsq_hf_added_token *dsq_hf_tokjson_added(const dsq_hf_tokjson *t, const char *text);

/* ---- tokenizer_config.json / special_tokens_map.json --------------------------------------- */

/* A special token entry: a string, or an AddedToken object {"content": ...}. */
typedef struct dsq_hf_special {
    dsq_hf_kind kind;
    const char *content; /* the string, or the object's content when a string; else NULL */
} dsq_hf_special;

/* The named special tokens, in transformers' SPECIAL_TOKENS_ATTRIBUTES order. */
enum {
    DSQ_HF_BOS,
    DSQ_HF_EOS,
    DSQ_HF_UNK,
    DSQ_HF_SEP,
    DSQ_HF_PAD,
    DSQ_HF_CLS,
    DSQ_HF_MASK,
    DSQ_HF_N_SPECIAL
};
/* "bos", "eos", ... for DSQ_HF_BOS ... */
const char *dsq_hf_special_name(int which);

typedef struct dsq_hf_decoder_entry { /* added_tokens_decoder {"<id>": {...}} */
    const char *key;
    const char *content; /* NULL when not a string */
    int special;
} dsq_hf_decoder_entry;

typedef struct dsq_hf_tokcfg {
    int is_object;
    dsq_hf_special special[DSQ_HF_N_SPECIAL]; /* <name>_token */
    dsq_hf_special eot;                       /* eot_token */
    dsq_hf_kind add_bos_token, add_eos_token, add_prefix_space;
    const char *chat_template;   /* NULL when not a string */
    const char *tokenizer_class; /* NULL when not a string */
    dsq_hf_kind decoder_kind;    /* added_tokens_decoder */
    size_t n_decoder;
    dsq_hf_decoder_entry *decoder;
    dsq_hf_kind additional_kind; /* additional_special_tokens */
    size_t n_additional;
    dsq_hf_special *additional;
    void *doc_;
} dsq_hf_tokcfg;

/* dir/name (tokenizer_config.json or special_tokens_map.json); *out = NULL when absent. */
dsq_status dsq_hf_tokcfg_load(const char *dir, const char *name, dsq_hf_tokcfg **out,
                              dsq_err *err);
void dsq_hf_tokcfg_free(dsq_hf_tokcfg *c);

/* ---- added_tokens.json {"text": id} ------------------------------------------------------ */

typedef struct dsq_hf_added_json {
    int is_object;
    size_t n;
    dsq_hf_vocab_entry *entries; /* in file order */
    void *doc_;
} dsq_hf_added_json;

dsq_status dsq_hf_added_json_load(const char *dir, dsq_hf_added_json **out, dsq_err *err);
void dsq_hf_added_json_free(dsq_hf_added_json *a);

#endif
