/* verify/forward.c: embeddings, llama GQA attention, DeepSeek MLA (naive form),
 * dense SwiGLU FFN, MoE, final norm and output head, over a batch of windows.
 *
 * Layout: token row i = window · n_ctx + position, for every [N][...] buffer
 * (N = n_seq · n_ctx). Per layer (specs/formats.md §8.3):
 *   h   = x + Attn(RMSNorm(x))
 *   x'  = h + FFN(RMSNorm(h))          FFN = dense MLP or MoE
 * with each block's output computed whole before the residual add (HF order). */
#include "verify/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"
#include "verify/gemm.h"
#include "verify/model_internal.h"
#include "verify/ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

struct dsq_fwd {
    const dsq_model *m;
    const dsq_model_config *c;
    int64_t S, T, N;  /* windows, tokens per window, S·T */
    int nt;           /* threads */
    dsq_hook_fn hook;
    void *hook_user;
    int embedded;

    float *x;     /* [N][D] residual stream */
    float *xn;    /* [N][D] normed block input */
    float *q;     /* [N][H·qk] queries (rope part rotated in place) */
    float *k;     /* llama: [N][Hkv·hd] keys; MLA: [N][C+R] kv_a output (k_pe rotated) */
    float *v;     /* llama: [N][Hkv·hd] values; MLA: [N][H·(nope+v)] kv_b output */
    float *cq;    /* MLA with q LoRA: [N][qr] */
    float *ckv;   /* MLA: [N][C] normed latent */
    float *att;   /* [N][H·vd] attention output, input of o_proj */
    float *y;     /* [N][D] block output */
    float *y2;    /* [N][D] shared-expert output */
    float *g, *u; /* [N][Fmax] FFN gate / up (then the SwiGLU product in g) */
    float *rlog;  /* [N][E] router logits */
    int32_t *ridx;  /* [N][K] chosen experts */
    float *rw;      /* [N][K] their weights */
    int32_t *etok;  /* [N·K] tokens grouped by expert */
    float *ew;      /* [N·K] their weights */
    int64_t *eoff;  /* [E+1] group offsets into etok */
    float *xe;      /* [N][D] gathered expert input */
    float *ye;      /* [N][D] expert output */
    float *rscr;    /* [nt][2E] router scratch */
    float *rope_cs; /* [T][rope_dim]: cos [rope_dim/2] then sin [rope_dim/2] per position */
    float *ascr;    /* [nt][ascr_per]: dsq_attention's scratch, then MLA's K_h [T][qk] */
    size_t ascr_per;
    size_t ascr_kh; /* offset of K_h in a thread's scratch */

    double t_gemm, t_total, t_attn, flop;
};

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* C [m][W.n_out] = A [m][W.n_in] · Wᵀ */
static void linear(dsq_fwd *f, int64_t m, const float *A, const dsq__linear *W, float *C) {
    const double t0 = dsq_now();
    dsq_gemm_packed(m, A, W->n_in, &W->w, C, W->n_out, 0, f->nt);
    f->t_gemm += dsq_now() - t0;
    f->flop += 2.0 * (double)m * (double)W->n_out * (double)W->n_in;
}

static dsq_status hook(dsq_fwd *f, int64_t layer, int64_t expert, const char *w0, const char *w1,
                       const char *w2, const float *x, int64_t rows, int64_t n_in,
                       const int32_t *tok, const float *rw, dsq_err *err) {
    if (f->hook == NULL || rows == 0)
        return DSQ_OK;
    const char *names[3] = {w0, w1, w2};
    const dsq_hook_event ev = {layer, expert, names, w2 ? 3 : w1 ? 2 : 1, x, rows, n_in, 0, tok,
                               rw};
    return f->hook(f->hook_user, &ev, err);
}

static void *alloc_f(size_t n, size_t elem, int *ok) {
    void *p = calloc(n ? n : 1, elem);
    if (p == NULL)
        *ok = 0;
    return p;
}

void dsq_fwd_free(dsq_fwd *f) {
    if (f == NULL)
        return;
    void *bufs[] = {f->x,  f->xn,  f->q,    f->k,    f->v,  f->cq,   f->ckv,    f->att,
                    f->y,  f->y2,  f->g,    f->u,    f->rlog, f->ridx, f->rw,   f->etok,
                    f->ew, f->eoff, f->xe,  f->ye,   f->rscr, f->rope_cs, f->ascr};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(f);
}

