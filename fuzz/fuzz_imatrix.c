/* fuzz/fuzz_imatrix.c: the importance-matrix reader (gguf_export/imatrix.c, both the
 * GGUF form and llama.cpp's legacy imatrix.dat) on arbitrary bytes. On success
 * every entry must have a name, a positive length and finite values: that is
 * what the quantizers downstream rely on. See fuzz_safetensors.c for the two
 * builds (libFuzzer, and the replay in tests/test_fuzz_replay.c). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "gguf_export/imatrix.h"

int dsq_fuzz_imatrix(const uint8_t *data, size_t size);

int dsq_fuzz_imatrix(const uint8_t *data, size_t size) {
    dsq_imatrix *m = NULL;
    dsq_err err = {0};
    if (dsq_imatrix_parse(&m, data, size, "<fuzz>", &err) != DSQ_OK) {
        if (err.code == DSQ_OK || err.text[0] == '\0')
            abort(); /* every failure says why */
        return 0;
    }
    for (size_t i = 0; i < dsq_imatrix_count(m); i++) {
        const char *name = dsq_imatrix_name(m, i);
        int64_t n = 0;
        const float *v = name ? dsq_imatrix_find(m, name, &n) : NULL;
        if (name == NULL || v == NULL || n <= 0)
            abort();
        for (int64_t j = 0; j < n; j++)
            if (!isfinite(v[j]))
                abort();
    }
    dsq_imatrix_free(m);
    return 0;
}

#ifndef DSQ_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return dsq_fuzz_imatrix(data, size);
}
#endif
