/* quantize/q_simd_k.c: AVX2 versions of the K-quant scale searches, chosen
 * at run time with __builtin_cpu_supports("avx2"), never required.
 *
 * The searches of q_search.c work on one sub-block at a time, and the
 * sub-blocks of a super-block are independent of each other until their
 * scales are combined. So the vector code puts one sub-block in each AVX2
 * lane, 8 at a time, and runs the scalar algorithm in every lane:
 *  - dsq__qkx8_avx2: make_qkx2/qkx3 on 8 sub-blocks: the 8 of 32 of a
 *    Q4_K/Q5_K super-block, or 8 of the 16 of 16 of a Q2_K one (use_mad 1
 *    in its ref path), ref and imatrix paths;
 *  - dsq__qx16_avx2: make_qx_quants on the 16 sub-blocks of 16 of a Q6_K
 *    super-block (two vectors of 8, interleaved), weights x^2 or the imatrix.
 * Element i of every lane is processed in step i, so each lane's running
 * sums are added in the scalar order, every expression keeps the scalar
 * code's operand order and association ((w*l)*x, never w*(l*x)), and every
 * multiply and add is a separate _mm256_mul_ps / _mm256_add_ps: this file is
 * compiled for "avx2" only, never "fma", so the compiler cannot fuse them
 * (and -ffp-contract=off forbids it anyway). Divisions and square roots are
 * IEEE-exact (divps, sqrtps), never rcp/rsqrt approximations.
 *
 * Branches become per-lane masks. Where the scalar code skips work (D <= 0,
 * a candidate that does not improve), the lane computes it anyway and the
 * result is discarded by a blend, so the discarded values (inf, NaN from a
 * zero division) never reach a kept one. Where it copies the candidate's
 * levels (memcpy(L, Laux)), we keep instead the candidate's inverse scale and
 * offset and recompute the levels once at the end with the same operations:
 * nearest_int(iscale * (x - min)) gives the same integer both times.
 *
 * nearest_int is ggml's 1.5*2^23 trick done the same way: one float add,
 * then the integer bit operations on the result, so even out-of-range values
 * wrap as in the scalar code. Inside the candidate loops, where the argument
 * is known to be small, the level comes out of the same float add by a
 * second float subtraction and float clamps instead (level_f, exact there;
 * float_ok checks the bound per candidate and falls back to the integer
 * form). Min/max use minps/maxps, whose "a < b ? a : b" rule is the scalar
 * `if (x < min) min = x` (ties and -0.0 included).
 *
 * Also here: the final requantization with the fp16 scales (dsq__requant_avx2,
 * elementwise, divps) and the Q4_K / Q6_K bit packing (integer only).
 *
 * Inputs are finite (quant.c rejects NaN/inf before any kernel runs). */
#include "quantize/q_blocks.h"

int dsq__simd_disabled;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

static int use_avx2(void) { return !dsq__simd_disabled && __builtin_cpu_supports("avx2"); }

