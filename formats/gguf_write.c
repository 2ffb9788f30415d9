/* formats/gguf_write.c: streaming GGUF v3 writer. Layout: formats/gguf.h.
 *
 * KVs are serialized into a growing buffer as they are added (arrays get a placeholder count
 * that end_arr patches), so nested arrays need no tree. Tensor infos are kept as records;
 * their offsets depend on general.alignment, which may be added after the tensors, so they
 * are computed only when the header is serialized. The header is therefore complete before
 * the first byte of data and the data can be streamed straight through dsq_outfile.
 *
 * The writer refuses anything our reader (or ggml's) would reject: empty, NUL-containing or
 * duplicate keys and names, a non-UINT32 or non-power-of-two general.alignment, more than 4
 * dims, ne[0] not a multiple of the block size, arrays over DSQ_GGUF_MAX_ARRAY elements or
 * nested deeper than DSQ_GGUF_MAX_DEPTH.
 */
#include "formats/gguf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/file.h"

#define ALIGN_KEY "general.alignment"

typedef struct wtensor {
    char      name[DSQ_GGUF_MAX_NAME + 1];
    dsq_dtype dtype;
    int       ggml_type;
    uint32_t  n_dims;
    int64_t   ne[DSQ_GGUF_MAX_DIMS];
    uint64_t  nbytes;
} wtensor;

typedef struct open_arr {
    size_t        count_at; /* where the u64 count goes in kv */
    dsq_gguf_type elem;
    uint64_t      count;
} open_arr;

enum { W_BUILDING, W_WRITING, W_DONE, W_BROKEN };

struct dsq_gguf_writer {
    uint8_t *kv; /* serialized KV section */
    size_t   kv_len, kv_cap;
    int64_t  n_kv;
    size_t  *key_at; /* offset in kv of each top-level key's u64 length */
    size_t   key_cap;

    open_arr stack[DSQ_GGUF_MAX_DEPTH];
    int      depth;
    uint32_t alignment;

    wtensor *t;
    size_t   n_t, t_cap;

    int          state;
    dsq_outfile *f;
    size_t       cur;         /* tensor being streamed */
    uint64_t     cur_written; /* bytes of it written so far */
};

/* ==== byte buffer =========================================================================== */

static dsq_status broken(dsq_gguf_writer *w, dsq_err *err) {
    w->state = W_BROKEN;
    return dsq_err_set(err, DSQ_NOMEM, "gguf writer: out of memory");
}

static dsq_status reserve(dsq_gguf_writer *w, size_t more, dsq_err *err) {
    size_t need;
    if (!dsq_add_size(w->kv_len, more, &need))
        return broken(w, err);
    if (need <= w->kv_cap)
        return DSQ_OK;
    size_t cap = w->kv_cap ? w->kv_cap : 256;
    while (cap < need) {
        if (!dsq_mul_size(cap, 2, &cap))
            return broken(w, err);
    }
    uint8_t *p = realloc(w->kv, cap);
    if (p == NULL)
        return broken(w, err);
    w->kv = p;
    w->kv_cap = cap;
    return DSQ_OK;
}

/* Callers reserve first; these cannot fail. */
static void put(dsq_gguf_writer *w, const void *b, size_t n) {
    if (n > 0)
        memcpy(w->kv + w->kv_len, b, n);
    w->kv_len += n;
}

static void store_le(uint8_t *dst, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(v >> (8 * i));
}

static void put_le(dsq_gguf_writer *w, uint64_t v, size_t n) {
    store_le(w->kv + w->kv_len, v, n);
    w->kv_len += n;
}

/* ==== KVs =================================================================================== */

dsq_status dsq_gguf_writer_init(dsq_gguf_writer **out, dsq_err *err) {
    *out = calloc(1, sizeof **out);
    if (*out == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "gguf writer: out of memory");
    (*out)->alignment = DSQ_GGUF_DEFAULT_ALIGNMENT;
    return DSQ_OK;
}

