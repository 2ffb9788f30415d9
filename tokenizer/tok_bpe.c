/* tokenizer/tok_bpe.c: the BPE model applied to one pre-tokenized piece.
 *
 * This is HF tokenizers' Word::merge_all (models/bpe/word.rs): every byte of the piece becomes
 * the vocabulary id of its byte-level character; all adjacent pairs that have a merge go into a
 * min-heap ordered by (rank, position); the top is applied unless it went stale (its left
 * symbol was merged away, or the pair now at that position no longer produces the same id), and
 * the pairs it forms with its new neighbours are pushed. O(n log n) per piece, so even a
 * pathological 100 KB "word" is cheap. The order (lowest rank, then leftmost) is what makes
 * "aaa" with the merge "a a" come out as "aa a". */
#include <stdlib.h>
#include <string.h>

#include "core/heap.h"
#include "tokenizer/tok_internal.h"

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    int32_t len;        /* 0: merged into its left neighbour */
} sym;

typedef struct merge_ent {
    int32_t rank, pos, new_id;
} merge_ent;

static int ent_less(const merge_ent *a, const merge_ent *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

DSQ_HEAP_DEFINE(heap, merge_ent, ent_less)

dsq_status dsq__tok_bpe_piece(const dsq_tokenizer *t, const char *p, size_t n, tok_ids *ids,
                              tok_buf *scratch, dsq_err *err) {
    dsq_status st = DSQ_OK;
    sym *s = NULL;
    merge_ent *heap = NULL;
    size_t nh = 0, ns = 0;

    if (t->ignore_merges) {
        /* Llama-3: a piece that is itself a vocabulary entry is emitted as is (bpe/model.rs) */
        scratch->n = 0;
        for (size_t i = 0; i < n; i++) {
            char u[2];
            const size_t un = dsq__tok_byte_to_utf8((uint8_t)p[i], u);
            DSQ_CHECK(dsq__tok_buf_put(scratch, u, un), DSQ_NOMEM, err, "out of memory");
        }
        const int32_t id = dsq__tok_lookup(t, scratch->p, scratch->n);
        if (id >= 0) {
            DSQ_CHECK(dsq__tok_ids_push(ids, id), DSQ_NOMEM, err, "out of memory");
            goto cleanup;
        }
    }
    DSQ_CHECK(n < INT32_MAX / 2, DSQ_RANGE, err, "a pre-tokenized piece of %zu bytes", n);
    s = malloc((n ? n : 1) * sizeof(sym));
    heap = malloc((2 * n + 1) * sizeof(merge_ent));
    DSQ_CHECK(s != NULL && heap != NULL, DSQ_NOMEM, err, "out of memory");

    /* initial symbols: one per byte; HF drops characters missing from the vocabulary when there
     * is no unk token, and fuses consecutive unknowns into one unk only with fuse_unk (we emit
     * one unk per unknown byte, which is what fuse_unk=false does) */
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[(uint8_t)p[i]];
        if (id < 0)
            id = t->unk_id;
        if (id < 0)
            continue;
        s[ns].id = id;
        s[ns].prev = (int32_t)ns - 1;
        s[ns].next = (int32_t)ns + 1;
        s[ns].len = 1;
        ns++;
    }
    if (ns == 0)
        goto cleanup;
    s[ns - 1].next = -1;

    for (size_t i = 0; i + 1 < ns; i++) {
        const tok_merge_slot *m = dsq__tok_merges_get(t, s[i].id, s[i + 1].id);
        if (m != NULL)
            heap_push(heap, &nh, (merge_ent){m->rank, (int32_t)i, m->new_id});
    }
    while (nh > 0) {
        const merge_ent top = heap_pop(heap, &nh);
        sym *l = &s[top.pos];
        if (l->len == 0 || l->next < 0)
            continue;
        sym *r = &s[l->next];
        const tok_merge_slot *m = dsq__tok_merges_get(t, l->id, r->id);
        if (m == NULL || m->new_id != top.new_id)
            continue;
        l->id = top.new_id;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (l->next >= 0)
            s[l->next].prev = top.pos;
        /* The heap starts with at most ns - 1 entries and each merge (at most ns - 1 of them)
         * pops one and pushes at most two, so it never exceeds 2 (ns - 1) < 2n + 1; the checks
         * keep a mistake in that argument from becoming a heap overflow. */
        if (l->prev >= 0) {
            const tok_merge_slot *pm = dsq__tok_merges_get(t, s[l->prev].id, l->id);
            if (pm != NULL) {
                DSQ_CHECK(nh < 2 * n + 1, DSQ_RANGE, err, "BPE heap overflow");
                heap_push(heap, &nh, (merge_ent){pm->rank, l->prev, pm->new_id});
            }
        }
        if (l->next >= 0) {
            const tok_merge_slot *nm = dsq__tok_merges_get(t, l->id, s[l->next].id);
            if (nm != NULL) {
                DSQ_CHECK(nh < 2 * n + 1, DSQ_RANGE, err, "BPE heap overflow");
                heap_push(heap, &nh, (merge_ent){nm->rank, top.pos, nm->new_id});
            }
        }
    }
    for (int32_t i = 0; i >= 0; i = s[i].next)
        DSQ_CHECK(dsq__tok_ids_push(ids, s[i].id), DSQ_NOMEM, err, "out of memory");
cleanup:
    free(s);
    free(heap);
    return st;
}
