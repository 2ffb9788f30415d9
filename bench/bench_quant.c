/* bench/bench_quant.c: `make bench` for the GGUF block quantizers.
 *
 * Measured in one run, at one thread count:
 *   1. in memory: dsq_quantize_rows throughput in MB/s of F32 input for Q8_0,
 *      Q4_0, Q4_K and Q6_K over a generated set of 64 F32 matrices of
 *      4096 x 1024 (1 GiB, gaussian-like values), beside a plain memcpy of
 *      the same 1 GiB (the baseline, split over the same threads); the
 *      K-quants also with the SIMD kernels switched off (the scalar
 *      reference), to show what the vectorization buys;
 *   2. end to end, only if llama.cpp's llama-quantize is there (argument or
 *      $LLAMA_QUANTIZE; default /work/llama.cpp-src/build/bin/llama-quantize):
 *      a generated F32 llama of 1.55 GB (hidden 1024, FFN 4096, 24 layers,
 *      vocab 1024 to match the tiny tokenizer of SHARED/data/tiny-models),
 *      `llama-quantize --pure` on its F32 GGUF (written by dsq) against
 *      `dsq quantize --pure` on the HF checkpoint, for the same four types
 *      and thread count, with the time ratio (issue target: dsq >= 2x faster
 *      for Q4_K and Q6_K, no slower for Q8_0 and Q4_0), and whether every
 *      tensor's type and bytes are identical in the two outputs. dsq is also
 *      timed with OMP_WAIT_POLICY=passive, for information: with other jobs
 *      on the machine, libgomp's spin-waiting threads (default policy) cost
 *      dsq up to 2 s of CPU on this model, which decides Q8_0/Q4_0 there.
 * Wall-clock on a shared machine: the best of REPS runs counts.
 *
 * usage: bench_quant DSQ_BIN WORK_DIR SHARED_DIR [THREADS] [REPS] [LLAMA_QUANTIZE] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "core/file.h"
#include "formats/gguf.h"
#include "quantize/q_blocks.h" /* internal: dsq__simd_disabled, for the scalar figures */
#include "quantize/quant.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void) { /* uniform in (-1, 1) */
    return bench_urand(&rng);
}
/* roughly gaussian (sum of 4 uniforms), std ~ scale */
static float grand(float scale) { return (urand() + urand() + urand() + urand()) * 0.866f * scale; }

/* ---- 1. in memory ------------------------------------------------------- */

#define M_COUNT 64
#define M_ROWS 4096
#define M_COLS 1024

static const dsq_dtype types[] = {DSQ_DTYPE_Q8_0, DSQ_DTYPE_Q4_0, DSQ_DTYPE_Q4_K, DSQ_DTYPE_Q6_K};
#define NTYPES (sizeof types / sizeof types[0])

