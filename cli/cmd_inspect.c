/* cli/cmd_inspect.c: `dsq inspect PATH`: the tensors of a safetensors file or
 * checkpoint directory, with totals per dtype; or a GGUF file's metadata (every key with
 * its type and value, arrays abbreviated) and tensors, a split GGUF as the whole set;
 * --json for machines. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/file.h"
#include "formats/gguf.h"
#include "formats/gguf_split.h"
#include "formats/st_checkpoint.h"

#define CMD "inspect"

static const char usage_text[] =
    "usage: dsq inspect PATH [--json]\n"
    "\n"
    "Lists every tensor of a safetensors file or a checkpoint directory (sharded\n"
    "through model.safetensors.index.json, or a single model.safetensors): name,\n"
    "dtype, shape, bytes and shard, then the totals per dtype. The whole file or\n"
    "checkpoint is validated first.\n"
    "\n"
    "A GGUF file (told by its magic) is shown as its metadata, every key with its type\n"
    "and value (arrays as element type, length and the first 8 elements; long strings\n"
    "cut at 96 bytes in the table, whole in --json), then its tensors: name, ggml type,\n"
    "shape in ggml ne order (ne[0] first, the contiguous dimension: the reverse of the\n"
    "Hugging Face / numpy shape), bytes and offset in the data section, then the totals\n"
    "per type.\n"
    "\n"
    "A split GGUF (llama.cpp's NAME-00001-of-0000N.gguf) is given by its first file\n"
    "and shown whole: the first file's metadata, the files of the set, and every\n"
    "tensor with the split that holds it (its offset is in that file's data section).\n"
    "In --json, version, alignment and data_offset are the first file's, file_bytes\n"
    "the sum over the set, \"splits\" lists the files and each tensor has \"split\"\n"
    "(0-based, as split.no).\n"
    "\n"
    "Names and keys from the file are shown with control characters as \\xNN, so a\n"
    "hostile name cannot break a line or drive the terminal.\n"
    "\n"
    "options:\n"
    "  --json      print one JSON document on stdout instead of the table\n"
    "  -h, --help  this text\n"
    "\n"
    "examples:\n"
    "  dsq inspect DeepSeek-V3/\n"
    "  dsq inspect model-00001-of-00163.safetensors --json\n"
    "  dsq inspect ds-v3-Q4_K_M-00001-of-00009.gguf   # the whole split set\n";

typedef struct totals {
    size_t count[DSQ_DTYPE_COUNT];
    uint64_t bytes[DSQ_DTYPE_COUNT];
} totals;

static int print_json(const dsq_ckpt *ck, const char *path, const totals *t) {
    json_t *root = json_object(), *tensors = json_array(), *tot = json_object();
    json_object_set_new(root, "path", dsq_cli_json_str(path));
    json_object_set_new(root, "format", json_string("safetensors"));
    json_t *shards = json_array();
    for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++) {
        const dsq_st *sh = dsq_ckpt_shard(ck, s);
        json_t *js = json_object(), *meta = json_object();
        json_object_set_new(js, "file", dsq_cli_json_str(dsq_ckpt_shard_name(ck, s)));
        json_object_set_new(js, "bytes", json_integer((json_int_t)dsq_st_file_size(sh)));
        for (size_t m = 0; m < dsq_st_meta_count(sh); m++)
            json_object_set_new(meta, dsq_st_meta_key(sh, m), json_string(dsq_st_meta_value(sh, m)));
        json_object_set_new(js, "metadata", meta);
        json_array_append_new(shards, js);
        for (size_t i = 0; i < dsq_st_count(sh); i++) {
            const dsq_tensor_view *v = dsq_st_tensor(sh, i);
            json_t *jt = json_object(), *shape = json_array();
            for (int d = 0; d < v->ndim; d++)
                json_array_append_new(shape, json_integer(v->shape[d]));
            json_object_set_new(jt, "name", dsq_cli_json_str(v->name));
            json_object_set_new(jt, "dtype", json_string(dsq_dtype_name(v->dtype)));
            json_object_set_new(jt, "shape", shape);
            json_object_set_new(jt, "bytes", json_integer((json_int_t)v->nbytes));
            json_object_set_new(jt, "shard", dsq_cli_json_str(dsq_ckpt_shard_name(ck, s)));
            json_object_set_new(jt, "offset",
                                json_integer((json_int_t)dsq_st_tensor_offset(sh, i)));
            json_array_append_new(tensors, jt);
        }
    }
    uint64_t all = 0;
    for (int d = 0; d < DSQ_DTYPE_COUNT; d++) {
        if (t->count[d] == 0)
            continue;
        json_t *e = json_object();
        json_object_set_new(e, "count", json_integer((json_int_t)t->count[d]));
        json_object_set_new(e, "bytes", json_integer((json_int_t)t->bytes[d]));
        json_object_set_new(tot, dsq_dtype_name((dsq_dtype)d), e);
        all += t->bytes[d];
    }
    json_object_set_new(root, "shards", shards);
    json_object_set_new(root, "tensors", tensors);
    json_object_set_new(root, "totals", tot);
    json_object_set_new(root, "total_bytes", json_integer((json_int_t)all));
    json_object_set_new(root, "tensor_count", json_integer((json_int_t)dsq_ckpt_tensor_count(ck)));
    const int rc = dsq_cli_json_print(CMD, root, JSON_INDENT(2));
    json_decref(root);
    return rc;
}

/* ============================================================================================
 * GGUF
 * ========================================================================================== */

