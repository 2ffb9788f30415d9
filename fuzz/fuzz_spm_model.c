/* fuzz/fuzz_spm_model.c: the SentencePiece tokenizer.model reader on arbitrary bytes.
 *
 * dsq_spm_model_parse must either reject the input with a message or return a model whose
 * invariants hold: at least one piece, every piece non-empty, NUL-terminated at its length
 * with no NUL inside, a type in 1..6, exactly one UNKNOWN piece. The input is a private copy
 * sized exactly, so ASan catches a read one byte past the end. An accepted model is then
 * turned into a tokenizer (which may refuse it, with a message) and, when it is accepted,
 * used to encode and decode a short text, as `dsq quantize` and verify/ would use it.
 *
 * Built two ways: with libFuzzer (scripts/fuzz.sh) and, with DSQ_FUZZ_REPLAY defined,
 * included by tests/test_fuzz_replay.c, which replays fuzz/corpus/spm_model/ and
 * fuzz/regress/spm_model/ through dsq_fuzz_spm_model in `make test`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_spm_model.h"
#include "tokenizer/tokenizer.h"

int dsq_fuzz_spm_model(const uint8_t *data, size_t size);

int dsq_fuzz_spm_model(const uint8_t *data, size_t size) {
    dsq_spm_model *m = NULL;
    dsq_tokenizer *tok = NULL;
    dsq_err err = {0};
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    if (size > 0)
        memcpy(copy, data, size);
    if (dsq_spm_model_parse(&m, copy, size, "<fuzz>", &err) != DSQ_OK) {
        /* a failure always says why, and leaves nothing behind */
        if (err.code == DSQ_OK || err.text[0] == '\0' || m != NULL)
            abort();
        free(copy);
        return 0;
    }
    free(copy); /* the model owns copies of everything it keeps */
    size_t n_unk = 0;
    if (m->n == 0)
        abort();
    for (size_t i = 0; i < m->n; i++) {
        const size_t len = m->piece_lens[i];
        if (len == 0 || strlen(m->pieces[i]) != len)
            abort();
        if (m->types[i] < DSQ_SPM_NORMAL || m->types[i] > DSQ_SPM_BYTE)
            abort();
        n_unk += m->types[i] == DSQ_SPM_UNKNOWN;
        volatile float s = m->scores[i];
        (void)s;
    }
    if (n_unk != 1)
        abort();

    dsq_spm_vocab v;
    dsq_spm_model_vocab(m, &v);
    dsq_err terr = {0};
    if (dsq_tokenizer_from_spm_arrays(&tok, &v, &terr) != DSQ_OK) {
        if (terr.code == DSQ_OK || terr.text[0] == '\0')
            abort();
    } else {
        static const char text[] = "Hello world, \xc3\xa9t\xc3\xa9 42!";
        int32_t *ids = NULL;
        size_t n = 0;
        char *out = NULL;
        size_t out_len = 0;
        dsq_err e2 = {0};
        if (dsq_tokenizer_encode(tok, text, sizeof text - 1, 1, &ids, &n, &e2) == DSQ_OK) {
            for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || (size_t)ids[i] >= m->n)
                    abort();
            if (dsq_tokenizer_decode(tok, ids, n, 1, &out, &out_len, &e2) == DSQ_OK &&
                strlen(out) > out_len)
                abort();
        }
        free(ids);
        free(out);
    }
    dsq_tokenizer_free(tok);
    dsq_spm_model_free(m);
    return 0;
}

#ifndef DSQ_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return dsq_fuzz_spm_model(data, size);
}
#endif