/* out[c] = (r0[c], r1[c], ..., r7[c]) for rows r_k = p + k*stride */
AVX2 static void transpose8(const float *p, int stride, __m256 *out) {
    const __m256 r0 = _mm256_loadu_ps(p + 0 * stride), r1 = _mm256_loadu_ps(p + 1 * stride);
    const __m256 r2 = _mm256_loadu_ps(p + 2 * stride), r3 = _mm256_loadu_ps(p + 3 * stride);
    const __m256 r4 = _mm256_loadu_ps(p + 4 * stride), r5 = _mm256_loadu_ps(p + 5 * stride);
    const __m256 r6 = _mm256_loadu_ps(p + 6 * stride), r7 = _mm256_loadu_ps(p + 7 * stride);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    out[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    out[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    out[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    out[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    out[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    out[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    out[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    out[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* dsq__nearest_int in every lane: (bits(v + 1.5*2^23) & 0x7fffff) - 0x400000 */
AVX2 static inline __m256i nearest8(__m256 v) {
    const __m256 t = _mm256_add_ps(v, _mm256_set1_ps(12582912.f));
    const __m256i b = _mm256_and_si256(_mm256_castps_si256(t), _mm256_set1_epi32(0x007fffff));
    return _mm256_sub_epi32(b, _mm256_set1_epi32(0x00400000));
}

AVX2 static inline __m256 blend(__m256 a, __m256 b, __m256 m) { return _mm256_blendv_ps(a, b, m); }

/* ---- make_qkx2/qkx3, 8 sub-blocks of 16 or 32 ---------------------------- */

/* The level of one element, clamped to 0..nmax, as a float.
 * int_path: nearest8 + integer clamp + conversion, exact for any v.
 * Otherwise the same value in 4 float operations: for |v| < 2^22,
 * (v + 1.5*2^23) - 1.5*2^23 is exactly the integer nearest8 gives (both
 * operands are integers below 2^24 after the rounding add), and the clamps
 * are then exact too. The callers use it only where |v| < 2^22 is known
 * in every lane whose result is kept (see float_ok, and qx8). */
AVX2 static inline __m256 level_f(__m256 v, __m256 flo, __m256 fhi, int int_path) {
    if (int_path) {
        __m256i l = nearest8(v);
        l = _mm256_min_epi32(_mm256_max_epi32(l, _mm256_cvttps_epi32(flo)),
                             _mm256_cvttps_epi32(fhi));
        return _mm256_cvtepi32_ps(l);
    }
    const __m256 magic = _mm256_set1_ps(12582912.f);
    const __m256 r = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
    return _mm256_min_ps(_mm256_max_ps(r, flo), fhi);
}

/* One candidate's weighted sums over the N elements, levels into lf. */
AVX2 static inline __attribute__((always_inline)) void
qkx_sums(int N, const __m256 *xt, const __m256 *wt, const __m256 *xm, __m256 iscale, __m256 fnmax,
         __m256 *lf, __m256 *sum_l, __m256 *sum_l2, __m256 *sum_xl, int int_path) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 s_l = zero, s_l2 = zero, s_xl = zero;
    for (int i = 0; i < N; ++i) {
        const __m256 fl = level_f(_mm256_mul_ps(iscale, xm[i]), zero, fnmax, int_path);
        lf[i] = fl;
        const __m256 wl = _mm256_mul_ps(wt[i], fl);
        s_l = _mm256_add_ps(s_l, wl);
        s_l2 = _mm256_add_ps(s_l2, _mm256_mul_ps(wl, fl));
        s_xl = _mm256_add_ps(s_xl, _mm256_mul_ps(wl, xt[i]));
    }
    *sum_l = s_l;
    *sum_l2 = s_l2;
    *sum_xl = s_xl;
}

/* Whether level_f's float form is exact for iscale * (x - min) in every lane
 * that counts: x - min lies in [minx - min, max - min], so |v| is at most
 * iscale * max(max - min, min - minx); below 2^21 (rounding of this bound
 * included) the float form equals nearest_int. Otherwise (a range so small
 * that iscale overflows, or an offset far outside the range) the exact
 * integer form is used for that candidate. */
AVX2 static inline int float_ok(__m256 iscale, __m256 min, __m256 max, __m256 minx,
                                __m256 degenerate) {
    const __m256 span = _mm256_max_ps(_mm256_sub_ps(max, min), _mm256_sub_ps(min, minx));
    const __m256 mag = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_mul_ps(iscale, span));
    const __m256 ok = _mm256_cmp_ps(mag, _mm256_set1_ps(0x1p21f), _CMP_LT_OQ);
    return (_mm256_movemask_ps(_mm256_or_ps(ok, degenerate)) & 0xff) == 0xff;
}

/* error term of one element: |diff| (use_mad) or diff^2, as the scalar code */
AVX2 static inline __m256 err_term(__m256 diff, int use_mad) {
    return use_mad ? _mm256_andnot_ps(_mm256_set1_ps(-0.0f), diff) : _mm256_mul_ps(diff, diff);
}

/* N (16 or 32) and use_mad are constants in each of the wrappers below */
AVX2 static inline __attribute__((always_inline)) void
qkx8(const int N, const int use_mad, const float *x, const float *w, int nmax, float rmin,
     float rdelta, int nstep, uint8_t *L, float *scales, float *the_mins) {
    __m256 xt[32], wt[32], xm[32], lf[32];
    for (int k = 0; k < N / 8; ++k) {
        transpose8(x + 8 * k, N, xt + 8 * k);
        transpose8(w + 8 * k, N, wt + 8 * k);
    }
    const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
    const __m256 fnmax = _mm256_set1_ps((float)nmax);
    __m256 min = xt[0], max = xt[0];
    __m256 sum_w = wt[0];
    __m256 sum_x = _mm256_mul_ps(wt[0], xt[0]);
    for (int i = 1; i < N; ++i) {
        min = _mm256_min_ps(xt[i], min);
        max = _mm256_max_ps(xt[i], max);
        sum_w = _mm256_add_ps(sum_w, wt[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wt[i], xt[i]));
    }
    const __m256 minx = min;
    min = _mm256_andnot_ps(_mm256_cmp_ps(min, zero, _CMP_GT_OQ), min);
    const __m256 degenerate = _mm256_cmp_ps(max, min, _CMP_LE_OQ);
    for (int i = 0; i < N; ++i)
        xm[i] = _mm256_sub_ps(xt[i], min); /* x[i] - min, until min changes */

    __m256 iscale = _mm256_div_ps(fnmax, _mm256_sub_ps(max, min));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
    __m256 best_error = zero;
    {
        const int fok = float_ok(iscale, min, max, minx, degenerate);
        for (int i = 0; i < N; ++i) {
            const __m256 v = _mm256_mul_ps(iscale, xm[i]);
            const __m256 fl = fok ? level_f(v, zero, fnmax, 0) : level_f(v, zero, fnmax, 1);
            const __m256 diff =
                _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, fl), min), xt[i]);
            best_error = _mm256_add_ps(best_error, _mm256_mul_ps(wt[i], err_term(diff, use_mad)));
        }
    }
    /* the levels of the best candidate are nearest_int(liscale * (x - lmin)) */
    __m256 liscale = iscale, lmin = min;
    for (int is = 0; nstep >= 1 && is <= nstep; ++is) {
        const float num = rmin + rdelta * (float)is + (float)nmax; /* scalar order */
        iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, min));
        __m256 sum_l, sum_l2, sum_xl;
        if (float_ok(iscale, min, max, minx, degenerate))
            qkx_sums(N, xt, wt, xm, iscale, fnmax, lf, &sum_l, &sum_l2, &sum_xl, 0);
        else
            qkx_sums(N, xt, wt, xm, iscale, fnmax, lf, &sum_l, &sum_l2, &sum_xl, 1);
        const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        /* degenerate lanes returned before the search in the scalar code */
        const __m256 dpos = _mm256_andnot_ps(degenerate, _mm256_cmp_ps(D, zero, _CMP_GT_OQ));
        if (_mm256_movemask_ps(dpos) == 0)
            continue;
        __m256 this_scale = _mm256_div_ps(
            _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
        __m256 this_min = _mm256_div_ps(
            _mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
        const __m256 mpos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
        this_min = _mm256_andnot_ps(mpos, this_min);
        this_scale = blend(this_scale, _mm256_div_ps(sum_xl, sum_l2), mpos);
        __m256 cur_error = zero;
        for (int i = 0; i < N; ++i) {
            const __m256 diff =
                _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, lf[i]), this_min), xt[i]);
            cur_error = _mm256_add_ps(cur_error, _mm256_mul_ps(wt[i], err_term(diff, use_mad)));
        }
        const __m256 win = _mm256_and_ps(dpos, _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ));
        if (_mm256_movemask_ps(win) == 0)
            continue;
        best_error = blend(best_error, cur_error, win);
        scale = blend(scale, this_scale, win);
        liscale = blend(liscale, iscale, win);
        lmin = blend(lmin, min, win);
        min = blend(min, this_min, win);
        for (int i = 0; i < N; ++i)
            xm[i] = _mm256_sub_ps(xt[i], min);
    }
    /* degenerate lanes (max <= min): levels 0, scale 0, the_min = -min */
    const __m256i vzero = _mm256_setzero_si256(), vnmax = _mm256_set1_epi32(nmax);
    int32_t lv[32][8];
    for (int i = 0; i < N; ++i) {
        __m256i l = nearest8(_mm256_mul_ps(liscale, _mm256_sub_ps(xt[i], lmin)));
        l = _mm256_min_epi32(_mm256_max_epi32(l, vzero), vnmax);
        l = _mm256_andnot_si256(_mm256_castps_si256(degenerate), l);
        _mm256_storeu_si256((__m256i *)lv[i], l);
    }
    for (int j = 0; j < 8; ++j)
        for (int i = 0; i < N; ++i)
            L[N * j + i] = (uint8_t)lv[i][j];
    _mm256_storeu_ps(scales, _mm256_andnot_ps(degenerate, scale));
    _mm256_storeu_ps(the_mins, _mm256_xor_ps(min, sign)); /* -min, -0.0 included */
}

