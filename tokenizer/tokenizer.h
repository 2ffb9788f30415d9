/* tokenizer/tokenizer.h: text <-> token ids for the perplexity/verify forward pass and calibration.
 *
 * Two families, one opaque handle:
 *
 *  - Byte-level BPE from a Hugging Face tokenizer.json (GPT-2, Llama-3, DeepSeek-V3 style):
 *    added/special tokens are cut out of the text first (as HF's AddedVocabulary does), each
 *    remaining segment goes through the pre-tokenizer chain (Split regexes, ByteLevel) with PCRE2
 *    in UTF+UCP mode, and every piece is merged by rank exactly as HF's BPE model does.
 *  - SentencePiece-style vocabularies (tokens + scores + types): llama2.c's tokenizer.bin, or the
 *    `tokenizer.ggml.*` arrays of a GGUF file supplied by whichever reader parsed it. Encoding is
 *    llama2.c's / llama.cpp's greedy merge of the best-scoring adjacent pair with byte fallback.
 *
 * A dsq_tokenizer is immutable after construction: encode/decode may run on one tokenizer from
 * several threads at once (every call allocates its own scratch). */
#ifndef DSQ_TOKENIZER_H
#define DSQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsq_tokenizer dsq_tokenizer;

/* Hard limits on what a vocabulary file may ask for. */
#define DSQ_TOK_MAX_VOCAB     (1 << 24) /* ids are 0 .. 16M-1 */
#define DSQ_TOK_MAX_TOKEN_LEN 65536     /* bytes of one token string */
#define DSQ_TOK_MAX_JSON      ((size_t)1 << 30)

/* Pre-tokenizer regexes, exactly as the HF tokenizer.json files spell them (PCRE2 syntax is the
 * same for these). GPT-2's is also what HF's ByteLevel pre-tokenizer applies when use_regex is
 * true. DeepSeek-V3 uses three Split(Isolated) steps in this order, then ByteLevel without regex.
 */
#define DSQ_TOK_RE_GPT2                                                                            \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define DSQ_TOK_RE_LLAMA3                                                                          \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                     \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define DSQ_TOK_RE_DSV3_DIGITS "\\p{N}{1,3}"
#define DSQ_TOK_RE_DSV3_CJK                                                                        \
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+"
#define DSQ_TOK_RE_DSV3_MAIN                                                                       \
    "[!\"#$%&'()*+,\\-./"                                                                          \
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"                \
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"

/* ---- construction ------------------------------------------------------------------------ */

/* Byte-level BPE from a tokenizer.json document in memory (json need not be NUL-terminated) and
 * an optional tokenizer_config.json document (config may be NULL). `source` names the input in
 * error messages (may be NULL).
 *
 * Supported: model.type "BPE" with vocab + merges ("a b" strings or ["a","b"] pairs),
 * ignore_merges, unk_token; added_tokens (special, lstrip, rstrip, single_word, normalized);
 * normalizer null or an empty Sequence; pre_tokenizer ByteLevel, Split (Regex or String pattern,
 * every behaviour, invert), Digits, Sequence of these; post_processor TemplateProcessing,
 * ByteLevel, Sequence. Anything else is DSQ_UNSUPPORTED, never silently wrong.
 *
 * Which special tokens encode adds: add_bos_token / add_eos_token from tokenizer_config.json when
 * present (transformers' LlamaTokenizerFast rebuilds its template from them), otherwise the
 * "single" template of the post_processor, otherwise none.
 *
 * @return DSQ_OK; DSQ_FORMAT (malformed JSON, merge naming an unknown token, ...), DSQ_RANGE (id
 *         out of range), DSQ_UNSUPPORTED, DSQ_NOMEM. *out is owned by the caller. */
dsq_status dsq_tokenizer_from_hf_json(dsq_tokenizer **out, const char *json, size_t len,
                                      const char *config_json, size_t config_len,
                                      const char *source, dsq_err *err);

