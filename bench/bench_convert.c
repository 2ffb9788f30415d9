/* bench/bench_convert.c: `make bench` for `dsq convert fp8 bf16` and for
 * `dsq quantize` from the same FP8 checkpoint.
 *
 * Generates (once) a complete DeepSeek-V3-shaped FP8 checkpoint of 1.22 GB of
 * FP8 weights with their 128x128 block scales, in two shards, and a second
 * one of real shard count: 16 shards, 1 GiB of FP8 in DeepSeek-V3's expert
 * shapes ([2048, 7168] gate/up, [7168, 2048] down), 2 GiB of BF16 out
 * (DeepSeek-V3 itself has 163 shards of about 4.3 GB). Then, for each, with a warm
 * page cache, it times in alternation `dsq convert fp8 bf16` and `cp` of a file
 * exactly as large as the BF16 output, and reports each one's time and GB/s
 * written, their ratio (target: dsq / cp >= 0.8 in throughput), and dsq's peak
 * RSS from wait4() (target: < 256 MiB). The best of REPS runs of each counts,
 * as with any wall-clock benchmark on a shared machine. Last, `dsq quantize
 * --type Q4_K_M` of the same checkpoint in one pass, against the conversion's
 * time (target: at most 2x). That warm-cache comparison is compute against
 * memory speed; a real 671B checkpoint does not fit in the page cache, so
 * when it may (root) the benchmark also times both from a cold cache until
 * their output is on disk (`sync` included), which is disk speed.
 *
 * BENCH_QUICK=1 in the environment runs the two conversion cases only (no
 * quantize, no cold cache: dropping the page cache disturbs every other
 * process on the machine).
 *
 * usage: bench_convert DSQ_BIN WORK_DIR [REPS] [SHARED_DIR] */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "core/file.h"
#include "formats/safetensors.h"

/* A complete DeepSeek-V3-shaped model (every tensor DeepseekV3ForCausalLM has,
 * so `dsq quantize` accepts it too), scaled to 1.22 GB of FP8: hidden 4096,
 * 3 layers (1 dense, 2 MoE with 20 routed experts + 1 shared of width 2048),
 * MLA with q_lora 1024, kv_lora 512, 16 heads; vocab 1024 (the tiny models'
 * tokenizer). Layers 0-1 in shard 1, layer 2 and the head in shard 2, one
 * scale deliberately in the other shard. */
#define D 4096
#define N_LAYERS 3
#define N_EXPERTS 20
#define MOE_INTER 2048
#define INTER 8192
#define N_HEADS 16
#define Q_LORA 1024
#define KV_LORA 512
#define NOPE 128
#define ROPE 64
#define VDIM 128
#define VOCAB 1024

/* Runs argv; returns wall seconds, and the child's peak RSS in KiB. */
static double run(char *const argv[], long *maxrss_kib) {
    const double t0 = bench_now();
    const pid_t pid = fork();
    if (pid < 0)
        bench_die("fork", NULL);
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0)
        bench_die("wait4", NULL);
    const double t = bench_now() - t0;
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

