/* tokenizer/tok_spm_model.h: SentencePiece tokenizer.model files (a serialized ModelProto).
 *
 * Reads exactly what a GGUF "llama" vocabulary and dsq's SPM tokenizer need: the pieces
 * (text, score, type), a few TrainerSpec ids and NormalizerSpec flags. Everything else in
 * the file is skipped by wire type. tok_spm_model.c has the byte layout and the limits. */
#ifndef DSQ_TOK_SPM_MODEL_H
#define DSQ_TOK_SPM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

/* sentencepiece_model.proto ModelProto.SentencePiece.Type; the same numbers as
 * DSQ_TOKTYPE_* (GGUF token types), which is why llama.cpp can copy some of them. */
enum {
    DSQ_SPM_NORMAL = 1,
    DSQ_SPM_UNKNOWN = 2,
    DSQ_SPM_CONTROL = 3,
    DSQ_SPM_USER_DEFINED = 4,
    DSQ_SPM_UNUSED = 5,
    DSQ_SPM_BYTE = 6,
};

/* TrainerSpec.ModelType */
enum { DSQ_SPM_UNIGRAM = 1, DSQ_SPM_BPE = 2, DSQ_SPM_WORD = 3, DSQ_SPM_CHAR = 4 };

typedef struct dsq_spm_model {
    size_t n;                  /* pieces = SentencePieceProcessor::vocab_size() */
    const char *const *pieces; /* n NUL-terminated strings (a piece never holds NUL) */
    const size_t *piece_lens;  /* n byte lengths */
    const float *scores;       /* n scores (0 when the field is absent) */
    const int32_t *types;      /* n DSQ_SPM_* (NORMAL when absent) */
    /* TrainerSpec, with the proto defaults when absent */
    int32_t model_type;        /* DSQ_SPM_UNIGRAM .. DSQ_SPM_CHAR (default UNIGRAM) */
    int32_t vocab_size;        /* as trained (default 8000); not necessarily n */
    int32_t unk_id, bos_id, eos_id, pad_id; /* defaults 0, 1, 2, -1 */
    int byte_fallback;         /* default 0 */
    /* NormalizerSpec */
    int add_dummy_prefix;          /* default 1 */
    int remove_extra_whitespaces;  /* default 1 */
    int escape_whitespaces;        /* default 1 */
} dsq_spm_model;

/* Parses a tokenizer.model held in memory (p need not outlive the call: the model copies
 * what it keeps). source names the input in messages (may be NULL).
 * Beyond the wire format, it checks what SentencePieceProcessor::Load refuses: no pieces, an
 * empty or duplicated piece, not exactly one UNKNOWN piece, a BYTE piece not spelled <0xXX>,
 * an unknown model type; and dsq's limits: at most DSQ_TOK_MAX_VOCAB pieces, each at most
 * DSQ_TOK_MAX_TOKEN_LEN bytes without a NUL byte, a finite score, a type in 1..6.
 * @return DSQ_OK; DSQ_FORMAT (malformed protobuf or model, message with the byte offset);
 *         DSQ_UNSUPPORTED (a group wire type); DSQ_RANGE (a limit); DSQ_NOMEM.
 *         *out is owned: dsq_spm_model_free. */
dsq_status dsq_spm_model_parse(dsq_spm_model **out, const uint8_t *p, size_t n,
                               const char *source, dsq_err *err);
/* The same from a file (at most 1 GiB). Also DSQ_IO / DSQ_NOT_FOUND. */
dsq_status dsq_spm_model_load(dsq_spm_model **out, const char *path, dsq_err *err);
void dsq_spm_model_free(dsq_spm_model *m); /* accepts NULL */

/* Fills v with the model's arrays for dsq_tokenizer_from_spm_arrays: tokens, lengths,
 * scores, types (borrowed from m, valid until m is freed), unk/bos/eos ids (an id outside
 * [0, n) becomes -1), add_bos = 1, add_eos = 0 (SentencePiece's and llama.cpp's default),
 * add_space_prefix = add_dummy_prefix, escape_whitespace = escape_whitespaces. */
void dsq_spm_model_vocab(const dsq_spm_model *m, dsq_spm_vocab *v);

/* dsq_spm_model_load + dsq_spm_model_vocab + dsq_tokenizer_from_spm_arrays. Note that dsq's
 * SPM encoder applies no normalization rule (precompiled_charsmap, whitespace removal), as
 * llama.cpp does not for a "llama" vocabulary. *out is owned: dsq_tokenizer_free. */
dsq_status dsq_tokenizer_from_spm_model(dsq_tokenizer **out, const char *path, dsq_err *err);

#endif
