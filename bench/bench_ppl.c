/* bench/bench_ppl.c: `make bench` for the reference forward pass and `dsq ppl`.
 *
 * Measured in one run, on the same machine and thread count:
 *   1. the machine's F32 peak: a register-only FMA loop (no memory traffic);
 *   2. dsq's GEMM: a plain 1024^3 product (the practical peak the issue asks
 *      for) and forward-pass shapes, GFLOP/s and % of the FMA peak;
 *   3. `dsq ppl` speed (tokens/s, ctx 256) on a generated llama of ~400M
 *      parameters in F32 (hidden 1024, 20 layers, 16 heads, FFN 4096, vocab
 *      32000; random weights, so its perplexity means nothing), with the share
 *      of time in the Linear GEMMs and in attention. Issue target: at least
 *      llama.cpp's llama-perplexity on the same model as F32 GGUF (175 tokens/s
 *      at ctx 256 with 2 threads), >= 50% of the time in GEMM at >= 50% of peak;
 *   4. tokens/s on the team's tiny DeepSeek-V3 and llama (../shared).
 * The generated model is kept in WORK_DIR between runs (1.6 GB).
 *
 * usage: bench_ppl WORK_DIR SHARED_DIR [THREADS] [CHUNKS] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench/bench_util.h"
#include "core/file.h"
#include "verify/gemm.h"
#include "verify/model.h"
#include "verify/ppl.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- 1. peak: independent FMA chains in registers ---- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* 12 named accumulators (an array would live on the stack at -O2): more
 * independent chains than FMA latency x ports, so the loop is port-bound. */
#define FMA_BODY(V, SET1, FMA, ADD, STORE, W)                                                      \
    V a0 = SET1(0.f), a1 = SET1(1.f), a2 = SET1(2.f), a3 = SET1(3.f), a4 = SET1(4.f);             \
    V a5 = SET1(5.f), a6 = SET1(6.f), a7 = SET1(7.f), a8 = SET1(8.f), a9 = SET1(9.f);             \
    V a10 = SET1(10.f), a11 = SET1(11.f);                                                          \
    const V b = SET1(0.999999f), c = SET1(1e-7f);                                                  \
    for (long it = 0; it < iters; it++) {                                                          \
        a0 = FMA(a0, b, c); a1 = FMA(a1, b, c); a2 = FMA(a2, b, c); a3 = FMA(a3, b, c);           \
        a4 = FMA(a4, b, c); a5 = FMA(a5, b, c); a6 = FMA(a6, b, c); a7 = FMA(a7, b, c);           \
        a8 = FMA(a8, b, c); a9 = FMA(a9, b, c); a10 = FMA(a10, b, c); a11 = FMA(a11, b, c);       \
    }                                                                                              \
    a0 = ADD(ADD(ADD(a0, a1), ADD(a2, a3)), ADD(ADD(a4, a5), ADD(a6, a7)));                        \
    a0 = ADD(a0, ADD(ADD(a8, a9), ADD(a10, a11)));                                                 \
    float s[W];                                                                                    \
    STORE(s, a0);                                                                                  \
    return (double)(s[0] > 1e30f) + (double)iters * 12 * W * 2; /* s[0] keeps the loop live */

__attribute__((target("avx512f"))) static double fma_loop_512(long iters) {
    FMA_BODY(__m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps, 16)
}
__attribute__((target("avx2,fma"))) static double fma_loop_256(long iters) {
    FMA_BODY(__m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps, 8)
}
static double fma_loop(long iters) {
    if (__builtin_cpu_supports("avx512f"))
        return fma_loop_512(iters);
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return fma_loop_256(iters);
    return 0.0;
}
#else
static double fma_loop(long iters) {
    (void)iters;
    return 0.0;
}
#endif

