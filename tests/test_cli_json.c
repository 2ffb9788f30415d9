/* tests/test_cli_json.c: what a machine reading dsq's --json gets, and what a terminal
 * shows of hostile names. Each case runs the dsq binary under test (popen), parses all of
 * its stdout with jansson (json_loadb refuses anything after the one document, so stdout
 * holds the document and nothing else) and checks members against a source that is not
 * dsq's own output:
 *   - convert (and --dry-run): the number of FP8 weights and shards of the input, read
 *     through formats/st_checkpoint; the plan's sizes against the files the real run wrote;
 *   - quantize (and --dry-run): the tensors and size of the GGUF written, read back through
 *     formats/gguf;
 *   - inspect of a safetensors file, a checkpoint directory and a GGUF: the tensor counts
 *     the readers give;
 *   - ppl: 89.832 on two windows of 256 of the tiny llama (the team's reference per-window
 *     NLLs 4.626348400785556 and 4.369537724728818 -> exp(mean), as tests/cli/ppl.sh);
 *   - verify of a model against itself: ratio 1, top-1 1, pass (by definition);
 *   - check of a fresh conversion: every file the directory holds listed "ok"; after one
 *     byte of a shard is flipped and tokenizer.json removed, exactly those two are named.
 * Human lines must then be on stderr, with or without -q. Last, `dsq inspect` of a
 * safetensors file and a GGUF whose names hold "\n" and "\x1b[31m" prints them escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/gguf.h"
#include "formats/st_checkpoint.h"
#include "tests/testutil.h"

#define FP8_MODEL "data/tiny-models/tiny-deepseek-v3-fp8"
#define LLAMA "data/tiny-models/tiny-llama"
#define TOKENS "data/tiny-models/eval.tokens.txt"

/* Runs `dsq ARGS` (ARGS already quoted); returns its stdout (caller frees) and exit status;
 * its stderr lands in tu_group_dir/err.txt. */
static char *run(const char *args, int *rc, size_t *len) {
    char *errf = tu_group_path("err.txt");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s 2> '%s'", tu_dsq_bin(), args, errf);
    free(errf);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        fail_msg("popen: %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (size_t got; (got = fread(buf + n, 1, cap - n, p)) > 0;) {
        n += got;
        if (n == cap) {
            buf = realloc(buf, cap *= 2);
            assert_non_null(buf);
        }
    }
    const int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    *len = n;
    return buf;
}

static char *err_text(void) {
    char *errf = tu_group_path("err.txt");
    size_t n = 0;
    char *t = (char *)tu_read_file(errf, &n);
    t = realloc(t, n + 1);
    t[n] = '\0';
    free(errf);
    return t;
}

/* Runs dsq ARGS expecting exit `want`; stdout must be exactly one JSON object. */
static json_t *run_json_rc(const char *args, int want) {
    int rc = 0;
    size_t n = 0;
    char *out = run(args, &rc, &n);
    if (rc != want) {
        char *e = err_text();
        fail_msg("dsq %s: exit %d, expected %d: %s", args, rc, want, e);
    }
    json_error_t je;
    json_t *j = json_loadb(out, n, 0, &je);
    if (j == NULL || !json_is_object(j))
        fail_msg("dsq %s: stdout is not one JSON object (%s at %d): %.400s", args, je.text,
                 je.position, out);
    free(out);
    return j;
}

static json_t *run_json(const char *args) {
    return run_json_rc(args, 0);
}

static json_int_t jint(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("member %s is not an integer", key);
    return json_integer_value(v);
}

static double jnum(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        fail_msg("member %s is not a number", key);
    return json_number_value(v);
}

static void expect_stderr_has(const char *what) {
    char *e = err_text();
    if (strstr(e, what) == NULL)
        fail_msg("stderr lacks '%s': %s", what, e);
    free(e);
}

static uint64_t file_size(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        fail_msg("%s: missing", path);
    return (uint64_t)sb.st_size;
}

/* convert: the summary counts the input's FP8 weights; with --dry-run, every file of the
 * plan with its source and the size the real run then writes. */
