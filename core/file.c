/* core/file.c: mmap reading and temp-then-rename writing. */
#include "core/file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/fault.h"

dsq_status dsq_map_open(dsq_map *m, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    struct stat sb;
    int fd = -1;
    m->data = NULL;
    m->size = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    DSQ_CHECK(fd >= 0, errno == ENOENT ? DSQ_NOT_FOUND : DSQ_IO, err, "%s: %s", path,
              strerror(errno));
    DSQ_CHECK(fstat(fd, &sb) == 0, DSQ_IO, err, "%s: %s", path, strerror(errno));
    DSQ_CHECK(S_ISREG(sb.st_mode), DSQ_IO, err, "%s: not a regular file", path);
    DSQ_CHECK((uint64_t)sb.st_size <= SIZE_MAX, DSQ_RANGE, err, "%s: too large to map", path);
    if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        DSQ_CHECK(p != MAP_FAILED, DSQ_IO, err, "%s: mmap: %s", path, strerror(errno));
        m->data = p;
        m->size = (size_t)sb.st_size;
    }
cleanup:
    if (fd >= 0)
        close(fd);
    return st;
}

void dsq_map_close(dsq_map *m) {
    if (m->data != NULL)
        munmap((void *)(uintptr_t)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

void dsq_map_release(const dsq_map *m, size_t off, size_t len) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (m->data == NULL || off >= m->size)
        return;
    if (len > m->size - off)
        len = m->size - off;
    /* only whole pages inside the range */
    size_t begin = (off + page - 1) / page * page;
    size_t end = (off + len) / page * page;
    if (off + len == m->size)
        end = (m->size + page - 1) / page * page;
    if (end > begin)
        madvise((void *)(uintptr_t)(m->data + begin), end - begin, MADV_DONTNEED);
}

struct dsq_outfile {
    int fd;
    char *tmp_path;
    char *final_path;
    const char *name; /* the file name part of final_path */
    uint64_t written;
    XXH64_state_t *hash;
    int no_hash;
};

int dsq_name_is_safe(const char *name, size_t len) {
    if (len == 0 || len > 255 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        const unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '/' || c == '\\')
            return 0;
    }
    return 1;
}

char *dsq_path_join(const char *dir, const char *name) {
    const size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

dsq_status dsq_outfile_open(dsq_outfile **out, const char *dir, const char *name, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_outfile *f = NULL;
    char *tmpl = NULL;
    *out = NULL;
    DSQ_CHECK(dsq_name_is_safe(name, strlen(name)), DSQ_INVALID_ARG, err,
              "'%s': unsafe output file name", name);
    f = calloc(1, sizeof *f);
    DSQ_CHECK(f != NULL, DSQ_NOMEM, err, "out of memory");
    f->fd = -1;
    const size_t n = strlen(dir) + strlen(name) + 32;
    tmpl = malloc(n);
    DSQ_CHECK(tmpl != NULL, DSQ_NOMEM, err, "out of memory");
    snprintf(tmpl, n, "%s/.%s.dsqtmp.XXXXXX", dir, name);
    f->final_path = dsq_path_join(dir, name);
    f->hash = XXH64_createState();
    DSQ_CHECK(f->final_path != NULL && f->hash != NULL, DSQ_NOMEM, err, "out of memory");
    f->name = f->final_path + strlen(dir) + 1;
    XXH64_reset(f->hash, 0);
    f->fd = mkostemp(tmpl, O_CLOEXEC);
    DSQ_CHECK(f->fd >= 0, DSQ_IO, err, "%s: cannot create: %s", f->final_path, strerror(errno));
    /* mkstemp makes 0600 files; outputs are ordinary files for their owner's group to read */
    {
        const mode_t mask = umask(0);
        umask(mask);
        fchmod(f->fd, 0666 & ~mask);
    }
    f->tmp_path = tmpl;
    tmpl = NULL;
    *out = f;
    f = NULL;
cleanup:
    free(tmpl);
    dsq_outfile_abort(f);
    return st;
}

dsq_status dsq_outfile_write(dsq_outfile *f, const void *buf, size_t n, dsq_err *err) {
    const uint8_t *p = buf;
    dsq__fault_point("write", f->name);
    if (!f->no_hash)
        XXH64_update(f->hash, buf, n);
    while (n > 0) {
        const ssize_t w = write(f->fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return dsq_err_set(err, DSQ_IO, "%s: write failed: %s", f->final_path,
                               strerror(errno));
        }
        p += w;
        n -= (size_t)w;
        f->written += (uint64_t)w;
    }
    return DSQ_OK;
}

uint64_t dsq_outfile_written(const dsq_outfile *f) {
    return f->written;
}

void dsq_outfile_no_hash(dsq_outfile *f) {
    f->no_hash = 1;
}

uint64_t dsq_outfile_xxh64(const dsq_outfile *f) {
    return XXH64_digest(f->hash);
}

dsq_status dsq_outfile_commit(dsq_outfile *f, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int fd = f->fd;
    f->fd = -1;
    /* close reports delayed write errors (NFS, quota): check it before rename */
    DSQ_CHECK(close(fd) == 0, DSQ_IO, err, "%s: write failed: %s", f->final_path,
              strerror(errno));
    dsq__fault_point("commit", f->name);
    /* rename replaces a symbolic link at final_path; it never writes through it */
    DSQ_CHECK(rename(f->tmp_path, f->final_path) == 0, DSQ_IO, err, "%s: rename failed: %s",
              f->final_path, strerror(errno));
    free(f->tmp_path);
    f->tmp_path = NULL;
cleanup:
    dsq_outfile_abort(f);
    return st;
}

void dsq_outfile_abort(dsq_outfile *f) {
    if (f == NULL)
        return;
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp_path != NULL)
        unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->final_path);
    if (f->hash != NULL)
        XXH64_freeState(f->hash);
    free(f);
}