/* The same from files; tokenizer_config_path may be NULL. Also DSQ_IO / DSQ_NOT_FOUND. */
dsq_status dsq_tokenizer_from_hf(dsq_tokenizer **out, const char *tokenizer_json_path,
                                 const char *tokenizer_config_path, dsq_err *err);

/* dir/tokenizer.json plus dir/tokenizer_config.json when that file exists. */
dsq_status dsq_tokenizer_from_hf_dir(dsq_tokenizer **out, const char *dir, dsq_err *err);

/* llama2.c tokenizer.bin: u32 max_token_length, then per token f32 score, i32 len, len bytes (all
 * little-endian), vocab_size tokens. llama2.c does not store the vocabulary size in the file (it
 * comes from the checkpoint header); pass it as n_vocab, or 0 to read tokens up to end of file.
 * Id 1 is bos and id 2 eos (llama2.c's convention); encode adds bos when add_special is set.
 * @return DSQ_OK, DSQ_IO, DSQ_FORMAT (truncated or inconsistent file), DSQ_RANGE, DSQ_NOMEM. */
dsq_status dsq_tokenizer_from_llama2c(dsq_tokenizer **out, const char *path, int32_t n_vocab,
                                      dsq_err *err);
/* The same from memory (used by the reader above and by tests). */
dsq_status dsq_tokenizer_from_llama2c_mem(dsq_tokenizer **out, const uint8_t *data, size_t len,
                                          int32_t n_vocab, const char *source, dsq_err *err);

/* GGUF token types (tokenizer.ggml.token_type). */
enum {
    DSQ_TOKTYPE_NORMAL = 1,
    DSQ_TOKTYPE_UNKNOWN = 2,
    DSQ_TOKTYPE_CONTROL = 3,
    DSQ_TOKTYPE_USER_DEFINED = 4,
    DSQ_TOKTYPE_UNUSED = 5,
    DSQ_TOKTYPE_BYTE = 6,
};

/* A SentencePiece-style vocabulary as arrays; everything is borrowed for the duration of the
 * call only (the tokenizer copies what it keeps). */
typedef struct dsq_spm_vocab {
    size_t n;                  /* number of tokens, ids 0 .. n-1 */
    const char *const *tokens; /* n token strings */
    const size_t *token_lens;  /* n byte lengths, or NULL: tokens are NUL-terminated */
    const float *scores;       /* n scores (higher merges first), or NULL: all 0 */
    const int32_t *types;      /* n DSQ_TOKTYPE_*, or NULL: <0xXX> are BYTE, rest NORMAL */
    int32_t bos_id;            /* -1: none */
    int32_t eos_id;            /* -1: none */
    int32_t unk_id;            /* -1: none (then an unencodable byte is an error) */
    int add_bos;               /* encode(add_special) prepends bos */
    int add_eos;               /* encode(add_special) appends eos */
    int add_space_prefix;  /* prepend one space to non-empty text (SentencePiece dummy prefix) */
    int escape_whitespace; /* spaces are U+2581 in the vocab (SentencePiece, GGUF "llama");
                              0 for llama2.c's tokenizer.bin, which stores plain spaces */
} dsq_spm_vocab;

/* GGUF "llama" vocabularies: tokens/scores/token_type from the metadata, bos/eos/unk ids and
 * add_bos/add_eos from tokenizer.ggml.*, add_space_prefix = 1 and escape_whitespace = 1.
 * @return DSQ_OK, DSQ_INVALID_ARG, DSQ_RANGE, DSQ_FORMAT (NaN score, a BYTE token that is not
 *         <0xXX>), DSQ_NOMEM. A string given to two ids belongs to the first. */
dsq_status dsq_tokenizer_from_spm_arrays(dsq_tokenizer **out, const dsq_spm_vocab *v, dsq_err *err);

/* A byte-level BPE vocabulary as arrays (GGUF tokenizer.ggml.model = "gpt2"); borrowed for the
 * call only. Tokens of type CONTROL or USER_DEFINED are matched in the text before
 * pre-tokenization, as HF does with its added tokens (CONTROL ones are special: skipped by
 * decode(skip_special)). */
