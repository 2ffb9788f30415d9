/* tokenizer/tok_internal.h: the dsq_tokenizer struct and the helpers its files share.
 * Private to tokenizer/ (names dsq__tok_*). */
#ifndef DSQ_TOK_INTERNAL_H
#define DSQ_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

/* ---- growable arrays --------------------------------------------------------------------- */

typedef struct tok_buf { /* bytes */
    char *p;
    size_t n, cap;
} tok_buf;

typedef struct tok_ids { /* int32 ids */
    int32_t *p;
    size_t n, cap;
} tok_ids;

typedef struct tok_piece { /* a piece of text being pre-tokenized; borrowed pointer */
    const char *p;
    size_t n;
    int32_t added_id; /* >= 0: an added token cut out of the text, not pre-tokenized further */
} tok_piece;

typedef struct tok_pieces {
    tok_piece *p;
    size_t n, cap;
} tok_pieces;

int dsq__tok_buf_put(tok_buf *b, const void *src, size_t n); /* 1 ok, 0 out of memory */
int dsq__tok_ids_push(tok_ids *v, int32_t id);
int dsq__tok_pieces_push(tok_pieces *v, const char *p, size_t n, int32_t added_id);
/* Frees the blocks listed in a buffer of malloc'ed pointers (dsq__tok_pretokenize's copies),
 * then the buffer. */
void dsq__tok_owned_free(tok_buf *owned);

/* ---- string -> id map (open addressing over the per-id key strings) ------------------------ */

typedef struct tok_strmap {
    int32_t *slot; /* id, or -1 for empty; capacity is a power of two */
    size_t mask;
} tok_strmap;

/* ---- pre-tokenizer steps ------------------------------------------------------------------ */

typedef enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_WITH_PREVIOUS,
    TOK_SPLIT_MERGED_WITH_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} tok_split_behavior;

typedef struct tok_pretok {
    pcre2_code *re; /* NULL: literal pattern (or a ByteLevel step without regex) */
    char *literal;  /* Split with a String pattern; owned */
    size_t literal_len;
    tok_split_behavior behavior;
    int invert;
    int add_prefix_space; /* ByteLevel: prepend ' ' to each piece not starting with one */
} tok_pretok;

/* ---- added tokens ------------------------------------------------------------------------- */

typedef struct tok_added {
    char *content; /* owned */
    size_t len;
    int32_t id;
    unsigned special : 1, lstrip : 1, rstrip : 1, single_word : 1, normalized : 1;
} tok_added;

/* ---- the tokenizer ------------------------------------------------------------------------ */

typedef enum tok_kind { TOK_KIND_BPE, TOK_KIND_SPM } tok_kind;

enum {                    /* per-id flags */
       TOK_F_PRESENT = 1, /* the id exists (HF vocabularies may have holes) */
       TOK_F_SPECIAL = 2, /* special/control: skipped by decode(skip_special) */
       TOK_F_BYTE = 4,    /* SPM <0xXX> byte token */
};

typedef struct tok_merge_slot {
    uint64_t key; /* (left id << 32) | right id */
    int32_t rank; /* -1: empty slot */
    int32_t new_id;
} tok_merge_slot;

struct dsq_tokenizer {
    tok_kind kind;
    int32_t n_vocab;

    /* Per id: the vocabulary spelling (key, what lookups compare against) and the bytes decode
     * writes (dec). Offsets into the two blobs. */
    char *keys, *dec;
    size_t *key_off, *dec_off; /* n_vocab + 1 entries each */
    uint8_t *flags;            /* n_vocab */
    float *scores;             /* SPM: n_vocab; NULL for BPE */
    tok_strmap map;

