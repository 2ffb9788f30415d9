/* tokenizer/tok_pretok.c: cutting text into pieces before BPE, the way HF tokenizers does.
 *
 * 1. Added tokens (dsq__tok_split_added): HF's AddedVocabulary finds them with a leftmost-longest
 *    Aho-Corasick search, first the tokens with normalized=false on the raw text, then those with
 *    normalized=true on what is left. We have no normalizers, so both passes look at raw text.
 *    With at most a few thousand added tokens, bucketing them by first byte (longest first) gives
 *    the same leftmost-longest answer without an automaton.
 * 2. Pre-tokenizer steps (dsq__tok_pretokenize), each applied to every piece in turn, as
 *    PreTokenizedString::split does: Split (regex or literal, behaviour, invert) and ByteLevel
 *    (optional prefix space, then the GPT-2 regex, Isolated). Regexes run on one piece at a time,
 *    so lookarounds never see past a piece, again as in HF.
 *
 * Matching follows pattern.rs find_matches: every match and every gap between matches becomes a
 * segment flagged match/non-match; the behaviour then decides how they are grouped; empty
 * segments are dropped. PCRE2 with UTF | UCP gives \p{..}, \s and (?!\S) the Unicode meaning
 * onig/fancy-regex give them; MATCH_INVALID_UTF lets invalid bytes through safely (they never
 * match, so they land in gaps). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

dsq_status dsq__tok_regex_compile(pcre2_code **out, const char *pat, size_t len, dsq_err *err) {
    dsq_status st = DSQ_OK;
    int ec = 0;
    PCRE2_SIZE eo = 0;
    *out = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec,
                         &eo, NULL);
    if (*out == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        DSQ_CHECK(0, DSQ_FORMAT, err, "pre-tokenizer regex: %s at offset %zu", (const char *)msg,
                  (size_t)eo);
    }
    /* JIT is an optimisation only: a failure (no JIT support here) leaves the interpreter */
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
cleanup:
    return st;
}

/* ==== added tokens ========================================================================== */

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* single_word: the match must not touch a word character (HF: char::is_alphanumeric) on either
 * side. The neighbouring code point is tested with a small UCP regex. */
static int touches_word(const dsq_tokenizer *t, const char *text, size_t len, size_t s, size_t e) {
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int hit = 0;
    if (md == NULL)
        return 0;
    if (s > 0) {
        size_t b = s - 1; /* start of the previous code point */
        while (b > 0 && ((uint8_t)text[b] & 0xC0) == 0x80 && s - b < 4)
            b--;
        hit =
            pcre2_match(t->word_re, (PCRE2_SPTR)text + b, s - b, 0, PCRE2_ANCHORED, md, NULL) >= 0;
    }
    if (!hit && e < len)
        hit = pcre2_match(t->word_re, (PCRE2_SPTR)text + e, len - e, 0, PCRE2_ANCHORED, md, NULL) >=
              0;
    pcre2_match_data_free(md);
    return hit;
}

/* One pass over one non-added piece for the tokens with normalized == want_normalized. */
static dsq_status split_added_pass(const dsq_tokenizer *t, const char *text, size_t len,
                                   int want_normalized, tok_pieces *out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    size_t seg = 0; /* start of the pending non-added text */
    size_t i = 0;
    while (i < len) {
        const uint8_t c = (uint8_t)text[i];
        const tok_added *hit = NULL;
        for (uint32_t k = t->added_by_byte[c]; k < t->added_by_byte[c + 1]; k++) {
            const tok_added *a = &t->added[t->added_order[k]];
            if ((int)a->normalized != want_normalized || a->len > len - i ||
                memcmp(text + i, a->content, a->len) != 0)
                continue;
            if (a->single_word && t->word_re != NULL && touches_word(t, text, len, i, i + a->len))
                continue;
            hit = a;
            break; /* candidates are longest first */
        }
        if (hit == NULL) {
            i++;
            continue;
        }
        size_t s = i, e = i + hit->len;
        if (hit->lstrip) /* the token swallows the whitespace before it */
            while (s > seg && is_ws(text[s - 1]))
                s--;
        if (hit->rstrip)
            while (e < len && is_ws(text[e]))
                e++;
        if (s > seg)
            DSQ_CHECK(dsq__tok_pieces_push(out, text + seg, s - seg, -1), DSQ_NOMEM, err,
                      "out of memory");
        DSQ_CHECK(dsq__tok_pieces_push(out, text + s, e - s, hit->id), DSQ_NOMEM, err,
                  "out of memory");
        seg = i = e;
    }
    if (len > seg)
        DSQ_CHECK(dsq__tok_pieces_push(out, text + seg, len - seg, -1), DSQ_NOMEM, err,
                  "out of memory");
cleanup:
    return st;
}

