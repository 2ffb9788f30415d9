/* tests/testutil.h: helpers shared by the cmocka suites (linked into each). */
#ifndef DSQ_TESTUTIL_H
#define DSQ_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "formats/gguf.h"

/* 1 in the ASan/UBSan build, where the slow tests do less */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define UNDER_SANITIZER 1
/* The tiny models' evaluation tokens (data/tiny-models/eval.tokens.txt); caller frees. */
int32_t *tu_eval_tokens(int64_t *n);
/* Perplexity of model `path` (HF dir or GGUF) over ids: ctx 256, 3 windows
 * (1 under a sanitizer), 2 threads; fails the test on error. */
double tu_ppl_of(const char *path, const int32_t *ids, int64_t n);

#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
/* The tiny models' evaluation tokens (data/tiny-models/eval.tokens.txt); caller frees. */
int32_t *tu_eval_tokens(int64_t *n);
/* Perplexity of model `path` (HF dir or GGUF) over ids: ctx 256, 3 windows
 * (1 under a sanitizer), 2 threads; fails the test on error. */
double tu_ppl_of(const char *path, const int32_t *ids, int64_t n);

#endif

/* "$DSQ_SHARED/<rel>" (DSQ_SHARED defaults to ../shared). Fails the test,
 * loudly, when the file does not exist: CI always has ../shared. Caller frees. */
char *tu_shared_path(const char *rel);
/* Reads a whole file; fails the test on error. Caller frees. */
uint8_t *tu_read_file(const char *path, size_t *len);
/* Writes a whole file; fails the test on error. */
void tu_write_file(const char *path, const void *buf, size_t len);
/* "a/b"; caller frees. */
char *tu_join(const char *a, const char *b);
/* Writes dir/name (the data, or the string without its NUL); fails the test on error. */
void tu_put(const char *dir, const char *name, const void *data, size_t len);
void tu_put_str(const char *dir, const char *name, const char *s);
/* A fresh empty directory under $TMPDIR; caller frees and may tu_rm_rf it. */
char *tu_mkdtemp(void);
void tu_rm_rf(const char *path);
/* Runs a shell command line; returns its exit status (or -1). */
int tu_system(const char *cmd);
/* Path of the dsq binary under test ($DSQ_BIN, default ./dsq). */
const char *tu_dsq_bin(void);
int tu_file_exists(const char *path);

/* For suites that write files: a group setup/teardown pair giving the whole
 * group one fresh directory, tu_group_dir, removed afterwards. */
extern char *tu_group_dir;
int tu_group_dir_setup(void **state);
int tu_group_dir_teardown(void **state);
/* "tu_group_dir/name"; caller frees. */
char *tu_group_path(const char *name);

/* Opens a GGUF file or fails the test naming it. */
dsq_gguf *tu_gguf_open(const char *path);
/* The tensor `name` of g, or fails the test. */
const dsq_gguf_tensor *tu_gguf_tensor(const dsq_gguf *g, const char *name);
/* Key `key` of g as a UINT32, or fails the test naming the key. */
uint32_t tu_gguf_u32(const dsq_gguf *g, const char *key);
/* Fails the test unless string key `key` of g equals want. */
void tu_gguf_expect_str(const dsq_gguf *g, const char *key, const char *want);

/* The tiny models' evaluation tokens (data/tiny-models/eval.tokens.txt); caller frees. */
int32_t *tu_eval_tokens(int64_t *n);
/* Perplexity of model `path` (HF dir or GGUF) over ids: ctx 256, 3 windows
 * (1 under a sanitizer), 2 threads; fails the test on error. */
double tu_ppl_of(const char *path, const int32_t *ids, int64_t n);

#endif