static void test_convert(void **state) {
    (void)state;
    char *in = tu_shared_path(FP8_MODEL), *out = tu_group_path("bf16"),
         *dry_out = tu_group_path("never");
    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_ckpt_open(&ck, in, &err), DSQ_OK);
    size_t n_fp8 = 0;
    for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++)
        for (size_t i = 0; i < dsq_st_count(dsq_ckpt_shard(ck, s)); i++)
            n_fp8 += dsq_st_tensor(dsq_ckpt_shard(ck, s), i)->dtype == DSQ_DTYPE_F8_E4M3;
    const size_t n_shards = dsq_ckpt_shard_count(ck);

    char args[4096];
    snprintf(args, sizeof args, "convert fp8 bf16 '%s' '%s' --dry-run --json", in, dry_out);
    json_t *plan = run_json(args);
    assert_true(json_is_true(json_object_get(plan, "dry_run")));
    assert_int_equal(jint(plan, "tensors_converted"), (json_int_t)n_fp8);
    assert_false(tu_file_exists(dry_out));
    expect_stderr_has("dry run: would write");
    const json_t *files = json_object_get(plan, "files");
    assert_true(json_is_array(files));

    snprintf(args, sizeof args, "convert fp8 bf16 '%s' '%s' --json", in, out);
    json_t *done = run_json(args);
    assert_int_equal(jint(done, "tensors_converted"), (json_int_t)n_fp8);
    assert_int_equal(jint(done, "shards_written"), (json_int_t)n_shards);
    assert_int_equal(jint(done, "bytes_planned"), jint(plan, "bytes_planned"));
    expect_stderr_has("converted ");

    /* each planned file exists after the run, with the planned size; the shards come from
     * the input's shards */
    size_t shards_seen = 0;
    uint64_t shard_bytes = 0;
    for (size_t i = 0; i < json_array_size(files); i++) {
        const json_t *f = json_array_get(files, i);
        const char *path = json_string_value(json_object_get(f, "path"));
        const json_t *src = json_object_get(f, "source");
        assert_non_null(path);
        assert_true(strncmp(path, dry_out, strlen(dry_out)) == 0);
        char *real = tu_join(out, path + strlen(dry_out) + 1);
        const json_t *b = json_object_get(f, "bytes");
        if (json_is_null(b)) { /* only the manifest, written at the end */
            assert_non_null(strstr(path, "dsq-manifest.json"));
        } else {
            if (file_size(real) != (uint64_t)json_integer_value(b))
                fail_msg("%s: planned %lld bytes, written %llu", path,
                         (long long)json_integer_value(b), (unsigned long long)file_size(real));
        }
        for (size_t s = 0; s < n_shards; s++) {
            const char *name = dsq_ckpt_shard_name(ck, s);
            const size_t nl = strlen(name), pl = strlen(path);
            if (pl > nl && strcmp(path + pl - nl, name) == 0 && path[pl - nl - 1] == '/') {
                assert_true(json_is_string(src));
                assert_non_null(strstr(json_string_value(src), name));
                shards_seen++;
                shard_bytes += (uint64_t)json_integer_value(b);
            }
        }
        free(real);
    }
    assert_int_equal(shards_seen, n_shards);
    assert_int_equal(shard_bytes, (uint64_t)jint(plan, "bytes_planned"));
    json_decref(plan);
    json_decref(done);
    dsq_ckpt_close(ck);
    free(in);
    free(out);
    free(dry_out);
}

/* quantize and its --dry-run: the counts and sizes of the GGUF written */
static void test_quantize(void **state) {
    (void)state;
    char *in = tu_shared_path(LLAMA), *out = tu_group_path("q8.gguf");
    char args[4096];
    snprintf(args, sizeof args, "quantize '%s' --type Q8_0 --dry-run --json", in);
    json_t *plan = run_json(args);
    snprintf(args, sizeof args, "quantize '%s' '%s' --type Q8_0 --json", in, out);
    json_t *done = run_json(args);
    expect_stderr_has("quantized ");
    dsq_gguf *g = tu_gguf_open(out);
    const json_int_t nt = (json_int_t)dsq_gguf_tensor_count(g);
    assert_int_equal(jint(done, "tensors"), nt);
    assert_int_equal(jint(done, "file_bytes"), (json_int_t)file_size(out));
    assert_string_equal(json_string_value(json_object_get(done, "ftype")), "Q8_0");
    assert_int_equal(jint(plan, "tensors"), nt);
    assert_int_equal(jint(plan, "file_bytes"), (json_int_t)file_size(out));
    const json_t *p = json_object_get(plan, "plan");
    assert_int_equal(json_array_size(p), (size_t)nt);
    for (size_t i = 0; i < json_array_size(p); i++) {
        const char *name = json_string_value(json_object_get(json_array_get(p, i), "name"));
        assert_non_null(name);
        (void)tu_gguf_tensor(g, name);
    }
    dsq_gguf_close(g);
    json_decref(plan);
    json_decref(done);
    free(in);
    free(out);
}

