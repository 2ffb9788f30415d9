/* bench/bench_util.h: what the benchmarks share (each bench/NAME.c is its own
 * program, so this is a header of static functions): a clock, the exit on
 * error, a deterministic generator, and a random F32 llama checkpoint. */
#ifndef DSQ_BENCH_UTIL_H
#define DSQ_BENCH_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/file.h"
#include "formats/safetensors.h"

static const char *bench_name = "bench"; /* set by main, for messages */

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void bench_die(const char *what, const dsq_err *err) {
    fprintf(stderr, "%s: %s: %s\n", bench_name, what, err ? err->text : strerror(errno));
    exit(1);
}

/* xorshift64: uniform in (-1, 1) */
static inline float bench_urand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)(*s >> 40) / 8388608.0f - 1.0f;
}

/* roughly gaussian (the sum of 4 uniforms), standard deviation ~ 1 */
static inline float bench_grand(uint64_t *s) {
    return (bench_urand(s) + bench_urand(s) + bench_urand(s) + bench_urand(s)) * 0.866f;
}

typedef struct bench_llama {
    int vocab, dim, layers, heads, ffn;
    int gaussian;       /* weights gaussian, else uniform */
    float weight_scale; /* weights are scale / sqrt(fan_in) times the sample */
} bench_llama;

/* Writes dir/model.safetensors (F32, norms 1) and dir/config.json of a random
 * LlamaForCausalLM, unless both exist already (kept between runs). */
static inline void bench_write_llama(const char *dir, const bench_llama *d) {
    char *cfg_path = dsq_path_join(dir, "config.json");
    char *st_path = dsq_path_join(dir, "model.safetensors");
    struct stat sb;
    dsq_st_writer *w = NULL;
    dsq_err err = {0};
    char name[128];
    if (stat(cfg_path, &sb) == 0 && stat(st_path, &sb) == 0)
        goto done;
    fprintf(stderr, "%s: generating a random F32 llama (%d layers, dim %d) in %s\n", bench_name,
            d->layers, d->dim, dir);
    if (dsq_mkdir(dir, &err) != DSQ_OK || dsq_st_writer_init(&w, &err) != DSQ_OK)
        bench_die(dir, &err);
    /* fan_in[i] of the i-th tensor added: 0 for a norm */
    int64_t *fan_in = calloc((size_t)(3 + 9 * d->layers), sizeof *fan_in);
    size_t nt = 0;
    if (fan_in == NULL)
        bench_die("malloc", NULL);
    const int64_t emb[2] = {d->vocab, d->dim}, norm[1] = {d->dim};
    dsq_st_writer_add(w, "model.embed_tokens.weight", DSQ_DTYPE_F32, 2, emb, &err);
    fan_in[nt++] = d->dim;
    dsq_st_writer_add(w, "lm_head.weight", DSQ_DTYPE_F32, 2, emb, &err);
    fan_in[nt++] = d->dim;
    dsq_st_writer_add(w, "model.norm.weight", DSQ_DTYPE_F32, 1, norm, &err);
    fan_in[nt++] = 0;
    static const char *const lin[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                      "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                      "mlp.down_proj"};
    for (int l = 0; l < d->layers; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        dsq_st_writer_add(w, name, DSQ_DTYPE_F32, 1, norm, &err);
        fan_in[nt++] = 0;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        dsq_st_writer_add(w, name, DSQ_DTYPE_F32, 1, norm, &err);
        fan_in[nt++] = 0;
        for (int i = 0; i < 7; i++) {
            const int64_t shape[2] = {i == 4 || i == 5 ? d->ffn : d->dim,
                                      i == 6 ? d->ffn : d->dim};
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, lin[i]);
            dsq_st_writer_add(w, name, DSQ_DTYPE_F32, 2, shape, &err);
            fan_in[nt++] = shape[1];
        }
    }
    if (err.code != DSQ_OK || dsq_st_writer_open(w, dir, "model.safetensors", &err) != DSQ_OK)
        bench_die(st_path, &err);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    const size_t chunk = 1 << 20;
    float *buf = malloc(chunk * sizeof *buf);
    if (buf == NULL)
        bench_die("malloc", NULL);
    for (size_t k = 0; k < dsq_st_writer_count(w); k++) {
        const size_t t = dsq_st_writer_order(w, k);
        const uint64_t n = dsq_st_writer_tensor_bytes(w, t) / 4;
        const float scale = fan_in[t] ? d->weight_scale / sqrtf((float)fan_in[t]) : 0.0f;
        for (uint64_t done = 0; done < n;) {
            const size_t m = n - done < chunk ? (size_t)(n - done) : chunk;
            for (size_t j = 0; j < m; j++)
                buf[j] = fan_in[t] == 0 ? 1.0f
                                        : scale * (d->gaussian ? bench_grand(&rng) : bench_urand(&rng));
            if (dsq_st_writer_write(w, buf, m * sizeof *buf, &err) != DSQ_OK)
                bench_die(st_path, &err);
            done += m;
        }
    }
    free(buf);
    free(fan_in);
    if (dsq_st_writer_finish(w, NULL, &err) != DSQ_OK)
        bench_die(st_path, &err);
    FILE *f = fopen(cfg_path, "w");
    if (f == NULL)
        bench_die(cfg_path, NULL);
    fprintf(f,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
            "\"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
            "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
            "\"num_key_value_heads\": %d, \"head_dim\": %d, \"rms_norm_eps\": 1e-05, "
            "\"rope_theta\": 10000.0, \"max_position_embeddings\": 2048, "
            "\"tie_word_embeddings\": false, \"bos_token_id\": 1, \"eos_token_id\": 2, "
            "\"hidden_act\": \"silu\"}\n",
            d->vocab, d->dim, d->ffn, d->layers, d->heads, d->heads, d->dim / d->heads);
    if (fclose(f) != 0)
        bench_die(cfg_path, NULL);
done:
    dsq_st_writer_free(w);
    free(cfg_path);
    free(st_path);
}

#endif
