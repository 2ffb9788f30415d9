/* quantize/q_simd_k_body.h: the K-quant scale searches written once for any
 * vector width, included by q_simd_k.c (AVX2, 8 lanes) and q_simd_k512.c
 * (AVX-512, 16 lanes). Not a public header: it has no include guard and
 * expects, from the file that includes it,
 *   LANES            lanes per vector (8 or 16)
 *   VF, VI, VM       float vector, int32 vector, lane mask
 *   KFN(name)        the width's name for a kernel; KATTR its target attribute
 *   V1 VZ VADD VSUB VMUL VDIV VSQRT VMIN VMAX VABS VNEG VCVTI
 *   VCMP(a, b, pred) a mask from a _CMP_* predicate
 *   MAND MANDN(a, b) (= ~a & b) MOR MANY MALL
 *   VBLEND(a, b, m) (b where m) VZEROIF(m, a) VKEEPIF(m, a)
 *   VNEAREST(v)      ggml's nearest_int in every lane (an int vector)
 *   VI1 VIMIN VIMAX VIADD VIZEROIF(m, i) VISTORE(p, i) VSTORE(p, v)
 *   TRANSPOSE(p, stride, out)  out[c] = lane k holds p[k*stride + c], c < 8
 *
 * How the scalar searches of q_search.c map onto lanes, and why the results
 * are the same bits, is explained at the top of q_simd_k.c: one sub-block
 * per lane, element i of every lane in step i, the scalar code's operations
 * in its order, branches as masks, never a fused multiply-add. */

/* The level of one element, clamped to lo..hi, as a float.
 * int_path: the integer nearest_int, exact for any v. Otherwise the same
 * value in float operations: for |v| < 2^22, (v + 1.5*2^23) - 1.5*2^23 is
 * exactly the integer nearest_int gives (both operands are integers below
 * 2^24 after the rounding add), and the clamps are then exact too. The
 * callers use it only where |v| < 2^22 is known in every lane whose result is
 * kept (float_ok, and qx). clamp_lo/clamp_hi 0: the caller knows the level
 * is already within that bound in every such lane. */
KATTR static inline __attribute__((always_inline)) VF
KFN(level_f)(VF v, VF flo, VF fhi, int int_path, int clamp_lo, int clamp_hi) {
    if (int_path) {
        VI l = VNEAREST(v);
        l = VIMIN(VIMAX(l, VI1((int)flo[0])), VI1((int)fhi[0]));
        return VCVTI(l);
    }
    const VF magic = V1(12582912.f);
    VF r = VSUB(VADD(v, magic), magic);
    if (clamp_lo)
        r = VMAX(r, flo);
    if (clamp_hi)
        r = VMIN(r, fhi);
    return r;
}

/* ---- make_qkx2/qkx3 on G * LANES sub-blocks of N = 16 or 32 -------------- */

/* G (1 or 2) independent groups of LANES sub-blocks (group g at
 * x + N * LANES * g) go through every loop side by side: each lane's running
 * sums are chains of dependent adds, so one group alone leaves the adder
 * waiting on their latency; two fill it. */
#define GROUPS _Pragma("GCC unroll 2") for (int g = 0; g < G; ++g)

/* One candidate's weighted sums over the N elements, levels into lf. */
KATTR static inline __attribute__((always_inline)) void
KFN(qkx_sums)(const int G, int N, VF (*xt)[32], VF (*wt)[32], VF (*xm)[32], const VF *iscale,
              VF fnmax, VF (*lf)[32], VF *sum_l, VF *sum_l2, VF *sum_xl, int int_path,
              int clamp_lo, int clamp_hi) {
    const VF zero = VZ();
    VF s_l[2] = {zero, zero}, s_l2[2] = {zero, zero}, s_xl[2] = {zero, zero};
    for (int i = 0; i < N; ++i) {
        GROUPS {
            const VF fl = KFN(level_f)(VMUL(iscale[g], xm[g][i]), zero, fnmax, int_path, clamp_lo,
                                       clamp_hi);
            lf[g][i] = fl;
            const VF wl = VMUL(wt[g][i], fl);
            s_l[g] = VADD(s_l[g], wl);
            s_l2[g] = VADD(s_l2[g], VMUL(wl, fl));
            s_xl[g] = VADD(s_xl[g], VMUL(wl, xt[g][i]));
        }
    }
    GROUPS {
        sum_l[g] = s_l[g];
        sum_l2[g] = s_l2[g];
        sum_xl[g] = s_xl[g];
    }
}