    /* BPE */
    int32_t byte_id[256];   /* id of the byte-level char of each byte, -1 if absent */
    tok_merge_slot *merges; /* open addressing, mask merge_mask */
    size_t merge_mask;
    int ignore_merges;
    int32_t unk_id;
    tok_pretok *pretok;
    size_t n_pretok;
    tok_added *added;
    size_t n_added;
    uint32_t *added_by_byte; /* 257 offsets into added_order: candidates by first byte */
    uint32_t *added_order;   /* indices into added, longest first within each byte */
    pcre2_code *word_re;     /* single_word checks; NULL when no token needs them */

    /* special tokens added by encode(add_special) */
    int32_t bos_id, eos_id;
    int32_t *prefix, *suffix;
    size_t n_prefix, n_suffix;

    /* SPM */
    int32_t byte_tok[256]; /* id of <0xXX>, -1 if absent */
    int add_space_prefix, escape_whitespace;
    int merge_unknown; /* a code point missing from the vocabulary may still merge (llama.cpp) */
};

/* Allocates a zeroed tokenizer with per-id arrays for n_vocab ids (no keys yet). */
dsq_status dsq__tok_alloc(dsq_tokenizer **out, tok_kind kind, int32_t n_vocab, dsq_err *err);

/* Sets the keys and decode bytes of all ids from blobs built by the loader; takes ownership of
 * keys/dec and the offset arrays; builds the lookup map. Duplicate keys: the first id wins
 * unless dup_is_error. */
dsq_status dsq__tok_set_strings(dsq_tokenizer *t, tok_buf *keys, size_t *key_off, tok_buf *dec,
                                size_t *dec_off, int dup_is_error, dsq_err *err);

int32_t dsq__tok_lookup(const dsq_tokenizer *t, const char *s, size_t n);

/* Merges: (a, b) -> rank, new id. Later duplicates overwrite earlier ones (HF collects into a
 * HashMap). */
dsq_status dsq__tok_merges_init(dsq_tokenizer *t, size_t n_merges, dsq_err *err);
void dsq__tok_merges_put(dsq_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t new_id);
const tok_merge_slot *dsq__tok_merges_get(const dsq_tokenizer *t, int32_t a, int32_t b);

/* Byte-level (GPT-2) byte <-> unicode map. Writes the UTF-8 of byte b's char into out (2 bytes
 * max) and returns its length. */
size_t dsq__tok_byte_to_utf8(uint8_t b, char out[2]);
/* The byte a code point stands for, or -1 when the code point is not in the map. */
int dsq__tok_cp_to_byte(uint32_t cp);
/* Decodes one UTF-8 sequence at s (n > 0 bytes); returns its length (1 for an invalid byte,
 * then *cp = 0xFFFFFFFF). */
size_t dsq__tok_utf8_next(const char *s, size_t n, uint32_t *cp);

/* Compiles a pre-tokenizer regex with UTF | UCP | MATCH_INVALID_UTF and JIT. */
dsq_status dsq__tok_regex_compile(pcre2_code **out, const char *pat, size_t len, dsq_err *err);
/* Applies the pre-tokenizer steps; pieces with added_id >= 0 pass through. Pieces given a prefix
 * space are copies whose pointers are listed in owned (dsq__tok_owned_free). */
dsq_status dsq__tok_pretokenize(const dsq_tokenizer *t, tok_pieces *pieces, tok_buf *owned,
                                dsq_err *err);
/* Cuts the added tokens out of text (HF: non-normalized tokens first, then normalized ones). */
dsq_status dsq__tok_split_added(const dsq_tokenizer *t, const char *text, size_t len,
                                tok_pieces *out, dsq_err *err);
/* BPE of one pre-tokenized piece, appending ids. */
dsq_status dsq__tok_bpe_piece(const dsq_tokenizer *t, const char *p, size_t n, tok_ids *ids,
                              tok_buf *scratch, dsq_err *err);
/* SentencePiece-style encoding of a whole text (no bos/eos). */
dsq_status dsq__tok_spm_encode(const dsq_tokenizer *t, const char *text, size_t len, tok_ids *ids,
                               dsq_err *err);

#endif
