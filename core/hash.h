/* core/hash.h: the content hash of dsq's manifests, XXH3-64 (seed 0).
 *
 * Why XXH3 and not XXH64: a conversion hashes every source byte and every
 * output byte (3.6 GB for a 1.2 GB FP8 checkpoint) on the thread that also
 * converts. XXH64 runs at about 7 GB/s here, half a second of that thread's
 * time against the ~0.5 s a cp of the output takes; XXH3 with the library's
 * runtime dispatch (AVX2 / AVX-512 when the CPU has them) runs at about 30.
 * The value is the one `xxhsum -H3` prints. */
#ifndef DSQ_HASH_H
#define DSQ_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xxh_x86dispatch.h>
#define DSQ_XXH3_UPDATE XXH3_64bits_update_dispatch
#define DSQ_XXH3_ONESHOT XXH3_64bits_dispatch
#else
#define DSQ_XXH3_UPDATE XXH3_64bits_update
#define DSQ_XXH3_ONESHOT XXH3_64bits
#endif

typedef XXH3_state_t dsq_hash;

static inline dsq_hash *dsq_hash_new(void) {
    dsq_hash *h = XXH3_createState();
    if (h != NULL)
        XXH3_64bits_reset(h);
    return h;
}
static inline void dsq_hash_reset(dsq_hash *h) {
    XXH3_64bits_reset(h);
}
static inline void dsq_hash_update(dsq_hash *h, const void *p, size_t n) {
    DSQ_XXH3_UPDATE(h, p, n);
}
static inline uint64_t dsq_hash_digest(const dsq_hash *h) {
    return XXH3_64bits_digest(h);
}
static inline void dsq_hash_free(dsq_hash *h) {
    if (h != NULL)
        XXH3_freeState(h);
}
static inline uint64_t dsq_hash_buf(const void *p, size_t n) {
    return DSQ_XXH3_ONESHOT(p, n);
}

#endif
