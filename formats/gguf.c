/* formats/gguf.c: GGUF v3 reader. Byte layout and the checks we enforce: formats/gguf.h.
 *
 * One parser, parse_buffer(), serves both entry points: dsq_gguf_open maps the file and hands
 * the map to it, dsq_gguf_parse hands it a caller's buffer, so the fuzzer runs the production
 * path. Nothing is copied except keys and tensor names (NUL-terminated copies, so callers can
 * strcmp them); values and tensor data are views into the bytes.
 *
 * Every count or length read from the file is checked against the bytes that are left
 * *before* it sizes an allocation or moves the cursor: a count of 2^62 fails on arithmetic
 * alone. Allocations are therefore bounded by a small multiple of the input size.
 */
#include "formats/gguf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/file.h"
#include "core/le.h"

/* The smallest encodings, used to bound counts before allocating for them:
 * a KV is key length (8) + a 1-byte key + type (4) + a 1-byte value;
 * a tensor info is name length (8) + a 1-byte name + n_dims (4) + type (4) + offset (8). */
#define MIN_KV_BYTES     14u
#define MIN_TINFO_BYTES  25u
#define MIN_ARRAY_BYTES  12u /* an array as an element: type (4) + count (8) */
#define MIN_STRING_BYTES 8u

/* ==== small helpers ======================================================================== */

static const char *const type_names[DSQ_GGUF_TYPE_COUNT] = {
    "UINT8", "INT8",  "UINT16", "INT16",  "UINT32", "INT32",   "FLOAT32",
    "BOOL",  "STRING", "ARRAY", "UINT64", "INT64",  "FLOAT64",
};

