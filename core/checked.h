/* core/checked.h: size arithmetic that cannot overflow silently.
 *
 * Every length, count and offset read from a file goes through these before
 * it sizes an allocation or an address. Each returns 1 when the result is
 * exact and 0 on overflow (the result is then unspecified). */
#ifndef DSQ_CHECKED_H
#define DSQ_CHECKED_H

#include <stddef.h>
#include <stdint.h>

static inline int dsq_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

static inline int dsq_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

static inline int dsq_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

static inline int dsq_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* Product of n dimensions; 1 for n == 0 (a scalar has one element). */
static inline int dsq_nelements(const int64_t *shape, int n, uint64_t *out) {
    uint64_t p = 1;
    for (int i = 0; i < n; i++) {
        if (shape[i] < 0 || !dsq_mul_u64(p, (uint64_t)shape[i], &p))
            return 0;
    }
    *out = p;
    return 1;
}

static inline uint64_t dsq_ceil_div_u64(uint64_t a, uint64_t b) {
    return a / b + (a % b != 0);
}

#endif
