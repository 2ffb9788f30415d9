/* tokenizer/tok_spm_model.c: the SentencePiece tokenizer.model reader (tok_spm_model.h).
 *
 * tokenizer.model is one protobuf message, sentencepiece.ModelProto (proto2,
 * src/sentencepiece_model.proto in google/sentencepiece), with no framing. Wire format: a
 * message is a sequence of fields, each a tag varint (field_number << 3 | wire_type) then
 *     wire type 0  varint: 1..10 bytes, 7 bits each, little-endian groups, high bit = more
 *     wire type 1  8 bytes (fixed64, double)
 *     wire type 2  varint length, then that many bytes (string, bytes, sub-message, packed)
 *     wire type 5  4 bytes little-endian (fixed32, float)
 *     wire types 3/4 are proto1 groups (not used by this schema: refused), 6/7 do not exist.
 * int32 and enum values are varints; a negative one is sign-extended to 64 bits (10 bytes).
 * A field may repeat: for a scalar the last one wins, an embedded message is merged, which
 * parsing each occurrence into the same struct does.
 *
 * The fields read (all others are skipped by wire type, whatever their number):
 *   ModelProto        1 pieces           repeated SentencePiece   (wire 2)
 *                     2 trainer_spec     TrainerSpec              (wire 2)
 *                     3 normalizer_spec  NormalizerSpec           (wire 2)
 *   SentencePiece     1 piece   string   (wire 2)
 *                     2 score   float    (wire 5)
 *                     3 type    enum     (wire 0) NORMAL 1 UNKNOWN 2 CONTROL 3
 *                                                 USER_DEFINED 4 UNUSED 5 BYTE 6
 *   TrainerSpec       3 model_type enum (0)   4 vocab_size int32 (0)   35 byte_fallback bool (0)
 *                     40 unk_id  41 bos_id  42 eos_id  43 pad_id       int32 (0)
 *   NormalizerSpec    3 add_dummy_prefix  4 remove_extra_whitespaces  5 escape_whitespaces
 *                                                                       bool (0)
 * A known field with another wire type is an error rather than skipped: a file that
 * disagrees with the schema about a field we use is not one we can interpret.
 *
 * Every varint is at most 10 bytes (the tenth at most 1), every length and fixed-size value
 * lies inside its enclosing message, every tag has a field number in 1 .. 2^29-1. Nesting is
 * fixed (ModelProto > SentencePiece / TrainerSpec / NormalizerSpec): no recursion on input. */
#include "tokenizer/tok_spm_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/file.h"
#include "core/le.h"

#define MAX_FILE ((size_t)1 << 30)

/* A message being read: bytes [0, n) of p, which start at byte `base` of the file. */
typedef struct pb {
    const uint8_t *p;
    size_t n, pos, base;
    const char *src;
} pb;

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

static const char *const wt_names[8] = {"varint", "fixed64", "length-delimited", "start-group",
                                        "end-group", "fixed32", "6 (invalid)", "7 (invalid)"};

static dsq_status read_varint(pb *b, uint64_t *out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t start = b->pos;
    uint64_t v = 0;
    for (unsigned i = 0;; i++) {
        DSQ_CHECK(b->pos < b->n, DSQ_FORMAT, err, "%s: byte %zu: varint truncated", b->src,
                  b->base + start);
        const uint8_t c = b->p[b->pos++];
        /* the tenth byte holds bit 63 only, and so also ends the varint */
        DSQ_CHECK(i < 9 || c <= 1, DSQ_FORMAT, err, "%s: byte %zu: varint overflows 64 bits",
                  b->src, b->base + start);
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if ((c & 0x80) == 0)
            break;
    }
    *out = v;
cleanup:
    return st;
}

static dsq_status read_tag(pb *b, uint32_t *field, unsigned *wt, size_t *at, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint64_t v = 0;
    *at = b->base + b->pos;
    DSQ_TRY(read_varint(b, &v, err));
    DSQ_CHECK(v >> 3 >= 1 && v >> 3 <= 0x1fffffff, DSQ_FORMAT, err,
              "%s: byte %zu: field number %llu out of range", b->src, *at,
              (unsigned long long)(v >> 3));
    *field = (uint32_t)(v >> 3);
    *wt = (unsigned)(v & 7);
cleanup:
    return st;
}

