/* gguf_export/gguf_header.h: the header of each output file of a GGUF export: its
 * metadata (a GGUF input's KVs, or general.*, the architecture's {arch}.* keys and the
 * vocabulary for an HF input; then the keys llama-quantize re-sets and its imatrix
 * provenance keys), the split keys, and the tensor infos, in llama-quantize's order. */
#ifndef DSQ_GGUF_HEADER_H
#define DSQ_GGUF_HEADER_H

#include "formats/gguf.h"
#include "gguf_export/gguf_plan.h"

/* Adds to w the header of output file k of the plan (all metadata in the first). */
dsq_status dsq_qz_build_header(const dsq_qz_plan *p, dsq_gguf_writer *w, int k, dsq_err *err);

#endif
