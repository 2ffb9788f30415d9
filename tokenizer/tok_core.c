/* tokenizer/tok_core.c: the dsq_tokenizer object, its lookup tables, and the encode/decode entry
 * points that dispatch to BPE (tok_bpe.c) or SentencePiece (tok_spm.c). */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/checked.h"
#include "tokenizer/tok_internal.h"

/* ==== growable arrays ======================================================================= */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return 1;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (!dsq_mul_size(c, 2, &c))
            return 0;
    }
    size_t bytes;
    if (!dsq_mul_size(c, elem, &bytes))
        return 0;
    void *q = realloc(*p, bytes);
    if (q == NULL)
        return 0;
    *p = q;
    *cap = c;
    return 1;
}

int dsq__tok_buf_put(tok_buf *b, const void *src, size_t n) {
    size_t need;
    /* +1 keeps room for a terminating NUL the callers may add */
    if (!dsq_add_size(b->n, n + 1, &need) || !grow((void **)&b->p, &b->cap, need, 1))
        return 0;
    if (n > 0)
        memcpy(b->p + b->n, src, n);
    b->n += n;
    return 1;
}

int dsq__tok_ids_push(tok_ids *v, int32_t id) {
    if (!grow((void **)&v->p, &v->cap, v->n + 1, sizeof(int32_t)))
        return 0;
    v->p[v->n++] = id;
    return 1;
}

int dsq__tok_pieces_push(tok_pieces *v, const char *p, size_t n, int32_t added_id) {
    if (!grow((void **)&v->p, &v->cap, v->n + 1, sizeof(tok_piece)))
        return 0;
    v->p[v->n].p = p;
    v->p[v->n].n = n;
    v->p[v->n].added_id = added_id;
    v->n++;
    return 1;
}

void dsq__tok_owned_free(tok_buf *owned) {
    char **blocks = (char **)(void *)owned->p;
    for (size_t i = 0; i < owned->n / sizeof(char *); i++)
        free(blocks[i]);
    free(owned->p);
    owned->p = NULL;
    owned->n = owned->cap = 0;
}

/* ==== UTF-8 and the byte-level map ========================================================== */