/* Whether level_f's float form is exact for iscale * (x - min) in every lane
 * that counts: x - min lies in [minx - min, max - min], so |v| is at most
 * iscale * max(max - min, min - minx); below 2^21 (rounding of this bound
 * included) the float form equals nearest_int. Otherwise (a range so small
 * that iscale overflows, or an offset far outside the range) the exact
 * integer form is used for that candidate. */
KATTR static inline int KFN(float_ok)(VF iscale, VF min, VF max, VF minx, VM degenerate) {
    const VF span = VMAX(VSUB(max, min), VSUB(min, minx));
    const VF mag = VABS(VMUL(iscale, span));
    return MALL(MOR(VCMP(mag, V1(0x1p21f), _CMP_LT_OQ), degenerate));
}

/* error term of one element: |diff| (use_mad) or diff^2, as the scalar code */
KATTR static inline VF KFN(err_term)(VF diff, int use_mad) {
    return use_mad ? VABS(diff) : VMUL(diff, diff);
}

/* G, N (16 or 32) and use_mad are constants in each of the wrappers below.
 * The levels' clamps: xm = x - min is kept at max(x - min, 0), so a level
 * is never below 0 without a clamp per candidate (an element below the
 * offset gets level 0 either way: the scalar code clamps round(iscale *
 * (x - min)) <= 0 up to 0, here iscale * 0 rounds to 0). Above nmax a
 * level can only go when the candidate's numerator exceeds nmax + 1/4
 * (iscale * (x - min) <= num * (1 + 2^-23)^2 otherwise, which rounds to at
 * most nmax), so only those candidates clamp there. A lane whose result is
 * discarded (degenerate) may see levels out of range, which is harmless. */