static double time_quant(dsq_dtype t, float *const *m, uint8_t *dst, int nt, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = bench_now();
        size_t rs;
        if (dsq_quant_row_size(t, M_COLS, &rs) != DSQ_OK)
            bench_die("row size", NULL);
        for (int i = 0; i < M_COUNT; i++)
            if (dsq_quantize_rows(t, m[i], dst + (size_t)i * rs * M_ROWS, M_ROWS, M_COLS, NULL,
                                  nt) != DSQ_OK)
                bench_die("quantize", NULL);
        const double dt = bench_now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

static void in_memory(int nt, int reps) {
    const size_t per = (size_t)M_ROWS * M_COLS;
    const double mb = (double)(per * M_COUNT * sizeof(float)) / 1e6;
    float *m[M_COUNT], *c[M_COUNT];
    for (int i = 0; i < M_COUNT; i++) {
        m[i] = malloc(per * sizeof(float));
        c[i] = malloc(per * sizeof(float));
        if (!m[i] || !c[i])
            bench_die("malloc", NULL);
        for (size_t k = 0; k < per; k++)
            m[i][k] = grand(0.02f);
        memset(c[i], 0, per * sizeof(float));
    }
    uint8_t *dst = malloc(per * M_COUNT * 34 / 32); /* Q8_0 is the largest */
    if (!dst)
        bench_die("malloc", NULL);
    memset(dst, 0, per * M_COUNT * 34 / 32);

    double tcopy = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        const double t0 = bench_now();
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
#endif
        for (int i = 0; i < M_COUNT; i++)
            memcpy(c[i], m[i], per * sizeof(float));
        const double dt = bench_now() - t0;
        tcopy = dt < tcopy ? dt : tcopy;
    }
    printf("in memory: %d matrices %dx%d F32 = %.0f MB, %d thread(s), best of %d\n", M_COUNT,
           M_ROWS, M_COLS, mb, nt, reps);
    printf("  %-22s %8.3f s %9.1f MB/s\n", "memcpy (baseline)", tcopy, mb / tcopy);
    for (size_t k = 0; k < NTYPES; k++) {
        const dsq_dtype t = types[k];
        const double dt = time_quant(t, m, dst, nt, reps);
        printf("  %-22s %8.3f s %9.1f MB/s  (%.3f x memcpy)\n", dsq_dtype_name(t), dt, mb / dt,
               tcopy / dt);
        fflush(stdout);
    }
    for (size_t k = 2; k < NTYPES; k++) { /* the scalar K-quant reference, once */
        const dsq_dtype t = types[k];
        dsq__simd_disabled = 1;
        const double dt = time_quant(t, m, dst, nt, 1);
        dsq__simd_disabled = 0;
        char name[40];
        snprintf(name, sizeof name, "%s scalar (no SIMD)", dsq_dtype_name(t));
        printf("  %-22s %8.3f s %9.1f MB/s  (%.3f x memcpy)\n", name, dt, mb / dt, tcopy / dt);
        fflush(stdout);
    }
    for (int i = 0; i < M_COUNT; i++) {
        free(m[i]);
        free(c[i]);
    }
    free(dst);
}

/* ---- 2. against llama-quantize ---------------------------------------------- */

#define L_VOCAB 1024
#define L_DIM 1024
#define L_LAYERS 24
#define L_HEADS 16
#define L_FFN 4096

/* gaussian weights, std 1/sqrt(fan_in); the tiny models' tokenizer (1024 ids,
 * ours) so that dsq and llama.cpp can make and read a GGUF of it */
static void gen_llama(const char *dir, const char *shared) {
    const bench_llama d = {L_VOCAB, L_DIM, L_LAYERS, L_HEADS, L_FFN, 1, 1.0f};
    dsq_err err = {0};
    bench_write_llama(dir, &d);
    char *tok_path = dsq_path_join(dir, "tokenizer.json");
    struct stat sb;
    if (stat(tok_path, &sb) != 0) {
        char *tok_src = dsq_path_join(shared, "data/tiny-models/tiny-llama/tokenizer.json");
        if (dsq_copy_file(tok_src, dir, "tokenizer.json", &err) != DSQ_OK)
            bench_die(tok_src, &err);
        free(tok_src);
    }
    free(tok_path);
}

/* execvp wants char *const[]; the strings are never written */
#define A(s) ((char *)(s))

/* Runs argv with stdout/stderr to /dev/null, with OMP_WAIT_POLICY=passive
 * in its environment if passive; returns wall seconds. */
static double run_env(char *const argv[], int passive) {
    fflush(stdout); /* or the child's freopen writes our buffer out again */
    fflush(stderr);
    const double t0 = bench_now();
    const pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", NULL);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        if (passive && setenv("OMP_WAIT_POLICY", "passive", 1) != 0)
            _exit(126);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0)
        bench_die("waitpid", NULL);
    const double t = bench_now() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_quant: %s failed (status %d)\n", argv[0], status);
        exit(1);
    }
    return t;
}

static double run(char *const argv[]) { return run_env(argv, 0); }

/* every tensor of a in b with the same type and bytes: returns the number of
 * tensors that differ (or are missing), *count the tensors of a */
