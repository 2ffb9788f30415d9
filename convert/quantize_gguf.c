/* convert/quantize_gguf.c: the `dsq quantize` driver (see quantize_gguf.h): source -> plan
 * -> write.
 *
 * source:  the input opened for its tensors (weights/source.h): an HF checkpoint (F32, F16,
 *          BF16, FP8 with checked block scales) or a GGUF / split GGUF of any architecture.
 * plan:    gguf_export/gguf_plan.h: for an HF input, config.json (read_config here) and the
 *          architecture table give one entry per GGUF tensor with its source tensors and
 *          transform; a GGUF input gives one entry per tensor, its KVs copied; types from
 *          the preset rules, in llama-quantize's order; the split files.
 * header:  gguf_export/gguf_header.h, through the GGUF writer, so the file layout (offsets,
 *          padding) is fixed before any data.
 * write:   the write side below (one group: write_data and its helpers, split names, the
 *          commit): per entry, per 2-D slice, dsq_quantize_rows_from (with the slice's
 *          imatrix weights) asks for each output row as F32 just before quantizing it
 *          (gguf_export/gguf_transform.c maps it to a source row, the source decodes it), so
 *          rows stay in cache, and a writer thread (core/awrite.h) writes finished rows;
 *          tensors whose type does not change are copied as they are. Every file is
 *          written under a temporary name and renamed when all are complete. */
#include "convert/quantize_gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/awrite.h"
#include "core/file.h"
#include "formats/gguf.h"
#include "gguf_export/gguf_arch.h"
#include "gguf_export/gguf_header.h"
#include "gguf_export/gguf_plan.h"
#include "quantize/quant.h"
#include "weights/source.h"

#define MAX_CONFIG ((size_t)16 << 20)
/* Slices smaller than this many elements are done on one thread: on a loaded machine the
 * fork/join and spin-wait of an OpenMP region cost more than the work (the tiny models ran
 * 4x slower on 2 threads than on 1). The bytes do not depend on the thread count. */
#define PAR_MIN ((int64_t)1 << 20)

/* The plan is this driver's state; read_config, check_mtp and hf_model_info fill its model
 * part from config.json. */
typedef dsq_qz_plan ctx;