void dsq_gguf_writer_free(dsq_gguf_writer *w) {
    if (w == NULL)
        return;
    dsq_outfile_abort(w->f);
    free(w->kv);
    free(w->key_at);
    free(w->t);
    free(w);
}

static dsq_status check_state(const dsq_gguf_writer *w, dsq_err *err) {
    if (w->state == W_BUILDING)
        return DSQ_OK;
    return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: %s",
                       w->state == W_BROKEN ? "unusable after an earlier out-of-memory error"
                                            : "header already written, cannot add more");
}

static int key_used(const dsq_gguf_writer *w, const char *key, size_t len) {
    for (int64_t i = 0; i < w->n_kv; i++) {
        const uint8_t *at = w->kv + w->key_at[i];
        uint64_t n = 0;
        for (int b = 0; b < 8; b++)
            n |= (uint64_t)at[b] << (8 * b);
        if (n == len && memcmp(at + 8, key, len) == 0)
            return 1;
    }
    return 0;
}

/* Everything before the value of one item: at top level the key and its type, inside an
 * array nothing (but the element type must match). `extra` = bytes of the value that the
 * caller will put; reserved here together with the prefix so that no later step can fail. */
static dsq_status begin_item(dsq_gguf_writer *w, const char *key, dsq_gguf_type type,
                             size_t extra, dsq_err *err) {
    dsq_status st = check_state(w, err);
    if (st != DSQ_OK)
        return st;
    if (w->depth > 0) {
        open_arr *a = &w->stack[w->depth - 1];
        if (key != NULL)
            return dsq_err_set(err, DSQ_INVALID_ARG,
                               "gguf writer: key '%s' given for an array element", key);
        if (type != a->elem)
            return dsq_err_set(err, DSQ_INVALID_ARG,
                               "gguf writer: %s element added to an array of %s",
                               dsq_gguf_type_name(type), dsq_gguf_type_name(a->elem));
        if (a->count >= DSQ_GGUF_MAX_ARRAY)
            return dsq_err_set(err, DSQ_INVALID_ARG,
                               "gguf writer: array longer than %" PRIu64 " elements",
                               DSQ_GGUF_MAX_ARRAY);
        if ((st = reserve(w, extra, err)) != DSQ_OK)
            return st;
        a->count++;
        return DSQ_OK;
    }
    if (key == NULL || key[0] == '\0')
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: empty or missing key");
    const size_t len = strlen(key);
    if (key_used(w, key, len))
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: duplicate key '%s'", key);
    if (strcmp(key, ALIGN_KEY) == 0 && type != DSQ_GGUF_UINT32)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: %s must be UINT32, not %s",
                           ALIGN_KEY, dsq_gguf_type_name(type));
    size_t need = 8 + len + 4;
    if (!dsq_add_size(need, extra, &need))
        return broken(w, err);
    if ((size_t)w->n_kv >= w->key_cap) {
        const size_t cap = w->key_cap ? w->key_cap * 2 : 32;
        size_t *k = realloc(w->key_at, cap * sizeof *k);
        if (k == NULL)
            return broken(w, err);
        w->key_at = k;
        w->key_cap = cap;
    }
    if ((st = reserve(w, need, err)) != DSQ_OK)
        return st;
    w->key_at[w->n_kv++] = w->kv_len;
    put_le(w, len, 8);
    put(w, key, len);
    put_le(w, (uint64_t)type, 4);
    return DSQ_OK;
}

static dsq_status add_fixed(dsq_gguf_writer *w, const char *key, dsq_gguf_type type, uint64_t bits,
                            dsq_err *err) {
    const size_t size = dsq_gguf_type_size(type);
    if (w->depth == 0 && key != NULL && strcmp(key, ALIGN_KEY) == 0 && type == DSQ_GGUF_UINT32) {
        const uint32_t a = (uint32_t)bits;
        if (a == 0 || (a & (a - 1)) != 0)
            return dsq_err_set(err, DSQ_INVALID_ARG,
                               "gguf writer: %s = %" PRIu32 " is not a non-zero power of two",
                               ALIGN_KEY, a);
        const dsq_status st = begin_item(w, key, type, size, err);
        if (st == DSQ_OK) {
            put_le(w, bits, size);
            w->alignment = a;
        }
        return st;
    }
    const dsq_status st = begin_item(w, key, type, size, err);
    if (st == DSQ_OK)
        put_le(w, bits, size);
    return st;
}

