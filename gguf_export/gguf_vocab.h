/* gguf_export/gguf_vocab.h: tokenizer.* GGUF metadata from a Hugging Face tokenizer.
 *
 * Which vocabulary, as convert_hf_to_gguf.py (Feb-2025 snapshot) picks it: for the llama
 * architecture a tokenizer.model (SentencePiece) wins whenever the file exists, even beside
 * a tokenizer.json (LlamaModel.set_vocab tries _set_vocab_sentencepiece first and falls back
 * only on FileNotFoundError); deepseek2 always uses tokenizer.json (_set_vocab_gpt2).
 * Between the two, for llama without tokenizer.model, the converter tries LlamaHfVocab: a
 * tokenizer.json whose model is BPE with byte_fallback and whose decoder is a Sequence (a
 * Llama-2 style tokenizer) becomes a "llama" vocabulary (below); any other tokenizer.json
 * becomes gpt2.
 *
 * SentencePiece (_create_vocab_sentencepiece, _set_vocab_sentencepiece), from tokenizer.model
 * read by tokenizer/tok_spm_model.h:
 *   tokenizer.ggml.model "llama", tokenizer.ggml.pre "default"
 *   tokenizer.ggml.tokens/scores/token_type, vocab_size (config.json) long:
 *     ids < pieces   the piece, its score, type UNKNOWN 2 / CONTROL 3 / UNUSED 5 / BYTE 6 as
 *                    in the model, NORMAL 1 otherwise (USER_DEFINED pieces too, as the
 *                    converter asks sentencepiece only IsUnknown/IsControl/IsUnused/IsByte)
 *     other ids      "[PAD<id>]", score -10000, UNUSED
 *     then added_tokens.json {"text": id} (ids >= vocab_size ignored): the text, -1000,
 *                    USER_DEFINED; then tokenizer_config.json added_tokens_decoder: the
 *                    content, -1000, CONTROL when special or special-looking, else
 *                    USER_DEFINED with U+2581 written as ' '
 *   special ids, add_bos/add_eos and chat_template as for BPE below (the ids come from
 *   tokenizer.json's added_tokens and config.json, never from the tokenizer.model).
 * A model with more pieces than vocab_size is an error (the converter's IndexError).
 *
 * LlamaHfVocab (gguf-py vocab.py, _set_vocab_llama_hf), which reads the files through
 * transformers' AutoTokenizer (LlamaTokenizerFast, or PreTrainedTokenizerFast when
 * tokenizer_class says so):
 *   tokenizer.ggml.model "llama", tokenizer.ggml.pre "default"
 *   tokenizer.ggml.tokens     model.vocab in id order, then the added tokens past it in id
 *                             order: as many as there are, not padded to vocab_size
 *   tokenizer.ggml.scores     -1000 for every token (the converter has no scores to give,
 *                             so llama.cpp merges leftmost-first and may tokenize otherwise
 *                             than the tokenizer.model of the same vocabulary would)
 *   tokenizer.ggml.token_type <0xXX> BYTE 6; then CONTROL 3 for transformers'
 *                             all_special_ids: the bos/eos/unk/sep/pad/cls/mask tokens and
 *                             additional_special_tokens tokenizer_config.json names (in the
 *                             legacy layout, without added_tokens_decoder,
 *                             special_tokens_map.json's entries win), bos/eos/unk defaulting
 *                             to <s> </s> <unk> for LlamaTokenizerFast; NORMAL 1 otherwise;
 *                             added tokens past the vocabulary CONTROL when special in that
 *                             sense, else USER_DEFINED 4, their text unchanged
 *   special ids, add_bos/add_eos and chat_template as for BPE below, with n_vocab the
 *   number of tokens written.
 * dsq refuses (DSQ_FORMAT) ids that are not exactly 0 .. len(model.vocab)-1 (the converter's
 * KeyError), an added token whose stated id is not the one tokenizers gives it (its vocab id,
 * else the next id past the vocabulary in file order; tokenizers only warns and moves it),
 * and more tokens than config.json's vocab_size (the converter writes them; they would have
 * no embedding row). It refuses (DSQ_UNSUPPORTED) what transformers would change while
 * loading, rather than guess: a special token or an added_tokens_decoder entry tokenizer.json
 * lacks, added_tokens.json in the legacy layout, another tokenizer_class; and what makes the
 * converter fail: add_prefix_space with LlamaTokenizerFast (it then needs tokenizer.model),
 * add_bos_token (default on) without a bos_token, add_eos_token without an eos_token.
 *
 * llama architecture, any vocabulary (LlamaModel.set_vocab): tokenizer.ggml.eot_token_id
 * for vocab_size 32016 (CodeLlama; 32010 unless the files name one),
 * tokenizer.ggml.add_space_prefix from tokenizer_config.json add_prefix_space when present,
 * tokenizer.ggml.add_bos_token false for vocab_size 49152.
 *
 * What llama.cpp's converter writes for a byte-level BPE tokenizer (_set_vocab_gpt2 and
 * gguf-py's SpecialVocab; specs/formats.md §3.1), from tokenizer.json, tokenizer_config.json
 * (as tokenizer/tok_hf_files.h describes them) and config.json: no tokenization is done.
 *   tokenizer.ggml.model      "gpt2"
 *   tokenizer.ggml.pre        by the pre-tokenizer's shape (the converter hashes the
 *                             tokenizer's output instead; pre_override replaces the guess)
 *   tokenizer.ggml.tokens     n_vocab strings by id; ids without a token are "[PAD<id>]"
 *   tokenizer.ggml.token_type 1 normal, 3 control (special added tokens, or added tokens
 *                             that look special), 4 user-defined, 5 unused (the pads)
 *   tokenizer.ggml.merges     in rank order; pair-form merges joined by a space, with spaces
 *                             inside a part written as U+0120 as gguf-py does
 *   tokenizer.ggml.{bos,eos,unknown,seperator,padding,mask}_token_id
 *                             from tokenizer_config.json's <typ>_token looked up among
 *                             tokenizer.json's added_tokens, else config.json <typ>_token_id
 *                             (in that order: the converter's dict order); a negative id is
 *                             an error, one >= n_vocab is skipped; no cls id (the snapshot's
 *                             GGUFWriter has no setter for it)
 *   tokenizer.ggml.add_bos_token / add_eos_token, tokenizer.chat_template */
#ifndef DSQ_QZ_VOCAB_H
#define DSQ_QZ_VOCAB_H

#include <stdint.h>

#include "core/status.h"
#include "formats/gguf.h"
#include "model/model_desc.h"

/* dir holds tokenizer.json or (llama) tokenizer.model, and optionally tokenizer_config.json,
 * added_tokens.json, special_tokens_map.json (read by tokenizer/tok_hf_files.h); cfg is
 * config.json's description (model/model_desc.h; NULL: no config.json), for the special
 * token ids it names. arch is the GGUF architecture name ("llama", "deepseek2").
 * pre_override applies to the gpt2 vocabulary only.
 * @return DSQ_OK; DSQ_NOT_FOUND (no tokenizer); DSQ_FORMAT (bad JSON or tokenizer.model, an
 *         id out of range); DSQ_UNSUPPORTED (not BPE, a pre-tokenizer dsq cannot name and no
 *         override, a LlamaHfVocab case listed above); DSQ_RANGE; DSQ_NOMEM. */
dsq_status dsq_qz_add_vocab(dsq_gguf_writer *w, const char *dir, const char *arch,
                            int64_t n_vocab, const dsq_model_desc *cfg, const char *pre_override,
                            dsq_err *err);

#endif
