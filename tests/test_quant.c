/* tests/test_quant.c: the GGUF block quantizers of quantize/quant.h.
 *
 * Where the expected values come from, per test (a test whose expected
 * values came from dsq itself would check nothing):
 *  - ggml_bytes_*: ggml's own quantizer output, ../shared/data/
 *    ggml-quant-vectors/random-512 (ggml_quantize_chunk at ggml d99724f, see
 *    SOURCE.txt); compared byte for byte.
 *  - hand_*: single blocks worked out by hand from the block definitions in
 *    specs/formats.md §2.6; the arithmetic is in the comments.
 *  - dequant_spec_*: ggml's bytes decoded by a small decoder in this file
 *    written from the formats.md bit layouts (not from quantize/), and
 *    dequantize(ggml bytes) against the original F32 data.
 *  - ggml_fns_error: ggml's tests/test-quantize-fns.cpp data, metric and
 *    thresholds.
 *  - roundtrip_rmse: ceilings from the uniform-quantizer estimate (step/sqrt 12)
 *    for each type's step, see the table.
 *  - threads / rows: the same call with different thread counts and the
 *    single-row API must give the bytes ggml gave (and so each other); so
 *    must rows taken through a callback (dsq_quantize_rows_from).
 *  - simd_matches_scalar: the AVX2 Q8_0/Q4_0 kernels against the scalar
 *    ones (themselves checked against ggml above), on inputs chosen to hit
 *    the edge cases (ties, -0.0, BF16-valued weights).
 *  - kquant_avx2_matches_scalar, kquant_avx512_matches_scalar: the K-quant
 *    searches (one sub-block per lane) against the scalar searches, and whole Q2_K/Q4_K/Q5_K/Q6_K rows
 *    with and without imatrix with SIMD on and off, on ggml's rows plus
 *    generated hard blocks (zeros, -0.0, constants, outliers, ties, tiny
 *    and denormal values, BF16 values, mixed magnitudes).
 *    The SIMD tests are skipped (cmocka skip) on a CPU without their kernels.
 *
 * The embedding vectors in stories260K_embd_quant_vectors.gguf are a second
 * oracle but sit in a GGUF container; they wait for the GGUF reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "quantize/q_blocks.h" /* internal: the scalar and AVX2 kernels, for the SIMD test */
#include "quantize/quant.h"
#include "tests/testutil.h"

#define NROWS 64
#define NCOLS 512

typedef struct vec_case {
    const char *stem; /* file name in random-512/ without extension */
    dsq_dtype type;
    int has_imat; /* random-512 has <stem>.imat.q */
} vec_case;

static const vec_case cases[] = {
    {"f16", DSQ_DTYPE_F16, 0},       {"bf16", DSQ_DTYPE_BF16, 0},     {"q4_0", DSQ_DTYPE_Q4_0, 1},
    {"q4_1", DSQ_DTYPE_Q4_1, 1},     {"q5_0", DSQ_DTYPE_Q5_0, 1},     {"q5_1", DSQ_DTYPE_Q5_1, 1},
    {"q8_0", DSQ_DTYPE_Q8_0, 0},     {"q2_K", DSQ_DTYPE_Q2_K, 1},     {"q3_K", DSQ_DTYPE_Q3_K, 1},
    {"q4_K", DSQ_DTYPE_Q4_K, 1},     {"q5_K", DSQ_DTYPE_Q5_K, 1},     {"q6_K", DSQ_DTYPE_Q6_K, 1},
    {"iq4_nl", DSQ_DTYPE_IQ4_NL, 1}, {"iq4_xs", DSQ_DTYPE_IQ4_XS, 1},
};
#define NCASES (sizeof cases / sizeof cases[0])

/* ---------------------------------------------------------------------------
 * shared data */

static float *g_src;  /* [NROWS][NCOLS] */
static float *g_imat; /* [NCOLS] */

static void *read_shared(const char *rel, size_t *len) {
    char *p = tu_shared_path(rel);
    void *buf = tu_read_file(p, len);
    free(p);
    return buf;
}

static void *read_vectors(const char *stem, int imat, size_t *len) {
    char rel[256];
    snprintf(rel, sizeof rel, "data/ggml-quant-vectors/random-512/%s%s", stem,
             imat ? ".imat.q" : ".q");
    return read_shared(rel, len);
}

static int setup(void **state) {
    (void)state;
    size_t n;
    g_src = read_shared("data/ggml-quant-vectors/random-512/src.f32", &n);
    assert_int_equal(n, NROWS * NCOLS * sizeof(float));
    g_imat = read_shared("data/ggml-quant-vectors/random-512/imatrix.f32", &n);
    assert_int_equal(n, NCOLS * sizeof(float));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    free(g_src);
    free(g_imat);
    return 0;
}

static size_t row_size(dsq_dtype t, int64_t n) {
    size_t rs = 0;
    assert_int_equal(dsq_quant_row_size(t, n, &rs), DSQ_OK);
    return rs;
}

static size_t bbytes(dsq_dtype t) { return dsq_quant_traits_get(t)->block_bytes; }

/* 0 if equal; otherwise prints the first differing row/byte (got = dsq,
 * want = the expected bytes, ggml's unless said otherwise) and returns 1.
 * bb: bytes per block, to name the block and the offset inside it. */
