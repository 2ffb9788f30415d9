/* stream/sink_st.c: see sink_st.h. */
#include "stream/sink_st.h"

#include <stdlib.h>
#include <string.h>

static const char *st_name(void *self, size_t f) {
    return ((dsq_sink_st *)self)->names[f];
}

static uint64_t st_size(void *self, size_t f) {
    return dsq_st_writer_file_size(((dsq_sink_st *)self)->writers[f]);
}

/* The prefix and the JSON are two pieces in the writer; the engine wants one
 * run of bytes, so they are joined here once per call. */
static dsq_status st_head(void *self, size_t f, const void **bytes, size_t *len, dsq_err *err) {
    dsq_sink_st *s = self;
    const char *header;
    size_t hlen;
    dsq_st_writer_head(s->writers[f], s->prefix[f], &header, &hlen);
    free(s->head);
    s->head = malloc(8 + hlen);
    if (s->head == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    memcpy(s->head, s->prefix[f], 8);
    memcpy(s->head + 8, header, hlen);
    *bytes = s->head;
    *len = 8 + hlen;
    return DSQ_OK;
}

static size_t st_n_items(void *self, size_t f) {
    return dsq_st_writer_count(((dsq_sink_st *)self)->writers[f]);
}

static void st_item(void *self, size_t f, size_t k, size_t *id, uint64_t *bytes, uint64_t *pad) {
    const dsq_st_writer *w = ((dsq_sink_st *)self)->writers[f];
    *id = dsq_st_writer_order(w, k);
    *bytes = dsq_st_writer_tensor_bytes(w, *id);
    *pad = 0;
}

dsq_status dsq_sink_st_init(dsq_sink_st *s, size_t n_files, dsq_st_writer **writers,
                            const char **names, dsq_err *err) {
    memset(s, 0, sizeof *s);
    s->prefix = calloc(n_files ? n_files : 1, sizeof *s->prefix);
    if (s->prefix == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    s->writers = writers;
    s->names = names;
    s->sink = (dsq_sink){.self = s,
                         .n_files = n_files,
                         .commit_together = 0,
                         .file_name = st_name,
                         .file_size = st_size,
                         .head = st_head,
                         .n_items = st_n_items,
                         .item = st_item};
    return DSQ_OK;
}

void dsq_sink_st_free(dsq_sink_st *s) {
    free(s->prefix);
    free(s->head);
    s->prefix = NULL;
    s->head = NULL;
}
