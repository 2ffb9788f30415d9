/* formats/gguf.h: GGUF v3 reader (formats/gguf.c) and streaming writer (formats/gguf_write.c).
 *
 * Byte layout (all little-endian; specs/formats.md §2.1, ggml docs/gguf.md):
 *
 *   u32  magic        "GGUF" (bytes 47 47 55 46)
 *   u32  version      3 (we reject 1, 2, > 3 and byte-swapped versions)
 *   i64  n_tensors    >= 0
 *   i64  n_kv         >= 0
 *   n_kv x KV         string key; i32 value type; value
 *   n_tensors x info  string name; u32 n_dims; n_dims x u64 ne (ne[0] fastest);
 *                     i32 ggml_type; u64 offset (relative to the data section)
 *   0x00 padding      to a multiple of ALIGNMENT (only when n_tensors > 0)
 *   tensor data       tensor i at data_offset + offset_i, each padded with 0x00 to ALIGNMENT
 *
 *   string = u64 byte length + bytes (no NUL). bool = 1 byte. Value types: UINT8 0, INT8 1,
 *   UINT16 2, INT16 3, UINT32 4, INT32 5, FLOAT32 6, BOOL 7, STRING 8, ARRAY 9, UINT64 10,
 *   INT64 11, FLOAT64 12. ARRAY = i32 element type + u64 count + elements back to back.
 *   ALIGNMENT = value of `general.alignment` (UINT32) or 32.
 *
 * What the reader enforces (a superset of ggml's gguf_init_from_file_impl, §2.2), each
 * failure a one-line message "<file>: byte <offset>: <what>":
 *   - magic; version 3 only; n_tensors, n_kv in [0, what the remaining bytes could hold]
 *   - every length from the file checked against the bytes left before it is used;
 *     strings <= DSQ_GGUF_MAX_STRING, arrays <= DSQ_GGUF_MAX_ARRAY elements and
 *     count x minimum element size <= bytes left (a 2^62 count fails without allocating)
 *   - value types in [0, 12]; ARRAY of ARRAY allowed (the GGUF spec permits it, ggml rejects
 *     it) up to DSQ_GGUF_MAX_DEPTH levels
 *   - keys non-empty, without NUL bytes, unique; general.alignment UINT32, non-zero power of 2
 *   - tensor names 1..DSQ_GGUF_MAX_NAME bytes, without NUL bytes, unique
 *   - n_dims <= 4; every ne >= 0 and their product <= INT64_MAX; byte size fits in 64 bits
 *   - ggml type id known to dsq (core/dtype.h); ne[0] % block_size == 0
 *   - offsets exactly sequential as ggml lays them out: offset_i == sum_{j<i} pad(nbytes_j),
 *     so misaligned, overlapping and gapped tensors are all rejected; every tensor's data
 *     inside the file. Trailing bytes after the last tensor are allowed (ggml pads the last
 *     tensor too; we do not require that padding to be present).
 */
#ifndef DSQ_GGUF_H
#define DSQ_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define DSQ_GGUF_MAGIC             0x46554747u /* "GGUF" read as a little-endian u32 */
#define DSQ_GGUF_VERSION           3u
#define DSQ_GGUF_DEFAULT_ALIGNMENT 32u
#define DSQ_GGUF_MAX_DIMS          4
#define DSQ_GGUF_MAX_NAME          63                     /* ggml GGML_MAX_NAME 64 incl. NUL */
#define DSQ_GGUF_MAX_STRING        ((uint64_t)1 << 30)    /* ggml GGUF_MAX_STRING_LENGTH */
#define DSQ_GGUF_MAX_ARRAY         ((uint64_t)1 << 30)    /* ggml GGUF_MAX_ARRAY_ELEMENTS */
#define DSQ_GGUF_MAX_DEPTH         8 /* ARRAY nesting levels (1 = a plain array) */

