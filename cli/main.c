/* cli/main.c: `dsq <command> ...`, the dispatcher. The CLI is the only part of
 * dsq that prints to the user or decides exit codes (cli/cli.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const dsq_cli_command commands[] = {
    {"convert", dsq_cmd_convert, "convert a checkpoint (fp8 -> bf16)"},
    {"inspect", dsq_cmd_inspect, "list the tensors of a safetensors file, checkpoint or GGUF"},
    {"quantize", dsq_cmd_quantize, "make a llama.cpp GGUF (quantized) from a checkpoint or GGUF"},
    {"ppl", dsq_cmd_ppl, "perplexity of a model on a text or token file (llama.cpp's method)"},
    {"verify", dsq_cmd_verify, "check a model against a reference: ppl ratio, KLD, top-1"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(void) {
    printf("usage: dsq <command> [options]\n"
           "       dsq help <command>      the command's help (as dsq <command> --help)\n"
           "       dsq -V, --version       the version\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].summary);
    printf("\nEvery command takes --help, and --json for one JSON document on stdout (then\n"
           "every human line goes to stderr).\n"
           "exit codes: 0 ok, 1 check failed, 2 usage, 3 bad input, 4 I/O, 5 internal\n"
           "\nexamples:\n"
           "  dsq convert fp8 bf16 DeepSeek-V3/ DeepSeek-V3-bf16/\n"
           "  dsq quantize DeepSeek-V3/ ds-v3-Q4_K_M.gguf --type Q4_K_M\n"
           "  dsq verify --ref DeepSeek-V3/ --model ds-v3-Q4_K_M.gguf --text wiki.txt "
           "--max-kld 0.05\n");
}

static const dsq_cli_command *find(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv) {
    /* Past a file-size limit (ulimit -f), write(2) must fail with EFBIG so that
     * dsq can report it and clean up, instead of the process being killed. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2)
        return dsq_cli_usage(NULL, "no command given");
    const char *a = argv[1];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 ||
        (strcmp(a, "help") == 0 && argc == 2)) {
        usage();
        return DSQ_EXIT_OK;
    }
    if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
        printf("dsq %s\n", DSQ_VERSION);
        return DSQ_EXIT_OK;
    }
    if (strcmp(a, "help") == 0) {
        const dsq_cli_command *c = find(argv[2]);
        if (c == NULL || argc > 3)
            return argc > 3 ? dsq_cli_usage(NULL, "help takes one command")
                            : dsq_cli_usage(NULL, "unknown command '%s'", argv[2]);
        char *sub[] = {argv[2], (char *)"--help", NULL};
        return c->run(2, sub);
    }
    const dsq_cli_command *c = find(a);
    if (c == NULL)
        return dsq_cli_usage(NULL, "unknown command '%s'", a);
    return c->run(argc - 1, argv + 1);
}
