/* fuzz/fuzz_safetensors.c: the safetensors reader on arbitrary bytes.
 *
 * dsq_st_parse must either reject the input or hand out views that lie inside
 * it: every tensor's first and last byte and every name and metadata string
 * are touched, so ASan reports any view that points outside the buffer. The
 * buffer is a private copy sized exactly, so one byte too far is caught.
 *
 * Built two ways: with libFuzzer (scripts/fuzz.sh) and, with DSQ_FUZZ_REPLAY
 * defined, included by tests/test_fuzz_replay.c, which replays fuzz/corpus/
 * and fuzz/regress/ through dsq_fuzz_safetensors in `make test`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

int dsq_fuzz_safetensors(const uint8_t *data, size_t size);

int dsq_fuzz_safetensors(const uint8_t *data, size_t size) {
    dsq_st *st = NULL;
    dsq_err err = {0};
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    if (size > 0)
        memcpy(copy, data, size);
    if (dsq_st_parse(&st, copy, size, "<fuzz>", &err) != DSQ_OK) {
        /* a failure always says why */
        if (err.code == DSQ_OK || err.text[0] == '\0')
            abort();
        free(copy);
        return 0;
    }
    volatile unsigned touched = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < dsq_st_count(st); i++) {
        const dsq_tensor_view *v = dsq_st_tensor(st, i);
        touched += (unsigned)strlen(v->name);
        if (dsq_st_find(st, v->name) != (int64_t)i)
            abort();
        if (v->nbytes > 0) {
            const uint8_t *p = v->data;
            if (p < copy || p + v->nbytes > copy + size)
                abort();
            touched += p[0] + p[v->nbytes - 1];
        }
        if (dsq_st_tensor_offset(st, i) + v->nbytes > size)
            abort();
        total += v->nbytes;
        dsq_st_release(st, i);
    }
    /* the tensors cover the data area exactly */
    if (8 + dsq_st_header_len(st) + total != size)
        abort();
    for (size_t i = 0; i < dsq_st_meta_count(st); i++) {
        const char *k = dsq_st_meta_key(st, i);
        touched += (unsigned)strlen(k) + (unsigned)strlen(dsq_st_meta_value(st, i));
        if (dsq_st_meta_get(st, k) == NULL)
            abort();
    }
    (void)touched;
    dsq_st_close(st);
    free(copy);
    return 0;
}

#ifndef DSQ_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return dsq_fuzz_safetensors(data, size);
}
#endif