static int compare_rows(const char *what, const uint8_t *got, const uint8_t *want, size_t rs,
                        size_t bb, int nrows) {
    for (int r = 0; r < nrows; r++) {
        const uint8_t *g = got + (size_t)r * rs, *w = want + (size_t)r * rs;
        if (memcmp(g, w, rs) == 0)
            continue;
        size_t b = 0;
        while (g[b] == w[b])
            b++;
        int bad_rows = 0;
        for (int k = r; k < nrows; k++)
            bad_rows += memcmp(got + (size_t)k * rs, want + (size_t)k * rs, rs) != 0;
        print_error("%s: first mismatch at row %d byte %zu (block %zu, byte %zu of %zu):"
                    " got 0x%02x, want 0x%02x; %d of %d rows differ\n",
                    what, r, b, b / bb, b % bb, bb, g[b], w[b], bad_rows, nrows);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * API surface */

static void test_traits_match_core(void **state) {
    (void)state;
    for (size_t i = 0; i < NCASES; i++) {
        const dsq_quant_traits *tr = dsq_quant_traits_get(cases[i].type);
        const dsq_dtype_info *info = dsq_dtype_get(cases[i].type);
        assert_non_null(tr);
        assert_non_null(info);
        assert_true(dsq_quant_supported(cases[i].type));
        assert_int_equal(tr->block_size, info->block_size);
        assert_int_equal(tr->block_bytes, info->block_bytes);
        assert_string_equal(tr->name, info->name);
        assert_int_equal(tr->uses_imatrix, cases[i].has_imat);
    }
    assert_true(dsq_quant_supported(DSQ_DTYPE_F32));
    assert_false(dsq_quant_supported(DSQ_DTYPE_INVALID));
    assert_false(dsq_quant_supported(DSQ_DTYPE_Q8_1));
    assert_false(dsq_quant_supported(DSQ_DTYPE_IQ2_XXS));
    assert_false(dsq_quant_supported(DSQ_DTYPE_COUNT));
    assert_null(dsq_quant_traits_get((dsq_dtype)-1));
}

static void test_bad_args(void **state) {
    (void)state;
    float x[512] = {0}, y[512];
    uint8_t buf[1024];
    size_t rs;
    assert_int_equal(dsq_quant_row_size(DSQ_DTYPE_Q4_K, 255, &rs), DSQ_INVALID_ARG);
    assert_int_equal(dsq_quant_row_size(DSQ_DTYPE_Q4_K, -256, &rs), DSQ_INVALID_ARG);
    assert_int_equal(dsq_quant_row_size(DSQ_DTYPE_Q8_1, 32, &rs), DSQ_UNSUPPORTED);
    assert_int_equal(dsq_quant_row_size(DSQ_DTYPE_Q4_K, 512, &rs), DSQ_OK);
    assert_int_equal(rs, 288);
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q4_0, x, buf, 48, NULL), DSQ_INVALID_ARG);
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q6_K, x, buf, 128, NULL), DSQ_INVALID_ARG);
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_TQ1_0, x, buf, 256, NULL), DSQ_UNSUPPORTED);
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q4_0, NULL, buf, 32, NULL), DSQ_INVALID_ARG);
    assert_int_equal(dsq_dequantize_row(DSQ_DTYPE_Q4_0, buf, y, 33), DSQ_INVALID_ARG);
    assert_int_equal(dsq_quantize_rows(DSQ_DTYPE_Q4_0, x, buf, 2, 40, NULL, 1), DSQ_INVALID_ARG);
    assert_int_equal(dsq_quantize_rows(DSQ_DTYPE_Q4_0, x, buf, -1, 32, NULL, 1), DSQ_INVALID_ARG);
    assert_int_equal(dsq_quantize_rows(DSQ_DTYPE_Q8_0, x, buf, INT64_MAX / 2, 64, NULL, 1),
                     DSQ_RANGE);
    /* empty is fine and touches nothing */
    assert_int_equal(dsq_quantize_rows(DSQ_DTYPE_Q4_0, NULL, NULL, 0, 32, NULL, 1), DSQ_OK);
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q4_0, NULL, NULL, 0, NULL), DSQ_OK);
}

static void test_nonfinite_rejected(void **state) {
    (void)state;
    float x[2 * 256];
    uint8_t buf[2 * 210];
    for (int i = 0; i < 512; i++)
        x[i] = 0.01f * (float)(i % 7);
    x[300] = NAN;
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q6_K, x + 256, buf, 256, NULL), DSQ_RANGE);
    assert_int_equal(dsq_quantize_rows(DSQ_DTYPE_Q6_K, x, buf, 2, 256, NULL, 2), DSQ_RANGE);
    x[300] = INFINITY;
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q4_0, x + 288, buf, 32, NULL), DSQ_RANGE);
    /* plain float types carry NaN/inf through */
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_F16, x + 288, buf, 32, NULL), DSQ_OK);
}

/* ---------------------------------------------------------------------------
 * byte-exact against ggml */

static void check_ggml_bytes(int imat) {
    int failures = 0, checked = 0;
    for (size_t i = 0; i < NCASES; i++) {
        if (imat && !cases[i].has_imat)
            continue;
        size_t len;
        uint8_t *want = read_vectors(cases[i].stem, imat, &len);
        const size_t rs = row_size(cases[i].type, NCOLS);
        assert_int_equal(len, rs * NROWS);
        uint8_t *got = calloc(NROWS, rs);
        assert_non_null(got);
        assert_int_equal(
            dsq_quantize_rows(cases[i].type, g_src, got, NROWS, NCOLS, imat ? g_imat : NULL, 0),
            DSQ_OK);
        char what[64];
        snprintf(what, sizeof what, "%s%s", cases[i].stem, imat ? " (imatrix)" : "");
        failures += compare_rows(what, got, want, rs, bbytes(cases[i].type), NROWS);
        checked++;
        free(got);
        free(want);
    }
    assert_int_equal(checked, imat ? 11 : 14);
    assert_int_equal(failures, 0);
}

static void test_ggml_bytes_plain(void **state) {
    (void)state;
    check_ggml_bytes(0);
}

static void test_ggml_bytes_imatrix(void **state) {
    (void)state;
    check_ggml_bytes(1);
}

/* Q8_0 has no imatrix path in ggml: its bytes with an imatrix are q8_0.q */
static void test_q8_0_ignores_imatrix(void **state) {
    (void)state;
    size_t len;
    uint8_t *want = read_vectors("q8_0", 0, &len);
    uint8_t *got = malloc(len);
    assert_non_null(got);
    assert_int_equal(dsq_quantize_rows(DSQ_DTYPE_Q8_0, g_src, got, NROWS, NCOLS, g_imat, 1),
                     DSQ_OK);
    assert_int_equal(
        compare_rows("q8_0 with imatrix", got, want, len / NROWS, bbytes(DSQ_DTYPE_Q8_0), NROWS),
        0);
    free(got);
    free(want);
}

/* The thread count must not change the bytes, nor must going row by row
 * through dsq_quantize_row; expected bytes: ggml's. */
