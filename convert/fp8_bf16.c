/* convert/fp8_bf16.c: the FP8 -> BF16 checkpoint conversion (see fp8_bf16.h).
 *
 * How it stays at disk speed in bounded memory:
 * - For a fixed block scale s, bf16(f32(code) * s) depends only on the 8-bit
 *   code, so each 128 x 128 block needs one 256-entry table (256 products)
 *   and then one table lookup per element (32 at a time with AVX-512BW): the
 *   arithmetic is the reference's, the per-element work is a lookup.
 * - Output is produced in chunks of whole rows into a few small fixed buffers
 *   that a writer thread drains (core/wqueue.h), so the conversion of chunk
 *   k+1 overlaps the write(2) of chunk k, and each chunk is still in cache
 *   when it is copied into the page cache.
 * - Input is mapped and the pages behind the cursor are released, so resident
 *   memory does not grow with the shard size. */
#include "convert/fp8_bf16.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "quantize/fp8.h"
#include "model/json_edit.h"
#include "model/model_desc.h"
#include "core/checked.h"
#include "core/file.h"
#include "core/numeric.h"
#include "core/wqueue.h"
#include "formats/st_checkpoint.h"

#define CONFIG_JSON "config.json"
/* Small buffers, several of them: a chunk handed to the writer thread is
 * still in cache when write(2) copies it into the page cache. With 8 MiB
 * buffers the same conversion moved every byte through DRAM twice more and
 * ran at half the speed of cp (measured: 7.0 s vs 4.0 s at 256 KiB). */
#define DEFAULT_BUF ((size_t)256 << 10)
#define N_BUFS 8
#define MAX_COPY_DEPTH 8

typedef enum action { ACT_COPY, ACT_CONVERT, ACT_KEEP_FP8 } action;

typedef struct job {
    const dsq_tensor_view *src;
    size_t src_index; /* in its shard */
    const dsq_tensor_view *scale;
    action act;
} job;

typedef struct shard_plan {
    size_t shard; /* index in the checkpoint */
    const char *name;
    job *jobs; /* in writer add order */
    size_t n_jobs;
    dsq_st_writer *w;
    uint64_t src_size, src_header_hash;
    int skip; /* resumed */
} shard_plan;

typedef struct ctx {
    const dsq_fp8_opts *o;
    dsq_fp8_summary *sum;
    const char *in_dir, *out_dir;
    dsq_ckpt *ck;
    int64_t block_rows, block_cols;
    char *config_text;
    size_t config_len;
    char *config_out;
    size_t config_out_len;
    shard_plan *plans;
    size_t n_plans;
    json_t *manifest;     /* {"shards": {...}} being written */
    json_t *old_manifest; /* read for --resume */
    float dec_e4m3[256], dec_e5m2[256];
    uint16_t *luts;
    size_t luts_cap; /* entries */
    int nthreads;
    int simd; /* table lookups with AVX-512BW (same bits as the portable loop) */
    uint64_t done;
    dsq_wqueue *q;
    XXH64_state_t *hash; /* of the shard being written, kept by the producer */
    dev_t out_dev; /* the output directory, which may sit inside the input */
    ino_t out_ino;
} ctx;

static void say(const ctx *c, dsq_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const ctx *c, dsq_log_level lvl, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    if (c->o->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->o->log(c->o->log_user, lvl, msg);
}

static int is_fp8(dsq_dtype t) {
    return t == DSQ_DTYPE_F8_E4M3 || t == DSQ_DTYPE_F8_E5M2;
}

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static float rd_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return dsq_bits_f32(u);
}

/* ---- planning: every check happens here, before anything is written ---- */