/* GFLOP/s of nt threads each running the loop; best of 3. */
static double peak_gflops(int nt) {
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        const long iters = 20000000;
        double flop = 0.0;
        const double t0 = bench_now();
#pragma omp parallel num_threads(nt) reduction(+ : flop)
        flop += fma_loop(iters);
        const double g = flop / (bench_now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    return best;
}

/* ---- 2. GEMM ---- */

static double gemm_gflops(int64_t m, int64_t n, int64_t k, int nt) {
    float *A = malloc((size_t)(m * k) * 4), *B = malloc((size_t)(n * k) * 4);
    float *C = malloc((size_t)(m * n) * 4);
    if (!A || !B || !C)
        bench_die("malloc", NULL);
    for (int64_t i = 0; i < m * k; i++)
        A[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < n * k; i++)
        B[i] = (float)(i % 5) * 0.1f;
    dsq_pmat p;
    dsq_err err = {0};
    if (dsq_pmat_pack(&p, B, n, k, k, &err) != DSQ_OK)
        bench_die("pack", &err);
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        int reps = 0;
        const double t0 = bench_now();
        double t;
        do {
            dsq_gemm_packed(m, A, k, &p, C, n, 0, nt);
            reps++;
        } while ((t = bench_now() - t0) < 0.3);
        const double g = 2.0 * (double)m * (double)n * (double)k * reps / t / 1e9;
        best = g > best ? g : best;
    }
    dsq_pmat_free(&p);
    free(A);
    free(B);
    free(C);
    return best;
}

/* ---- 3. the generated llama ---- */

#define L_VOCAB 32000
#define L_DIM 1024
#define L_LAYERS 20
#define L_HEADS 16
#define L_FFN 4096

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(float scale) {
    return bench_urand(&rng) * scale;
}

/* uniform weights with std ~ 1/sqrt(fan_in), so activations stay finite through 20 layers */
static void gen_llama(const char *dir) {
    const bench_llama d = {L_VOCAB, L_DIM, L_LAYERS, L_HEADS, L_FFN, 0, 1.7f};
    bench_write_llama(dir, &d);
}

static void bench_model(const char *label, const char *dir, const int32_t *tok, int64_t ntok,
                        int64_t chunks, int nt, double peak, double plain, int stream) {
    dsq_model *m = NULL;
    dsq_err err = {0};
    dsq_model_opts mo;
    memset(&mo, 0, sizeof mo);
    mo.nthreads = nt;
    const double t0 = bench_now();
    if (dsq_model_open(&m, dir, &mo, &err) != DSQ_OK)
        bench_die(dir, &err);
    const double load = bench_now() - t0;
    dsq_ppl_opts po;
    memset(&po, 0, sizeof po);
    po.n_ctx = 256;
    po.n_chunks = chunks;
    po.bos = dsq_model_get_config(m)->bos;
    po.nthreads = nt;
    dsq_ppl_result r;
    if (dsq_ppl_run(m, tok, ntok, &po, &r, NULL, &err) != DSQ_OK)
        bench_die(label, &err);
    const double tps = (double)(r.n_chunks * 256) / r.seconds;
    const double gf = r.gemm_flop / (r.gemm_seconds * nt) / 1e9; /* per thread-second */
    printf("%-18s %5.1fM params  load %.2f s  %lld x 256 tokens: %8.1f tokens/s\n"
           "%-18s GEMM %4.1f%% of the time at %.1f GFLOP/s per thread = %.0f%% of the FMA peak, "
           "%.0f%% of the plain GEMM; attention %4.1f%%\n",
           label, (double)dsq_model_param_count(m) / 1e6, load, (long long)r.n_chunks, tps, "",
           100.0 * r.gemm_seconds / r.seconds, gf, 100.0 * gf * nt / peak,
           100.0 * gf * nt / plain, 100.0 * r.attn_seconds / r.seconds);
    dsq_model_close(m);
    m = NULL;
    if (!stream)
        return;
    /* --stream-layers: the same windows, one layer in memory at a time, the
     * loading (reading and converting that layer's weights) counted in */
    mo.lazy = 1;
    const double t1 = bench_now();
    if (dsq_model_open(&m, dir, &mo, &err) != DSQ_OK)
        bench_die(dir, &err);
    dsq_ppl_result rs;
    if (dsq_ppl_run_layered(m, tok, ntok, &po, &rs, NULL, &err) != DSQ_OK)
        bench_die(label, &err);
    const double ts = bench_now() - t1;
    printf("%-18s --stream-layers: %.2f s (load included) vs %.2f s: ratio %.2f (target <= 1.50); "
           "same ppl: %s\n",
           "", ts, load + r.seconds, ts / (load + r.seconds), rs.ppl == r.ppl ? "yes" : "NO");
    dsq_model_close(m);
}

