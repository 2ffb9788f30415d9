/* tokenizer/tok_spm.c: SentencePiece-style vocabularies (llama2.c tokenizer.bin, GGUF "llama").
 *
 * llama2.c tokenizer.bin layout (little-endian):
 *     u32 max_token_length
 *     vocab_size times: f32 score, i32 len, len bytes of token text (not NUL-terminated)
 * The vocabulary size is not in the file (llama2.c takes it from the checkpoint). Ids 0, 1, 2 are
 * <unk>, bos ("\n<s>\n") and eos ("\n</s>\n"); ids 3..258 are the byte tokens <0x00>..<0xFF>.
 * Limits: token length <= min(max_token_length, DSQ_TOK_MAX_TOKEN_LEN), at most
 * DSQ_TOK_MAX_VOCAB tokens, and every record must lie wholly inside the file.
 *
 * Encoding is llama2.c's run.c encode(), which is also llama.cpp's llm_tokenizer_spm:
 *   1. prepend the dummy-prefix space (U+2581 in SentencePiece vocabularies) to non-empty text;
 *      SentencePiece vocabularies also spell every space as U+2581;
 *   2. one symbol per UTF-8 code point;
 *   3. repeatedly merge the adjacent pair whose concatenation is the best-scoring token (ties:
 *      leftmost), until no pair is a token;
 *   4. symbols that are not tokens fall back to their bytes' <0xXX> tokens (else unk).
 * run.c rescans all pairs after every merge (O(n^2)); a heap of candidate pairs ordered by
 * (score desc, position asc) picks the same pair each step in O(log n), as llama.cpp does. In
 * run.c a code point missing from the vocabulary becomes byte tokens at once and never merges;
 * llama.cpp lets it merge when the concatenation is a token. merge_unknown selects the latter
 * (GGUF vocabularies); llama2.c vocabularies use the former. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/file.h"
#include "core/le.h"
#include "core/heap.h"
#include "tokenizer/tok_internal.h"

#define SPM_SPACE "\xe2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space */

/* ==== encoding ============================================================================== */

typedef struct spm_sym {
    size_t off, len; /* span of the (escaped) text; len 0 once merged into the left neighbour */
    int32_t prev, next;
    int32_t id; /* token of the span, -1 when it is not a token */
} spm_sym;

typedef struct spm_ent {
    float score;
    int32_t left, right, id;
    size_t len; /* span length when pushed, to spot stale entries */
} spm_ent;

static int spm_before(const spm_ent *a, const spm_ent *b) {
    if (a->score > b->score)
        return 1;
    if (a->score < b->score)
        return 0;
    return a->left < b->left;
}

DSQ_HEAP_DEFINE(spm, spm_ent, spm_before)

/* Pushes the pair (l, r) when its concatenation is a token. */
static void try_pair(const dsq_tokenizer *t, const char *txt, const spm_sym *s, int32_t l,
                     int32_t r, spm_ent *h, size_t *nh) {
    if (l < 0 || r < 0)
        return;
    if (!t->merge_unknown && (s[l].id < 0 || s[r].id < 0))
        return;
    const size_t len = s[l].len + s[r].len;
    const int32_t id = dsq__tok_lookup(t, txt + s[l].off, len);
    if (id < 0)
        return;
    spm_push(h, nh, (spm_ent){t->scores[id], l, r, id, len});
}