static void test_threads_and_rows(void **state) {
    (void)state;
    static const int nthreads[] = {1, 2, 3, 7};
    for (size_t i = 0; i < NCASES; i++) {
        const vec_case *c = &cases[i];
        size_t len;
        uint8_t *want = read_vectors(c->stem, c->has_imat, &len);
        const float *qw = c->has_imat ? g_imat : NULL;
        const size_t rs = row_size(c->type, NCOLS);
        uint8_t *got = malloc(len);
        assert_non_null(got);
        for (size_t k = 0; k < sizeof nthreads / sizeof nthreads[0]; k++) {
            memset(got, 0xAA, len);
            assert_int_equal(dsq_quantize_rows(c->type, g_src, got, NROWS, NCOLS, qw, nthreads[k]),
                             DSQ_OK);
            assert_int_equal(compare_rows(c->stem, got, want, rs, bbytes(c->type), NROWS), 0);
        }
        memset(got, 0x55, len);
        for (int r = 0; r < NROWS; r++)
            assert_int_equal(dsq_quantize_row(c->type, g_src + r * NCOLS, got + r * rs, NCOLS, qw),
                             DSQ_OK);
        assert_int_equal(compare_rows(c->stem, got, want, rs, bbytes(c->type), NROWS), 0);
        free(got);
        free(want);
    }
}

/* dsq_quantize_rows_from: rows through a callback. */
typedef struct rows_seen {
    const float *src;
    int64_t n_per_row;
    int64_t last_done; /* the latest prefix done reported */
    int calls, backwards;
} rows_seen;

static void fill_from(void *user, int64_t r, float *out) {
    const rows_seen *s = user;
    memcpy(out, s->src + r * s->n_per_row, (size_t)s->n_per_row * sizeof *out);
}

static void note_done(void *user, int64_t rows) {
    rows_seen *s = user;
    s->backwards += rows <= s->last_done;
    s->last_done = rows;
    s->calls++;
}

/* The same bytes as ggml for every type and thread count, with `done` told an
 * increasing prefix that ends at the last row; a NaN row gives DSQ_RANGE and
 * `done` never gets past it. */
static void test_rows_from(void **state) {
    (void)state;
    static const int nthreads[] = {1, 2, 3, 7};
    for (size_t i = 0; i < NCASES; i++) {
        const vec_case *c = &cases[i];
        size_t len;
        uint8_t *want = read_vectors(c->stem, c->has_imat, &len);
        const float *qw = c->has_imat ? g_imat : NULL;
        const size_t rs = row_size(c->type, NCOLS);
        uint8_t *got = malloc(len);
        assert_non_null(got);
        for (size_t k = 0; k < sizeof nthreads / sizeof nthreads[0]; k++) {
            rows_seen seen = {g_src, NCOLS, 0, 0, 0};
            const dsq_row_source src = {fill_from, k % 2 ? note_done : NULL, &seen};
            memset(got, 0xAA, len);
            assert_int_equal(
                dsq_quantize_rows_from(c->type, &src, got, NROWS, NCOLS, qw, nthreads[k]),
                DSQ_OK);
            assert_int_equal(compare_rows(c->stem, got, want, rs, bbytes(c->type), NROWS), 0);
            if (k % 2) {
                assert_int_equal(seen.last_done, NROWS);
                assert_true(seen.calls >= 1);
                assert_int_equal(seen.backwards, 0);
            }
        }
        free(got);
        free(want);
    }

    float *x = malloc(sizeof(float) * NROWS * NCOLS);
    uint8_t *buf = malloc(row_size(DSQ_DTYPE_Q4_K, NCOLS) * NROWS);
    assert_non_null(x);
    assert_non_null(buf);
    memcpy(x, g_src, sizeof(float) * NROWS * NCOLS);
    x[40 * NCOLS + 7] = NAN;
    for (int nt = 1; nt <= 3; nt++) {
        rows_seen seen = {x, NCOLS, 0, 0, 0};
        const dsq_row_source src = {fill_from, note_done, &seen};
        assert_int_equal(dsq_quantize_rows_from(DSQ_DTYPE_Q4_K, &src, buf, NROWS, NCOLS, NULL, nt),
                         DSQ_RANGE);
        assert_true(seen.last_done <= 40);
        assert_int_equal(seen.backwards, 0);
    }
    const dsq_row_source none = {NULL, NULL, NULL};
    assert_int_equal(dsq_quantize_rows_from(DSQ_DTYPE_Q4_K, &none, buf, 1, 256, NULL, 1),
                     DSQ_INVALID_ARG);
    assert_int_equal(dsq_quantize_rows_from(DSQ_DTYPE_Q4_K, &none, buf, 1, 100, NULL, 1),
                     DSQ_INVALID_ARG);
    free(x);
    free(buf);
}

/* ---------------------------------------------------------------------------
 * hand-worked blocks (formats.md §2.6) */

static void test_hand_q8_0(void **state) {
    (void)state;
    /* Quantize: amax = 127 so d = 127/127 = 1 (fp16 0x3C00), id = 1, and
     * qs = roundf(x), half AWAY from zero: 2.5 -> 3, -2.5 -> -3, 0.49 -> 0,
     * -126.6 -> -127, 127 -> 127, -3.4 -> -3; the rest 0. */
    float x[32] = {127.0f, -3.4f, 2.5f, -2.5f, 0.49f, -126.6f};
    uint8_t b[34];
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q8_0, x, b, 32, NULL), DSQ_OK);
    const uint8_t want[34] = {0x00, 0x3C, 127, (uint8_t)-3, 3, (uint8_t)-3, 0, (uint8_t)-127};
    assert_memory_equal(b, want, sizeof want);

    /* Dequantize: d = fp16 0x3400 = 2^-2 = 0.25; y = qs * d:
     * 127 -> 31.75, -128 -> -32, -1 -> -0.25, 0 -> 0. */
    const uint8_t blk[34] = {0x00, 0x34, 127, 0x80, 0xFF};
    float y[32];
    assert_int_equal(dsq_dequantize_row(DSQ_DTYPE_Q8_0, blk, y, 32), DSQ_OK);
    assert_true(y[0] == 31.75f && y[1] == -32.0f && y[2] == -0.25f);
    for (int j = 3; j < 32; j++)
        assert_true(y[j] == 0.0f);
}