#define ARR_HEAD    8  /* array elements shown */
#define STR_TEXT_MAX 96 /* string bytes shown in the table */

/* A string value for the table: quoted, control and non-ASCII bytes as \xNN (so the
 * table stays one line per key), cut at STR_TEXT_MAX bytes with "..." and the length. */
static void text_str(const char *s, size_t n, char *buf, size_t size) {
    size_t o = 0;
    const size_t shown = n > STR_TEXT_MAX ? STR_TEXT_MAX : n;
    buf[o++] = '"';
    for (size_t i = 0; i < shown && o + 8 < size; i++) {
        const unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            o += (size_t)snprintf(buf + o, size - o, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", ch);
        else
            buf[o++] = (char)ch;
    }
    if (o < size)
        buf[o++] = '"';
    buf[o < size ? o : size - 1] = '\0';
    if (shown < n)
        snprintf(buf + strlen(buf), size - strlen(buf), "... (%zu bytes)", n);
}

/* One scalar or string value for the table. */
static void text_val(const dsq_gguf_val *v, char *buf, size_t size) {
    int64_t i = 0;
    uint64_t u = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    size_t n = 0;
    switch (v->type) {
        case DSQ_GGUF_STRING:
            dsq_gguf_val_str(v, &s, &n, NULL);
            text_str(s, n, buf, size);
            return;
        case DSQ_GGUF_BOOL:
            dsq_gguf_val_bool(v, &b, NULL);
            snprintf(buf, size, "%s", b ? "true" : "false");
            return;
        case DSQ_GGUF_FLOAT32:
        case DSQ_GGUF_FLOAT64:
            dsq_gguf_val_as_f64(v, &d, NULL);
            snprintf(buf, size, "%.9g", d);
            return;
        case DSQ_GGUF_UINT64:
            dsq_gguf_val_u64(v, &u, NULL);
            snprintf(buf, size, "%" PRIu64, u);
            return;
        case DSQ_GGUF_ARRAY:
            snprintf(buf, size, "[%s x %" PRIu64 "]", dsq_gguf_type_name(v->elem_type), v->n);
            return;
        case DSQ_GGUF_UINT8:
        case DSQ_GGUF_INT8:
        case DSQ_GGUF_UINT16:
        case DSQ_GGUF_INT16:
        case DSQ_GGUF_UINT32:
        case DSQ_GGUF_INT32:
        case DSQ_GGUF_INT64:
            dsq_gguf_val_as_i64(v, &i, NULL);
            snprintf(buf, size, "%" PRId64, i);
            return;
        case DSQ_GGUF_TYPE_COUNT: break;
    }
    snprintf(buf, size, "?");
}

/* "UINT32", or "ARRAY[STRING]" */
static void type_str(const dsq_gguf_val *v, char *buf, size_t size) {
    if (v->type == DSQ_GGUF_ARRAY)
        snprintf(buf, size, "ARRAY[%s]", dsq_gguf_type_name(v->elem_type));
    else
        snprintf(buf, size, "%s", dsq_gguf_type_name(v->type));
}

static json_t *json_val(const dsq_gguf_val *v) {
    int64_t i = 0;
    uint64_t u = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    size_t n = 0;
    switch (v->type) {
        case DSQ_GGUF_STRING: dsq_gguf_val_str(v, &s, &n, NULL); return dsq_cli_json_strn(s, n);
        case DSQ_GGUF_BOOL: dsq_gguf_val_bool(v, &b, NULL); return json_boolean(b);
        case DSQ_GGUF_FLOAT32:
        case DSQ_GGUF_FLOAT64: dsq_gguf_val_as_f64(v, &d, NULL); return json_real(d);
        case DSQ_GGUF_UINT64:
            dsq_gguf_val_u64(v, &u, NULL);
            return u <= INT64_MAX ? json_integer((json_int_t)u) : json_real((double)u);
        case DSQ_GGUF_ARRAY: {
            json_t *a = json_object(), *head = json_array();
            json_object_set_new(a, "elem_type", json_string(dsq_gguf_type_name(v->elem_type)));
            json_object_set_new(a, "length", json_integer((json_int_t)v->n));
            for (uint64_t k = 0; k < v->n && k < ARR_HEAD; k++) {
                dsq_gguf_val e;
                if (dsq_gguf_val_at(v, k, &e, NULL) == DSQ_OK)
                    json_array_append_new(head, json_val(&e));
            }
            json_object_set_new(a, "head", head);
            return a;
        }
        case DSQ_GGUF_UINT8:
        case DSQ_GGUF_INT8:
        case DSQ_GGUF_UINT16:
        case DSQ_GGUF_INT16:
        case DSQ_GGUF_UINT32:
        case DSQ_GGUF_INT32:
        case DSQ_GGUF_INT64: dsq_gguf_val_as_i64(v, &i, NULL); return json_integer(i);
        case DSQ_GGUF_TYPE_COUNT: break;
    }
    return json_null();
}

/* The facts both views of a GGUF (or split set) use. */
typedef struct gguf_view {
    const dsq_gguf_set *set;
    const dsq_gguf *g; /* the first file: the metadata */
    int n_files;
    int64_t nt, nkv;
    uint64_t data_off, file_bytes, all;
    totals t;
} gguf_view;

static int gguf_json(const gguf_view *w, const char *path) {
    const dsq_gguf_set *set = w->set;
    const dsq_gguf *g = w->g;
    const int n_files = w->n_files;
    const int64_t nt = w->nt, nkv = w->nkv;
    const uint64_t data_off = w->data_off, file_bytes = w->file_bytes, all = w->all;
    const totals *t = &w->t;
    json_t *root = json_object(), *meta = json_array(), *tensors = json_array(),
           *tot = json_object();
    json_object_set_new(root, "path", dsq_cli_json_str(path));
    json_object_set_new(root, "format", json_string("gguf"));
    json_object_set_new(root, "version", json_integer(dsq_gguf_version(g)));
    json_object_set_new(root, "alignment", json_integer(dsq_gguf_alignment(g)));
    json_object_set_new(root, "data_offset", json_integer((json_int_t)data_off));
    json_object_set_new(root, "file_bytes", json_integer((json_int_t)file_bytes));
    if (n_files > 1) {
        json_t *splits = json_array();
        for (int k = 0; k < n_files; k++) {
            const dsq_gguf *f = dsq_gguf_set_file(set, k);
            json_t *js = json_object();
            json_object_set_new(js, "file", dsq_cli_json_str(dsq_gguf_set_path(set, k)));
            json_object_set_new(js, "bytes", json_integer((json_int_t)dsq_gguf_size(f)));
            json_object_set_new(js, "data_offset",
                                json_integer((json_int_t)dsq_gguf_data_offset(f)));
            json_object_set_new(js, "tensor_count", json_integer(dsq_gguf_tensor_count(f)));
            json_array_append_new(splits, js);
        }
        json_object_set_new(root, "split_count", json_integer(n_files));
        json_object_set_new(root, "splits", splits);
    }
    json_object_set_new(root, "shape_order", json_string("ggml ne (ne[0] first)"));
    json_object_set_new(root, "kv_count", json_integer(nkv));
    for (int64_t i = 0; i < nkv; i++) {
        dsq_gguf_val v;
        char ty[40];
        if (dsq_gguf_kv_val(g, i, &v, NULL) != DSQ_OK)
            continue;
        type_str(&v, ty, sizeof ty);
        json_t *kv = json_object();
        const char *key = dsq_gguf_kv_key(g, i);
        json_object_set_new(kv, "key", dsq_cli_json_str(key));
        json_object_set_new(kv, "type", json_string(ty));
        json_object_set_new(kv, "value", json_val(&v));
        json_array_append_new(meta, kv);
    }
    for (int64_t i = 0; i < nt; i++) {
        const dsq_gguf_tensor *x = dsq_gguf_set_tensor_at(set, i);
        const int k = dsq_gguf_set_tensor_file(set, i);
        const uint64_t k_off = dsq_gguf_data_offset(dsq_gguf_set_file(set, k));
        json_t *jt = json_object(), *ne = json_array();
        for (uint32_t d = 0; d < x->n_dims; d++)
            json_array_append_new(ne, json_integer(x->ne[d]));
        json_object_set_new(jt, "name", dsq_cli_json_str(x->name));
        json_object_set_new(jt, "type", json_string(dsq_dtype_name(x->dtype)));
        json_object_set_new(jt, "ne", ne);
        json_object_set_new(jt, "bytes", json_integer((json_int_t)x->nbytes));
        json_object_set_new(jt, "offset", json_integer((json_int_t)x->offset));
        json_object_set_new(jt, "file_offset", json_integer((json_int_t)(k_off + x->offset)));
        if (n_files > 1)
            json_object_set_new(jt, "split", json_integer(k));
        json_array_append_new(tensors, jt);
    }
    for (int d = 0; d < DSQ_DTYPE_COUNT; d++) {
        if (t->count[d] == 0)
            continue;
        json_t *e = json_object();
        json_object_set_new(e, "count", json_integer((json_int_t)t->count[d]));
        json_object_set_new(e, "bytes", json_integer((json_int_t)t->bytes[d]));
        json_object_set_new(tot, dsq_dtype_name((dsq_dtype)d), e);
    }
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "tensors", tensors);
    json_object_set_new(root, "totals", tot);
    json_object_set_new(root, "total_bytes", json_integer((json_int_t)all));
    json_object_set_new(root, "tensor_count", json_integer(nt));
    const int rc = dsq_cli_json_print(CMD, root, JSON_INDENT(2));
    json_decref(root);
    return rc;
}

