/* core/status.c: names and messages of dsq_status, and the error record. */
#include "core/status.h"

#include <stdio.h>
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

dsq_status dsq_err_vset(dsq_err *err, dsq_status code, const char *fmt, va_list ap) {
    if (err == NULL || err->code != DSQ_OK)
        return code;
    err->code = code;
    vsnprintf(err->text, sizeof(err->text), fmt, ap);
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
