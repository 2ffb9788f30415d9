/* formats/st_checkpoint.h: a Hugging Face checkpoint directory of safetensors.
 *
 * Sharded: `model.safetensors.index.json` is
 *   {"metadata": {"total_size": <bytes>}, "weight_map": {"<tensor>": "<shard file>", ...}}
 * (specs/formats.md §1.5; readers must not rely on total_size). Unsharded: one
 * `model.safetensors`, or a path to any single .safetensors file.
 *
 * Opening validates the whole checkpoint before anything uses it: every shard
 * named by the index parses; every tensor the index names is in the shard it
 * names; no tensor is in two shards. Shard names come from a downloaded file,
 * so a name that is not a plain file name (`../x`, `/etc/x`, a separator, a
 * control character, a hidden name) is rejected before it touches a path. */
#ifndef DSQ_ST_CHECKPOINT_H
#define DSQ_ST_CHECKPOINT_H

#include <stddef.h>

#include "core/status.h"
#include "formats/safetensors.h"

#define DSQ_INDEX_JSON "model.safetensors.index.json"
#define DSQ_INDEX_MAX_BYTES ((size_t)256 << 20)
/* Bounds checked on the raw text before parsing (core/json_prescan.h). A real
 * index is {"metadata": {...}, "weight_map": {...}}: DeepSeek-V3's has about
 * about 90,000 members, so a million is ten times the largest known. */
#define DSQ_INDEX_MAX_DEPTH 4
#define DSQ_INDEX_MAX_ARRAY 4096
#define DSQ_INDEX_MAX_MEMBERS ((size_t)1 << 20)

typedef struct dsq_ckpt dsq_ckpt;

/* `path` is a checkpoint directory or a single .safetensors file. */
dsq_status dsq_ckpt_open(dsq_ckpt **out, const char *path, dsq_err *err);
void dsq_ckpt_close(dsq_ckpt *ck); /* accepts NULL */

const char *dsq_ckpt_dir(const dsq_ckpt *ck); /* the directory holding the shards */
int dsq_ckpt_is_sharded(const dsq_ckpt *ck);  /* 1 when an index was read */

/* Shards sorted by file name. */
size_t dsq_ckpt_shard_count(const dsq_ckpt *ck);
const char *dsq_ckpt_shard_name(const dsq_ckpt *ck, size_t i); /* file name only */
const dsq_st *dsq_ckpt_shard(const dsq_ckpt *ck, size_t i);

/* The index parser dsq_ckpt_open uses, on a caller's buffer (fuzzing, tests):
 * validates `text` as a model.safetensors.index.json, every shard name
 * included, and returns the number of distinct shards it names. Opens nothing.
 * @return DSQ_OK, DSQ_FORMAT (bad JSON, no weight_map, a name that is a path),
 *         DSQ_NOMEM. */
dsq_status dsq_ckpt_index_parse(const char *text, size_t len, const char *label,
                                size_t *n_shards, dsq_err *err);

/* Finds a tensor anywhere in the checkpoint; returns NULL if absent. */
const dsq_tensor_view *dsq_ckpt_find(const dsq_ckpt *ck, const char *name, size_t *shard,
                                     size_t *index_in_shard);
size_t dsq_ckpt_tensor_count(const dsq_ckpt *ck);

#endif