KATTR static inline __attribute__((always_inline)) void
KFN(qkx)(const int G, const int N, const int use_mad, const float *x, const float *w, int nmax,
         float rmin, float rdelta, int nstep, uint8_t *L, float *scales, float *the_mins) {
    VF xt[2][32], wt[2][32], xm[2][32], lf[2][32];
    GROUPS {
        for (int k = 0; k < N / 8; ++k) {
            TRANSPOSE(x + N * LANES * g + 8 * k, N, xt[g] + 8 * k);
            if (w)
                TRANSPOSE(w + N * LANES * g + 8 * k, N, wt[g] + 8 * k);
        }
        if (!w) { /* Q4_K/Q5_K ref weights: sqrtf(sum of x^2 / N) + |x| */
            VF sx2 = VZ();
            for (int i = 0; i < N; ++i)
                sx2 = VADD(sx2, VMUL(xt[g][i], xt[g][i]));
            const VF av_x = VSQRT(VDIV(sx2, V1((float)N)));
            for (int i = 0; i < N; ++i)
                wt[g][i] = VADD(av_x, VABS(xt[g][i]));
        }
    }
    const VF zero = VZ();
    const VF fnmax = V1((float)nmax);
    VF min[2], max[2], minx[2], sum_w[2], sum_x[2], iscale[2], scale[2], best_error[2];
    VF liscale[2], lmin[2];
    VM degenerate[2];
    GROUPS {
        VF mn = xt[g][0], mx = xt[g][0], sw = wt[g][0], sx = VMUL(wt[g][0], xt[g][0]);
        for (int i = 1; i < N; ++i) {
            mn = VMIN(xt[g][i], mn);
            mx = VMAX(xt[g][i], mx);
            sw = VADD(sw, wt[g][i]);
            sx = VADD(sx, VMUL(wt[g][i], xt[g][i]));
        }
        minx[g] = mn, max[g] = mx, sum_w[g] = sw, sum_x[g] = sx;
        min[g] = VZEROIF(VCMP(mn, zero, _CMP_GT_OQ), mn);
        degenerate[g] = VCMP(mx, min[g], _CMP_LE_OQ);
        for (int i = 0; i < N; ++i)
            xm[g][i] = VSUB(xt[g][i], min[g]); /* x[i] - min, until min changes */
        iscale[g] = VDIV(fnmax, VSUB(mx, min[g]));
        scale[g] = VDIV(V1(1.0f), iscale[g]);
        const int fok = KFN(float_ok)(iscale[g], min[g], mx, mn, degenerate[g]);
        VF be = zero;
        for (int i = 0; i < N; ++i) {
            const VF v = VMUL(iscale[g], xm[g][i]);
            const VF fl = fok ? KFN(level_f)(v, zero, fnmax, 0, 1, 1)
                              : KFN(level_f)(v, zero, fnmax, 1, 1, 1);
            const VF diff = VSUB(VADD(VMUL(scale[g], fl), min[g]), xt[g][i]);
            be = VADD(be, VMUL(wt[g][i], KFN(err_term)(diff, use_mad)));
        }
        best_error[g] = be;
        /* the levels of the best candidate are nearest_int(liscale * (x - lmin)) */
        liscale[g] = iscale[g], lmin[g] = min[g];
    }
    for (int is = 0; nstep >= 1 && is <= nstep; ++is) {
        const float num = rmin + rdelta * (float)is + (float)nmax; /* scalar order */
        int fok = 1;
        GROUPS {
            iscale[g] = VDIV(V1(num), VSUB(max[g], min[g]));
            fok &= KFN(float_ok)(iscale[g], min[g], max[g], minx[g], degenerate[g]);
        }
        VF sum_l[2], sum_l2[2], sum_xl[2];
        /* num <= 0 (no ggml parameters give it) would make levels negative */
        const int lo = !(num > 0.0f), hi = !(num <= (float)nmax + 0.25f);
#define SUMS(ip, cl, ch)                                                                           \
    KFN(qkx_sums)(G, N, xt, wt, xm, iscale, fnmax, lf, sum_l, sum_l2, sum_xl, ip, cl, ch)
        if (!fok)
            SUMS(1, 1, 1);
        else if (lo && hi)
            SUMS(0, 1, 1);
        else if (lo)
            SUMS(0, 1, 0);
        else if (hi)
            SUMS(0, 0, 1);
        else
            SUMS(0, 0, 0);
#undef SUMS
        VF this_scale[2], this_min[2];
        VM dpos[2];
        int any = 0;
        GROUPS {
            const VF D = VSUB(VMUL(sum_w[g], sum_l2[g]), VMUL(sum_l[g], sum_l[g]));
            /* degenerate lanes returned before the search in the scalar code */
            dpos[g] = MANDN(degenerate[g], VCMP(D, zero, _CMP_GT_OQ));
            any |= MANY(dpos[g]);
            VF ts = VDIV(VSUB(VMUL(sum_w[g], sum_xl[g]), VMUL(sum_x[g], sum_l[g])), D);
            VF tm = VDIV(VSUB(VMUL(sum_l2[g], sum_x[g]), VMUL(sum_l[g], sum_xl[g])), D);
            const VM mpos = VCMP(tm, zero, _CMP_GT_OQ);
            this_min[g] = VZEROIF(mpos, tm);
            this_scale[g] = VBLEND(ts, VDIV(sum_xl[g], sum_l2[g]), mpos);
        }
        if (!any)
            continue;
        VF cur_error[2] = {zero, zero};
        for (int i = 0; i < N; ++i) {
            GROUPS {
                const VF diff =
                    VSUB(VADD(VMUL(this_scale[g], lf[g][i]), this_min[g]), xt[g][i]);
                cur_error[g] = VADD(cur_error[g], VMUL(wt[g][i], KFN(err_term)(diff, use_mad)));
            }
        }
        GROUPS {
            const VM win = MAND(dpos[g], VCMP(cur_error[g], best_error[g], _CMP_LT_OQ));
            if (MANY(win)) {
                best_error[g] = VBLEND(best_error[g], cur_error[g], win);
                scale[g] = VBLEND(scale[g], this_scale[g], win);
                liscale[g] = VBLEND(liscale[g], iscale[g], win);
                lmin[g] = VBLEND(lmin[g], min[g], win);
                min[g] = VBLEND(min[g], this_min[g], win);
                for (int i = 0; i < N; ++i)
                    xm[g][i] = VMAX(VSUB(xt[g][i], min[g]), zero);
            }
        }
    }
    /* degenerate lanes (max <= min): levels 0, scale 0, the_min = -min */
    const VI vzero = VI1(0), vnmax = VI1(nmax);
    GROUPS {
        int32_t lv[32][LANES];
        for (int i = 0; i < N; ++i) {
            VI l = VNEAREST(VMUL(liscale[g], VSUB(xt[g][i], lmin[g])));
            l = VIZEROIF(degenerate[g], VIMIN(VIMAX(l, vzero), vnmax));
            VISTORE(lv[i], l);
        }
        for (int j = 0; j < LANES; ++j)
            for (int i = 0; i < N; ++i)
                L[N * LANES * g + N * j + i] = (uint8_t)lv[i][j];
        VSTORE(scales + LANES * g, VZEROIF(degenerate[g], scale[g]));
        VSTORE(the_mins + LANES * g, VNEG(min[g])); /* -min, -0.0 included */
    }
}

