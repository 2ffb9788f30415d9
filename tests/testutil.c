/* tests/testutil.c: see testutil.h. */
#include "tests/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "verify/model.h"
#include "verify/ppl.h"

char *tu_shared_path(const char *rel) {
    const char *root = getenv("DSQ_SHARED");
    if (root == NULL || root[0] == '\0')
        root = "../shared";
    const size_t n = strlen(root) + strlen(rel) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", root, rel);
    if (access(p, F_OK) != 0)
        fail_msg("shared test data missing: %s (set DSQ_SHARED)", p);
    return p;
}

uint8_t *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    if (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)
        fail_msg("short read on %s", path);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

void tu_write_file(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    if (len > 0 && fwrite(buf, 1, len, f) != len)
        fail_msg("short write on %s", path);
    fclose(f);
}

char *tu_mkdtemp(void) {
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    const size_t n = strlen(tmp) + 32;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/dsq-test-XXXXXX", tmp);
    if (mkdtemp(p) == NULL)
        fail_msg("mkdtemp: %s", strerror(errno));
    return p;
}

void tu_rm_rf(const char *path) {
    const size_t n = strlen(path) + 16;
    char *cmd = malloc(n);
    assert_non_null(cmd);
    snprintf(cmd, n, "rm -rf '%s'", path);
    (void)tu_system(cmd);
    free(cmd);
}

int tu_system(const char *cmd) {
    const int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc))
        return -1;
    return WEXITSTATUS(rc);
}

const char *tu_dsq_bin(void) {
    const char *b = getenv("DSQ_BIN");
    return (b != NULL && b[0] != '\0') ? b : "./dsq";
}

int tu_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

char *tu_group_dir = NULL;

int tu_group_dir_setup(void **state) {
    (void)state;
    tu_group_dir = tu_mkdtemp();
    return 0;
}

int tu_group_dir_teardown(void **state) {
    (void)state;
    if (tu_group_dir != NULL)
        tu_rm_rf(tu_group_dir);
    free(tu_group_dir);
    tu_group_dir = NULL;
    return 0;
}

char *tu_group_path(const char *name) {
    const size_t n = strlen(tu_group_dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", tu_group_dir, name);
    return p;
}

dsq_gguf *tu_gguf_open(const char *path) {
    dsq_gguf *g = NULL;
    dsq_err err = {0};
    if (dsq_gguf_open(&g, path, &err) != DSQ_OK)
        fail_msg("%s: %s", path, err.text);
    return g;
}

const dsq_gguf_tensor *tu_gguf_tensor(const dsq_gguf *g, const char *name) {
    const int64_t i = dsq_gguf_find_tensor(g, name);
    if (i < 0)
        fail_msg("tensor %s missing", name);
    return dsq_gguf_tensor_at(g, i);
}

uint32_t tu_gguf_u32(const dsq_gguf *g, const char *key) {
    uint32_t v = 0;
    dsq_err err = {0};
    if (dsq_gguf_get_u32(g, key, &v, &err) != DSQ_OK)
        fail_msg("%s: %s", key, err.text);
    return v;
}

void tu_gguf_expect_str(const dsq_gguf *g, const char *key, const char *want) {
    const char *s;
    size_t n;
    dsq_err err = {0};
    if (dsq_gguf_get_str(g, key, &s, &n, &err) != DSQ_OK)
        fail_msg("%s: %s", key, err.text);
    if (n != strlen(want) || memcmp(s, want, n) != 0)
        fail_msg("%s = '%.*s', expected '%s'", key, (int)n, s, want);
}

double tu_ppl_of(const char *path, const int32_t *ids, int64_t n) {
    dsq_model_opts mo;
    memset(&mo, 0, sizeof mo);
    mo.nthreads = 2;
    dsq_model *m = NULL;
    dsq_err err = {0};
    if (dsq_model_open(&m, path, &mo, &err) != DSQ_OK)
        fail_msg("%s: %s", path, err.text);
    dsq_ppl_opts o;
    memset(&o, 0, sizeof o);
    o.n_ctx = 256;
    o.n_chunks = UNDER_SANITIZER ? 1 : 3;
    o.bos = dsq_model_get_config(m)->bos;
    dsq_ppl_result r;
    if (dsq_ppl_run(m, ids, n, &o, &r, NULL, &err) != DSQ_OK)
        fail_msg("%s: %s", path, err.text);
    dsq_model_close(m);
    return r.ppl;
}


char *tu_join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    assert_non_null(p);
    sprintf(p, "%s/%s", a, b);
    return p;
}

void tu_put(const char *dir, const char *name, const void *data, size_t len) {
    char *p = tu_join(dir, name);
    tu_write_file(p, data, len);
    free(p);
}

void tu_put_str(const char *dir, const char *name, const char *s) {
    tu_put(dir, name, s, strlen(s));
}

int32_t *tu_eval_tokens(int64_t *n) {
    char *p = tu_shared_path("data/tiny-models/eval.tokens.txt");
    int32_t *ids = NULL;
    dsq_err err = {0};
    if (dsq_tokens_read(p, &ids, n, &err) != DSQ_OK)
        fail_msg("%s: %s", p, err.text);
    free(p);
    return ids;
}