static void test_hand_q4_0(void **state) {
    (void)state;
    /* Quantize x[j] = j - 16 (j = 0..31). The largest |x| is x[0] = -16, so
     * max = -16, d = max / -8 = 2 (fp16 0x4000), id = 0.5, and
     * q[j] = min(15, trunc((j-16)*0.5 + 8.5)) = trunc(j/2 + 0.5):
     *   j:  0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 | 16 17 .. 29 30 31
     *   q:  0 1 1 2 2 3 3 4 4 5  5  6  6  7  7  8 |  8  9 .. 15 15 15(16 clamped)
     * Note j = 1: x*id = -7.5, and the truncation of -7.5 + 8.5 gives q = 1,
     * where rounding -7.5 to nearest would give level -8, q = 0.
     * qs[j] = q[j] | q[j+16] << 4. */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    uint8_t b[18];
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q4_0, x, b, 32, NULL), DSQ_OK);
    const uint8_t want[18] = {0x00, 0x40, 0x80, 0x91, 0x91, 0xA2, 0xA2, 0xB3, 0xB3,
                              0xC4, 0xC4, 0xD5, 0xD5, 0xE6, 0xE6, 0xF7, 0xF7, 0xF8};
    assert_memory_equal(b, want, sizeof want);

    /* Dequantize: d = 2; y = d * (nibble - 8). qs[0] = 0x8F: y[0] = 2*(15-8)
     * = 14, y[16] = 2*(8-8) = 0. qs[1] = 0x01: y[1] = 2*(1-8) = -14,
     * y[17] = 2*(0-8) = -16. qs[2..15] = 0: all -16. */
    const uint8_t blk[18] = {0x00, 0x40, 0x8F, 0x01};
    float y[32];
    assert_int_equal(dsq_dequantize_row(DSQ_DTYPE_Q4_0, blk, y, 32), DSQ_OK);
    assert_true(y[0] == 14.0f && y[16] == 0.0f && y[1] == -14.0f && y[17] == -16.0f);
    for (int j = 2; j < 16; j++)
        assert_true(y[j] == -16.0f && y[j + 16] == -16.0f);
}

static void test_hand_q4_1(void **state) {
    (void)state;
    /* Quantize x[j] = (j % 16) - 4: min = -4, max = 11, d = (11 - -4)/15 = 1
     * (fp16 0x3C00), m = -4 (fp16 0xC400), q = trunc((x+4)*1 + 0.5) = j % 16;
     * element j and j+16 have the same q, so qs[j] = j | j << 4 = 0x11 * j. */
    float x[32];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j % 16) - 4.0f;
    uint8_t b[20];
    assert_int_equal(dsq_quantize_row(DSQ_DTYPE_Q4_1, x, b, 32, NULL), DSQ_OK);
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[1], 0x3C);
    assert_int_equal(b[2], 0x00);
    assert_int_equal(b[3], 0xC4);
    for (int j = 0; j < 16; j++)
        assert_int_equal(b[4 + j], 0x11 * j);

    /* Dequantize: d = fp16 0x3800 = 0.5, m = fp16 0xBC00 = -1; y = q*d + m.
     * qs[0] = 0x21: y[0] = 1*0.5 - 1 = -0.5, y[16] = 2*0.5 - 1 = 0.
     * qs[15] = 0xF0: y[15] = 0*0.5 - 1 = -1, y[31] = 15*0.5 - 1 = 6.5.
     * Other bytes 0: y = -1. */
    uint8_t blk[20] = {0x00, 0x38, 0x00, 0xBC, 0x21};
    blk[4 + 15] = 0xF0;
    float y[32];
    assert_int_equal(dsq_dequantize_row(DSQ_DTYPE_Q4_1, blk, y, 32), DSQ_OK);
    assert_true(y[0] == -0.5f && y[16] == 0.0f && y[15] == -1.0f && y[31] == 6.5f);
    for (int j = 1; j < 15; j++)
        assert_true(y[j] == -1.0f && y[j + 16] == -1.0f);
}

/* Relative-RMSE ceilings for a gaussian row: a uniform quantizer's error
 * step/sqrt(12) with the step each type gets for a block whose |x| reaches
 * ~3.5 sigma, rounded up; for the K-quants and IQ4 the step is the one of
 * their level count over a sub-block range, and the scale searches only
 * lower the error. The searched types do much better: these catch a broken
 * encoder or decoder, not a small regression. */
static const struct {
    dsq_dtype t;
    double ceil;
} lim[] = {
    {DSQ_DTYPE_F16, 0.001},   /* 2^-11 relative */
    {DSQ_DTYPE_BF16, 0.004},  /* 2^-8 relative */
    {DSQ_DTYPE_Q8_0, 0.01},   /* 3.5/127/sqrt12 = 0.008 */
    {DSQ_DTYPE_Q4_0, 0.13},   /* 3.5/8/sqrt12 = 0.126 */
    {DSQ_DTYPE_Q4_1, 0.14},   /* 7/15/sqrt12 = 0.135 */
    {DSQ_DTYPE_Q5_0, 0.07},   /* 3.5/16/sqrt12 = 0.063 */
    {DSQ_DTYPE_Q5_1, 0.07},   /* 7/31/sqrt12 = 0.065 */
    {DSQ_DTYPE_Q2_K, 0.50},   /* 2 bits over a 16-element range: 5.5/3/sqrt12 = 0.53 */
    {DSQ_DTYPE_Q3_K, 0.25},   /* 3 bits: 3/4/sqrt12 * 1.1 (6-bit scales) */
    {DSQ_DTYPE_Q4_K, 0.14},   /* like Q4_1 on 32-element sub-blocks */
    {DSQ_DTYPE_Q5_K, 0.07},   /* like Q5_1 */
    {DSQ_DTYPE_Q6_K, 0.035},  /* 3/32/sqrt12 = 0.027, plus 8-bit scales */
    {DSQ_DTYPE_IQ4_NL, 0.13}, /* no worse than Q4_0 */
    {DSQ_DTYPE_IQ4_XS, 0.14},
};

static double ceiling(dsq_dtype t) {
    for (size_t k = 0; k < sizeof lim / sizeof lim[0]; k++)
        if (lim[k].t == t)
            return lim[k].ceil;
    fail_msg("no ceiling for %s", dsq_dtype_name(t));
    return 0.0;
}

/* ---------------------------------------------------------------------------
 * dequantization from the block definitions (formats.md §2.4, §2.6-§2.9),
 * applied to ggml's bytes */

static float spec_f16(const uint8_t *p) {
    const int h = p[0] | p[1] << 8;
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m + 1024), e - 25);
    return s ? -v : v;
}

static int bits(const uint8_t *p, int byte, int shift, int nbits) {
    return (p[byte] >> shift) & ((1 << nbits) - 1);
}

static const int8_t kvalues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

