/* core/tensor.c: small helpers for tensor views. */
#include "core/tensor.h"

#include <inttypes.h>
#include <stdio.h>

void dsq_shape_format(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t used = 0;
    if (size == 0)
        return;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}
