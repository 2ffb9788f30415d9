/* verify/gate.c: see gate.h. */
#include "verify/gate.h"

#include <stdio.h>
#include <string.h>

/* One row per check: its names and which way it fails. */
static const struct {
    const char *name, *key, *what;
    int is_min; /* 1: fails below the limit, 0: above */
} checks[DSQ_GATE_COUNT] = {
    [DSQ_GATE_PPL_RATIO] = {"max-ppl-ratio", "max_ppl_ratio", "ppl ratio", 0},
    [DSQ_GATE_KLD] = {"max-kld", "max_kld", "mean KLD", 0},
    [DSQ_GATE_KLD_P99] = {"max-kld-p99", "max_kld_p99", "p99 KLD", 0},
    [DSQ_GATE_TOP1] = {"min-top1", "min_top1", "top-1 agreement", 1},
};

const char *dsq_gate_name(dsq_gate_id id) {
    return checks[id].name;
}
const char *dsq_gate_key(dsq_gate_id id) {
    return checks[id].key;
}
const char *dsq_gate_what(dsq_gate_id id) {
    return checks[id].what;
}

void dsq_gate_init(dsq_gate *g) {
    for (int i = 0; i < DSQ_GATE_COUNT; i++)
        g->limit[i] = -1.0;
}

int dsq_gate_count(const dsq_gate *g) {
    int n = 0;
    for (int i = 0; i < DSQ_GATE_COUNT; i++)
        n += g->limit[i] >= 0;
    return n;
}

void dsq_gate_eval(const dsq_gate *g, const dsq_kld_result *r, dsq_gate_result *out) {
    memset(out, 0, sizeof *out);
    out->value[DSQ_GATE_PPL_RATIO] = r->ppl_ratio;
    out->value[DSQ_GATE_KLD] = r->kld_mean;
    out->value[DSQ_GATE_KLD_P99] = r->kld_p99;
    out->value[DSQ_GATE_TOP1] = r->top1;
    size_t ml = 0;
    for (int i = 0; i < DSQ_GATE_COUNT; i++) {
        const double lim = g->limit[i], v = out->value[i];
        if (!(lim >= 0))
            continue;
        if ((i == DSQ_GATE_KLD || i == DSQ_GATE_KLD_P99) && !r->exact)
            out->kld_is_bound = 1;
        /* written so that a NaN fails */
        const int ok = checks[i].is_min ? v >= lim : v <= lim;
        if (ok)
            continue;
        out->failed[i] = 1;
        out->n_failed++;
        if (ml < sizeof out->message)
            ml += (size_t)snprintf(out->message + ml, sizeof out->message - ml, "%s%s %.6f %s %s %g",
                                   ml ? "; " : "", checks[i].what, v, checks[i].is_min ? "<" : ">",
                                   checks[i].name, lim);
    }
    out->verdict = dsq_gate_count(g) == 0 ? DSQ_VERDICT_NONE
                   : out->n_failed > 0   ? DSQ_VERDICT_FAIL
                                         : DSQ_VERDICT_PASS;
}
