/* model/json_edit.h: editing a Hugging Face config.json without rewriting it.
 *
 * A converted checkpoint's config.json must lose `quantization_config` and say
 * `"torch_dtype": "bfloat16"`, and should otherwise be the user's file byte for
 * byte: re-serializing through a JSON library would reformat every float
 * (1e-06 becomes 9.9999999999999995e-07) and reorder nothing useful. So the
 * text is validated as JSON, then the top-level members are located by a small
 * scanner and edited in place. */
#ifndef DSQ_HF_CONFIG_H
#define DSQ_HF_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Returns in *out (malloc'd, NUL-terminated) `text` with the top-level member
 * `remove_key` deleted (if present) and the top-level string member `set_key`
 * set to `set_value` (replaced if present, appended otherwise). `label` names
 * the file in messages. */
dsq_status dsq_json_edit_top(const char *text, size_t len, const char *remove_key,
                             const char *set_key, const char *set_value, const char *label,
                             char **out, size_t *out_len, dsq_err *err);

#endif