dsq_status dsq_fwd_init(dsq_fwd **out, const dsq_model *m, int64_t n_seq, int64_t n_ctx,
                        const dsq_fwd_opts *opts, dsq_err *err) {
    dsq_status st = DSQ_OK;
    *out = NULL;
    const dsq_model_config *c = dsq_model_get_config(m);
    if (n_seq < 1 || n_ctx < 1 || n_seq > (1 << 20) || n_ctx > (1 << 24) ||
        n_seq * n_ctx > ((int64_t)1 << 30))
        return dsq_err_set(err, DSQ_INVALID_ARG, "bad batch: %lld windows of %lld tokens",
                           (long long)n_seq, (long long)n_ctx);
    dsq_fwd *f = calloc(1, sizeof *f);
    if (f == NULL)
        return dsq_err_set(err, DSQ_NOMEM, "out of memory");
    f->m = m;
    f->c = c;
    f->S = n_seq;
    f->T = n_ctx;
    f->N = n_seq * n_ctx;
    f->nt = opts != NULL && opts->nthreads > 0 ? opts->nthreads : dsq_model_nthreads(m);
    f->hook = opts != NULL ? opts->hook : NULL;
    f->hook_user = opts != NULL ? opts->hook_user : NULL;

    const size_t N = (size_t)f->N, D = (size_t)c->dim, H = (size_t)c->n_heads;
    const int mla = c->arch == DSQ_ARCH_DEEPSEEK_V3;
    const size_t qk = (size_t)dsq_model_config_qk_dim(c);
    const size_t vd = mla ? (size_t)c->v_head_dim : (size_t)c->head_dim;
    size_t fmax = 0;
    for (int64_t l = 0; l < c->n_layers; l++)
        if (!dsq_model_config_layer_is_moe(c, l) && (size_t)c->ffn_dim > fmax)
            fmax = (size_t)c->ffn_dim;
    if (c->n_experts > 0) {
        const size_t sh = (size_t)(c->n_shared_experts * c->moe_ffn_dim);
        fmax = fmax > (size_t)c->moe_ffn_dim ? fmax : (size_t)c->moe_ffn_dim;
        fmax = fmax > sh ? fmax : sh;
    }
    int ok = 1;
    f->x = alloc_f(N * D, sizeof(float), &ok);
    f->xn = alloc_f(N * D, sizeof(float), &ok);
    f->y = alloc_f(N * D, sizeof(float), &ok);
    f->q = alloc_f(N * H * qk, sizeof(float), &ok);
    f->att = alloc_f(N * H * vd, sizeof(float), &ok);
    f->g = alloc_f(N * fmax, sizeof(float), &ok);
    f->u = alloc_f(N * fmax, sizeof(float), &ok);
    if (mla) {
        f->k = alloc_f(N * (size_t)(c->kv_lora_rank + c->qk_rope_dim), sizeof(float), &ok);
        f->v = alloc_f(N * H * (size_t)(c->qk_nope_dim + c->v_head_dim), sizeof(float), &ok);
        f->ckv = alloc_f(N * (size_t)c->kv_lora_rank, sizeof(float), &ok);
        if (c->q_lora_rank > 0)
            f->cq = alloc_f(N * (size_t)c->q_lora_rank, sizeof(float), &ok);
    } else {
        f->k = alloc_f(N * (size_t)c->n_kv_heads * qk, sizeof(float), &ok);
        f->v = alloc_f(N * (size_t)c->n_kv_heads * vd, sizeof(float), &ok);
    }
    if (c->n_experts > 0) {
        const size_t E = (size_t)c->n_experts, K = (size_t)c->n_experts_used;
        f->y2 = alloc_f(N * D, sizeof(float), &ok);
        f->rlog = alloc_f(N * E, sizeof(float), &ok);
        f->ridx = alloc_f(N * K, sizeof(int32_t), &ok);
        f->rw = alloc_f(N * K, sizeof(float), &ok);
        f->etok = alloc_f(N * K, sizeof(int32_t), &ok);
        f->ew = alloc_f(N * K, sizeof(float), &ok);
        f->eoff = alloc_f(E + 1, sizeof(int64_t), &ok);
        f->xe = alloc_f(N * D, sizeof(float), &ok);
        f->ye = alloc_f(N * D, sizeof(float), &ok);
        f->rscr = alloc_f((size_t)f->nt * 2 * E, sizeof(float), &ok);
    }
    const size_t rd = (size_t)c->rope.dim, T = (size_t)f->T;
    f->rope_cs = alloc_f(T * rd, sizeof(float), &ok);
    f->ascr_kh = dsq_attention_scratch(f->T, (int64_t)qk, (int64_t)vd);
    f->ascr_per = f->ascr_kh + (mla ? T * qk : 0);
    f->ascr = alloc_f((size_t)f->nt * f->ascr_per, sizeof(float), &ok);
    DSQ_CHECK(ok, DSQ_NOMEM, err, "out of memory for the activations of %lld x %lld tokens",
              (long long)n_seq, (long long)n_ctx);

    /* cos/sin of every position, once */
    {
        float *inv = malloc(rd / 2 * sizeof(float) + sizeof(float));
        float af;
        DSQ_CHECK(inv != NULL, DSQ_NOMEM, err, "out of memory");
        dsq_rope_inv_freq(&c->rope, inv, &af);
        for (int64_t p = 0; p < f->T; p++)
            dsq_rope_cos_sin(inv, (int64_t)rd / 2, af, p, f->rope_cs + (size_t)p * rd);
        free(inv);
    }
    *out = f;
    f = NULL;
cleanup:
    dsq_fwd_free(f);
    return st;
}