static dsq_status check_scale(const ctx *c, const dsq_tensor_view *w, const dsq_tensor_view *s,
                              dsq_err *err) {
    const char *sname = s->name;
    if (w->ndim != 2)
        return dsq_err_set(err, DSQ_FORMAT, "tensor '%s': FP8 weight with %d dimensions, expected 2",
                           w->name, w->ndim);
    if (s->dtype != DSQ_DTYPE_F32)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "tensor '%s': scale is %s, expected F32", sname,
                           dsq_dtype_name(s->dtype));
    const int64_t want_r = (int64_t)dsq_ceil_div_u64((uint64_t)w->shape[0], (uint64_t)c->block_rows);
    const int64_t want_c = (int64_t)dsq_ceil_div_u64((uint64_t)w->shape[1], (uint64_t)c->block_cols);
    if (s->ndim != 2 || s->shape[0] != want_r || s->shape[1] != want_c) {
        char got[96];
        dsq_shape_format(s->shape, s->ndim, got, sizeof got);
        return dsq_err_set(err, DSQ_FORMAT,
                           "tensor '%s': scale shape %s does not match weight [%" PRId64 ", %" PRId64
                           "] in %" PRId64 "x%" PRId64 " blocks (expected [%" PRId64 ", %" PRId64
                           "])",
                           sname, got, w->shape[0], w->shape[1], c->block_rows, c->block_cols,
                           want_r, want_c);
    }
    const uint8_t *p = s->data;
    for (int64_t i = 0; i < want_r * want_c; i++) {
        const float v = rd_f32(p + 4 * i);
        if (v != v || v - v != 0.0f)
            return dsq_err_set(err, DSQ_FORMAT,
                               "tensor '%s': scale[%" PRId64 "][%" PRId64 "] is %s", sname,
                               i / want_c, i % want_c, v != v ? "NaN" : "infinite");
    }
    return DSQ_OK;
}

static dsq_status plan_shard(ctx *c, size_t si, shard_plan *sp, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_st *sh = dsq_ckpt_shard(c->ck, si);
    const size_t n = dsq_st_count(sh);
    char *base = NULL;
    sp->shard = si;
    sp->name = dsq_ckpt_shard_name(c->ck, si);
    sp->jobs = calloc(n ? n : 1, sizeof *sp->jobs);
    DSQ_CHECK(sp->jobs != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_st_writer_init(&sp->w, err));
    for (size_t i = 0; i < dsq_st_meta_count(sh); i++)
        DSQ_TRY(dsq_st_writer_set_meta(sp->w, dsq_st_meta_key(sh, i), dsq_st_meta_value(sh, i),
                                       err));
    /* transformers refuses shards without it; the reference writer omits it */
    DSQ_TRY(dsq_st_writer_set_meta(sp->w, "format", "pt", err));

    for (size_t i = 0; i < n; i++) {
        const dsq_tensor_view *v = dsq_st_tensor(sh, i);
        if (ends_with(v->name, "_scale_inv")) {
            free(base);
            base = strndup(v->name, strlen(v->name) - strlen("_scale_inv"));
            DSQ_CHECK(base != NULL, DSQ_NOMEM, err, "out of memory");
            const dsq_tensor_view *w = dsq_ckpt_find(c->ck, base, NULL, NULL);
            if (w == NULL || !is_fp8(w->dtype))
                say(c, DSQ_LOG_WARN, "dropping '%s', a scale without a FP8 weight", v->name);
            c->sum->scales_dropped++;
            continue;
        }
        job *j = &sp->jobs[sp->n_jobs++];
        j->src = v;
        j->src_index = i;
        j->act = ACT_COPY;
        if (is_fp8(v->dtype)) {
            char *sname = malloc(strlen(v->name) + sizeof "_scale_inv");
            DSQ_CHECK(sname != NULL, DSQ_NOMEM, err, "out of memory");
            sprintf(sname, "%s_scale_inv", v->name);
            j->scale = dsq_ckpt_find(c->ck, sname, NULL, NULL);
            free(sname);
            if (j->scale == NULL) {
                DSQ_CHECK(c->o->keep_unscaled_fp8, DSQ_FORMAT, err,
                          "%s: tensor '%s' is %s but has no '%s_scale_inv' (use "
                          "--allow-missing-scale to keep it in FP8)",
                          sp->name, v->name, dsq_dtype_name(v->dtype), v->name);
                say(c, DSQ_LOG_WARN, "'%s' has no scale: kept in %s", v->name,
                    dsq_dtype_name(v->dtype));
                j->act = ACT_KEEP_FP8;
                c->sum->tensors_kept_fp8++;
            } else {
                DSQ_TRY(check_scale(c, v, j->scale, err));
                j->act = ACT_CONVERT;
                c->sum->tensors_converted++;
            }
        } else {
            c->sum->tensors_copied++;
        }
        DSQ_TRY(dsq_st_writer_add(sp->w, v->name,
                                  j->act == ACT_CONVERT ? DSQ_DTYPE_BF16 : v->dtype, v->ndim,
                                  v->shape, err));
    }
    DSQ_TRY(dsq_st_writer_layout(sp->w, err));
    c->sum->bytes_planned += dsq_st_writer_file_size(sp->w);
    sp->src_size = dsq_st_file_size(sh);
    /* The header identifies the source shard well enough to refuse resuming
     * from a different checkpoint, without reading its data. */
    {
        dsq_map m = {0};
        char *p = dsq_path_join(dsq_ckpt_dir(c->ck), sp->name);
        DSQ_CHECK(p != NULL, DSQ_NOMEM, err, "out of memory");
        st = dsq_map_open(&m, p, err);
        free(p);
        if (st != DSQ_OK)
            goto cleanup;
        sp->src_header_hash = XXH64(m.data, (size_t)(8 + dsq_st_header_len(sh)), 0);
        dsq_map_close(&m);
    }
cleanup:
    free(base);
    return st;
}