size_t dsq__tok_utf8_next(const char *s, size_t n, uint32_t *cp) {
    const uint8_t *u = (const uint8_t *)s;
    const uint8_t c = u[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    if (len > n) {
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = 0xFFFFFFFFu;
            return 1;
        }
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    *cp = v;
    return len;
}

/* GPT-2's bytes_to_unicode: the printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for
 * themselves; the other 68 bytes, in increasing order, get U+0100, U+0101, ... so that every
 * byte is a visible character. Computed, not tabled, because it is three ranges. */
static int byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

static uint32_t byte_to_cp(uint8_t b) {
    if (byte_is_printable(b))
        return b;
    /* index of b among the non-printable bytes */
    unsigned k;
    if (b <= 0x20)
        k = b; /* 0x00..0x20: 33 bytes */
    else if (b <= 0xA0)
        k = 33 + (b - 0x7F); /* 0x7F..0xA0: 34 bytes */
    else
        k = 67; /* 0xAD */
    return 256 + k;
}

size_t dsq__tok_byte_to_utf8(uint8_t b, char out[2]) {
    const uint32_t cp = byte_to_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

int dsq__tok_cp_to_byte(uint32_t cp) {
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33)
        return (int)(cp - 256);
    if (cp < 256 + 67)
        return (int)(0x7F + (cp - 256 - 33));
    if (cp == 256 + 67)
        return 0xAD;
    return -1;
}

/* ==== object ================================================================================ */

dsq_status dsq__tok_alloc(dsq_tokenizer **out, tok_kind kind, int32_t n_vocab, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_tokenizer *t = NULL;
    *out = NULL;
    DSQ_CHECK(n_vocab > 0 && n_vocab <= DSQ_TOK_MAX_VOCAB, DSQ_RANGE, err,
              "vocabulary of %ld tokens (1 .. %d allowed)", (long)n_vocab, DSQ_TOK_MAX_VOCAB);
    t = calloc(1, sizeof(*t));
    DSQ_CHECK(t != NULL, DSQ_NOMEM, err, "out of memory");
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = t->byte_tok[i] = -1;
    t->flags = calloc((size_t)n_vocab, 1);
    DSQ_CHECK(t->flags != NULL, DSQ_NOMEM, err, "out of memory");
    *out = t;
    t = NULL;
cleanup:
    dsq_tokenizer_free(t);
    return st;
}

void dsq_tokenizer_free(dsq_tokenizer *t) {
    if (t == NULL)
        return;
    free(t->keys);
    free(t->dec);
    free(t->key_off);
    free(t->dec_off);
    free(t->flags);
    free(t->scores);
    free(t->map.slot);
    free(t->merges);
    for (size_t i = 0; i < t->n_pretok; i++) {
        pcre2_code_free(t->pretok[i].re);
        free(t->pretok[i].literal);
    }
    free(t->pretok);
    for (size_t i = 0; i < t->n_added; i++)
        free(t->added[i].content);
    free(t->added);
    free(t->added_by_byte);
    free(t->added_order);
    pcre2_code_free(t->word_re);
    free(t->prefix);
    free(t->suffix);
    free(t);
}

/* ==== string -> id ========================================================================== */

static uint64_t str_hash(const char *s, size_t n) { return XXH3_64bits(s, n); }

int32_t dsq__tok_lookup(const dsq_tokenizer *t, const char *s, size_t n) {
    if (t->map.slot == NULL)
        return -1;
    size_t i = (size_t)str_hash(s, n) & t->map.mask;
    for (;;) {
        const int32_t id = t->map.slot[i];
        if (id < 0)
            return -1;
        const size_t kn = t->key_off[id + 1] - t->key_off[id];
        if (kn == n && memcmp(t->keys + t->key_off[id], s, n) == 0)
            return id;
        i = (i + 1) & t->map.mask;
    }
}

dsq_status dsq__tok_set_strings(dsq_tokenizer *t, tok_buf *keys, size_t *key_off, tok_buf *dec,
                                size_t *dec_off, int dup_is_error, dsq_err *err) {
    dsq_status st = DSQ_OK;
    t->keys = keys->p;
    t->dec = dec->p;
    t->key_off = key_off;
    t->dec_off = dec_off;
    keys->p = dec->p = NULL;
    keys->n = keys->cap = dec->n = dec->cap = 0;
    if (t->keys == NULL)
        DSQ_CHECK((t->keys = calloc(1, 1)) != NULL, DSQ_NOMEM, err, "out of memory");
    if (t->dec == NULL)
        DSQ_CHECK((t->dec = calloc(1, 1)) != NULL, DSQ_NOMEM, err, "out of memory");

    size_t cap = 16;
    while (cap < 2 * (size_t)t->n_vocab)
        cap *= 2;
    t->map.slot = malloc(cap * sizeof(int32_t));
    DSQ_CHECK(t->map.slot != NULL, DSQ_NOMEM, err, "out of memory");
    memset(t->map.slot, 0xFF, cap * sizeof(int32_t));
    t->map.mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->flags[id] & TOK_F_PRESENT))
            continue;
        const char *k = t->keys + key_off[id];
        const size_t kn = key_off[id + 1] - key_off[id];
        const int32_t have = dsq__tok_lookup(t, k, kn);
        if (have >= 0) {
            DSQ_CHECK(!dup_is_error, DSQ_FORMAT, err, "tokens %ld and %ld are the same string",
                      (long)have, (long)id);
            continue; /* the first id keeps the string */
        }
        size_t i = (size_t)str_hash(k, kn) & t->map.mask;
        while (t->map.slot[i] >= 0)
            i = (i + 1) & t->map.mask;
        t->map.slot[i] = id;
    }
cleanup:
    return st;
}

/* ==== merges: (left id, right id) -> (rank, new id) ========================================= */