dsq_status dsq_fwd_embed(dsq_fwd *f, const int32_t *tokens, dsq_err *err) {
    const int64_t D = f->c->dim;
    for (int64_t i = 0; i < f->N; i++) {
        if (tokens[i] < 0 || tokens[i] >= f->c->vocab)
            return dsq_err_set(err, DSQ_RANGE, "token id %ld at position %lld is outside the "
                               "vocabulary (%lld)", (long)tokens[i], (long long)i,
                               (long long)f->c->vocab);
        memcpy(f->x + i * D, f->m->embed + (size_t)tokens[i] * (size_t)D,
               (size_t)D * sizeof(float));
    }
    f->embedded = 1;
    return DSQ_OK;
}

static void norm_rows(dsq_fwd *f, float *y, const float *x, int64_t rows, int64_t d, int64_t ld,
                      const float *w) {
    const double eps = f->c->norm_eps;
#pragma omp parallel for num_threads(f->nt) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        dsq_rmsnorm(y + i * ld, x + i * ld, w, d, eps);
}

/* ---- attention ---- */

static void rope_rows(dsq_fwd *f, float *base, int64_t ld, int64_t nheads, int64_t hstride,
                      int64_t off) {
    const dsq_rope_config *r = &f->c->rope;
#pragma omp parallel for num_threads(f->nt) schedule(static)
    for (int64_t i = 0; i < f->N; i++) {
        const float *cs = f->rope_cs + (size_t)(i % f->T) * (size_t)r->dim;
        for (int64_t h = 0; h < nheads; h++)
            dsq_rope_apply(base + i * ld + h * hstride + off, r->dim, r->layout, cs);
    }
}

static dsq_status attn_llama(dsq_fwd *f, int64_t l, const dsq__layer *L, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_model_config *c = f->c;
    const int64_t N = f->N, T = f->T, H = c->n_heads, Hkv = c->n_kv_heads, hd = c->head_dim;
    DSQ_TRY(hook(f, l, -1, L->wq.name, L->wk.name, L->wv.name, f->xn, N, c->dim, NULL, NULL,
                 err));
    linear(f, N, f->xn, &L->wq, f->q);
    linear(f, N, f->xn, &L->wk, f->k);
    linear(f, N, f->xn, &L->wv, f->v);
    rope_rows(f, f->q, H * hd, H, hd, 0);
    rope_rows(f, f->k, Hkv * hd, Hkv, hd, 0);
    const float scale = (float)dsq_model_config_softmax_scale(c);
    const double t0 = dsq_now();
#pragma omp parallel for num_threads(f->nt) schedule(dynamic, 1)
    for (int64_t sh = 0; sh < f->S * H; sh++) {
        const int64_t s = sh / H, h = sh % H, kvh = h / (H / Hkv);
        float *scr = f->ascr + (size_t)thread_id() * f->ascr_per;
        const size_t r0 = (size_t)(s * T);
        const float *Kh = f->k + r0 * (size_t)(Hkv * hd) + (size_t)(kvh * hd);
        const float *Vh = f->v + r0 * (size_t)(Hkv * hd) + (size_t)(kvh * hd);
        dsq_attention(T, hd, hd, f->q + r0 * (size_t)(H * hd) + (size_t)(h * hd), H * hd, Kh,
                      Hkv * hd, Vh, Hkv * hd, f->att + r0 * (size_t)(H * hd) + (size_t)(h * hd),
                      H * hd, scale, scr);
    }
    f->t_attn += dsq_now() - t0;
    DSQ_TRY(hook(f, l, -1, L->wo.name, NULL, NULL, f->att, N, H * hd, NULL, NULL, err));
    linear(f, N, f->att, &L->wo, f->y);
cleanup:
    return st;
}

