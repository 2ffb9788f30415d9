/* gguf_export/gguf_types.c: the type of every tensor of a GGUF export (see gguf_plan.h):
 * the preset's per-tensor rules (gguf_rules.h), --pure, the --tensor-type /
 * --output-tensor-type / --token-embedding-type overrides, the row-length fallback, a GGUF
 * input's unchanged types (a byte copy), and each quantized tensor's imatrix entry, all as
 * llama-quantize decides them. */
#include "gguf_export/gguf_plan.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "quantize/quant.h"

/* A quantizer type by name ("q6_k" too). DSQ_DTYPE_INVALID when dsq cannot write it. */
static dsq_dtype qtype_from_name(const char *s) {
    char up[32];
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < sizeof up; i++)
        up[i] = (char)toupper((unsigned char)s[i]);
    up[i] = '\0';
    const dsq_dtype t = dsq_dtype_from_name(up);
    return t != DSQ_DTYPE_INVALID && dsq_quant_supported(t) ? t : DSQ_DTYPE_INVALID;
}

static int is_quantized(dsq_dtype t) {
    return t != DSQ_DTYPE_F32 && t != DSQ_DTYPE_F16 && t != DSQ_DTYPE_BF16;
}

static int64_t block_of(dsq_dtype t) {
    return (int64_t)dsq_dtype_get(t)->block_size;
}

