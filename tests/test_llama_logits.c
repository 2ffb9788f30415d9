/* tests/test_llama_logits.c: llama.cpp's --kl-divergence-base file
 * (verify/llama_logits.h) against its definition, with this file's own
 * writer, reader and KLD, written from llama.cpp's perplexity.cpp @c392e50 as
 * quoted in that header, not from dsq's code:
 *   - dsq reads a file this test wrote from the tiny llama's logits: header,
 *     tokens, and dsq_kld_run_llama gives the mean KLD, top-1 and reference
 *     perplexity that llama.cpp's --kl-divergence formula gives on the same
 *     values (evaluated here), close to the exact live KLD;
 *   - the file dsq writes while comparing live parses with this file's
 *     reader: the text's tokens (not BOS), the exact size, and every
 *     record's log-probabilities within half a quantization step of the
 *     log-softmax of the logits (the definition), the floor at max - 16;
 *   - broken files are refused with a message naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "tests/testutil.h"
#include "verify/forward.h"
#include "verify/kld.h"
#include "verify/llama_logits.h"
#include "verify/model.h"

#define CTX 128
#define CHUNKS 2
#define NS (CTX - 1 - CTX / 2)

static dsq_model *open_path(const char *rel) {
    char *path = tu_shared_path(rel);
    dsq_model_opts o;
    memset(&o, 0, sizeof o);
    o.nthreads = 2;
    dsq_model *m = NULL;
    dsq_err err = {0};
    if (dsq_model_open(&m, path, &o, &err) != DSQ_OK)
        fail_msg("%s: %s", path, err.text);
    free(path);
    return m;
}

/* The scored logits [NS][V] of window c, from dsq's forward pass. */
static float *window_logits(const dsq_model *m, const int32_t *ids, int64_t c) {
    const int64_t V = dsq_model_get_config(m)->vocab;
    float *out = malloc((size_t)(NS * V) * sizeof *out);
    dsq_fwd *f = NULL;
    dsq_err err = {0};
    int32_t win[CTX];
    memcpy(win, ids + c * CTX, sizeof win);
    win[0] = dsq_model_get_config(m)->bos;
    assert_int_equal(dsq_fwd_init(&f, m, 1, CTX, NULL, &err), DSQ_OK);
    assert_int_equal(dsq_fwd_run(f, win, CTX / 2, NS, out, &err), DSQ_OK);
    dsq_fwd_free(f);
    return out;
}

/* ---- this test's own writer: the definition, step by step ---- */

