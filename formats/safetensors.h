/* formats/safetensors.h: reading and writing safetensors files.
 *
 * Layout (huggingface/safetensors README, tensor.rs; specs/formats.md §1):
 *
 *   offset 0      u64 LE  N, the byte length of the JSON header
 *   offset 8      N bytes UTF-8 JSON object, may be right-padded with spaces:
 *                   {"__metadata__": {"k": "v", ...},            (optional)
 *                    "NAME": {"dtype": "BF16", "shape": [d0, d1, ...],
 *                             "data_offsets": [BEGIN, END]}, ...}
 *   offset 8+N    the data area: tensors back to back, C order, little-endian;
 *                 data_offsets are relative to its start, END exclusive.
 *
 * The reader enforces what the reference crate's validate() does: N at most
 * 100 MB and inside the file; valid JSON with unique keys; every dtype known;
 * shapes of non-negative integers; tensors sorted by offset cover the data area
 * exactly (first begins at 0, each begins where the previous ended, the last
 * ends at the end of the file: no holes, no overlap, no trailing bytes);
 * nelements x bits checked for overflow, a whole number of bytes, and equal
 * to END - BEGIN. Metadata values must be strings. Before the JSON parser sees
 * the header, the raw text is checked for what no valid header has and what
 * would make the parser allocate without bound: a NUL byte, nesting deeper than
 * 3 levels, an array of more than 64 elements.
 *
 * The writer does what the reference serializer does: tensors ordered by dtype
 * alignment (largest first) then by name, `__metadata__` first in the header,
 * the header padded with spaces to a multiple of 8 so every tensor is aligned
 * when the file is mapped. */
#ifndef DSQ_SAFETENSORS_H
#define DSQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

#define DSQ_ST_MAX_HEADER ((uint64_t)100000000) /* the reference crate's MAX_HEADER_SIZE */

typedef struct dsq_st dsq_st;

/* Maps `path` and validates it completely. */
dsq_status dsq_st_open(dsq_st **out, const char *path, dsq_err *err);
/* The same parser on a caller's buffer, which must outlive the handle.
 * `label` names the input in messages (a path, "<memory>"). */
dsq_status dsq_st_parse(dsq_st **out, const uint8_t *p, size_t n, const char *label,
                        dsq_err *err);
void dsq_st_close(dsq_st *st); /* accepts NULL */

const char *dsq_st_path(const dsq_st *st);
uint64_t dsq_st_file_size(const dsq_st *st);
uint64_t dsq_st_header_len(const dsq_st *st); /* N */

/* Tensors in file order (by data offset). */
size_t dsq_st_count(const dsq_st *st);
const dsq_tensor_view *dsq_st_tensor(const dsq_st *st, size_t i);
/* Index of the tensor named `name`, or -1. */
int64_t dsq_st_find(const dsq_st *st, const char *name);
/* File offset of tensor i's first byte. */
uint64_t dsq_st_tensor_offset(const dsq_st *st, size_t i);
/* Lets the kernel drop tensor i's pages from this process (streaming readers). */
void dsq_st_release(const dsq_st *st, size_t i);
/* The same for bytes [off, off+len) of tensor i's data. */
void dsq_st_release_range(const dsq_st *st, size_t i, uint64_t off, uint64_t len);

/* __metadata__ entries, in header order. */
size_t dsq_st_meta_count(const dsq_st *st);
const char *dsq_st_meta_key(const dsq_st *st, size_t i);
const char *dsq_st_meta_value(const dsq_st *st, size_t i);
const char *dsq_st_meta_get(const dsq_st *st, const char *key); /* NULL if absent */

/* ---- writer --------------------------------------------------------------
 * Usage: init; add every tensor and metadata entry; open (computes the layout
 * and writes the header); then for k = 0 .. count-1 write the bytes of
 * tensor dsq_st_writer_order(w, k), in any number of pieces; finish renames the
 * file into place. Any failure or a call to dsq_st_writer_free before finish
 * leaves no file behind. */
typedef struct dsq_st_writer dsq_st_writer;

dsq_status dsq_st_writer_init(dsq_st_writer **out, dsq_err *err);
void dsq_st_writer_free(dsq_st_writer *w); /* accepts NULL; aborts an unfinished file */
/* Copies name and shape. Returns the tensor's handle (its add order). */
dsq_status dsq_st_writer_add(dsq_st_writer *w, const char *name, dsq_dtype dtype, int ndim,
                             const int64_t *shape, dsq_err *err);
dsq_status dsq_st_writer_set_meta(dsq_st_writer *w, const char *key, const char *value,
                                  dsq_err *err);
/* Fixes the layout; afterwards order/size queries are valid. */
dsq_status dsq_st_writer_layout(dsq_st_writer *w, dsq_err *err);
size_t dsq_st_writer_count(const dsq_st_writer *w);
size_t dsq_st_writer_order(const dsq_st_writer *w, size_t k); /* add-index at position k */
uint64_t dsq_st_writer_tensor_bytes(const dsq_st_writer *w, size_t add_index);
uint64_t dsq_st_writer_file_size(const dsq_st_writer *w);
/* After layout: the bytes before the data, for a caller that writes the file
 * itself (stream/): the 8-byte length prefix and the padded JSON header. */
void dsq_st_writer_head(const dsq_st_writer *w, uint8_t prefix[8], const char **header,
                        size_t *header_len);
/* Creates dir/name (through a temporary) and writes the header. */
dsq_status dsq_st_writer_open(dsq_st_writer *w, const char *dir, const char *name, dsq_err *err);
dsq_status dsq_st_writer_write(dsq_st_writer *w, const void *data, size_t n, dsq_err *err);
/* For callers that write data from a writer thread and hash it themselves
 * (call after open, before any data): the first 8 + N bytes already written,
 * i.e. the length prefix and the header; the writer stops hashing, and
 * dsq_st_writer_finish then reports no hash. */
void dsq_st_writer_hash_externally(dsq_st_writer *w, const uint8_t **prefix, size_t *prefix_len,
                                   const char **header, size_t *header_len);
/* Checks that every byte was written, then renames into place. *xxh64 (may
 * be NULL) receives the hash of the whole file. */
dsq_status dsq_st_writer_finish(dsq_st_writer *w, uint64_t *xxh64, dsq_err *err);

#endif
