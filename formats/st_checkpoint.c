/* formats/st_checkpoint.c: sharded and single-file safetensors checkpoints. */
#include "formats/st_checkpoint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/json_prescan.h"

typedef struct name_ref {
    const char *name;
    size_t shard, tensor;
} name_ref;

struct dsq_ckpt {
    char *dir;
    int sharded;
    size_t n_shards;
    char **shard_names;
    dsq_st **shards;
    size_t n_names;
    name_ref *names; /* every tensor of every shard, sorted by name */
};

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_name_ref(const void *a, const void *b) {
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

static int has_suffix(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Parses the index text: the sorted, de-duplicated shard names, and the weight
 * map kept for the cross-check once the shards are open. */
static dsq_status parse_index(dsq_ckpt *ck, const char *text, size_t len, const char *index_path,
                              json_t **weight_map, json_t **root_out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    json_t *root = NULL;
    json_error_t jerr;
    const char **names = NULL;
    /* jansson lets a NUL byte end a number; JSON has no place for one */
    const char *nul = memchr(text, '\0', len);
    DSQ_CHECK(nul == NULL, DSQ_FORMAT, err, "%s: NUL byte at offset %zu", index_path,
              (size_t)(nul - text));
    {
        /* an index is two flat objects; bound the tree jansson would build */
        const dsq_json_limits lim = {DSQ_INDEX_MAX_DEPTH, DSQ_INDEX_MAX_ARRAY,
                                     DSQ_INDEX_MAX_MEMBERS};
        dsq_json_excess what;
        const size_t bad = dsq_json_prescan((const uint8_t *)text, len, &lim, &what);
        if (bad != len) {
            st = dsq_json_prescan_error(err, index_path, &lim, what, bad);
            goto cleanup;
        }
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    DSQ_CHECK(root != NULL, DSQ_FORMAT, err, "%s: %s (line %d)", index_path, jerr.text, jerr.line);
    json_t *wm = json_object_get(root, "weight_map");
    DSQ_CHECK(json_is_object(root) && json_is_object(wm), DSQ_FORMAT, err,
              "%s: no \"weight_map\" object", index_path);
    const size_t n = json_object_size(wm);
    names = calloc(n ? n : 1, sizeof *names);
    DSQ_CHECK(names != NULL, DSQ_NOMEM, err, "out of memory");
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach(wm, key, val) {
        DSQ_CHECK(json_is_string(val), DSQ_FORMAT, err, "%s: weight_map[\"%s\"] is not a string",
                  index_path, key);
        const char *shard = json_string_value(val);
        DSQ_CHECK(dsq_name_is_safe(shard, json_string_length(val)) &&
                      strlen(shard) == json_string_length(val),
                  DSQ_FORMAT, err,
                  /* names cut at 128 bytes: a huge one must not push the reason out */
                  "%s: tensor '%.128s': shard name '%.128s' is not a plain file name "
                  "(refusing paths)",
                  index_path, key, shard);
        DSQ_CHECK(has_suffix(shard, ".safetensors"), DSQ_FORMAT, err,
                  "%s: tensor '%s': shard '%s' is not a .safetensors file", index_path, key, shard);
        names[i++] = shard;
    }
    qsort(names, n, sizeof *names, cmp_str_ptr);
    ck->shard_names = calloc(n ? n : 1, sizeof *ck->shard_names);
    DSQ_CHECK(ck->shard_names != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && strcmp(names[k], names[k - 1]) == 0)
            continue;
        ck->shard_names[ck->n_shards] = strdup(names[k]);
        DSQ_CHECK(ck->shard_names[ck->n_shards] != NULL, DSQ_NOMEM, err, "out of memory");
        ck->n_shards++;
    }
    *weight_map = wm;
    *root_out = root;
    root = NULL;
cleanup:
    free(names);
    json_decref(root);
    return st;
}

static dsq_status read_index(dsq_ckpt *ck, const char *index_path, json_t **weight_map,
                             json_t **root_out, dsq_err *err) {
    dsq_status st = DSQ_OK;
    char *text = NULL;
    size_t len = 0;
    DSQ_TRY(dsq_read_small_file(index_path, DSQ_INDEX_MAX_BYTES, &text, &len, err));
    DSQ_TRY(parse_index(ck, text, len, index_path, weight_map, root_out, err));
cleanup:
    free(text);
    return st;
}

dsq_status dsq_ckpt_index_parse(const char *text, size_t len, const char *label,
                                size_t *n_shards, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_ckpt *ck = NULL;
    json_t *root = NULL, *wm = NULL;
    *n_shards = 0;
    ck = calloc(1, sizeof *ck);
    DSQ_CHECK(ck != NULL, DSQ_NOMEM, err, "out of memory");
    DSQ_TRY(parse_index(ck, text, len, label ? label : "<memory>", &wm, &root, err));
    *n_shards = ck->n_shards;
cleanup:
    json_decref(root);
    dsq_ckpt_close(ck);
    return st;
}

static size_t shard_index(const dsq_ckpt *ck, const char *name) {
    const char **hit = bsearch(&name, ck->shard_names, ck->n_shards, sizeof *ck->shard_names,
                               cmp_str_ptr);
    return hit ? (size_t)(hit - (const char **)ck->shard_names) : (size_t)-1;
}

dsq_status dsq_ckpt_open(dsq_ckpt **out, const char *path, dsq_err *err) {
    dsq_status st = DSQ_OK;
    dsq_ckpt *ck = NULL;
    char *index_path = NULL, *shard_path = NULL;
    json_t *root = NULL, *wm = NULL;
    *out = NULL;

    ck = calloc(1, sizeof *ck);
    DSQ_CHECK(ck != NULL, DSQ_NOMEM, err, "out of memory");
    if (dsq_is_dir(path)) {
        ck->dir = strdup(path);
        index_path = dsq_path_join(path, DSQ_INDEX_JSON);
        DSQ_CHECK(ck->dir && index_path, DSQ_NOMEM, err, "out of memory");
        dsq_map probe = {0};
        dsq_err perr = {0};
        if (dsq_map_open(&probe, index_path, &perr) == DSQ_OK) {
            dsq_map_close(&probe);
            ck->sharded = 1;
            DSQ_TRY(read_index(ck, index_path, &wm, &root, err));
        } else {
            shard_path = dsq_path_join(path, "model.safetensors");
            DSQ_CHECK(shard_path != NULL, DSQ_NOMEM, err, "out of memory");
            DSQ_CHECK(dsq_map_open(&probe, shard_path, &perr) == DSQ_OK, DSQ_NOT_FOUND, err,
                      "%s: no %s and no model.safetensors", path, DSQ_INDEX_JSON);
            dsq_map_close(&probe);
            ck->shard_names = calloc(1, sizeof *ck->shard_names);
            DSQ_CHECK(ck->shard_names != NULL, DSQ_NOMEM, err, "out of memory");
            ck->shard_names[0] = strdup("model.safetensors");
            DSQ_CHECK(ck->shard_names[0] != NULL, DSQ_NOMEM, err, "out of memory");
            ck->n_shards = 1;
        }
    } else {
        /* a single file: split into directory and name */
        const char *slash = strrchr(path, '/');
        ck->dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
        ck->shard_names = calloc(1, sizeof *ck->shard_names);
        DSQ_CHECK(ck->dir && ck->shard_names, DSQ_NOMEM, err, "out of memory");
        ck->shard_names[0] = strdup(slash ? slash + 1 : path);
        DSQ_CHECK(ck->shard_names[0] != NULL, DSQ_NOMEM, err, "out of memory");
        ck->n_shards = 1;
    }

    ck->shards = calloc(ck->n_shards ? ck->n_shards : 1, sizeof *ck->shards);
    DSQ_CHECK(ck->shards != NULL, DSQ_NOMEM, err, "out of memory");
    size_t total = 0;
    for (size_t i = 0; i < ck->n_shards; i++) {
        free(shard_path);
        shard_path = dsq_path_join(ck->dir, ck->shard_names[i]);
        DSQ_CHECK(shard_path != NULL, DSQ_NOMEM, err, "out of memory");
        DSQ_TRY(dsq_st_open(&ck->shards[i], shard_path, err));
        total += dsq_st_count(ck->shards[i]);
    }

    ck->names = calloc(total ? total : 1, sizeof *ck->names);
    DSQ_CHECK(ck->names != NULL, DSQ_NOMEM, err, "out of memory");
    for (size_t i = 0; i < ck->n_shards; i++) {
        for (size_t t = 0; t < dsq_st_count(ck->shards[i]); t++) {
            name_ref *r = &ck->names[ck->n_names++];
            r->name = dsq_st_tensor(ck->shards[i], t)->name;
            r->shard = i;
            r->tensor = t;
        }
    }
    qsort(ck->names, ck->n_names, sizeof *ck->names, cmp_name_ref);
    for (size_t k = 1; k < ck->n_names; k++) {
        DSQ_CHECK(strcmp(ck->names[k].name, ck->names[k - 1].name) != 0, DSQ_FORMAT, err,
                  "%s: tensor '%s' is in two shards (%s and %s)", ck->dir, ck->names[k].name,
                  ck->shard_names[ck->names[k - 1].shard], ck->shard_names[ck->names[k].shard]);
    }

    if (wm != NULL) {
        const char *key;
        json_t *val;
        json_object_foreach(wm, key, val) {
            size_t sh, ti;
            const dsq_tensor_view *v = dsq_ckpt_find(ck, key, &sh, &ti);
            const size_t want = shard_index(ck, json_string_value(val));
            DSQ_CHECK(v != NULL && sh == want, DSQ_FORMAT, err,
                      "%s: the index puts tensor '%s' in %s, but it is not there", ck->dir, key,
                      json_string_value(val));
        }
    }

    *out = ck;
    ck = NULL;
cleanup:
    json_decref(root);
    free(index_path);
    free(shard_path);
    dsq_ckpt_close(ck);
    return st;
}

void dsq_ckpt_close(dsq_ckpt *ck) {
    if (ck == NULL)
        return;
    for (size_t i = 0; i < ck->n_shards; i++) {
        if (ck->shards != NULL)
            dsq_st_close(ck->shards[i]);
        free(ck->shard_names[i]);
    }
    free(ck->shards);
    free(ck->shard_names);
    free(ck->names);
    free(ck->dir);
    free(ck);
}

const char *dsq_ckpt_dir(const dsq_ckpt *ck) {
    return ck->dir;
}

int dsq_ckpt_is_sharded(const dsq_ckpt *ck) {
    return ck->sharded;
}

size_t dsq_ckpt_shard_count(const dsq_ckpt *ck) {
    return ck->n_shards;
}

const char *dsq_ckpt_shard_name(const dsq_ckpt *ck, size_t i) {
    return i < ck->n_shards ? ck->shard_names[i] : NULL;
}

const dsq_st *dsq_ckpt_shard(const dsq_ckpt *ck, size_t i) {
    return i < ck->n_shards ? ck->shards[i] : NULL;
}

const dsq_tensor_view *dsq_ckpt_find(const dsq_ckpt *ck, const char *name, size_t *shard,
                                     size_t *index_in_shard) {
    const name_ref key = {name, 0, 0};
    const name_ref *r = bsearch(&key, ck->names, ck->n_names, sizeof *ck->names, cmp_name_ref);
    if (r == NULL)
        return NULL;
    if (shard != NULL)
        *shard = r->shard;
    if (index_in_shard != NULL)
        *index_in_shard = r->tensor;
    return dsq_st_tensor(ck->shards[r->shard], r->tensor);
}

size_t dsq_ckpt_tensor_count(const dsq_ckpt *ck) {
    return ck->n_names;
}