/* element e of one block; formulas in formats.md evaluated left to right */
static float spec_decode(dsq_dtype t, const uint8_t *b, int e) {
    switch (t) {
        case DSQ_DTYPE_F16:
            return spec_f16(b + 2 * e);
        case DSQ_DTYPE_BF16: {
            const uint32_t u = (uint32_t)(b[2 * e] | b[2 * e + 1] << 8) << 16;
            float f;
            memcpy(&f, &u, 4);
            return f;
        }
        case DSQ_DTYPE_Q4_0:
            return (float)(bits(b, 2 + e % 16, 4 * (e / 16), 4) - 8) * spec_f16(b);
        case DSQ_DTYPE_Q4_1:
            return (float)bits(b, 4 + e % 16, 4 * (e / 16), 4) * spec_f16(b) + spec_f16(b + 2);
        case DSQ_DTYPE_Q5_0: {
            const int q = bits(b, 6 + e % 16, 4 * (e / 16), 4) | bits(b, 2 + e / 8, e % 8, 1) << 4;
            return (float)(q - 16) * spec_f16(b);
        }
        case DSQ_DTYPE_Q5_1: {
            const int q = bits(b, 8 + e % 16, 4 * (e / 16), 4) | bits(b, 4 + e / 8, e % 8, 1) << 4;
            return (float)q * spec_f16(b) + spec_f16(b + 2);
        }
        case DSQ_DTYPE_Q8_0:
            return (float)(int8_t)b[2 + e] * spec_f16(b);
        case DSQ_DTYPE_Q2_K: {
            const int q = bits(b, 16 + 32 * (e / 128) + e % 32, 2 * ((e % 128) / 32), 2);
            const int sc = b[e / 16] & 15, m = b[e / 16] >> 4;
            return spec_f16(b + 80) * (float)sc * (float)q - spec_f16(b + 82) * (float)m;
        }
        case DSQ_DTYPE_Q3_K: {
            const int j = e / 16;
            const int lo4 = j < 8 ? bits(b, 96 + j, 0, 4) : bits(b, 96 + j - 8, 4, 4);
            const int s = lo4 | bits(b, 104 + j % 4, 2 * (j / 4), 2) << 4;
            const int q2 = bits(b, 32 + 32 * (e / 128) + e % 32, 2 * ((e % 128) / 32), 2);
            const int hb = bits(b, e % 32, e / 32, 1);
            return spec_f16(b + 108) * (float)(s - 32) * (float)(q2 - (hb ? 0 : 4));
        }
        case DSQ_DTYPE_Q4_K:
        case DSQ_DTYPE_Q5_K: {
            const uint8_t *sc = b + 4;
            const int j = e / 32;
            int s, m;
            if (j < 4) {
                s = sc[j] & 63;
                m = sc[j + 4] & 63;
            } else {
                s = (sc[j + 4] & 15) | (sc[j - 4] >> 6) << 4;
                m = (sc[j + 4] >> 4) | (sc[j] >> 6) << 4;
            }
            const int c = e / 64, l = e % 32, hi = (e % 64) / 32;
            int q;
            if (t == DSQ_DTYPE_Q4_K)
                q = bits(b, 16 + 32 * c + l, 4 * hi, 4);
            else
                q = bits(b, 48 + 32 * c + l, 4 * hi, 4) | bits(b, 16 + l, 2 * c + hi, 1) << 4;
            return spec_f16(b) * (float)s * (float)q - spec_f16(b + 2) * (float)m;
        }
        case DSQ_DTYPE_Q6_K: {
            const int h = e / 128, r = e % 128, l = r % 32, k = r / 32;
            /* quarter k of the half: ql low nibbles of bytes l (k=0) and l+32
             * (k=1), high nibbles of the same (k=2, 3); qh 2 bits at 2k */
            const int lo = bits(b, 64 * h + l + 32 * (k % 2), 4 * (k / 2), 4);
            const int q = lo | bits(b, 128 + 32 * h + l, 2 * k, 2) << 4;
            return spec_f16(b + 208) * (float)(int8_t)b[192 + e / 16] * (float)(q - 32);
        }
        case DSQ_DTYPE_IQ4_NL:
            return spec_f16(b) * (float)kvalues[bits(b, 2 + e % 16, 4 * (e / 16), 4)];
        case DSQ_DTYPE_IQ4_XS: {
            const int ib = e / 32, r = e % 32;
            const int sh = b[2] | b[3] << 8;
            const int ls = bits(b, 4 + ib / 2, 4 * (ib % 2), 4) | ((sh >> (2 * ib)) & 3) << 4;
            const int q = bits(b, 8 + 16 * ib + r % 16, 4 * (r / 16), 4);
            return spec_f16(b) * (float)(ls - 32) * (float)kvalues[q];
        }
        default:
            fail_msg("no spec decoder for %s", dsq_dtype_name(t));
    }
    return 0.0f;
}

/* Decoding ggml's bytes must give exactly the values of the block formula. */
static void test_dequant_spec_exact(void **state) {
    (void)state;
    float *y = malloc(NROWS * NCOLS * sizeof(float));
    assert_non_null(y);
    for (size_t i = 0; i < NCASES * 2; i++) {
        const vec_case *c = &cases[i / 2];
        const int imat = (int)(i % 2);
        if (imat && !c->has_imat)
            continue;
        size_t len;
        uint8_t *q = read_vectors(c->stem, imat, &len);
        const dsq_quant_traits *tr = dsq_quant_traits_get(c->type);
        assert_int_equal(dsq_dequantize_row(c->type, q, y, NROWS * NCOLS), DSQ_OK);
        for (int64_t e = 0; e < NROWS * NCOLS; e++) {
            const int64_t blk = e / tr->block_size;
            const float want =
                spec_decode(c->type, q + blk * (int64_t)tr->block_bytes, (int)(e % tr->block_size));
            if (memcmp(&want, &y[e], sizeof want) != 0)
                fail_msg("%s%s: element %lld (row %lld col %lld): dsq %a, block formula %a",
                         c->stem, imat ? ".imat" : "", (long long)e, (long long)(e / NCOLS),
                         (long long)(e % NCOLS), (double)y[e], (double)want);
        }
        free(q);
    }
    free(y);
}

/* dequantize(ggml's bytes) against the original F32 rows, row by row:
 * relative RMSE below 1.5x the lim[] ceiling (the outlier rows stretch the
 * block ranges). This catches a decoder that agrees with itself but not with
 * ggml's quantizer (a wrong nibble order gives ~1.4). Rows of kind 4
 * (gaussian * 2e-8) are skipped: their scales fall below the fp16 subnormal
 * range, so every type (F16 included) loses them; that is the format, not a
 * bug. The all-zero rows must decode to exact zeros. */