static size_t pair_hash(uint64_t key) {
    /* Fibonacci hashing of the packed pair; the high bits are the well-mixed ones */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20);
}

dsq_status dsq__tok_merges_init(dsq_tokenizer *t, size_t n_merges, dsq_err *err) {
    dsq_status st = DSQ_OK;
    size_t cap = 16;
    while (cap < 2 * n_merges)
        cap *= 2;
    t->merges = malloc(cap * sizeof(tok_merge_slot));
    DSQ_CHECK(t->merges != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < cap; i++)
        t->merges[i].rank = -1;
    t->merge_mask = cap - 1;
cleanup:
    return st;
}

void dsq__tok_merges_put(dsq_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t new_id) {
    const uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = pair_hash(key) & t->merge_mask;
    while (t->merges[i].rank >= 0 && t->merges[i].key != key)
        i = (i + 1) & t->merge_mask;
    t->merges[i].key = key;
    t->merges[i].rank = rank;
    t->merges[i].new_id = new_id;
}

const tok_merge_slot *dsq__tok_merges_get(const dsq_tokenizer *t, int32_t a, int32_t b) {
    if (t->merges == NULL)
        return NULL;
    const uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = pair_hash(key) & t->merge_mask;
    while (t->merges[i].rank >= 0) {
        if (t->merges[i].key == key)
            return &t->merges[i];
        i = (i + 1) & t->merge_mask;
    }
    return NULL;
}

/* ==== public entry points =================================================================== */

int32_t dsq_tokenizer_bos(const dsq_tokenizer *t) { return t->bos_id; }

int32_t dsq_tokenizer_eos(const dsq_tokenizer *t) { return t->eos_id; }

int32_t dsq_tokenizer_n_vocab(const dsq_tokenizer *t) { return t->n_vocab; }

const char *dsq_tokenizer_token_text(const dsq_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || !(t->flags[id] & TOK_F_PRESENT))
        return NULL;
    if (len != NULL)
        *len = t->key_off[id + 1] - t->key_off[id];
    return t->keys + t->key_off[id];
}

int32_t dsq_tokenizer_token_id(const dsq_tokenizer *t, const char *text, size_t len) {
    return dsq__tok_lookup(t, text, len);
}

/* Added tokens cut out, then the pre-tokenizer chain: the shared front half of BPE encoding. */
static dsq_status bpe_pieces(const dsq_tokenizer *t, const char *text, size_t len,
                             tok_pieces *pieces, tok_buf *owned, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DSQ_TRY(dsq__tok_split_added(t, text, len, pieces, err));
    DSQ_TRY(dsq__tok_pretokenize(t, pieces, owned, err));
cleanup:
    return st;
}

dsq_status dsq_tokenizer_encode(const dsq_tokenizer *t, const char *text, size_t len,
                                int add_special, int32_t **ids, size_t *n, dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_ids v = {0};
    tok_pieces pieces = {0};
    tok_buf owned = {0}, scratch = {0};
    *ids = NULL;
    *n = 0;
    DSQ_CHECK(text != NULL || len == 0, DSQ_INVALID_ARG, err, "encode: NULL text");
    if (add_special) {
        for (size_t i = 0; i < t->n_prefix; i++)
            DSQ_CHECK(dsq__tok_ids_push(&v, t->prefix[i]), DSQ_NOMEM, err, "out of memory");
    }
    if (t->kind == TOK_KIND_SPM) {
        DSQ_TRY(dsq__tok_spm_encode(t, text, len, &v, err));
    } else {
        DSQ_TRY(bpe_pieces(t, text, len, &pieces, &owned, err));
        for (size_t i = 0; i < pieces.n; i++) {
            const tok_piece *pc = &pieces.p[i];
            if (pc->added_id >= 0)
                DSQ_CHECK(dsq__tok_ids_push(&v, pc->added_id), DSQ_NOMEM, err, "out of memory");
            else
                DSQ_TRY(dsq__tok_bpe_piece(t, pc->p, pc->n, &v, &scratch, err));
        }
    }
    if (add_special) {
        for (size_t i = 0; i < t->n_suffix; i++)
            DSQ_CHECK(dsq__tok_ids_push(&v, t->suffix[i]), DSQ_NOMEM, err, "out of memory");
    }
    if (v.p == NULL) /* promise a non-NULL array even for no ids */
        DSQ_CHECK((v.p = malloc(sizeof(int32_t))) != NULL, DSQ_NOMEM, err, "out of memory");
    *ids = v.p;
    *n = v.n;
    v.p = NULL;
cleanup:
    free(v.p);
    free(pieces.p);
    dsq__tok_owned_free(&owned);
    free(scratch.p);
    return st;
}