dsq_status dsq__tok_spm_encode(const dsq_tokenizer *t, const char *text, size_t len, tok_ids *ids,
                               dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_buf b = {0};
    spm_sym *s = NULL;
    spm_ent *heap = NULL;
    size_t ns = 0, nh = 0;
    if (len == 0)
        goto cleanup;

    /* 1. the escaped text */
    if (t->add_space_prefix)
        DSQ_CHECK(dsq__tok_buf_put(&b, t->escape_whitespace ? SPM_SPACE : " ",
                                   t->escape_whitespace ? 3 : 1),
                  DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < len; i++) {
        const int esc = t->escape_whitespace && text[i] == ' ';
        DSQ_CHECK(dsq__tok_buf_put(&b, esc ? SPM_SPACE : text + i, esc ? 3 : 1), DSQ_NOMEM, err,
                  "out of memory");
    }
    DSQ_CHECK(b.n < INT32_MAX / 2, DSQ_RANGE, err, "encode: %zu bytes of text", len);

    /* 2. one symbol per code point (an invalid byte is a symbol of its own) */
    s = malloc(b.n * sizeof(spm_sym));
    heap = malloc(2 * b.n * sizeof(spm_ent));
    DSQ_CHECK(s != NULL && heap != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < b.n;) {
        uint32_t cp;
        const size_t l = dsq__tok_utf8_next(b.p + i, b.n - i, &cp);
        s[ns].off = i;
        s[ns].len = l;
        s[ns].prev = (int32_t)ns - 1;
        s[ns].next = (int32_t)ns + 1;
        s[ns].id = dsq__tok_lookup(t, b.p + i, l);
        ns++;
        i += l;
    }
    s[ns - 1].next = -1;

    /* 3. merges; the heap holds at most ns - 1 + 2 (ns - 1) entries minus one per pop, and
     * every merge pops first, so 2 ns bounds it */
    for (size_t i = 0; i + 1 < ns; i++)
        try_pair(t, b.p, s, (int32_t)i, (int32_t)i + 1, heap, &nh);
    while (nh > 0) {
        const spm_ent e = spm_pop(heap, &nh);
        spm_sym *l = &s[e.left], *r = &s[e.right];
        if (l->len == 0 || r->len == 0 || l->next != e.right || l->len + r->len != e.len)
            continue;
        l->len += r->len;
        l->id = e.id;
        r->len = 0;
        l->next = r->next;
        if (l->next >= 0)
            s[l->next].prev = e.left;
        if (nh + 2 <= 2 * b.n) {
            try_pair(t, b.p, s, l->prev, e.left, heap, &nh);
            if (nh + 1 <= 2 * b.n)
                try_pair(t, b.p, s, e.left, l->next, heap, &nh);
        }
    }

    /* 4. output, with byte fallback */
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        if (s[i].id >= 0) {
            DSQ_CHECK(dsq__tok_ids_push(ids, s[i].id), DSQ_NOMEM, err, "out of memory");
            continue;
        }
        for (size_t k = 0; k < s[i].len; k++) {
            const uint8_t c = (uint8_t)b.p[s[i].off + k];
            const int32_t id = t->byte_tok[c] >= 0 ? t->byte_tok[c] : t->unk_id;
            DSQ_CHECK(id >= 0, DSQ_RANGE, err,
                      "encode: byte 0x%02X has no token and the vocabulary has no unk", c);
            DSQ_CHECK(dsq__tok_ids_push(ids, id), DSQ_NOMEM, err, "out of memory");
            if (t->byte_tok[c] < 0) /* one unk stands for the whole unknown symbol */
                break;
        }
    }
cleanup:
    free(b.p);
    free(s);
    free(heap);
    return st;
}