static uint32_t f32_bits(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}
static uint64_t f64_bits(double f) {
    uint64_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

dsq_status dsq_gguf_writer_add_u8(dsq_gguf_writer *w, const char *key, uint8_t v, dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_UINT8, v, err);
}
dsq_status dsq_gguf_writer_add_i8(dsq_gguf_writer *w, const char *key, int8_t v, dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_INT8, (uint8_t)v, err);
}
dsq_status dsq_gguf_writer_add_u16(dsq_gguf_writer *w, const char *key, uint16_t v,
                                   dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_UINT16, v, err);
}
dsq_status dsq_gguf_writer_add_i16(dsq_gguf_writer *w, const char *key, int16_t v, dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_INT16, (uint16_t)v, err);
}
dsq_status dsq_gguf_writer_add_u32(dsq_gguf_writer *w, const char *key, uint32_t v,
                                   dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_UINT32, v, err);
}
dsq_status dsq_gguf_writer_add_i32(dsq_gguf_writer *w, const char *key, int32_t v, dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_INT32, (uint32_t)v, err);
}
dsq_status dsq_gguf_writer_add_u64(dsq_gguf_writer *w, const char *key, uint64_t v,
                                   dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_UINT64, v, err);
}
dsq_status dsq_gguf_writer_add_i64(dsq_gguf_writer *w, const char *key, int64_t v, dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_INT64, (uint64_t)v, err);
}
dsq_status dsq_gguf_writer_add_f32(dsq_gguf_writer *w, const char *key, float v, dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_FLOAT32, f32_bits(v), err);
}
dsq_status dsq_gguf_writer_add_f64(dsq_gguf_writer *w, const char *key, double v, dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_FLOAT64, f64_bits(v), err);
}
dsq_status dsq_gguf_writer_add_bool(dsq_gguf_writer *w, const char *key, bool v, dsq_err *err) {
    return add_fixed(w, key, DSQ_GGUF_BOOL, v ? 1 : 0, err);
}

dsq_status dsq_gguf_writer_add_str(dsq_gguf_writer *w, const char *key, const char *s, size_t len,
                                   dsq_err *err) {
    if (len > DSQ_GGUF_MAX_STRING)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: string of %zu bytes exceeds %"
                           PRIu64, len, DSQ_GGUF_MAX_STRING);
    const dsq_status st = begin_item(w, key, DSQ_GGUF_STRING, 8 + len, err);
    if (st == DSQ_OK) {
        put_le(w, len, 8);
        put(w, s, len);
    }
    return st;
}

dsq_status dsq_gguf_writer_begin_arr(dsq_gguf_writer *w, const char *key, dsq_gguf_type elem_type,
                                     dsq_err *err) {
    if ((unsigned)elem_type >= DSQ_GGUF_TYPE_COUNT)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: invalid array element type %d",
                           (int)elem_type);
    if (w->depth >= DSQ_GGUF_MAX_DEPTH)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: arrays nested deeper than %d",
                           DSQ_GGUF_MAX_DEPTH);
    const dsq_status st = begin_item(w, key, DSQ_GGUF_ARRAY, 12, err);
    if (st != DSQ_OK)
        return st;
    put_le(w, (uint64_t)elem_type, 4);
    w->stack[w->depth++] = (open_arr){w->kv_len, elem_type, 0};
    put_le(w, 0, 8); /* count, patched by end_arr */
    return DSQ_OK;
}