AVX2 static void qkx8_32(const float *x, const float *w, int nmax, float rmin, float rdelta,
                         int nstep, uint8_t *L, float *scales, float *the_mins) {
    qkx8(32, 0, x, w, nmax, rmin, rdelta, nstep, L, scales, the_mins);
}

AVX2 static void qkx8_16(const float *x, const float *w, int nmax, float rmin, float rdelta,
                         int nstep, uint8_t *L, float *scales, float *the_mins) {
    qkx8(16, 0, x, w, nmax, rmin, rdelta, nstep, L, scales, the_mins);
}

AVX2 static void qkx8_16_mad(const float *x, const float *w, int nmax, float rmin, float rdelta,
                             int nstep, uint8_t *L, float *scales, float *the_mins) {
    qkx8(16, 1, x, w, nmax, rmin, rdelta, nstep, L, scales, the_mins);
}

int dsq__qkx8_avx2(int n, int use_mad, const float *x, const float *w, int nmax, float rmin,
                   float rdelta, int nstep, uint8_t *L, float *scales, float *the_mins) {
    if (!use_avx2())
        return 0;
    if (n == 32 && !use_mad)
        qkx8_32(x, w, nmax, rmin, rdelta, nstep, L, scales, the_mins);
    else if (n == 16 && !use_mad)
        qkx8_16(x, w, nmax, rmin, rdelta, nstep, L, scales, the_mins);
    else if (n == 16)
        qkx8_16_mad(x, w, nmax, rmin, rdelta, nstep, L, scales, the_mins);
    else
        return 0;
    return 1;
}

