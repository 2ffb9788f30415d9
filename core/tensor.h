/* core/tensor.h: the tensor view every reader hands out.
 *
 * A view borrows its name and data from the reader that made it (valid until
 * that reader is closed). shape[0] is the slowest-varying dimension, as in
 * safetensors and torch; a GGUF reader reverses ggml's ne[] into this order. */
#ifndef DSQ_TENSOR_H
#define DSQ_TENSOR_H

#include <stdint.h>

#include "core/dtype.h"

#define DSQ_MAX_DIMS 8

typedef struct dsq_tensor_view {
    const char *name;              /* NUL-terminated, borrowed */
    dsq_dtype dtype;
    int ndim;                      /* 0 for a scalar */
    int64_t shape[DSQ_MAX_DIMS];   /* slowest dimension first */
    const void *data;              /* borrowed; NULL only when nbytes == 0 */
    uint64_t nbytes;
} dsq_tensor_view;

/* "[200, 300]" into buf (always NUL-terminated). */
void dsq_shape_format(const int64_t *shape, int ndim, char *buf, size_t size);

#endif
