/* core/status.c: names and messages of dsq_status, and the error record. */
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {
#define DSQ_X_(name, msg) "DSQ_" #name,
    DSQ_STATUS_MAP(DSQ_X_)
#undef DSQ_X_
};

static const char *const status_msgs[] = {
#define DSQ_X_(name, msg) msg,
    DSQ_STATUS_MAP(DSQ_X_)
#undef DSQ_X_
};

const char *dsq_status_name(dsq_status s) {
    return (unsigned)s < DSQ_STATUS_COUNT ? status_names[s] : "DSQ_?";
}

const char *dsq_status_str(dsq_status s) {
    return (unsigned)s < DSQ_STATUS_COUNT ? status_msgs[s] : "unknown status";
}

/* A message too long for the record keeps its start (the file, usually) and
 * its end (what went wrong) with "..." between them: a tensor name of 100 KB
 * in a hostile header would otherwise push the reason out. The cuts move to
 * UTF-8 character boundaries. */
static void elide_middle(char *dst, size_t cap, const char *full, size_t n) {
    size_t head = (cap - 1) / 3, tail = cap - 1 - head - 3;
    while (head > 0 && ((unsigned char)full[head] & 0xC0) == 0x80)
        head--;
    size_t from = n - tail;
    while (from < n && ((unsigned char)full[from] & 0xC0) == 0x80)
        from++;
    memcpy(dst, full, head);
    memcpy(dst + head, "...", 3);
    memcpy(dst + head + 3, full + from, n - from);
    dst[head + 3 + (n - from)] = '\0';
}

dsq_status dsq_err_vset(dsq_err *err, dsq_status code, const char *fmt, va_list ap) {
    if (err == NULL || err->code != DSQ_OK)
        return code;
    err->code = code;
    va_list again;
    va_copy(again, ap);
    const int n = vsnprintf(err->text, sizeof(err->text), fmt, ap);
    if (n >= (int)sizeof(err->text)) {
        char *full = malloc((size_t)n + 1); /* without it, plain truncation stays */
        if (full != NULL && vsnprintf(full, (size_t)n + 1, fmt, again) == n)
            elide_middle(err->text, sizeof(err->text), full, (size_t)n);
        free(full);
    }
    va_end(again);
    return code;
}

dsq_status dsq_err_set(dsq_err *err, dsq_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dsq_err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void dsq_err_clear(dsq_err *err) {
    if (err != NULL) {
        err->code = DSQ_OK;
        err->text[0] = '\0';
    }
}
