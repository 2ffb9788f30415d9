/* core/dtype.c: the dtype table. Block sizes and bytes per block for the GGUF
 * types are ggml's (ggml-common.h; specs/formats.md §2.3); safetensors names and
 * bit widths are the reference crate's (tensor.rs; formats.md §1.2). */
#include "core/dtype.h"

#include <string.h>
#include <strings.h>

#include "core/checked.h"

static const dsq_dtype_info dtype_table[DSQ_DTYPE_COUNT] = {
    [DSQ_DTYPE_BOOL] = {"BOOL", 1, -1, 1, 1, 0},
    [DSQ_DTYPE_U8] = {"U8", 1, -1, 1, 1, 0},
    [DSQ_DTYPE_I8] = {"I8", 1, 24, 1, 1, 0},
    [DSQ_DTYPE_U16] = {"U16", 1, -1, 1, 2, 0},
    [DSQ_DTYPE_I16] = {"I16", 1, 25, 1, 2, 0},
    [DSQ_DTYPE_U32] = {"U32", 1, -1, 1, 4, 0},
    [DSQ_DTYPE_I32] = {"I32", 1, 26, 1, 4, 0},
    [DSQ_DTYPE_U64] = {"U64", 1, -1, 1, 8, 0},
    [DSQ_DTYPE_I64] = {"I64", 1, 27, 1, 8, 0},
    [DSQ_DTYPE_F16] = {"F16", 1, 1, 1, 2, 1},
    [DSQ_DTYPE_BF16] = {"BF16", 1, 30, 1, 2, 1},
    [DSQ_DTYPE_F32] = {"F32", 1, 0, 1, 4, 1},
    [DSQ_DTYPE_F64] = {"F64", 1, 28, 1, 8, 1},
    [DSQ_DTYPE_C64] = {"C64", 1, -1, 1, 8, 1},
    [DSQ_DTYPE_F8_E4M3] = {"F8_E4M3", 1, -1, 1, 1, 1},
    [DSQ_DTYPE_F8_E5M2] = {"F8_E5M2", 1, -1, 1, 1, 1},
    [DSQ_DTYPE_F8_E8M0] = {"F8_E8M0", 1, -1, 1, 1, 1},
    [DSQ_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 1, -1, 1, 1, 1},
    [DSQ_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 1, -1, 1, 1, 1},
    [DSQ_DTYPE_F4] = {"F4", 1, -1, 2, 1, 1},
    [DSQ_DTYPE_F6_E2M3] = {"F6_E2M3", 1, -1, 4, 3, 1},
    [DSQ_DTYPE_F6_E3M2] = {"F6_E3M2", 1, -1, 4, 3, 1},
    [DSQ_DTYPE_Q4_0] = {"Q4_0", 0, 2, 32, 18, 0},
    [DSQ_DTYPE_Q4_1] = {"Q4_1", 0, 3, 32, 20, 0},
    [DSQ_DTYPE_Q5_0] = {"Q5_0", 0, 6, 32, 22, 0},
    [DSQ_DTYPE_Q5_1] = {"Q5_1", 0, 7, 32, 24, 0},
    [DSQ_DTYPE_Q8_0] = {"Q8_0", 0, 8, 32, 34, 0},
    [DSQ_DTYPE_Q8_1] = {"Q8_1", 0, 9, 32, 36, 0},
    [DSQ_DTYPE_Q2_K] = {"Q2_K", 0, 10, 256, 84, 0},
    [DSQ_DTYPE_Q3_K] = {"Q3_K", 0, 11, 256, 110, 0},
    [DSQ_DTYPE_Q4_K] = {"Q4_K", 0, 12, 256, 144, 0},
    [DSQ_DTYPE_Q5_K] = {"Q5_K", 0, 13, 256, 176, 0},
    [DSQ_DTYPE_Q6_K] = {"Q6_K", 0, 14, 256, 210, 0},
    [DSQ_DTYPE_Q8_K] = {"Q8_K", 0, 15, 256, 292, 0},
    [DSQ_DTYPE_IQ2_XXS] = {"IQ2_XXS", 0, 16, 256, 66, 0},
    [DSQ_DTYPE_IQ2_XS] = {"IQ2_XS", 0, 17, 256, 74, 0},
    [DSQ_DTYPE_IQ3_XXS] = {"IQ3_XXS", 0, 18, 256, 98, 0},
    [DSQ_DTYPE_IQ1_S] = {"IQ1_S", 0, 19, 256, 50, 0},
    [DSQ_DTYPE_IQ4_NL] = {"IQ4_NL", 0, 20, 32, 18, 0},
    [DSQ_DTYPE_IQ3_S] = {"IQ3_S", 0, 21, 256, 110, 0},
    [DSQ_DTYPE_IQ2_S] = {"IQ2_S", 0, 22, 256, 82, 0},
    [DSQ_DTYPE_IQ4_XS] = {"IQ4_XS", 0, 23, 256, 136, 0},
    [DSQ_DTYPE_IQ1_M] = {"IQ1_M", 0, 29, 256, 56, 0},
    [DSQ_DTYPE_TQ1_0] = {"TQ1_0", 0, 34, 256, 54, 0},
    [DSQ_DTYPE_TQ2_0] = {"TQ2_0", 0, 35, 256, 66, 0},
    [DSQ_DTYPE_MXFP4] = {"MXFP4", 0, 39, 32, 17, 0},
};