/* ---- make_qx_quants (rmse_type 1), 8 sub-blocks of 16 -------------------- */

/* G = 2 independent groups of 8 lanes (sub-blocks 0..7 and 8..15 of a Q6_K
 * super-block) go through the loops side by side, so that the two groups'
 * dependency chains (the running sums) overlap. */
#define G 2
AVX2 static void qx16(const float *x, const float *qw, int nmax, int8_t *L, float *scales) {
    enum { N = 16 };
    __m256 xt[G][N], wt[G][N], wx[G][N];
    for (int g = 0; g < G; ++g) {
        for (int k = 0; k < N / 8; ++k) {
            transpose8(x + 128 * g + 8 * k, N, xt[g] + 8 * k);
            if (qw)
                transpose8(qw + 128 * g + 8 * k, N, wt[g] + 8 * k);
        }
        if (!qw)
            for (int i = 0; i < N; ++i)
                wt[g][i] = _mm256_mul_ps(xt[g][i], xt[g][i]);
    }
    const __m256 zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
    const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);

    __m256 max[G], tiny[G], iscale[G], sumlx[G], suml2[G], scale[G], best[G], liscale[G];
    for (int g = 0; g < G; ++g) {
        __m256 mx = zero, amax = zero;
        for (int i = 0; i < N; ++i) {
            const __m256 ax = _mm256_andnot_ps(sign, xt[g][i]);
            const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
            amax = blend(amax, ax, gt);
            mx = blend(mx, xt[g][i], gt);
        }
        max[g] = mx;
        tiny[g] = _mm256_cmp_ps(amax, _mm256_set1_ps(DSQ_GROUP_MAX_EPS), _CMP_LT_OQ);
        for (int i = 0; i < N; ++i)
            wx[g][i] = _mm256_mul_ps(wt[g][i], xt[g][i]); /* w * x, the same for all candidates */
    }
    /* |iscale * x| <= nmax + 1 in every lane that is kept (amax >= 1e-15 and
     * |x| <= |max|), so the float form of the levels is exact (level_f) */
    const __m256 flo = _mm256_set1_ps((float)-nmax), fhi = _mm256_set1_ps((float)(nmax - 1));
    for (int g = 0; g < G; ++g) {
        iscale[g] = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max[g]);
        sumlx[g] = suml2[g] = zero;
    }
    for (int i = 0; i < N; ++i) {
        for (int g = 0; g < G; ++g) {
            const __m256 fl = level_f(_mm256_mul_ps(iscale[g], xt[g][i]), flo, fhi, 0);
            sumlx[g] = _mm256_add_ps(sumlx[g], _mm256_mul_ps(wx[g][i], fl));
            suml2[g] = _mm256_add_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(wt[g][i], fl), fl));
        }
    }
    for (int g = 0; g < G; ++g) {
        scale[g] = _mm256_and_ps(_mm256_cmp_ps(suml2[g], zero, _CMP_NEQ_UQ),
                                 _mm256_div_ps(sumlx[g], suml2[g]));
        best[g] = _mm256_mul_ps(scale[g], sumlx[g]);
        liscale[g] = iscale[g];
    }
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        const __m256 num = _mm256_set1_ps(-((float)nmax + 0.1f * (float)is)); /* scalar order */
        for (int g = 0; g < G; ++g)
            iscale[g] = _mm256_div_ps(num, max[g]);
        /* the two groups written out: GCC 12 does not unroll a loop over g */
        __m256 slx0 = zero, sl20 = zero, slx1 = zero, sl21 = zero;
        const __m256 is0 = iscale[0], is1 = iscale[1];
        for (int i = 0; i < N; ++i) {
            const __m256 fl0 = level_f(_mm256_mul_ps(is0, xt[0][i]), flo, fhi, 0);
            const __m256 fl1 = level_f(_mm256_mul_ps(is1, xt[1][i]), flo, fhi, 0);
            slx0 = _mm256_add_ps(slx0, _mm256_mul_ps(wx[0][i], fl0));
            slx1 = _mm256_add_ps(slx1, _mm256_mul_ps(wx[1][i], fl1));
            sl20 = _mm256_add_ps(sl20, _mm256_mul_ps(_mm256_mul_ps(wt[0][i], fl0), fl0));
            sl21 = _mm256_add_ps(sl21, _mm256_mul_ps(_mm256_mul_ps(wt[1][i], fl1), fl1));
        }
        sumlx[0] = slx0, suml2[0] = sl20, sumlx[1] = slx1, suml2[1] = sl21;
        for (int g = 0; g < G; ++g) {
            const __m256 win = _mm256_and_ps(
                _mm256_cmp_ps(suml2[g], zero, _CMP_GT_OQ),
                _mm256_cmp_ps(_mm256_mul_ps(sumlx[g], sumlx[g]), _mm256_mul_ps(best[g], suml2[g]),
                              _CMP_GT_OQ));
            if (_mm256_movemask_ps(win) == 0)
                continue;
            const __m256 sc = _mm256_div_ps(sumlx[g], suml2[g]);
            scale[g] = blend(scale[g], sc, win);
            best[g] = blend(best[g], _mm256_mul_ps(sc, sumlx[g]), win);
            liscale[g] = blend(liscale[g], iscale[g], win);
        }
    }
    /* tiny lanes (amax < GROUP_MAX_EPS): levels 0, scale 0 */
    const __m256i vnmax = _mm256_set1_epi32(nmax);
    for (int g = 0; g < G; ++g) {
        int32_t lv[N][8];
        for (int i = 0; i < N; ++i) {
            __m256i l = nearest8(_mm256_mul_ps(liscale[g], xt[g][i]));
            l = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(l, lo), hi), vnmax);
            l = _mm256_andnot_si256(_mm256_castps_si256(tiny[g]), l);
            _mm256_storeu_si256((__m256i *)lv[i], l);
        }
        for (int j = 0; j < 8; ++j)
            for (int i = 0; i < N; ++i)
                L[128 * g + N * j + i] = (int8_t)lv[i][j];
        _mm256_storeu_ps(scales + 8 * g, _mm256_andnot_ps(tiny[g], scale[g]));
    }
}
#undef G