typedef enum dsq_gguf_type {
    DSQ_GGUF_UINT8   = 0,
    DSQ_GGUF_INT8    = 1,
    DSQ_GGUF_UINT16  = 2,
    DSQ_GGUF_INT16   = 3,
    DSQ_GGUF_UINT32  = 4,
    DSQ_GGUF_INT32   = 5,
    DSQ_GGUF_FLOAT32 = 6,
    DSQ_GGUF_BOOL    = 7,
    DSQ_GGUF_STRING  = 8,
    DSQ_GGUF_ARRAY   = 9,
    DSQ_GGUF_UINT64  = 10,
    DSQ_GGUF_INT64   = 11,
    DSQ_GGUF_FLOAT64 = 12,
    DSQ_GGUF_TYPE_COUNT
} dsq_gguf_type;

/* "UINT32", ...; "?" for an invalid value. */
const char *dsq_gguf_type_name(dsq_gguf_type t);
/* Bytes of one value of a fixed-size type; 0 for STRING, ARRAY and invalid values. */
size_t dsq_gguf_type_size(dsq_gguf_type t);

/* ============================================================================================
 * Reader
 * ========================================================================================== */

typedef struct dsq_gguf dsq_gguf;

/* A borrowed view of one metadata value: a KV's value or an element of an array. Valid until
 * the dsq_gguf it came from is closed. `data` points into the file (or the parsed buffer):
 *   scalar: its little-endian bytes (use the typed getters rather than reading them);
 *   STRING: the bytes, n of them, not NUL-terminated;
 *   ARRAY:  the first element; for fixed-size element types the n elements are contiguous
 *           little-endian values of dsq_gguf_type_size(elem_type) bytes each.
 * `key` is the KV the value belongs to (for messages). */
typedef struct dsq_gguf_val {
    dsq_gguf_type  type;
    dsq_gguf_type  elem_type; /* ARRAY: type of the elements; otherwise equal to type */
    uint64_t       n;         /* STRING: byte length; ARRAY: element count; scalar: 1 */
    const uint8_t *data;
    const char    *key;
    const void    *node_; /* private */
} dsq_gguf_val;

/* A borrowed view of one tensor info; valid until the dsq_gguf is closed. */
typedef struct dsq_gguf_tensor {
    const char    *name;   /* NUL-terminated, 1..63 bytes */
    int            ggml_type;
    dsq_dtype      dtype;
    uint32_t       n_dims; /* 0..4 */
    int64_t        ne[DSQ_GGUF_MAX_DIMS]; /* ne[0] is the fastest dimension; unused ones are 1 */
    uint64_t       offset; /* relative to the data section */
    uint64_t       nbytes;
    const uint8_t *data;   /* into the file; nbytes bytes. Aligned to the file's alignment
                            * relative to the start of the bytes (a page-aligned map for
                            * dsq_gguf_open); general.alignment may legally be 1 or 2, so
                            * memcpy rather than cast to float * unless alignment >= 4. */
} dsq_gguf_tensor;

/* Maps `path` read-only and parses it. *out is owned: release with dsq_gguf_close.
 * @return DSQ_OK; DSQ_NOT_FOUND / DSQ_IO (open, mmap); DSQ_FORMAT (malformed file);
 *         DSQ_UNSUPPORTED (other GGUF version, big-endian, ggml type dsq lacks); DSQ_NOMEM. */
dsq_status dsq_gguf_open(dsq_gguf **out, const char *path, dsq_err *err);
/* The same parser on a caller-owned buffer, which must outlive *out (views point into it).
 * Messages name the source "<buffer>". */
dsq_status dsq_gguf_parse(dsq_gguf **out, const uint8_t *p, size_t n, dsq_err *err);
void       dsq_gguf_close(dsq_gguf *g); /* accepts NULL */
/* 1 when `path` is a regular file that starts with the GGUF magic, or one named
 * *.gguf (so that a damaged GGUF gets the GGUF reader's message, not another
 * format's); 0 otherwise, directories included. Reads 4 bytes, validates nothing. */