dsq_status dsq_tokenizer_pretokenize(const dsq_tokenizer *t, const char *text, size_t len,
                                     char **blob, size_t **lens, size_t *n, dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_pieces pieces = {0};
    tok_buf owned = {0}, out = {0};
    size_t *ln = NULL;
    *blob = NULL;
    *lens = NULL;
    *n = 0;
    DSQ_CHECK(text != NULL || len == 0, DSQ_INVALID_ARG, err, "pretokenize: NULL text");
    if (t->kind == TOK_KIND_SPM) {
        if (len > 0)
            DSQ_CHECK(dsq__tok_pieces_push(&pieces, text, len, -1), DSQ_NOMEM, err,
                      "out of memory");
    } else {
        DSQ_TRY(bpe_pieces(t, text, len, &pieces, &owned, err));
    }
    ln = malloc((pieces.n + 1) * sizeof(size_t));
    DSQ_CHECK(ln != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_CHECK(dsq__tok_buf_put(&out, "", 0), DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < pieces.n; i++) {
        DSQ_CHECK(dsq__tok_buf_put(&out, pieces.p[i].p, pieces.p[i].n), DSQ_NOMEM, err,
                  "out of memory");
        ln[i] = pieces.p[i].n;
    }
    out.p[out.n] = '\0';
    *blob = out.p;
    *lens = ln;
    *n = pieces.n;
    out.p = NULL;
    ln = NULL;
cleanup:
    free(pieces.p);
    dsq__tok_owned_free(&owned);
    free(out.p);
    free(ln);
    return st;
}

dsq_status dsq_tokenizer_decode(const dsq_tokenizer *t, const int32_t *ids, size_t n,
                                int skip_special, char **out, size_t *len, dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_buf b = {0};
    *out = NULL;
    if (len != NULL)
        *len = 0;
    DSQ_CHECK(ids != NULL || n == 0, DSQ_INVALID_ARG, err, "decode: NULL ids");
    DSQ_CHECK(dsq__tok_buf_put(&b, "", 0), DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const int32_t id = ids[i];
        DSQ_CHECK(id >= 0 && id < t->n_vocab && (t->flags[id] & TOK_F_PRESENT), DSQ_RANGE, err,
                  "decode: id %ld at position %zu is not in the vocabulary of %ld", (long)id, i,
                  (long)t->n_vocab);
        if (skip_special && (t->flags[id] & TOK_F_SPECIAL))
            continue;
        const char *p = t->dec + t->dec_off[id];
        size_t pn = t->dec_off[id + 1] - t->dec_off[id];
        /* SentencePiece's dummy prefix: the space encode put in front of the text (llama2.c
         * strips it after bos; we also strip it at the very start so that decode inverts encode) */
        if (t->kind == TOK_KIND_SPM && t->add_space_prefix && pn > 0 && p[0] == ' ' &&
            !(t->flags[id] & TOK_F_BYTE) && (i == 0 || ids[i - 1] == t->bos_id)) {
            p++;
            pn--;
        }
        DSQ_CHECK(dsq__tok_buf_put(&b, p, pn), DSQ_NOMEM, err, "out of memory");
    }
    b.p[b.n] = '\0';
    *out = b.p;
    if (len != NULL)
        *len = b.n;
    b.p = NULL;
cleanup:
    free(b.p);
    return st;
}