int dsq__qx16_avx2(const float *x, const float *qw, int nmax, int8_t *L, float *scales) {
    if (!use_avx2())
        return 0;
    qx16(x, qw, nmax, L, scales);
    return 1;
}

/* ---- final requantization with the packed scales ------------------------ */

/* 16 int32 levels (a: elements 0..7, b: 8..15), each in 0..255, to bytes */
AVX2 static inline void store16_u8(uint8_t *dst, __m256i a, __m256i b) {
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
    const __m128i q = _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)dst, q);
}

AVX2 static void requant(const float *x, int sub, int nsub, const float *d, const float *dm, int lo,
                         int hi, int off, uint8_t *L) {
    const __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
    const __m256i voff = _mm256_set1_epi32(off);
    for (int j = 0; j < nsub; ++j) {
        if (d[j] == 0.0f)
            continue;
        const __m256 vd = _mm256_set1_ps(d[j]);
        const __m256 vm = _mm256_set1_ps(dm ? dm[j] : 0.0f);
        for (int k = 0; k < sub; k += 16) {
            const float *xs = x + sub * j + k;
            __m256 v0 = _mm256_loadu_ps(xs), v1 = _mm256_loadu_ps(xs + 8);
            if (dm) {
                v0 = _mm256_add_ps(v0, vm);
                v1 = _mm256_add_ps(v1, vm);
            }
            __m256i l0 = nearest8(_mm256_div_ps(v0, vd)), l1 = nearest8(_mm256_div_ps(v1, vd));
            l0 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(l0, vlo), vhi), voff);
            l1 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(l1, vlo), vhi), voff);
            store16_u8(L + sub * j + k, l0, l1);
        }
    }
}