int        dsq_gguf_probe_path(const char *path);

uint32_t dsq_gguf_version(const dsq_gguf *g);
uint32_t dsq_gguf_alignment(const dsq_gguf *g);
/* Byte offset of the data section (the end of the header padding when n_tensors > 0). */
uint64_t dsq_gguf_data_offset(const dsq_gguf *g);
/* Size of the whole file or buffer, and its bytes (borrowed). */
size_t         dsq_gguf_size(const dsq_gguf *g);
const uint8_t *dsq_gguf_bytes(const dsq_gguf *g);

int64_t dsq_gguf_kv_count(const dsq_gguf *g);
/* Key i, NUL-terminated (keys never contain NUL); NULL when i is out of range. */
const char   *dsq_gguf_kv_key(const dsq_gguf *g, int64_t i);
/* Value type of KV i; DSQ_GGUF_TYPE_COUNT when i is out of range. */
dsq_gguf_type dsq_gguf_kv_type(const dsq_gguf *g, int64_t i);
/* The value of KV i. @return DSQ_OK or DSQ_RANGE (i out of range). */
dsq_status    dsq_gguf_kv_val(const dsq_gguf *g, int64_t i, dsq_gguf_val *out, dsq_err *err);
/* Index of `key`, or -1 when absent. */
int64_t       dsq_gguf_find_key(const dsq_gguf *g, const char *key);
/* The value of `key`. @return DSQ_OK or DSQ_NOT_FOUND. */
dsq_status    dsq_gguf_get(const dsq_gguf *g, const char *key, dsq_gguf_val *out, dsq_err *err);

/* Typed getters. Each returns DSQ_FORMAT with a message naming the key and both types when
 * the value has another type; they never abort. */
dsq_status dsq_gguf_val_u8(const dsq_gguf_val *v, uint8_t *out, dsq_err *err);
dsq_status dsq_gguf_val_i8(const dsq_gguf_val *v, int8_t *out, dsq_err *err);
dsq_status dsq_gguf_val_u16(const dsq_gguf_val *v, uint16_t *out, dsq_err *err);
dsq_status dsq_gguf_val_i16(const dsq_gguf_val *v, int16_t *out, dsq_err *err);
dsq_status dsq_gguf_val_u32(const dsq_gguf_val *v, uint32_t *out, dsq_err *err);
dsq_status dsq_gguf_val_i32(const dsq_gguf_val *v, int32_t *out, dsq_err *err);
dsq_status dsq_gguf_val_u64(const dsq_gguf_val *v, uint64_t *out, dsq_err *err);
dsq_status dsq_gguf_val_i64(const dsq_gguf_val *v, int64_t *out, dsq_err *err);
dsq_status dsq_gguf_val_f32(const dsq_gguf_val *v, float *out, dsq_err *err);
dsq_status dsq_gguf_val_f64(const dsq_gguf_val *v, double *out, dsq_err *err);
dsq_status dsq_gguf_val_bool(const dsq_gguf_val *v, bool *out, dsq_err *err);
/* *s points into the file and is NOT NUL-terminated; *len bytes. */
dsq_status dsq_gguf_val_str(const dsq_gguf_val *v, const char **s, size_t *len, dsq_err *err);
/* Lenient integer read for keys whose writers disagree on the type (token ids as UINT32 or
 * INT32): any integer type or BOOL whose value fits in int64 (a UINT64 above INT64_MAX is
 * DSQ_RANGE). */
dsq_status dsq_gguf_val_as_i64(const dsq_gguf_val *v, int64_t *out, dsq_err *err);
/* Any integer, BOOL or float type, converted to double. */
dsq_status dsq_gguf_val_as_f64(const dsq_gguf_val *v, double *out, dsq_err *err);
/* Element i of an ARRAY (any element type, nested arrays included).
 * @return DSQ_OK; DSQ_FORMAT (v is not an array); DSQ_RANGE (i >= v->n). */