#define QKX_WRAP(name, G, N, mad)                                                                  \
    KATTR static void KFN(name)(const float *x, const float *w, int nmax, float rmin,           \
                                float rdelta, int nstep, uint8_t *L, float *scales,             \
                                float *the_mins) {                                              \
        KFN(qkx)(G, N, mad, x, w, nmax, rmin, rdelta, nstep, L, scales, the_mins);              \
    }
QKX_WRAP(qkx1_32, 1, 32, 0)
QKX_WRAP(qkx1_16, 1, 16, 0)
QKX_WRAP(qkx1_16_mad, 1, 16, 1)
QKX_WRAP(qkx2_32, 2, 32, 0)
QKX_WRAP(qkx2_16, 2, 16, 0)
QKX_WRAP(qkx2_16_mad, 2, 16, 1)
#undef QKX_WRAP

/* G * LANES sub-blocks of n (32, or 16 with or without use_mad); 0 for other n */
KATTR static int KFN(qkx_lanes)(int G, int n, int use_mad, const float *x, const float *w,
                                int nmax, float rmin, float rdelta, int nstep, uint8_t *L,
                                float *scales, float *the_mins) {
    if (n == 32 && !use_mad)
        (G == 2 ? KFN(qkx2_32) : KFN(qkx1_32))(x, w, nmax, rmin, rdelta, nstep, L, scales,
                                                the_mins);
    else if (n == 16 && !use_mad)
        (G == 2 ? KFN(qkx2_16) : KFN(qkx1_16))(x, w, nmax, rmin, rdelta, nstep, L, scales,
                                                the_mins);
    else if (n == 16)
        (G == 2 ? KFN(qkx2_16_mad) : KFN(qkx1_16_mad))(x, w, nmax, rmin, rdelta, nstep, L,
                                                        scales, the_mins);
    else
        return 0;
    return 1;
}

/* ---- make_qx_quants (rmse_type 1) on 2 * LANES sub-blocks of 16 ---------- */

/* Two independent groups of LANES lanes go through the loops side by side,
 * so that the two groups' dependency chains (the running sums) overlap:
 * group g is the LANES sub-blocks at x + 16 * LANES * g. */