/* 1 if the page cache could be emptied (needs root) */
static int drop_caches(void) {
    sh("sync");
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
    if (f == NULL)
        return 0;
    const int ok = fputs("3\n", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* argv from a cold cache until its output is on disk; < 0 if the cache
 * cannot be dropped */
static double run_cold(char *const argv[]) {
    if (!drop_caches())
        return -1.0;
    const double t0 = bench_now();
    run(argv, NULL);
    sh("sync");
    return bench_now() - t0;
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef struct gen_tensor {
    char name[128];
    dsq_dtype dtype;
    int64_t shape[2];
    int ndim;
    int shard;
} gen_tensor;

typedef struct gen_list {
    gen_tensor t[512];
    int n;
} gen_list;

static void add(gen_list *g, int shard, dsq_dtype dt, int64_t r, int64_t c, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void add(gen_list *g, int shard, dsq_dtype dt, int64_t r, int64_t c, const char *fmt, ...) {
    gen_tensor *t = &g->t[g->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->dtype = dt;
    t->shape[0] = r;
    t->shape[1] = c;
    t->ndim = c ? 2 : 1;
    t->shard = shard;
}

/* A FP8 Linear weight and its scale; the scale of layer 1's kv_b_proj goes in
 * the other shard, as in DeepSeek's own checkpoints. */
static void add_linear(gen_list *g, int shard, int64_t out, int64_t in, const char *name) {
    add(g, shard, DSQ_DTYPE_F8_E4M3, out, in, "%s.weight", name);
    const int other = strstr(name, "layers.1.self_attn.kv_b_proj") != NULL;
    add(g, other ? 1 - shard : shard, DSQ_DTYPE_F32, (out + 127) / 128, (in + 127) / 128,
        "%s.weight_scale_inv", name);
}

static void model_tensors(gen_list *g) {
    char p[128];
    add(g, 0, DSQ_DTYPE_BF16, VOCAB, D, "model.embed_tokens.weight");
    for (int l = 0; l < N_LAYERS; l++) {
        const int sh = l < 2 ? 0 : 1;
        add(g, sh, DSQ_DTYPE_BF16, D, 0, "model.layers.%d.input_layernorm.weight", l);
        add(g, sh, DSQ_DTYPE_BF16, D, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        add(g, sh, DSQ_DTYPE_BF16, Q_LORA, 0, "model.layers.%d.self_attn.q_a_layernorm.weight", l);
        add(g, sh, DSQ_DTYPE_BF16, KV_LORA, 0, "model.layers.%d.self_attn.kv_a_layernorm.weight", l);
#define LIN(out, in, ...)                                                                          \
    do {                                                                                           \
        snprintf(p, sizeof p, __VA_ARGS__);                                                        \
        add_linear(g, sh, out, in, p);                                                             \
    } while (0)
        LIN(Q_LORA, D, "model.layers.%d.self_attn.q_a_proj", l);
        LIN(N_HEADS * (NOPE + ROPE), Q_LORA, "model.layers.%d.self_attn.q_b_proj", l);
        LIN(KV_LORA + ROPE, D, "model.layers.%d.self_attn.kv_a_proj_with_mqa", l);
        LIN(N_HEADS * (NOPE + VDIM), KV_LORA, "model.layers.%d.self_attn.kv_b_proj", l);
        LIN(D, N_HEADS * VDIM, "model.layers.%d.self_attn.o_proj", l);
        if (l == 0) {
            LIN(INTER, D, "model.layers.%d.mlp.gate_proj", l);
            LIN(INTER, D, "model.layers.%d.mlp.up_proj", l);
            LIN(D, INTER, "model.layers.%d.mlp.down_proj", l);
            continue;
        }
        add(g, sh, DSQ_DTYPE_BF16, N_EXPERTS, D, "model.layers.%d.mlp.gate.weight", l);
        add(g, sh, DSQ_DTYPE_F32, N_EXPERTS, 0, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        for (int e = 0; e < N_EXPERTS; e++) {
            LIN(MOE_INTER, D, "model.layers.%d.mlp.experts.%d.gate_proj", l, e);
            LIN(MOE_INTER, D, "model.layers.%d.mlp.experts.%d.up_proj", l, e);
            LIN(D, MOE_INTER, "model.layers.%d.mlp.experts.%d.down_proj", l, e);
        }
        LIN(MOE_INTER, D, "model.layers.%d.mlp.shared_experts.gate_proj", l);
        LIN(MOE_INTER, D, "model.layers.%d.mlp.shared_experts.up_proj", l);
        LIN(D, MOE_INTER, "model.layers.%d.mlp.shared_experts.down_proj", l);
#undef LIN
    }
    add(g, 1, DSQ_DTYPE_BF16, D, 0, "model.norm.weight");
    add(g, 1, DSQ_DTYPE_BF16, VOCAB, D, "lm_head.weight");
}

/* Random data of the right kind: FP8 codes (never NaN), positive scales of
 * the size real ones have, small BF16 weights and norms near 1. */
static void fill(const gen_tensor *t, uint8_t *buf, size_t n, uint64_t *seed) {
    if (t->dtype == DSQ_DTYPE_F8_E4M3) {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = xorshift(seed) & 0xbfbfbfbfbfbfbfbfull;
            memcpy(buf + i, &r, n - i < 8 ? n - i : 8);
        }
    } else if (t->dtype == DSQ_DTYPE_F32) {
        for (size_t i = 0; i + 4 <= n; i += 4) {
            const float v = 1e-4f * (float)(1 + xorshift(seed) % 1000);
            memcpy(buf + i, &v, 4);
        }
    } else { /* BF16 */
        for (size_t i = 0; i + 2 <= n; i += 2) {
            const float v = t->ndim == 1 ? 1.0f : 0.02f * ((float)(xorshift(seed) % 2001) / 1000.0f - 1.0f);
            uint32_t u;
            memcpy(&u, &v, 4);
            const uint16_t h = (uint16_t)(u >> 16);
            memcpy(buf + i, &h, 2);
        }
    }
}

static void write_shard(const char *dir, const char *name, const gen_list *g, int shard,
                        uint64_t seed) {
    dsq_st_writer *w = NULL;
    dsq_err err = {0};
    int idx[512];
    int n = 0;
    if (dsq_st_writer_init(&w, &err) != DSQ_OK)
        bench_die("writer", &err);
    for (int i = 0; i < g->n; i++) {
        if (g->t[i].shard != shard)
            continue;
        idx[n++] = i;
        if (dsq_st_writer_add(w, g->t[i].name, g->t[i].dtype, g->t[i].ndim, g->t[i].shape, &err) !=
            DSQ_OK)
            bench_die("add", &err);
    }
    dsq_st_writer_set_meta(w, "format", "pt", &err);
    if (dsq_st_writer_open(w, dir, name, &err) != DSQ_OK)
        bench_die("writer", &err);
    const size_t chunk = (size_t)1 << 20;
    uint8_t *buf = malloc(chunk);
    for (size_t k = 0; k < dsq_st_writer_count(w); k++) {
        const size_t t = dsq_st_writer_order(w, k);
        uint64_t left = dsq_st_writer_tensor_bytes(w, t);
        while (left > 0) {
            const size_t m = left < chunk ? (size_t)left : chunk;
            fill(&g->t[idx[t]], buf, m, &seed);
            if (dsq_st_writer_write(w, buf, m, &err) != DSQ_OK)
                bench_die("write", &err);
            left -= m;
        }
    }
    if (dsq_st_writer_finish(w, NULL, &err) != DSQ_OK)
        bench_die("finish", &err);
    dsq_st_writer_free(w);
    free(buf);
}

static void generate(const char in[1024], const char *shared) {
    char path[1200];
    static gen_list g;
    static const char *const shards[2] = {"model-00001-of-00002.safetensors",
                                          "model-00002-of-00002.safetensors"};
    snprintf(path, sizeof path, "%s/config.json", in);
    if (access(path, F_OK) == 0)
        return;
    fprintf(stderr, "bench: generating a 1.22 GB DeepSeek-V3-shaped FP8 checkpoint in %s...\n", in);
    snprintf(path, sizeof path, "mkdir -p '%s'", in);
    sh(path);
    g.n = 0;
    model_tensors(&g);
    write_shard(in, shards[0], &g, 0, 1);
    write_shard(in, shards[1], &g, 1, 2);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", in);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < g.n; i++)
        fprintf(f, "%s\"%s\": \"%s\"", i ? ", " : "", g.t[i].name, shards[g.t[i].shard]);
    fprintf(f, "}}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", in);
    f = fopen(path, "w");
    fprintf(f,
            "{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"model_type\": \"deepseek_v3\",\n"
            " \"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d,\n"
            " \"moe_intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_nextn_predict_layers\": 0,\n"
            " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"n_shared_experts\": 1,\n"
            " \"n_routed_experts\": %d, \"routed_scaling_factor\": 2.5, \"kv_lora_rank\": %d,\n"
            " \"q_lora_rank\": %d, \"qk_rope_head_dim\": %d, \"v_head_dim\": %d, \"qk_nope_head_dim\": %d,\n"
            " \"topk_method\": \"noaux_tc\", \"n_group\": 4, \"topk_group\": 2, \"num_experts_per_tok\": 4,\n"
            " \"moe_layer_freq\": 1, \"first_k_dense_replace\": 1, \"norm_topk_prob\": true,\n"
            " \"scoring_func\": \"sigmoid\", \"hidden_act\": \"silu\", \"max_position_embeddings\": 4096,\n"
            " \"rms_norm_eps\": 1e-06, \"bos_token_id\": 0, \"eos_token_id\": 1, \"tie_word_embeddings\": false,\n"
            " \"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0,\n"
            "   \"original_max_position_embeddings\": 1024, \"beta_fast\": 32, \"beta_slow\": 1,\n"
            "   \"mscale\": 1.0, \"mscale_all_dim\": 1.0},\n"
            " \"torch_dtype\": \"bfloat16\",\n"
            " \"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\",\n"
            "   \"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]}}\n",
            VOCAB, D, INTER, MOE_INTER, N_LAYERS, N_HEADS, N_HEADS, N_EXPERTS, KV_LORA, Q_LORA, ROPE,
            VDIM, NOPE);
    fclose(f);
    /* the tiny models' tokenizer (1024 ids): ours, read from shared/ */
    snprintf(path, sizeof path, "cp '%s/data/tiny-models/tokenizer.json' '%s/data/tiny-models/tokenizer_config.json' '%s/'",
             shared, shared, in);
    sh(path);
}

/* The many-shard case: N16_TENSORS expert projections of 14 MiB each (a
 * gate, up and down per expert, in DeepSeek-V3's shapes) dealt out to 16
 * shards in order, each with its block scale in the same shard, as in
 * DeepSeek's own checkpoints; config.json with its quantization_config. */
#define N16_SHARDS 16
#define N16_TENSORS 73 /* 73 x 14 MiB = 1022 MiB of FP8 */
#define EXPERT_D 7168
#define EXPERT_I 2048

static void generate16(const char in[1024]) {
    char path[1200];
    static gen_list g;
    snprintf(path, sizeof path, "%s/config.json", in);
    if (access(path, F_OK) == 0)
        return;
    fprintf(stderr, "bench: generating a 16-shard, 1 GiB FP8 checkpoint of expert tensors in %s...\n",
            in);
    snprintf(path, sizeof path, "mkdir -p '%s'", in);
    sh(path);
    g.n = 0;
    for (int t = 0; t < N16_TENSORS; t++) {
        const int shard = t * N16_SHARDS / N16_TENSORS, e = t / 3, kind = t % 3;
        static const char *const proj[3] = {"gate_proj", "up_proj", "down_proj"};
        const int64_t rows = kind == 2 ? EXPERT_D : EXPERT_I, cols = kind == 2 ? EXPERT_I : EXPERT_D;
        add(&g, shard, DSQ_DTYPE_F8_E4M3, rows, cols, "model.layers.3.mlp.experts.%d.%s.weight", e,
            proj[kind]);
        add(&g, shard, DSQ_DTYPE_F32, (rows + 127) / 128, (cols + 127) / 128,
            "model.layers.3.mlp.experts.%d.%s.weight_scale_inv", e, proj[kind]);
    }
    char names[N16_SHARDS][64];
    for (int k = 0; k < N16_SHARDS; k++) {
        snprintf(names[k], sizeof names[k], "model-%05d-of-%05d.safetensors", k + 1, N16_SHARDS);
        write_shard(in, names[k], &g, k, (uint64_t)k + 11);
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", in);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < g.n; i++)
        fprintf(f, "%s\"%s\": \"%s\"", i ? ", " : "", g.t[i].name, names[g.t[i].shard]);
    fprintf(f, "}}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", in);
    f = fopen(path, "w");
    fprintf(f, "{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"model_type\": \"deepseek_v3\",\n"
               " \"quantization_config\": {\"activation_scheme\": \"dynamic\", \"fmt\": \"e4m3\",\n"
               "   \"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]}}\n");
    fclose(f);
}

static uint64_t dir_bytes(const char dir[1024], const char *suffix) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cat '%s'/*%s 2>/dev/null | wc -c", dir, suffix);
    FILE *p = popen(cmd, "r");
    unsigned long long n = 0;
    if (p == NULL || fscanf(p, "%llu", &n) != 1)
        bench_die("wc", NULL);
    pclose(p);
    return n;
}

typedef struct case_result {
    uint64_t in_bytes, out_bytes;
    double dsq_s, cp_s;
    long rss_kib;
} case_result;

/* Converts in -> work/bf16 REPS times, alternating with cp of a file as large
 * as the output (made once, in work/cp-src.bin), the best of each kept. */
static case_result convert_case(const char *dsq, const char *work, const char *in, int reps) {
    char out[1100], cpsrc[1100], cpdst[1100], cmd[8192];
    case_result r = {0, 0, 1e30, 1e30, 0};
    snprintf(out, sizeof out, "%s/bf16", work);
    snprintf(cpsrc, sizeof cpsrc, "%s/cp-src.bin", work);
    snprintf(cpdst, sizeof cpdst, "%s/cp-dst.bin", work);
    r.in_bytes = dir_bytes(in, ".safetensors");
    /* one conversion to learn the output size, then a cp source that large */
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && '%s' convert fp8 bf16 '%s' '%s' -q", out, dsq, in,
             out);
    sh(cmd);
    r.out_bytes = dir_bytes(out, ".safetensors");
    struct stat sb;
    if (stat(cpsrc, &sb) != 0 || (uint64_t)sb.st_size != r.out_bytes) {
        snprintf(cmd, sizeof cmd, "cat '%s'/*.safetensors > '%s'", out, cpsrc);
        sh(cmd);
    }
    /* warm cache: read the inputs once */
    snprintf(cmd, sizeof cmd, "cat '%s'/*.safetensors '%s' > /dev/null", in, cpsrc);
    sh(cmd);
    for (int k = 0; k < reps; k++) {
        long rss = 0;
        snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'; sync", out, cpdst);
        sh(cmd);
        char *conv[] = {(char *)dsq, (char *)"convert", (char *)"fp8", (char *)"bf16", (char *)in,
                        out, (char *)"-q", NULL};
        const double t = run(conv, &rss);
        if (rss > r.rss_kib)
            r.rss_kib = rss;
        if (t < r.dsq_s)
            r.dsq_s = t;
        snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'; sync", out, cpdst);
        sh(cmd);
        char *cp[] = {(char *)"cp", cpsrc, cpdst, NULL};
        const double tc = run(cp, NULL);
        if (tc < r.cp_s)
            r.cp_s = tc;
        fprintf(stderr, "  run %d: dsq %.3f s, cp %.3f s\n", k + 1, t, tc);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'; sync", out, cpdst);
    sh(cmd);
    return r;
}

static void print_case(const char *title, const case_result *r, int reps) {
    printf("%s: %.2f GB FP8 in -> %.2f GB BF16 out, best of %d\n", title,
           (double)r->in_bytes / 1e9, (double)r->out_bytes / 1e9, reps);
    printf("  dsq convert : %7.3f s  %6.2f GB/s written  peak RSS %.1f MiB (target < 256)\n",
           r->dsq_s, (double)r->out_bytes / r->dsq_s / 1e9, (double)r->rss_kib / 1024.0);
    printf("  cp          : %7.3f s  %6.2f GB/s written\n", r->cp_s,
           (double)r->out_bytes / r->cp_s / 1e9);
    printf("  ratio dsq/cp throughput: %.2f (target >= 0.80: conversion within 1.25x the copy)\n",
           r->cp_s / r->dsq_s);
}

int main(int argc, char **argv) {
    bench_name = "bench_convert";
    if (argc < 3) {
        fprintf(stderr, "usage: bench_convert DSQ_BIN WORK_DIR [REPS] [SHARED_DIR]\n");
        return 2;
    }
    const char *dsq = argv[1], *work = argv[2];
    const int reps = argc > 3 ? atoi(argv[3]) : 3;
    const int quick = getenv("BENCH_QUICK") != NULL && strcmp(getenv("BENCH_QUICK"), "0") != 0;
    char in[1024], in16[1024], work16[1024], out[1024], cmd[8192];
    if (strlen(work) > 900) {
        fprintf(stderr, "bench_convert: WORK_DIR path too long\n");
        return 2;
    }
    snprintf(in, sizeof in, "%s/fp8", work);
    snprintf(out, sizeof out, "%s/bf16", work);
    snprintf(work16, sizeof work16, "%s/shards16", work);
    snprintf(in16, sizeof in16, "%s/shards16/fp8", work);
    generate(in, argc > 4 ? argv[4] : "../shared");
    generate16(in16);

    const case_result a = convert_case(dsq, work, in, reps);
    const case_result b = convert_case(dsq, work16, in16, reps);
    print_case("convert fp8 bf16, 2 shards", &a, reps);
    print_case("convert fp8 bf16, 16 shards of expert tensors", &b, reps);
    if (quick)
        return 0;

    /* FP8 -> Q4_K_M in one pass, beside the FP8 -> BF16 conversion */
    char gguf[1100];
    snprintf(gguf, sizeof gguf, "%s/q4_k_m.gguf", work);
    long q_rss = 0;
    char *quant[] = {(char *)dsq, (char *)"quantize", in, gguf, (char *)"--type", (char *)"Q4_K_M",
                     (char *)"-q", NULL};
    const double tq = run(quant, &q_rss);
    struct stat qsb;
    const uint64_t q_bytes = stat(gguf, &qsb) == 0 ? (uint64_t)qsb.st_size : 0;
    unlink(gguf);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    sh(cmd);
    char *conv[] = {(char *)dsq, (char *)"convert", (char *)"fp8", (char *)"bf16", in, out,
                    (char *)"-q", NULL};
    const double cold_conv = run_cold(conv);
    sh(cmd);
    const double cold_q = cold_conv < 0 ? -1.0 : run_cold(quant);
    unlink(gguf);

    printf("quantize FP8 -> Q4_K_M in one pass: %.3f s (%.2f GB GGUF), peak RSS %.1f MiB\n", tq,
           (double)q_bytes / 1e9, (double)q_rss / 1024.0);
    printf("  ratio quantize/convert time: %.2f (target <= 2.00)\n", tq / a.dsq_s);
    if (cold_q < 0) {
        printf("  cold cache: skipped (cannot write /proc/sys/vm/drop_caches: not root)\n");
    } else {
        printf("  cold cache, until on disk (sync): convert %.3f s, quantize %.3f s, ratio %.2f\n",
               cold_conv, cold_q, cold_q / cold_conv);
    }
    return 0;
}
