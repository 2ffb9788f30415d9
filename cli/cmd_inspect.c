/* cli/cmd_inspect.c: `dsq inspect PATH`: the tensors of a safetensors file or
 * checkpoint directory, with totals per dtype; --json for machines. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "formats/st_checkpoint.h"

static const char usage_text[] =
    "usage: dsq inspect PATH [--json]\n"
    "\n"
    "Lists every tensor of a safetensors file or a checkpoint directory (sharded\n"
    "through model.safetensors.index.json, or a single model.safetensors): name,\n"
    "dtype, shape, bytes and shard, then the totals per dtype. The whole file or\n"
    "checkpoint is validated first.\n"
    "\n"
    "options:\n"
    "  --json      print one JSON document on stdout instead of the table\n"
    "  -h, --help  this text\n";

typedef struct totals {
    size_t count[DSQ_DTYPE_COUNT];
    uint64_t bytes[DSQ_DTYPE_COUNT];
} totals;

static int print_json(const dsq_ckpt *ck, const char *path, const totals *t) {
    json_t *root = json_object(), *tensors = json_array(), *tot = json_object();
    json_object_set_new(root, "path", json_string(path));
    json_object_set_new(root, "format", json_string("safetensors"));
    json_t *shards = json_array();
    for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++) {
        const dsq_st *sh = dsq_ckpt_shard(ck, s);
        json_t *js = json_object(), *meta = json_object();
        json_object_set_new(js, "file", json_string(dsq_ckpt_shard_name(ck, s)));
        json_object_set_new(js, "bytes", json_integer((json_int_t)dsq_st_file_size(sh)));
        for (size_t m = 0; m < dsq_st_meta_count(sh); m++)
            json_object_set_new(meta, dsq_st_meta_key(sh, m), json_string(dsq_st_meta_value(sh, m)));
        json_object_set_new(js, "metadata", meta);
        json_array_append_new(shards, js);
        for (size_t i = 0; i < dsq_st_count(sh); i++) {
            const dsq_tensor_view *v = dsq_st_tensor(sh, i);
            json_t *jt = json_object(), *shape = json_array();
            for (int d = 0; d < v->ndim; d++)
                json_array_append_new(shape, json_integer(v->shape[d]));
            json_object_set_new(jt, "name", json_string(v->name));
            json_object_set_new(jt, "dtype", json_string(dsq_dtype_name(v->dtype)));
            json_object_set_new(jt, "shape", shape);
            json_object_set_new(jt, "bytes", json_integer((json_int_t)v->nbytes));
            json_object_set_new(jt, "shard", json_string(dsq_ckpt_shard_name(ck, s)));
            json_object_set_new(jt, "offset",
                                json_integer((json_int_t)dsq_st_tensor_offset(sh, i)));
            json_array_append_new(tensors, jt);
        }
    }
    uint64_t all = 0;
    for (int d = 0; d < DSQ_DTYPE_COUNT; d++) {
        if (t->count[d] == 0)
            continue;
        json_t *e = json_object();
        json_object_set_new(e, "count", json_integer((json_int_t)t->count[d]));
        json_object_set_new(e, "bytes", json_integer((json_int_t)t->bytes[d]));
        json_object_set_new(tot, dsq_dtype_name((dsq_dtype)d), e);
        all += t->bytes[d];
    }
    json_object_set_new(root, "shards", shards);
    json_object_set_new(root, "tensors", tensors);
    json_object_set_new(root, "totals", tot);
    json_object_set_new(root, "total_bytes", json_integer((json_int_t)all));
    json_object_set_new(root, "tensor_count", json_integer((json_int_t)dsq_ckpt_tensor_count(ck)));
    const int rc = json_dumpf(root, stdout, JSON_INDENT(2)) == 0 ? DSQ_EXIT_OK : DSQ_EXIT_IO;
    putchar('\n');
    json_decref(root);
    return rc;
}

int dsq_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return DSQ_EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "dsq inspect: unknown option '%s'\n%s", argv[i], usage_text);
            return DSQ_EXIT_USAGE;
        } else if (path == NULL) {
            path = argv[i];
        } else {
            fprintf(stderr, "dsq inspect: one PATH only\n%s", usage_text);
            return DSQ_EXIT_USAGE;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "dsq inspect: missing PATH\n%s", usage_text);
        return DSQ_EXIT_USAGE;
    }
    dsq_err err = {0};
    dsq_ckpt *ck = NULL;
    const dsq_status st = dsq_ckpt_open(&ck, path, &err);
    if (st != DSQ_OK)
        return dsq_cli_fail(st, &err);

    totals t;
    memset(&t, 0, sizeof t);
    for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++) {
        const dsq_st *sh = dsq_ckpt_shard(ck, s);
        for (size_t i = 0; i < dsq_st_count(sh); i++) {
            const dsq_tensor_view *v = dsq_st_tensor(sh, i);
            t.count[v->dtype]++;
            t.bytes[v->dtype] += v->nbytes;
        }
    }
    int rc = DSQ_EXIT_OK;
    if (json) {
        rc = print_json(ck, path, &t);
    } else {
        printf("%-60s %-8s %-20s %14s  %s\n", "NAME", "DTYPE", "SHAPE", "BYTES", "SHARD");
        for (size_t s = 0; s < dsq_ckpt_shard_count(ck); s++) {
            const dsq_st *sh = dsq_ckpt_shard(ck, s);
            for (size_t i = 0; i < dsq_st_count(sh); i++) {
                const dsq_tensor_view *v = dsq_st_tensor(sh, i);
                char shape[128];
                dsq_shape_format(v->shape, v->ndim, shape, sizeof shape);
                printf("%-60s %-8s %-20s %14" PRIu64 "  %s\n", v->name, dsq_dtype_name(v->dtype),
                       shape, v->nbytes, dsq_ckpt_shard_name(ck, s));
            }
        }
        printf("\n%-10s %8s %16s\n", "DTYPE", "TENSORS", "BYTES");
        uint64_t all = 0;
        size_t n = 0;
        for (int d = 0; d < DSQ_DTYPE_COUNT; d++) {
            if (t.count[d] == 0)
                continue;
            char h[32];
            dsq_format_bytes(t.bytes[d], h, sizeof h);
            printf("%-10s %8zu %16" PRIu64 "  (%s)\n", dsq_dtype_name((dsq_dtype)d), t.count[d],
                   t.bytes[d], h);
            all += t.bytes[d];
            n += t.count[d];
        }
        char h[32];
        dsq_format_bytes(all, h, sizeof h);
        printf("%-10s %8zu %16" PRIu64 "  (%s) in %zu file%s\n", "total", n, all, h,
               dsq_ckpt_shard_count(ck), dsq_ckpt_shard_count(ck) == 1 ? "" : "s");
    }
    dsq_ckpt_close(ck);
    return rc;
}