dsq_status dsq_gguf_val_at(const dsq_gguf_val *arr, uint64_t i, dsq_gguf_val *out, dsq_err *err);

/* Keyed shortcuts: DSQ_NOT_FOUND when absent, DSQ_FORMAT on a wrong type. */
dsq_status dsq_gguf_get_u32(const dsq_gguf *g, const char *key, uint32_t *out, dsq_err *err);
dsq_status dsq_gguf_get_f32(const dsq_gguf *g, const char *key, float *out, dsq_err *err);
dsq_status dsq_gguf_get_bool(const dsq_gguf *g, const char *key, bool *out, dsq_err *err);
dsq_status dsq_gguf_get_str(const dsq_gguf *g, const char *key, const char **s, size_t *len,
                            dsq_err *err);
dsq_status dsq_gguf_get_i64(const dsq_gguf *g, const char *key, int64_t *out,
                            dsq_err *err); /* as dsq_gguf_val_as_i64 */
/* An ARRAY whose elements have type elem_type. */
dsq_status dsq_gguf_get_arr(const dsq_gguf *g, const char *key, dsq_gguf_type elem_type,
                            dsq_gguf_val *out, dsq_err *err);

int64_t                dsq_gguf_tensor_count(const dsq_gguf *g);
/* NULL when i is out of range. */
const dsq_gguf_tensor *dsq_gguf_tensor_at(const dsq_gguf *g, int64_t i);
/* Index of the tensor called `name`, or -1 when absent. */
int64_t                dsq_gguf_find_tensor(const dsq_gguf *g, const char *name);

/* ============================================================================================
 * Writer
 *
 * Usage: init; add KVs and tensor infos (sizes known up front, so the header, offsets
 * included, is fixed before any data); begin (opens dir/name.tmp and writes the header);
 * write the tensors' bytes in the order they were added, in chunks of any size; commit
 * (renames into place). free at any point discards the output. The bytes depend only on the
 * calls made: same calls, same file. Tensors are laid out as ggml does (each padded with
 * zeros to ALIGNMENT), so copying a ggml-written file KV by KV and tensor by tensor gives
 * the same bytes.
 * ========================================================================================== */

typedef struct dsq_gguf_writer dsq_gguf_writer;

dsq_status dsq_gguf_writer_init(dsq_gguf_writer **out, dsq_err *err); /* DSQ_NOMEM */
void       dsq_gguf_writer_free(dsq_gguf_writer *w);                  /* accepts NULL */

/* Adding KVs. At top level `key` names a new KV: non-empty, no NUL byte, not used before
 * (else DSQ_INVALID_ARG). Between begin_arr and end_arr, key must be NULL and the call
 * appends one element, whose type must be the array's element type.
 * "general.alignment" may only be added as a UINT32 that is a non-zero power of two; it sets
 * the writer's alignment. */
dsq_status dsq_gguf_writer_add_u8(dsq_gguf_writer *w, const char *key, uint8_t v, dsq_err *err);
dsq_status dsq_gguf_writer_add_i8(dsq_gguf_writer *w, const char *key, int8_t v, dsq_err *err);
dsq_status dsq_gguf_writer_add_u16(dsq_gguf_writer *w, const char *key, uint16_t v,
                                   dsq_err *err);
dsq_status dsq_gguf_writer_add_i16(dsq_gguf_writer *w, const char *key, int16_t v, dsq_err *err);
dsq_status dsq_gguf_writer_add_u32(dsq_gguf_writer *w, const char *key, uint32_t v,
                                   dsq_err *err);
dsq_status dsq_gguf_writer_add_i32(dsq_gguf_writer *w, const char *key, int32_t v, dsq_err *err);
dsq_status dsq_gguf_writer_add_u64(dsq_gguf_writer *w, const char *key, uint64_t v,
                                   dsq_err *err);
