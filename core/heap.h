/* core/heap.h: a binary min-heap over a caller's array, generated per element
 * type so that the comparison inlines (the tokenizers' merge loops run it for
 * every pair of every word).
 *
 *   DSQ_HEAP_DEFINE(prefix, type, less)
 *
 * defines `static void prefix_push(type *h, size_t *n, type e)` and
 * `static type prefix_pop(type *h, size_t *n)` (n > 0), where
 * `int less(const type *a, const type *b)` orders the heap: pop returns the
 * element no other is less than. The caller sizes h. */
#ifndef DSQ_HEAP_H
#define DSQ_HEAP_H

#include <stddef.h>

#define DSQ_HEAP_DEFINE(prefix, type, less)                                                        \
    static void prefix##_push(type *h, size_t *n, type e) {                                        \
        size_t i = (*n)++;                                                                         \
        while (i > 0) {                                                                            \
            const size_t parent = (i - 1) / 2;                                                     \
            if (!less(&e, &h[parent]))                                                             \
                break;                                                                             \
            h[i] = h[parent];                                                                      \
            i = parent;                                                                            \
        }                                                                                          \
        h[i] = e;                                                                                  \
    }                                                                                              \
    static type prefix##_pop(type *h, size_t *n) {                                                 \
        const type top = h[0];                                                                     \
        const type last = h[--(*n)];                                                               \
        size_t i = 0;                                                                              \
        for (;;) {                                                                                 \
            size_t c = 2 * i + 1;                                                                  \
            if (c >= *n)                                                                           \
                break;                                                                             \
            if (c + 1 < *n && less(&h[c + 1], &h[c]))                                              \
                c++;                                                                               \
            if (!less(&h[c], &last))                                                               \
                break;                                                                             \
            h[i] = h[c];                                                                           \
            i = c;                                                                                 \
        }                                                                                          \
        if (*n > 0)                                                                                \
            h[i] = last;                                                                           \
        return top;                                                                                \
    }

#endif