static const uint8_t type_sizes[DSQ_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *dsq_gguf_type_name(dsq_gguf_type t) {
    return (unsigned)t < DSQ_GGUF_TYPE_COUNT ? type_names[t] : "?";
}

size_t dsq_gguf_type_size(dsq_gguf_type t) {
    return (unsigned)t < DSQ_GGUF_TYPE_COUNT ? type_sizes[t] : 0;
}


/* A key or name from the file, made safe to print in a one-line message: at most 48 bytes,
 * anything outside printable ASCII (and the quote) shown as '?'. */
typedef struct shown {
    char s[56];
} shown;

static shown show(const uint8_t *s, uint64_t len) {
    shown o;
    const size_t max = 48;
    size_t k = 0;
    for (; k < len && k < max; k++)
        o.s[k] = (s[k] >= 0x20 && s[k] < 0x7f && s[k] != '\'') ? (char)s[k] : '?';
    if (len > max) {
        memcpy(o.s + k, "...", 3);
        k += 3;
    }
    o.s[k] = '\0';
    return o;
}

/* ==== the handle ============================================================================ */

/* One metadata value. Arrays of STRING keep a pointer to each element's length field so that
 * element i is O(1); arrays of ARRAY keep one node per element. */
typedef struct node {
    dsq_gguf_type   type;
    dsq_gguf_type   elem_type;
    uint64_t        n;
    const uint8_t  *data;
    const uint8_t **elems; /* STRING arrays: n pointers to u64 length + bytes */
    struct node    *kids;  /* ARRAY arrays: n nodes */
} node;

typedef struct kv {
    const uint8_t *key_raw; /* into the buffer */
    uint64_t       key_len;
    const char    *key;     /* NUL-terminated copy in g->key_arena */
    uint64_t       off;     /* byte offset of the KV in the file, for messages */
    node           val;
} kv;

typedef struct tinfo {
    char            name[DSQ_GGUF_MAX_NAME + 1];
    uint64_t        off; /* byte offset of the tensor info, for messages */
    dsq_gguf_tensor view;
} tinfo;

struct dsq_gguf {
    dsq_map        map; /* zeroed unless opened from a path */
    const uint8_t *p;
    size_t         n;
    char          *label; /* the path, or "<buffer>" */
    uint32_t       version;
    uint32_t       alignment;
    uint64_t       data_offset;
    int64_t        n_kv;
    kv            *kvs;
    int64_t        n_tensors;
    tinfo         *tensors;
    char          *key_arena;
    /* open-addressing hash tables of indices (-1 = empty), capacity a power of two */
    int64_t       *kv_hash;
    size_t         kv_cap;
    int64_t       *t_hash;
    size_t         t_cap;
};

static void node_free(node *nd) {
    if (nd->kids != NULL) {
        for (uint64_t i = 0; i < nd->n; i++)
            node_free(&nd->kids[i]);
    }
    free(nd->kids);
    free(nd->elems);
    nd->kids = NULL;
    nd->elems = NULL;
}

void dsq_gguf_close(dsq_gguf *g) {
    if (g == NULL)
        return;
    if (g->kvs != NULL) {
        for (int64_t i = 0; i < g->n_kv; i++)
            node_free(&g->kvs[i].val);
    }
    free(g->kvs);
    free(g->tensors);
    free(g->key_arena);
    free(g->kv_hash);
    free(g->t_hash);
    free(g->label);
    dsq_map_close(&g->map);
    free(g);
}

static uint64_t fnv1a(const void *s, size_t len) {
    const uint8_t *b = s;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Smallest power of two >= 2n (load factor <= 1/2), at least 8. n is bounded by the input
 * size divided by at least 14, so this cannot overflow. */
static size_t hash_cap(int64_t n) {
    size_t cap = 8;
    while (cap < (size_t)n * 2)
        cap <<= 1;
    return cap;
}

static int64_t *hash_new(size_t cap) {
    int64_t *h = malloc(cap * sizeof *h);
    if (h != NULL)
        memset(h, 0xff, cap * sizeof *h); /* all -1 */
    return h;
}

/* Finds key (len bytes) in the KV table; returns its index or -1, and in *slot the slot where
 * it is or would go. */
static int64_t kv_lookup(const dsq_gguf *g, const void *key, size_t len, size_t *slot) {
    size_t i = (size_t)fnv1a(key, len) & (g->kv_cap - 1);
    for (;; i = (i + 1) & (g->kv_cap - 1)) {
        const int64_t idx = g->kv_hash[i];
        if (idx < 0)
            break;
        const kv *e = &g->kvs[idx];
        if (e->key_len == len && memcmp(e->key_raw, key, len) == 0) {
            if (slot)
                *slot = i;
            return idx;
        }
    }
    if (slot)
        *slot = i;
    return -1;
}

static int64_t tensor_lookup(const dsq_gguf *g, const char *name, size_t len, size_t *slot) {
    size_t i = (size_t)fnv1a(name, len) & (g->t_cap - 1);
    for (;; i = (i + 1) & (g->t_cap - 1)) {
        const int64_t idx = g->t_hash[i];
        if (idx < 0)
            break;
        const char *other = g->tensors[idx].name;
        if (strlen(other) == len && memcmp(other, name, len) == 0) {
            if (slot)
                *slot = i;
            return idx;
        }
    }
    if (slot)
        *slot = i;
    return -1;
}

/* ==== the parser ============================================================================ */

typedef struct reader {
    const uint8_t *p;
    size_t         n;
    size_t         pos;
    const char    *label;
    dsq_err       *err;
} reader;

static dsq_status fail(const reader *r, dsq_status code, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static dsq_status fail(const reader *r, dsq_status code, uint64_t off, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dsq_err_set(r->err, code, "%s: byte %" PRIu64 ": %s", r->label, off, msg);
}

static size_t left(const reader *r) {
    return r->n - r->pos;
}

/* Reads a fixed-size field; `what` names it in the truncation message. */
static dsq_status take(reader *r, size_t k, const uint8_t **at, const char *what) {
    if (left(r) < k)
        return fail(r, DSQ_FORMAT, r->pos, "truncated: %s needs %zu bytes, only %zu left", what,
                    k, left(r));
    *at = r->p + r->pos;
    r->pos += k;
    return DSQ_OK;
}

static dsq_status take_u32(reader *r, uint32_t *v, const char *what) {
    const uint8_t *at = NULL;
    const dsq_status st = take(r, 4, &at, what);
    if (st == DSQ_OK)
        *v = dsq_le_u32(at);
    return st;
}

static dsq_status take_u64(reader *r, uint64_t *v, const char *what) {
    const uint8_t *at = NULL;
    const dsq_status st = take(r, 8, &at, what);
    if (st == DSQ_OK)
        *v = dsq_le_u64(at);
    return st;
}

/* A gguf string: u64 length then the bytes, checked against what is left. `ctx` is a prefix
 * for messages ("key 'x': "). */
static dsq_status take_string(reader *r, const uint8_t **s, uint64_t *len, const char *what,
                              const char *ctx) {
    const uint64_t at = r->pos;
    dsq_status st = take_u64(r, len, what);
    if (st != DSQ_OK)
        return st;
    if (*len > left(r))
        return fail(r, DSQ_FORMAT, at, "%s%s length %" PRIu64 " runs past the end (%zu bytes left)",
                    ctx, what, *len, left(r));
    if (*len > DSQ_GGUF_MAX_STRING)
        return fail(r, DSQ_FORMAT, at, "%s%s length %" PRIu64 " exceeds the limit of %" PRIu64,
                    ctx, what, *len, DSQ_GGUF_MAX_STRING);
    *s = r->p + r->pos;
    r->pos += (size_t)*len;
    return DSQ_OK;
}

/* Parses one value of type `type` into nd. depth = array nesting level of this value's
 * container (0 for a KV's own value). */
static dsq_status parse_value(reader *r, node *nd, dsq_gguf_type type, int depth,
                              const char *key) {
    dsq_status st = DSQ_OK;
    char ctx[80];
    snprintf(ctx, sizeof ctx, "key '%s': ", key);
    nd->type = type;
    nd->elem_type = type;
    nd->n = 1;
    if (type == DSQ_GGUF_STRING)
        return take_string(r, &nd->data, &nd->n, "string", ctx);
    if (type != DSQ_GGUF_ARRAY) {
        char what[96];
        snprintf(what, sizeof what, "%s value of key '%s'", type_names[type], key);
        return take(r, type_sizes[type], &nd->data, what);
    }

    /* ARRAY: element type, count, elements */
    const uint64_t at = r->pos;
    if (depth + 1 > DSQ_GGUF_MAX_DEPTH)
        return fail(r, DSQ_FORMAT, at, "key '%s': arrays nested deeper than %d levels", key,
                    DSQ_GGUF_MAX_DEPTH);
    uint32_t et;
    uint64_t count;
    if ((st = take_u32(r, &et, "array element type")) != DSQ_OK)
        return st;
    if (et >= DSQ_GGUF_TYPE_COUNT)
        return fail(r, DSQ_FORMAT, at, "key '%s': invalid array element type %" PRId32, key,
                    (int32_t)et);
    if ((st = take_u64(r, &count, "array count")) != DSQ_OK)
        return st;
    nd->elem_type = (dsq_gguf_type)et;
    const uint64_t min_elem = et == DSQ_GGUF_STRING  ? MIN_STRING_BYTES
                              : et == DSQ_GGUF_ARRAY ? MIN_ARRAY_BYTES
                                                     : type_sizes[et];
    uint64_t min_bytes;
    if (count > DSQ_GGUF_MAX_ARRAY)
        return fail(r, DSQ_FORMAT, at + 4,
                    "key '%s': array count %" PRIu64 " exceeds the limit of %" PRIu64, key, count,
                    DSQ_GGUF_MAX_ARRAY);
    if (!dsq_mul_u64(count, min_elem, &min_bytes) || min_bytes > left(r))
        return fail(r, DSQ_FORMAT, at + 4,
                    "key '%s': array of %" PRIu64 " %s cannot fit: at least %" PRIu64
                    " bytes each, only %zu bytes left",
                    key, count, type_names[et], min_elem, left(r));
    nd->n = count;
    nd->data = r->p + r->pos;

    if (et == DSQ_GGUF_STRING) {
        /* count * 8 <= bytes left, so this allocation is bounded by the input size */
        nd->elems = malloc((size_t)(count ? count : 1) * sizeof *nd->elems);
        if (nd->elems == NULL)
            return fail(r, DSQ_NOMEM, at, "key '%s': out of memory for %" PRIu64 " strings", key,
                        count);
        for (uint64_t i = 0; i < count; i++) {
            const uint8_t *s;
            uint64_t len;
            nd->elems[i] = r->p + r->pos;
            if ((st = take_string(r, &s, &len, "string", ctx)) != DSQ_OK)
                return st;
        }
    } else if (et == DSQ_GGUF_ARRAY) {
        nd->kids = calloc((size_t)(count ? count : 1), sizeof *nd->kids);
        if (nd->kids == NULL)
            return fail(r, DSQ_NOMEM, at, "key '%s': out of memory for %" PRIu64 " arrays", key,
                        count);
        for (uint64_t i = 0; i < count; i++) {
            if ((st = parse_value(r, &nd->kids[i], DSQ_GGUF_ARRAY, depth + 1, key)) != DSQ_OK)
                return st;
        }
    } else {
        r->pos += (size_t)min_bytes; /* fixed-size elements, already bounds-checked */
    }
    return DSQ_OK;
}

static dsq_status parse_kvs(reader *r, dsq_gguf *g) {
    dsq_status st = DSQ_OK;
    for (int64_t i = 0; i < g->n_kv; i++) {
        kv *e = &g->kvs[i];
        e->off = r->pos;
        char ctx[64];
        snprintf(ctx, sizeof ctx, "KV %" PRId64 ": ", i);
        if ((st = take_string(r, &e->key_raw, &e->key_len, "key", ctx)) != DSQ_OK)
            return st;
        if (e->key_len == 0)
            return fail(r, DSQ_FORMAT, e->off, "KV %" PRId64 ": empty key", i);
        const shown k = show(e->key_raw, e->key_len);
        if (memchr(e->key_raw, 0, (size_t)e->key_len) != NULL)
            return fail(r, DSQ_FORMAT, e->off, "key '%s' contains a NUL byte", k.s);
        size_t slot;
        const int64_t dup = kv_lookup(g, e->key_raw, (size_t)e->key_len, &slot);
        if (dup >= 0)
            return fail(r, DSQ_FORMAT, e->off, "duplicate key '%s' (first at byte %" PRIu64 ")",
                        k.s, g->kvs[dup].off);
        g->kv_hash[slot] = i;

        const uint64_t type_at = r->pos;
        uint32_t type;
        if ((st = take_u32(r, &type, "value type")) != DSQ_OK)
            return st;
        if (type >= DSQ_GGUF_TYPE_COUNT)
            return fail(r, DSQ_FORMAT, type_at, "key '%s': invalid value type %" PRId32, k.s,
                        (int32_t)type);
        if ((st = parse_value(r, &e->val, (dsq_gguf_type)type, 0, k.s)) != DSQ_OK)
            return st;
    }
    return DSQ_OK;
}

static dsq_status check_alignment(reader *r, dsq_gguf *g) {
    g->alignment = DSQ_GGUF_DEFAULT_ALIGNMENT;
    const int64_t i = kv_lookup(g, "general.alignment", strlen("general.alignment"), NULL);
    if (i < 0)
        return DSQ_OK;
    const kv *e = &g->kvs[i];
    if (e->val.type != DSQ_GGUF_UINT32)
        return fail(r, DSQ_FORMAT, e->off, "key 'general.alignment' has type %s, must be UINT32",
                    type_names[e->val.type]);
    const uint32_t a = dsq_le_u32(e->val.data);
    if (a == 0 || (a & (a - 1)) != 0)
        return fail(r, DSQ_FORMAT, e->off,
                    "general.alignment = %" PRIu32 " is not a non-zero power of two", a);
    g->alignment = a;
    return DSQ_OK;
}

/* pad(x) = x rounded up to the alignment (a power of two). */
static int pad_up(uint64_t x, uint32_t a, uint64_t *out) {
    uint64_t t;
    if (!dsq_add_u64(x, a - 1, &t))
        return 0;
    *out = t & ~(uint64_t)(a - 1);
    return 1;
}

static dsq_status ggml_type_error(reader *r, uint64_t off, const char *name, int32_t id) {
    /* ids ggml once had and removed, and ids newer than dsq's table, get their own words */
    const int removed = id == 4 || id == 5 || (id >= 31 && id <= 33) || (id >= 36 && id <= 38);
    if (removed)
        return fail(r, DSQ_FORMAT, off, "tensor '%s': ggml type %" PRId32
                    " was removed from GGUF (repack the file with a current llama.cpp)",
                    name, id);
    if (id >= 40 && id <= 42)
        return fail(r, DSQ_UNSUPPORTED, off, "tensor '%s': ggml type %" PRId32
                    " (%s) is not supported by dsq", name, id,
                    id == 40 ? "NVFP4" : id == 41 ? "Q1_0" : "Q2_0");
    return fail(r, DSQ_FORMAT, off, "tensor '%s': unknown ggml type id %" PRId32, name, id);
}

static dsq_status parse_tensor_infos(reader *r, dsq_gguf *g) {
    dsq_status st = DSQ_OK;
    uint64_t expect = 0; /* where the next tensor must start, relative to the data section */
    for (int64_t i = 0; i < g->n_tensors; i++) {
        tinfo *t = &g->tensors[i];
        dsq_gguf_tensor *v = &t->view;
        t->off = r->pos;
        const uint8_t *raw;
        uint64_t len;
        char ctx[64];
        snprintf(ctx, sizeof ctx, "tensor %" PRId64 ": ", i);
        if ((st = take_string(r, &raw, &len, "name", ctx)) != DSQ_OK)
            return st;
        const shown nm = show(raw, len);
        if (len == 0)
            return fail(r, DSQ_FORMAT, t->off, "tensor %" PRId64 ": empty name", i);
        if (len > DSQ_GGUF_MAX_NAME)
            return fail(r, DSQ_FORMAT, t->off,
                        "tensor '%s': name of %" PRIu64 " bytes is longer than %d", nm.s, len,
                        DSQ_GGUF_MAX_NAME);
        if (memchr(raw, 0, (size_t)len) != NULL)
            return fail(r, DSQ_FORMAT, t->off, "tensor '%s': name contains a NUL byte", nm.s);
        memcpy(t->name, raw, (size_t)len);
        t->name[len] = '\0';
        v->name = t->name;
        size_t slot;
        const int64_t dup = tensor_lookup(g, t->name, (size_t)len, &slot);
        if (dup >= 0)
            return fail(r, DSQ_FORMAT, t->off,
                        "duplicate tensor name '%s' (first at byte %" PRIu64 ")", nm.s,
                        g->tensors[dup].off);
        g->t_hash[slot] = i;

        const uint64_t dims_at = r->pos;
        if ((st = take_u32(r, &v->n_dims, "n_dims")) != DSQ_OK)
            return st;
        if (v->n_dims > DSQ_GGUF_MAX_DIMS)
            return fail(r, DSQ_FORMAT, dims_at, "tensor '%s': n_dims %" PRIu32 " > %d", nm.s,
                        v->n_dims, DSQ_GGUF_MAX_DIMS);
        for (int d = 0; d < DSQ_GGUF_MAX_DIMS; d++)
            v->ne[d] = 1;
        for (uint32_t d = 0; d < v->n_dims; d++) {
            const uint64_t ne_at = r->pos;
            uint64_t ne;
            if ((st = take_u64(r, &ne, "dimension")) != DSQ_OK)
                return st;
            if (ne > (uint64_t)INT64_MAX)
                return fail(r, DSQ_FORMAT, ne_at, "tensor '%s': ne[%" PRIu32 "] = %" PRId64
                            " is negative", nm.s, d, (int64_t)ne);
            v->ne[d] = (int64_t)ne;
        }
        uint64_t nel;
        if (!dsq_nelements(v->ne, DSQ_GGUF_MAX_DIMS, &nel) || nel > (uint64_t)INT64_MAX)
            return fail(r, DSQ_FORMAT, dims_at,
                        "tensor '%s': dimensions [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                        "] have a product over INT64_MAX",
                        nm.s, v->ne[0], v->ne[1], v->ne[2], v->ne[3]);

        const uint64_t type_at = r->pos;
        uint32_t type;
        if ((st = take_u32(r, &type, "ggml type")) != DSQ_OK)
            return st;
        v->ggml_type = (int32_t)type;
        v->dtype = dsq_dtype_from_ggml(v->ggml_type);
        const dsq_dtype_info *di = dsq_dtype_get(v->dtype);
        if (di == NULL)
            return ggml_type_error(r, type_at, nm.s, v->ggml_type);
        if ((uint64_t)v->ne[0] % di->block_size != 0)
            return fail(r, DSQ_FORMAT, dims_at,
                        "tensor '%s' (%s): ne[0] = %" PRId64
                        " is not a multiple of the block size %" PRIu32,
                        nm.s, di->name, v->ne[0], di->block_size);
        int ok;
        v->nbytes = dsq_dtype_nbytes(v->dtype, nel, &ok);
        if (!ok)
            return fail(r, DSQ_FORMAT, dims_at, "tensor '%s' (%s): byte size overflows", nm.s,
                        di->name);

        const uint64_t off_at = r->pos;
        if ((st = take_u64(r, &v->offset, "tensor offset")) != DSQ_OK)
            return st;
        /* ggml requires exactly ggml's own layout; tell the three ways to miss it apart */
        if (v->offset % g->alignment != 0)
            return fail(r, DSQ_FORMAT, off_at,
                        "tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %"
                        PRIu32, nm.s, v->offset, g->alignment);
        if (v->offset < expect)
            return fail(r, DSQ_FORMAT, off_at,
                        "tensor '%s': offset %" PRIu64
                        " overlaps the previous tensor (expected %" PRIu64 ")",
                        nm.s, v->offset, expect);
        if (v->offset > expect)
            return fail(r, DSQ_FORMAT, off_at,
                        "tensor '%s': offset %" PRIu64 " leaves a gap after the previous tensor "
                        "(expected %" PRIu64 "; tensors must be packed in order)",
                        nm.s, v->offset, expect);
        uint64_t padded;
        if (!pad_up(v->nbytes, g->alignment, &padded) || !dsq_add_u64(expect, padded, &expect))
            return fail(r, DSQ_FORMAT, off_at, "tensor '%s': data offsets overflow", nm.s);
    }
    return DSQ_OK;
}

/* The data section starts at the padded end of the header; every tensor must lie inside. */
static dsq_status place_tensors(reader *r, dsq_gguf *g) {
    const uint64_t header_end = r->pos;
    g->data_offset = header_end;
    if (g->n_tensors == 0)
        return DSQ_OK;
    if (!pad_up(header_end, g->alignment, &g->data_offset) || g->data_offset > r->n)
        return fail(r, DSQ_FORMAT, header_end,
                    "truncated: the header ends here and the data section would start at byte "
                    "%" PRIu64 ", past the end of the file (%zu bytes)",
                    g->data_offset, r->n);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        dsq_gguf_tensor *v = &g->tensors[i].view;
        uint64_t begin, end;
        if (!dsq_add_u64(g->data_offset, v->offset, &begin) ||
            !dsq_add_u64(begin, v->nbytes, &end) || end > r->n)
            return fail(r, DSQ_FORMAT, g->tensors[i].off,
                        "tensor '%s': data [%" PRIu64 ", +%" PRIu64
                        ") runs past the end of the file (%zu bytes)",
                        show((const uint8_t *)v->name, strlen(v->name)).s,
                        g->data_offset + v->offset, v->nbytes, r->n);
        v->data = r->p + begin;
    }
    return DSQ_OK;
}

/* NUL-terminated copies of all keys in one block, so callers get C strings. */
static dsq_status copy_keys(reader *r, dsq_gguf *g) {
    uint64_t total = 0;
    for (int64_t i = 0; i < g->n_kv; i++)
        total += g->kvs[i].key_len + 1; /* sum of key lengths <= input size: no overflow */
    g->key_arena = malloc((size_t)(total ? total : 1));
    if (g->key_arena == NULL)
        return fail(r, DSQ_NOMEM, 0, "out of memory for %" PRIu64 " bytes of keys", total);
    char *at = g->key_arena;
    for (int64_t i = 0; i < g->n_kv; i++) {
        kv *e = &g->kvs[i];
        memcpy(at, e->key_raw, (size_t)e->key_len);
        at[e->key_len] = '\0';
        e->key = at;
        at += e->key_len + 1;
    }
    return DSQ_OK;
}

static dsq_status parse_header(reader *r, dsq_gguf *g) {
    dsq_status st = DSQ_OK;
    if (r->n < 4)
        return fail(r, DSQ_FORMAT, 0, "truncated: %zu bytes, too short for the GGUF magic",
                    r->n);
    if (dsq_le_u32(r->p) != DSQ_GGUF_MAGIC)
        return fail(r, DSQ_FORMAT, 0,
                    "bad magic %02x %02x %02x %02x: not a GGUF file (expected \"GGUF\")", r->p[0],
                    r->p[1], r->p[2], r->p[3]);
    r->pos = 4;
    uint32_t ver;
    if ((st = take_u32(r, &ver, "version")) != DSQ_OK)
        return st;
    g->version = ver;
    if (ver != DSQ_GGUF_VERSION) {
        /* ggml's own test: a byte-swapped small version has its low 16 bits zero */
        if (ver != 0 && (ver & 0xffffu) == 0)
            return fail(r, DSQ_UNSUPPORTED, 4,
                        "version field 0x%08" PRIx32 " is byte-swapped: big-endian GGUF files "
                        "are not supported", ver);
        if (ver == 1)
            return fail(r, DSQ_UNSUPPORTED, 4,
                        "GGUF version 1 is no longer supported (ggml dropped it too); only "
                        "version 3 is");
        if (ver == 2)
            return fail(r, DSQ_UNSUPPORTED, 4,
                        "GGUF version 2 is not supported, only version 3 (re-save the file "
                        "with a current llama.cpp)");
        if (ver == 0)
            return fail(r, DSQ_FORMAT, 4, "invalid GGUF version 0");
        return fail(r, DSQ_UNSUPPORTED, 4,
                    "GGUF version %" PRIu32 " is newer than the supported version 3", ver);
    }
    uint64_t nt, nk;
    if ((st = take_u64(r, &nt, "tensor count")) != DSQ_OK ||
        (st = take_u64(r, &nk, "KV count")) != DSQ_OK)
        return st;
    /* ggml reads both as int64 and rejects negatives */
    if (nt > (uint64_t)INT64_MAX)
        return fail(r, DSQ_FORMAT, 8, "tensor count %" PRId64 " is negative", (int64_t)nt);
    if (nk > (uint64_t)INT64_MAX)
        return fail(r, DSQ_FORMAT, 16, "KV count %" PRId64 " is negative", (int64_t)nk);
    uint64_t need_t, need_k, need;
    if (!dsq_mul_u64(nt, MIN_TINFO_BYTES, &need_t) || need_t > left(r))
        return fail(r, DSQ_FORMAT, 8,
                    "tensor count %" PRIu64 " cannot fit: %" PRIu64
                    " tensor infos need at least %u bytes each, only %zu bytes left",
                    nt, nt, MIN_TINFO_BYTES, left(r));
    if (!dsq_mul_u64(nk, MIN_KV_BYTES, &need_k) || need_k > left(r))
        return fail(r, DSQ_FORMAT, 16,
                    "KV count %" PRIu64 " cannot fit: KVs need at least %u bytes each, only %zu "
                    "bytes left", nk, MIN_KV_BYTES, left(r));
    if (!dsq_add_u64(need_t, need_k, &need) || need > left(r))
        return fail(r, DSQ_FORMAT, 8,
                    "%" PRIu64 " tensor infos and %" PRIu64 " KVs cannot fit in %zu bytes", nt,
                    nk, left(r));
    g->n_tensors = (int64_t)nt;
    g->n_kv = (int64_t)nk;
    return DSQ_OK;
}

static dsq_status parse_buffer(dsq_gguf *g, dsq_err *err) {
    dsq_status st = DSQ_OK;
    reader r = {g->p, g->n, 0, g->label, err};
    if ((st = parse_header(&r, g)) != DSQ_OK)
        return st;
    /* both counts are bounded by the input size (checked above), so are these */
    g->kvs = calloc((size_t)(g->n_kv ? g->n_kv : 1), sizeof *g->kvs);
    g->tensors = calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof *g->tensors);
    g->kv_cap = hash_cap(g->n_kv);
    g->t_cap = hash_cap(g->n_tensors);
    g->kv_hash = hash_new(g->kv_cap);
    g->t_hash = hash_new(g->t_cap);
    if (!g->kvs || !g->tensors || !g->kv_hash || !g->t_hash)
        return fail(&r, DSQ_NOMEM, 24, "out of memory for %" PRId64 " KVs and %" PRId64 " tensors",
                    g->n_kv, g->n_tensors);
    if ((st = parse_kvs(&r, g)) != DSQ_OK || (st = check_alignment(&r, g)) != DSQ_OK ||
        (st = parse_tensor_infos(&r, g)) != DSQ_OK || (st = place_tensors(&r, g)) != DSQ_OK ||
        (st = copy_keys(&r, g)) != DSQ_OK)
        return st;
    return DSQ_OK;
}

