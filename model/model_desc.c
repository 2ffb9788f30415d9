/* model/model_desc.c: config.json -> dsq_model_desc (jansson; see model_desc.h). */
#include "model/model_desc.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct member {
    const char *key;
    size_t off; /* of the dsq_cfg_val in dsq_model_desc */
} member;

#define DSQ_DESC_TOP_(name) {#name, offsetof(dsq_model_desc, name)},
#define DSQ_DESC_ROPE_(name) {#name, offsetof(dsq_model_desc, rs.name)},
#define DSQ_DESC_QUANT_(name) {#name, offsetof(dsq_model_desc, qc.name)},
static const member top[] = {DSQ_MODEL_DESC_TOP(DSQ_DESC_TOP_)};
static const member rope[] = {DSQ_MODEL_DESC_ROPE(DSQ_DESC_ROPE_)};
static const member quant[] = {DSQ_MODEL_DESC_QUANT(DSQ_DESC_QUANT_)};

static dsq_cfg_val *val_at(dsq_model_desc *d, size_t off) {
    return (dsq_cfg_val *)(void *)((char *)d + off);
}

/* The bytes every string member needs (with its NUL), so one block holds them all. */
static size_t string_bytes(const json_t *obj, const member *m, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(obj, m[i].key);
        if (json_is_string(v))
            total += json_string_length(v) + 1;
    }
    return total;
}

/* Records the members m[0..n) of obj (an object, or NULL: all absent). A string is cut at
 * its first NUL byte, as every C reader of json_string_value sees it. */
static void read_members(dsq_model_desc *d, const json_t *obj, const member *m, size_t n,
                         const char *where, char **strings) {
    for (size_t i = 0; i < n; i++) {
        dsq_cfg_val *v = val_at(d, m[i].off);
        const json_t *j = json_object_get(obj, m[i].key);
        memset(v, 0, sizeof *v);
        v->key = m[i].key;
        v->where = where;
        if (j == NULL)
            continue; /* DSQ_CFG_ABSENT; json_typeof would dereference it */
        switch (json_typeof(j)) {
            case JSON_NULL: v->kind = DSQ_CFG_NULL; break;
            case JSON_INTEGER:
                v->kind = DSQ_CFG_INT;
                v->i = (int64_t)json_integer_value(j);
                v->num = json_number_value(j);
                break;
            case JSON_REAL:
                v->kind = DSQ_CFG_REAL;
                v->num = json_real_value(j);
                break;
            case JSON_TRUE: v->kind = DSQ_CFG_TRUE; break;
            case JSON_FALSE: v->kind = DSQ_CFG_FALSE; break;
            case JSON_STRING: {
                const size_t len = json_string_length(j);
                v->kind = DSQ_CFG_STRING;
                memcpy(*strings, json_string_value(j), len);
                (*strings)[len] = '\0';
                v->str = *strings;
                *strings += len + 1;
                break;
            }
            case JSON_ARRAY: v->kind = DSQ_CFG_ARRAY; break;
            case JSON_OBJECT: v->kind = DSQ_CFG_OBJECT; break;
        }
    }
}

dsq_status dsq_model_desc_parse(const char *text, size_t len, const char *label,
                                dsq_model_desc *d, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_error_t je;
    memset(d, 0, sizeof *d);
    json_t *root = json_loadb(text, len, 0, &je);
    DSQ_CHECK(root != NULL, DSQ_FORMAT, err, "%s: line %d: %s", label, je.line, je.text);
    DSQ_CHECK(json_is_object(root), DSQ_FORMAT, err, "%s: not a JSON object", label);
    const json_t *rs = json_object_get(root, "rope_scaling");
    const json_t *qc = json_object_get(root, "quantization_config");
    const json_t *archs = json_object_get(root, "architectures");
    const json_t *arch0 = json_array_get(archs, 0); /* NULL unless an array */
    rs = json_is_object(rs) ? rs : NULL;
    qc = json_is_object(qc) ? qc : NULL;
    const size_t nt = sizeof top / sizeof top[0], nr = sizeof rope / sizeof rope[0],
                 nq = sizeof quant / sizeof quant[0];
    const size_t bytes = string_bytes(root, top, nt) + string_bytes(rs, rope, nr) +
                         string_bytes(qc, quant, nq) +
                         (json_is_string(arch0) ? json_string_length(arch0) + 1 : 0);
    DSQ_CHECK((d->strings_ = malloc(bytes ? bytes : 1)) != NULL, DSQ_NOMEM, err,
              "out of memory");
    char *s = d->strings_;
    read_members(d, root, top, nt, "", &s);
    read_members(d, rs, rope, nr, "rope_scaling.", &s);
    read_members(d, qc, quant, nq, "quantization_config.", &s);
    if (json_is_string(arch0)) {
        const size_t n = json_string_length(arch0);
        memcpy(s, json_string_value(arch0), n);
        s[n] = '\0';
        d->architecture = s;
    }
    const json_t *bs = json_object_get(qc, "weight_block_size");
    if (json_is_array(bs) && json_array_size(bs) == 2 && json_is_integer(json_array_get(bs, 0)) &&
        json_is_integer(json_array_get(bs, 1))) {
        d->block_is_pair = 1;
        d->block[0] = (int64_t)json_integer_value(json_array_get(bs, 0));
        d->block[1] = (int64_t)json_integer_value(json_array_get(bs, 1));
    }
cleanup:
    json_decref(root);
    return st;
}

void dsq_model_desc_free(dsq_model_desc *d) {
    if (d == NULL)
        return;
    free(d->strings_);
    d->strings_ = NULL;
}

const dsq_cfg_val *dsq_model_desc_get(const dsq_model_desc *d, const char *key) {
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (strcmp(top[i].key, key) == 0)
            return val_at((dsq_model_desc *)(uintptr_t)d, top[i].off);
    return NULL;
}

dsq_status dsq_model_desc_fp8_block(const dsq_model_desc *d, const char *label, int64_t *rows,
                                    int64_t *cols, int *found, dsq_err *err) {
    dsq_status st = DSQ_OK;
    *rows = 128;
    *cols = 128;
    *found = 0;
    if (d->qc.weight_block_size.kind == DSQ_CFG_ABSENT)
        return DSQ_OK;
    DSQ_CHECK(d->block_is_pair, DSQ_FORMAT, err,
              "%s: quantization_config.weight_block_size must be two integers", label);
    *rows = d->block[0];
    *cols = d->block[1];
    DSQ_CHECK(*rows > 0 && *cols > 0 && *rows <= (1 << 20) && *cols <= (1 << 20), DSQ_FORMAT, err,
              "%s: weight_block_size [%lld, %lld] out of range", label, (long long)*rows,
              (long long)*cols);
    *found = 1;
cleanup:
    return st;
}

dsq_status dsq_config_fp8_block(const char *text, size_t len, const char *label, int64_t *rows,
                                int64_t *cols, int *found, dsq_err *err) {
    dsq_model_desc d;
    *rows = *cols = 128;
    *found = 0;
    dsq_status st = dsq_model_desc_parse(text, len, label, &d, err);
    if (st == DSQ_OK)
        st = dsq_model_desc_fp8_block(&d, label, rows, cols, found, err);
    dsq_model_desc_free(&d);
    return st;
}
