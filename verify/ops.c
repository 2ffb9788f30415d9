/* verify/ops.c: RMSNorm, softmax, SiLU, RoPE (plain, linear, llama3, YaRN, a GGUF's
 * rope_freqs factors) and the MoE router. */
#include "verify/ops.h"

#include <math.h>

#include "verify/gemm.h"

void dsq_rmsnorm(float *y, const float *x, const float *w, int64_t d, double eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < d; i++)
        ss += (double)x[i] * (double)x[i];
    const float inv = (float)(1.0 / sqrt(ss / (double)d + eps));
    /* HF order: (x · rsqrt) first, then × weight */
    for (int64_t i = 0; i < d; i++)
        y[i] = w[i] * (x[i] * inv);
}

void dsq_softmax(float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) { /* nothing to attend to: all zero rather than NaN */
        for (int64_t i = 0; i < n; i++)
            x[i] = 0.0f;
        return;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

float dsq_silu(float z) {
    return z / (1.0f + expf(-z));
}

/* ---- RoPE ---- */

/* HF find_correction_dim: the rotary pair whose wavelength fits `rot` turns
 * into the original context. */
static double corr_dim(double rot, double dim, double base, double orig) {
    return dim * log(orig / (rot * 2.0 * M_PI)) / (2.0 * log(base));
}

void dsq_rope_yarn_range(const dsq_rope_config *c, int64_t *low, int64_t *high) {
    const double d = (double)c->dim;
    double lo = floor(corr_dim(c->beta_fast, d, c->theta, (double)c->orig_max_pos));
    double hi = ceil(corr_dim(c->beta_slow, d, c->theta, (double)c->orig_max_pos));
    if (lo < 0)
        lo = 0;
    if (hi > d - 1)
        hi = d - 1;
    *low = (int64_t)lo;
    *high = (int64_t)hi;
}

static double yarn_get_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

void dsq_rope_inv_freq(const dsq_rope_config *c, float *inv_freq, float *attn_factor) {
    const int64_t half = c->dim / 2;
    const float base = (float)c->theta, dimf = (float)c->dim;
    *attn_factor = 1.0f;
    for (int64_t i = 0; i < half; i++) {
        /* torch: base ** (arange(0, dim, 2).float() / dim), all F32 */
        const float pos_freq = powf(base, (float)(2 * i) / dimf);
        inv_freq[i] = 1.0f / pos_freq;
    }
    switch (c->type) {
    case DSQ_ROPE_DEFAULT:
        break;
    case DSQ_ROPE_LINEAR:
        for (int64_t i = 0; i < half; i++)
            inv_freq[i] /= (float)c->factor;
        break;
    case DSQ_ROPE_LLAMA3: {
        const double old = (double)c->orig_max_pos;
        const double low_wl = old / c->low_freq_factor, high_wl = old / c->high_freq_factor;
        for (int64_t i = 0; i < half; i++) {
            const double f = inv_freq[i], wl = 2.0 * M_PI / f;
            double out = wl > low_wl ? f / c->factor : f;
            if (!(wl < high_wl) && !(wl > low_wl)) {
                const double sm =
                    (old / wl - c->low_freq_factor) / (c->high_freq_factor - c->low_freq_factor);
                out = (1.0 - sm) * out / c->factor + sm * out;
            }
            inv_freq[i] = (float)out;
        }
        break;
    }
    case DSQ_ROPE_YARN: {
        int64_t lo, hi;
        dsq_rope_yarn_range(c, &lo, &hi);
        const float lof = (float)lo, hif = lo == hi ? (float)hi + 0.001f : (float)hi;
        for (int64_t i = 0; i < half; i++) {
            const float pos_freq = powf(base, (float)(2 * i) / dimf);
            const float extra = 1.0f / pos_freq;
            const float inter = 1.0f / ((float)c->factor * pos_freq);
            float ramp = ((float)i - lof) / (hif - lof);
            ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
            const float keep = 1.0f - ramp; /* HF inv_freq_extrapolation_factor */
            inv_freq[i] = inter * (1.0f - keep) + extra * keep;
        }
        /* HF _compute_yarn_parameters: attention_factor scales cos and sin;
         * DeepSeek configs give mscale == mscale_all_dim, so it is 1 and the
         * m² lives in the softmax scale instead. */
        if (c->attn_factor > 0.0)
            *attn_factor = (float)c->attn_factor;
        else if (c->mscale != 0.0 && c->mscale_all_dim != 0.0)
            *attn_factor = (float)(yarn_get_mscale(c->factor, c->mscale) /
                                   yarn_get_mscale(c->factor, c->mscale_all_dim));
        else
            *attn_factor = (float)yarn_get_mscale(c->factor, 1.0);
        break;
    }
    }
    /* ggml_rope_ext's freq_factors: theta_extrap = theta_base / freq_factor, per pair */
    if (c->n_freq_factors == half)
        for (int64_t i = 0; i < half; i++)
            inv_freq[i] /= c->freq_factors[i];
}

void dsq_rope_cos_sin(const float *inv_freq, int64_t half, float attn_factor, int64_t pos,
                      float *cs) {
    for (int64_t i = 0; i < half; i++) {
        const float ang = (float)pos * inv_freq[i];
        cs[i] = (float)cos((double)ang) * attn_factor;
        cs[half + i] = (float)sin((double)ang) * attn_factor;
    }
}

void dsq_rope_apply(float *x, int64_t dim, dsq_rope_layout layout, const float *cs) {
    const int64_t half = dim / 2;
    const float *cs_sin = cs + half;
    if (layout == DSQ_ROPE_PAIRS_ADJACENT) {
        for (int64_t i = 0; i < half; i++) {
            const float a = x[2 * i], b = x[2 * i + 1], c = cs[i], s = cs_sin[i];
            x[2 * i] = a * c - b * s;
            x[2 * i + 1] = a * s + b * c;
        }
    } else {
        for (int64_t i = 0; i < half; i++) {
            const float a = x[i], b = x[i + half], c = cs[i], s = cs_sin[i];
            x[i] = a * c - b * s;
            x[i + half] = b * c + a * s;
        }
    }
}

/* ---- attention ---- */

size_t dsq_attention_scratch(int64_t T, int64_t qk, int64_t vd) {
    return (size_t)T * (size_t)T + dsq_pmat_floats(T, qk) + dsq_pmat_floats(vd, T);
}

void dsq_attention(int64_t T, int64_t qk, int64_t vd, const float *Q, int64_t ldq, const float *K,
                   int64_t ldk, const float *V, int64_t ldv, float *O, int64_t ldo, float scale,
                   float *scratch) {
    float *sc = scratch; /* [T][T] scores, then probabilities */
    dsq_pmat Kp = dsq_pmat_view(sc + (size_t)T * (size_t)T, T, qk);
    dsq_pmat Vp = dsq_pmat_view(Kp.data + dsq_pmat_floats(T, qk), vd, T); /* Vᵀ [vd][T] */
    dsq_pmat_pack_rows(&Kp, 0, K, T, ldk);
    dsq_pmat_pack_cols(&Vp, V, ldv);
    /* Causal: rows [i0, i1) see positions < i1 only, so each block of rows
     * multiplies only that prefix of K and V. Inside the block the positions
     * a row cannot see are computed, then masked to probability 0, which adds
     * exact zeros to the output. */
    const int64_t RB = 64;
    for (int64_t i0 = 0; i0 < T; i0 += RB) {
        const int64_t i1 = i0 + RB < T ? i0 + RB : T;
        dsq_gemm_packed_part(i1 - i0, Q + i0 * ldq, ldq, &Kp, i1, qk, sc + i0 * T, T, 0, 1);
        for (int64_t t = i0; t < i1; t++) {
            float *row = sc + t * T;
            for (int64_t s = 0; s <= t; s++)
                row[s] *= scale;
            dsq_softmax(row, t + 1);
            for (int64_t s = t + 1; s < i1; s++)
                row[s] = 0.0f;
        }
        dsq_gemm_packed_part(i1 - i0, sc + i0 * T, T, &Vp, vd, i1, O + i0 * ldo, ldo, 0, 1);
    }
}

/* ---- MoE routing ---- */

void dsq_moe_route(const dsq_model_config *c, const float *logits, const float *bias,
                   int32_t *idx, float *w, float *scratch) {
    const int64_t E = c->n_experts, K = c->n_experts_used;
    float *s = scratch, *choice = scratch + E; /* [E] scores, [E] biased (or -inf: excluded) */
    if (c->scoring == DSQ_MOE_SIGMOID) {
        for (int64_t e = 0; e < E; e++)
            s[e] = (float)(1.0 / (1.0 + exp(-(double)logits[e])));
    } else {
        for (int64_t e = 0; e < E; e++)
            s[e] = logits[e];
        dsq_softmax(s, E);
    }
    for (int64_t e = 0; e < E; e++)
        choice[e] = bias != NULL ? s[e] + bias[e] : s[e];

    if (c->topk_method != DSQ_MOE_TOPK_GREEDY && c->n_group > 1 && c->topk_group < c->n_group) {
        const int64_t G = c->n_group, gs = E / G;
        /* group score: the best (max) or the sum of the best two (noaux_tc) */
        float gscore[DSQ_MOE_MAX_GROUPS];
        int keep[DSQ_MOE_MAX_GROUPS];
        const int64_t Gc = G <= DSQ_MOE_MAX_GROUPS ? G : DSQ_MOE_MAX_GROUPS; /* config checks */
        for (int64_t g = 0; g < Gc; g++) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int64_t e = g * gs; e < (g + 1) * gs; e++) {
                if (choice[e] > b1) {
                    b2 = b1;
                    b1 = choice[e];
                } else if (choice[e] > b2) {
                    b2 = choice[e];
                }
            }
            gscore[g] = c->topk_method == DSQ_MOE_TOPK_GROUP_TOP2SUM ? b1 + b2 : b1;
            keep[g] = 0;
        }
        for (int64_t r = 0; r < c->topk_group && r < Gc; r++) {
            int64_t best = -1;
            for (int64_t g = 0; g < Gc; g++)
                if (!keep[g] && (best < 0 || gscore[g] > gscore[best]))
                    best = g;
            keep[best] = 1;
        }
        for (int64_t g = 0; g < Gc; g++)
            if (!keep[g])
                for (int64_t e = g * gs; e < (g + 1) * gs; e++)
                    choice[e] = -INFINITY;
    }

    float sumf = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++)
            if (choice[e] != -INFINITY && (best < 0 || choice[e] > choice[best]))
                best = e;
        if (best < 0) { /* fewer allowed experts than K cannot happen with a valid config */
            idx[k] = 0;
            w[k] = 0.0f;
            continue;
        }
        idx[k] = (int32_t)best;
        w[k] = s[best];
        sumf += s[best];
        choice[best] = -INFINITY;
    }
    for (int64_t k = 0; k < K; k++) {
        if (c->norm_topk_prob)
            w[k] = w[k] / (sumf + 1e-20f);
        w[k] = w[k] * (float)c->routed_scaling;
    }
}