typedef struct dsq_bpe_vocab {
    size_t n;                  /* number of tokens, ids 0 .. n-1 */
    const char *const *tokens; /* n token strings, byte-level spelling ("Ġthe") */
    const size_t *token_lens;  /* n byte lengths, or NULL: NUL-terminated */
    const int32_t *types;      /* n DSQ_TOKTYPE_*, or NULL: all NORMAL */
    size_t n_merges;
    const char *const *merges; /* "left right", in rank order */
    const size_t *merge_lens;  /* or NULL: NUL-terminated */
    const char *pre;           /* tokenizer.ggml.pre: NULL/"default"/"gpt-2" (GPT-2 regex),
                                  "llama-bpe"/"llama3" (Llama-3 regex, ignore_merges),
                                  "deepseek-v3"; others are DSQ_UNSUPPORTED */
    int32_t bos_id;            /* -1: none */
    int32_t eos_id;            /* -1: none */
    int add_bos, add_eos;
} dsq_bpe_vocab;

/* @return DSQ_OK, DSQ_INVALID_ARG, DSQ_RANGE, DSQ_FORMAT (bad merge), DSQ_UNSUPPORTED (pre),
 *         DSQ_NOMEM. */
dsq_status dsq_tokenizer_from_bpe_arrays(dsq_tokenizer **out, const dsq_bpe_vocab *v, dsq_err *err);

/* Frees a tokenizer; accepts NULL. */
void dsq_tokenizer_free(dsq_tokenizer *tok);

/* ---- use --------------------------------------------------------------------------------- */

/* Encodes len bytes of text (need not be NUL-terminated; invalid UTF-8 is tolerated: such bytes
 * end up in their own pieces and are encoded byte by byte). With add_special, the tokenizer's
 * bos/eos policy applies (see the constructors). *ids is owned by the caller (free()); it is
 * non-NULL on success even when *n is 0. */
dsq_status dsq_tokenizer_encode(const dsq_tokenizer *tok, const char *text, size_t len,
                                int add_special, int32_t **ids, size_t *n, dsq_err *err);

/* Decodes ids back to bytes (*out is NUL-terminated, owned by the caller; *len excludes the NUL).
 * skip_special drops special/control tokens (bos, eos, ...) instead of writing their text.
 * SentencePiece vocabularies drop the dummy-prefix space of the first piece and of every piece
 * right after bos, so decode(encode(text)) == text.
 * @return DSQ_OK, DSQ_RANGE (id outside the vocabulary), DSQ_NOMEM. */
dsq_status dsq_tokenizer_decode(const dsq_tokenizer *tok, const int32_t *ids, size_t n,
                                int skip_special, char **out, size_t *len, dsq_err *err);

/* The pieces the pre-tokenizer produces for text (after cutting out added tokens, which appear as
 * pieces of their own), concatenated in *blob with their lengths in *lens; both owned by the
 * caller. For tests and debugging; SentencePiece tokenizers return the whole text as one piece. */
dsq_status dsq_tokenizer_pretokenize(const dsq_tokenizer *tok, const char *text, size_t len,
                                     char **blob, size_t **lens, size_t *n, dsq_err *err);

int32_t dsq_tokenizer_bos(const dsq_tokenizer *tok);     /* -1 when there is none */
int32_t dsq_tokenizer_eos(const dsq_tokenizer *tok);     /* -1 when there is none */
int32_t dsq_tokenizer_n_vocab(const dsq_tokenizer *tok); /* one past the largest id */
/* The token's text as stored in the vocabulary (byte-level spelling for BPE); borrowed, valid
 * until dsq_tokenizer_free; NULL for an id outside the vocabulary. */
const char *dsq_tokenizer_token_text(const dsq_tokenizer *tok, int32_t id, size_t *len);
/* Looks a token up by its vocabulary text; -1 when absent. */
int32_t dsq_tokenizer_token_id(const dsq_tokenizer *tok, const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif
