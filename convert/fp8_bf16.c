/* convert/fp8_bf16.c: the FP8 -> BF16 checkpoint conversion (see fp8_bf16.h).
 *
 * How it stays at disk speed in bounded memory:
 * - For a fixed block scale s, bf16(f32(code) * s) depends only on the 8-bit
 *   code, so each 128 x 128 block needs one 256-entry table (256 products)
 *   and then one table lookup per element (32 at a time with AVX-512BW): the
 *   arithmetic is the reference's, the per-element work is a lookup.
 * - Output is produced in chunks of whole rows into the engine's few small
 *   buffers that its writer thread drains (stream/stream.h), so the
 *   conversion of chunk k+1 overlaps the write(2) of chunk k, and each chunk
 *   is still in cache when it is copied into the page cache.
 * - Input is read with pread into one buffer allocated once (core/rfile.h
 *   says why not a mapping dropped behind the cursor): no page table changes
 *   per chunk, resident memory independent of the shard size. A copied
 *   tensor is read straight into the output buffer.
 * - Each tensor's bytes are hashed as they are read, into its shard's parts
 *   hash: the source identity --resume checks costs no second read. */
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
#ifdef _OPENMP
#include <omp.h>
#endif

#include "quantize/fp8.h"
#include "model/json_edit.h"
#include "model/model_desc.h"
#include "core/checked.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/numeric.h"
#include "core/rfile.h"
#include "formats/st_checkpoint.h"
#include "stream/sink_st.h"
#include "stream/st_identity.h"

