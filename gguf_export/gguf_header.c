/* gguf_export/gguf_header.c: metadata, split keys and tensor infos of a GGUF export (see
 * gguf_header.h). */
#include "gguf_export/gguf_header.h"

#include <stdio.h>
#include <string.h>

#include "core/checked.h"
#include "gguf_export/gguf_vocab.h"

static const char *base_name(const char *path, char *buf, size_t size) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    snprintf(buf, size, "%.*s", (int)(n - b), path + b);
    return buf;
}

/* quantize.cpp: the path as given and the first dataset, each cut to 127 bytes;
 * entries = all entries of the file; chunks only when > 0 */
static dsq_status add_imatrix_keys(const dsq_qz_plan *p, dsq_gguf_writer *w, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const char *ds = dsq_imatrix_dataset(p->im);
    const size_t fl = strlen(p->o->imatrix), dl = strlen(ds);
    DSQ_TRY(dsq_gguf_writer_add_str(w, "quantize.imatrix.file", p->o->imatrix,
                                    fl > 127 ? 127 : fl, err));
    if (dl > 0)
        DSQ_TRY(dsq_gguf_writer_add_str(w, "quantize.imatrix.dataset", ds, dl > 127 ? 127 : dl,
                                        err));
    DSQ_TRY(dsq_gguf_writer_add_i32(w, "quantize.imatrix.entries_count",
                                    (int32_t)dsq_imatrix_count(p->im), err));
    if (dsq_imatrix_chunks(p->im) > 0)
        DSQ_TRY(dsq_gguf_writer_add_i32(w, "quantize.imatrix.chunks_count",
                                        (int32_t)dsq_imatrix_chunks(p->im), err));
cleanup:
    return st;
}

/* Every KV of the output, in llama-quantize's order: the input's (or the converter's) KVs,
 * general.quantization_version and general.file_type (re-set by llama-quantize, which moves
 * them last), then the imatrix provenance keys (its KV overrides). */
static dsq_status add_meta(const dsq_qz_plan *p, dsq_gguf_writer *w, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (p->gin != NULL) {
        static const char *const dropped[] = {"general.quantization_version", "general.file_type",
                                              "split.no", "split.count", "split.tensors.count"};
        for (int64_t i = 0; i < dsq_gguf_kv_count(p->gin); i++) {
            const char *key = dsq_gguf_kv_key(p->gin, i);
            int drop = 0;
            for (size_t k = 0; k < sizeof dropped / sizeof dropped[0]; k++)
                drop |= strcmp(key, dropped[k]) == 0;
            if (drop)
                continue;
            dsq_gguf_val v;
            DSQ_TRY(dsq_gguf_kv_val(p->gin, i, &v, err));
            DSQ_TRY(dsq_gguf_writer_add_val(w, key, &v, err));
        }
    } else {
        char name[256];
        const char *an = p->arch->gguf_name;
        DSQ_TRY(dsq_gguf_writer_add_str(w, "general.architecture", an, strlen(an), err));
        DSQ_TRY(dsq_gguf_writer_add_str(w, "general.type", "model", 5, err));
        base_name(p->in, name, sizeof name);
        if (name[0] != '\0' && strcmp(name, ".") != 0)
            DSQ_TRY(dsq_gguf_writer_add_str(w, "general.name", name, strlen(name), err));
        DSQ_TRY(p->arch->add_kv(w, &p->cfg, &p->hp, err));
        DSQ_TRY(dsq_qz_add_vocab(w, dsq_wsource_path(p->ws), an, p->hp.n_vocab, &p->cfg,
                                 p->o->tokenizer_pre, err));
    }
    /* Last, in this order: llama-quantize re-sets both keys on the converter's file, and
     * ggml moves a re-set key to the end, so the whole file matches llama-quantize's. */
    DSQ_TRY(dsq_gguf_writer_add_u32(w, "general.quantization_version", 2, err));
    DSQ_TRY(dsq_gguf_writer_add_u32(w, "general.file_type", (uint32_t)p->ft->ftype, err));
    if (p->im != NULL)
        DSQ_TRY(add_imatrix_keys(p, w, err));
cleanup:
    return st;
}

dsq_status dsq_qz_build_header(const dsq_qz_plan *p, dsq_gguf_writer *w, int k, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (k == 0)
        DSQ_TRY(add_meta(p, w, err));
    if (p->o->split_max_bytes > 0) {
        /* gguf-split sets split.no, split.count (placeholder), split.tensors.count, then
         * split.count again, which ggml moves to the end */
        DSQ_TRY(dsq_gguf_writer_add_u16(w, "split.no", (uint16_t)k, err));
        DSQ_TRY(dsq_gguf_writer_add_i32(w, "split.tensors.count", (int32_t)p->n_e, err));
        DSQ_TRY(dsq_gguf_writer_add_u16(w, "split.count", (uint16_t)p->n_splits, err));
    }
    for (size_t i = 0; i < p->n_e; i++) {
        const dsq_qz_tensor *t = &p->e[i].t;
        if (p->e[i].split == k)
            DSQ_TRY(dsq_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, err));
    }
cleanup:
    return st;
}
