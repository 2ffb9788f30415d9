/* verify/model.h: a model ready for the reference forward pass: its config and
 * its weights as F32, read through a weight source (weights/source.h).
 *
 * Weights are held per layer, so a layer can be loaded, used for every
 * window and dropped again (the layer-streamed mode): dsq_model_open with
 * opts.lazy = 1 loads only the embeddings, final norm and output head, and
 * dsq_model_load_layer / dsq_model_unload_layer do the rest. Without lazy,
 * every layer is loaded on open. */
#ifndef DSQ_MODEL_H
#define DSQ_MODEL_H

#include <stdint.h>

#include "core/status.h"
#include "model/model_config.h"
#include "weights/source.h"

typedef struct dsq_model dsq_model;

typedef struct dsq_model_opts {
    int nthreads;              /* threads for loading and the forward pass; <= 0: all */
    int lazy;                  /* load no layer on open */
    dsq_wsource_opts source;   /* how the source reads (FP8 rounding) */
} dsq_model_opts;

/* Opens `path` (an HF checkpoint directory today) and loads its weights.
 * opts may be NULL. Checks every tensor of a loaded layer for presence and
 * shape, naming the first one that is wrong.
 * @return DSQ_OK; DSQ_IO/DSQ_FORMAT/DSQ_NOT_FOUND/DSQ_UNSUPPORTED from the
 *         source or the config; DSQ_NOMEM. */
dsq_status dsq_model_open(dsq_model **out, const char *path, const dsq_model_opts *opts,
                          dsq_err *err);
/* Takes ownership of ws (closed with the model, also on failure). */
dsq_status dsq_model_open_source(dsq_model **out, dsq_wsource *ws, const dsq_model_opts *opts,
                                 dsq_err *err);
void dsq_model_close(dsq_model *m); /* accepts NULL */

const dsq_model_config *dsq_model_get_config(const dsq_model *m);
int dsq_model_nthreads(const dsq_model *m);

/* Loads layer l's weights (no-op when loaded) / frees them (no-op when not). */
dsq_status dsq_model_load_layer(dsq_model *m, int64_t l, dsq_err *err);
void dsq_model_unload_layer(dsq_model *m, int64_t l);
int dsq_model_layer_loaded(const dsq_model *m, int64_t l);

/* The model's tokenizer, from its source (weights/source.h); *out owned. */
dsq_status dsq_model_tokenizer(const dsq_model *m, dsq_tokenizer **out, dsq_err *err);

/* Parameters of the model as the forward pass uses them (no MTP layers). */
uint64_t dsq_model_param_count(const dsq_model *m);

#endif