dsq_status dsq__tok_split_added(const dsq_tokenizer *t, const char *text, size_t len,
                                tok_pieces *out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_pieces first = {0};
    if (t->n_added == 0) {
        if (len > 0)
            DSQ_CHECK(dsq__tok_pieces_push(out, text, len, -1), DSQ_NOMEM, err, "out of memory");
        goto cleanup;
    }
    DSQ_TRY(split_added_pass(t, text, len, 0, &first, err));
    for (size_t i = 0; i < first.n; i++) {
        if (first.p[i].added_id >= 0)
            DSQ_CHECK(dsq__tok_pieces_push(out, first.p[i].p, first.p[i].n, first.p[i].added_id),
                      DSQ_NOMEM, err, "out of memory");
        else
            DSQ_TRY(split_added_pass(t, first.p[i].p, first.p[i].n, 1, out, err));
    }
cleanup:
    free(first.p);
    return st;
}

/* ==== Split ================================================================================= */

typedef struct seg {
    size_t s, e;
    int match;
} seg;

typedef struct segs {
    seg *p;
    size_t n, cap;
} segs;

static int segs_push(segs *v, size_t s, size_t e, int match) {
    if (v->n == v->cap) {
        const size_t c = v->cap ? v->cap * 2 : 32;
        seg *q = realloc(v->p, c * sizeof(seg));
        if (q == NULL)
            return 0;
        v->p = q;
        v->cap = c;
    }
    v->p[v->n].s = s;
    v->p[v->n].e = e;
    v->p[v->n].match = match;
    v->n++;
    return 1;
}

/* pattern.rs find_matches: matches and the gaps between them, in order, covering the piece. */
static dsq_status find_matches(const tok_pretok *step, const char *p, size_t n,
                               pcre2_match_data *md, segs *out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    size_t prev = 0, pos = 0;
    out->n = 0;
    if (n == 0) {
        DSQ_CHECK(segs_push(out, 0, 0, 0), DSQ_NOMEM, err, "out of memory");
        goto cleanup;
    }
    while (pos <= n) {
        size_t ms, me;
        if (step->re != NULL) {
            int rc = pcre2_match(step->re, (PCRE2_SPTR)p, n, pos, 0, md, NULL);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* long pieces: the interpreter uses the heap */
                rc = pcre2_match(step->re, (PCRE2_SPTR)p, n, pos, PCRE2_NO_JIT, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH)
                break;
            if (rc < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof(msg));
                DSQ_CHECK(0, DSQ_RANGE, err,
                          "pre-tokenizer regex failed on a piece of %zu bytes: %s", n,
                          (const char *)msg);
            }
            const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
            if (me < ms) /* \K tricks; not in any pattern we know, but never trust the input */
                me = ms;
        } else {
            if (step->literal_len == 0 || step->literal_len > n - pos)
                break;
            const char *f = memmem(p + pos, n - pos, step->literal, step->literal_len);
            if (f == NULL)
                break;
            ms = (size_t)(f - p);
            me = ms + step->literal_len;
        }
        if (prev != ms)
            DSQ_CHECK(segs_push(out, prev, ms, 0), DSQ_NOMEM, err, "out of memory");
        DSQ_CHECK(segs_push(out, ms, me, 1), DSQ_NOMEM, err, "out of memory");
        prev = me;
        if (me > ms) {
            pos = me;
        } else { /* an empty match: step over one character, as find_iter does */
            uint32_t cp;
            if (ms >= n)
                break;
            pos = ms + dsq__tok_utf8_next(p + ms, n - ms, &cp);
        }
    }
    if (prev != n)
        DSQ_CHECK(segs_push(out, prev, n, 0), DSQ_NOMEM, err, "out of memory");
cleanup:
    return st;
}

/* normalizer.rs NormalizedString::split: groups segments by behaviour (the folds are those of
 * SplitDelimiterBehavior), in place. */
