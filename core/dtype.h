/* core/dtype.h: every element and block type dsq reads or writes, in one table.
 *
 * Plain element types (safetensors dtypes) and GGUF block types share the
 * table, so a tensor view is always (dtype, shape, bytes) and its size is
 * nelements / block_size * block_bytes, whatever the container. Sub-byte
 * safetensors types are blocks too: F4 is 2 elements in 1 byte, F6 4 in 3. */
#ifndef DSQ_DTYPE_H
#define DSQ_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum dsq_dtype {
    DSQ_DTYPE_INVALID = 0,
    /* safetensors element types */
    DSQ_DTYPE_BOOL,
    DSQ_DTYPE_U8,
    DSQ_DTYPE_I8,
    DSQ_DTYPE_U16,
    DSQ_DTYPE_I16,
    DSQ_DTYPE_U32,
    DSQ_DTYPE_I32,
    DSQ_DTYPE_U64,
    DSQ_DTYPE_I64,
    DSQ_DTYPE_F16,
    DSQ_DTYPE_BF16,
    DSQ_DTYPE_F32,
    DSQ_DTYPE_F64,
    DSQ_DTYPE_C64,
    DSQ_DTYPE_F8_E4M3,
    DSQ_DTYPE_F8_E5M2,
    DSQ_DTYPE_F8_E8M0,
    DSQ_DTYPE_F8_E4M3FNUZ,
    DSQ_DTYPE_F8_E5M2FNUZ,
    DSQ_DTYPE_F4,
    DSQ_DTYPE_F6_E2M3,
    DSQ_DTYPE_F6_E3M2,
    /* GGUF block types (ggml_type ids in the table) */
    DSQ_DTYPE_Q4_0,
    DSQ_DTYPE_Q4_1,
    DSQ_DTYPE_Q5_0,
    DSQ_DTYPE_Q5_1,
    DSQ_DTYPE_Q8_0,
    DSQ_DTYPE_Q8_1,
    DSQ_DTYPE_Q2_K,
    DSQ_DTYPE_Q3_K,
    DSQ_DTYPE_Q4_K,
    DSQ_DTYPE_Q5_K,
    DSQ_DTYPE_Q6_K,
    DSQ_DTYPE_Q8_K,
    DSQ_DTYPE_IQ2_XXS,
    DSQ_DTYPE_IQ2_XS,
    DSQ_DTYPE_IQ3_XXS,
    DSQ_DTYPE_IQ1_S,
    DSQ_DTYPE_IQ4_NL,
    DSQ_DTYPE_IQ3_S,
    DSQ_DTYPE_IQ2_S,
    DSQ_DTYPE_IQ4_XS,
    DSQ_DTYPE_IQ1_M,
    DSQ_DTYPE_TQ1_0,
    DSQ_DTYPE_TQ2_0,
    DSQ_DTYPE_MXFP4,
    DSQ_DTYPE_COUNT
} dsq_dtype;

typedef struct dsq_dtype_info {
    const char *name;    /* dsq's name, also the safetensors string where there is one */
    int in_safetensors;  /* 1 if the safetensors format defines this dtype */
    int ggml_id;         /* ggml_type id, or -1 if GGUF has no such type */
    uint32_t block_size; /* elements per block (1 for plain types) */
    uint32_t block_bytes;
    int is_float; /* 1 for floating-point element types */
} dsq_dtype_info;

/* NULL for DSQ_DTYPE_INVALID or out-of-range values. */
const dsq_dtype_info *dsq_dtype_get(dsq_dtype t);
const char *dsq_dtype_name(dsq_dtype t); /* "?" when invalid */

/* Lookups return DSQ_DTYPE_INVALID when nothing matches. The safetensors one
 * compares exactly `len` bytes, so it works on unterminated JSON slices. */
dsq_dtype dsq_dtype_from_safetensors(const char *s, size_t len);
dsq_dtype dsq_dtype_from_name(const char *s);
dsq_dtype dsq_dtype_from_ggml(int ggml_id);

/* Bytes for n elements; 0 and *ok = 0 when n is not a multiple of the block
 * size or the product overflows. */
uint64_t dsq_dtype_nbytes(dsq_dtype t, uint64_t nelements, int *ok);

/* The safetensors writer's order: "increasing alignment" rank of the dtype in
 * the reference enum (larger first keeps every tensor naturally aligned). */
int dsq_dtype_st_rank(dsq_dtype t);

#endif