dsq_status dsq_gguf_writer_end_arr(dsq_gguf_writer *w, dsq_err *err) {
    const dsq_status st = check_state(w, err);
    if (st != DSQ_OK)
        return st;
    if (w->depth == 0)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: end_arr without begin_arr");
    const open_arr *a = &w->stack[--w->depth];
    store_le(w->kv + a->count_at, a->count, 8);
    return DSQ_OK;
}

dsq_status dsq_gguf_writer_add_arr(dsq_gguf_writer *w, const char *key, dsq_gguf_type elem_type,
                                   const void *data, uint64_t n, dsq_err *err) {
    const size_t size = dsq_gguf_type_size(elem_type);
    if (size == 0)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "gguf writer: add_arr needs a fixed-size element type, not %s",
                           dsq_gguf_type_name(elem_type));
    if (n > DSQ_GGUF_MAX_ARRAY)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "gguf writer: array of %" PRIu64 " elements exceeds %" PRIu64, n,
                           DSQ_GGUF_MAX_ARRAY);
    dsq_status st = dsq_gguf_writer_begin_arr(w, key, elem_type, err);
    if (st != DSQ_OK)
        return st;
    if ((st = reserve(w, (size_t)n * size, err)) != DSQ_OK) /* n <= 2^30, size <= 8 */
        return st;
    const uint8_t *src = data;
    for (uint64_t i = 0; i < n; i++, src += size) {
        uint64_t v = 0;
        switch (size) {
            case 1: v = elem_type == DSQ_GGUF_BOOL ? (src[0] != 0) : src[0]; break;
            case 2: { uint16_t x; memcpy(&x, src, 2); v = x; } break;
            case 4: { uint32_t x; memcpy(&x, src, 4); v = x; } break;
            default: { uint64_t x; memcpy(&x, src, 8); v = x; } break;
        }
        put_le(w, v, size); /* host order in, little-endian out */
    }
    w->stack[w->depth - 1].count = n;
    return dsq_gguf_writer_end_arr(w, err);
}

dsq_status dsq_gguf_writer_add_arr_str(dsq_gguf_writer *w, const char *key,
                                       const char *const *strs, const size_t *lens, uint64_t n,
                                       dsq_err *err) {
    dsq_status st = dsq_gguf_writer_begin_arr(w, key, DSQ_GGUF_STRING, err);
    if (st != DSQ_OK)
        return st;
    for (uint64_t i = 0; st == DSQ_OK && i < n; i++)
        st = dsq_gguf_writer_add_str(w, NULL, strs[i], lens ? lens[i] : strlen(strs[i]), err);
    if (st != DSQ_OK) {
        /* the bytes are consistent but the caller meant one KV: do not leave half of it */
        w->state = W_BROKEN;
        return st;
    }
    return dsq_gguf_writer_end_arr(w, err);
}

static dsq_status add_val(dsq_gguf_writer *w, const char *key, const dsq_gguf_val *v,
                          dsq_err *err) {
    dsq_status st = DSQ_OK;
    const size_t size = dsq_gguf_type_size(v->type);
    if (v->type == DSQ_GGUF_STRING)
        return dsq_gguf_writer_add_str(w, key, (const char *)v->data, (size_t)v->n, err);
    if (v->type != DSQ_GGUF_ARRAY) {
        if (size == 0)
            return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: invalid value type %d",
                               (int)v->type);
        uint64_t bits = 0;
        for (size_t b = 0; b < size; b++) /* the reader's bytes are little-endian already */
            bits |= (uint64_t)v->data[b] << (8 * b);
        if (v->type == DSQ_GGUF_BOOL)
            bits = bits != 0;
        return add_fixed(w, key, v->type, bits, err);
    }
    if ((st = dsq_gguf_writer_begin_arr(w, key, v->elem_type, err)) != DSQ_OK)
        return st;
    for (uint64_t i = 0; i < v->n; i++) {
        dsq_gguf_val e;
        if ((st = dsq_gguf_val_at(v, i, &e, err)) != DSQ_OK || (st = add_val(w, NULL, &e, err)))
            return st;
    }
    return dsq_gguf_writer_end_arr(w, err);
}