dsq_status dsq_gguf_writer_add_i64(dsq_gguf_writer *w, const char *key, int64_t v, dsq_err *err);
dsq_status dsq_gguf_writer_add_f32(dsq_gguf_writer *w, const char *key, float v, dsq_err *err);
dsq_status dsq_gguf_writer_add_f64(dsq_gguf_writer *w, const char *key, double v, dsq_err *err);
dsq_status dsq_gguf_writer_add_bool(dsq_gguf_writer *w, const char *key, bool v, dsq_err *err);
/* len bytes of s (need not be NUL-terminated; may contain any bytes). */
dsq_status dsq_gguf_writer_add_str(dsq_gguf_writer *w, const char *key, const char *s, size_t len,
                                   dsq_err *err);
/* Opens an array of elem_type (any type, ARRAY included for nested arrays), closed by
 * end_arr; at most DSQ_GGUF_MAX_DEPTH levels. */
dsq_status dsq_gguf_writer_begin_arr(dsq_gguf_writer *w, const char *key, dsq_gguf_type elem_type,
                                     dsq_err *err);
dsq_status dsq_gguf_writer_end_arr(dsq_gguf_writer *w, dsq_err *err);
/* A whole array of n fixed-size numbers at once: data holds n host values of elem_type
 * (bool as 1 byte each, non-zero = true). */
dsq_status dsq_gguf_writer_add_arr(dsq_gguf_writer *w, const char *key, dsq_gguf_type elem_type,
                                   const void *data, uint64_t n, dsq_err *err);
/* A whole array of n strings; lens may be NULL for NUL-terminated strings. */
dsq_status dsq_gguf_writer_add_arr_str(dsq_gguf_writer *w, const char *key,
                                       const char *const *strs, const size_t *lens, uint64_t n,
                                       dsq_err *err);
/* Copies a value read by the reader, whatever its type (nested arrays included). */
dsq_status dsq_gguf_writer_add_val(dsq_gguf_writer *w, const char *key, const dsq_gguf_val *v,
                                   dsq_err *err);

/* Declares the next tensor: name 1..63 bytes, no NUL, unique; dtype with a ggml type id;
 * n_dims <= 4; ne[i] >= 0 with a product <= INT64_MAX; ne[0] a multiple of the block size.
 * @return DSQ_OK; DSQ_INVALID_ARG; DSQ_UNSUPPORTED (dtype has no ggml id). */
dsq_status dsq_gguf_writer_add_tensor(dsq_gguf_writer *w, const char *name, dsq_dtype dtype,
                                      uint32_t n_dims, const int64_t *ne, dsq_err *err);

/* The header as it will be written, including the padding up to the data section: an owned
 * buffer of *len bytes (free it). Only valid with no array open. */
dsq_status dsq_gguf_writer_header(const dsq_gguf_writer *w, uint8_t **out, size_t *len,
                                  dsq_err *err);
/* Total size of the file that commit will produce (header + padded tensor data). */
dsq_status dsq_gguf_writer_file_size(const dsq_gguf_writer *w, uint64_t *out, dsq_err *err);

/* Opens dir/name through dsq_outfile (hidden temporary name) and writes the header. After
 * this no KV or tensor may be added. */
dsq_status dsq_gguf_writer_begin(dsq_gguf_writer *w, const char *dir, const char *name,
                                 dsq_err *err);
/* The next n bytes of tensor data, in tensor order; a call may not run past the end of the
 * current tensor (DSQ_INVALID_ARG). Padding is written automatically. */
dsq_status dsq_gguf_writer_write(dsq_gguf_writer *w, const void *buf, size_t n, dsq_err *err);
/* Checks that every tensor got all its bytes (DSQ_INVALID_ARG otherwise, and the output is
 * discarded), then renames the file into place. The writer stays allocated: free it. */
dsq_status dsq_gguf_writer_commit(dsq_gguf_writer *w, dsq_err *err);

#endif
