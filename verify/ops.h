/* verify/ops.h: the small per-row operations of the forward pass, exposed so
 * that tests can check them by hand (specs/formats.md §8). All F32 in, F32
 * out; reductions that decide accuracy (RMSNorm's mean square) in double. */
#ifndef DSQ_VERIFY_OPS_H
#define DSQ_VERIFY_OPS_H

#include <stdint.h>

#include "core/status.h"
#include "model/model_config.h"

/* y = w ⊙ x / sqrt(mean(x²) + eps) over d values; y may alias x. */
void dsq_rmsnorm(float *y, const float *x, const float *w, int64_t d, double eps);

/* In place over n values, max subtracted; -INFINITY entries get 0. */
void dsq_softmax(float *x, int64_t n);

/* z·sigmoid(z) */
float dsq_silu(float z);

/* ---- RoPE ---- */

/* YaRN correction range (HF find_correction_range with truncation): the first
 * and last rotary pair index of the ramp. */
void dsq_rope_yarn_range(const dsq_rope_config *c, int64_t *low, int64_t *high);

/* inv_freq [c->dim / 2] and the factor cos/sin are multiplied by (YaRN's
 * attention_factor; 1 otherwise), as HF's rope init functions compute them
 * (F32 like torch); then divided by c->freq_factors when the config has them. */
void dsq_rope_inv_freq(const dsq_rope_config *c, float *inv_freq, float *attn_factor);

/* cos/sin of one position: cs [2][dim/2] (cos first), angle = pos·inv_freq in
 * F32, each scaled by attn_factor. */
void dsq_rope_cos_sin(const float *inv_freq, int64_t half, float attn_factor, int64_t pos,
                      float *cs);

/* Rotates one head's rope dims x [dim] in place with the cos/sin of its
 * position (cs from dsq_rope_cos_sin), pairs as `layout` says. */
void dsq_rope_apply(float *x, int64_t dim, dsq_rope_layout layout, const float *cs);

/* ---- attention (one window, one head) ---- */

/* Floats of scratch dsq_attention needs. */
size_t dsq_attention_scratch(int64_t T, int64_t qk, int64_t vd);

/* Causal attention over positions 0..T-1:
 *   O[t] = Σ_{s≤t} softmax_s(scale · Q[t]·K[s]) · V[s]
 * Q [T][qk], K [T][qk], V [T][vd], O [T][vd], each with its row stride.
 * Single-threaded (callers run heads in parallel); softmax in F32 after the
 * scale, as HF's eager attention does. */
void dsq_attention(int64_t T, int64_t qk, int64_t vd, const float *Q, int64_t ldq, const float *K,
                   int64_t ldk, const float *V, int64_t ldv, float *O, int64_t ldo, float scale,
                   float *scratch);

/* ---- MoE routing (one token) ---- */

/* From the router logits [E] and the correction bias [E] (NULL for none):
 * the K = n_experts_used chosen experts in idx (best biased score first) and
 * their weights w (from the unbiased scores, normalised when norm_topk_prob,
 * times routed_scaling_factor). scratch: [2·E] floats. Ties go to the lower
 * expert index. Experts of groups that are not kept are never chosen
 * (DeepSeek's -inf masking; HF's 0.0 masking differs only when every kept
 * candidate has a negative biased score). */
void dsq_moe_route(const dsq_model_config *c, const float *logits, const float *bias,
                   int32_t *idx, float *w, float *scratch);

#endif