dsq_status dsq_write_file(const char *dir, const char *name, const void *buf, size_t n,
                          dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_outfile *f = NULL;
    DSQ_TRY(dsq_outfile_open(&f, dir, name, err));
    DSQ_TRY(dsq_outfile_write(f, buf, n, err));
    st = dsq_outfile_commit(f, err);
    f = NULL;
cleanup:
    dsq_outfile_abort(f);
    return st;
}

dsq_status dsq_copy_file(const char *src_path, const char *dir, const char *name, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_map m = {0};
    dsq_outfile *f = NULL;
    DSQ_TRY(dsq_map_open(&m, src_path, err));
    DSQ_TRY(dsq_outfile_open(&f, dir, name, err));
    const size_t chunk = (size_t)64 << 20;
    for (size_t off = 0; off < m.size; off += chunk) {
        const size_t n = m.size - off < chunk ? m.size - off : chunk;
        DSQ_TRY(dsq_outfile_write(f, m.data + off, n, err));
        dsq_map_release(&m, off, n);
    }
    st = dsq_outfile_commit(f, err);
    f = NULL;
cleanup:
    dsq_outfile_abort(f);
    dsq_map_close(&m);
    return st;
}

dsq_status dsq_read_small_file(const char *path, size_t max_bytes, char **out, size_t *len,
                               dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_map m = {0};
    char *buf = NULL;
    *out = NULL;
    DSQ_TRY(dsq_map_open(&m, path, err));
    DSQ_CHECK(m.size <= max_bytes, DSQ_RANGE, err, "%s: %zu bytes, more than the %zu allowed",
              path, m.size, max_bytes);
    buf = malloc(m.size + 1);
    DSQ_CHECK(buf != NULL, DSQ_NOMEM, err, "out of memory");
    if (m.size > 0)
        memcpy(buf, m.data, m.size);
    buf[m.size] = '\0';
    *out = buf;
    if (len != NULL)
        *len = m.size;
    buf = NULL;
cleanup:
    free(buf);
    dsq_map_close(&m);
    return st;
}

dsq_status dsq_file_xxh64(const char *path, uint64_t *hash, uint64_t *size, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_map m = {0};
    DSQ_TRY(dsq_map_open(&m, path, err));
    XXH64_state_t *h = XXH64_createState();
    DSQ_CHECK(h != NULL, DSQ_NOMEM, err, "out of memory");
    XXH64_reset(h, 0);
    const size_t chunk = (size_t)64 << 20;
    for (size_t off = 0; off < m.size; off += chunk) {
        const size_t n = m.size - off < chunk ? m.size - off : chunk;
        XXH64_update(h, m.data + off, n);
        dsq_map_release(&m, off, n);
    }
    *hash = XXH64_digest(h);
    *size = m.size;
    XXH64_freeState(h);
cleanup:
    dsq_map_close(&m);
    return st;
}