static dsq_status attn_mla(dsq_fwd *f, int64_t l, const dsq__layer *L, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_model_config *c = f->c;
    const int64_t N = f->N, T = f->T, H = c->n_heads, D = c->dim;
    const int64_t nope = c->qk_nope_dim, R = c->qk_rope_dim, vd = c->v_head_dim;
    const int64_t qk = nope + R, C = c->kv_lora_rank;
    /* queries: q_b(RMSNorm(q_a(x))) or q_proj(x) -> [N][H][nope | rope] */
    if (c->q_lora_rank > 0) {
        DSQ_TRY(hook(f, l, -1, L->q_a.name, L->kv_a.name, NULL, f->xn, N, D, NULL, NULL, err));
        linear(f, N, f->xn, &L->q_a, f->cq);
        norm_rows(f, f->cq, f->cq, N, c->q_lora_rank, c->q_lora_rank, L->q_a_norm);
        DSQ_TRY(hook(f, l, -1, L->q_b.name, NULL, NULL, f->cq, N, c->q_lora_rank, NULL, NULL,
                     err));
        linear(f, N, f->cq, &L->q_b, f->q);
    } else {
        DSQ_TRY(hook(f, l, -1, L->wq.name, L->kv_a.name, NULL, f->xn, N, D, NULL, NULL, err));
        linear(f, N, f->xn, &L->wq, f->q);
    }
    /* keys/values: kv_a(x) = [c_kv | k_pe]; c_kv normed; kv_b(c_kv) = [H][k_nope | v] */
    linear(f, N, f->xn, &L->kv_a, f->k);
#pragma omp parallel for num_threads(f->nt) schedule(static)
    for (int64_t i = 0; i < N; i++)
        dsq_rmsnorm(f->ckv + i * C, f->k + i * (C + R), L->kv_a_norm, C, c->norm_eps);
    DSQ_TRY(hook(f, l, -1, L->kv_b.name, NULL, NULL, f->ckv, N, C, NULL, NULL, err));
    linear(f, N, f->ckv, &L->kv_b, f->v);
    rope_rows(f, f->q, H * qk, H, qk, nope); /* each head's rope slice */
    rope_rows(f, f->k, C + R, 1, 0, C);      /* the one shared k_pe */

    const float scale = (float)dsq_model_config_softmax_scale(c);
    const int64_t ldkv = H * (nope + vd);
    const double t0 = dsq_now();
#pragma omp parallel for num_threads(f->nt) schedule(dynamic, 1)
    for (int64_t sh = 0; sh < f->S * H; sh++) {
        const int64_t s = sh / H, h = sh % H;
        float *scr = f->ascr + (size_t)thread_id() * f->ascr_per;
        float *Kh = scr + f->ascr_kh; /* [T][qk]: k_h = [k_nope_h ; k_pe] per position */
        for (int64_t t = 0; t < T; t++) {
            const size_t i = (size_t)(s * T + t);
            memcpy(Kh + t * qk, f->v + i * (size_t)ldkv + (size_t)(h * (nope + vd)),
                   (size_t)nope * sizeof(float));
            memcpy(Kh + t * qk + nope, f->k + i * (size_t)(C + R) + (size_t)C,
                   (size_t)R * sizeof(float));
        }
        dsq_attention(T, qk, vd, f->q + (size_t)(s * T) * (size_t)(H * qk) + (size_t)(h * qk),
                      H * qk, Kh, qk,
                      f->v + (size_t)(s * T) * (size_t)ldkv + (size_t)(h * (nope + vd) + nope),
                      ldkv, f->att + (size_t)(s * T) * (size_t)(H * vd) + (size_t)(h * vd),
                      H * vd, scale, scr);
    }
    f->t_attn += dsq_now() - t0;
    DSQ_TRY(hook(f, l, -1, L->wo.name, NULL, NULL, f->att, N, H * vd, NULL, NULL, err));
    linear(f, N, f->att, &L->wo, f->y);
cleanup:
    return st;
}