static dsq_status read_config(ctx *c, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *path = dsq_path_join(c->in_dir, CONFIG_JSON);
    dsq_err e2 = {0};
    dsq_model_desc desc = {0};
    int found = 0;
    DSQ_CHECK(path != NULL, DSQ_NOMEM, err, "out of memory");
    c->block_rows = c->block_cols = 128;
    st = dsq_read_small_file(path, (size_t)16 << 20, &c->config_text, &c->config_len, &e2);
    if (st == DSQ_NOT_FOUND) {
        say(c, DSQ_LOG_WARN, "%s: not found; assuming 128x128 scale blocks", path);
        st = DSQ_OK;
        goto cleanup;
    }
    if (st != DSQ_OK) {
        dsq_err_set(err, st, "%s", e2.text);
        goto cleanup;
    }
    /* the edit first: it is the stricter JSON check (duplicate keys, NUL bytes) */
    DSQ_TRY(dsq_json_edit_top(c->config_text, c->config_len, "quantization_config", "torch_dtype",
                              "bfloat16", path, &c->config_out, &c->config_out_len, err));
    DSQ_TRY(dsq_model_desc_parse(c->config_text, c->config_len, path, &desc, err));
    DSQ_TRY(dsq_model_desc_fp8_block(&desc, path, &c->block_rows, &c->block_cols, &found, err));
cleanup:
    dsq_model_desc_free(&desc);
    free(path);
    return st;
}

/* ---- the manifest: what --resume trusts ---- */

static char *hex64(uint64_t v, char buf[17]) {
    snprintf(buf, 17, "%016" PRIx64, v);
    return buf;
}