dsq_status dsq_gguf_writer_add_val(dsq_gguf_writer *w, const char *key, const dsq_gguf_val *v,
                                   dsq_err *err) {
    const int depth = w->depth;
    const dsq_status st = add_val(w, key, v, err);
    if (st != DSQ_OK && w->depth != depth)
        w->state = W_BROKEN; /* failed inside the copy of an array: the KV is half written */
    return st;
}

/* ==== tensors and header ==================================================================== */

dsq_status dsq_gguf_writer_add_tensor(dsq_gguf_writer *w, const char *name, dsq_dtype dtype,
                                      uint32_t n_dims, const int64_t *ne, dsq_err *err) {
    dsq_status st = check_state(w, err);
    if (st != DSQ_OK)
        return st;
    const size_t len = name ? strnlen(name, DSQ_GGUF_MAX_NAME + 1) : 0;
    if (len == 0 || len > DSQ_GGUF_MAX_NAME)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "gguf writer: tensor name '%.80s' must be 1..%d bytes",
                           name ? name : "", DSQ_GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0)
            return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: duplicate tensor name '%s'",
                               name);
    }
    const dsq_dtype_info *di = dsq_dtype_get(dtype);
    if (di == NULL || di->ggml_id < 0)
        return dsq_err_set(err, DSQ_UNSUPPORTED, "gguf writer: tensor '%s': dtype %s has no "
                           "ggml type", name, dsq_dtype_name(dtype));
    if (n_dims > DSQ_GGUF_MAX_DIMS)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: tensor '%s': n_dims %" PRIu32
                           " > %d", name, n_dims, DSQ_GGUF_MAX_DIMS);
    wtensor t;
    memset(&t, 0, sizeof t);
    memcpy(t.name, name, len);
    t.dtype = dtype;
    t.ggml_type = di->ggml_id;
    t.n_dims = n_dims;
    for (int d = 0; d < DSQ_GGUF_MAX_DIMS; d++)
        t.ne[d] = (uint32_t)d < n_dims ? ne[d] : 1;
    uint64_t nel;
    if (!dsq_nelements(t.ne, DSQ_GGUF_MAX_DIMS, &nel) || nel > (uint64_t)INT64_MAX)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: tensor '%s': dimensions negative "
                           "or their product over INT64_MAX", name);
    if ((uint64_t)t.ne[0] % di->block_size != 0)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: tensor '%s' (%s): ne[0] = %"
                           PRId64 " is not a multiple of the block size %" PRIu32, name,
                           di->name, t.ne[0], di->block_size);
    int ok;
    t.nbytes = dsq_dtype_nbytes(dtype, nel, &ok);
    if (!ok)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: tensor '%s': byte size overflows",
                           name);
    if (w->n_t == w->t_cap) {
        const size_t cap = w->t_cap ? w->t_cap * 2 : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (p == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "gguf writer: out of memory");
        w->t = p;
        w->t_cap = cap;
    }
    w->t[w->n_t++] = t;
    return DSQ_OK;
}

static int pad_to(uint64_t x, uint32_t a, uint64_t *out) {
    uint64_t t;
    if (!dsq_add_u64(x, a - 1, &t))
        return 0;
    *out = t & ~(uint64_t)(a - 1);
    return 1;
}

/* Offsets as ggml lays them out: each tensor starts at the padded end of the previous one.
 * *total is the size of the whole data section, the last tensor's padding included. */
static dsq_status data_layout(const dsq_gguf_writer *w, uint64_t *offsets, uint64_t *total,
                              dsq_err *err) {
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        uint64_t padded;
        if (offsets)
            offsets[i] = off;
        if (!pad_to(w->t[i].nbytes, w->alignment, &padded) || !dsq_add_u64(off, padded, &off))
            return dsq_err_set(err, DSQ_RANGE, "gguf writer: tensor data size overflows");
    }
    *total = off;
    return DSQ_OK;
}

