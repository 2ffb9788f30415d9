/* tests/test_fuzz_replay.c: every saved fuzz input, replayed without libFuzzer.
 *
 * Each harness in fuzz/ is compiled into this test (the harness source is
 * included, so its checks are not written twice) and fed every file of
 * fuzz/corpus/<name>/ (the seeds) and fuzz/regress/<name>/ (inputs that once
 * crashed). A harness signals a broken invariant by abort() or a trap, and
 * ASan/UBSan (make asan) report memory errors, so a regression shows up in
 * `make test` under gcc as well as under clang.
 *
 * Two conventions are in use: the safetensors, index, config, imatrix,
 * quantize vocabulary and tokenizer.model harnesses define dsq_fuzz_<name>() and keep LLVMFuzzerTestOneInput behind
 * #ifndef DSQ_FUZZ_REPLAY; the GGUF and tokenizer.json harnesses define only
 * LLVMFuzzerTestOneInput, which is renamed here as each is included (and the
 * GGUF one's own replay main() is kept out by leaving DSQ_FUZZ_REPLAY
 * undefined for it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testutil.h"

#define DSQ_FUZZ_REPLAY 1
#include "fuzz/fuzz_config_json.c"
#include "fuzz/fuzz_imatrix.c"
#include "fuzz/fuzz_qz_vocab.c"
#include "fuzz/fuzz_safetensors.c"
#include "fuzz/fuzz_spm_model.c"
#include "fuzz/fuzz_st_index.c"
#undef DSQ_FUZZ_REPLAY

#define LLVMFuzzerTestOneInput dsq_fuzz_gguf_entry
#include "fuzz/fuzz_gguf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput dsq_fuzz_tokenizer_json_entry
#include "fuzz/fuzz_tokenizer_json.c"
#undef LLVMFuzzerTestOneInput

typedef int (*entry_fn)(const uint8_t *data, size_t size);

/* The input being replayed, named on stderr if it kills the process. */
static char current[4096];

static void say_current(void) {
    static const char pre[] = "\ntest_fuzz_replay: died on input ";
    if (current[0] == '\0')
        return;
    (void)!write(2, pre, sizeof pre - 1);
    (void)!write(2, current, strlen(current));
    (void)!write(2, "\n", 1);
}

static void on_fatal(int sig) {
    say_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define HAVE_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define HAVE_SANITIZER 1
#endif
#endif
#ifdef HAVE_SANITIZER
void __sanitizer_set_death_callback(void (*callback)(void));
#endif

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Replays every regular file of dir (sorted, so runs are reproducible);
 * returns how many. A missing directory counts as empty. */
static size_t replay_dir(const char *dir, entry_fn fn) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof *names);
            assert_non_null(names);
        }
        names[n] = strdup(de->d_name);
        assert_non_null(names[n]);
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(current, sizeof current, "%s/%s", dir, names[i]);
        if (tu_file_exists(current)) {
            size_t len = 0;
            uint8_t *buf = tu_read_file(current, &len);
            fn(buf, len);
            free(buf);
            done++;
        }
        free(names[i]);
    }
    current[0] = '\0';
    free(names);
    return done;
}

static void replay(const char *name, entry_fn fn) {
    const char *root = getenv("DSQ_FUZZ_DIR");
    char corpus[1024], regress[1024];
    if (root == NULL || root[0] == '\0')
        root = "fuzz";
    snprintf(corpus, sizeof corpus, "%s/corpus/%s", root, name);
    snprintf(regress, sizeof regress, "%s/regress/%s", root, name);
    const size_t nc = replay_dir(corpus, fn);
    const size_t nr = replay_dir(regress, fn);
    printf("fuzz_%s: %zu seeds, %zu regression inputs replayed\n", name, nc, nr);
    if (nc == 0)
        fail_msg("%s: no seed inputs (run from the repository root, or set DSQ_FUZZ_DIR)",
                 corpus);
}

static void test_safetensors(void **state) {
    (void)state;
    replay("safetensors", dsq_fuzz_safetensors);
}

static void test_st_index(void **state) {
    (void)state;
    replay("st_index", dsq_fuzz_st_index);
}

static void test_config_json(void **state) {
    (void)state;
    replay("config_json", dsq_fuzz_config_json);
}

static void test_imatrix(void **state) {
    (void)state;
    replay("imatrix", dsq_fuzz_imatrix);
}

static void test_qz_vocab(void **state) {
    (void)state;
    replay("qz_vocab", dsq_fuzz_qz_vocab);
}

static void test_spm_model(void **state) {
    (void)state;
    replay("spm_model", dsq_fuzz_spm_model);
}

static void test_gguf(void **state) {
    (void)state;
    replay("gguf", dsq_fuzz_gguf_entry);
}

static void test_tokenizer_json(void **state) {
    (void)state;
    replay("tokenizer_json", dsq_fuzz_tokenizer_json_entry);
}

int main(void) {
    signal(SIGABRT, on_fatal);
    signal(SIGSEGV, on_fatal);
    signal(SIGILL, on_fatal);
    signal(SIGBUS, on_fatal);
    signal(SIGFPE, on_fatal);
#ifdef HAVE_SANITIZER
    __sanitizer_set_death_callback(say_current);
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors),
        cmocka_unit_test(test_st_index),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test(test_imatrix),
        cmocka_unit_test(test_qz_vocab),
        cmocka_unit_test(test_spm_model),
        cmocka_unit_test(test_gguf),
        cmocka_unit_test(test_tokenizer_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