static dsq_status write_manifest(ctx *c, int complete, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_object_set_new(c->manifest, "complete", json_boolean(complete));
    char *text = json_dumps(c->manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
    DSQ_CHECK(text != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_write_file(c->out_dir, DSQ_MANIFEST_NAME, text, strlen(text), err));
cleanup:
    free(text);
    return st;
}

static int resume_ok(ctx *c, const shard_plan *sp) {
    char h[17];
    const json_t *e = json_object_get(json_object_get(c->old_manifest, "shards"), sp->name);
    const json_t *sz = json_object_get(e, "size"), *xh = json_object_get(e, "xxh64");
    const json_t *ssz = json_object_get(e, "source_size"),
                 *sxh = json_object_get(e, "source_header_xxh64");
    if (!json_is_integer(sz) || !json_is_string(xh) || !json_is_integer(ssz) ||
        !json_is_string(sxh))
        return 0;
    if ((uint64_t)json_integer_value(ssz) != sp->src_size ||
        strcmp(json_string_value(sxh), hex64(sp->src_header_hash, h)) != 0 ||
        (uint64_t)json_integer_value(sz) != dsq_st_writer_file_size(sp->w))
        return 0;
    char *path = dsq_path_join(c->out_dir, sp->name);
    uint64_t hash = 0, size = 0;
    dsq_err e2 = {0};
    const int ok = path != NULL && dsq_file_xxh64(path, &hash, &size, &e2) == DSQ_OK &&
                   size == dsq_st_writer_file_size(sp->w) &&
                   strcmp(json_string_value(xh), hex64(hash, h)) == 0;
    free(path);
    return ok;
}

static dsq_status record_shard(ctx *c, const shard_plan *sp, uint64_t hash, dsq_err *err) {
    char h[17];
    json_t *shards = json_object_get(c->manifest, "shards");
    json_t *e = json_object();
    if (e == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    json_object_set_new(e, "size", json_integer((json_int_t)dsq_st_writer_file_size(sp->w)));
    json_object_set_new(e, "xxh64", json_string(hex64(hash, h)));
    json_object_set_new(e, "source_size", json_integer((json_int_t)sp->src_size));
    json_object_set_new(e, "source_header_xxh64", json_string(hex64(sp->src_header_hash, h)));
    json_object_set_new(shards, sp->name, e);
    return write_manifest(c, 0, err);
}

/* ---- writing ---- */

static dsq_status sink_writer(void *user, const void *buf, size_t n, dsq_err *err) {
    return dsq_st_writer_write(user, buf, n, err);
}

static void progress(ctx *c, uint64_t bytes) {
    c->done += bytes;
    if (c->o->progress != NULL)
        c->o->progress(c->o->progress_user, c->done, c->sum->bytes_planned);
}

static dsq_status copy_tensor(ctx *c, const dsq_st *sh, const job *j, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t bs = dsq_wqueue_buf_size(c->q);
    const uint8_t *src = j->src->data;
    for (uint64_t off = 0; off < j->src->nbytes; off += bs) {
        const size_t n = (size_t)(j->src->nbytes - off < bs ? j->src->nbytes - off : bs);
        void *buf;
        DSQ_TRY(dsq_wqueue_get(c->q, &buf, err));
        memcpy(buf, src + off, n);
        XXH64_update(c->hash, buf, n);
        DSQ_TRY(dsq_wqueue_submit(c->q, buf, n, err));
        dsq_st_release_range(sh, j->src_index, off, n);
        progress(c, n);
    }
cleanup:
    return st;
}

static dsq_status convert_tensor(ctx *c, const dsq_st *sh, const job *j, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t M = j->src->shape[0], N = j->src->shape[1];
    const int64_t Bm = c->block_rows, Bn = c->block_cols;
    const int64_t ncb = (N + Bn - 1) / Bn;
    const size_t bs = dsq_wqueue_buf_size(c->q);
    const float *dec = j->src->dtype == DSQ_DTYPE_F8_E4M3 ? c->dec_e4m3 : c->dec_e5m2;
    const uint8_t *src = j->src->data;
    const uint8_t *scale = j->scale->data;
    if (M == 0 || N == 0)
        return DSQ_OK;
    const int64_t rows_per_chunk = (int64_t)(bs / (size_t)(2 * N));
    /* tables for every row block a chunk can touch */
    const size_t need = (size_t)((rows_per_chunk + Bm - 1) / Bm + 1) * (size_t)ncb * 256;
    if (need > c->luts_cap) {
        free(c->luts);
        c->luts = malloc(need * sizeof *c->luts);
        c->luts_cap = c->luts ? need : 0;
        DSQ_CHECK(c->luts != NULL, DSQ_NOMEM, err, "out of memory for conversion tables");
    }
    uint16_t *luts = c->luts;
    const int nth = c->nthreads;
    (void)nth; /* only read by the OpenMP pragmas */
    const int simd = c->simd;
    for (int64_t r0 = 0; r0 < M; r0 += rows_per_chunk) {
        const int64_t r1 = r0 + rows_per_chunk < M ? r0 + rows_per_chunk : M;
        const int64_t rb0 = r0 / Bm, rb1 = (r1 - 1) / Bm;
        const int64_t n_tables = (rb1 - rb0 + 1) * ncb;
        void *buf;
        DSQ_TRY(dsq_wqueue_get(c->q, &buf, err));
        uint16_t *out = buf;
        /* one table per block: bf16(f32(code) * scale), the reference's arithmetic */
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1 && n_tables > 16)
        for (int64_t t = 0; t < n_tables; t++) {
            const int64_t rb = rb0 + t / ncb, cb = t % ncb;
            dsq__fp8_build_lut(dec, rd_f32(scale + 4 * (rb * ncb + cb)), luts + t * 256);
        }
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1 && (r1 - r0) * N > 65536)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *in = src + r * N;
            uint16_t *o = out + (r - r0) * N;
            const int64_t rb = r / Bm;
            for (int64_t cb = 0; cb < ncb; cb++) {
                const int64_t c0 = cb * Bn, len = c0 + Bn < N ? Bn : N - c0;
                const uint16_t *lut = luts + ((rb - rb0) * ncb + cb) * 256;
                if (simd)
                    dsq__fp8_apply_lut_simd(in + c0, o + c0, len, lut);
                else
                    dsq__fp8_apply_lut(in + c0, o + c0, len, lut);
            }
        }
        const size_t nbytes = (size_t)((r1 - r0) * N * 2);
        XXH64_update(c->hash, buf, nbytes);
        DSQ_TRY(dsq_wqueue_submit(c->q, buf, nbytes, err));
        dsq_st_release_range(sh, j->src_index, (uint64_t)(r0 * N), (uint64_t)((r1 - r0) * N));
        progress(c, nbytes);
    }
