/* verify/llama_logits.h: llama.cpp's `--kl-divergence-base` file (what
 * `llama-perplexity --save-all-logits FILE` writes and `--kl-divergence`
 * reads), read and written by dsq so that `dsq verify` can gate against a
 * reference llama.cpp computed, and llama.cpp against dsq's.
 *
 * The layout, from ggerganov/llama.cpp @c392e50
 * examples/perplexity/perplexity.cpp (perplexity(), process_logits() with an
 * output stream, log_softmax() with a uint16 output, kl_divergence()); every
 * number in the machine's byte order, little-endian on every machine dsq and
 * llama.cpp run on:
 *   "_logits_"                    8 bytes
 *   n_ctx, n_vocab, n_chunk       int32 each (the per-sequence context)
 *   tokens[n_chunk · n_ctx]       int32: the text's tokens as tokenized, not
 *                                 with position 0 replaced by BOS
 *   then for each chunk, for each scored position (n_ctx - 1 - n_ctx/2 of
 *   them, logits at n_ctx/2 … n_ctx-2 as in llama-perplexity), one record of
 *   nv = 2·⌈n_vocab/2⌉ + 4 uint16:
 *     float scale, float min_log_prob  (the first 4 uint16)
 *     uint16 q[n_vocab]                (one more, 0, when n_vocab is odd)
 * with, from the position's logits l (max M, min m' = max(min l, M - 16),
 * s = Σ expf(l_i - M) in double, lse = (float) log s):
 *   min_log_prob = m' - M - lse,   scale = (M - m') / 65535
 *   q_i = l_i > m' ? round-half-even((1/scale) · (l_i - m')) : 0   (all 0 if scale is 0)
 * so log p_i ≈ scale · q_i + min_log_prob, to half a step (16/65535 nats at
 * most), with every log-probability below M - 16 - lse clamped to that
 * floor. No checksum. A reader therefore counts, as llama.cpp's does, only
 * the tokens whose stored log p is above -16 (kld.h). */
#ifndef DSQ_LLAMA_LOGITS_H
#define DSQ_LLAMA_LOGITS_H

#include <stdint.h>

#include "core/file.h"
#include "core/status.h"

#define DSQ_LLAMA_LOGITS_MAGIC "_logits_"

/* An open file: its header and tokens in memory, the records read a window at
 * a time. */
typedef struct dsq_llama_logits {
    int64_t n_ctx, vocab, n_chunks;
    int64_t n_score;        /* records a chunk: n_ctx - 1 - n_ctx/2 */
    int64_t nv;             /* uint16 a record */
    int32_t *tokens;        /* [n_chunks · n_ctx] */
    char *path;
    int fd;
} dsq_llama_logits;

/* 1 when the first bytes of a file are this format's magic. */
int dsq_llama_logits_sniff(const void *head, size_t n);

/* Opens and checks the header, the tokens (non-negative, below n_vocab) and
 * that the size is exactly what the header says.
 * @return DSQ_OK; DSQ_NOT_FOUND / DSQ_IO; DSQ_FORMAT naming the file and what
 *         is wrong; DSQ_NOMEM. */
dsq_status dsq_llama_logits_open(dsq_llama_logits **out, const char *path, dsq_err *err);
void dsq_llama_logits_close(dsq_llama_logits *f); /* accepts NULL */

/* Bytes of one chunk's records: n_score · nv · 2. */
size_t dsq_llama_logits_chunk_bytes(const dsq_llama_logits *f);
/* Reads chunk c's records into buf (dsq_llama_logits_chunk_bytes). Safe from
 * several threads at once. Checks that every record's scale and min are
 * finite, the scale not negative and the min not positive.
 * @return DSQ_OK; DSQ_IO; DSQ_FORMAT naming the file, chunk and position. */
dsq_status dsq_llama_logits_read(const dsq_llama_logits *f, int64_t c, uint8_t *buf,
                                 dsq_err *err);

/* One record (2·nv bytes) decoded: its scale and floor, and q_i. */
float dsq_llama_rec_scale(const uint8_t *rec);
float dsq_llama_rec_min(const uint8_t *rec);
static inline uint16_t dsq_llama_rec_q(const uint8_t *rec, int64_t i) {
    const uint8_t *p = rec + 8 + 2 * (size_t)i;
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* Writing: the header at creation, then every chunk's records (given as the
 * chunk's scored logits, from any thread, in any order), written in chunk
 * order to a hidden temporary file renamed into place on commit. Chunks that
 * come early wait in memory (2·nv bytes a position) until the ones before
 * them are written: with windows handed out in order to a few workers, about
 * one chunk per worker. */
typedef struct dsq_llama_writer dsq_llama_writer;

/* tokens: [n_chunks · n_ctx], the text's own (before BOS replacement).
 * @return DSQ_OK; DSQ_INVALID_ARG (sizes beyond int32, a path without a file
 *         name); DSQ_IO; DSQ_NOMEM. */
dsq_status dsq_llama_writer_open(dsq_llama_writer **out, const char *path, int64_t n_ctx,
                                 int64_t vocab, int64_t n_chunks, const int32_t *tokens,
                                 dsq_err *err);
/* Chunk c's scored logits [n_score][vocab]. @return DSQ_OK; DSQ_IO; DSQ_NOMEM. */
dsq_status dsq_llama_writer_put(dsq_llama_writer *w, int64_t c, const float *logits,
                                dsq_err *err);
/* Renames the file into place once every chunk is written, and frees w.
 * @return DSQ_OK; DSQ_IO; DSQ_INVALID_ARG when chunks are missing. */
dsq_status dsq_llama_writer_commit(dsq_llama_writer *w, dsq_err *err);
void dsq_llama_writer_abort(dsq_llama_writer *w); /* removes the temporary; accepts NULL */

/* One position's record from its logits [vocab], as llama-perplexity encodes
 * it (rec: 2·nv bytes). */
void dsq_llama_encode(const float *logits, int64_t vocab, uint8_t *rec);

/* Private to verify/: a crash-safe output file (core/file.h) at a path given
 * as "dir/name" or "name"; the reference files of ref_topk.c use it too.
 * @return DSQ_OK; DSQ_INVALID_ARG for a path without a usable file name;
 *         dsq_outfile_open's errors. */
dsq_status dsq__outfile_at(dsq_outfile **out, const char *path, dsq_err *err);

#endif
