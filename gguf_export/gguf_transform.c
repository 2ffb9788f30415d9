/* gguf_export/gguf_transform.c: an output row of a GGUF export as F32 (see gguf_plan.h):
 * which source row (or column) each transform reads. Q/K rows permuted per head (llama's
 * LlamaModel.permute), one expert's tensor per slice of a stacked ffn_*_exps, attn_v_b's
 * slice h the rows h*(nope+v)+nope.. of kv_b_proj, attn_k_b's slice h the transpose of
 * rows h*(nope+v)..+nope, a GGUF input's flattened rows as they are, and the computed
 * tensor's values. The reading itself is the weight source's. */
#include "gguf_export/gguf_plan.h"

#include <string.h>

void dsq_qz_slice_needs(const dsq_qz_entry *e, size_t *whole, size_t *tmp) {
    *whole = *tmp = 0;
    if (e->how == DSQ_QZ_SRC_K_B && e->src != NULL) {
        *whole = (size_t)(e->t.ne[0] * e->t.ne[1]);
        *tmp = (size_t)e->src[0].cols;
    }
}

dsq_status dsq_qz_slice_begin(dsq_qz_slice *s, const dsq_qz_plan *p, const dsq_qz_entry *e,
                              int64_t sl, float *whole, float *tmp, dsq_err *err) {
    s->p = p;
    s->e = e;
    s->sl = sl;
    s->whole = NULL;
    if (e->how != DSQ_QZ_SRC_K_B || p->gin != NULL)
        return DSQ_OK;
    /* kv_b[h][0:nope, :] transposed, out[r][j] = kv_b[h*(nope+v) + j][r]: whole, because
     * each source row feeds a column; these slices are small (nope x lora) */
    const int64_t cols = e->t.ne[0], rows = e->t.ne[1];
    const int64_t base = sl * (p->hp.qk_nope + p->hp.v_head_dim);
    for (int64_t j = 0; j < cols; j++) {
        const dsq_status st = dsq_wsource_read(p->ws, &e->src[0], base + j, 1, tmp, err);
        if (st != DSQ_OK)
            return st;
        for (int64_t r = 0; r < rows; r++)
            whole[r * cols + j] = tmp[r];
    }
    s->whole = whole;
    return DSQ_OK;
}

dsq_status dsq_qz_slice_row(const dsq_qz_slice *s, int64_t r, float *out, dsq_err *err) {
    const dsq_qz_entry *e = s->e;
    const dsq_qz_hparams *hp = &s->p->hp;
    const int64_t cols = e->t.ne[0], rows = e->t.ne[1];
    if (s->whole != NULL) {
        memcpy(out, s->whole + r * cols, (size_t)cols * sizeof *out);
        return DSQ_OK;
    }
    if (e->src == NULL) { /* the computed tensor: one row */
        memcpy(out, s->p->extra.data, (size_t)cols * sizeof *out);
        return DSQ_OK;
    }
    if (s->p->gin != NULL) /* a GGUF tensor's rows, slice after slice */
        return dsq_wsource_read(s->p->ws, &e->src[0], s->sl * rows + r, 1, out, err);
    const dsq_wtensor *t = &e->src[0];
    int64_t sr = r;
    switch (e->how) {
        case DSQ_QZ_SRC_PERMUTE_Q: sr = dsq_qz_permute_src_row(r, rows, hp->n_head); break;
        case DSQ_QZ_SRC_PERMUTE_K: sr = dsq_qz_permute_src_row(r, rows, hp->n_head_kv); break;
        case DSQ_QZ_SRC_EXPERTS: t = &e->src[s->sl]; break;
        case DSQ_QZ_SRC_V_B: sr = s->sl * (hp->qk_nope + hp->v_head_dim) + hp->qk_nope + r; break;
        case DSQ_QZ_SRC_PLAIN:
        case DSQ_QZ_SRC_K_B: break;
    }
    return dsq_wsource_read(s->p->ws, t, sr, 1, out, err);
}