/* The payload of a length-delimited field, as a message of its own. */
static dsq_status read_len(pb *b, pb *sub, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint64_t len = 0;
    const size_t at = b->base + b->pos;
    DSQ_TRY(read_varint(b, &len, err));
    DSQ_CHECK(len <= b->n - b->pos, DSQ_FORMAT, err,
              "%s: byte %zu: length %llu runs past the end of its message (%zu bytes left)",
              b->src, at, (unsigned long long)len, b->n - b->pos);
    *sub = (pb){b->p + b->pos, (size_t)len, 0, b->base + b->pos, b->src};
    b->pos += (size_t)len;
cleanup:
    return st;
}

static dsq_status read_fixed32(pb *b, uint32_t *out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DSQ_CHECK(b->n - b->pos >= 4, DSQ_FORMAT, err, "%s: byte %zu: fixed32 truncated", b->src,
              b->base + b->pos);
    *out = dsq_le_u32(b->p + b->pos);
    b->pos += 4;
cleanup:
    return st;
}

/* Skips the value of a field we do not read. */
static dsq_status skip(pb *b, unsigned wt, size_t at, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint64_t v;
    uint32_t u;
    pb sub;
    switch (wt) {
    case WT_VARINT:
        DSQ_TRY(read_varint(b, &v, err));
        break;
    case WT_I64:
        DSQ_CHECK(b->n - b->pos >= 8, DSQ_FORMAT, err, "%s: byte %zu: fixed64 truncated",
                  b->src, b->base + b->pos);
        b->pos += 8;
        break;
    case WT_LEN:
        DSQ_TRY(read_len(b, &sub, err));
        break;
    case WT_I32:
        DSQ_TRY(read_fixed32(b, &u, err));
        break;
    case WT_SGROUP:
    case WT_EGROUP:
        DSQ_CHECK(0, DSQ_UNSUPPORTED, err, "%s: byte %zu: group wire type (proto1) not supported",
                  b->src, at);
        break;
    default:
        DSQ_CHECK(0, DSQ_FORMAT, err, "%s: byte %zu: invalid wire type %u", b->src, at, wt);
    }
cleanup:
    return st;
}

static dsq_status want_wt(const pb *b, const char *field, unsigned wt, unsigned want, size_t at,
                          dsq_err *err) {
    if (wt == want)
        return DSQ_OK;
    return dsq_err_set(err, DSQ_FORMAT, "%s: byte %zu: %s has wire type %s, expected %s", b->src,
                       at, field, wt_names[wt & 7], wt_names[want]);
}

/* An int32 or enum varint: protobuf sign-extends negative values to 64 bits. */
static dsq_status read_i32(pb *b, const char *field, int32_t *out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint64_t v = 0;
    const size_t at = b->base + b->pos;
    DSQ_TRY(read_varint(b, &v, err));
    const int64_t s = (int64_t)v;
    DSQ_CHECK(s >= INT32_MIN && s <= INT32_MAX, DSQ_FORMAT, err,
              "%s: byte %zu: %s = %lld does not fit an int32", b->src, at, field, (long long)s);
    *out = (int32_t)s;
cleanup:
    return st;
}

static dsq_status read_bool(pb *b, int *out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint64_t v = 0;
    DSQ_TRY(read_varint(b, &v, err));
    *out = v != 0;
cleanup:
    return st;
}

/* ---- the model ---------------------------------------------------------------------------- */

typedef struct piece_rec {
    size_t off, len; /* in the blob */
    float score;
    int32_t type;
    size_t at; /* file offset of the SentencePiece, for messages */
} piece_rec;

/* The public struct first, so the pointer handed out is the allocation. */
typedef struct spm_owned {
    dsq_spm_model m;
    char *blob; /* every piece followed by a NUL */
    char **ptrs;
    size_t *lens;
    float *scores;
    int32_t *types;
} spm_owned;

typedef struct parse_state {
    piece_rec *recs;
    size_t n, cap;
    char *blob;
    size_t blob_n, blob_cap;
} parse_state;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (q == NULL)
        return 0;
    *p = q;
    *cap = c;
    return 1;
}