/* inspect of a safetensors file, a checkpoint directory and a GGUF */
static void test_inspect(void **state) {
    (void)state;
    char *dir = tu_shared_path(FP8_MODEL), *gguf = tu_group_path("f32.gguf"),
         *llama = tu_shared_path(LLAMA);
    char args[4096];
    snprintf(args, sizeof args, "quantize '%s' '%s' --type F32 -q", llama, gguf);
    int rc = 0;
    size_t n = 0;
    free(run(args, &rc, &n));
    assert_int_equal(rc, 0);

    dsq_ckpt *ck = NULL;
    dsq_err err = {0};
    assert_int_equal(dsq_ckpt_open(&ck, dir, &err), DSQ_OK);
    snprintf(args, sizeof args, "inspect '%s' --json", dir);
    json_t *j = run_json(args);
    assert_int_equal(jint(j, "tensor_count"), (json_int_t)dsq_ckpt_tensor_count(ck));
    assert_int_equal(json_array_size(json_object_get(j, "shards")), dsq_ckpt_shard_count(ck));
    json_decref(j);

    char *shard = tu_join(dir, dsq_ckpt_shard_name(ck, 0));
    snprintf(args, sizeof args, "inspect '%s' --json", shard);
    j = run_json(args);
    assert_int_equal(jint(j, "tensor_count"), (json_int_t)dsq_st_count(dsq_ckpt_shard(ck, 0)));
    json_decref(j);

    dsq_gguf *g = tu_gguf_open(gguf);
    snprintf(args, sizeof args, "inspect '%s' --json", gguf);
    j = run_json(args);
    assert_string_equal(json_string_value(json_object_get(j, "format")), "gguf");
    assert_int_equal(jint(j, "tensor_count"), dsq_gguf_tensor_count(g));
    assert_int_equal(jint(j, "kv_count"), dsq_gguf_kv_count(g));
    json_decref(j);
    dsq_gguf_close(g);
    dsq_ckpt_close(ck);
    free(shard);
    free(dir);
    free(gguf);
    free(llama);
}

/* ppl --json, with and without -q: the document on stdout, the result line on stderr */
static void test_ppl(void **state) {
    (void)state;
    char *m = tu_shared_path(LLAMA), *tok = tu_shared_path(TOKENS);
    char args[4096];
    for (int quiet = 0; quiet < 2; quiet++) {
        snprintf(args, sizeof args, "ppl '%s' --tokens '%s' --ctx 256 --chunks 2 --threads 2 "
                 "--json%s", m, tok, quiet ? " -q" : "");
        json_t *j = run_json(args);
        assert_float_equal(jnum(j, "ppl"), 89.832, 5e-4);
        assert_int_equal(jint(j, "ctx"), 256);
        assert_int_equal(jint(j, "n_chunks"), 2);
        assert_int_equal(jint(j, "n_scored"), 254); /* 2 windows x (256/2 - 1) */
        expect_stderr_has("PPL = 89.83");
        json_decref(j);
    }
    free(m);
    free(tok);
}

/* verify --json of a model against itself */
static void test_verify(void **state) {
    (void)state;
    char *m = tu_shared_path(LLAMA), *tok = tu_shared_path(TOKENS);
    char args[4096];
    snprintf(args, sizeof args, "verify --ref '%s' --model '%s' --tokens '%s' --ctx 128 "
             "--chunks 1 --threads 2 --max-ppl-ratio 1.0001 --json", m, m, tok);
    json_t *j = run_json(args);
    assert_float_equal(jnum(j, "ppl_ratio"), 1.0, 1e-12);
    assert_float_equal(jnum(j, "top1"), 1.0, 0);
    assert_true(json_is_true(json_object_get(j, "pass")));
    assert_true(json_is_object(json_object_get(j, "kld")));
    expect_stderr_has("PASS");
    json_decref(j);
    free(m);
    free(tok);
}

/* The status `dsq check --json` gives file `name`, or NULL when it is not listed. */
static const char *check_status(const json_t *j, const char *name) {
    const json_t *files = json_object_get(j, "files");
    for (size_t i = 0; i < json_array_size(files); i++) {
        const json_t *f = json_array_get(files, i);
        if (strcmp(json_string_value(json_object_get(f, "name")), name) == 0)
            return json_string_value(json_object_get(f, "status"));
    }
    return NULL;
}

