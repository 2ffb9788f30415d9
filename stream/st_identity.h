/* stream/st_identity.h: what a safetensors source shard is, by content, for --resume.
 *
 * A shard's parts (core/rfile.h's parts hash) are its 8 + N header bytes and
 * then each non-empty tensor's data, in file order: together they are every
 * byte of the file (formats/safetensors.h: no holes). A driver that reads a
 * tensor whole hashes it as it goes and hands the hash in; at the end the
 * parts nobody read (the header, tensors the output drops) are hashed from
 * the file, which is cheap: they are small. So the identity of what was
 * converted costs no second read, and one flipped byte anywhere changes it.
 *
 * As JSON: {"file": NAME, "size": bytes, "parts_xxh3": "16 hex digits"}. */
#ifndef DSQ_ST_IDENTITY_H
#define DSQ_ST_IDENTITY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rfile.h"
#include "formats/safetensors.h"

typedef struct dsq_st_identity {
    dsq_parts_hash parts;
    size_t *part_of; /* [tensor index in the shard] -> part, SIZE_MAX for an empty tensor */
    const dsq_st *sh;
    const char *path; /* borrowed */
    const char *name; /* borrowed: the file name recorded */
} dsq_st_identity;

dsq_status dsq_st_identity_init(dsq_st_identity *id, const dsq_st *sh, const char *path,
                                const char *name, dsq_err *err);
void dsq_st_identity_free(dsq_st_identity *id); /* accepts a zeroed one */
/* XXH3 (core/hash.h) of all of tensor i's data, from the reader that read it. */
void dsq_st_identity_tensor(dsq_st_identity *id, size_t i, uint64_t hash);
/* The identity of what was read (the unread parts hashed now). New reference. */
dsq_status dsq_st_identity_json(dsq_st_identity *id, json_t **out, dsq_err *err);
/* The identity of the file as it is now, read front to back; a file of
 * another size gives JSON null (it is another source, which is no error). */
dsq_status dsq_st_identity_now(dsq_st_identity *id, json_t **out, dsq_err *err);

#endif