static dsq_status gguf_new(dsq_gguf **out, const char *label, dsq_err *err) {
    dsq_gguf *g = calloc(1, sizeof *g);
    if (g != NULL)
        g->label = strdup(label);
    if (g == NULL || g->label == NULL) {
        free(g);
        return dsq_err_set(err, DSQ_NOMEM, "%s: out of memory", label);
    }
    *out = g;
    return DSQ_OK;
}

dsq_status dsq_gguf_parse(dsq_gguf **out, const uint8_t *p, size_t n, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_gguf *g = NULL;
    *out = NULL;
    DSQ_TRY(gguf_new(&g, "<buffer>", err));
    g->p = p;
    g->n = p != NULL ? n : 0;
    DSQ_TRY(parse_buffer(g, err));
    *out = g;
    g = NULL;
cleanup:
    dsq_gguf_close(g);
    return st;
}

dsq_status dsq_gguf_open(dsq_gguf **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_gguf *g = NULL;
    *out = NULL;
    DSQ_TRY(gguf_new(&g, path, err));
    DSQ_TRY(dsq_map_open(&g->map, path, err));
    g->p = g->map.data;
    g->n = g->map.size;
    DSQ_TRY(parse_buffer(g, err));
    *out = g;
    g = NULL;
cleanup:
    dsq_gguf_close(g);
    return st;
}