int main(int argc, char **argv) {
    bench_name = "bench_ppl";
    if (argc < 3) {
        fprintf(stderr, "usage: bench_ppl WORK_DIR SHARED_DIR [THREADS] [CHUNKS]\n");
        return 2;
    }
    const char *work = argv[1], *shared = argv[2];
    const int nt = argc > 3 ? atoi(argv[3]) : 2;
    const int64_t chunks = argc > 4 ? atoll(argv[4]) : 4;
    FILE *la = fopen("/proc/loadavg", "r");
    char load[64] = "?";
    if (la != NULL) {
        if (fgets(load, sizeof load, la) == NULL)
            strcpy(load, "?");
        fclose(la);
        load[strcspn(load, "\n")] = '\0';
    }
    printf("threads %d, GEMM kernel %s, load average %s\n", nt, dsq_gemm_kernel_name(), load);
    const double p1 = peak_gflops(1), pn = peak_gflops(nt);
    printf("peak (register FMA loop): %.1f GFLOP/s on 1 thread, %.1f on %d\n", p1, pn, nt);
    static const int64_t shapes[][3] = {{1024, 1024, 1024}, {256, 1024, 1024}, {256, 4096, 1024},
                                        {256, 1024, 4096}, {256, 32000, 1024}, {256, 256, 256}};
    double plain = 0.0; /* the plain 1024^3 GEMM on nt threads: the practical peak */
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const double g1 = gemm_gflops(shapes[i][0], shapes[i][1], shapes[i][2], 1);
        const double gn = gemm_gflops(shapes[i][0], shapes[i][1], shapes[i][2], nt);
        if (i == 0)
            plain = gn;
        printf("GEMM %4lld x %5lld x %4lld: %6.1f GFLOP/s (%2.0f%% of peak) on 1 thread, "
               "%6.1f (%2.0f%%) on %d\n",
               (long long)shapes[i][0], (long long)shapes[i][1], (long long)shapes[i][2], g1,
               100 * g1 / p1, gn, 100 * gn / pn, nt);
    }

    char *ldir = dsq_path_join(work, "llama400m");
    gen_llama(ldir);
    const int64_t ntok = chunks * 256 + 256;
    int32_t *tok = malloc((size_t)ntok * sizeof *tok);
    for (int64_t i = 0; i < ntok; i++)
        tok[i] = (int32_t)((uint32_t)(urand(1.0f) * 1e6f + 2e6f) % L_VOCAB);
    bench_model("llama-400M F32", ldir, tok, ntok, chunks, nt, pn, plain, 1);
    free(tok);
    free(ldir);

    char *tpath = dsq_path_join(shared, "data/tiny-models/eval.tokens.txt");
    int32_t *ev = NULL;
    int64_t nev = 0;
    dsq_err err = {0};
    if (dsq_tokens_read(tpath, &ev, &nev, &err) != DSQ_OK)
        bench_die(tpath, &err);
    static const char *const tiny[] = {"tiny-deepseek-v3", "tiny-llama"};
    for (int i = 0; i < 2; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "data/tiny-models/%s", tiny[i]);
        char *d = dsq_path_join(shared, rel);
        bench_model(tiny[i], d, ev, nev, 0, nt, pn, plain, i == 0);
        free(d);
    }
    free(ev);
    free(tpath);
    return 0;
}
