/* model/tensor_names.c: the name table of tensor_names.h and its lookups. */
#include "model/tensor_names.h"

#include <stdio.h>
#include <string.h>

static const dsq_tname dsq_tnames[] = {
    {DSQ_TN_TOKEN_EMBD, DSQ_TNAME_PLAIN},
    {DSQ_TN_OUTPUT_NORM, DSQ_TNAME_PLAIN},
    {DSQ_TN_OUTPUT, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_NORM, DSQ_TNAME_PLAIN},
    {DSQ_TN_FFN_NORM, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_Q, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_K, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_V, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_OUT, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_Q_A, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_Q_A_NORM, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_Q_B, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_KV_A_MQA, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_KV_A_NORM, DSQ_TNAME_PLAIN},
    {DSQ_TN_ATTN_KV_B, DSQ_TNAME_KV_B},
    {DSQ_TN_ATTN_K_B, DSQ_TNAME_K_B},
    {DSQ_TN_ATTN_V_B, DSQ_TNAME_V_B},
    {DSQ_TN_FFN_GATE, DSQ_TNAME_PLAIN},
    {DSQ_TN_FFN_UP, DSQ_TNAME_PLAIN},
    {DSQ_TN_FFN_DOWN, DSQ_TNAME_PLAIN},
    {DSQ_TN_FFN_GATE_INP, DSQ_TNAME_PLAIN},
    {DSQ_TN_EXP_PROBS_B, DSQ_TNAME_PLAIN},
    {DSQ_TN_FFN_GATE_EXPS, DSQ_TNAME_EXPERTS},
    {DSQ_TN_FFN_UP_EXPS, DSQ_TNAME_EXPERTS},
    {DSQ_TN_FFN_DOWN_EXPS, DSQ_TNAME_EXPERTS},
    {DSQ_TN_FFN_GATE_SHEXP, DSQ_TNAME_PLAIN},
    {DSQ_TN_FFN_UP_SHEXP, DSQ_TNAME_PLAIN},
    {DSQ_TN_FFN_DOWN_SHEXP, DSQ_TNAME_PLAIN},
    {DSQ_TN_NEXTN_EH_PROJ, DSQ_TNAME_PLAIN},
    {DSQ_TN_NEXTN_ENORM, DSQ_TNAME_PLAIN},
    {DSQ_TN_NEXTN_HNORM, DSQ_TNAME_PLAIN},
    {DSQ_TN_NEXTN_SHARED_HEAD_NORM, DSQ_TNAME_PLAIN},
    {DSQ_TN_NEXTN_EMBED_TOKENS, DSQ_TNAME_PLAIN},
    {DSQ_TN_NEXTN_SHARED_HEAD_HEAD, DSQ_TNAME_PLAIN},
};

/* 1 when name is pattern with each "%d" standing for a decimal number (no sign, no
 * leading zero, below 2^24: layer and expert counts are far smaller), stored in order
 * into nums[0..1]. */
static int match(const char *pattern, const char *name, int nums[2]) {
    int k = 0;
    const char *p = pattern, *s = name;
    while (*p != '\0') {
        if (p[0] == '%' && p[1] == 'd') {
            long v = 0;
            const char *d = s;
            while (*s >= '0' && *s <= '9' && s - d < 8)
                v = v * 10 + (*s++ - '0');
            if (s == d || (s - d > 1 && *d == '0') || (*s >= '0' && *s <= '9') ||
                v >= (1L << 24) || k == 2)
                return 0;
            nums[k++] = (int)v;
            p += 2;
        } else if (*p++ != *s++) {
            return 0;
        }
    }
    return *s == '\0';
}

size_t dsq_tname_from_hf(const char *hf, const dsq_tname **rows, size_t max, int *layer,
                         int *expert) {
    size_t n = 0;
    *layer = *expert = -1;
    for (size_t i = 0; i < sizeof dsq_tnames / sizeof dsq_tnames[0]; i++) {
        int nums[2] = {-1, -1};
        if (!match(dsq_tnames[i].hf, hf, nums))
            continue;
        if (n < max)
            rows[n] = &dsq_tnames[i];
        n++;
        *layer = nums[0];
        *expert = nums[1];
    }
    return n < max ? n : max;
}

size_t dsq_tname_format(char *buf, size_t size, const char *pattern, int a, int b) {
    size_t o = 0;
    int k = 0;
    for (const char *p = pattern; *p != '\0'; p++) {
        char num[16];
        const char *piece = p;
        size_t len = 1;
        if (p[0] == '%' && p[1] == 'd') {
            len = (size_t)snprintf(num, sizeof num, "%d", k++ == 0 ? a : b);
            piece = num;
            p++;
        }
        for (size_t i = 0; i < len; i++, o++)
            if (o + 1 < size)
                buf[o] = piece[i];
    }
    if (size > 0)
        buf[o < size ? o : size - 1] = '\0';
    return o;
}
