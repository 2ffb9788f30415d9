/* core/le.h: little-endian reads and writes of fixed-size integers and floats.
 *
 * Every file format dsq reads or writes (GGUF, safetensors, imatrix.dat, llama2.c's
 * tokenizer.bin, SentencePiece's protobuf fixed32, ggml's block fields) stores numbers
 * little-endian. Decoding the bytes explicitly, rather than memcpy into a host integer,
 * states the file's byte order in the code and costs nothing: compilers turn these into
 * one load on a little-endian host. The one set, so no file keeps its own copy. */
#ifndef DSQ_LE_H
#define DSQ_LE_H

#include <stdint.h>
#include <string.h>

static inline uint16_t dsq_le_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static inline uint32_t dsq_le_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t dsq_le_u64(const uint8_t *p) {
    return (uint64_t)dsq_le_u32(p) | (uint64_t)dsq_le_u32(p + 4) << 32;
}

static inline int32_t dsq_le_i32(const uint8_t *p) {
    return (int32_t)dsq_le_u32(p);
}

/* An IEEE binary32 stored little-endian (its bits reinterpreted, NaN payloads kept). */
static inline float dsq_le_f32(const uint8_t *p) {
    const uint32_t u = dsq_le_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline void dsq_le_put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void dsq_le_put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#endif
