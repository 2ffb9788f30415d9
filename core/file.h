/* core/file.h: reading files by mmap, writing them crash-safely, checking
 * output paths before any work (pre-flight).
 *
 * Reading: a whole file is mapped read-only; views into it stay valid until
 * dsq_map_close. Writing: a dsq_outfile writes to a hidden temporary name in
 * the target directory and only dsq_outfile_commit renames it into place, so a
 * run killed at any moment never leaves a complete-looking partial file. */
#ifndef DSQ_FILE_H
#define DSQ_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct dsq_map {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
} dsq_map;

dsq_status dsq_map_open(dsq_map *m, const char *path, dsq_err *err);
void dsq_map_close(dsq_map *m); /* accepts a zeroed or closed map */
/* Drops the pages of [off, off+len) from this process's resident set (the page
 * cache keeps them): streaming readers call it behind themselves so that RSS
 * stays bounded however large the file. */
void dsq_map_release(const dsq_map *m, size_t off, size_t len);

typedef struct dsq_outfile dsq_outfile;

/* Creates `dir/.name.dsqtmp.XXXXXX`. `name` must pass dsq_name_is_safe. */
dsq_status dsq_outfile_open(dsq_outfile **out, const char *dir, const char *name, dsq_err *err);
dsq_status dsq_outfile_write(dsq_outfile *f, const void *buf, size_t n, dsq_err *err);
uint64_t dsq_outfile_written(const dsq_outfile *f);
/* xxHash64 (seed 0) of everything written so far. */
uint64_t dsq_outfile_xxh64(const dsq_outfile *f);
/* Stops dsq_outfile_write from hashing: a caller that writes from another
 * thread hashes in its producer instead (dsq_outfile_xxh64 is then
 * meaningless), so the writer thread does nothing but write(2). */
void dsq_outfile_no_hash(dsq_outfile *f);
/* Renames the temporary file to its final name and frees f. On failure the
 * temporary file is removed and f is freed too. */
dsq_status dsq_outfile_commit(dsq_outfile *f, dsq_err *err);
/* Removes the temporary file and frees f; accepts NULL. */
void dsq_outfile_abort(dsq_outfile *f);

/* Whole-file helpers, both crash-safe through dsq_outfile. */
dsq_status dsq_write_file(const char *dir, const char *name, const void *buf, size_t n,
                          dsq_err *err);
dsq_status dsq_copy_file(const char *src_path, const char *dir, const char *name, dsq_err *err);

/* Reads a whole small file (configs, indexes) into a NUL-terminated buffer;
 * larger than max_bytes is an error. Caller frees *out. */
dsq_status dsq_read_small_file(const char *path, size_t max_bytes, char **out, size_t *len,
                               dsq_err *err);

/* A name that came from a file (a shard in an index, say) and is about to
 * become part of a path: non-empty, no '/' or '\\', no control characters,
 * not "." or "..", not hidden (dsq's own temporaries start with '.'). */
int dsq_name_is_safe(const char *name, size_t len);

/* snprintf into a fresh buffer: "dir/name". Returns NULL on allocation failure. */
char *dsq_path_join(const char *dir, const char *name);

/* xxHash64 of a whole file. */
dsq_status dsq_file_xxh64(const char *path, uint64_t *hash, uint64_t *size, dsq_err *err);

int dsq_is_dir(const char *path);

/* Output pre-flight, before any weight is read: the parent directory exists, is a directory and is
 * writable, and `path` is not an existing directory. The message names the path as the user gave it
 * ("PATH: no such directory 'DIR'", "PATH: is a directory", "PATH: permission denied").
 * @return DSQ_OK, DSQ_IO or DSQ_INVALID_ARG */
dsq_status dsq_check_out_file(const char *path, dsq_err *err);
/* Output directory pre-flight: absent with an existing writable parent (it will be created), or an
 * existing writable directory; *non_empty = 1 when it holds anything but dsq's own temporaries. */
dsq_status dsq_check_out_dir(const char *path, int *non_empty, dsq_err *err);
/* mkdir -p for one level: creates dir if missing; an existing directory is fine. */
dsq_status dsq_mkdir(const char *path, dsq_err *err);

#endif
