/* cli/main.c: `dsq <command> ...`, the dispatcher. The CLI is the only part of
 * dsq that prints to the user or decides exit codes (cli/cli.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const dsq_cli_command commands[] = {
    {"convert", dsq_cmd_convert, "convert a checkpoint (fp8 -> bf16)"},
    {"inspect", dsq_cmd_inspect, "list the tensors of a safetensors file or checkpoint"},
    {"quantize", dsq_cmd_quantize, "make a llama.cpp GGUF (quantized) from a checkpoint"},
    {"ppl", dsq_cmd_ppl, "perplexity of a model on a token file (llama.cpp's method)"},
    {"verify", dsq_cmd_verify, "check a model against a reference: ppl ratio, KLD, top-1"},
    {"check", dsq_cmd_check, "rehash an output directory against its dsq-manifest.json"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: dsq <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`dsq <command> --help` describes each command.\n"
                 "exit codes: 0 ok, 1 check failed, 2 usage, 3 bad input, 4 I/O, 5 internal\n");
}

int main(int argc, char **argv) {
    /* Past a file-size limit (ulimit -f), write(2) must fail with EFBIG so that
     * dsq can report it and clean up, instead of the process being killed. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return DSQ_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return DSQ_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("dsq %s\n", DSQ_VERSION);
        return DSQ_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "dsq: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return DSQ_EXIT_USAGE;
}
