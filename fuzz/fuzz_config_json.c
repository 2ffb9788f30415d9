/* fuzz/fuzz_config_json.c: config.json handling on arbitrary bytes.
 *
 * dsq_json_edit_top edits the text in place instead of re-serializing it, so
 * it is checked as a property: whenever it accepts an input, its output must
 * parse as JSON, must no longer have the removed key, must have the set key
 * with the set value, and must keep every other top-level member equal to
 * the input's. Three edits are tried per input: remove and set (what the
 * converter does), remove only, set only. dsq_config_fp8_block (model/model_desc.h,
 * the config.json reader) must reject or return a block size in range. See fuzz_safetensors.c for the two builds. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/json_edit.h"
#include "model/model_desc.h"

int dsq_fuzz_config_json(const uint8_t *data, size_t size);

static void check_edit(const char *text, size_t len, const char *remove_key, const char *set_key,
                       const char *set_value) {
    char *out = NULL;
    size_t out_len = 0;
    dsq_err err = {0};
    if (dsq_json_edit_top(text, len, remove_key, set_key, set_value, "<fuzz>", &out, &out_len,
                          &err) != DSQ_OK) {
        if (err.code == DSQ_OK || err.text[0] == '\0' || out != NULL)
            abort();
        return;
    }
    json_error_t jerr;
    json_t *in = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *res = json_loadb(out, out_len, JSON_REJECT_DUPLICATES, &jerr);
    if (in == NULL || res == NULL || !json_is_object(res) || strlen(out) != out_len)
        abort(); /* the edit broke the JSON */
    if (remove_key != NULL && json_object_get(res, remove_key) != NULL)
        abort();
    if (set_key != NULL) {
        const json_t *v = json_object_get(res, set_key);
        if (!json_is_string(v) || strcmp(json_string_value(v), set_value) != 0)
            abort();
    }
    const char *key;
    json_t *val;
    size_t kept = 0;
    json_object_foreach(in, key, val) {
        if ((remove_key != NULL && strcmp(key, remove_key) == 0) ||
            (set_key != NULL && strcmp(key, set_key) == 0))
            continue;
        if (!json_equal(val, json_object_get(res, key)))
            abort();
        kept++;
    }
    const int set_new = set_key != NULL && (remove_key == NULL || strcmp(set_key, remove_key) != 0);
    if (json_object_size(res) != kept + (size_t)set_new)
        abort();
    json_decref(in);
    json_decref(res);
    free(out);
}

int dsq_fuzz_config_json(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    if (size > 0)
        memcpy(text, data, size);
    check_edit(text, size, "quantization_config", "torch_dtype", "bfloat16");
    check_edit(text, size, "torch_dtype", NULL, NULL);
    check_edit(text, size, NULL, "quantization_config", "x");

    int64_t rows = 0, cols = 0;
    int found = 0;
    dsq_err err = {0};
    if (dsq_config_fp8_block(text, size, "<fuzz>", &rows, &cols, &found, &err) == DSQ_OK) {
        if (rows <= 0 || cols <= 0 || rows > (1 << 20) || cols > (1 << 20))
            abort();
        if (!found && (rows != 128 || cols != 128))
            abort();
    } else if (err.code == DSQ_OK || err.text[0] == '\0') {
        abort();
    }
    free(text);
    return 0;
}

#ifndef DSQ_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return dsq_fuzz_config_json(data, size);
}
#endif