int dsq__requant_avx2(const float *x, int sub, int nsub, const float *d, const float *dm, int lo,
                      int hi, int off, uint8_t *L) {
    if (!use_avx2() || sub % 16 != 0)
        return 0;
    requant(x, sub, nsub, d, dm, lo, hi, off, L);
    return 1;
}

/* ---- bit packing --------------------------------------------------------- */

/* Q6_K: L[0..255] levels 0..63 to ql[128], qh[64] (layout in q_kquants.c).
 * Byte-wise shifts done as 16-bit shifts of values whose bits cannot cross
 * into the neighbouring byte (masked before or after). */
AVX2 static void q6_pack(const uint8_t *L, uint8_t *ql, uint8_t *qh) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    for (int h = 0; h < 2; ++h) {
        const uint8_t *Lh = L + 128 * h;
        const __m256i a = _mm256_loadu_si256((const __m256i *)(Lh + 0));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(Lh + 32));
        const __m256i c = _mm256_loadu_si256((const __m256i *)(Lh + 64));
        const __m256i d = _mm256_loadu_si256((const __m256i *)(Lh + 96));
        const __m256i lo0 = _mm256_or_si256(_mm256_and_si256(a, m4),
                                            _mm256_slli_epi16(_mm256_and_si256(c, m4), 4));
        const __m256i lo1 = _mm256_or_si256(_mm256_and_si256(b, m4),
                                            _mm256_slli_epi16(_mm256_and_si256(d, m4), 4));
        const __m256i ha = _mm256_and_si256(_mm256_srli_epi16(a, 4), m2);
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(b, 4), m2);
        const __m256i hc = _mm256_and_si256(_mm256_srli_epi16(c, 4), m2);
        const __m256i hd = _mm256_and_si256(_mm256_srli_epi16(d, 4), m2);
        const __m256i hi = _mm256_or_si256(
            _mm256_or_si256(ha, _mm256_slli_epi16(hb, 2)),
            _mm256_or_si256(_mm256_slli_epi16(hc, 4), _mm256_slli_epi16(hd, 6)));
        _mm256_storeu_si256((__m256i *)(ql + 64 * h), lo0);
        _mm256_storeu_si256((__m256i *)(ql + 64 * h + 32), lo1);
        _mm256_storeu_si256((__m256i *)(qh + 32 * h), hi);
    }
}