/* ---- FFN ---- */

/* out [rows][D] = down(silu(gate(x)) ⊙ up(x)) */
static dsq_status swiglu(dsq_fwd *f, int64_t l, int64_t expert, const dsq__ffn *F,
                         const float *x, int64_t rows, float *out, const int32_t *tok,
                         const float *rw, int hook_input, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const int64_t Fd = F->gate.n_out;
    if (hook_input)
        DSQ_TRY(hook(f, l, expert, F->gate.name, F->up.name, NULL, x, rows, F->gate.n_in, tok, rw,
                     err));
    linear(f, rows, x, &F->gate, f->g);
    linear(f, rows, x, &F->up, f->u);
#pragma omp parallel for num_threads(f->nt) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < Fd; j++)
            f->g[i * Fd + j] = dsq_silu(f->g[i * Fd + j]) * f->u[i * Fd + j];
    DSQ_TRY(hook(f, l, expert, F->down.name, NULL, NULL, f->g, rows, Fd, tok, rw, err));
    linear(f, rows, f->g, &F->down, out);
cleanup:
    return st;
}

static dsq_status moe(dsq_fwd *f, int64_t l, const dsq__layer *L, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const dsq_model_config *c = f->c;
    const int64_t N = f->N, D = c->dim, E = c->n_experts, K = c->n_experts_used;
    /* the router, the shared expert and the experts all read RMSNorm(h) */
    if (c->n_shared_experts > 0)
        DSQ_TRY(hook(f, l, -1, L->router.name, L->shared.gate.name, L->shared.up.name, f->xn, N,
                     D, NULL, NULL, err));
    else
        DSQ_TRY(hook(f, l, -1, L->router.name, NULL, NULL, f->xn, N, D, NULL, NULL, err));
    linear(f, N, f->xn, &L->router, f->rlog);
#pragma omp parallel for num_threads(f->nt) schedule(static)
    for (int64_t i = 0; i < N; i++)
        dsq_moe_route(c, f->rlog + i * E, L->router_bias, f->ridx + i * K, f->rw + i * K,
                      f->rscr + (size_t)thread_id() * 2 * (size_t)E);

    /* group the (token, weight) pairs by expert, tokens ascending */
    memset(f->eoff, 0, (size_t)(E + 1) * sizeof *f->eoff);
    for (int64_t i = 0; i < N * K; i++)
        f->eoff[f->ridx[i] + 1]++;
    for (int64_t e = 0; e < E; e++)
        f->eoff[e + 1] += f->eoff[e];
    for (int64_t i = 0; i < N; i++) {
        for (int64_t k = 0; k < K; k++) {
            const int32_t e = f->ridx[i * K + k];
            const int64_t at = f->eoff[e]++;
            f->etok[at] = (int32_t)i;
            f->ew[at] = f->rw[i * K + k];
        }
    }
    for (int64_t e = E; e > 0; e--) /* undo the fill's advance */
        f->eoff[e] = f->eoff[e - 1];
    f->eoff[0] = 0;

    /* routed experts, in expert order, each over its own tokens */
    memset(f->y, 0, (size_t)N * (size_t)D * sizeof(float));
    for (int64_t e = 0; e < E; e++) {
        const int64_t o = f->eoff[e], n = f->eoff[e + 1] - o;
        if (n == 0)
            continue;
        for (int64_t r = 0; r < n; r++)
            memcpy(f->xe + r * D, f->xn + (size_t)f->etok[o + r] * (size_t)D,
                   (size_t)D * sizeof(float));
        DSQ_TRY(swiglu(f, l, e, &L->experts[e], f->xe, n, f->ye, f->etok + o, f->ew + o, 1, err));
        for (int64_t r = 0; r < n; r++) {
            float *dst = f->y + (size_t)f->etok[o + r] * (size_t)D;
            const float w = f->ew[o + r], *src = f->ye + r * D;
            for (int64_t j = 0; j < D; j++)
                dst[j] += src[j] * w;
        }
    }
    if (c->n_shared_experts > 0) {
        DSQ_TRY(swiglu(f, l, -1, &L->shared, f->xn, N, f->y2, NULL, NULL, 0, err));
        for (int64_t i = 0; i < N * D; i++)
            f->y[i] += f->y2[i];
    }
cleanup:
    return st;
}

