/* bench/bench_convert.c: `make bench` for `dsq convert fp8 bf16`.
 *
 * Generates (once) a DeepSeek-V3-shaped FP8 checkpoint of at least 1 GiB of
 * FP8 weights, expert-sized [2048, 7168] and [7168, 2048] matrices with their
 * 128x128 block scales, in two shards. Then, with a warm page cache, it times
 * in alternation `dsq convert fp8 bf16` and `cp` of a file exactly as large as
 * the BF16 output, and reports each one's time and GB/s written, their ratio
 * (target: dsq / cp >= 0.8 in throughput), and dsq's peak RSS from wait4()
 * (target: < 256 MiB). The best of REPS runs of each counts, as with any
 * wall-clock benchmark on a shared machine.
 *
 * usage: bench_convert DSQ_BIN WORK_DIR [REPS] */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "formats/safetensors.h"

#define N_PAIRS 38 /* 76 expert matrices of 14.7 MB: 1.12 GB of FP8 */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const dsq_err *err) {
    fprintf(stderr, "bench_convert: %s: %s\n", what, err ? err->text : strerror(errno));
    exit(1);
}

/* Runs argv; returns wall seconds, and the child's peak RSS in KiB. */
static double run(char *const argv[], long *maxrss_kib) {
    const double t0 = now();
    const pid_t pid = fork();
    if (pid < 0)
        die("fork", NULL);
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0)
        die("wait4", NULL);
    const double t = now() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_convert: %s failed (status %d)\n", argv[0], status);
        exit(1);
    }
    if (maxrss_kib)
        *maxrss_kib = ru.ru_maxrss;
    return t;
}

static void sh(const char *cmd) {
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_convert: '%s' failed\n", cmd);
        exit(1);
    }
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void write_shard(const char *dir, const char *name, int first, int count, uint64_t seed) {
    dsq_st_writer *w = NULL;
    dsq_err err = {0};
    char tname[128];
    const int64_t up[2] = {2048, 7168}, down[2] = {7168, 2048};
    const int64_t sup[2] = {16, 56}, sdown[2] = {56, 16};
    if (dsq_st_writer_init(&w, &err) != DSQ_OK)
        die("writer", &err);
    for (int e = first; e < first + count; e++) {
        snprintf(tname, sizeof tname, "model.layers.3.mlp.experts.%d.up_proj.weight", e);
        dsq_st_writer_add(w, tname, DSQ_DTYPE_F8_E4M3, 2, up, &err);
        snprintf(tname, sizeof tname, "model.layers.3.mlp.experts.%d.up_proj.weight_scale_inv", e);
        dsq_st_writer_add(w, tname, DSQ_DTYPE_F32, 2, sup, &err);
        snprintf(tname, sizeof tname, "model.layers.3.mlp.experts.%d.down_proj.weight", e);
        dsq_st_writer_add(w, tname, DSQ_DTYPE_F8_E4M3, 2, down, &err);
        snprintf(tname, sizeof tname, "model.layers.3.mlp.experts.%d.down_proj.weight_scale_inv",
                 e);
        dsq_st_writer_add(w, tname, DSQ_DTYPE_F32, 2, sdown, &err);
    }
    if (err.code != DSQ_OK || dsq_st_writer_open(w, dir, name, &err) != DSQ_OK)
        die("writer", &err);
    const size_t chunk = (size_t)1 << 20;
    uint8_t *buf = malloc(chunk);
    for (size_t k = 0; k < dsq_st_writer_count(w); k++) {
        const size_t t = dsq_st_writer_order(w, k);
        uint64_t left = dsq_st_writer_tensor_bytes(w, t);
        const int is_scale = left == 16 * 56 * 4;
        while (left > 0) {
            const size_t n = left < chunk ? (size_t)left : chunk;
            if (is_scale) {
                for (size_t i = 0; i < n; i += 4) {
                    const float s = 1e-4f * (float)(1 + xorshift(&seed) % 1000);
                    memcpy(buf + i, &s, 4);
                }
            } else {
                for (size_t i = 0; i < n; i += 8) {
                    uint64_t r = xorshift(&seed) & 0xbfbfbfbfbfbfbfbfull; /* never 0x7f/0xff */
                    memcpy(buf + i, &r, 8);
                }
            }
            if (dsq_st_writer_write(w, buf, n, &err) != DSQ_OK)
                die("write", &err);
            left -= n;
        }
    }
    if (dsq_st_writer_finish(w, NULL, &err) != DSQ_OK)
        die("finish", &err);
    dsq_st_writer_free(w);
    free(buf);
}