static void test_check(void **state) {
    (void)state;
    char *in = tu_shared_path(FP8_MODEL), *out = tu_group_path("checked");
    char args[4096];
    snprintf(args, sizeof args, "convert fp8 bf16 -q '%s' '%s'", in, out);
    int rc = 0;
    size_t n = 0;
    free(run(args, &rc, &n));
    assert_int_equal(rc, 0);
    snprintf(args, sizeof args, "check '%s' --json", out);
    json_t *j = run_json_rc(args, 0);
    assert_int_equal(jint(j, "n_bad"), 0);
    assert_true(json_is_true(json_object_get(j, "complete")));
    const char *s1 = "model-00001-of-00002.safetensors";
    assert_string_equal(check_status(j, s1), "ok");
    assert_string_equal(check_status(j, "tokenizer.json"), "ok");
    json_decref(j);

    char *shard = tu_join(out, s1), *tokj = tu_join(out, "tokenizer.json");
    size_t len = 0;
    uint8_t *bytes = tu_read_file(shard, &len);
    bytes[len - 3] ^= 1; /* the end of a shard is tensor data */
    tu_write_file(shard, bytes, len);
    assert_int_equal(remove(tokj), 0);
    j = run_json_rc(args, 1);
    assert_int_equal(jint(j, "n_bad"), 2);
    assert_string_equal(check_status(j, s1), "mismatch");
    assert_string_equal(check_status(j, "tokenizer.json"), "missing");
    json_decref(j);
    free(bytes);
    free(shard);
    free(tokj);
    free(in);
    free(out);
}

/* The name every hostile case uses: a newline and a red-colour escape. */
static const char evil[] = "evil\nname\x1b[31m";
static const char evil_shown[] = "evil\\x0aname\\x1b[31m";

static void expect_escaped(const char *args) {
    int rc = 0;
    size_t n = 0;
    char *out = run(args, &rc, &n);
    assert_int_equal(rc, 0);
    if (memchr(out, 0x1b, n) != NULL)
        fail_msg("dsq %s: an escape byte reached the terminal", args);
    out = realloc(out, n + 1);
    out[n] = '\0';
    if (strstr(out, evil_shown) == NULL)
        fail_msg("dsq %s: '%s' not shown escaped: %s", args, evil_shown, out);
    free(out);
}

static void test_inspect_escapes_names(void **state) {
    (void)state;
    /* safetensors: one F32 tensor of 1 element named `evil` (JSON escapes \n and \u001b) */
    const char hdr[] = "{\"evil\\nname\\u001b[31m\":{\"dtype\":\"F32\",\"shape\":[1],"
                       "\"data_offsets\":[0,4]}}";
    const uint64_t hl = sizeof hdr - 1;
    uint8_t file[8 + sizeof hdr - 1 + 4];
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)(hl >> (8 * i));
    memcpy(file + 8, hdr, hl);
    memset(file + 8 + hl, 0, 4);
    tu_put(tu_group_dir, "evil.safetensors", file, sizeof file);
    char *st = tu_group_path("evil.safetensors");
    char args[4096];
    snprintf(args, sizeof args, "inspect '%s'", st);
    expect_escaped(args);

    /* GGUF: a key and a tensor named `evil` */
    dsq_gguf_writer *w = NULL;
    dsq_err err = {0};
    const int64_t ne[1] = {4};
    const float zero[4] = {0};
    assert_int_equal(dsq_gguf_writer_init(&w, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_u32(w, evil, 1, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_add_tensor(w, evil, DSQ_DTYPE_F32, 1, ne, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_begin(w, tu_group_dir, "evil.gguf", &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_write(w, zero, sizeof zero, &err), DSQ_OK);
    assert_int_equal(dsq_gguf_writer_commit(w, &err), DSQ_OK);
    dsq_gguf_writer_free(w);
    char *gg = tu_group_path("evil.gguf");
    snprintf(args, sizeof args, "inspect '%s'", gg);
    expect_escaped(args);
    /* and the JSON keeps the name exactly */
    snprintf(args, sizeof args, "inspect '%s' --json", gg);
    json_t *j = run_json(args);
    const json_t *t0 = json_array_get(json_object_get(j, "tensors"), 0);
    assert_string_equal(json_string_value(json_object_get(t0, "name")), evil);
    json_decref(j);
    free(st);
    free(gg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert),
        cmocka_unit_test(test_quantize),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_ppl),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_inspect_escapes_names),
    };
    return cmocka_run_group_tests(tests, tu_group_dir_setup, tu_group_dir_teardown);
}