static void test_dequant_ggml_bytes_near_source(void **state) {
    (void)state;
    float *y = malloc(NROWS * NCOLS * sizeof(float));
    assert_non_null(y);
    for (size_t i = 0; i < NCASES; i++) {
        const vec_case *c = &cases[i];
        size_t len;
        uint8_t *q = read_vectors(c->stem, 0, &len);
        assert_int_equal(dsq_dequantize_row(c->type, q, y, NROWS * NCOLS), DSQ_OK);
        const double ceil = 1.5 * ceiling(c->type);
        for (int r = 0; r < NROWS; r++) {
            if (r % 8 == 4)
                continue;
            double se = 0.0, ss = 0.0;
            for (int k = 0; k < NCOLS; k++) {
                const double x = g_src[r * NCOLS + k], d = (double)y[r * NCOLS + k] - x;
                se += d * d;
                ss += x * x;
            }
            if (ss == 0.0) {
                assert_true(se == 0.0);
                continue;
            }
            const double rel = sqrt(se / ss);
            if (!(rel < ceil))
                fail_msg("%s: row %d relative RMSE %.4f >= %.4f", c->stem, r, rel, ceil);
        }
        free(q);
    }
    free(y);
}

/* ---------------------------------------------------------------------------
 * accuracy bounds */

/* ggml tests/test-quantize-fns.cpp "absolute quantization error": data
 * 0.1 + 2 cos(i), 4096 elements, error sqrt(sum of squared diffs) / n, and
 * ggml's thresholds: 0.002 in general, 0.0075 for Q2_K, 0.004 for Q3_K. */
static void test_ggml_fns_error(void **state) {
    (void)state;
    enum { N = 32 * 128 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * 4);
    assert_true(x && y && q);
    for (size_t i = 0; i < N; i++)
        x[i] = (float)(0.1 + 2 * cosf((float)i));
    for (size_t i = 0; i < NCASES; i++) {
        const dsq_dtype t = cases[i].type;
        assert_int_equal(dsq_quantize_row(t, x, q, N, NULL), DSQ_OK);
        assert_int_equal(dsq_dequantize_row(t, q, y, N), DSQ_OK);
        double sum = 0.0;
        for (size_t k = 0; k < N; k++) {
            const double d = x[k] - y[k];
            sum += d * d;
        }
        const float err = sqrtf((float)sum) / N;
        const float max = t == DSQ_DTYPE_Q2_K ? 0.0075f : t == DSQ_DTYPE_Q3_K ? 0.0040f : 0.002f;
        if (!(err < max))
            fail_msg("%s: ggml total quantization error %f >= %f", cases[i].stem, err, max);
    }
    free(x);
    free(y);
    free(q);
}

static uint64_t rng_state;
static double rng_uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * 0x1p-53 + 0x1p-54; /* (0, 1) */
}

/* Round trip on a gaussian row (sigma 0.02, xorshift64 + Box-Muller):
 * relative RMSE = rms(dequant(quant(x)) - x) / rms(x) below the per-type
 * ceiling of lim[], with and without a (non-trivial) imatrix. */
static void test_roundtrip_rmse(void **state) {
    (void)state;
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    float *qw = malloc(N * sizeof(float));
    uint8_t *q = malloc(N * 4);
    assert_true(x && y && qw && q);
    rng_state = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N; i += 2) {
        const double r = sqrt(-2.0 * log(rng_uniform())), a = 6.283185307179586 * rng_uniform();
        x[i] = (float)(0.02 * r * cos(a));
        x[i + 1] = (float)(0.02 * r * sin(a));
    }
    for (int i = 0; i < N; i++)
        qw[i] = (float)(0.5 + rng_uniform()); /* importance in (0.5, 1.5) */
    double ss = 0.0;
    for (int i = 0; i < N; i++)
        ss += (double)x[i] * x[i];
    for (size_t k = 0; k < sizeof lim / sizeof lim[0]; k++) {
        for (int imat = 0; imat < 2; imat++) {
            assert_int_equal(dsq_quantize_row(lim[k].t, x, q, N, imat ? qw : NULL), DSQ_OK);
            assert_int_equal(dsq_dequantize_row(lim[k].t, q, y, N), DSQ_OK);
            double se = 0.0;
            for (int i = 0; i < N; i++) {
                const double d = (double)y[i] - x[i];
                se += d * d;
            }
            const double rel = sqrt(se / ss);
            if (!(rel < lim[k].ceil))
                fail_msg("%s%s: relative RMSE %.4f >= %.3f", dsq_dtype_name(lim[k].t),
                         imat ? " (imatrix)" : "", rel, lim[k].ceil);
        }
    }
    free(x);
    free(y);
    free(qw);
    free(q);
}

/* The AVX2 kernels must give the scalar kernels' bytes. Inputs: ggml's
 * random-512 rows, gaussian rows, gaussian rows rounded to BF16 (where a
 * fused multiply-add would change Q4_0 about once per 240 blocks), exact
 * half-way values for Q8_0's roundf, +a/-a ties for Q4_0's "first largest
 * |x|" rule, and blocks of +-0.0 (the sign of Q4_0's d). */