int dsq_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

dsq_status dsq_mkdir(const char *path, dsq_err *err) {
    if (mkdir(path, 0777) == 0 || (errno == EEXIST && dsq_is_dir(path)))
        return DSQ_OK;
    return dsq_err_set(err, DSQ_IO, "%s: cannot create directory: %s", path, strerror(errno));
}

/* Pre-flight checks. Their messages start with the path exactly as the user
 * typed it: the command line is what the user will look at to fix it. */

/* A temporary of dsq_outfile: ".NAME.dsqtmp.XXXXXX". */
static int is_dsq_temp(const char *name) {
    return name[0] == '.' && strstr(name + 1, ".dsqtmp.") != NULL;
}

/* The directory that `path` (no trailing '/') would be created in, written
 * into buf: "." for a bare name, "/" for "/x". */
static void parent_of(const char *path, char *buf, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(buf, cap, ".");
    else if (slash == path)
        snprintf(buf, cap, "/");
    else
        snprintf(buf, cap, "%.*s", (int)(slash - path), path);
}

/* `shown` is what messages name; `dir` must exist, be a directory and let
 * this process create entries in it. */
static dsq_status check_writable_dir(const char *shown, const char *dir, int is_parent,
                                     dsq_err *err) {
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return is_parent ? dsq_err_set(err, DSQ_IO, "%s: no such directory '%s'", shown, dir)
                             : dsq_err_set(err, DSQ_IO, "%s: no such directory", shown);
        return dsq_err_set(err, DSQ_IO, "%s: %s", shown, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return is_parent ? dsq_err_set(err, DSQ_IO, "%s: '%s' is not a directory", shown, dir)
                         : dsq_err_set(err, DSQ_INVALID_ARG, "%s: not a directory", shown);
    /* effective ids: what open(2) and rename(2) will be judged by */
    if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0) {
        if (errno == EACCES || errno == EPERM)
            return dsq_err_set(err, DSQ_IO, "%s: permission denied", shown);
        return dsq_err_set(err, DSQ_IO, "%s: %s", shown, strerror(errno));
    }
    return DSQ_OK;
}

dsq_status dsq_check_out_file(const char *path, dsq_err *err) {
    struct stat sb;
    const size_t n = strlen(path);
    if (n == 0)
        return dsq_err_set(err, DSQ_INVALID_ARG, "empty output path");
    if (path[n - 1] == '/' || (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
        return dsq_err_set(err, DSQ_INVALID_ARG, "%s: is a directory", path);
    char *parent = malloc(n + 2);
    if (parent == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    parent_of(path, parent, n + 2);
    const dsq_status st = check_writable_dir(path, parent, 1, err);
    free(parent);
    return st;
}

/* 1 when dir holds an entry other than dsq's temporaries; -1 on error. */
static int dir_has_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int found = 0;
    for (const struct dirent *e; !found && (e = readdir(d)) != NULL;)
        found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                !is_dsq_temp(e->d_name);
    closedir(d);
    return found;
}

dsq_status dsq_check_out_dir(const char *path, int *non_empty, dsq_err *err) {
    dsq_status st = DSQ_OK;
    struct stat sb;
    char *trimmed = NULL, *parent = NULL;
    *non_empty = 0;
    size_t n = strlen(path);
    DSQ_CHECK(n > 0, DSQ_INVALID_ARG, err, "empty output directory");
    if (stat(path, &sb) == 0) {
        DSQ_TRY(check_writable_dir(path, path, 0, err));
        const int has = dir_has_entries(path);
        DSQ_CHECK(has >= 0, DSQ_IO, err, "%s: %s", path, strerror(errno));
        *non_empty = has;
        goto cleanup;
    }
    DSQ_CHECK(errno == ENOENT || errno == ENOTDIR, DSQ_IO, err, "%s: %s", path, strerror(errno));
    /* absent: its parent must take a new directory ("out/" names "out") */
    trimmed = strdup(path);
    parent = malloc(n + 2);
    DSQ_CHECK(trimmed != NULL && parent != NULL, DSQ_NOMEM, err, "out of memory");
    while (n > 1 && trimmed[n - 1] == '/')
        trimmed[--n] = '\0';
    parent_of(trimmed, parent, n + 2);
    DSQ_TRY(check_writable_dir(path, parent, 1, err));
cleanup:
    free(trimmed);
    free(parent);
    return st;
}