static void add_residual(dsq_fwd *f) {
    const int64_t n = f->N * f->c->dim;
#pragma omp parallel for num_threads(f->nt) schedule(static)
    for (int64_t i = 0; i < n; i++)
        f->x[i] += f->y[i];
}

dsq_status dsq_fwd_layer(dsq_fwd *f, int64_t l, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const double t0 = dsq_now();
    const dsq_model_config *c = f->c;
    DSQ_CHECK(f->embedded, DSQ_INVALID_ARG, err, "dsq_fwd_layer before dsq_fwd_embed");
    DSQ_CHECK(l >= 0 && l < c->n_layers, DSQ_INVALID_ARG, err, "no layer %lld", (long long)l);
    DSQ_CHECK(dsq_model_layer_loaded(f->m, l), DSQ_INVALID_ARG, err,
              "layer %lld is not loaded", (long long)l);
    const dsq__layer *L = &f->m->layers[l];
    norm_rows(f, f->xn, f->x, f->N, c->dim, c->dim, L->attn_norm);
    if (c->arch == DSQ_ARCH_LLAMA)
        DSQ_TRY(attn_llama(f, l, L, err));
    else
        DSQ_TRY(attn_mla(f, l, L, err));
    add_residual(f);
    norm_rows(f, f->xn, f->x, f->N, c->dim, c->dim, L->ffn_norm);
    if (L->is_moe)
        DSQ_TRY(moe(f, l, L, err));
    else
        DSQ_TRY(swiglu(f, l, -1, &L->mlp, f->xn, f->N, f->y, NULL, NULL, 1, err));
    add_residual(f);
cleanup:
    f->t_total += dsq_now() - t0;
    return st;
}

dsq_status dsq_fwd_logits(dsq_fwd *f, int64_t pos0, int64_t npos, float *logits, dsq_err *err) {
    dsq_status st = DSQ_OK;
    const double t0 = dsq_now();
    const int64_t D = f->c->dim;
    DSQ_CHECK(f->embedded, DSQ_INVALID_ARG, err, "dsq_fwd_logits before dsq_fwd_embed");
    DSQ_CHECK(pos0 >= 0 && npos >= 0 && pos0 + npos <= f->T, DSQ_INVALID_ARG, err,
              "positions [%lld, %lld) outside the window of %lld", (long long)pos0,
              (long long)(pos0 + npos), (long long)f->T);
    /* xn [S·npos][D]: the normed rows of the asked positions only */
    for (int64_t s = 0; s < f->S; s++)
        norm_rows(f, f->xn + s * npos * D, f->x + (s * f->T + pos0) * D, npos, D, D,
                  f->m->final_norm);
    DSQ_TRY(hook(f, -1, -1, f->m->head.name, NULL, NULL, f->xn, f->S * npos, D, NULL, NULL, err));
    linear(f, f->S * npos, f->xn, &f->m->head, logits);
cleanup:
    f->t_total += dsq_now() - t0;
    return st;
}

void dsq_fwd_get_x(const dsq_fwd *f, float *x) {
    memcpy(x, f->x, (size_t)f->N * (size_t)f->c->dim * sizeof(float));
}

void dsq_fwd_set_x(dsq_fwd *f, const float *x) {
    memcpy(f->x, x, (size_t)f->N * (size_t)f->c->dim * sizeof(float));
    f->embedded = 1;
}

dsq_status dsq_fwd_run(dsq_fwd *f, const int32_t *tokens, int64_t pos0, int64_t npos,
                       float *logits, dsq_err *err) {
    dsq_status st = DSQ_OK;
    DSQ_TRY(dsq_fwd_embed(f, tokens, err));
    for (int64_t l = 0; l < f->c->n_layers; l++)
        DSQ_TRY(dsq_fwd_layer(f, l, err));
    DSQ_TRY(dsq_fwd_logits(f, pos0, npos, logits, err));
cleanup:
    return st;
}

void dsq_fwd_get_stats(const dsq_fwd *f, dsq_fwd_stats *out) {
    out->total_s = f->t_total;
    out->gemm_s = f->t_gemm;
    out->gemm_flop = f->flop;
    out->attn_s = f->t_attn;
}