/* ==== accessors ============================================================================= */

uint32_t dsq_gguf_version(const dsq_gguf *g) {
    return g->version;
}
uint32_t dsq_gguf_alignment(const dsq_gguf *g) {
    return g->alignment;
}
uint64_t dsq_gguf_data_offset(const dsq_gguf *g) {
    return g->data_offset;
}
size_t dsq_gguf_size(const dsq_gguf *g) {
    return g->n;
}
const uint8_t *dsq_gguf_bytes(const dsq_gguf *g) {
    return g->p;
}
int64_t dsq_gguf_kv_count(const dsq_gguf *g) {
    return g->n_kv;
}

const char *dsq_gguf_kv_key(const dsq_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kvs[i].key : NULL;
}

dsq_gguf_type dsq_gguf_kv_type(const dsq_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kvs[i].val.type : DSQ_GGUF_TYPE_COUNT;
}

static void node_view(const node *nd, const char *key, dsq_gguf_val *out) {
    out->type = nd->type;
    out->elem_type = nd->elem_type;
    out->n = nd->n;
    out->data = nd->data;
    out->key = key;
    out->node_ = nd;
}

dsq_status dsq_gguf_kv_val(const dsq_gguf *g, int64_t i, dsq_gguf_val *out, dsq_err *err) {
    if (i < 0 || i >= g->n_kv)
        return dsq_err_set(err, DSQ_RANGE, "%s: KV index %" PRId64 " out of range [0, %" PRId64
                           ")", g->label, i, g->n_kv);
    node_view(&g->kvs[i].val, g->kvs[i].key, out);
    return DSQ_OK;
}