#define CONFIG_JSON "config.json"
#define MAX_COPY_DEPTH 8
/* readahead kept this far ahead of a tensor's read cursor (see read_part) */
#define AHEAD ((uint64_t)4 << 20)

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
    uint64_t src_size;
    char *src_path;
    dsq_st_identity id; /* the source shard's, filled as its tensors are read */
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
    dsq_stream *s;
    dsq_rfile in;  /* the source shard being read */
    size_t in_shard;
    char *in_path;
    uint8_t *inbuf; /* FP8 rows of one chunk */
    size_t inbuf_cap;
    dsq_hash *part; /* of the source tensor being read */
    float dec_e4m3[256], dec_e5m2[256];
    uint16_t *luts;
    size_t luts_cap; /* entries */
    int nthreads;
    int simd; /* table lookups with AVX-512BW (same bits as the portable loop) */
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
                DSQ_TRY(dsq_fp8_check_scale(NULL, v, j->scale, c->block_rows, c->block_cols, err));
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
    sp->src_path = dsq_path_join(dsq_ckpt_dir(c->ck), sp->name);
    DSQ_CHECK(sp->src_path != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(dsq_st_identity_init(&sp->id, sh, sp->src_path, sp->name, err));
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

/* ---- reading: pread, hashed into the source identity as it is read ---- */

static dsq_status use_shard(ctx *c, size_t shard, dsq_err *err) {
    if (c->in.fd >= 0 && c->in_shard == shard)
        return DSQ_OK;
    dsq_rfile_close(&c->in);
    free(c->in_path);
    c->in_path = dsq_path_join(dsq_ckpt_dir(c->ck), dsq_ckpt_shard_name(c->ck, shard));
    if (c->in_path == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    c->in_shard = shard;
    const dsq_status st = dsq_rfile_open(&c->in, c->in_path, err);
    if (st == DSQ_OK && c->in.size != c->plans[shard].src_size)
        return dsq_err_set(err, DSQ_FORMAT, "%s: changed size while being converted",
                           c->in_path);
    return st;
}

/* Reads the next n bytes of source tensor j (at byte off of its data) into
 * buf and into its part hash. The kernel's readahead cannot see that this
 * reader jumps between tensors (the output order interleaves the source's
 * dtype groups), so the next AHEAD bytes are asked for explicitly. */
static dsq_status read_part(ctx *c, const dsq_st *sh, const job *j, void *buf, size_t n,
                            uint64_t off, dsq_err *err) {
    const uint64_t base = dsq_st_tensor_offset(sh, j->src_index);
    if (off == 0) {
        dsq_hash_reset(c->part);
        dsq_rfile_willneed(&c->in, base, AHEAD);
    } else if ((off + n) / AHEAD != off / AHEAD) {
        dsq_rfile_willneed(&c->in, base + (off + n) / AHEAD * AHEAD + AHEAD, AHEAD);
    }
    const dsq_status st = dsq_rfile_read(&c->in, buf, n, base + off, err);
    if (st != DSQ_OK)
        return st;
    dsq_hash_update(c->part, buf, n);
    if (off + n == j->src->nbytes)
        dsq_st_identity_tensor(&c->plans[c->in_shard].id, j->src_index, dsq_hash_digest(c->part));
    return DSQ_OK;
}

/* ---- writing: the engine's driver ---- */

static dsq_status copy_tensor(ctx *c, const dsq_st *sh, const job *j, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t bs = dsq_stream_buf_size(c->s);
    for (uint64_t off = 0; off < j->src->nbytes; off += bs) {
        const size_t n = (size_t)(j->src->nbytes - off < bs ? j->src->nbytes - off : bs);
        void *buf;
        DSQ_TRY(dsq_stream_buf(c->s, &buf, err));
        DSQ_TRY(read_part(c, sh, j, buf, n, off, err));
        DSQ_TRY(dsq_stream_put(c->s, buf, n, err));
    }
cleanup:
    return st;
}

static dsq_status convert_tensor(ctx *c, const dsq_st *sh, const job *j, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t M = j->src->shape[0], N = j->src->shape[1];
    const int64_t Bm = c->block_rows, Bn = c->block_cols;
    const int64_t ncb = (N + Bn - 1) / Bn;
    const size_t bs = dsq_stream_buf_size(c->s);
    const float *dec = j->src->dtype == DSQ_DTYPE_F8_E4M3 ? c->dec_e4m3 : c->dec_e5m2;
    const uint8_t *scale = j->scale->data; /* small, read at random: mapped */
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
    if ((size_t)(rows_per_chunk * N) > c->inbuf_cap) {
        free(c->inbuf);
        c->inbuf_cap = (size_t)(rows_per_chunk * N);
        c->inbuf = malloc(c->inbuf_cap);
        DSQ_CHECK(c->inbuf != NULL, DSQ_NOMEM, err, "out of memory for the read buffer");
    }
    uint16_t *luts = c->luts;
    const uint8_t *src = c->inbuf;
    const int nth = c->nthreads;
    (void)nth; /* only read by the OpenMP pragmas */
    const int simd = c->simd;
    for (int64_t r0 = 0; r0 < M; r0 += rows_per_chunk) {
        const int64_t r1 = r0 + rows_per_chunk < M ? r0 + rows_per_chunk : M;
        const int64_t rb0 = r0 / Bm, rb1 = (r1 - 1) / Bm;
        const int64_t n_tables = (rb1 - rb0 + 1) * ncb;
        void *buf;
        DSQ_TRY(read_part(c, sh, j, c->inbuf, (size_t)((r1 - r0) * N), (uint64_t)(r0 * N), err));
        DSQ_TRY(dsq_stream_buf(c->s, &buf, err));
        uint16_t *out = buf;
        /* one table per block: bf16(f32(code) * scale), the reference's arithmetic */
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1 && n_tables > 16)
        for (int64_t t = 0; t < n_tables; t++) {
            const int64_t rb = rb0 + t / ncb, cb = t % ncb;
            dsq__fp8_build_lut(dec, rd_f32(scale + 4 * (rb * ncb + cb)), luts + t * 256);
        }
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1 && (r1 - r0) * N > 65536)
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *in = src + (r - r0) * N;
            uint16_t *o = out + (r - r0) * N;
            dsq_fp8_row_bf16(in, o, N, Bn, luts + (r / Bm - rb0) * ncb * 256, simd);
        }
        DSQ_TRY(dsq_stream_put(c->s, buf, (size_t)((r1 - r0) * N * 2), err));
    }