static size_t header_len(const dsq_gguf_writer *w) {
    size_t n = 24 + w->kv_len;
    for (size_t i = 0; i < w->n_t; i++)
        n += 8 + strlen(w->t[i].name) + 4 + 8 * (size_t)w->t[i].n_dims + 4 + 8;
    return n;
}

dsq_status dsq_gguf_writer_header(const dsq_gguf_writer *w, uint8_t **out, size_t *len,
                                  dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint64_t *offsets = NULL;
    uint8_t *buf = NULL;
    uint64_t total, padded_len;
    *out = NULL;
    *len = 0;
    DSQ_CHECK(w->depth == 0, DSQ_INVALID_ARG, err, "gguf writer: %d array(s) still open",
              w->depth);
    DSQ_CHECK(w->state != W_BROKEN, DSQ_INVALID_ARG, err,
              "gguf writer: unusable after an earlier error");
    offsets = malloc((w->n_t ? w->n_t : 1) * sizeof *offsets);
    DSQ_CHECK(offsets != NULL, DSQ_NOMEM, err, "gguf writer: out of memory");
    DSQ_TRY(data_layout(w, offsets, &total, err));
    const size_t hlen = header_len(w);
    padded_len = hlen;
    if (w->n_t > 0) /* ggml pads the header only when there is a data section */
        DSQ_CHECK(pad_to(hlen, w->alignment, &padded_len) && padded_len <= SIZE_MAX, DSQ_RANGE,
                  err, "gguf writer: header too large");
    buf = calloc(1, (size_t)padded_len);
    DSQ_CHECK(buf != NULL, DSQ_NOMEM, err, "gguf writer: out of memory");
    uint8_t *p = buf;
    store_le(p, DSQ_GGUF_MAGIC, 4);
    store_le(p + 4, DSQ_GGUF_VERSION, 4);
    store_le(p + 8, w->n_t, 8);
    store_le(p + 16, (uint64_t)w->n_kv, 8);
    p += 24;
    if (w->kv_len > 0)
        memcpy(p, w->kv, w->kv_len);
    p += w->kv_len;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        const size_t nl = strlen(t->name);
        store_le(p, nl, 8);
        memcpy(p + 8, t->name, nl);
        p += 8 + nl;
        store_le(p, t->n_dims, 4);
        p += 4;
        for (uint32_t d = 0; d < t->n_dims; d++, p += 8)
            store_le(p, (uint64_t)t->ne[d], 8);
        store_le(p, (uint64_t)t->ggml_type, 4);
        store_le(p + 4, offsets[i], 8);
        p += 12;
    }
    *out = buf;
    *len = (size_t)padded_len;
    buf = NULL;
cleanup:
    free(buf);
    free(offsets);
    return st;
}

dsq_status dsq_gguf_writer_file_size(const dsq_gguf_writer *w, uint64_t *out, dsq_err *err) {
    uint64_t total, hlen = header_len(w);
    const dsq_status st = data_layout(w, NULL, &total, err);
    if (st != DSQ_OK)
        return st;
    if (w->n_t > 0 && (!pad_to(hlen, w->alignment, &hlen) || !dsq_add_u64(hlen, total, &hlen)))
        return dsq_err_set(err, DSQ_RANGE, "gguf writer: file size overflows");
    *out = hlen;
    return DSQ_OK;
}

/* ==== streaming ============================================================================= */

static dsq_status write_zeros(dsq_gguf_writer *w, uint64_t n, dsq_err *err) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        const size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        const dsq_status st = dsq_outfile_write(w->f, zeros, k, err);
        if (st != DSQ_OK)
            return st;
        n -= k;
    }
    return DSQ_OK;
}

/* Pads and moves past every finished tensor (zero-byte ones included). */
static dsq_status advance(dsq_gguf_writer *w, dsq_err *err) {
    while (w->cur < w->n_t && w->cur_written == w->t[w->cur].nbytes) {
        const uint64_t nb = w->t[w->cur].nbytes;
        const uint64_t padding = (w->alignment - nb % w->alignment) % w->alignment;
        const dsq_status st = write_zeros(w, padding, err);
        if (st != DSQ_OK)
            return st;
        w->cur++;
        w->cur_written = 0;
    }
    return DSQ_OK;
}