static dsq_status parse_piece(pb *b, parse_state *ps, size_t at, dsq_err *err) {
    dsq_status st = DSQ_OK;
    pb text = {0};
    int have_text = 0;
    piece_rec r = {0, 0, 0.0f, DSQ_SPM_NORMAL, at};
    while (b->pos < b->n) {
        uint32_t f;
        unsigned wt;
        size_t fat;
        DSQ_TRY(read_tag(b, &f, &wt, &fat, err));
        if (f == 1) {
            DSQ_TRY(want_wt(b, "SentencePiece.piece", wt, WT_LEN, fat, err));
            DSQ_TRY(read_len(b, &text, err));
            have_text = 1;
        } else if (f == 2) {
            uint32_t u;
            DSQ_TRY(want_wt(b, "SentencePiece.score", wt, WT_I32, fat, err));
            DSQ_TRY(read_fixed32(b, &u, err));
            memcpy(&r.score, &u, sizeof u);
            DSQ_CHECK(!isnan(r.score), DSQ_FORMAT, err, "%s: byte %zu: piece %zu: score is NaN",
                      b->src, fat, ps->n);
        } else if (f == 3) {
            DSQ_TRY(want_wt(b, "SentencePiece.type", wt, WT_VARINT, fat, err));
            DSQ_TRY(read_i32(b, "SentencePiece.type", &r.type, err));
            DSQ_CHECK(r.type >= DSQ_SPM_NORMAL && r.type <= DSQ_SPM_BYTE, DSQ_FORMAT, err,
                      "%s: byte %zu: piece %zu: type %d is not a SentencePiece type (1..6)",
                      b->src, fat, ps->n, (int)r.type);
        } else {
            DSQ_TRY(skip(b, wt, fat, err));
        }
    }
    /* sentencepiece: "piece must not be empty" */
    DSQ_CHECK(have_text && text.n > 0, DSQ_FORMAT, err, "%s: byte %zu: piece %zu is empty",
              b->src, at, ps->n);
    DSQ_CHECK(text.n <= DSQ_TOK_MAX_TOKEN_LEN, DSQ_RANGE, err,
              "%s: byte %zu: piece %zu is %zu bytes long (limit %d)", b->src, at, ps->n, text.n,
              DSQ_TOK_MAX_TOKEN_LEN);
    DSQ_CHECK(memchr(text.p, 0, text.n) == NULL, DSQ_FORMAT, err,
              "%s: byte %zu: piece %zu contains a NUL byte", b->src, at, ps->n);
    DSQ_CHECK(ps->n < DSQ_TOK_MAX_VOCAB, DSQ_RANGE, err,
              "%s: byte %zu: more than %d pieces", b->src, at, DSQ_TOK_MAX_VOCAB);
    DSQ_CHECK(grow((void **)&ps->recs, &ps->cap, ps->n + 1, sizeof *ps->recs) &&
                  grow((void **)&ps->blob, &ps->blob_cap, ps->blob_n + text.n + 1, 1),
              DSQ_NOMEM, err, "out of memory");
    r.off = ps->blob_n;
    r.len = text.n;
    memcpy(ps->blob + ps->blob_n, text.p, text.n);
    ps->blob[ps->blob_n + text.n] = '\0';
    ps->blob_n += text.n + 1;
    ps->recs[ps->n++] = r;
cleanup:
    return st;
}

static dsq_status parse_trainer(pb *b, dsq_spm_model *m, dsq_err *err) {
    dsq_status st = DSQ_OK;
    while (b->pos < b->n) {
        uint32_t f;
        unsigned wt;
        size_t at;
        DSQ_TRY(read_tag(b, &f, &wt, &at, err));
        int32_t *dst = NULL;
        const char *name = NULL;
        switch (f) {
        case 3: dst = &m->model_type, name = "TrainerSpec.model_type"; break;
        case 4: dst = &m->vocab_size, name = "TrainerSpec.vocab_size"; break;
        case 40: dst = &m->unk_id, name = "TrainerSpec.unk_id"; break;
        case 41: dst = &m->bos_id, name = "TrainerSpec.bos_id"; break;
        case 42: dst = &m->eos_id, name = "TrainerSpec.eos_id"; break;
        case 43: dst = &m->pad_id, name = "TrainerSpec.pad_id"; break;
        default: break;
        }
        if (dst != NULL) {
            DSQ_TRY(want_wt(b, name, wt, WT_VARINT, at, err));
            DSQ_TRY(read_i32(b, name, dst, err));
        } else if (f == 35) {
            DSQ_TRY(want_wt(b, "TrainerSpec.byte_fallback", wt, WT_VARINT, at, err));
            DSQ_TRY(read_bool(b, &m->byte_fallback, err));
        } else {
            DSQ_TRY(skip(b, wt, at, err));
        }
    }
cleanup:
    return st;
}

