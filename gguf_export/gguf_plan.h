/* gguf_export/gguf_plan.h: the plan of a GGUF export, what `dsq quantize` writes before it
 * writes anything.
 *
 * One entry per output tensor, in llama-quantize's order (non-layer tensors, then layer by
 * layer, by name), each with its GGUF name, shape and type and where its rows come from:
 *   - from an HF checkpoint (gguf_plan.c): the architecture table (gguf_arch.h) names the
 *     source tensor(s) and the transform: plain, Q/K rows permuted per head (llama), experts
 *     stacked into a 3-D tensor, kv_b_proj split into attn_k_b / attn_v_b (deepseek2), or a
 *     tensor computed from config.json (llama3's rope_freqs); every checkpoint tensor must
 *     be used or left out by design (scales, rotary buffers, the MTP layer);
 *   - from a GGUF (any architecture): one entry per input tensor, its type kept (a byte
 *     copy) or changed.
 * Types come from the preset rules (gguf_rules.h), the overrides and the imatrix
 * (gguf_types.c); gguf_transform.c turns an entry's slice and row into the F32 values the
 * quantizer takes; gguf_header.h writes the metadata and tensor infos. The write side (the
 * writer thread, split files, temporary names) is convert/quantize_gguf.c's.
 *
 * The plan reads weights only through the weight source (weights/source.h). */
#ifndef DSQ_GGUF_PLAN_H
#define DSQ_GGUF_PLAN_H

#include <regex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf_export/gguf_opts.h"
#include "gguf_export/gguf_arch.h"
#include "gguf_export/gguf_rules.h"
#include "gguf_export/imatrix.h"
#include "model/model_desc.h"
#include "weights/source.h"

typedef struct dsq_qz_entry {
    dsq_qz_tensor t;
    int layer;         /* -1 outside the blocks */
    dsq_qz_src how;
    dsq_wtensor *src;  /* 1, or n_expert for DSQ_QZ_SRC_EXPERTS; NULL for the computed one */
    int n_src;
    int copy;          /* GGUF input: type unchanged, bytes copied as they are */
    const float *imx;  /* importance weights, ne[0] x ne[2] (borrowed), or NULL */
    int split;         /* index of the output file */
} dsq_qz_entry;

typedef struct dsq_qz_override {
    regex_t re;
    dsq_dtype type;
} dsq_qz_override;

typedef struct dsq_qz_plan {
    const dsq_qz_opts *o;
    const char *in;          /* the input path as given */
    dsq_wsource *ws;         /* the input's tensors */
    const dsq_gguf *gin;     /* GGUF input: its metadata (the first file's), else NULL */
    char arch_name[64];      /* GGUF input: its architecture */
    dsq_qz_model model;      /* what the type rules know about the model */
    dsq_imatrix *im;
    int n_splits;
    dsq_model_desc cfg;      /* HF input: config.json, described once (model/model_desc.h) */
    const dsq_qz_arch *arch; /* HF input */
    dsq_qz_hparams hp;
    const dsq_ftype_info *ft;
    dsq_qz_entry *e;
    size_t n_e, cap_e;
    uint8_t *used;           /* HF input: per source tensor, a GGUF tensor reads it */
    dsq_qz_override *ov;
    size_t n_ov;
    dsq_dtype out_type, embd_type; /* DSQ_DTYPE_INVALID: the rule decides */
    dsq_qz_extra extra;      /* a tensor computed from config.json (rope_freqs), or none */
} dsq_qz_plan;

/* Through o->log, when set. */
void dsq_qz_vsay(const dsq_qz_plan *p, dsq_log_level lvl, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void dsq_qz_say(const dsq_qz_plan *p, dsq_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The type options: the preset, --output-tensor-type, --token-embedding-type, the
 * --tensor-type overrides. @return DSQ_OK; DSQ_INVALID_ARG naming the bad one. */
dsq_status dsq_qz_plan_options(dsq_qz_plan *p, dsq_err *err);

/* HF input, after config.json was read (p->cfg, p->arch, p->hp): the entries of the
 * architecture table, the computed tensor, the check that every checkpoint tensor is used
 * or left out by design, llama-quantize's order. The caller then fills p->model and calls
 * dsq_qz_plan_types. */
dsq_status dsq_qz_plan_hf(dsq_qz_plan *p, dsq_err *err);
/* GGUF input (p->ws a GGUF source): the model facts from its {arch}.* keys, one entry per
 * tensor, the order and the types. */
dsq_status dsq_qz_plan_gguf(dsq_qz_plan *p, dsq_err *err);
/* Every entry's type and size (and imatrix entry), in plan order. */
dsq_status dsq_qz_plan_types(dsq_qz_plan *p, dsq_err *err);
/* --split-max-size: assigns each entry its file (p->n_splits). */
dsq_status dsq_qz_plan_splits(dsq_qz_plan *p, dsq_err *err);
/* imatrix entries that name no tensor, said; the count of tensors using one. */
void dsq_qz_plan_report_imatrix(const dsq_qz_plan *p, size_t *used);
/* 1 when the HF checkpoint has a tensor of layer il. */
int dsq_qz_plan_has_layer(const dsq_qz_plan *p, int64_t il);
void dsq_qz_plan_free(dsq_qz_plan *p);

/* ---- transforms (gguf_transform.c) ---- */

/* Rows of one 2-D slice of an entry as F32, as the quantizer asks for them. attn_k_b's
 * slices are transposed whole into `whole` (ne[0] x ne[1] floats) first; `tmp` holds one
 * source row. */
typedef struct dsq_qz_slice {
    const dsq_qz_plan *p;
    const dsq_qz_entry *e;
    int64_t sl;
    float *whole;
} dsq_qz_slice;

/* Prepares slice sl of e (for attn_k_b: reads and transposes it into whole, using tmp of
 * the source's row length). @return DSQ_OK or the source's read error. */
dsq_status dsq_qz_slice_begin(dsq_qz_slice *s, const dsq_qz_plan *p, const dsq_qz_entry *e,
                              int64_t sl, float *whole, float *tmp, dsq_err *err);
/* Row r of the slice (ne[0] floats into out). Thread-safe. */
dsq_status dsq_qz_slice_row(const dsq_qz_slice *s, int64_t r, float *out, dsq_err *err);
/* Buffer sizes dsq_qz_slice_begin needs for e (0 when none). */
void dsq_qz_slice_needs(const dsq_qz_entry *e, size_t *whole, size_t *tmp);

#endif
