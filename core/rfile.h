/* core/rfile.h: positioned reading into buffers the caller reuses.
 *
 * Why not mmap for streaming: a mapping read once and dropped behind the
 * cursor (madvise) costs a TLB shootdown on every core running a thread of
 * the process, per release; under a hypervisor each one is a trip out of the
 * guest (issue #10 item 8: 1.6 ms per madvise, a third of a conversion's
 * time). pread(2) into a few buffers allocated once touches no page tables:
 * the kernel copies from the page cache, RSS is the buffers, whatever the
 * file size. Mapping stays the right tool for random access to small parts
 * (headers, block scales).
 *
 * Parts hashing: a file's content identity that can be computed while its
 * parts are read in any order. The file is cut at given offsets into parts
 * that cover it; the identity is the hash (core/hash.h, XXH3-64) of the
 * parts' hashes, each as 8 little-endian bytes, in file order. A safetensors shard's parts
 * are its 8 + N header bytes and then each tensor's data: a converter reads
 * every part once anyway, so identifying the source costs one more hash of
 * bytes that are in cache, not a second read of the file. */
#ifndef DSQ_RFILE_H
#define DSQ_RFILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct dsq_rfile {
    int fd;
    uint64_t size;
    const char *path; /* borrowed, for messages */
} dsq_rfile;

/* Opens a regular file for reading; `path` must outlive the handle. */
dsq_status dsq_rfile_open(dsq_rfile *f, const char *path, dsq_err *err);
void dsq_rfile_close(dsq_rfile *f); /* accepts a zeroed or closed handle */
/* Reads exactly n bytes at off (retrying short reads and EINTR); a range past
 * the end of the file is DSQ_FORMAT ("truncated"), an error DSQ_IO. */
dsq_status dsq_rfile_read(const dsq_rfile *f, void *buf, size_t n, uint64_t off, dsq_err *err);
/* Asks the kernel to start reading [off, off+len) now (readahead for a
 * reader that jumps between tensors, where its own detection fails). */
void dsq_rfile_willneed(const dsq_rfile *f, uint64_t off, uint64_t len);

/* The identity of a file cut into n parts; part i is [ends[i-1], ends[i]),
 * ends[-1] = 0, ends[n-1] = the file size. */
typedef struct dsq_parts_hash {
    size_t n;
    uint64_t *ends;   /* [n] */
    uint64_t *hashes; /* [n] */
    uint8_t *have;    /* [n] */
} dsq_parts_hash;

/* Copies ends (strictly increasing). */
dsq_status dsq_parts_init(dsq_parts_hash *p, size_t n, const uint64_t *ends, dsq_err *err);
void dsq_parts_free(dsq_parts_hash *p);
/* The part that starts at off, or n when none does. */
size_t dsq_parts_find(const dsq_parts_hash *p, uint64_t off);
void dsq_parts_set(dsq_parts_hash *p, size_t part, uint64_t hash);
/* DSQ_OK and *out when every part is set, DSQ_INVALID_ARG otherwise. */
dsq_status dsq_parts_digest(const dsq_parts_hash *p, uint64_t *out, dsq_err *err);
/* Reads the whole file front to back (through buf, cap bytes) and sets
 * every part; the file must be exactly ends[n-1] bytes. */
dsq_status dsq_parts_hash_file(dsq_parts_hash *p, const char *path, void *buf, size_t cap,
                               dsq_err *err);

/* A few equal buffers allocated once and handed out again and again, for
 * readers on several threads: get blocks while all are out. */
typedef struct dsq_bufpool dsq_bufpool;
dsq_status dsq_bufpool_create(dsq_bufpool **out, size_t n_bufs, size_t buf_size, dsq_err *err);
void *dsq_bufpool_get(dsq_bufpool *p);
void dsq_bufpool_put(dsq_bufpool *p, void *buf);
size_t dsq_bufpool_buf_size(const dsq_bufpool *p);
void dsq_bufpool_free(dsq_bufpool *p); /* accepts NULL; every buffer must be back */

#endif