static void apply_behavior(tok_split_behavior b, int invert, segs *v) {
    if (invert)
        for (size_t i = 0; i < v->n; i++)
            v->p[i].match = !v->p[i].match;
    size_t w = 0;
    int prev_match = 0;
    switch (b) {
        case TOK_SPLIT_ISOLATED:
            break;
        case TOK_SPLIT_REMOVED:
            for (size_t i = 0; i < v->n; i++)
                if (!v->p[i].match)
                    v->p[w++] = v->p[i];
            v->n = w;
            break;
        case TOK_SPLIT_MERGED_WITH_PREVIOUS:
            for (size_t i = 0; i < v->n; i++) {
                const int m = v->p[i].match;
                if (m && !prev_match && w > 0)
                    v->p[w - 1].e = v->p[i].e;
                else
                    v->p[w++] = v->p[i];
                prev_match = m;
            }
            v->n = w;
            break;
        case TOK_SPLIT_MERGED_WITH_NEXT: {
            /* the same fold from the right: a match joins the segment after it */
            size_t r = v->n; /* output grows downwards from the end */
            for (size_t i = v->n; i-- > 0;) {
                const int m = v->p[i].match;
                if (m && !prev_match && r < v->n)
                    v->p[r].s = v->p[i].s;
                else
                    v->p[--r] = v->p[i];
                prev_match = m;
            }
            memmove(v->p, v->p + r, (v->n - r) * sizeof(seg));
            v->n -= r;
            break;
        }
        case TOK_SPLIT_CONTIGUOUS:
            for (size_t i = 0; i < v->n; i++) {
                const int m = v->p[i].match;
                if (m == prev_match && w > 0)
                    v->p[w - 1].e = v->p[i].e;
                else
                    v->p[w++] = v->p[i];
                prev_match = m;
            }
            v->n = w;
            break;
    }
}

/* A piece with a space in front, for ByteLevel's add_prefix_space. The copy lives in an owned
 * list of blocks; pointers into the list's buffer would move on realloc, so each copy is its own
 * allocation, remembered in `owned` as a pointer array. */
static const char *prefixed_copy(tok_buf *owned, const char *p, size_t n) {
    char *q = malloc(n + 1);
    if (q == NULL)
        return NULL;
    q[0] = ' ';
    if (n > 0)
        memcpy(q + 1, p, n);
    if (!dsq__tok_buf_put(owned, &q, sizeof(q))) {
        free(q);
        return NULL;
    }
    return q;
}

dsq_status dsq__tok_pretokenize(const dsq_tokenizer *t, tok_pieces *pieces, tok_buf *owned,
                                dsq_err *err) {
    dsq_status st = DSQ_OK;
    tok_pieces next = {0};
    segs sv = {0};
    pcre2_match_data *md = NULL;
    for (size_t k = 0; k < t->n_pretok; k++) {
        const tok_pretok *ps = &t->pretok[k];
        if (ps->re != NULL) {
            pcre2_match_data_free(md);
            md = pcre2_match_data_create_from_pattern(ps->re, NULL);
            DSQ_CHECK(md != NULL, DSQ_NOMEM, err, "out of memory");
        }
        next.n = 0;
        for (size_t i = 0; i < pieces->n; i++) {
            const tok_piece pc = pieces->p[i];
            const char *p = pc.p;
            size_t n = pc.n;
            if (pc.added_id >= 0) {
                DSQ_CHECK(dsq__tok_pieces_push(&next, p, n, pc.added_id), DSQ_NOMEM, err,
                          "out of memory");
                continue;
            }
            if (ps->add_prefix_space && (n == 0 || p[0] != ' ')) {
                p = prefixed_copy(owned, p, n);
                DSQ_CHECK(p != NULL, DSQ_NOMEM, err, "out of memory");
                n++;
            }
            if (ps->re == NULL && ps->literal == NULL) { /* ByteLevel without regex */
                DSQ_CHECK(dsq__tok_pieces_push(&next, p, n, -1), DSQ_NOMEM, err, "out of memory");
                continue;
            }
            DSQ_TRY(find_matches(ps, p, n, md, &sv, err));
            apply_behavior(ps->behavior, ps->invert, &sv);
            for (size_t j = 0; j < sv.n; j++)
                if (sv.p[j].e > sv.p[j].s)
                    DSQ_CHECK(dsq__tok_pieces_push(&next, p + sv.p[j].s, sv.p[j].e - sv.p[j].s, -1),
                              DSQ_NOMEM, err, "out of memory");
        }
        /* swap: the output of this step is the input of the next */
        const tok_pieces tmp = *pieces;
        *pieces = next;
        next = tmp;
    }
cleanup:
    free(next.p);
    free(sv.p);
    pcre2_match_data_free(md);
    return st;
}