static dsq_status parse_normalizer(pb *b, dsq_spm_model *m, dsq_err *err) {
    dsq_status st = DSQ_OK;
    while (b->pos < b->n) {
        uint32_t f;
        unsigned wt;
        size_t at;
        DSQ_TRY(read_tag(b, &f, &wt, &at, err));
        int *dst = f == 3   ? &m->add_dummy_prefix
                   : f == 4 ? &m->remove_extra_whitespaces
                   : f == 5 ? &m->escape_whitespaces
                            : NULL;
        if (dst != NULL) {
            DSQ_TRY(want_wt(b, f == 3 ? "NormalizerSpec.add_dummy_prefix"
                               : f == 4 ? "NormalizerSpec.remove_extra_whitespaces"
                                        : "NormalizerSpec.escape_whitespaces",
                            wt, WT_VARINT, at, err));
            DSQ_TRY(read_bool(b, dst, err));
        } else {
            DSQ_TRY(skip(b, wt, at, err));
        }
    }
cleanup:
    return st;
}

static int is_byte_piece(const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    return n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && s[3] != '\0' &&
           strchr(hex, s[3]) != NULL && s[4] != '\0' && strchr(hex, s[4]) != NULL;
}

typedef struct piece_key {
    const char *s;
    size_t len, id;
} piece_key;

static int cmp_piece(const void *a, const void *b) {
    const piece_key *x = a, *y = b;
    const size_t n = x->len < y->len ? x->len : y->len;
    const int c = memcmp(x->s, y->s, n);
    if (c != 0)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    /* equal text: by id, so the report names the first of the two */
    return x->id < y->id ? -1 : 1;
}

/* What sentencepiece's model loading refuses (model_interface.cc InitializePieces and the
 * model factory): duplicate pieces, not exactly one <unk>, malformed byte pieces, an unknown
 * model type. */
static dsq_status validate(const parse_state *ps, const dsq_spm_model *m, const char *src,
                           dsq_err *err) {
    dsq_status st = DSQ_OK;
    piece_key *keys = NULL;
    size_t n_unk = 0;
    DSQ_CHECK(ps->n > 0, DSQ_FORMAT, err, "%s: no pieces (not a SentencePiece model?)", src);
    DSQ_CHECK(m->model_type >= DSQ_SPM_UNIGRAM && m->model_type <= DSQ_SPM_CHAR, DSQ_FORMAT, err,
              "%s: TrainerSpec.model_type %d is not UNIGRAM, BPE, WORD or CHAR", src,
              (int)m->model_type);
    for (size_t i = 0; i < ps->n; i++) {
        const piece_rec *r = &ps->recs[i];
        n_unk += r->type == DSQ_SPM_UNKNOWN;
        DSQ_CHECK(r->type != DSQ_SPM_BYTE || is_byte_piece(ps->blob + r->off, r->len),
                  DSQ_FORMAT, err, "%s: byte %zu: piece %zu '%s' has type BYTE but is not <0xXX>",
                  src, r->at, i, ps->blob + r->off);
    }
    DSQ_CHECK(n_unk == 1, DSQ_FORMAT, err,
              "%s: %zu pieces of type UNKNOWN; a SentencePiece model has exactly one", src, n_unk);
    keys = malloc(ps->n * sizeof *keys);
    DSQ_CHECK(keys != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < ps->n; i++)
        keys[i] = (piece_key){ps->blob + ps->recs[i].off, ps->recs[i].len, i};
    qsort(keys, ps->n, sizeof *keys, cmp_piece);
    for (size_t i = 1; i < ps->n; i++) {
        const piece_key *a = &keys[i - 1], *b = &keys[i];
        DSQ_CHECK(a->len != b->len || memcmp(a->s, b->s, a->len) != 0, DSQ_FORMAT, err,
                  "%s: byte %zu: piece %zu '%s' duplicates piece %zu", src,
                  ps->recs[b->id].at, b->id, b->s, a->id);
    }
cleanup:
    free(keys);
    return st;
}

void dsq_spm_model_free(dsq_spm_model *m) {
    spm_owned *o = (spm_owned *)m;
    if (o == NULL)
        return;
    free(o->blob);
    free(o->ptrs);
    free(o->lens);
    free(o->scores);
    free(o->types);
    free(o);
}