static void le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static float rdf(const uint8_t *p) {
    const uint32_t v = rd32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

static size_t rec_bytes(int64_t V) {
    return (size_t)(2 * ((V + 1) / 2) + 4) * 2;
}

/* One record: scale and min_log_prob as floats, then uint16 codes. */
static void encode(const float *l, int64_t V, uint8_t *rec) {
    float hi = -INFINITY, lo = INFINITY;
    for (int64_t i = 0; i < V; i++) {
        if (l[i] > hi)
            hi = l[i];
        if (l[i] < lo)
            lo = l[i];
    }
    if (lo < hi - 16)
        lo = hi - 16;
    double sum = 0;
    for (int64_t i = 0; i < V; i++)
        sum += expf(l[i] - hi);
    const float log_sum = (float)log(sum);
    const float scale = (hi - lo) / 65535.f, min_lp = lo - hi - log_sum;
    memset(rec, 0, rec_bytes(V));
    memcpy(rec, &scale, 4);
    memcpy(rec + 4, &min_lp, 4);
    for (int64_t i = 0; i < V; i++) {
        const long q = l[i] > lo ? lrintf((1 / scale) * (l[i] - lo)) : 0;
        rec[8 + 2 * i] = (uint8_t)q;
        rec[9 + 2 * i] = (uint8_t)(q >> 8);
    }
}

static uint16_t code(const uint8_t *rec, int64_t i) {
    return (uint16_t)(rec[8 + 2 * i] | rec[9 + 2 * i] << 8);
}

/* ---- llama.cpp's --kl-divergence on one position, evaluated here ---- */

typedef struct acc {
    double kld, nll_base, nll;
    int64_t same_top, n;
} acc;

static void kld_pos(const uint8_t *rec, const float *q, int64_t V, int32_t tok, acc *a) {
    const float scale = rdf(rec), min_lp = rdf(rec + 4);
    double zq = 0, mq = -INFINITY;
    int64_t imax = 0, ibase = 0;
    for (int64_t i = 0; i < V; i++)
        mq = q[i] > mq ? q[i] : mq;
    for (int64_t i = 0; i < V; i++)
        zq += exp(q[i] - mq);
    zq = log(zq) + mq;
    double kl = 0;
    float best = 0;
    for (int64_t i = 0; i < V; i++) {
        imax = q[i] > q[imax] ? i : imax;
        const float lp = scale * code(rec, i) + min_lp;
        if (i == 0 || lp > best)
            best = lp, ibase = i;
        if (lp > -16.f)
            kl += exp(lp) * (lp - (q[i] - zq));
    }
    a->kld += kl;
    a->nll_base += -(scale * code(rec, tok) + min_lp);
    a->nll += zq - q[tok];
    a->same_top += imax == ibase;
    a->n++;
}

static char *write_base(const char *dir, const dsq_model *ref, const int32_t *ids) {
    const int64_t V = dsq_model_get_config(ref)->vocab;
    const size_t rb = rec_bytes(V), head = 20 + 4 * (size_t)(CHUNKS * CTX);
    const size_t total = head + (size_t)CHUNKS * NS * rb;
    uint8_t *buf = calloc(1, total);
    memcpy(buf, "_logits_", 8);
    le32(buf + 8, CTX);
    le32(buf + 12, (uint32_t)V);
    le32(buf + 16, CHUNKS);
    for (int64_t i = 0; i < CHUNKS * CTX; i++)
        le32(buf + 20 + 4 * i, (uint32_t)ids[i]);
    for (int64_t c = 0; c < CHUNKS; c++) {
        float *l = window_logits(ref, ids, c);
        for (int64_t p = 0; p < NS; p++)
            encode(l + p * V, V, buf + head + (size_t)(c * NS + p) * rb);
        free(l);
    }
    char *path = dsq_path_join(dir, "base.kld");
    tu_write_file(path, buf, total);
    free(buf);
    return path;
}

/* dsq reads this test's file, and computes what llama.cpp would. */
static void test_read_and_compare(void **state) {
    (void)state;
    int64_t n;
    int32_t *ids = tu_eval_tokens(&n);
    dsq_model *ref = open_path("data/tiny-models/tiny-llama");
    dsq_model *cand = open_path("data/tiny-models/tiny-deepseek-v3");
    const int64_t V = dsq_model_get_config(ref)->vocab;
    char *tmp = tu_mkdtemp(), *path = write_base(tmp, ref, ids);
    dsq_llama_logits *f = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_llama_logits_open(&f, path, &err), DSQ_OK);
    assert_true(f->n_ctx == CTX && f->vocab == V && f->n_chunks == CHUNKS && f->n_score == NS);
    assert_memory_equal(f->tokens, ids, CHUNKS * CTX * sizeof *ids);
    const int32_t bos = dsq_model_get_config(cand)->bos;
    dsq_kld_result r;
    assert_int_equal(dsq_kld_run_llama(cand, f, ids, n, bos, 2, 0, &r, &err), DSQ_OK);
    assert_true(r.exact && r.ref_kind == DSQ_REFKIND_LLAMA && r.n_scored == CHUNKS * NS);

    /* the same formula here, on the file's bytes and the candidate's logits */
    size_t len;
    uint8_t *file = tu_read_file(path, &len);
    const size_t rb = rec_bytes(V), head = 20 + 4 * (size_t)(CHUNKS * CTX);
    acc a = {0};
    for (int64_t c = 0; c < CHUNKS; c++) {
        float *q = window_logits(cand, ids, c);
        for (int64_t p = 0; p < NS; p++)
            kld_pos(file + head + (size_t)(c * NS + p) * rb, q + p * V, V,
                    ids[c * CTX + CTX / 2 + p + 1], &a);
        free(q);
    }
    printf("  llama.cpp formula: KLD %.8f (dsq %.8f), same top %.4f (dsq %.4f), "
           "ref ppl %.6f (dsq %.6f)\n",
           a.kld / a.n, r.kld_mean, (double)a.same_top / a.n, r.top1, exp(a.nll_base / a.n),
           r.ref_ppl);
    assert_true(fabs(r.kld_mean / (a.kld / a.n) - 1) < 1e-6);
    assert_true(r.top1 == (double)a.same_top / a.n);
    assert_true(fabs(r.ref_ppl / exp(a.nll_base / a.n) - 1) < 1e-9);
    assert_true(fabs(r.ppl / exp(a.nll / a.n) - 1) < 1e-9);
    /* and close to the exact value: the file keeps log p to 16 bits */
    dsq_ppl_opts o;
    memset(&o, 0, sizeof o);
    o.n_ctx = CTX;
    o.n_chunks = CHUNKS;
    o.bos = bos;
    dsq_kld_result live;
    assert_int_equal(dsq_kld_run_live(ref, cand, ids, n, &o, 0, NULL, &live, &err), DSQ_OK);
    printf("  live exact KLD %.8f, from the file %.8f (%.2e relative); ppl %.6f / %.6f\n",
           live.kld_mean, r.kld_mean, r.kld_mean / live.kld_mean - 1, live.ref_ppl, r.ref_ppl);
    /* the README: the file's KLD equals the live value to the 4 digits it prints (9e-6 here) */
    assert_true(fabs(r.kld_mean / live.kld_mean - 1) < 1e-4);
    assert_true(fabs(r.ref_ppl / live.ref_ppl - 1) < 1e-5 && r.ppl == live.ppl);

    /* tokens other than the file's are refused */
    ids[5] ^= 1;
    assert_int_equal(dsq_kld_run_llama(cand, f, ids, n, bos, 2, 0, &r, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "base.kld"));
    ids[5] ^= 1;
    dsq_llama_logits_close(f);

    /* a record with a NaN scale: refused when its window is read */
    float nan = NAN;
    memcpy(file + head + rb * (NS + 3), &nan, 4);
    tu_write_file(path, file, len);
    assert_int_equal(dsq_llama_logits_open(&f, path, &err), DSQ_OK);
    dsq_err_clear(&err);
    assert_int_equal(dsq_kld_run_llama(cand, f, NULL, 0, bos, 2, 0, &r, &err), DSQ_FORMAT);
    assert_non_null(strstr(err.text, "chunk 2, position 3"));
    dsq_llama_logits_close(f);
    free(file);
    tu_rm_rf(tmp);
    free(tmp);
    free(path);
    dsq_model_close(ref);
    dsq_model_close(cand);
    free(ids);
}