static void say(const ctx *c, dsq_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(const ctx *c, dsq_log_level lvl, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dsq_qz_vsay(c, lvl, fmt, ap);
    va_end(ap);
}

void dsq_qz_summary_free(dsq_qz_summary *s) {
    if (s == NULL)
        return;
    free(s->tensors);
    s->tensors = NULL;
    s->n_tensors = 0;
}

/* ============================================================================================
 * The model description of an HF input
 * ========================================================================================== */

/* What llama-quantize knows of a model converted from this checkpoint. */
static void hf_model_info(ctx *c) {
    dsq_qz_model *m = &c->model;
    const int ds2 = strcmp(c->arch->gguf_name, "deepseek2") == 0;
    /* llama-quantize reads block_count: a kept MTP layer counts in use_more_bits etc. */
    m->n_layer = (int)dsq_qz_n_blocks(&c->hp);
    m->n_expert = ds2 ? (int)c->hp.n_expert : 0;
    m->n_head = (int)c->hp.n_head;
    /* what the loader will read as head_count_kv */
    m->n_head_kv = (int)(ds2 && !c->hp.kvb_legacy ? 1 : c->hp.n_head_kv);
    m->is_70b = strcmp(c->arch->gguf_name, "llama") == 0 && c->hp.n_layer == 80 &&
                c->hp.n_head != c->hp.n_head_kv;
}

static dsq_status read_config(ctx *c, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = dsq_path_join(dsq_wsource_path(c->ws), "config.json"), *text = NULL;
    size_t len = 0;
    DSQ_CHECK(path != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_read_small_file(path, MAX_CONFIG, &text, &len, err));
    DSQ_TRY(dsq_model_desc_parse(text, len, path, &c->cfg, err));
    const char *an = c->cfg.architecture;
    c->arch = dsq_qz_arch_find(an);
    DSQ_CHECK(c->arch != NULL, DSQ_UNSUPPORTED, err,
              "%s: architecture '%s' is not supported (supported: %s)", path,
              an ? an : "(none)", dsq_qz_arch_names());
    c->hp.kvb_legacy = c->o->mla_legacy;
    c->hp.keep_mtp = c->o->keep_mtp;
    DSQ_TRY(dsq_qz_hparams_read(c->arch, &c->cfg, &c->hp, err));
cleanup:
    free(path);
    free(text);
    return st;
}

/* 1 when the checkpoint has a tensor of layer il. */
static int has_layer(const ctx *c, int64_t il) {
    return dsq_qz_plan_has_layer(c, il);
}

/* --keep-mtp against what the model has. No MTP layer to keep is not an error (the same
 * command then works for every DeepSeek checkpoint), but it is said, since the user asked
 * for something the output will not have. A config that declares MTP layers the checkpoint
 * does not hold (a copy with layer 61 removed but config.json unchanged) is an error naming
 * the layer, rather than the first missing tensor of the table. */
static dsq_status check_mtp(ctx *c, dsq_err *err) {
    const dsq_qz_hparams *hp = &c->hp;
    if (!c->o->keep_mtp) {
        if (c->arch->drops_extra_layers && has_layer(c, hp->n_layer))
            say(c, DSQ_LOG_INFO,
                "left out the multi-token-prediction layer (model.layers.%lld.*), as llama.cpp's "
                "converter does; --keep-mtp keeps it",
                (long long)hp->n_layer);
        return DSQ_OK;
    }
    if (!hp->keep_mtp || hp->n_mtp == 0) {
        say(c, DSQ_LOG_WARN,
            "--keep-mtp: this %s has no multi-token-prediction layers (%s); the output is the "
            "same as without it",
            c->arch->hf_name,
            hp->keep_mtp ? "config.json: num_nextn_predict_layers is 0 or absent"
                         : "the architecture has none");
        return DSQ_OK;
    }
    if (dsq_qz_n_blocks(hp) > 4096)
        return dsq_err_set(err, DSQ_FORMAT,
                           "config.json: num_hidden_layers %lld + num_nextn_predict_layers %lld "
                           "is more than the 4096 blocks dsq reads back",
                           (long long)hp->n_layer, (long long)hp->n_mtp);
    if (!has_layer(c, hp->n_layer))
        return dsq_err_set(err, DSQ_NOT_FOUND,
                           "--keep-mtp: config.json has num_nextn_predict_layers %lld but the "
                           "checkpoint has no model.layers.%lld.* tensors (this copy of the "
                           "model lacks its MTP layer); run without --keep-mtp",
                           (long long)hp->n_mtp, (long long)hp->n_layer);
    return DSQ_OK;
}

/* ============================================================================================
 * Write side: the data of every entry through one writer thread, the split files' names,
 * the commit. (The streaming engine takes this over; keep it together.)
 * ========================================================================================== */

/* Output bytes go to the file through one writer thread (core/awrite.h) in pieces of this
 * size, written as soon as the rows in them are quantized: write(2) then copies from cache,
 * and the core that would have waited for the write computes the next slice instead.
 * 256 KiB is what `dsq convert` measured best for the same copy (core/wqueue.h). */
#define WRITE_PIECE ((size_t)256 << 10)

/* What dsq_quantize_rows_from reads one slice through, and where its finished rows go. */
typedef struct slice_src {
    dsq_qz_slice s;
    dsq_awrite *aw;   /* the slice's output is job `job` of aw */
    uint64_t job;
    size_t row_bytes; /* output bytes of one row */
    size_t released;  /* bytes already handed to the writer */
    int bad;          /* a row could not be read: its status and message */
    dsq_status bad_st;
    dsq_err bad_err;
} slice_src;

/* Row r of the slice as F32. The quantizer's callback cannot fail, so a read error is kept
 * (the first one, with its message) and reported once the slice is done. */
static void fill_row(void *user, int64_t r, float *out) {
    slice_src *p = user;
    if (dsq_qz_slice_row(&p->s, r, out, NULL) == DSQ_OK)
        return;
    memset(out, 0, (size_t)p->s.e->t.ne[0] * sizeof *out);
#pragma omp critical(dsq_qz_read_error)
    if (!p->bad) {
        p->bad = 1;
        p->bad_st = dsq_qz_slice_row(&p->s, r, out, &p->bad_err);
    }
}

/* Rows [0, rows) of the slice are final: hand them to the writer a piece at a time (calls
 * are serialized by dsq_quantize_rows_from). */
static void rows_done(void *user, int64_t rows) {
    slice_src *p = user;
    const size_t n = (size_t)rows * p->row_bytes;
    if (n - p->released >= WRITE_PIECE) {
        dsq_awrite_ready(p->aw, p->job, n);
        p->released = n;
    }
}

static dsq_status sink_gguf(void *user, const void *buf, size_t n, dsq_err *err) {
    return dsq_gguf_writer_write(user, buf, n, err);
}

/* A buffer of at least n elements of size sz (grown, never shrunk). */
static dsq_status grow(void **buf, size_t *cap, size_t n, size_t sz, const char *what,
                       dsq_err *err) {
    if (n <= *cap)
        return DSQ_OK;
    free(*buf);
    *cap = 0;
    if ((*buf = malloc(n * sz)) == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory (%zu bytes for '%s')", n * sz, what);
    *cap = n;
    return DSQ_OK;
}

/* A tensor whose type does not change: straight from the input mapping, which outlives the
 * writer. */
static dsq_status copy_entry(const ctx *c, dsq_awrite *aw, dsq_gguf_writer *out,
                             const dsq_qz_entry *e, uint64_t *last_job, dsq_err *err) {
    const dsq_wpart *part = &e->src[0].part[0];
    if (part->data == NULL)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "tensor '%s': the source holds no bytes to copy",
                           e->t.name);
    (void)c;
    return dsq_awrite_push(aw, sink_gguf, out, part->data, (size_t)part->nbytes,
                           (size_t)part->nbytes, last_job, err);
}

/* Two output buffers: one being filled, the other being written. The writer thread owns the
 * GGUF writers (and so the files) until the last job is waited for; any write error comes back
 * through dsq_awrite_push/wait with the writer's own message. */
static dsq_status write_data(ctx *c, dsq_gguf_writer **w, uint64_t total, dsq_err *err) {
    dsq_status st = DSQ_OK;
    float *whole = NULL, *tmp = NULL;
    uint8_t *q[2] = {NULL, NULL};
    size_t whole_cap = 0, q_cap[2] = {0, 0}, tmp_cap = 0;
    uint64_t q_job[2] = {0, 0}, last_job = 0;
    int k = 0;
    uint64_t done = 0;
    dsq_awrite *aw = NULL;
    DSQ_TRY(dsq_awrite_start(&aw, WRITE_PIECE, err));
    for (size_t i = 0; i < c->n_e; i++) {
        const dsq_qz_entry *e = &c->e[i];
        dsq_gguf_writer *out = w[e->split];
        if (e->copy) {
            DSQ_TRY(copy_entry(c, aw, out, e, &last_job, err));
            done += e->t.nbytes;
            if (c->o->progress)
                c->o->progress(c->o->progress_user, done, total);
            continue;
        }
        const int64_t cols = e->t.ne[0], rows = e->t.ne[1], slices = e->t.ne[2];
        size_t row_bytes = 0, nw = 0, nt = 0;
        DSQ_TRY(dsq_quant_row_size(e->t.type, cols, &row_bytes));
        const size_t nq = row_bytes * (size_t)rows;
        dsq_qz_slice_needs(e, &nw, &nt);
        DSQ_TRY(grow((void **)&whole, &whole_cap, nw, sizeof *whole, e->t.name, err));
        DSQ_TRY(grow((void **)&tmp, &tmp_cap, nt, sizeof *tmp, e->t.name, err));
        for (int64_t sl = 0; sl < slices; sl++) {
            k ^= 1;
            /* the buffer's previous slice must be on disk before it is overwritten */
            DSQ_TRY(dsq_awrite_wait(aw, q_job[k], err));
            DSQ_TRY(grow((void **)&q[k], &q_cap[k], nq, 1, e->t.name, err));
            DSQ_TRY(dsq_awrite_push(aw, sink_gguf, out, q[k], nq, 0, &q_job[k], err));
            last_job = q_job[k];
            slice_src p;
            memset(&p, 0, sizeof p);
            p.aw = aw;
            p.job = q_job[k];
            p.row_bytes = row_bytes;
            DSQ_TRY(dsq_qz_slice_begin(&p.s, c, e, sl, whole, tmp, err));
            const dsq_row_source rs = {fill_row, rows_done, &p};
            /* llama-quantize: expert (slice) i03 gets imatrix + i03 * n_per_row */
            const float *imx = e->imx ? e->imx + sl * cols : NULL;
            const dsq_status qst = dsq_quantize_rows_from(
                e->t.type, &rs, q[k], rows, cols, imx, rows * cols >= PAR_MIN ? c->o->threads : 1);
            if (p.bad || qst != DSQ_OK) {
                /* a write error in an earlier slice is reported first, as it would have
                 * been had that slice been written before this one was computed */
                DSQ_TRY(dsq_awrite_wait(aw, q_job[k] - 1, err));
                DSQ_CHECK(!p.bad, p.bad_st, err, "%s", p.bad_err.text);
                DSQ_CHECK(0, qst, err, "tensor '%s'%s: quantizing to %s failed: %s", e->t.name,
                          qst == DSQ_RANGE ? " has NaN or infinite weights" : "",
                          dsq_dtype_name(e->t.type), dsq_status_str(qst));
            }
            dsq_awrite_ready(aw, q_job[k], nq);
            /* an expert's weight is read by its own slice only: drop its pages now, so that
             * a stacked tensor (256 experts of 14 MB in DeepSeek-V3) never maps them all */
            if (e->how == DSQ_QZ_SRC_EXPERTS && c->gin == NULL)
                dsq_wsource_release_tensor(c->ws, &e->src[sl]);
            done += nq;
            if (c->o->progress)
                c->o->progress(c->o->progress_user, done, total);
        }
        for (int x = 0; e->src != NULL && x < e->n_src; x++)
            dsq_wsource_release_tensor(c->ws, &e->src[x]);
    }
    DSQ_TRY(dsq_awrite_wait(aw, last_job, err));
cleanup:
    dsq_awrite_stop(aw); /* before the buffers it may still be writing from are freed */
    free(whole);
    free(q[0]);
    free(q[1]);
    free(tmp);
    return st;
}

static dsq_status split_path(const char *out_path, char **dir, char **name, dsq_err *err) {
    const char *slash = strrchr(out_path, '/');
    *dir = slash ? strndup(out_path, (size_t)(slash - out_path) + (slash == out_path))
                 : strdup(".");
    *name = strdup(slash ? slash + 1 : out_path);
    if (*dir == NULL || *name == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    if (!dsq_name_is_safe(*name, strlen(*name)))
        return dsq_err_set(err, DSQ_INVALID_ARG, "output '%s': not a usable file name", out_path);
    return DSQ_OK;
}

/* Output file k's name: OUT itself, or with splits "<OUT minus .gguf>-%05d-of-%05d.gguf". */
static dsq_status out_name(const ctx *c, const char *name, int k, char **out, dsq_err *err) {
    if (c->o->split_max_bytes == 0) {
        *out = strdup(name);
    } else {
        size_t n = strlen(name);
        if (n > 5 && strcmp(name + n - 5, ".gguf") == 0)
            n -= 5;
        const size_t sz = n + 32;
        if ((*out = malloc(sz)) != NULL)
            snprintf(*out, sz, "%.*s-%05d-of-%05d.gguf", (int)n, name, k + 1, c->n_splits);
    }
    if (*out == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    if (!dsq_name_is_safe(*out, strlen(*out)))
        return dsq_err_set(err, DSQ_INVALID_ARG, "output '%s': not a usable file name", *out);
    return DSQ_OK;
}

/* ============================================================================================
 * Entry point
 * ========================================================================================== */

/* source -> plan: the HF route (config.json, the table) or the GGUF route (its tensors). */
static dsq_status plan(ctx *c, dsq_qz_summary *s, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_wsource_opts so = {c->o->fp8_f32};
    DSQ_TRY(dsq_wsource_open_tensors(&c->ws, c->in, &so, err));
    if (dsq_wsource_gguf(c->ws) != NULL) {
        if (c->o->keep_mtp)
            say(c, DSQ_LOG_WARN,
                "--keep-mtp: a GGUF input keeps whatever blocks it has; the flag changes "
                "nothing");
        DSQ_TRY(dsq_qz_plan_gguf(c, err));
        snprintf(s->arch, sizeof s->arch, "%.31s", c->arch_name);
    } else {
        DSQ_TRY(read_config(c, err));
        DSQ_TRY(check_mtp(c, err));
        DSQ_TRY(dsq_qz_plan_hf(c, err));
        hf_model_info(c);
        DSQ_TRY(dsq_qz_plan_types(c, err));
        snprintf(s->arch, sizeof s->arch, "%s", c->arch->gguf_name);
    }
    DSQ_TRY(dsq_qz_plan_splits(c, err));
    if (c->im != NULL)
        dsq_qz_plan_report_imatrix(c, &s->imatrix_used);
cleanup:
    return st;
}

/* The summary of the plan, with every output header built (file sizes known). */
static dsq_status summarize(const ctx *c, dsq_gguf_writer **w, dsq_qz_summary *s,
                            dsq_err *err) {
    dsq_status st = DSQ_OK;
    for (int k = 0; k < c->n_splits; k++) {
        uint64_t fb = 0;
        DSQ_TRY(dsq_gguf_writer_init(&w[k], err));
        DSQ_TRY(dsq_qz_build_header(c, w[k], k, err));
        DSQ_TRY(dsq_gguf_writer_file_size(w[k], &fb, err));
        s->file_bytes += fb;
    }
    snprintf(s->ftype, sizeof s->ftype, "%s", c->ft->name);
    s->file_type = (int)c->ft->ftype;
    s->n_splits = c->n_splits;
    DSQ_CHECK((s->tensors = calloc(c->n_e ? c->n_e : 1, sizeof *s->tensors)) != NULL, DSQ_NOMEM,
              err, "out of memory");
    s->n_tensors = c->n_e;
    for (size_t i = 0; i < c->n_e; i++) {
        s->tensors[i] = c->e[i].t;
        s->tensor_bytes += c->e[i].t.nbytes;
        for (int x = 0; c->e[i].src != NULL && x < c->e[i].n_src; x++)
            s->input_bytes += c->e[i].src[x].part[0].nbytes; /* the computed one is not read */
    }
cleanup:
    return st;
}

dsq_status dsq_quantize_gguf(const char *in, const char *out_path, const dsq_qz_opts *o,
                             dsq_qz_summary *s, dsq_err *err) {
    dsq_status st = DSQ_OK;
    ctx c;
    dsq_gguf_writer **w = NULL;
    char *dir = NULL, *name = NULL;
    char **names = NULL;
    int n_w = 0, committed = 0;
    memset(&c, 0, sizeof c);
    memset(s, 0, sizeof *s);
    c.o = o;
    c.in = in;
    DSQ_TRY(dsq_qz_plan_options(&c, err));
    if (!o->dry_run)
        DSQ_TRY(split_path(out_path, &dir, &name, err));
    if (o->imatrix != NULL)
        DSQ_TRY(dsq_imatrix_load(&c.im, o->imatrix, err));
    DSQ_TRY(plan(&c, s, err));

    DSQ_CHECK((w = calloc((size_t)c.n_splits, sizeof *w)) != NULL &&
                  (names = calloc((size_t)c.n_splits, sizeof *names)) != NULL,
              DSQ_NOMEM, err, "out of memory");
    n_w = c.n_splits;
    DSQ_TRY(summarize(&c, w, s, err));
    if (o->dry_run)
        goto cleanup;

    /* every split under its temporary name first; renamed only once all are complete */
    for (int k = 0; k < n_w; k++) {
        DSQ_TRY(out_name(&c, name, k, &names[k], err));
        DSQ_TRY(dsq_gguf_writer_begin(w[k], dir, names[k], err));
    }
    DSQ_TRY(write_data(&c, w, s->tensor_bytes, err));
    for (; committed < n_w; committed++)
        DSQ_TRY(dsq_gguf_writer_commit(w[committed], err));

cleanup:
    if (st != DSQ_OK) {
        dsq_qz_summary_free(s);
        /* a rename failed part way: take back the splits already in place */
        for (int k = 0; k < committed; k++) {
            char *p = dsq_path_join(dir, names[k]);
            if (p != NULL)
                remove(p);
            free(p);
        }
    }
    for (int k = 0; k < n_w; k++) {
        dsq_gguf_writer_free(w[k]);
        if (names != NULL)
            free(names[k]);
    }
    free(w);
    free(names);
    dsq_qz_plan_free(&c);
    free(dir);
    free(name);
    return st;
}