/* Position in the reference crate's Dtype enum ("increasing alignment"). */
static const int st_rank[DSQ_DTYPE_COUNT] = {
    [DSQ_DTYPE_BOOL] = 0,         [DSQ_DTYPE_F4] = 1,       [DSQ_DTYPE_F6_E2M3] = 2,
    [DSQ_DTYPE_F6_E3M2] = 3,      [DSQ_DTYPE_U8] = 4,       [DSQ_DTYPE_I8] = 5,
    [DSQ_DTYPE_F8_E5M2] = 6,      [DSQ_DTYPE_F8_E4M3] = 7,  [DSQ_DTYPE_F8_E8M0] = 8,
    [DSQ_DTYPE_F8_E4M3FNUZ] = 9,  [DSQ_DTYPE_F8_E5M2FNUZ] = 10, [DSQ_DTYPE_I16] = 11,
    [DSQ_DTYPE_U16] = 12,         [DSQ_DTYPE_F16] = 13,     [DSQ_DTYPE_BF16] = 14,
    [DSQ_DTYPE_I32] = 15,         [DSQ_DTYPE_U32] = 16,     [DSQ_DTYPE_F32] = 17,
    [DSQ_DTYPE_C64] = 18,         [DSQ_DTYPE_F64] = 19,     [DSQ_DTYPE_I64] = 20,
    [DSQ_DTYPE_U64] = 21,
};

const dsq_dtype_info *dsq_dtype_get(dsq_dtype t) {
    if ((unsigned)t >= DSQ_DTYPE_COUNT || t == DSQ_DTYPE_INVALID)
        return NULL;
    return &dtype_table[t];
}

const char *dsq_dtype_name(dsq_dtype t) {
    const dsq_dtype_info *d = dsq_dtype_get(t);
    return d ? d->name : "?";
}

dsq_dtype dsq_dtype_from_safetensors(const char *s, size_t len) {
    for (int t = 1; t < DSQ_DTYPE_COUNT; t++) {
        const dsq_dtype_info *d = &dtype_table[t];
        if (d->in_safetensors && strlen(d->name) == len && memcmp(d->name, s, len) == 0)
            return (dsq_dtype)t;
    }
    return DSQ_DTYPE_INVALID;
}

dsq_dtype dsq_dtype_from_name(const char *s) {
    for (int t = 1; t < DSQ_DTYPE_COUNT; t++) {
        if (strcasecmp(dtype_table[t].name, s) == 0)
            return (dsq_dtype)t;
    }
    return DSQ_DTYPE_INVALID;
}

dsq_dtype dsq_dtype_from_ggml(int ggml_id) {
    for (int t = 1; t < DSQ_DTYPE_COUNT; t++) {
        if (dtype_table[t].ggml_id == ggml_id && ggml_id >= 0)
            return (dsq_dtype)t;
    }
    return DSQ_DTYPE_INVALID;
}

uint64_t dsq_dtype_nbytes(dsq_dtype t, uint64_t nelements, int *ok) {
    const dsq_dtype_info *d = dsq_dtype_get(t);
    uint64_t bytes;
    if (d == NULL || nelements % d->block_size != 0 ||
        !dsq_mul_u64(nelements / d->block_size, d->block_bytes, &bytes)) {
        *ok = 0;
        return 0;
    }
    *ok = 1;
    return bytes;
}

int dsq_dtype_st_rank(dsq_dtype t) {
    const dsq_dtype_info *d = dsq_dtype_get(t);
    return (d && d->in_safetensors) ? st_rank[t] : -1;
}