static void generate(const char in[1024]) {
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", in);
    if (access(path, F_OK) == 0)
        return;
    fprintf(stderr, "bench_convert: generating %s (%d expert pairs)...\n", in, N_PAIRS);
    snprintf(path, sizeof path, "mkdir -p '%s'", in);
    sh(path);
    write_shard(in, "model-00001-of-00002.safetensors", 0, N_PAIRS / 2, 1);
    write_shard(in, "model-00002-of-00002.safetensors", N_PAIRS / 2, N_PAIRS - N_PAIRS / 2, 2);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", in);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {");
    for (int e = 0; e < N_PAIRS; e++) {
        const char *shard = e < N_PAIRS / 2 ? "model-00001-of-00002.safetensors"
                                            : "model-00002-of-00002.safetensors";
        static const char *const parts[] = {"up_proj.weight", "up_proj.weight_scale_inv",
                                            "down_proj.weight", "down_proj.weight_scale_inv"};
        for (int p = 0; p < 4; p++)
            fprintf(f, "%s\"model.layers.3.mlp.experts.%d.%s\": \"%s\"", e || p ? ", " : "", e,
                    parts[p], shard);
    }
    fprintf(f, "}}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", in);
    f = fopen(path, "w");
    fprintf(f, "{\"model_type\": \"deepseek_v3\", \"torch_dtype\": \"bfloat16\", "
               "\"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", "
               "\"weight_block_size\": [128, 128]}}\n");
    fclose(f);
}

static uint64_t dir_bytes(const char dir[1024], const char *suffix) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cat '%s'/*%s 2>/dev/null | wc -c", dir, suffix);
    FILE *p = popen(cmd, "r");
    unsigned long long n = 0;
    if (p == NULL || fscanf(p, "%llu", &n) != 1)
        die("wc", NULL);
    pclose(p);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_convert DSQ_BIN WORK_DIR [REPS]\n");
        return 2;
    }
    const char *dsq = argv[1], *work = argv[2];
    const int reps = argc > 3 ? atoi(argv[3]) : 3;
    char in[1024], out[1024], cpsrc[1024], cpdst[1024], cmd[8192];
    if (strlen(work) > 900) {
        fprintf(stderr, "bench_convert: WORK_DIR path too long\n");
        return 2;
    }
    snprintf(in, sizeof in, "%s/fp8", work);
    snprintf(out, sizeof out, "%s/bf16", work);
    snprintf(cpsrc, sizeof cpsrc, "%s/cp-src.bin", work);
    snprintf(cpdst, sizeof cpdst, "%s/cp-dst.bin", work);
    generate(in);
    const uint64_t in_bytes = dir_bytes(in, ".safetensors");

    /* one conversion to learn the output size, then a cp source that large */
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && '%s' convert fp8 bf16 '%s' '%s' -q", out, dsq, in,
             out);
    sh(cmd);
    const uint64_t out_bytes = dir_bytes(out, ".safetensors");
    snprintf(cmd, sizeof cmd, "cat '%s'/*.safetensors > '%s'", out, cpsrc);
    sh(cmd);
    /* warm cache: read the inputs once */
    snprintf(cmd, sizeof cmd, "cat '%s'/*.safetensors '%s' > /dev/null", in, cpsrc);
    sh(cmd);

    double best_dsq = 1e30, best_cp = 1e30;
    long best_rss = 0;
    for (int r = 0; r < reps; r++) {
        long rss = 0;
        snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'; sync", out, cpdst);
        sh(cmd);
        char *conv[] = {(char *)dsq, (char *)"convert", (char *)"fp8", (char *)"bf16", in, out, (char *)"-q", NULL};
        const double t = run(conv, &rss);
        if (rss > best_rss)
            best_rss = rss;
        if (t < best_dsq)
            best_dsq = t;
        snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'; sync", out, cpdst);
        sh(cmd);
        char *cp[] = {(char *)"cp", cpsrc, cpdst, NULL};
        const double tc = run(cp, NULL);
        if (tc < best_cp)
            best_cp = tc;
        fprintf(stderr, "  run %d: dsq %.3f s, cp %.3f s\n", r + 1, t, tc);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'; sync", out, cpdst);
    sh(cmd);

    const double gbs_dsq = (double)out_bytes / best_dsq / 1e9;
    const double gbs_cp = (double)out_bytes / best_cp / 1e9;
    printf("convert fp8 bf16: %.2f GB FP8 in -> %.2f GB BF16 out, best of %d\n",
           (double)in_bytes / 1e9, (double)out_bytes / 1e9, reps);
    printf("  dsq convert : %7.3f s  %6.2f GB/s written  peak RSS %.1f MiB (target < 256)\n",
           best_dsq, gbs_dsq, (double)best_rss / 1024.0);
    printf("  cp          : %7.3f s  %6.2f GB/s written\n", best_cp, gbs_cp);
    printf("  ratio dsq/cp throughput: %.2f (target >= 0.80: conversion within 1.25x the copy)\n",
           best_cp / best_dsq);
    return 0;
}