/* ==== construction from arrays ============================================================== */

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "<0xXX>" -> XX, else -1 */
static int byte_token_value(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    const int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

dsq_status dsq_tokenizer_from_spm_arrays(dsq_tokenizer **out, const dsq_spm_vocab *v,
                                         dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_tokenizer *t = NULL;
    tok_buf keys = {0}, dec = {0};
    size_t *koff = NULL, *doff = NULL;
    *out = NULL;
    DSQ_CHECK(v != NULL && v->tokens != NULL, DSQ_INVALID_ARG, err, "spm: no tokens");
    DSQ_CHECK(v->n > 0 && v->n <= DSQ_TOK_MAX_VOCAB, DSQ_RANGE, err,
              "spm: %zu tokens (1 .. %d allowed)", v->n, DSQ_TOK_MAX_VOCAB);
    const int32_t nv = (int32_t)v->n;
    DSQ_CHECK(v->bos_id >= -1 && v->bos_id < nv && v->eos_id >= -1 && v->eos_id < nv &&
                  v->unk_id >= -1 && v->unk_id < nv,
              DSQ_RANGE, err, "spm: bos %ld / eos %ld / unk %ld outside the %ld tokens",
              (long)v->bos_id, (long)v->eos_id, (long)v->unk_id, (long)nv);
    DSQ_CHECK(!v->add_bos || v->bos_id >= 0, DSQ_INVALID_ARG, err, "spm: add_bos without bos");
    DSQ_CHECK(!v->add_eos || v->eos_id >= 0, DSQ_INVALID_ARG, err, "spm: add_eos without eos");
    DSQ_TRY(dsq__tok_alloc(&t, TOK_KIND_SPM, nv, err));
    t->scores = malloc(v->n * sizeof(float));
    koff = malloc((v->n + 1) * sizeof(size_t));
    doff = malloc((v->n + 1) * sizeof(size_t));
    t->prefix = malloc(sizeof(int32_t));
    t->suffix = malloc(sizeof(int32_t));
    DSQ_CHECK(t->scores && koff && doff && t->prefix && t->suffix, DSQ_NOMEM, err, "out of memory");
    t->bos_id = v->bos_id;
    t->eos_id = v->eos_id;
    t->unk_id = v->unk_id;
    t->add_space_prefix = v->add_space_prefix != 0;
    t->escape_whitespace = v->escape_whitespace != 0;
    t->merge_unknown = v->escape_whitespace != 0;
    if (v->add_bos)
        t->prefix[t->n_prefix++] = v->bos_id;
    if (v->add_eos)
        t->suffix[t->n_suffix++] = v->eos_id;

    for (size_t id = 0; id < v->n; id++) {
        const char *s = v->tokens[id];
        DSQ_CHECK(s != NULL, DSQ_INVALID_ARG, err, "spm: token %zu is NULL", id);
        const size_t n = v->token_lens ? v->token_lens[id] : strlen(s);
        DSQ_CHECK(n <= DSQ_TOK_MAX_TOKEN_LEN, DSQ_RANGE, err, "spm: token %zu is %zu bytes", id, n);
        const float score = v->scores ? v->scores[id] : 0.0f;
        DSQ_CHECK(!isnan(score), DSQ_FORMAT, err, "spm: token %zu has a NaN score", id);
        t->scores[id] = score;
        const int32_t type = v->types ? v->types[id] : 0;
        const int bv = byte_token_value(s, n);
        const int is_byte = v->types ? type == DSQ_TOKTYPE_BYTE : bv >= 0;
        DSQ_CHECK(!is_byte || bv >= 0, DSQ_FORMAT, err, "spm: byte token %zu is not <0xXX>", id);
        t->flags[id] = TOK_F_PRESENT;
        if (is_byte) {
            t->flags[id] |= TOK_F_BYTE;
            if (t->byte_tok[bv] < 0)
                t->byte_tok[bv] = (int32_t)id;
        }
        if (type == DSQ_TOKTYPE_CONTROL || type == DSQ_TOKTYPE_UNKNOWN ||
            (int32_t)id == v->bos_id || (int32_t)id == v->eos_id || (int32_t)id == v->unk_id)
            t->flags[id] |= TOK_F_SPECIAL;

        koff[id] = keys.n;
        doff[id] = dec.n;
        DSQ_CHECK(dsq__tok_buf_put(&keys, s, n), DSQ_NOMEM, err, "out of memory");
        if (is_byte) {
            const char c = (char)bv;
            DSQ_CHECK(dsq__tok_buf_put(&dec, &c, 1), DSQ_NOMEM, err, "out of memory");
        } else {
            for (size_t i = 0; i < n; i++) {
                const int sp =
                    t->escape_whitespace && n - i >= 3 && memcmp(s + i, SPM_SPACE, 3) == 0;
                DSQ_CHECK(dsq__tok_buf_put(&dec, sp ? " " : s + i, 1), DSQ_NOMEM, err,
                          "out of memory");
                if (sp)
                    i += 2;
            }
        }
    }
    koff[v->n] = keys.n;
    doff[v->n] = dec.n;
    /* duplicates: the first id keeps the string, like the sorted-vocab lookup of llama2.c
     * would return one of them */
    DSQ_TRY(dsq__tok_set_strings(t, &keys, koff, &dec, doff, 0, err));
    koff = doff = NULL;
    *out = t;
    t = NULL;
cleanup:
    dsq_tokenizer_free(t);
    free(keys.p);
    free(dec.p);
    free(koff);
    free(doff);
    return st;
}

/* ==== llama2.c tokenizer.bin ================================================================ */

dsq_status dsq_tokenizer_from_llama2c_mem(dsq_tokenizer **out, const uint8_t *data, size_t len,
                                          int32_t n_vocab, const char *source, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const char **tok = NULL;
    size_t *tlen = NULL;
    float *score = NULL;
    const char *src = source ? source : "tokenizer.bin";
    size_t cap = 0, n = 0;
    *out = NULL;
    DSQ_CHECK(data != NULL || len == 0, DSQ_INVALID_ARG, err, "%s: no data", src);
    DSQ_CHECK(n_vocab >= 0 && n_vocab <= DSQ_TOK_MAX_VOCAB, DSQ_RANGE, err,
              "%s: vocabulary size %ld", src, (long)n_vocab);
    DSQ_CHECK(len >= 4, DSQ_FORMAT, err, "%s: %zu bytes, too short for the header", src, len);
    const uint32_t max_len = dsq_le_u32(data);
    size_t off = 4;
    cap = n_vocab > 0 ? (size_t)n_vocab : 512;
    tok = malloc(cap * sizeof(*tok));
    tlen = malloc(cap * sizeof(*tlen));
    score = malloc(cap * sizeof(*score));
    DSQ_CHECK(tok && tlen && score, DSQ_NOMEM, err, "out of memory");
    while (n_vocab > 0 ? n < (size_t)n_vocab : off < len) {
        DSQ_CHECK(len - off >= 8, DSQ_FORMAT, err,
                  "%s: truncated at byte %zu: token %zu has no score/length", src, off, n);
        const uint32_t sb = dsq_le_u32(data + off);
        const int32_t tl = (int32_t)dsq_le_u32(data + off + 4);
        off += 8;
        DSQ_CHECK(tl >= 0 && (uint32_t)tl <= max_len && tl <= DSQ_TOK_MAX_TOKEN_LEN, DSQ_FORMAT,
                  err, "%s: token %zu has length %ld (max_token_length %lu)", src, n, (long)tl,
                  (unsigned long)max_len);
        DSQ_CHECK((size_t)tl <= len - off, DSQ_FORMAT, err,
                  "%s: truncated at byte %zu: token %zu needs %ld bytes", src, off, n, (long)tl);
        DSQ_CHECK(n < DSQ_TOK_MAX_VOCAB, DSQ_RANGE, err, "%s: more than %d tokens", src,
                  DSQ_TOK_MAX_VOCAB);
        if (n == cap) {
            cap *= 2;
            const char **a = realloc(tok, cap * sizeof(*tok));
            if (a != NULL)
                tok = a;
            size_t *b = realloc(tlen, cap * sizeof(*tlen));
            if (b != NULL)
                tlen = b;
            float *c = realloc(score, cap * sizeof(*score));
            if (c != NULL)
                score = c;
            DSQ_CHECK(a && b && c, DSQ_NOMEM, err, "out of memory");
        }
        memcpy(&score[n], &sb, sizeof(float));
        tok[n] = (const char *)data + off;
        tlen[n] = (size_t)tl;
        n++;
        off += (size_t)tl;
    }
    DSQ_CHECK(n >= 3, DSQ_FORMAT, err, "%s: %zu tokens; llama2.c needs unk, bos and eos", src, n);
    const dsq_spm_vocab v = {
        .n = n,
        .tokens = tok,
        .token_lens = tlen,
        .scores = score,
        .types = NULL,
        .bos_id = 1,
        .eos_id = 2,
        .unk_id = 0,
        .add_bos = 1,
        .add_eos = 0,
        .add_space_prefix = 1,
        .escape_whitespace = 0,
    };
    DSQ_TRY(dsq_tokenizer_from_spm_arrays(out, &v, err));
cleanup:
    free(tok);
    free(tlen);
    free(score);
    return st;
}

dsq_status dsq_tokenizer_from_llama2c(dsq_tokenizer **out, const char *path, int32_t n_vocab,
                                      dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_map m = {0};
    *out = NULL;
    DSQ_CHECK(path != NULL, DSQ_INVALID_ARG, err, "no tokenizer.bin path");
    DSQ_TRY(dsq_map_open(&m, path, err));
    DSQ_TRY(dsq_tokenizer_from_llama2c_mem(out, m.data, m.size, n_vocab, path, err));
cleanup:
    dsq_map_close(&m);
    return st;
}
