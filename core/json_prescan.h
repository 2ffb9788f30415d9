/* core/json_prescan.h: a look at raw JSON before a JSON library builds a tree
 * of it.
 *
 * jansson allocates a node for every value before any schema rule can reject
 * the document, so a hostile 100 MB header of `[[[[...` or of a million tiny
 * members costs gigabytes. The formats that read JSON from downloaded files
 * know how deep, how wide and how many members a valid document can be; this
 * scan checks those bounds on the bytes in one pass, allocating nothing. It
 * skips strings and does not validate anything else: the parser still does. */
#ifndef DSQ_JSON_PRESCAN_H
#define DSQ_JSON_PRESCAN_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define DSQ_JSON_PRESCAN_MAX_DEPTH 16

typedef struct dsq_json_limits {
    int max_depth;       /* nesting of objects and arrays, at most DSQ_JSON_PRESCAN_MAX_DEPTH */
    size_t max_array;    /* elements of one array */
    size_t max_members;  /* object members in the whole document; 0 = no limit */
} dsq_json_limits;

typedef enum dsq_json_excess {
    DSQ_JSON_WITHIN = 0,
    DSQ_JSON_TOO_DEEP,    /* a DSQ_FORMAT error: no valid file is nested so */
    DSQ_JSON_TOO_LONG,    /* an array over max_array: DSQ_UNSUPPORTED */
    DSQ_JSON_TOO_MANY,    /* over max_members: DSQ_UNSUPPORTED */
} dsq_json_excess;

/* Returns n when the text is within the limits; otherwise the offset where a
 * limit was crossed, and *what says which. */
size_t dsq_json_prescan(const uint8_t *p, size_t n, const dsq_json_limits *lim,
                        dsq_json_excess *what);

/* One line for a crossed limit: "JSON nested deeper than 3 levels at byte 812". */
dsq_status dsq_json_prescan_error(dsq_err *err, const char *label, const dsq_json_limits *lim,
                                  dsq_json_excess what, uint64_t offset);

#endif