cleanup:
    return st;
}

static dsq_status write_shard(ctx *c, shard_plan *sp, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_st *sh = dsq_ckpt_shard(c->ck, sp->shard);
    uint64_t hash = 0;
    DSQ_TRY(dsq_st_writer_open(sp->w, c->out_dir, sp->name, err));
    /* The writer thread only writes; hashing (xxHash64 for the manifest) is
     * done here, on the chunk just produced, while it is still in cache. */
    {
        const uint8_t *prefix;
        const char *header;
        size_t prefix_len, header_len;
        dsq_st_writer_hash_externally(sp->w, &prefix, &prefix_len, &header, &header_len);
        XXH64_reset(c->hash, 0);
        XXH64_update(c->hash, prefix, prefix_len);
        XXH64_update(c->hash, header, header_len);
    }
    dsq_wqueue_set_sink(c->q, sink_writer, sp->w);
    const size_t n = dsq_st_writer_count(sp->w);
    for (size_t k = 0; k < n; k++) {
        const job *j = &sp->jobs[dsq_st_writer_order(sp->w, k)];
        if (j->act == ACT_CONVERT)
            DSQ_TRY(convert_tensor(c, sh, j, err));
        else
            DSQ_TRY(copy_tensor(c, sh, j, err));
    }
    DSQ_TRY(dsq_wqueue_drain(c->q, err));
    DSQ_TRY(dsq_st_writer_finish(sp->w, NULL, err));
    hash = XXH64_digest(c->hash);
    c->sum->shards_written++;
    c->sum->bytes_written += dsq_st_writer_file_size(sp->w);
    DSQ_TRY(record_shard(c, sp, hash, err));
cleanup:
    if (st != DSQ_OK) {
        /* the writer thread may still hold buffers of this shard */
        dsq_err ignore = {0};
        dsq_wqueue_drain(c->q, &ignore);
    }
    return st;
}

/* The index's text (the dry run reports its size, the run writes it); caller frees. */
static dsq_status index_text(const ctx *c, char **out, size_t *out_len, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    char *text = NULL;
    DSQ_CHECK(root && meta && wm, DSQ_NOMEM, err, "out of memory");
    uint64_t total = 0;
    for (size_t p = 0; p < c->n_plans; p++) {
        const shard_plan *sp = &c->plans[p];
        for (size_t k = 0; k < sp->n_jobs; k++) {
            total += dsq_st_writer_tensor_bytes(sp->w, k);
            json_object_set_new(wm, sp->jobs[k].src->name, json_string(sp->name));
        }
    }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", wm);
    meta = wm = NULL;
    text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    DSQ_CHECK(text != NULL, DSQ_NOMEM, err, "out of memory");
    const size_t len = strlen(text);
    text[len] = '\0';
    {
        /* end with a newline like save_pretrained */
        char *t2 = realloc(text, len + 2);
        DSQ_CHECK(t2 != NULL, DSQ_NOMEM, err, "out of memory");
        text = t2;
        text[len] = '\n';
        text[len + 1] = '\0';
    }
    *out = text;
    *out_len = len + 1;
    text = NULL;
cleanup:
    free(text);
    json_decref(meta);
    json_decref(wm);
    json_decref(root);
    return st;
}

static dsq_status write_index(ctx *c, dsq_err *err) {
    char *text = NULL;
    size_t len = 0;
    dsq_status st = index_text(c, &text, &len, err);
    if (st == DSQ_OK)
        st = dsq_write_file(c->out_dir, DSQ_INDEX_JSON, text, len, err);
    free(text);
    return st;
}

/* A file of the dry run's plan: its note and, for --json, its record. */
static void plan_file(const ctx *c, const char *name, const char *source, uint64_t bytes) {
    if (c->o->plan == NULL)
        return;
    char *p = dsq_path_join(c->out_dir, name);
    if (p != NULL)
        c->o->plan(c->o->plan_user, p, source, bytes);
    free(p);
}

/* ---- the other files of the checkpoint directory ---- */

