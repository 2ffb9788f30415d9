/* formats/gguf_split.h: a GGUF model that may be split over several files, read as one.
 *
 * llama.cpp's split convention (examples/gguf-split, src/llama-model-loader.cpp):
 *   - files PREFIX-00001-of-0000N.gguf ... PREFIX-0000N-of-0000N.gguf (%05d, 1-based);
 *   - every file has split.no (UINT16, 0-based position), split.count (UINT16, N) and
 *     split.tensors.count (INT32, tensors in all files together);
 *   - the first file carries all the metadata; the others only the split keys;
 *   - each tensor is in exactly one file, laid out in that file as in any GGUF.
 *
 * A set is opened by its first file, as llama.cpp loads one: the other names are derived
 * from the first by replacing its "-00001-of-0000N.gguf" ending (a first file not named
 * that way cannot be completed, and is an error as in llama.cpp). A file without
 * split.count, or with split.count 0 or 1, is a set of one file: every single-file GGUF
 * opens as before.
 *
 * What is checked, each failure one line naming the file (every file also passes
 * dsq_gguf_open's own checks):
 *   - the file given has split.no 0 (a later split: "pass the first, <name>");
 *   - every file exists (DSQ_NOT_FOUND) and has the three split keys with llama.cpp's types;
 *   - split.no equals the file's position in the set; split.count and split.tensors.count
 *     equal the first file's (llama.cpp checks only split.no; a file copied from another
 *     set with another count is caught here instead of as a missing tensor later);
 *   - no tensor name in two files; split.tensors.count equals the tensors found.
 * A file from another set with the same count, position and tensor names cannot be told
 * apart: the format has no set identifier.
 *
 * Metadata (KVs, version, alignment) is the first file's, as in llama.cpp. Tensors are
 * listed file by file, in each file's order; their dsq_gguf_tensor views (data included)
 * point into their own file's mapping, with `offset` relative to that file's data section. */
#ifndef DSQ_GGUF_SPLIT_H
#define DSQ_GGUF_SPLIT_H

#include <stdint.h>

#include "core/status.h"
#include "formats/gguf.h"

#define DSQ_GGUF_SPLIT_MAX 65535 /* split.count is a UINT16 */

typedef struct dsq_gguf_set dsq_gguf_set;

/* Opens `path` and, when it is the first file of a split set, every other file of the set.
 * *out is owned: release with dsq_gguf_set_close.
 * @return DSQ_OK; DSQ_NOT_FOUND (a file missing); DSQ_FORMAT (an inconsistent set, a later
 *         split given, a file dsq_gguf_open rejects); DSQ_IO; DSQ_UNSUPPORTED; DSQ_NOMEM. */
dsq_status dsq_gguf_set_open(dsq_gguf_set **out, const char *path, dsq_err *err);
void       dsq_gguf_set_close(dsq_gguf_set *s); /* accepts NULL */

/* Number of files (1 for an unsplit GGUF), file k (0 = the first, which has the metadata)
 * and its path. NULL when k is out of range. */
int             dsq_gguf_set_file_count(const dsq_gguf_set *s);
const dsq_gguf *dsq_gguf_set_file(const dsq_gguf_set *s, int k);
const char     *dsq_gguf_set_path(const dsq_gguf_set *s, int k);
/* The first file: every metadata getter of formats/gguf.h applies to it. */
const dsq_gguf *dsq_gguf_set_meta(const dsq_gguf_set *s);
/* Sum of the files' sizes. */
uint64_t        dsq_gguf_set_bytes(const dsq_gguf_set *s);

/* All tensors of all files: file 0's in its order, then file 1's, ... */
int64_t                dsq_gguf_set_tensor_count(const dsq_gguf_set *s);
/* NULL when i is out of range. */
const dsq_gguf_tensor *dsq_gguf_set_tensor_at(const dsq_gguf_set *s, int64_t i);
/* The file holding tensor i; -1 when i is out of range. */
int                    dsq_gguf_set_tensor_file(const dsq_gguf_set *s, int64_t i);
/* Index of the tensor called `name`, or -1 when absent. */
int64_t                dsq_gguf_set_find_tensor(const dsq_gguf_set *s, const char *name);

#endif