dsq_status dsq_qz_plan_options(dsq_qz_plan *p, dsq_err *err) {
    const dsq_qz_opts *o = p->o;
    p->ft = dsq_ftype_find(o->type);
    if (p->ft == NULL)
        return dsq_err_set(err, DSQ_INVALID_ARG,
                           "unknown type '%s' (see `dsq quantize --help` for the list)",
                           o->type ? o->type : "");
    p->out_type = p->embd_type = DSQ_DTYPE_INVALID;
    if (o->output_tensor_type &&
        (p->out_type = qtype_from_name(o->output_tensor_type)) == DSQ_DTYPE_INVALID)
        return dsq_err_set(err, DSQ_INVALID_ARG, "--output-tensor-type: unknown type '%s'",
                           o->output_tensor_type);
    if (o->token_embedding_type &&
        (p->embd_type = qtype_from_name(o->token_embedding_type)) == DSQ_DTYPE_INVALID)
        return dsq_err_set(err, DSQ_INVALID_ARG, "--token-embedding-type: unknown type '%s'",
                           o->token_embedding_type);
    if (o->n_tensor_types > 0) {
        p->ov = calloc(o->n_tensor_types, sizeof *p->ov);
        if (p->ov == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < o->n_tensor_types; i++) {
        const char *spec = o->tensor_types[i];
        const char *eq = strrchr(spec, '=');
        if (eq == NULL || eq == spec)
            return dsq_err_set(err, DSQ_INVALID_ARG, "--tensor-type '%s': expected PATTERN=TYPE",
                               spec);
        dsq_qz_override *v = &p->ov[p->n_ov];
        if ((v->type = qtype_from_name(eq + 1)) == DSQ_DTYPE_INVALID)
            return dsq_err_set(err, DSQ_INVALID_ARG, "--tensor-type '%s': unknown type '%s'",
                               spec, eq + 1);
        char *pat = strndup(spec, (size_t)(eq - spec));
        if (pat == NULL)
            return dsq_err_set(err, DSQ_NOMEM, "out of memory");
        const int rc = regcomp(&v->re, pat, REG_EXTENDED | REG_NOSUB);
        free(pat);
        if (rc != 0)
            return dsq_err_set(err, DSQ_INVALID_ARG, "--tensor-type '%s': bad regular expression",
                               spec);
        p->n_ov++; /* compiled: regfree'd by dsq_qz_plan_free */
    }
    return DSQ_OK;
}

/* The imatrix entry of a tensor about to be quantized, as llama-quantize picks it: none
 * when absent (said at INFO level), an error when its size is not ne[0] x ne[2], except
 * for token_embd.weight, which is then quantized without one. */
static dsq_status pick_imatrix(const dsq_qz_plan *p, dsq_qz_entry *e, dsq_err *err) {
    int64_t n = 0;
    const dsq_qz_tensor *t = &e->t;
    const float *v = dsq_imatrix_find(p->im, t->name, &n);
    const int64_t want = t->ne[0] * t->ne[2];
    if (v == NULL) {
        dsq_qz_say(p, DSQ_LOG_INFO, "imatrix: no entry for %s (quantized without one)", t->name);
        return DSQ_OK;
    }
    if (n == want) {
        e->imx = v;
        return DSQ_OK;
    }
    if (strcmp(t->name, "token_embd.weight") == 0) {
        dsq_qz_say(p, DSQ_LOG_INFO, "imatrix: entry for %s has %lld values, not %lld; not used",
                   t->name, (long long)n, (long long)want);
        return DSQ_OK;
    }
    return dsq_err_set(err, DSQ_FORMAT,
                       "imatrix entry '%s' has %lld values but the tensor needs %lld (ne[0] "
                       "%lld x %lld matrices): an imatrix of another model?",
                       t->name, (long long)n, (long long)want, (long long)t->ne[0],
                       (long long)t->ne[2]);
}

/* The type llama-quantize gives a quantizable tensor: the rule, then the overrides. */
static dsq_status rule_type(const dsq_qz_plan *p, dsq_qz_state *s, dsq_qz_tensor *t,
                            dsq_dtype *ty, dsq_err *err) {
    dsq_status st = DSQ_OK;
    *ty = p->ft->base;
    if (!p->o->pure && is_quantized(*ty))
        DSQ_TRY(dsq_qz_rule_type(s, p->ft, t->name, t->ne[0], ty, &t->fallback, err));
    for (size_t k = 0; k < p->n_ov; k++)
        if (regexec(&p->ov[k].re, t->name, 0, NULL, 0) == 0) {
            *ty = p->ov[k].type;
            t->fallback = 0;
            break;
        }
    if (p->embd_type != DSQ_DTYPE_INVALID && strcmp(t->name, "token_embd.weight") == 0)
        *ty = p->embd_type;
    if (p->out_type != DSQ_DTYPE_INVALID && strcmp(t->name, "output.weight") == 0)
        *ty = p->out_type;
    if (t->fallback)
        dsq_qz_say(p, DSQ_LOG_INFO,
                   "%s: row length %lld is not a multiple of the preset type's block, using %s",
                   t->name, (long long)t->ne[0], dsq_dtype_name(*ty));
cleanup:
    return st;
}

dsq_status dsq_qz_plan_types(dsq_qz_plan *p, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_qz_state s;
    memset(&s, 0, sizeof s);
    s.m = p->model;
    s.m.has_imatrix = p->im != NULL;
    for (size_t i = 0; i < p->n_e; i++) {
        const char *n = p->e[i].t.name;
        if (strstr(n, "attn_v.weight") || strstr(n, "attn_qkv.weight") ||
            strstr(n, "attn_kv_b.weight"))
            s.m.n_attention_wv++;
        if (strcmp(n, "output.weight") == 0)
            s.m.has_output = 1;
    }
    const int gguf_in = p->gin != NULL;
    for (size_t i = 0; i < p->n_e; i++) {
        dsq_qz_entry *e = &p->e[i];
        dsq_qz_tensor *t = &e->t;
        /* the type the tensor has in the input (HF tensors count as the converter's F32) */
        const dsq_dtype src = gguf_in ? e->src[0].dtype : DSQ_DTYPE_F32;
        dsq_dtype ty = src;
        if (dsq_qz_is_quantizable(t->name, (int)t->n_dims))
            DSQ_TRY(rule_type(p, &s, t, &ty, err));
        if (gguf_in && ty == src) { /* llama-quantize: same type, nothing to do */
            e->copy = 1;
            t->type = ty;
            t->fallback = 0;
            t->nbytes = e->src[0].part[0].nbytes;
            continue;
        }
        DSQ_CHECK(t->ne[0] % block_of(ty) == 0, DSQ_UNSUPPORTED, err,
                  "tensor '%s': row length %lld is not a multiple of %s's block of %lld, and "
                  "no fallback applies (use a preset, or --tensor-type to pick another type)",
                  t->name, (long long)t->ne[0], dsq_dtype_name(ty), (long long)block_of(ty));
        if (gguf_in) {
            DSQ_CHECK(!is_quantized(src) || p->o->allow_requantize, DSQ_UNSUPPORTED, err,
                      "tensor '%s' is already %s: requantizing is disabled (as in "
                      "llama-quantize; --allow-requantize enables it)",
                      t->name, dsq_dtype_name(src));
            DSQ_CHECK(dsq_quant_supported(src) && e->src[0].readable, DSQ_UNSUPPORTED, err,
                      "tensor '%s': dsq cannot dequantize %s", t->name, dsq_dtype_name(src));
            DSQ_CHECK(t->ne[3] == 1, DSQ_UNSUPPORTED, err,
                      "tensor '%s' has 4 dimensions; only 2-D and 3-D tensors are quantized",
                      t->name);
        }
        size_t row = 0;
        DSQ_TRY(dsq_quant_row_size(ty, t->ne[0], &row));
        t->type = ty;
        t->nbytes = (uint64_t)row * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        if (p->im != NULL && ty != src)
            DSQ_TRY(pick_imatrix(p, e, err));
    }
cleanup:
    return st;
}

void dsq_qz_plan_report_imatrix(const dsq_qz_plan *p, size_t *used) {
    size_t unmatched = 0;
    for (size_t i = 0; i < dsq_imatrix_count(p->im); i++) {
        const char *n = dsq_imatrix_name(p->im, i);
        size_t k = 0;
        while (k < p->n_e && strcmp(p->e[k].t.name, n) != 0)
            k++;
        unmatched += k == p->n_e;
    }
    *used = 0;
    for (size_t k = 0; k < p->n_e; k++)
        *used += p->e[k].imx != NULL;
    /* llama-quantize ignores them silently; say so, and warn when none at all matches
     * (the imatrix of another model) */
    if (unmatched > 0)
        dsq_qz_say(p, unmatched == dsq_imatrix_count(p->im) ? DSQ_LOG_WARN : DSQ_LOG_INFO,
                   "imatrix: %zu of its %zu entries name no tensor of this model (ignored, as "
                   "llama-quantize does)",
                   unmatched, dsq_imatrix_count(p->im));
}