static int is_shard_name(const ctx *c, const char *name) {
    for (size_t i = 0; i < dsq_ckpt_shard_count(c->ck); i++) {
        if (strcmp(dsq_ckpt_shard_name(c->ck, i), name) == 0)
            return 1;
    }
    return 0;
}

/* Removes the temporaries (.NAME.dsqtmp.XXXXXX) an earlier killed run left in
 * dir: they are never complete and never read. */
static dsq_status sweep_temporaries(const char *dir, dsq_err *err) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return dsq_err_set(err, DSQ_IO, "%s: %s", dir, strerror(errno));
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' && strstr(de->d_name, ".dsqtmp.") != NULL) {
            char *p = dsq_path_join(dir, de->d_name);
            if (p != NULL)
                unlink(p);
            free(p);
        }
    }
    closedir(d);
    return DSQ_OK;
}

/* Copies every regular file of src_dir into dst_dir, recursing into
 * subdirectories; `top` marks the checkpoint directory itself, where the
 * shards, the index, config.json and dsq's manifest are handled elsewhere.
 * Hidden entries (.git, .cache, .gitattributes) are not part of a model. */
static dsq_status copy_other_files(ctx *c, const char *src_dir, const char *dst_dir, int top,
                                   int depth, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DIR *d = NULL;
    char *sp = NULL, *dp = NULL;
    DSQ_CHECK(depth <= MAX_COPY_DEPTH, DSQ_RANGE, err, "%s: directories nested too deep", src_dir);
    d = opendir(src_dir);
    DSQ_CHECK(d != NULL, DSQ_IO, err, "%s: %s", src_dir, strerror(errno));
    for (;;) {
        errno = 0;
        const struct dirent *de = readdir(d);
        if (de == NULL) {
            DSQ_CHECK(errno == 0, DSQ_IO, err, "%s: %s", src_dir, strerror(errno));
            break;
        }
        const char *name = de->d_name;
        if (!dsq_name_is_safe(name, strlen(name)))
            continue;
        if (top && (strcmp(name, DSQ_INDEX_JSON) == 0 || strcmp(name, CONFIG_JSON) == 0 ||
                    strcmp(name, DSQ_MANIFEST_NAME) == 0 || is_shard_name(c, name)))
            continue;
        free(sp);
        free(dp);
        sp = dsq_path_join(src_dir, name);
        dp = dsq_path_join(dst_dir, name);
        DSQ_CHECK(sp && dp, DSQ_NOMEM, err, "out of memory");
        struct stat sb;
        if (stat(sp, &sb) != 0) {
            say(c, DSQ_LOG_WARN, "%s: %s; not copied", sp, strerror(errno));
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            if (sb.st_dev == c->out_dev && sb.st_ino == c->out_ino)
                continue;
            if (!c->o->dry_run) {
                /* a symbolic link in the output is replaced, never written through */
                struct stat lb;
                if (lstat(dp, &lb) == 0 && S_ISLNK(lb.st_mode))
                    DSQ_CHECK(unlink(dp) == 0, DSQ_IO, err, "%s: cannot replace symbolic link: %s",
                              dp, strerror(errno));
                DSQ_TRY(dsq_mkdir(dp, err));
                DSQ_TRY(sweep_temporaries(dp, err));
            }
            DSQ_TRY(copy_other_files(c, sp, dp, 0, depth + 1, err));
        } else if (S_ISREG(sb.st_mode)) {
            if (top && ends_with(name, ".safetensors"))
                say(c, DSQ_LOG_WARN, "%s is not in the index: copied as it is", name);
            if (c->o->dry_run) {
                say(c, DSQ_LOG_INFO, "copy %s (%" PRIu64 " bytes)", sp, (uint64_t)sb.st_size);
                if (c->o->plan != NULL)
                    c->o->plan(c->o->plan_user, dp, sp, (uint64_t)sb.st_size);
            } else
                DSQ_TRY(dsq_copy_file(sp, dst_dir, name, err));
            c->sum->files_copied++;
        }
    }
cleanup:
    free(sp);
    free(dp);
    if (d != NULL)
        closedir(d);
    return st;
}

/* Removes what would make an interrupted run look complete (config.json, the
 * index) and temporaries of earlier killed runs. */
static dsq_status clear_markers(const ctx *c, dsq_err *err) {
    static const char *const markers[] = {CONFIG_JSON, DSQ_INDEX_JSON};
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++) {
        char *p = dsq_path_join(c->out_dir, markers[i]);
        if (p == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
        if (unlink(p) != 0 && errno != ENOENT) {
            const dsq_status st = dsq_err_set(err, DSQ_IO, "%s: %s", p, strerror(errno));
            free(p);
            return st;
        }
        free(p);
    }
    return sweep_temporaries(c->out_dir, err);
}