int dsq__q6_pack_avx2(const uint8_t *L, uint8_t *ql, uint8_t *qh) {
    if (!use_avx2())
        return 0;
    q6_pack(L, ql, qh);
    return 1;
}

/* Q4_K: L[0..255] levels 0..15 to qs[128]: qs[32c + l] = L[64c + l] |
 * L[64c + 32 + l] << 4 */
AVX2 static void q4_pack(const uint8_t *L, uint8_t *qs) {
    for (int c = 0; c < 4; ++c) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(L + 64 * c));
        const __m256i b = _mm256_loadu_si256((const __m256i *)(L + 64 * c + 32));
        _mm256_storeu_si256((__m256i *)(qs + 32 * c), _mm256_or_si256(a, _mm256_slli_epi16(b, 4)));
    }
}

int dsq__q4_pack_avx2(const uint8_t *L, uint8_t *qs) {
    if (!use_avx2())
        return 0;
    q4_pack(L, qs);
    return 1;
}

#else /* not x86-64 with GCC/Clang: scalar only */

int dsq__qkx8_avx2(int n, int use_mad, const float *x, const float *w, int nmax, float rmin,
                   float rdelta, int nstep, uint8_t *L, float *scales, float *the_mins) {
    (void)n, (void)use_mad, (void)x, (void)w, (void)nmax, (void)rmin, (void)rdelta, (void)nstep;
    (void)L, (void)scales, (void)the_mins;
    return 0;
}

int dsq__qx16_avx2(const float *x, const float *qw, int nmax, int8_t *L, float *scales) {
    (void)x, (void)qw, (void)nmax, (void)L, (void)scales;
    return 0;
}

int dsq__q6_pack_avx2(const uint8_t *L, uint8_t *ql, uint8_t *qh) {
    (void)L, (void)ql, (void)qh;
    return 0;
}

int dsq__q4_pack_avx2(const uint8_t *L, uint8_t *qs) {
    (void)L, (void)qs;
    return 0;
}

int dsq__requant_avx2(const float *x, int sub, int nsub, const float *d, const float *dm, int lo,
                      int hi, int off, uint8_t *L) {
    (void)x, (void)sub, (void)nsub, (void)d, (void)dm, (void)lo, (void)hi, (void)off, (void)L;
    return 0;
}

#endif