int64_t dsq_gguf_find_key(const dsq_gguf *g, const char *key) {
    return kv_lookup(g, key, strlen(key), NULL);
}

dsq_status dsq_gguf_get(const dsq_gguf *g, const char *key, dsq_gguf_val *out, dsq_err *err) {
    const int64_t i = dsq_gguf_find_key(g, key);
    if (i < 0)
        return dsq_err_set(err, DSQ_NOT_FOUND, "%s: no key '%s'", g->label, key);
    return dsq_gguf_kv_val(g, i, out, err);
}

/* The key of a value, printable (keys come from the file). */
static shown key_of(const dsq_gguf_val *v) {
    return v->key ? show((const uint8_t *)v->key, strlen(v->key)) : show((const uint8_t *)"?", 1);
}

static dsq_status want(const dsq_gguf_val *v, dsq_gguf_type t, dsq_err *err) {
    if (v->type == t)
        return DSQ_OK;
    return dsq_err_set(err, DSQ_FORMAT, "key '%s': value has type %s, expected %s",
                       key_of(v).s, dsq_gguf_type_name(v->type), dsq_gguf_type_name(t));
}

#define DSQ_GGUF_GETTER(fn, ctype, tag, decode)                                                    \
    dsq_status fn(const dsq_gguf_val *v, ctype *out, dsq_err *err) {                             \
        const dsq_status st = want(v, tag, err);                                                   \
        if (st == DSQ_OK)                                                                          \
            *out = decode;                                                                         \
        return st;                                                                                 \
    }

