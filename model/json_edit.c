/* model/json_edit.c: see json_edit.h. */
#include "model/json_edit.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* The scanner runs only on text jansson has accepted, so it can be simple:
 * it never needs to diagnose, only to skip. */
static size_t skip_ws(const char *s, size_t i, size_t n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static size_t skip_string(const char *s, size_t i, size_t n) {
    i++; /* opening quote */
    while (i < n && s[i] != '"')
        i += (s[i] == '\\') ? 2 : 1;
    return i + 1;
}

static size_t skip_value(const char *s, size_t i, size_t n) {
    if (s[i] == '"')
        return skip_string(s, i, n);
    if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        while (i < n) {
            if (s[i] == '"') {
                i = skip_string(s, i, n);
                continue;
            }
            if (s[i] == '{' || s[i] == '[')
                depth++;
            else if (s[i] == '}' || s[i] == ']') {
                if (--depth == 0)
                    return i + 1;
            }
            i++;
        }
        return i;
    }
    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' &&
           s[i] != '\t' && s[i] != '\r')
        i++;
    return i;
}

typedef struct member {
    size_t key_begin, key_end; /* the quoted key */
    size_t val_begin, val_end;
} member;

/* Compares a quoted JSON key with a plain one. A key written with escapes
 * ("quantization\u005fconfig") is the same key to every JSON reader, so it is
 * decoded before comparing. */
static int key_is(const char *s, const member *m, const char *key) {
    const size_t len = strlen(key);
    const size_t raw = m->key_end - m->key_begin;
    if (memchr(s + m->key_begin, '\\', raw) == NULL)
        return raw == len + 2 && memcmp(s + m->key_begin + 1, key, len) == 0;
    json_error_t jerr;
    json_t *k = json_loadb(s + m->key_begin, raw, JSON_DECODE_ANY, &jerr);
    const int same = json_is_string(k) && json_string_length(k) == len &&
                     memcmp(json_string_value(k), key, len) == 0;
    json_decref(k);
    return same;
}

dsq_status dsq_json_edit_top(const char *text, size_t len, const char *remove_key,
                             const char *set_key, const char *set_value, const char *label,
                             char **out, size_t *out_len, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_t *root = NULL;
    member *mem = NULL;
    char *buf = NULL;
    json_error_t jerr;
    *out = NULL;

    /* jansson lets a NUL byte end a number ("25\0,"); JSON has no place for one,
     * and the scanner would copy it into the output */
    const char *nul = memchr(text, '\0', len);
    DSQ_CHECK(nul == NULL, DSQ_FORMAT, err, "%s: NUL byte at offset %zu", label,
              (size_t)(nul - text));
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    DSQ_CHECK(root != NULL, DSQ_FORMAT, err, "%s: %s (line %d)", label, jerr.text, jerr.line);
    DSQ_CHECK(json_is_object(root), DSQ_FORMAT, err, "%s: not a JSON object", label);
    const size_t nmem = json_object_size(root);
    mem = calloc(nmem ? nmem : 1, sizeof *mem);
    DSQ_CHECK(mem != NULL, DSQ_NOMEM, err, "out of memory");

    size_t i = skip_ws(text, 0, len); /* at '{' */
    const size_t open = i;
    size_t close = len;
    size_t k = 0;
    i = skip_ws(text, i + 1, len);
    while (i < len && text[i] != '}' && k < nmem) {
        member *m = &mem[k++];
        m->key_begin = i;
        m->key_end = skip_string(text, i, len);
        i = skip_ws(text, m->key_end, len) + 1; /* past ':' */
        m->val_begin = skip_ws(text, i, len);
        m->val_end = skip_value(text, m->val_begin, len);
        i = skip_ws(text, m->val_end, len);
        if (i < len && text[i] == ',')
            i = skip_ws(text, i + 1, len);
    }
    close = i;
    DSQ_CHECK(k == nmem && close < len && text[close] == '}', DSQ_FORMAT, err,
              "%s: could not locate the members of the top-level object", label);

    /* Output: '{', the original leading whitespace, the kept members joined by
     * the separator that followed each of them in the original (comma and
     * formatting), the original whitespace before '}', and the rest. */
    const char *first_sep = ", ";
    size_t first_sep_len = 2;
    if (nmem > 1) {
        first_sep = text + mem[0].val_end;
        first_sep_len = mem[1].key_begin - mem[0].val_end;
    }
    /* an appended member repeats the first separator, which can be any length */
    const size_t cap = len + first_sep_len + (set_key ? strlen(set_key) : 0) +
                       (set_value ? strlen(set_value) : 0) + 64;
    buf = malloc(cap);
    DSQ_CHECK(buf != NULL, DSQ_NOMEM, err, "out of memory");
    size_t o = open + 1;
    memcpy(buf, text, o);
    if (nmem > 0) {
        const size_t lead = mem[0].key_begin - (open + 1);
        memcpy(buf + o, text + open + 1, lead);
        o += lead;
    }
    int set_done = 0;
    ssize_t prev = -1; /* index of the previous kept member */
    for (size_t j = 0; j < nmem; j++) {
        const member *m = &mem[j];
        if (remove_key != NULL && key_is(text, m, remove_key))
            continue;
        if (prev >= 0) {
            const size_t a = mem[prev].val_end, b = mem[prev + 1].key_begin;
            memcpy(buf + o, text + a, b - a);
            o += b - a;
        }
        if (set_key != NULL && key_is(text, m, set_key)) {
            const size_t klen = m->val_begin - m->key_begin;
            memcpy(buf + o, text + m->key_begin, klen);
            o += klen;
            o += (size_t)snprintf(buf + o, cap - o, "\"%s\"", set_value);
            set_done = 1;
        } else {
            memcpy(buf + o, text + m->key_begin, m->val_end - m->key_begin);
            o += m->val_end - m->key_begin;
        }
        prev = (ssize_t)j;
    }
    if (set_key != NULL && !set_done) {
        if (prev >= 0) {
            memcpy(buf + o, first_sep, first_sep_len);
            o += first_sep_len;
        }
        o += (size_t)snprintf(buf + o, cap - o, "\"%s\": \"%s\"", set_key, set_value);
    }
    /* the whitespace before '}' and whatever follows it */
    const size_t tail = nmem > 0 ? mem[nmem - 1].val_end : open + 1;
    size_t ws = close;
    while (ws > tail && (text[ws - 1] == ' ' || text[ws - 1] == '\t' || text[ws - 1] == '\n' ||
                         text[ws - 1] == '\r'))
        ws--;
    memcpy(buf + o, text + ws, len - ws);
    o += len - ws;
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    buf = NULL;
cleanup:
    free(buf);
    free(mem);
    json_decref(root);
    return st;
}