/* dsq writes the file while comparing live: this test's reader checks it. */
static void test_write(void **state) {
    (void)state;
    int64_t n;
    int32_t *ids = tu_eval_tokens(&n);
    dsq_model *ref = open_path("data/tiny-models/tiny-llama");
    const int64_t V = dsq_model_get_config(ref)->vocab;
    char *tmp = tu_mkdtemp(), *path = dsq_path_join(tmp, "out.kld");
    dsq_ppl_opts o;
    memset(&o, 0, sizeof o);
    o.n_ctx = CTX;
    o.n_chunks = CHUNKS;
    o.bos = dsq_model_get_config(ref)->bos;
    o.nthreads = 2;
    const dsq_kld_save save = {0, NULL, path};
    dsq_kld_result r;
    dsq_err err = {0};
    assert_int_equal(dsq_kld_run_live(ref, ref, ids, n, &o, 0, &save, &r, &err), DSQ_OK);
    size_t len;
    uint8_t *b = tu_read_file(path, &len);
    const size_t rb = rec_bytes(V), head = 20 + 4 * (size_t)(CHUNKS * CTX);
    assert_int_equal(len, head + (size_t)CHUNKS * NS * rb);
    assert_memory_equal(b, "_logits_", 8);
    assert_true(rd32(b + 8) == CTX && rd32(b + 12) == V && rd32(b + 16) == CHUNKS);
    for (int64_t i = 0; i < CHUNKS * CTX; i++)
        assert_int_equal((int32_t)rd32(b + 20 + 4 * i), ids[i]); /* not BOS at 0 */
    uint8_t *mine = malloc(rb);
    int64_t codes_off = 0;
    for (int64_t c = 0; c < CHUNKS; c++) {
        float *l = window_logits(ref, ids, c);
        for (int64_t p = 0; p < NS; p++) {
            const uint8_t *rec = b + head + (size_t)(c * NS + p) * rb;
            const float *x = l + p * V;
            encode(x, V, mine);
            assert_memory_equal(rec, mine, 8); /* scale and min: the same float steps */
            double mx = -INFINITY, z = 0;
            for (int64_t i = 0; i < V; i++)
                mx = x[i] > mx ? x[i] : mx;
            for (int64_t i = 0; i < V; i++)
                z += exp(x[i] - mx);
            z = log(z) + mx;
            const float scale = rdf(rec), min_lp = rdf(rec + 4);
            for (int64_t i = 0; i < V; i++) {
                const double lp = x[i] - z, got = scale * code(rec, i) + min_lp;
                codes_off += abs((int)code(rec, i) - (int)code(mine, i));
                if (x[i] > mx - 16) /* above the floor: within half a step */
                    assert_true(fabs(got - lp) <= 0.5 * scale + 1e-4);
                else
                    assert_int_equal(code(rec, i), 0);
            }
            if (V % 2)
                assert_int_equal(code(rec, V), 0);
        }
        free(l);
    }
    assert_int_equal(codes_off, 0);
    free(mine);
    free(b);
    /* and dsq reads back what it wrote: the model against its own file is not
     * quite 0, the 16-bit log-probabilities' own noise (measured 3.3e-6) */
    dsq_llama_logits *f = NULL;
    assert_int_equal(dsq_llama_logits_open(&f, path, &err), DSQ_OK);
    dsq_kld_result back;
    assert_int_equal(dsq_kld_run_llama(ref, f, ids, n, o.bos, 2, 0, &back, &err), DSQ_OK);
    printf("  dsq reading its own file of the model against itself: KLD %.3g, top-1 %.4f\n",
           back.kld_mean, back.top1);
    assert_true(back.top1 == 1.0 && back.kld_mean < 1e-5 && back.ppl == r.ppl);
    dsq_llama_logits_close(f);
    tu_rm_rf(tmp);
    free(tmp);
    free(path);
    dsq_model_close(ref);
    free(ids);
}