static dsq_status fail_stream(dsq_gguf_writer *w, dsq_status st) {
    dsq_outfile_abort(w->f);
    w->f = NULL;
    w->state = W_BROKEN;
    return st;
}

dsq_status dsq_gguf_writer_begin(dsq_gguf_writer *w, const char *dir, const char *name,
                                 dsq_err *err) {
    dsq_status st = check_state(w, err);
    uint8_t *hdr = NULL;
    size_t hlen;
    if (st != DSQ_OK)
        return st;
    if ((st = dsq_gguf_writer_header(w, &hdr, &hlen, err)) != DSQ_OK)
        return st;
    if ((st = dsq_outfile_open(&w->f, dir, name, err)) == DSQ_OK) {
        /* nothing reads a GGUF file's running hash: skip hashing every byte (1% of a
         * `dsq quantize` run, on the thread that writes) */
        dsq_outfile_no_hash(w->f);
        w->state = W_WRITING;
        w->cur = 0;
        w->cur_written = 0;
        st = dsq_outfile_write(w->f, hdr, hlen, err);
        if (st == DSQ_OK)
            st = advance(w, err);
        if (st != DSQ_OK)
            fail_stream(w, st);
    }
    free(hdr);
    return st;
}

dsq_status dsq_gguf_writer_write(dsq_gguf_writer *w, const void *buf, size_t n, dsq_err *err) {
    dsq_status st = DSQ_OK;
    if (w->state != W_WRITING)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: write before begin or after an "
                           "error or commit");
    if (n == 0)
        return DSQ_OK;
    if (w->cur >= w->n_t)
        return fail_stream(w, dsq_err_set(err, DSQ_INVALID_ARG,
                                          "gguf writer: %zu bytes of data after the last tensor",
                                          n));
    const wtensor *t = &w->t[w->cur];
    if (n > t->nbytes - w->cur_written)
        return fail_stream(w, dsq_err_set(err, DSQ_INVALID_ARG,
                                          "gguf writer: tensor '%s': %zu bytes given, only %"
                                          PRIu64 " left of its %" PRIu64,
                                          t->name, n, t->nbytes - w->cur_written, t->nbytes));
    if ((st = dsq_outfile_write(w->f, buf, n, err)) != DSQ_OK)
        return fail_stream(w, st);
    w->cur_written += n;
    if ((st = advance(w, err)) != DSQ_OK)
        return fail_stream(w, st);
    return DSQ_OK;
}

dsq_status dsq_gguf_writer_commit(dsq_gguf_writer *w, dsq_err *err) {
    dsq_status st = DSQ_OK;
    uint64_t size = 0;
    if (w->state != W_WRITING)
        return dsq_err_set(err, DSQ_INVALID_ARG, "gguf writer: commit before begin or after an "
                           "error or commit");
    if (w->cur < w->n_t) {
        const wtensor *t = &w->t[w->cur];
        return fail_stream(w, dsq_err_set(err, DSQ_INVALID_ARG,
                                          "gguf writer: tensor '%s' got %" PRIu64 " of its %"
                                          PRIu64 " bytes (%zu tensors unwritten)",
                                          t->name, w->cur_written, t->nbytes, w->n_t - w->cur));
    }
    if ((st = dsq_gguf_writer_file_size(w, &size, err)) != DSQ_OK)
        return fail_stream(w, st);
    if (dsq_outfile_written(w->f) != size)
        return fail_stream(w, dsq_err_set(err, DSQ_INVALID_ARG,
                                          "gguf writer: wrote %" PRIu64 " bytes, expected %"
                                          PRIu64, dsq_outfile_written(w->f), size));
    dsq_outfile *f = w->f;
    w->f = NULL;
    st = dsq_outfile_commit(f, err); /* frees f either way */
    w->state = st == DSQ_OK ? W_DONE : W_BROKEN;
    return st;
}