cleanup:
    return st;
}

static dsq_status produce(void *user, dsq_stream *s, size_t f, size_t id, uint64_t bytes,
                          dsq_err *err) {
    ctx *c = user;
    (void)s;
    (void)bytes; /* the engine checks the count against the layout */
    const shard_plan *sp = &c->plans[f];
    const job *j = &sp->jobs[id];
    const dsq_status st = use_shard(c, sp->shard, err);
    if (st != DSQ_OK)
        return st;
    const dsq_st *sh = dsq_ckpt_shard(c->ck, sp->shard);
    return j->act == ACT_CONVERT ? convert_tensor(c, sh, j, err) : copy_tensor(c, sh, j, err);
}

/* ---- the source identity of an output shard ---- */

/* The source shard's identity (stream/st_identity.h), and the hash of each
 * scale the shard took from another shard: a changed scale there changes
 * this output too. */
static dsq_status add_foreign_scales(ctx *c, const shard_plan *sp, json_t *id, dsq_err *err) {
    char h[17];
    json_t *scales = json_object();
    if (scales == NULL || !json_is_object(id)) {
        json_decref(scales);
        return json_is_null(id) ? DSQ_OK : dsq_err_set(err, DSQ_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < sp->n_jobs; k++) {
        const job *j = &sp->jobs[k];
        size_t shard = 0;
        if (j->scale == NULL || dsq_ckpt_find(c->ck, j->scale->name, &shard, NULL) == NULL ||
            shard == sp->shard)
            continue;
        const uint64_t hs = dsq_hash_buf(j->scale->data, (size_t)j->scale->nbytes);
        json_object_set_new(scales, j->scale->name, json_string(dsq_stream_hex(hs, h)));
    }
    json_object_set_new(id, "scales", scales);
    return DSQ_OK;
}

static dsq_status source_id(void *user, size_t f, json_t **out, dsq_err *err) {
    ctx *c = user;
    dsq_status st = dsq_st_identity_json(&c->plans[f].id, out, err);
    if (st == DSQ_OK && (st = add_foreign_scales(c, &c->plans[f], *out, err)) != DSQ_OK) {
        json_decref(*out);
        *out = NULL;
    }
    return st;
}

/* --resume: the whole source shard is read again, front to back */
static dsq_status source_id_now(void *user, size_t f, json_t **out, dsq_err *err) {
    ctx *c = user;
    dsq_status st = dsq_st_identity_now(&c->plans[f].id, out, err);
    if (st == DSQ_OK && (st = add_foreign_scales(c, &c->plans[f], *out, err)) != DSQ_OK) {
        json_decref(*out);
        *out = NULL;
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
        st = dsq_stream_write_file(c->s, DSQ_INDEX_JSON, text, len, err);
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

/* Copies every regular file of src_dir into dst_dir, recursing into
 * subdirectories; `top` marks the checkpoint directory itself, where the
 * shards, the index, config.json and dsq's manifest are handled elsewhere.
 * Hidden entries (.git, .cache, .gitattributes) are not part of a model. */
static dsq_status copy_other_files(ctx *c, const char *src_dir, const char *dst_dir,
                                   const char *rel_dir, int depth, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DIR *d = NULL;
    char *sp = NULL, *dp = NULL, *rel = NULL;
    const int top = rel_dir[0] == '\0';
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
        free(rel);
        sp = dsq_path_join(src_dir, name);
        dp = dsq_path_join(dst_dir, name);
        rel = top ? strdup(name) : dsq_path_join(rel_dir, name); /* the manifest's name */
        DSQ_CHECK(sp && dp && rel, DSQ_NOMEM, err, "out of memory");
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
                DSQ_TRY(dsq_sweep_temps(dp, NULL, NULL, err));
            }
            DSQ_TRY(copy_other_files(c, sp, dp, rel, depth + 1, err));
        } else if (S_ISREG(sb.st_mode)) {
            if (top && ends_with(name, ".safetensors"))
                say(c, DSQ_LOG_WARN, "%s is not in the index: copied as it is", name);
            if (c->o->dry_run) {
                say(c, DSQ_LOG_INFO, "copy %s (%" PRIu64 " bytes)", sp, (uint64_t)sb.st_size);
                if (c->o->plan != NULL)
                    c->o->plan(c->o->plan_user, dp, sp, (uint64_t)sb.st_size);
            } else {
                DSQ_TRY(dsq_stream_copy_file(c->s, sp, rel, err));
            }
            c->sum->files_copied++;
        }
    }
cleanup:
    free(sp);
    free(dp);
    free(rel);
    if (d != NULL)
        closedir(d);
    return st;
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


static void print_plan(ctx *c) {
    for (size_t i = 0; i < c->n_plans; i++) {
        const shard_plan *sp = &c->plans[i];
        size_t conv = 0;
        for (size_t k = 0; k < sp->n_jobs; k++)
            conv += sp->jobs[k].act == ACT_CONVERT;
        say(c, DSQ_LOG_INFO,
            "write %s/%s: %zu tensors (%zu FP8 -> BF16, %zu copied), %" PRIu64 " bytes",
            c->out_dir, sp->name, sp->n_jobs, conv, sp->n_jobs - conv,
            dsq_st_writer_file_size(sp->w));
        char *src = dsq_path_join(c->in_dir, sp->name);
        plan_file(c, sp->name, src, dsq_st_writer_file_size(sp->w));
        free(src);
    }
}

/* Validates and plans every shard; *max_cols is the widest converted row. */
static dsq_status plan_all(ctx *c, int64_t *max_cols, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DSQ_TRY(read_config(c, err));
    DSQ_TRY(dsq_ckpt_open(&c->ck, c->in_dir, err));
    c->n_plans = dsq_ckpt_shard_count(c->ck);
    c->plans = calloc(c->n_plans ? c->n_plans : 1, sizeof *c->plans);
    DSQ_CHECK(c->plans != NULL, DSQ_NOMEM, err, "out of memory");
    c->sum->shards_planned = c->n_plans;
    *max_cols = 0;
    for (size_t i = 0; i < c->n_plans; i++) {
        DSQ_TRY(plan_shard(c, i, &c->plans[i], err));
        for (size_t k = 0; k < c->plans[i].n_jobs; k++) {
            const job *j = &c->plans[i].jobs[k];
            if (j->act == ACT_CONVERT && j->src->shape[1] > *max_cols)
                *max_cols = j->src->shape[1];
        }
    }
    if (c->sum->tensors_converted == 0)
        say(c, DSQ_LOG_WARN, "%s: no FP8 weights with scales; tensors are copied unchanged",
            c->in_dir);
cleanup:
    return st;
}

/* Other files first, then the shards, the index, config.json last. */
static dsq_status write_all(ctx *c, const dsq_stream_opts *so, int64_t max_cols, dsq_err *err) {
    dsq_status st = DSQ_OK;
    static const char *const markers[] = {CONFIG_JSON, DSQ_INDEX_JSON, NULL};
    dsq_st_writer **writers = malloc((c->n_plans ? c->n_plans : 1) * sizeof *writers);
    const char **names = malloc((c->n_plans ? c->n_plans : 1) * sizeof *names);
    dsq_sink_st sink = {0};
    DSQ_CHECK(writers != NULL && names != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < c->n_plans; i++) {
        writers[i] = c->plans[i].w;
        names[i] = c->plans[i].name;
    }
    DSQ_TRY(dsq_sink_st_init(&sink, c->n_plans, writers, names, err));
    DSQ_TRY(dsq_stream_open(&c->s, so, (size_t)max_cols * 2, markers, err));
    {
        struct stat sb;
        DSQ_CHECK(stat(c->out_dir, &sb) == 0, DSQ_IO, err, "%s: %s", c->out_dir, strerror(errno));
        c->out_dev = sb.st_dev;
        c->out_ino = sb.st_ino;
    }
    dsq_stream_plan(c->s, &sink.sink);
    DSQ_TRY(copy_other_files(c, c->in_dir, c->out_dir, "", 0, err));
    const dsq_stream_driver drv = {c, produce, source_id, source_id_now};
    DSQ_TRY(dsq_stream_run(c->s, &sink.sink, &drv, err));
    if (dsq_ckpt_is_sharded(c->ck))
        DSQ_TRY(write_index(c, err));
    if (c->config_out != NULL)
        DSQ_TRY(dsq_stream_write_file(c->s, CONFIG_JSON, c->config_out, c->config_out_len, err));
    DSQ_TRY(dsq_stream_finish(c->s, err));
    const dsq_stream_stats *ss = dsq_stream_get_stats(c->s);
    c->sum->shards_written = ss->files_written;
    c->sum->shards_resumed = ss->files_resumed;
    c->sum->bytes_written = ss->bytes_written;
cleanup:
    dsq_sink_st_free(&sink);
    free(writers);
    free(names);
    return st;
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
    c.in.fd = -1;
#ifdef _OPENMP
    /* by default one core is left to the writer thread, which is as busy as
     * the converters: write(2) copies every output byte once more */
    c.nthreads = opts->threads > 0 ? opts->threads
                                   : (omp_get_num_procs() > 1 ? omp_get_num_procs() - 1 : 1);
#else
    c.nthreads = 1;
#endif
    c.simd = dsq__fp8_simd_available() && getenv("DSQ_NO_SIMD") == NULL;
    dsq_fp8_table(DSQ_DTYPE_F8_E4M3, c.dec_e4m3);
    dsq_fp8_table(DSQ_DTYPE_F8_E5M2, c.dec_e5m2);
    const dsq_stream_opts so = {.out_dir = out_dir,
                                .tool = "dsq convert fp8 bf16",
                                .resume = opts->resume,
                                .force = opts->force,
                                .buf_size = opts->buf_size,
                                .cancel = opts->cancel,
                                .log = opts->log,
                                .log_user = opts->log_user,
                                .progress = opts->progress,
                                .progress_user = opts->progress_user};

    DSQ_CHECK(dsq_is_dir(in_dir), DSQ_NOT_FOUND, err, "%s: not a directory", in_dir);
    int same = 0;
    DSQ_TRY(same_dir(in_dir, out_dir, &same, err));
    DSQ_CHECK(!same, DSQ_INVALID_ARG, err, "%s: output directory is the input directory", out_dir);
    /* the output can be written, before any weight is read */
    DSQ_TRY(dsq_stream_preflight(&so, err));

    int64_t max_cols = 0;
    DSQ_TRY(plan_all(&c, &max_cols, err));
    if (opts->dry_run) {
        print_plan(&c);
        DSQ_TRY(copy_other_files(&c, in_dir, out_dir, "", 0, err));
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
    c.part = dsq_hash_new();
    DSQ_CHECK(c.part != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(write_all(&c, &so, max_cols, err));

cleanup:
    dsq_stream_free(c.s);
    dsq_rfile_close(&c.in);
    free(c.in_path);
    free(c.inbuf);
    dsq_hash_free(c.part);
    for (size_t i = 0; i < c.n_plans; i++) {
        dsq_st_writer_free(c.plans[i].w);
        free(c.plans[i].jobs);
        dsq_st_identity_free(&c.plans[i].id);
        free(c.plans[i].src_path);
    }
    free(c.plans);
    free(c.luts);
    free(c.config_text);
    free(c.config_out);
    dsq_ckpt_close(c.ck);
    return st;
}