static int64_t compare_gguf(const char *pa, const char *pb, int64_t *count) {
    dsq_gguf *a = NULL, *b = NULL;
    dsq_err err = {0};
    if (dsq_gguf_open(&a, pa, &err) != DSQ_OK)
        bench_die(pa, &err);
    if (dsq_gguf_open(&b, pb, &err) != DSQ_OK)
        bench_die(pb, &err);
    int64_t bad = 0;
    *count = dsq_gguf_tensor_count(a);
    for (int64_t i = 0; i < *count; i++) {
        const dsq_gguf_tensor *ta = dsq_gguf_tensor_at(a, i);
        const int64_t j = dsq_gguf_find_tensor(b, ta->name);
        const dsq_gguf_tensor *tb = j < 0 ? NULL : dsq_gguf_tensor_at(b, j);
        if (!tb || tb->ggml_type != ta->ggml_type || tb->nbytes != ta->nbytes ||
            memcmp(ta->data, tb->data, ta->nbytes) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "bench_quant: tensor %s differs\n", ta->name);
        }
    }
    bad += dsq_gguf_tensor_count(b) != *count;
    dsq_gguf_close(a);
    dsq_gguf_close(b);
    return bad;
}

static void vs_llama(const char *dsq, const char *work, const char *shared, const char *lq,
                     int nt, int reps) {
    char *dir = dsq_path_join(work, "quant-llama");
    gen_llama(dir, shared);
    char *f32 = dsq_path_join(work, "quant-llama-f32.gguf");
    char nts[16];
    snprintf(nts, sizeof nts, "%d", nt);
    struct stat f32_sb;
    if (stat(f32, &f32_sb) != 0) {
        char *argv[] = {A(dsq), A("quantize"), dir, f32, A("--type"), A("F32"), A("-q"), NULL};
        run(argv);
    }
    struct stat sb;
    if (stat(f32, &sb) != 0)
        bench_die(f32, NULL);
    printf("end to end: %s (%.2f GB F32), %d thread(s), best of %d; llama-quantize --pure on "
           "the F32 GGUF vs dsq quantize --pure on the HF checkpoint\n",
           dir, (double)sb.st_size / 1e9, nt, reps);
    char *outl = dsq_path_join(work, "quant-llama-lq.gguf");
    char *outd = dsq_path_join(work, "quant-llama-dsq.gguf");
    for (size_t k = 0; k < NTYPES; k++) {
        const char *tn = dsq_dtype_name(types[k]);
        char *la[] = {A(lq), A("--pure"), f32, outl, A(tn), nts, NULL};
        char *da[] = {A(dsq), A("quantize"), dir, outd, A("--type"), A(tn), A("--pure"),
                      A("--threads"), nts, A("-q"), NULL};
        double tl = 1e30, td = 1e30, tp = 1e30;
        for (int r = 0; r < reps; r++) { /* alternate, so all see the same load */
            const double a = run(la), b = run(da), c = run_env(da, 1);
            tl = a < tl ? a : tl;
            td = b < td ? b : td;
            tp = c < tp ? c : tp;
        }
        int64_t count;
        const int64_t bad = compare_gguf(outl, outd, &count);
        printf("  %-5s llama-quantize %6.2f s   dsq %6.2f s  %5.2fx   (dsq with OMP_WAIT_POLICY=passive "
               "%6.2f s  %5.2fx)   tensors %s (%lld/%lld)\n",
               tn, tl, td, tl / td, tp, tl / tp, bad ? "DIFFER" : "identical",
               (long long)(count - bad), (long long)count);
        fflush(stdout);
    }
    unlink(outl);
    unlink(outd);
    free(outl);
    free(outd);
    free(f32);
    free(dir);
}

int main(int argc, char **argv) {
    bench_name = "bench_quant";
    if (argc < 4) {
        fprintf(stderr,
                "usage: bench_quant DSQ_BIN WORK_DIR SHARED_DIR [THREADS] [REPS] [LLAMA_QUANTIZE]\n");
        return 2;
    }
    const int nt = argc > 4 ? atoi(argv[4]) : 2;
    const int reps = argc > 5 ? atoi(argv[5]) : 2;
    const char *lq = argc > 6 ? argv[6] : getenv("LLAMA_QUANTIZE");
    if (lq == NULL || !*lq)
        lq = "/work/llama.cpp-src/build/bin/llama-quantize";
    if (nt < 1 || reps < 1) {
        fprintf(stderr, "bench_quant: THREADS and REPS must be >= 1\n");
        return 2;
    }
    in_memory(nt, reps);
    if (access(lq, X_OK) != 0) {
        printf("end to end: %s not found, llama-quantize comparison skipped\n", lq);
        return 0;
    }
    vs_llama(argv[1], argv[2], argv[3], lq, nt, reps);
    return 0;
}
