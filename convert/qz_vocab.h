/* convert/qz_vocab.h: tokenizer.* GGUF metadata from a Hugging Face tokenizer.
 *
 * What llama.cpp's converter writes for a byte-level BPE tokenizer (_set_vocab_gpt2 and
 * gguf-py's SpecialVocab; specs/formats.md §3.1), read straight from tokenizer.json,
 * tokenizer_config.json and config.json with jansson: no tokenization is done.
 *   tokenizer.ggml.model      "gpt2"
 *   tokenizer.ggml.pre        by the pre-tokenizer's shape (the converter hashes the
 *                             tokenizer's output instead; pre_override replaces the guess)
 *   tokenizer.ggml.tokens     n_vocab strings by id; ids without a token are "[PAD<id>]"
 *   tokenizer.ggml.token_type 1 normal, 3 control (special added tokens, or added tokens
 *                             that look special), 4 user-defined, 5 unused (the pads)
 *   tokenizer.ggml.merges     in rank order; pair-form merges joined by a space, with spaces
 *                             inside a part written as U+0120 as gguf-py does
 *   tokenizer.ggml.{bos,eos,unknown,seperator,padding,cls,mask}_token_id
 *                             from tokenizer_config.json's <typ>_token looked up among
 *                             tokenizer.json's added_tokens, else config.json <typ>_token_id
 *   tokenizer.ggml.add_bos_token / add_eos_token, tokenizer.chat_template */
#ifndef DSQ_QZ_VOCAB_H
#define DSQ_QZ_VOCAB_H

#include <stdint.h>

#include "core/status.h"
#include "formats/gguf.h"

/* dir holds tokenizer.json (required), tokenizer_config.json and config.json (optional).
 * @return DSQ_OK; DSQ_NOT_FOUND (no tokenizer.json); DSQ_FORMAT (bad JSON, an id out of
 *         range); DSQ_UNSUPPORTED (not BPE, or a pre-tokenizer dsq cannot name and no
 *         override); DSQ_NOMEM. */
dsq_status dsq_qz_add_vocab(dsq_gguf_writer *w, const char *dir, int64_t n_vocab,
                            const char *pre_override, dsq_err *err);

#endif