static dsq_status same_dir(const char *a, const char *b, int *same, dsq_err *err) {
    struct stat sa, sb;
    *same = 0;
    if (stat(a, &sa) != 0)
        return dsq_err_set(err, DSQ_IO, "%s: %s", a, strerror(errno));
    if (stat(b, &sb) != 0)
        return DSQ_OK; /* does not exist yet */
    *same = sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return DSQ_OK;
}

static dsq_status load_old_manifest(ctx *c) {
    char *p = dsq_path_join(c->out_dir, DSQ_MANIFEST_NAME);
    char *text = NULL;
    size_t len = 0;
    dsq_err e2 = {0};
    if (p != NULL && dsq_read_small_file(p, (size_t)64 << 20, &text, &len, &e2) == DSQ_OK) {
        json_error_t jerr;
        c->old_manifest = json_loadb(text, len, 0, &jerr);
        if (c->old_manifest == NULL)
            say(c, DSQ_LOG_WARN, "%s: unreadable (%s); converting every shard", p, jerr.text);
    }
    free(text);
    free(p);
    return DSQ_OK;
}

dsq_status dsq_convert_fp8_bf16(const char *in_dir, const char *out_dir, const dsq_fp8_opts *opts,
                                dsq_fp8_summary *summary, dsq_err *err) {
    dsq_status st = DSQ_OK;
    ctx c;
    dsq_fp8_summary local_sum;
    memset(&c, 0, sizeof c);
    memset(&local_sum, 0, sizeof local_sum);
    c.o = opts;
    c.sum = summary ? summary : &local_sum;
    memset(c.sum, 0, sizeof *c.sum);
    c.in_dir = in_dir;
    c.out_dir = out_dir;
#ifdef _OPENMP
    /* by default one core is left to the writer thread, which is as busy as
     * the converters: write(2) copies every output byte once more */
    c.nthreads = opts->threads > 0 ? opts->threads
                                   : (omp_get_num_procs() > 1 ? omp_get_num_procs() - 1 : 1);
#else
    c.nthreads = 1;
#endif
    c.simd = dsq__fp8_simd_available() && getenv("DSQ_NO_SIMD") == NULL;
    for (int i = 0; i < 256; i++) {
        c.dec_e4m3[i] = dsq_fp8_e4m3_to_f32((uint8_t)i);
        c.dec_e5m2[i] = dsq_fp8_e5m2_to_f32((uint8_t)i);
    }

    DSQ_CHECK(dsq_is_dir(in_dir), DSQ_NOT_FOUND, err, "%s: not a directory", in_dir);
    int same = 0;
    DSQ_TRY(same_dir(in_dir, out_dir, &same, err));
    DSQ_CHECK(!same, DSQ_INVALID_ARG, err, "%s: output directory is the input directory", out_dir);

    /* 1. validate and plan */
    DSQ_TRY(read_config(&c, err));
    DSQ_TRY(dsq_ckpt_open(&c.ck, in_dir, err));
    c.n_plans = dsq_ckpt_shard_count(c.ck);
    c.plans = calloc(c.n_plans ? c.n_plans : 1, sizeof *c.plans);
    DSQ_CHECK(c.plans != NULL, DSQ_NOMEM, err, "out of memory");
    c.sum->shards_planned = c.n_plans;
    int64_t max_cols = 0;
    for (size_t i = 0; i < c.n_plans; i++) {
        DSQ_TRY(plan_shard(&c, i, &c.plans[i], err));
        for (size_t k = 0; k < c.plans[i].n_jobs; k++) {
            const job *j = &c.plans[i].jobs[k];
            if (j->act == ACT_CONVERT && j->src->shape[1] > max_cols)
                max_cols = j->src->shape[1];
        }
    }
    if (c.sum->tensors_converted == 0)
        say(&c, DSQ_LOG_WARN, "%s: no FP8 weights with scales; tensors are copied unchanged",
            in_dir);

    if (opts->dry_run) {
        for (size_t i = 0; i < c.n_plans; i++) {
            const shard_plan *sp = &c.plans[i];
            size_t conv = 0;
            for (size_t k = 0; k < sp->n_jobs; k++)
                conv += sp->jobs[k].act == ACT_CONVERT;
            say(&c, DSQ_LOG_INFO,
                "write %s/%s: %zu tensors (%zu FP8 -> BF16, %zu copied), %" PRIu64 " bytes",
                out_dir, sp->name, sp->n_jobs, conv, sp->n_jobs - conv,
                dsq_st_writer_file_size(sp->w));
            char *src = dsq_path_join(in_dir, sp->name);
            plan_file(&c, sp->name, src, dsq_st_writer_file_size(sp->w));
            free(src);
        }
        DSQ_TRY(copy_other_files(&c, in_dir, out_dir, 1, 0, err));
        if (dsq_ckpt_is_sharded(c.ck)) {
            char *text = NULL;
            size_t len = 0;
            DSQ_TRY(index_text(&c, &text, &len, err));
            free(text);
            say(&c, DSQ_LOG_INFO, "write %s/%s", out_dir, DSQ_INDEX_JSON);
            plan_file(&c, DSQ_INDEX_JSON, NULL, len);
        }
        if (c.config_out != NULL) {
            say(&c, DSQ_LOG_INFO,
                "write %s/%s (without quantization_config, torch_dtype bfloat16)", out_dir,
                CONFIG_JSON);
            char *src = dsq_path_join(in_dir, CONFIG_JSON);
            plan_file(&c, CONFIG_JSON, src, c.config_out_len);
            free(src);
        }
        plan_file(&c, DSQ_MANIFEST_NAME, NULL, DSQ_FP8_SIZE_UNKNOWN);
        goto cleanup;
    }

    /* 2. write: other files first, then shards, the index, config.json last */
    DSQ_TRY(dsq_mkdir(out_dir, err));
    {
        struct stat sb;
        DSQ_CHECK(stat(out_dir, &sb) == 0, DSQ_IO, err, "%s: %s", out_dir, strerror(errno));
        c.out_dev = sb.st_dev;
        c.out_ino = sb.st_ino;
    }
    if (opts->resume)
        DSQ_TRY(load_old_manifest(&c));
    DSQ_TRY(clear_markers(&c, err));
    c.manifest = json_object();
    DSQ_CHECK(c.manifest != NULL, DSQ_NOMEM, err, "out of memory");
    json_object_set_new(c.manifest, "tool", json_string("dsq convert fp8 bf16"));
    json_object_set_new(c.manifest, "shards", json_object());
    DSQ_TRY(copy_other_files(&c, in_dir, out_dir, 1, 0, err));

    size_t bs = opts->buf_size ? opts->buf_size : DEFAULT_BUF;
    if ((uint64_t)max_cols * 2 > bs)
        bs = (size_t)max_cols * 2;
    DSQ_TRY(dsq_wqueue_start(&c.q, N_BUFS, bs, err));
    c.hash = XXH64_createState();
    DSQ_CHECK(c.hash != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < c.n_plans; i++) {
        shard_plan *sp = &c.plans[i];
        if (opts->resume && c.old_manifest != NULL && resume_ok(&c, sp)) {
            /* keep its manifest entry */
            json_t *e = json_object_get(json_object_get(c.old_manifest, "shards"), sp->name);
            json_object_set(json_object_get(c.manifest, "shards"), sp->name, e);
            c.sum->shards_resumed++;
            progress(&c, dsq_st_writer_file_size(sp->w));
            say(&c, DSQ_LOG_INFO, "%s: complete and intact, skipped (--resume)", sp->name);
            continue;
        }
        DSQ_TRY(write_shard(&c, sp, err));
    }
    if (dsq_ckpt_is_sharded(c.ck))
        DSQ_TRY(write_index(&c, err));
    if (c.config_out != NULL)
        DSQ_TRY(dsq_write_file(out_dir, CONFIG_JSON, c.config_out, c.config_out_len, err));
    DSQ_TRY(write_manifest(&c, 1, err));

cleanup:
    dsq_wqueue_stop(c.q);
    if (c.hash != NULL)
        XXH64_freeState(c.hash);
    for (size_t i = 0; i < c.n_plans; i++) {
        dsq_st_writer_free(c.plans[i].w);
        free(c.plans[i].jobs);
    }
    free(c.plans);
    free(c.luts);
    free(c.config_text);
    free(c.config_out);
    json_decref(c.manifest);
    json_decref(c.old_manifest);
    dsq_ckpt_close(c.ck);
    return st;
}