static float f32_of(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
static double f64_of(uint64_t bits) {
    double f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

DSQ_GGUF_GETTER(dsq_gguf_val_u8, uint8_t, DSQ_GGUF_UINT8, v->data[0])
DSQ_GGUF_GETTER(dsq_gguf_val_i8, int8_t, DSQ_GGUF_INT8, (int8_t)v->data[0])
DSQ_GGUF_GETTER(dsq_gguf_val_u16, uint16_t, DSQ_GGUF_UINT16, dsq_le_u16(v->data))
DSQ_GGUF_GETTER(dsq_gguf_val_i16, int16_t, DSQ_GGUF_INT16, (int16_t)dsq_le_u16(v->data))
DSQ_GGUF_GETTER(dsq_gguf_val_u32, uint32_t, DSQ_GGUF_UINT32, dsq_le_u32(v->data))
DSQ_GGUF_GETTER(dsq_gguf_val_i32, int32_t, DSQ_GGUF_INT32, (int32_t)dsq_le_u32(v->data))
DSQ_GGUF_GETTER(dsq_gguf_val_u64, uint64_t, DSQ_GGUF_UINT64, dsq_le_u64(v->data))
DSQ_GGUF_GETTER(dsq_gguf_val_i64, int64_t, DSQ_GGUF_INT64, (int64_t)dsq_le_u64(v->data))
DSQ_GGUF_GETTER(dsq_gguf_val_f32, float, DSQ_GGUF_FLOAT32, f32_of(dsq_le_u32(v->data)))
DSQ_GGUF_GETTER(dsq_gguf_val_f64, double, DSQ_GGUF_FLOAT64, f64_of(dsq_le_u64(v->data)))
DSQ_GGUF_GETTER(dsq_gguf_val_bool, bool, DSQ_GGUF_BOOL, v->data[0] != 0)

dsq_status dsq_gguf_val_str(const dsq_gguf_val *v, const char **s, size_t *len, dsq_err *err) {
    const dsq_status st = want(v, DSQ_GGUF_STRING, err);
    if (st == DSQ_OK) {
        *s = (const char *)v->data;
        *len = (size_t)v->n;
    }
    return st;
}

dsq_status dsq_gguf_val_as_i64(const dsq_gguf_val *v, int64_t *out, dsq_err *err) {
    const uint8_t *d = v->data;
    switch (v->type) {
        case DSQ_GGUF_UINT8: *out = d[0]; return DSQ_OK;
        case DSQ_GGUF_INT8: *out = (int8_t)d[0]; return DSQ_OK;
        case DSQ_GGUF_BOOL: *out = d[0] != 0; return DSQ_OK;
        case DSQ_GGUF_UINT16: *out = dsq_le_u16(d); return DSQ_OK;
        case DSQ_GGUF_INT16: *out = (int16_t)dsq_le_u16(d); return DSQ_OK;
        case DSQ_GGUF_UINT32: *out = dsq_le_u32(d); return DSQ_OK;
        case DSQ_GGUF_INT32: *out = (int32_t)dsq_le_u32(d); return DSQ_OK;
        case DSQ_GGUF_INT64: *out = (int64_t)dsq_le_u64(d); return DSQ_OK;
        case DSQ_GGUF_UINT64:
            if (dsq_le_u64(d) > (uint64_t)INT64_MAX)
                return dsq_err_set(err, DSQ_RANGE, "key '%s': UINT64 value %" PRIu64
                                   " does not fit in int64", key_of(v).s, dsq_le_u64(d));
            *out = (int64_t)dsq_le_u64(d);
            return DSQ_OK;
        case DSQ_GGUF_FLOAT32:
        case DSQ_GGUF_FLOAT64:
        case DSQ_GGUF_STRING:
        case DSQ_GGUF_ARRAY:
        case DSQ_GGUF_TYPE_COUNT:
        default: break;
    }
    return dsq_err_set(err, DSQ_FORMAT, "key '%s': value has type %s, expected an integer",
                       key_of(v).s, dsq_gguf_type_name(v->type));
}

dsq_status dsq_gguf_val_as_f64(const dsq_gguf_val *v, double *out, dsq_err *err) {
    if (v->type == DSQ_GGUF_FLOAT32) {
        *out = f32_of(dsq_le_u32(v->data));
        return DSQ_OK;
    }
    if (v->type == DSQ_GGUF_FLOAT64) {
        *out = f64_of(dsq_le_u64(v->data));
        return DSQ_OK;
    }
    if (v->type == DSQ_GGUF_UINT64) {
        *out = (double)dsq_le_u64(v->data);
        return DSQ_OK;
    }
    int64_t i;
    const dsq_status st = dsq_gguf_val_as_i64(v, &i, NULL);
    if (st != DSQ_OK)
        return dsq_err_set(err, DSQ_FORMAT, "key '%s': value has type %s, expected a number",
                           key_of(v).s, dsq_gguf_type_name(v->type));
    *out = (double)i;
    return DSQ_OK;
}

dsq_status dsq_gguf_val_at(const dsq_gguf_val *arr, uint64_t i, dsq_gguf_val *out, dsq_err *err) {
    const dsq_status st = want(arr, DSQ_GGUF_ARRAY, err);
    if (st != DSQ_OK)
        return st;
    if (i >= arr->n)
        return dsq_err_set(err, DSQ_RANGE, "key '%s': index %" PRIu64 " out of range [0, %" PRIu64
                           ")", key_of(arr).s, i, arr->n);
    const node *nd = arr->node_;
    out->key = arr->key;
    out->node_ = NULL;
    out->type = arr->elem_type;
    out->elem_type = arr->elem_type;
    out->n = 1;
    switch (arr->elem_type) {
        case DSQ_GGUF_STRING:
            out->n = dsq_le_u64(nd->elems[i]);
            out->data = nd->elems[i] + 8;
            break;
        case DSQ_GGUF_ARRAY: node_view(&nd->kids[i], arr->key, out); break;
        case DSQ_GGUF_UINT8:
        case DSQ_GGUF_INT8:
        case DSQ_GGUF_UINT16:
        case DSQ_GGUF_INT16:
        case DSQ_GGUF_UINT32:
        case DSQ_GGUF_INT32:
        case DSQ_GGUF_FLOAT32:
        case DSQ_GGUF_BOOL:
        case DSQ_GGUF_UINT64:
        case DSQ_GGUF_INT64:
        case DSQ_GGUF_FLOAT64:
        case DSQ_GGUF_TYPE_COUNT:
        default: out->data = arr->data + (size_t)i * type_sizes[arr->elem_type]; break;
    }
    return DSQ_OK;
}

/* Keyed shortcuts. */
#define DSQ_GGUF_KEYED(fn, getter, ctype)                                                         \
    dsq_status fn(const dsq_gguf *g, const char *key, ctype *out, dsq_err *err) {                \
        dsq_gguf_val v;                                                                            \
        const dsq_status st = dsq_gguf_get(g, key, &v, err);                                      \
        return st != DSQ_OK ? st : getter(&v, out, err);                                          \
    }

DSQ_GGUF_KEYED(dsq_gguf_get_u32, dsq_gguf_val_u32, uint32_t)
DSQ_GGUF_KEYED(dsq_gguf_get_f32, dsq_gguf_val_f32, float)
DSQ_GGUF_KEYED(dsq_gguf_get_bool, dsq_gguf_val_bool, bool)
DSQ_GGUF_KEYED(dsq_gguf_get_i64, dsq_gguf_val_as_i64, int64_t)

dsq_status dsq_gguf_get_str(const dsq_gguf *g, const char *key, const char **s, size_t *len,
                            dsq_err *err) {
    dsq_gguf_val v;
    const dsq_status st = dsq_gguf_get(g, key, &v, err);
    return st != DSQ_OK ? st : dsq_gguf_val_str(&v, s, len, err);
}

dsq_status dsq_gguf_get_arr(const dsq_gguf *g, const char *key, dsq_gguf_type elem_type,
                            dsq_gguf_val *out, dsq_err *err) {
    dsq_status st = dsq_gguf_get(g, key, out, err);
    if (st == DSQ_OK)
        st = want(out, DSQ_GGUF_ARRAY, err);
    if (st == DSQ_OK && out->elem_type != elem_type)
        st = dsq_err_set(err, DSQ_FORMAT, "%s: key '%s': array of %s, expected an array of %s",
                         g->label, key, dsq_gguf_type_name(out->elem_type),
                         dsq_gguf_type_name(elem_type));
    return st;
}

int64_t dsq_gguf_tensor_count(const dsq_gguf *g) {
    return g->n_tensors;
}

const dsq_gguf_tensor *dsq_gguf_tensor_at(const dsq_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_tensors) ? &g->tensors[i].view : NULL;
}

int64_t dsq_gguf_find_tensor(const dsq_gguf *g, const char *name) {
    return tensor_lookup(g, name, strlen(name), NULL);
}

int dsq_gguf_probe_path(const char *path) {
    unsigned char m[4] = {0};
    const size_t len = strlen(path);
    if (dsq_is_dir(path))
        return 0;
    if (len > 5 && strcmp(path + len - 5, ".gguf") == 0)
        return 1;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    const size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(m, "GGUF", 4) == 0;
}