static void gguf_table(const gguf_view *w) {
    const dsq_gguf_set *set = w->set;
    const dsq_gguf *g = w->g;
    const int n_files = w->n_files;
    const int64_t nt = w->nt, nkv = w->nkv;
    const uint64_t data_off = w->data_off, file_bytes = w->file_bytes, all = w->all;
    const totals *t = &w->t;
    char h[32];
    dsq_format_bytes(file_bytes, h, sizeof h);
    if (n_files > 1) {
        /* the first line still describes the first file's header; the set comes next */
        printf("GGUF v%u, alignment %u, %" PRId64 " keys, %" PRId64
               " tensors, split set of %d files, %" PRIu64 " bytes (%s)\n",
               dsq_gguf_version(g), dsq_gguf_alignment(g), nkv, nt, n_files, file_bytes, h);
        printf("%-6s %8s %14s %14s  %s\n", "SPLIT", "TENSORS", "BYTES", "DATA AT", "FILE");
        for (int k = 0; k < n_files; k++) {
            const dsq_gguf *f = dsq_gguf_set_file(set, k);
            printf("%-6d %8" PRId64 " %14zu %14" PRIu64 "  ", k, dsq_gguf_tensor_count(f),
                   dsq_gguf_size(f), dsq_gguf_data_offset(f));
            dsq_cli_put_escaped(stdout, dsq_gguf_set_path(set, k), 0);
            putchar('\n');
        }
        printf("\n");
    } else {
        printf("GGUF v%u, alignment %u, %" PRId64 " keys, %" PRId64
               " tensors, data section at byte %" PRIu64 ", %zu bytes (%s)\n\n",
               dsq_gguf_version(g), dsq_gguf_alignment(g), nkv, nt, data_off, dsq_gguf_size(g),
               h);
    }
    printf("%-44s %-16s %s\n", "KEY", "TYPE", "VALUE");
    for (int64_t i = 0; i < nkv; i++) {
        dsq_gguf_val v;
        char ty[40], val[1024];
        if (dsq_gguf_kv_val(g, i, &v, NULL) != DSQ_OK)
            continue;
        type_str(&v, ty, sizeof ty);
        if (v.type == DSQ_GGUF_ARRAY) {
            size_t o = (size_t)snprintf(val, sizeof val, "%" PRIu64 " elements%s", v.n,
                                        v.n ? ": " : "");
            for (uint64_t k = 0; k < v.n && k < ARR_HEAD && o < sizeof val; k++) {
                dsq_gguf_val e;
                char one[160];
                if (dsq_gguf_val_at(&v, k, &e, NULL) != DSQ_OK)
                    break;
                text_val(&e, one, sizeof one);
                o += (size_t)snprintf(val + o, sizeof val - o, "%s%s", k ? ", " : "", one);
            }
            if (v.n > ARR_HEAD && o < sizeof val)
                snprintf(val + o, sizeof val - o, ", ...");
        } else {
            text_val(&v, val, sizeof val);
        }
        dsq_cli_put_escaped(stdout, dsq_gguf_kv_key(g, i), 44);
        printf(" %-16s %s\n", ty, val);
    }
    printf("\n%-44s %-8s %-26s %14s %14s%s\n", "TENSOR", "TYPE", "NE (ggml order)", "BYTES",
           "OFFSET", n_files > 1 ? "  SPLIT" : "");
    for (int64_t i = 0; i < nt; i++) {
        const dsq_gguf_tensor *x = dsq_gguf_set_tensor_at(set, i);
        char shape[128], where[16] = "";
        dsq_shape_format(x->ne, (int)x->n_dims, shape, sizeof shape);
        if (n_files > 1)
            snprintf(where, sizeof where, "  %d", dsq_gguf_set_tensor_file(set, i));
        dsq_cli_put_escaped(stdout, x->name, 44);
        printf(" %-8s %-26s %14" PRIu64 " %14" PRIu64 "%s\n", dsq_dtype_name(x->dtype), shape,
               x->nbytes, x->offset, where);
    }
    printf("\n%-10s %8s %16s\n", "TYPE", "TENSORS", "BYTES");
    for (int d = 0; d < DSQ_DTYPE_COUNT; d++) {
        if (t->count[d] == 0)
            continue;
        dsq_format_bytes(t->bytes[d], h, sizeof h);
        printf("%-10s %8zu %16" PRIu64 "  (%s)\n", dsq_dtype_name((dsq_dtype)d), t->count[d],
               t->bytes[d], h);
    }
    dsq_format_bytes(all, h, sizeof h);
    printf("%-10s %8" PRId64 " %16" PRIu64 "  (%s)\n", "total", nt, all, h);
}