/* Broken files: one error naming the file. */
static void test_refusals(void **state) {
    (void)state;
    char *tmp = tu_mkdtemp(), *path = dsq_path_join(tmp, "bad.kld");
    uint8_t h[20 + 4 * 8 + 2 * (8 + 4) * 3] = {0};
    memcpy(h, "_logits_", 8);
    le32(h + 8, 8);  /* n_ctx 8: 3 scored positions */
    le32(h + 12, 8); /* vocab 8: records of 12 uint16 */
    le32(h + 16, 1);
    struct {
        size_t len;
        int poke; /* byte to change, -1 none */
        uint8_t val;
        const char *want;
    } cases[] = {
        {sizeof h, 0, 'X', "not a llama.cpp logits file"},
        {sizeof h - 1, -1, 0, "truncated"},
        {sizeof h + 2, -1, 0, "truncated"},
        {12, -1, 0, "too short"},
        {sizeof h, 8, 2, "bad header"},
        {sizeof h, 20 + 4 * 3, 9, "outside the vocabulary"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[sizeof h + 2] = {0};
        memcpy(b, h, sizeof h);
        if (cases[i].poke >= 0)
            b[cases[i].poke] = cases[i].val;
        tu_write_file(path, b, cases[i].len);
        dsq_llama_logits *f = NULL;
        dsq_err err = {0};
        assert_int_equal(dsq_llama_logits_open(&f, path, &err), DSQ_FORMAT);
        assert_null(f);
        if (strstr(err.text, "bad.kld") == NULL || strstr(err.text, cases[i].want) == NULL)
            fail_msg("case %zu: %s", i, err.text);
    }
    tu_write_file(path, h, sizeof h);
    dsq_llama_logits *f = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_llama_logits_open(&f, path, &err), DSQ_OK);
    dsq_llama_logits_close(f);
    char *none = dsq_path_join(tmp, "none.kld");
    assert_int_equal(dsq_llama_logits_open(&f, none, &err), DSQ_NOT_FOUND);
    assert_non_null(strstr(err.text, "none.kld"));
    free(none);
    tu_rm_rf(tmp);
    free(tmp);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_and_compare),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
