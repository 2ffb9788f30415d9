/* fuzz/fuzz_gguf.c: libFuzzer harness for the GGUF reader (and, on valid inputs, the writer).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -std=c11 -D_GNU_SOURCE \
 *       fuzz/fuzz_gguf.c formats/gguf.c formats/gguf_write.c core/[a-z]*.c \
 *       $(pkg-config --cflags --libs libxxhash jansson) -lm -o /tmp/fuzz_gguf
 *   /tmp/fuzz_gguf -max_total_time=120 fuzz/corpus/gguf
 *
 * Built with -DDSQ_FUZZ_REPLAY (no libFuzzer, any compiler) it gets a main() that runs each
 * file named on the command line once, for replaying fuzz/corpus/gguf and fuzz/regress/gguf
 * under gcc + ASan.
 *
 * For every input: dsq_gguf_parse, then every accessor on every KV (each typed getter, the
 * lenient ones, every array element down through nested arrays) and every tensor (bounds of
 * its data checked against the buffer, first and last byte read so ASan sees them). When the
 * input parses, it is also copied through the writer (header serialized in memory, data
 * appended as the streaming writer would) and parsed again: the copy must parse and match.
 * Any broken invariant is a __builtin_trap(), which libFuzzer reports as a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void walk_val(const dsq_gguf_val *v, int depth) {
    dsq_err err = {0};
    uint8_t u8;
    int8_t i8;
    uint16_t u16;
    int16_t i16;
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    const char *s;
    size_t len;
    CHECK(depth <= DSQ_GGUF_MAX_DEPTH);
    /* exactly one typed getter succeeds, and only for the value's own type */
    CHECK((dsq_gguf_val_u8(v, &u8, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_UINT8));
    CHECK((dsq_gguf_val_i8(v, &i8, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_INT8));
    CHECK((dsq_gguf_val_u16(v, &u16, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_UINT16));
    CHECK((dsq_gguf_val_i16(v, &i16, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_INT16));
    CHECK((dsq_gguf_val_u32(v, &u32, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_UINT32));
    CHECK((dsq_gguf_val_i32(v, &i32, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_INT32));
    CHECK((dsq_gguf_val_u64(v, &u64, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_UINT64));
    CHECK((dsq_gguf_val_i64(v, &i64, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_INT64));
    CHECK((dsq_gguf_val_f32(v, &f32, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_FLOAT32));
    CHECK((dsq_gguf_val_f64(v, &f64, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_FLOAT64));
    CHECK((dsq_gguf_val_bool(v, &b, NULL) == DSQ_OK) == (v->type == DSQ_GGUF_BOOL));
    CHECK((dsq_gguf_val_str(v, &s, &len, &err) == DSQ_OK) == (v->type == DSQ_GGUF_STRING));
    if (v->type == DSQ_GGUF_STRING && len > 0)
        sink ^= (uint8_t)(s[0] ^ s[len - 1]);
    (void)dsq_gguf_val_as_i64(v, &i64, &err);
    (void)dsq_gguf_val_as_f64(v, &f64, &err);
    dsq_gguf_val e;
    if (v->type != DSQ_GGUF_ARRAY) {
        CHECK(dsq_gguf_val_at(v, 0, &e, NULL) == DSQ_FORMAT);
        return;
    }
    CHECK(dsq_gguf_val_at(v, v->n, &e, NULL) == DSQ_RANGE);
    const uint64_t lim = v->n < 4096 ? v->n : 4096; /* keep each run fast */
    for (uint64_t i = 0; i < lim; i++) {
        CHECK(dsq_gguf_val_at(v, i, &e, NULL) == DSQ_OK);
        CHECK(e.type == v->elem_type);
        walk_val(&e, depth + 1);
    }
    if (v->n > lim) { /* and the last one */
        CHECK(dsq_gguf_val_at(v, v->n - 1, &e, NULL) == DSQ_OK);
        walk_val(&e, depth + 1);
    }
}

/* Copies g through the writer into memory and checks the copy parses to the same thing. */
static void roundtrip(const dsq_gguf *g) {
    dsq_gguf_writer *w = NULL;
    dsq_err err = {0};
    uint8_t *hdr = NULL, *img = NULL;
    size_t hlen = 0;
    uint64_t fsize = 0;
    dsq_gguf *g2 = NULL;
    if (dsq_gguf_writer_init(&w, &err) != DSQ_OK)
        return;
    for (int64_t i = 0; i < dsq_gguf_kv_count(g); i++) {
        dsq_gguf_val v;
        CHECK(dsq_gguf_kv_val(g, i, &v, NULL) == DSQ_OK);
        CHECK(dsq_gguf_writer_add_val(w, dsq_gguf_kv_key(g, i), &v, &err) == DSQ_OK);
    }
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        CHECK(dsq_gguf_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->ne, &err) ==
              DSQ_OK);
    }
    CHECK(dsq_gguf_writer_file_size(w, &fsize, &err) == DSQ_OK);
    /* padding after the last tensor can be up to the alignment (2^31): skip huge copies */
    if (fsize > dsq_gguf_size(g) + ((uint64_t)1 << 20))
        goto cleanup;
    CHECK(dsq_gguf_writer_header(w, &hdr, &hlen, &err) == DSQ_OK);
    CHECK(hlen <= fsize);
    CHECK(dsq_gguf_tensor_count(g) == 0 || hlen == dsq_gguf_data_offset(g));
    img = calloc(1, (size_t)fsize ? (size_t)fsize : 1);
    if (img == NULL)
        goto cleanup;
    memcpy(img, hdr, hlen);
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        CHECK(hlen + t->offset + t->nbytes <= fsize);
        if (t->nbytes)
            memcpy(img + hlen + t->offset, t->data, (size_t)t->nbytes);
    }
    CHECK(dsq_gguf_parse(&g2, img, (size_t)fsize, &err) == DSQ_OK);
    CHECK(dsq_gguf_kv_count(g2) == dsq_gguf_kv_count(g));
    CHECK(dsq_gguf_tensor_count(g2) == dsq_gguf_tensor_count(g));
    CHECK(dsq_gguf_alignment(g2) == dsq_gguf_alignment(g));
    CHECK(dsq_gguf_data_offset(g2) == dsq_gguf_data_offset(g));
    for (int64_t i = 0; i < dsq_gguf_kv_count(g); i++) {
        CHECK(strcmp(dsq_gguf_kv_key(g, i), dsq_gguf_kv_key(g2, i)) == 0);
        CHECK(dsq_gguf_kv_type(g, i) == dsq_gguf_kv_type(g2, i));
    }
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *a = dsq_gguf_tensor_at(g, i), *b = dsq_gguf_tensor_at(g2, i);
        CHECK(strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->n_dims == b->n_dims);
        CHECK(memcmp(a->ne, b->ne, sizeof a->ne) == 0 && a->offset == b->offset);
        CHECK(a->nbytes == b->nbytes && memcmp(a->data, b->data, (size_t)a->nbytes) == 0);
    }
cleanup:
    dsq_gguf_close(g2);
    free(img);
    free(hdr);
    dsq_gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsq_gguf *g = NULL;
    dsq_err err = {0};
    const dsq_status st = dsq_gguf_parse(&g, data, size, &err);
    if (st != DSQ_OK) {
        CHECK(g == NULL && err.code == st && err.text[0] != '\0');
        CHECK(strchr(err.text, '\n') == NULL); /* one-line messages */
        return 0;
    }
    CHECK(dsq_gguf_version(g) == 3);
    const uint32_t a = dsq_gguf_alignment(g);
    CHECK(a != 0 && (a & (a - 1)) == 0);
    CHECK(dsq_gguf_size(g) == size && dsq_gguf_bytes(g) == data);
    CHECK(dsq_gguf_data_offset(g) <= size || dsq_gguf_tensor_count(g) == 0);

    for (int64_t i = 0; i < dsq_gguf_kv_count(g); i++) {
        const char *key = dsq_gguf_kv_key(g, i);
        CHECK(key != NULL && key[0] != '\0');
        CHECK(dsq_gguf_find_key(g, key) == i);
        dsq_gguf_val v, v2;
        CHECK(dsq_gguf_kv_val(g, i, &v, NULL) == DSQ_OK);
        CHECK(v.type == dsq_gguf_kv_type(g, i));
        CHECK(dsq_gguf_get(g, key, &v2, NULL) == DSQ_OK && v2.data == v.data);
        walk_val(&v, 0);
    }
    CHECK(dsq_gguf_kv_key(g, dsq_gguf_kv_count(g)) == NULL);
    {
        /* keyed shortcuts: whatever the file holds, a status and never a crash */
        dsq_gguf_val v;
        dsq_err err2 = {0};
        uint32_t u32;
        float f32;
        bool b;
        int64_t i64;
        const char *s;
        size_t len;
        CHECK(dsq_gguf_kv_val(g, -1, &v, &err2) == DSQ_RANGE);
        CHECK(dsq_gguf_get_u32(g, "general.alignment", &u32, NULL) == DSQ_OK ||
              dsq_gguf_find_key(g, "general.alignment") < 0);
        const char *key0 = dsq_gguf_kv_count(g) > 0 ? dsq_gguf_kv_key(g, 0) : "absent";
        (void)dsq_gguf_get_str(g, key0, &s, &len, &err2);
        (void)dsq_gguf_get_f32(g, key0, &f32, &err2);
        (void)dsq_gguf_get_bool(g, key0, &b, &err2);
        (void)dsq_gguf_get_i64(g, key0, &i64, &err2);
        (void)dsq_gguf_get_arr(g, key0, DSQ_GGUF_STRING, &v, &err2);
        (void)dsq_gguf_get_arr(g, key0, DSQ_GGUF_ARRAY, &v, &err2);
        CHECK(dsq_gguf_get(g, "no.such.key", &v, NULL) == DSQ_NOT_FOUND);
    }

    uint64_t end = 0;
    for (int64_t i = 0; i < dsq_gguf_tensor_count(g); i++) {
        const dsq_gguf_tensor *t = dsq_gguf_tensor_at(g, i);
        CHECK(t != NULL && t->name[0] != '\0' && strlen(t->name) <= DSQ_GGUF_MAX_NAME);
        CHECK(dsq_gguf_find_tensor(g, t->name) == i);
        CHECK(t->n_dims <= DSQ_GGUF_MAX_DIMS);
        CHECK(t->offset >= end && t->offset % a == 0);
        CHECK(t->data == data + dsq_gguf_data_offset(g) + t->offset);
        CHECK(dsq_gguf_data_offset(g) + t->offset + t->nbytes <= size);
        if (t->nbytes > 0)
            sink ^= (uint8_t)(t->data[0] ^ t->data[t->nbytes - 1]);
        end = t->offset + t->nbytes;
    }
    CHECK(dsq_gguf_tensor_at(g, dsq_gguf_tensor_count(g)) == NULL);
    CHECK(dsq_gguf_find_tensor(g, "") == -1);

    roundtrip(g);
    dsq_gguf_close(g);
    return 0;
}

#ifdef DSQ_FUZZ_REPLAY
#include <stdio.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        const long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
        if (buf == NULL || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
            fprintf(stderr, "%s: read failed\n", argv[i]);
            return 1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)n);
        free(buf);
    }
    printf("fuzz_gguf: %d inputs replayed\n", argc - 1);
    return 0;
}
#endif
