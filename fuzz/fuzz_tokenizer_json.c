/* fuzz/fuzz_tokenizer_json.c: libFuzzer harness for the tokenizer.json loader.
 *
 * The input is a tokenizer.json document. When it loads, a few fixed texts (ASCII, runs of
 * spaces and newlines, digits, accented letters, CJK, emoji, an invalid UTF-8 byte, text that
 * looks like special tokens) are encoded, decoded and pre-tokenized, so the regexes, added-token
 * matching and BPE merging all run on whatever the document set up.
 *
 * Build (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -I. \
 *       fuzz/fuzz_tokenizer_json.c tokenizer/tok_bpe.c tokenizer/tok_core.c tokenizer/tok_hf.c \
 *       tokenizer/tok_pretok.c tokenizer/tok_spm.c core/status.c core/file.c \
 *       -lpcre2-8 -ljansson -lxxhash -lm -o build/fuzz_tokenizer_json
 *   build/fuzz_tokenizer_json -max_len=65536 fuzz/corpus/tokenizer_json */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const texts[] = {
    "Hello world's end, it's 12345 o'clock!\n\n  indented\ttab  ",
    "h\xc3\xa9llo w\xc3\xb6rld \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\xf0\x9f\x98\x80 a\xff b",
    "<s>x</s><|endoftext|><｜begin▁of▁sentence｜>y",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbb",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsq_tokenizer *t = NULL;
    dsq_err err = {0};
    if (dsq_tokenizer_from_hf_json(&t, (const char *)data, size, NULL, 0, "fuzz", &err) != DSQ_OK)
        return 0;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        dsq_err e = {0};
        if (dsq_tokenizer_encode(t, texts[i], strlen(texts[i]), 1, &ids, &n, &e) == DSQ_OK) {
            char *out = NULL;
            size_t len = 0;
            if (dsq_tokenizer_decode(t, ids, n, (int)(i & 1), &out, &len, &e) == DSQ_OK)
                free(out);
        }
        free(ids);
        char *blob = NULL;
        size_t *lens = NULL, np = 0;
        if (dsq_tokenizer_pretokenize(t, texts[i], strlen(texts[i]), &blob, &lens, &np, &e) ==
            DSQ_OK) {
            free(blob);
            free(lens);
        }
    }
    (void)dsq_tokenizer_bos(t);
    (void)dsq_tokenizer_token_text(t, dsq_tokenizer_n_vocab(t) - 1, NULL);
    dsq_tokenizer_free(t);
    return 0;
}
