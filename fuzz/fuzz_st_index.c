/* fuzz/fuzz_st_index.c: the model.safetensors.index.json parser on arbitrary
 * bytes. On success every shard name it accepted must be a plain file name
 * (dsq_name_is_safe) ending in .safetensors: that is what keeps a downloaded
 * index from naming a path. See fuzz_safetensors.c for the two builds. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "formats/st_checkpoint.h"

int dsq_fuzz_st_index(const uint8_t *data, size_t size);

int dsq_fuzz_st_index(const uint8_t *data, size_t size) {
    dsq_err err = {0};
    size_t n_shards = 0;
    char *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    if (size > 0)
        memcpy(copy, data, size);
    const dsq_status st = dsq_ckpt_index_parse(copy, size, "<fuzz>", &n_shards, &err);
    if (st != DSQ_OK) {
        if (err.code == DSQ_OK || err.text[0] == '\0')
            abort();
        free(copy);
        return 0;
    }
    /* accepted: check the property independently of the parser */
    json_error_t jerr;
    json_t *root = json_loadb(copy, size, JSON_REJECT_DUPLICATES, &jerr);
    json_t *wm = json_object_get(root, "weight_map");
    if (root == NULL || !json_is_object(wm))
        abort();
    if ((n_shards == 0) != (json_object_size(wm) == 0))
        abort();
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        const char *name = json_string_value(val);
        const size_t len = json_string_length(val);
        if (name == NULL || strlen(name) != len || !dsq_name_is_safe(name, len) ||
            strchr(name, '/') != NULL || name[0] == '.' || len < 12 ||
            strcmp(name + len - 12, ".safetensors") != 0)
            abort();
    }
    json_decref(root);
    free(copy);
    return 0;
}

#ifndef DSQ_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return dsq_fuzz_st_index(data, size);
}
#endif
