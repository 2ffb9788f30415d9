/* core/json_prescan.c: see json_prescan.h. */
#include "core/json_prescan.h"

size_t dsq_json_prescan(const uint8_t *p, size_t n, const dsq_json_limits *lim,
                        dsq_json_excess *what) {
    char kind[DSQ_JSON_PRESCAN_MAX_DEPTH + 1]; /* '{' or '[' per open level */
    size_t commas[DSQ_JSON_PRESCAN_MAX_DEPTH + 1];
    const int max_depth =
        lim->max_depth < DSQ_JSON_PRESCAN_MAX_DEPTH ? lim->max_depth : DSQ_JSON_PRESCAN_MAX_DEPTH;
    size_t members = 0;
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t c = p[i];
        if (c == '"') {
            for (i++; i < n && p[i] != '"'; i++)
                i += p[i] == '\\';
        } else if (c == '{' || c == '[') {
            if (depth == max_depth) {
                *what = DSQ_JSON_TOO_DEEP;
                return i;
            }
            depth++;
            kind[depth] = (char)c;
            commas[depth] = 0;
        } else if (c == '}' || c == ']') {
            depth -= depth > 0;
        } else if (c == ':' && lim->max_members != 0 && ++members > lim->max_members) {
            *what = DSQ_JSON_TOO_MANY;
            return i;
        } else if (c == ',' && depth > 0 && kind[depth] == '[' &&
                   ++commas[depth] >= lim->max_array) {
            *what = DSQ_JSON_TOO_LONG;
            return i;
        }
    }
    *what = DSQ_JSON_WITHIN;
    return n;
}

dsq_status dsq_json_prescan_error(dsq_err *err, const char *label, const dsq_json_limits *lim,
                                  dsq_json_excess what, uint64_t offset) {
    switch (what) {
    case DSQ_JSON_TOO_DEEP:
        return dsq_err_set(err, DSQ_FORMAT, "%s: JSON nested deeper than %d levels (at byte %llu)",
                           label, lim->max_depth, (unsigned long long)offset);
    case DSQ_JSON_TOO_LONG:
        return dsq_err_set(err, DSQ_UNSUPPORTED,
                           "%s: a JSON array of more than %zu elements (at byte %llu)", label,
                           lim->max_array, (unsigned long long)offset);
    case DSQ_JSON_TOO_MANY:
        return dsq_err_set(err, DSQ_UNSUPPORTED,
                           "%s: more than %zu JSON object members (at byte %llu)", label,
                           lim->max_members, (unsigned long long)offset);
    case DSQ_JSON_WITHIN:
        break;
    }
    return DSQ_OK;
}
