/* stream/sink_st.h: safetensors shards as an output of the streaming engine.
 *
 * One dsq_st_writer per output file, laid out (tensors added, metadata set,
 * dsq_st_writer_layout called) by the driver; the sink hands the engine the
 * 8 + N header bytes and the tensors in the writer's layout order. An item's
 * id is the tensor's add index in its writer. Safetensors has no padding
 * between tensors: the header's own padding makes them aligned. */
#ifndef DSQ_SINK_ST_H
#define DSQ_SINK_ST_H

#include "formats/safetensors.h"
#include "stream/stream.h"

typedef struct dsq_sink_st {
    dsq_sink sink;           /* pass &x.sink to dsq_stream_run */
    dsq_st_writer **writers; /* [n_files], borrowed */
    const char **names;      /* [n_files], borrowed */
    uint8_t (*prefix)[8];    /* [n_files] */
    uint8_t *head;           /* the last head handed out */
} dsq_sink_st;

dsq_status dsq_sink_st_init(dsq_sink_st *s, size_t n_files, dsq_st_writer **writers,
                            const char **names, dsq_err *err);
void dsq_sink_st_free(dsq_sink_st *s);

#endif
