/* fuzz/fuzz_qz_vocab.c: the GGUF tokenizer metadata `dsq quantize` builds from a checkpoint's
 * tokenizer.json and tokenizer_config.json (gguf_export/gguf_vocab.c: the gpt2 vocabulary and the
 * Llama-2 style LlamaHfVocab one), on arbitrary files.
 *
 * The input is byte 0 (even: a llama, odd: a deepseek2; the low bits of byte 1 pick n_vocab
 * among a few sizes), then tokenizer.json, then optionally a NUL and tokenizer_config.json.
 * They are written into a directory of this process's own and dsq_qz_add_vocab runs on it
 * into a GGUF writer that is then dropped: every failure must say why, nothing may crash.
 * See fuzz_safetensors.c for the two builds (libFuzzer, and the replay in
 * tests/test_fuzz_replay.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf_export/gguf_vocab.h"
#include "formats/gguf.h"

int dsq_fuzz_qz_vocab(const uint8_t *data, size_t size);

static void put_file(const char *dir, const char *name, const uint8_t *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (n > 0 && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
        abort(); /* the harness's own temporary directory must be writable */
}

/* one directory for the process: created on first use, reused, removed at exit */
static char fuzz_vocab_dir[64];

static void remove_dir(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", fuzz_vocab_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", fuzz_vocab_dir);
    unlink(path);
    rmdir(fuzz_vocab_dir);
}

int dsq_fuzz_qz_vocab(const uint8_t *data, size_t size) {
    const char *dir = fuzz_vocab_dir;
    if (fuzz_vocab_dir[0] == '\0') {
        snprintf(fuzz_vocab_dir, sizeof fuzz_vocab_dir, "/tmp/dsq-fuzz-vocab.XXXXXX");
        if (mkdtemp(fuzz_vocab_dir) == NULL || atexit(remove_dir) != 0)
            abort();
    }
    if (size < 2)
        return 0;
    static const int64_t sizes[4] = {0, 8, 512, 32000};
    const char *arch = data[0] % 2 ? "deepseek2" : "llama";
    const int64_t n_vocab = sizes[data[1] % 4];
    data += 2, size -= 2;
    const uint8_t *nul = memchr(data, 0, size);
    const size_t tok_len = nul ? (size_t)(nul - data) : size;
    put_file(dir, "tokenizer.json", data, tok_len);
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    if (nul)
        put_file(dir, "tokenizer_config.json", nul + 1, size - tok_len - 1);
    else
        unlink(cfg);
    dsq_gguf_writer *w = NULL;
    dsq_err err = {0};
    if (dsq_gguf_writer_init(&w, &err) != DSQ_OK)
        abort();
    if (dsq_qz_add_vocab(w, dir, arch, n_vocab, NULL, NULL, &err) != DSQ_OK &&
        (err.code == DSQ_OK || err.text[0] == '\0'))
        abort(); /* every failure says why */
    dsq_gguf_writer_free(w);
    return 0;
}

#ifndef DSQ_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return dsq_fuzz_qz_vocab(data, size);
}
#endif