static void test_simd_matches_scalar(void **state) {
    (void)state;
    enum { NB = 4096, N = NB * 32 };
    {
        float x0[32] = {0};
        uint8_t b0[34];
        if (!dsq__q8_0_ref_avx2(x0, b0, 0))
            skip(); /* no AVX2 on this machine or target */
    }
    float *x = malloc(N * sizeof(float));
    uint8_t *a = malloc(NB * 34), *b = malloc(NB * 34);
    assert_true(x && a && b);
    memcpy(x, g_src, NROWS * NCOLS * sizeof(float)); /* blocks 0..1023 */
    rng_state = 12345;
    for (int i = NROWS * NCOLS; i < N; i += 2) {
        const double r = sqrt(-2.0 * log(rng_uniform())), t = 6.283185307179586 * rng_uniform();
        x[i] = (float)(0.02 * r * cos(t));
        x[i + 1] = (float)(0.02 * r * sin(t));
    }
    for (int i = 1024 * 32; i < 3072 * 32; i++) { /* blocks 1024..3071: BF16 values */
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        memcpy(&x[i], &u, 4);
    }
    for (int i = 0; i < 32; i++) { /* block 3072: k/2 values, amax 127 -> id 1 */
        x[3072 * 32 + i] = (float)(i - 16) * 0.5f;
        x[3073 * 32 + i] = i % 2 ? -0.0f : 0.0f;                    /* block 3073: +-0 */
        x[3074 * 32 + i] = i == 0 ? -0.0f : 0.0f;                   /* block 3074: -0 first */
        x[3075 * 32 + i] = i == 3 ? -0.75f : i == 9 ? 0.75f : 0.1f; /* -a before +a */
        x[3076 * 32 + i] = i == 3 ? 0.75f : i == 9 ? -0.75f : 0.1f; /* +a before -a */
        x[3077 * 32 + i] = 0.015625f;                               /* constant */
    }
    x[3072 * 32] = 127.0f;
    dsq__q8_0_ref_scalar(x, a, NB);
    assert_true(dsq__q8_0_ref_avx2(x, b, NB));
    assert_int_equal(compare_rows("Q8_0 avx2 vs scalar", b, a, 34 * NB, 34, 1), 0);
    dsq__q4_0_ref_scalar(x, a, NB);
    assert_true(dsq__q4_0_ref_avx2(x, b, NB));
    assert_int_equal(compare_rows("Q4_0 avx2 vs scalar", b, a, 18 * NB, 18, 1), 0);
    free(x);
    free(a);
    free(b);
}

/* ---------------------------------------------------------------------------
 * K-quant SIMD searches (q_simd_k.c) against the scalar ones */

/* NSB super-blocks of hard and ordinary inputs, kind by kind (block b gets
 * kind b % 24 for b >= 128; blocks 0..127 are ggml's random-512 rows). Each
 * kind puts the hard case in some sub-blocks (16 or 32 elements) and not in
 * others, so lanes of one vector disagree about branches. */
static void kq_fill(float *x, int nsb) {
    memcpy(x, g_src, NROWS * NCOLS * sizeof(float)); /* super-blocks 0..127 */
    rng_state = 0xC0FFEE1234567ull;
    for (int b = NROWS * NCOLS / 256; b < nsb; b++) {
        float *v = x + (size_t)b * 256;
        const int kind = b % 24;
        for (int i = 0; i < 256; i += 2) {
            const double r = sqrt(-2.0 * log(rng_uniform())), t = 6.283185307179586 * rng_uniform();
            v[i] = (float)(0.02 * r * cos(t));
            v[i + 1] = (float)(0.02 * r * sin(t));
        }
        for (int i = 0; i < 256; i++) {
            const int sb16 = i / 16, sb32 = i / 32;
            switch (kind) {
            case 0: /* BF16-valued weights */
            case 1: {
                uint32_t u;
                memcpy(&u, &v[i], 4);
                u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
                memcpy(&v[i], &u, 4);
                break;
            }
            case 2: v[i] = 0.0f; break;                                    /* all zero */
            case 3: v[i] = -0.0f; break;                                   /* all -0.0 */
            case 4: v[i] = (i % 3) ? 0.0f : -0.0f; break;                  /* mixed zeros */
            case 5: if (sb32 % 2) v[i] = 0.0f; break;                      /* zero sub-blocks */
            case 6: if (sb16 % 3 == 1) v[i] = 0.25f; break;                /* constant > 0 */
            case 7: if (sb16 % 3 != 1) v[i] = -0.125f; break;              /* constant < 0 */
            case 8: if (i % 37 == 5) v[i] = 3.0f; break;                   /* outliers */
            case 9: if (i % 41 == 7) v[i] = -1000.0f; break;               /* huge outliers */
            case 10: v[i] = (float)((int)(rng_uniform() * 9) - 4) * 0.25f; break; /* ties */
            case 11: v[i] = (i % 16 == 3) ? 0.5f : (i % 16 == 9) ? -0.5f : v[i]; break;
            case 12: v[i] *= 1e-18f; break;                                /* tiny */
            case 13: v[i] = sb16 % 2 ? v[i] * 1e-30f : v[i]; break;        /* below GROUP_MAX_EPS */
            case 14: v[i] = (i % 5) ? 1e-45f : -1e-44f; break;             /* denormals */
            case 15: v[i] = fabsf(v[i]); break;                            /* all >= 0 */
            case 16: v[i] = -fabsf(v[i]); break;                           /* all <= 0 */
            case 17: v[i] = (float)(i % 16); break;                        /* exact levels */
            case 18: v[i] = (float)(i % 32) * 0.5f - 7.75f; break;
            case 19: v[i] = sb32 == 3 ? 1e6f * v[i] : v[i]; break;          /* mixed magnitude */
            case 20: if (i % 32 == 31) v[i] = 0.0f; break;
            case 21: v[i] = (i % 2 ? 1.0f : -1.0f) * (float)(1 + i % 4) / 64.0f; break;
            default: break; /* plain gaussian */
            }
        }
    }
}

enum { KQ_NSB = 2400 };

/* The SIMD searches (AVX2, 8 sub-blocks a vector; AVX-512, 16) must give the
 * scalar searches' bits: levels, scales and mins. */