static int inspect_gguf(const char *path, int json) {
    dsq_err err = {0};
    dsq_gguf_set *set = NULL;
    const dsq_status st = dsq_gguf_set_open(&set, path, &err);
    if (st != DSQ_OK)
        return dsq_cli_fail(CMD, st, &err);
    gguf_view w;
    memset(&w, 0, sizeof w);
    w.set = set;
    w.g = dsq_gguf_set_meta(set);
    w.n_files = dsq_gguf_set_file_count(set);
    w.nt = dsq_gguf_set_tensor_count(set);
    w.nkv = dsq_gguf_kv_count(w.g);
    w.data_off = dsq_gguf_data_offset(w.g);
    w.file_bytes = dsq_gguf_set_bytes(set);
    for (int64_t i = 0; i < w.nt; i++) {
        const dsq_gguf_tensor *x = dsq_gguf_set_tensor_at(set, i);
        w.t.count[x->dtype]++;
        w.t.bytes[x->dtype] += x->nbytes;
        w.all += x->nbytes;
    }
    int rc = DSQ_EXIT_OK;
    if (json)
        rc = gguf_json(&w, path);
    else
        gguf_table(&w);
    dsq_gguf_set_close(set);
    return rc;
}

int dsq_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return dsq_cli_usage(CMD, "unknown option '%s'", argv[i]);
        } else if (path == NULL) {
            path = argv[i];
        } else {
            return dsq_cli_usage(CMD, "one PATH only");
        }
    }
    if (path == NULL)
        return dsq_cli_usage(CMD, "missing PATH");
    const int missing = dsq_cli_need_input(CMD, path);
    if (missing != 0)
        return missing;
    if (dsq_gguf_probe_path(path))
        return inspect_gguf(path, json);
    dsq_err err = {0};
    dsq_ckpt *ck = NULL;
    const dsq_status st = dsq_ckpt_open(&ck, path, &err);
    if (st != DSQ_OK)
        return dsq_cli_fail(CMD, st, &err);

    totals t;
    memset(&t, 0, sizeof t);
    for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++) {
        const dsq_st *sh = dsq_ckpt_shard(ck, s);
        for (size_t i = 0; i < dsq_st_count(sh); i++) {
            const dsq_tensor_view *v = dsq_st_tensor(sh, i);
            t.count[v->dtype]++;
            t.bytes[v->dtype] += v->nbytes;
        }
    }
    int rc = DSQ_EXIT_OK;
    if (json) {
        rc = print_json(ck, path, &t);
    } else {
        printf("%-60s %-8s %-20s %14s  %s\n", "NAME", "DTYPE", "SHAPE", "BYTES", "SHARD");
        for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++) {
            const dsq_st *sh = dsq_ckpt_shard(ck, s);
            for (size_t i = 0; i < dsq_st_count(sh); i++) {
                const dsq_tensor_view *v = dsq_st_tensor(sh, i);
                char shape[128];
                dsq_shape_format(v->shape, v->ndim, shape, sizeof shape);
                dsq_cli_put_escaped(stdout, v->name, 60);
                printf(" %-8s %-20s %14" PRIu64 "  ", dsq_dtype_name(v->dtype), shape,
                       v->nbytes);
                dsq_cli_put_escaped(stdout, dsq_ckpt_shard_name(ck, s), 0);
                putchar('\n');
            }
        }
        printf("\n%-10s %8s %16s\n", "DTYPE", "TENSORS", "BYTES");
        uint64_t all = 0;
        size_t n = 0;
        for (int d = 0; d < DSQ_DTYPE_COUNT; d++) {
            if (t.count[d] == 0)
                continue;
            char h[32];
            dsq_format_bytes(t.bytes[d], h, sizeof h);
            printf("%-10s %8zu %16" PRIu64 "  (%s)\n", dsq_dtype_name((dsq_dtype)d), t.count[d],
                   t.bytes[d], h);
            all += t.bytes[d];
            n += t.count[d];
        }
        char h[32];
        dsq_format_bytes(all, h, sizeof h);
        printf("%-10s %8zu %16" PRIu64 "  (%s) in %zu file%s\n", "total", n, all, h,
               dsq_ckpt_shard_count(ck), dsq_ckpt_shard_count(ck) == 1 ? "" : "s");
    }
    dsq_ckpt_close(ck);
    return rc;
}