dsq_status dsq_spm_model_parse(dsq_spm_model **out, const uint8_t *p, size_t n,
                               const char *source, dsq_err *err) {
    dsq_status st = DSQ_OK;
    parse_state ps = {0};
    spm_owned *o = NULL;
    const char *src = source ? source : "tokenizer.model";
    *out = NULL;
    DSQ_CHECK(p != NULL || n == 0, DSQ_INVALID_ARG, err, "%s: NULL buffer", src);
    o = calloc(1, sizeof *o);
    DSQ_CHECK(o != NULL, DSQ_NOMEM, err, "out of memory");
    dsq_spm_model *m = &o->m;
    /* the proto2 defaults (sentencepiece_model.proto) */
    m->model_type = DSQ_SPM_UNIGRAM;
    m->vocab_size = 8000;
    m->unk_id = 0;
    m->bos_id = 1;
    m->eos_id = 2;
    m->pad_id = -1;
    m->add_dummy_prefix = 1;
    m->remove_extra_whitespaces = 1;
    m->escape_whitespaces = 1;

    pb b = {p, n, 0, 0, src};
    while (b.pos < b.n) {
        uint32_t f;
        unsigned wt;
        size_t at;
        pb sub;
        DSQ_TRY(read_tag(&b, &f, &wt, &at, err));
        if (f == 1) {
            DSQ_TRY(want_wt(&b, "ModelProto.pieces", wt, WT_LEN, at, err));
            DSQ_TRY(read_len(&b, &sub, err));
            DSQ_TRY(parse_piece(&sub, &ps, at, err));
        } else if (f == 2) {
            DSQ_TRY(want_wt(&b, "ModelProto.trainer_spec", wt, WT_LEN, at, err));
            DSQ_TRY(read_len(&b, &sub, err));
            DSQ_TRY(parse_trainer(&sub, m, err));
        } else if (f == 3) {
            DSQ_TRY(want_wt(&b, "ModelProto.normalizer_spec", wt, WT_LEN, at, err));
            DSQ_TRY(read_len(&b, &sub, err));
            DSQ_TRY(parse_normalizer(&sub, m, err));
        } else {
            DSQ_TRY(skip(&b, wt, at, err));
        }
    }
    DSQ_TRY(validate(&ps, m, src, err));

    o->ptrs = malloc(ps.n * sizeof *o->ptrs);
    o->lens = malloc(ps.n * sizeof *o->lens);
    o->scores = malloc(ps.n * sizeof *o->scores);
    o->types = malloc(ps.n * sizeof *o->types);
    DSQ_CHECK(o->ptrs && o->lens && o->scores && o->types, DSQ_NOMEM, err, "out of memory");
    o->blob = ps.blob;
    ps.blob = NULL;
    for (size_t i = 0; i < ps.n; i++) {
        o->ptrs[i] = o->blob + ps.recs[i].off;
        o->lens[i] = ps.recs[i].len;
        o->scores[i] = ps.recs[i].score;
        o->types[i] = ps.recs[i].type;
    }
    m->n = ps.n;
    m->pieces = (const char *const *)o->ptrs;
    m->piece_lens = o->lens;
    m->scores = o->scores;
    m->types = o->types;
    *out = m;
    o = NULL;
cleanup:
    free(ps.recs);
    free(ps.blob);
    dsq_spm_model_free(o ? &o->m : NULL);
    return st;
}

dsq_status dsq_spm_model_load(dsq_spm_model **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *buf = NULL;
    size_t len = 0;
    *out = NULL;
    DSQ_TRY(dsq_read_small_file(path, MAX_FILE, &buf, &len, err));
    DSQ_TRY(dsq_spm_model_parse(out, (const uint8_t *)buf, len, path, err));
cleanup:
    free(buf);
    return st;
}

void dsq_spm_model_vocab(const dsq_spm_model *m, dsq_spm_vocab *v) {
    const int64_t n = (int64_t)m->n;
    memset(v, 0, sizeof *v);
    v->n = m->n;
    v->tokens = m->pieces;
    v->token_lens = m->piece_lens;
    v->scores = m->scores;
    v->types = m->types;
    v->unk_id = m->unk_id >= 0 && m->unk_id < n ? m->unk_id : -1;
    v->bos_id = m->bos_id >= 0 && m->bos_id < n ? m->bos_id : -1;
    v->eos_id = m->eos_id >= 0 && m->eos_id < n ? m->eos_id : -1;
    v->add_bos = 1;
    v->add_eos = 0;
    v->add_space_prefix = m->add_dummy_prefix;
    v->escape_whitespace = m->escape_whitespaces;
}

dsq_status dsq_tokenizer_from_spm_model(dsq_tokenizer **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_spm_model *m = NULL;
    dsq_spm_vocab v;
    *out = NULL;
    DSQ_TRY(dsq_spm_model_load(&m, path, err));
    dsq_spm_model_vocab(m, &v);
    DSQ_TRY(dsq_tokenizer_from_spm_arrays(out, &v, err));
cleanup:
    dsq_spm_model_free(m);
    return st;
}