static int check_searches(const float *x, const float *qw, int level) {
    static const struct {
        int n, mad, nmax, nstep;
        float rmin, rdelta;
    } qk[] = {{32, 0, 15, 20, -1.0f, 0.1f},  {32, 0, 31, 15, -0.5f, 0.1f},  /* Q4_K, Q5_K */
              {32, 0, 15, 36, -0.9f, 0.05f}, {32, 0, 31, 36, -0.9f, 0.05f}, /* imatrix */
              {32, 0, 15, 0, -1.0f, 0.1f},   {16, 1, 3, 15, -0.5f, 0.1f},   /* Q2_K */
              {16, 0, 3, 36, -0.9f, 0.05f},  {16, 1, 15, 20, -1.0f, 0.1f}};
    int bad = 0;
    dsq__simd_disabled = level;
    for (int s = 0; s + 1 < KQ_NSB; s += 2) { /* two super-blocks: 16 or 32 sub-blocks */
        const float *xs = x + (size_t)s * 256;
        float w[512];
        const int use_qw = (s / 24) % 2; /* every kind with both kinds of weights */
        for (int i = 0; i < 512; i++) /* Q4_K-ref-like weights, or the imatrix */
            w[i] = use_qw ? qw[(size_t)s * 256 + i] : 0.01f + fabsf(xs[i]);
        for (size_t c = 0; c < sizeof qk / sizeof qk[0]; c++) {
            const int n = qk[c].n, nsub = 512 / n;
            uint8_t L1[512], L2[512], Laux[32];
            float s1[32], s2[32], m1[32], m2[32];
            assert_true(dsq__qkx_simd(n, qk[c].mad, xs, w, nsub, qk[c].nmax, qk[c].rmin,
                                      qk[c].rdelta, qk[c].nstep, L2, s2, m2));
            for (int j = 0; j < nsub; j++)
                s1[j] = dsq__make_qkx_quants(n, qk[c].nmax, xs + n * j, w + n * j, L1 + n * j,
                                             &m1[j], Laux, qk[c].rmin, qk[c].rdelta, qk[c].nstep,
                                             qk[c].mad);
            if (memcmp(L1, L2, 512) || memcmp(s1, s2, (size_t)nsub * 4) ||
                memcmp(m1, m2, (size_t)nsub * 4)) {
                if (bad++ < 5)
                    print_error("qkx (simd level %d) differs: super-blocks %d.. (kind %d), case "
                                "%zu\n",
                                level, s, s % 24, c);
            }
        }
        for (int nmax = 4; nmax <= 32; nmax *= 8) { /* Q6_K's 32, and a small one */
            int8_t L1[512], L2[512];
            float s1[32], s2[32];
            const float *qs = use_qw ? qw + (size_t)s * 256 : NULL;
            for (int nsb = 1; nsb <= 2; nsb++) {
                assert_true(dsq__qx_simd(xs, qs, nsb, nmax, L2, s2));
                for (int j = 0; j < 16 * nsb; j++)
                    s1[j] = dsq__make_qx_quants(16, nmax, xs + 16 * j, L1 + 16 * j,
                                                qs ? qs + 16 * j : NULL);
                if (memcmp(L1, L2, (size_t)(256 * nsb)) || memcmp(s1, s2, (size_t)(64 * nsb))) {
                    if (bad++ < 5)
                        print_error("qx (simd level %d) differs: super-block %d (kind %d), nmax "
                                    "%d\n",
                                    level, s, s % 24, nmax);
                }
            }
        }
    }
    dsq__simd_disabled = 0;
    return bad;
}

/* level: the dsq__simd_disabled value that selects the kernels under test (2: AVX2, 0: AVX-512);
 * the caller has checked that the CPU has them. */
static void kquant_simd_matches_scalar(int level) {
    enum { N = KQ_NSB * 256, ROW = 9 * 256, KQ_ROWS = N / ROW }; /* odd: a lone last super-block */
    float *x = malloc(N * sizeof(float)), *qw = malloc(N * sizeof(float));
    uint8_t *ref = malloc((size_t)KQ_NSB * 210), *got = malloc((size_t)KQ_NSB * 210);
    assert_true(x && qw && ref && got);
    kq_fill(x, KQ_NSB);
    for (int i = 0; i < N; i++) /* imatrix: some zero columns, some huge */
        qw[i] = i % 97 == 0 ? 0.0f : i % 89 == 0 ? 1e4f : (float)(0.01 + rng_uniform());

    assert_int_equal(check_searches(x, qw, level), 0);

    /* whole rows through the public API: scalar (the reference), then the level's kernels */
    static const dsq_dtype kt[] = {DSQ_DTYPE_Q2_K, DSQ_DTYPE_Q4_K, DSQ_DTYPE_Q5_K,
                                   DSQ_DTYPE_Q6_K};
    for (size_t k = 0; k < sizeof kt / sizeof kt[0]; k++) {
        for (int imat = 0; imat < 2; imat++) {
            const size_t rs = row_size(kt[k], ROW);
            for (int m = 0; m < 2; m++) {
                uint8_t *out = m == 0 ? ref : got;
                dsq__simd_disabled = m == 0 ? 1 : level;
                for (int r = 0; r < KQ_ROWS; r++) /* own imatrix each row */
                    assert_int_equal(dsq_quantize_row(kt[k], x + (size_t)r * ROW, out + r * rs,
                                                      ROW, imat ? qw + (size_t)r * ROW : NULL),
                                     DSQ_OK);
                dsq__simd_disabled = 0;
            }
            char what[64];
            snprintf(what, sizeof what, "%s%s %s vs scalar", dsq_dtype_name(kt[k]),
                     imat ? " (imatrix)" : "", level == 2 ? "avx2" : "avx512");
            assert_int_equal(compare_rows(what, got, ref, rs, bbytes(kt[k]), KQ_ROWS), 0);
        }
    }
    dsq__simd_disabled = 0;
    free(x);
    free(qw);
    free(ref);
    free(got);
}

static int have_avx2_searches(void) {
    uint8_t L[256];
    float sc[8], mn[8];
    return dsq__qkx_simd(32, 0, g_src, g_src, 8, 15, -1.0f, 0.1f, 20, L, sc, mn);
}

static void test_kquant_avx2_matches_scalar(void **state) {
    (void)state;
    if (!have_avx2_searches())
        skip(); /* no AVX2 on this machine or target */
    kquant_simd_matches_scalar(2);
}

static void test_kquant_avx512_matches_scalar(void **state) {
    (void)state;
    if (!dsq__use_avx512())
        skip(); /* no AVX-512 on this machine or target */
    kquant_simd_matches_scalar(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traits_match_core),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_nonfinite_rejected),
        cmocka_unit_test(test_ggml_bytes_plain),
        cmocka_unit_test(test_ggml_bytes_imatrix),
        cmocka_unit_test(test_q8_0_ignores_imatrix),
        cmocka_unit_test(test_threads_and_rows),
        cmocka_unit_test(test_rows_from),
        cmocka_unit_test(test_hand_q8_0),
        cmocka_unit_test(test_hand_q4_0),
        cmocka_unit_test(test_hand_q4_1),
        cmocka_unit_test(test_dequant_spec_exact),
        cmocka_unit_test(test_dequant_ggml_bytes_near_source),
        cmocka_unit_test(test_ggml_fns_error),
        cmocka_unit_test(test_roundtrip_rmse),
        cmocka_unit_test(test_simd_matches_scalar),
        cmocka_unit_test(test_kquant_avx2_matches_scalar),
        cmocka_unit_test(test_kquant_avx512_matches_scalar),
    };
    return cmocka_run_group_tests_name("quant", tests, setup, teardown);
}