KATTR static void KFN(qx)(const float *x, const float *qw, int nmax, int8_t *L, float *scales) {
    enum { N = 16, G = 2 };
    VF xt[G][N], wt[G][N], wx[G][N];
    for (int g = 0; g < G; ++g) {
        for (int k = 0; k < N / 8; ++k) {
            TRANSPOSE(x + N * LANES * g + 8 * k, N, xt[g] + 8 * k);
            if (qw)
                TRANSPOSE(qw + N * LANES * g + 8 * k, N, wt[g] + 8 * k);
        }
        if (!qw)
            for (int i = 0; i < N; ++i)
                wt[g][i] = VMUL(xt[g][i], xt[g][i]);
    }
    const VF zero = VZ();
    const VI lo = VI1(-nmax), hi = VI1(nmax - 1);

    VF max[G], iscale[G], sumlx[G], suml2[G], scale[G], best[G], liscale[G];
    VM tiny[G];
    for (int g = 0; g < G; ++g) {
        VF mx = zero, amax = zero;
        for (int i = 0; i < N; ++i) {
            const VF ax = VABS(xt[g][i]);
            const VM gt = VCMP(ax, amax, _CMP_GT_OQ);
            amax = VBLEND(amax, ax, gt);
            mx = VBLEND(mx, xt[g][i], gt);
        }
        max[g] = mx;
        tiny[g] = VCMP(amax, V1(DSQ_GROUP_MAX_EPS), _CMP_LT_OQ);
        for (int i = 0; i < N; ++i)
            wx[g][i] = VMUL(wt[g][i], xt[g][i]); /* w * x, the same for all candidates */
    }
    /* |iscale * x| <= nmax + 1 in every lane that is kept (amax >= 1e-15 and
     * |x| <= |max|), so the float form of the levels is exact (level_f) */
    const VF flo = V1((float)-nmax), fhi = V1((float)(nmax - 1));
    for (int g = 0; g < G; ++g) {
        iscale[g] = VDIV(V1((float)-nmax), max[g]);
        sumlx[g] = suml2[g] = zero;
    }
    for (int i = 0; i < N; ++i) {
        for (int g = 0; g < G; ++g) {
            const VF fl = KFN(level_f)(VMUL(iscale[g], xt[g][i]), flo, fhi, 0, 1, 1);
            sumlx[g] = VADD(sumlx[g], VMUL(wx[g][i], fl));
            suml2[g] = VADD(suml2[g], VMUL(VMUL(wt[g][i], fl), fl));
        }
    }
    for (int g = 0; g < G; ++g) {
        scale[g] = VKEEPIF(VCMP(suml2[g], zero, _CMP_NEQ_UQ), VDIV(sumlx[g], suml2[g]));
        best[g] = VMUL(scale[g], sumlx[g]);
        liscale[g] = iscale[g];
    }
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        const VF num = V1(-((float)nmax + 0.1f * (float)is)); /* scalar order */
        for (int g = 0; g < G; ++g)
            iscale[g] = VDIV(num, max[g]);
        /* the two groups written out: GCC 12 does not unroll a loop over g */
        VF slx0 = zero, sl20 = zero, slx1 = zero, sl21 = zero;
        const VF is0 = iscale[0], is1 = iscale[1];
        for (int i = 0; i < N; ++i) {
            const VF fl0 = KFN(level_f)(VMUL(is0, xt[0][i]), flo, fhi, 0, 1, 1);
            const VF fl1 = KFN(level_f)(VMUL(is1, xt[1][i]), flo, fhi, 0, 1, 1);
            slx0 = VADD(slx0, VMUL(wx[0][i], fl0));
            slx1 = VADD(slx1, VMUL(wx[1][i], fl1));
            sl20 = VADD(sl20, VMUL(VMUL(wt[0][i], fl0), fl0));
            sl21 = VADD(sl21, VMUL(VMUL(wt[1][i], fl1), fl1));
        }
        sumlx[0] = slx0, suml2[0] = sl20, sumlx[1] = slx1, suml2[1] = sl21;
        for (int g = 0; g < G; ++g) {
            const VM win = MAND(VCMP(suml2[g], zero, _CMP_GT_OQ),
                                VCMP(VMUL(sumlx[g], sumlx[g]), VMUL(best[g], suml2[g]), _CMP_GT_OQ));
            if (!MANY(win))
                continue;
            const VF sc = VDIV(sumlx[g], suml2[g]);
            scale[g] = VBLEND(scale[g], sc, win);
            best[g] = VBLEND(best[g], VMUL(sc, sumlx[g]), win);
            liscale[g] = VBLEND(liscale[g], iscale[g], win);
        }
    }
    /* tiny lanes (amax < GROUP_MAX_EPS): levels 0, scale 0 */
    const VI vnmax = VI1(nmax);
    for (int g = 0; g < G; ++g) {
        int32_t lv[N][LANES];
        for (int i = 0; i < N; ++i) {
            VI l = VNEAREST(VMUL(liscale[g], xt[g][i]));
            l = VIZEROIF(tiny[g], VIADD(VIMIN(VIMAX(l, lo), hi), vnmax));
            VISTORE(lv[i], l);
        }
        for (int j = 0; j < LANES; ++j)
            for (int i = 0; i < N; ++i)
                L[N * LANES * g + N * j + i] = (int8_t)lv[i][j];
        VSTORE(scales + LANES * g, VZEROIF(tiny[g], scale[g]));
    }
}
