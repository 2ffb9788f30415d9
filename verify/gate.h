/* verify/gate.h: the pass/fail decision of `dsq verify`, in the library so
 * that a program embedding dsq gets the same verdict as the command: the
 * thresholds, their evaluation against a comparison (verify/kld.h) and the
 * list of the checks that failed.
 *
 * A gate with no threshold has no verdict (DSQ_VERDICT_NONE), never a pass:
 * a gate that cannot fail would pass a different model (the tiny llama
 * against the tiny DeepSeek: ppl ratio 1.28, top-1 30%). Each threshold is
 * inclusive (ratio <= max passes, top-1 >= min passes); a NaN fails. */
#ifndef DSQ_GATE_H
#define DSQ_GATE_H

#include <stddef.h>

#include "verify/kld.h"

/* The checks, in the order they are evaluated and reported. */
typedef enum dsq_gate_id {
    DSQ_GATE_PPL_RATIO = 0, /* ppl(CAND) / ppl(REF) <= max */
    DSQ_GATE_KLD = 1,       /* mean KLD <= max */
    DSQ_GATE_KLD_P99 = 2,   /* 99th-percentile KLD <= max */
    DSQ_GATE_TOP1 = 3,      /* top-1 agreement >= min */
    DSQ_GATE_COUNT = 4,
} dsq_gate_id;

/* Thresholds; a negative value is "not given". */
typedef struct dsq_gate {
    double limit[DSQ_GATE_COUNT];
} dsq_gate;

/* What each check is called: the flag without its dashes ("max-kld"), the
 * JSON key ("max_kld"), the quantity ("mean KLD"). */
const char *dsq_gate_name(dsq_gate_id id);
const char *dsq_gate_key(dsq_gate_id id);
const char *dsq_gate_what(dsq_gate_id id);

void dsq_gate_init(dsq_gate *g); /* every threshold unset */
int dsq_gate_count(const dsq_gate *g); /* thresholds given */

typedef enum dsq_verdict {
    DSQ_VERDICT_NONE = 0, /* no threshold given: figures only */
    DSQ_VERDICT_PASS = 1, /* every given threshold holds */
    DSQ_VERDICT_FAIL = 2, /* at least one is crossed */
} dsq_verdict;

typedef struct dsq_gate_result {
    dsq_verdict verdict;
    double value[DSQ_GATE_COUNT];  /* the measured quantity of every check */
    int failed[DSQ_GATE_COUNT];    /* 1: given and crossed */
    int n_failed;
    /* a KLD threshold was checked against a lower bound (a top-K reference):
     * it is more lenient than it reads */
    int kld_is_bound;
    /* the crossed checks, "mean KLD 0.012 > max-kld 0.01; ...", or "" */
    char message[512];
} dsq_gate_result;

void dsq_gate_eval(const dsq_gate *g, const dsq_kld_result *r, dsq_gate_result *out);

#endif
