/* The default cell's passes in intrinsics, written once for a vector of BL_VW floats and
 * included by _simd.h once per width (AVX2: 8, AVX-512: 16) with the BL_V* macros set (no
 * include guard; the macros are undefined at the end). bl_expf / bl_sigmoidf and bl_tanhf
 * (_activations.h) and the passes of _cell.h and _cellgrad.h, each FMA where gcc contracts the
 * C form to one, so that the results are those of the C forms bit for bit (test_cell.py
 * compares them over every float class). Two differences in the instructions, none in the
 * results: each NaN-passing clamp is one min/max (min(hi, x) returns x when x is NaN), where
 * gcc compiles the C clamp to a compare and a blend; and tanh beyond its clamp is +-1
 * outright, the value gcc's constant folding gives the C form there (the rational form
 * evaluated at the clamp is 1 - 2^-21). */

/* 1 / (1 + exp(-x)) as bl_sigmoidf: -x clamped at 87 (bl_expf's clamp at 88 then changes
 * nothing), bl_expf's clamp at -87.34, Cody-Waite reduction and polynomial; the final
 * 1 + y * 2^n is one FMA, as gcc contracts it. */
BL_VATTR static inline __attribute__((always_inline)) BL_VT BL_VFN(bl_sigmoid)(BL_VT x)
{
    BL_VT m = BL_V(min)(BL_VS(87.0f), BL_V(xor)(x, BL_VS(-0.0f)));
    m = BL_V(max)(BL_VS(-87.33654f), m);
    const BL_VT nf = BL_V(sub)(BL_V(fmadd)(m, BL_VS(1.44269504088896341f), BL_VS(12582912.0f)),
                               BL_VS(12582912.0f));
    m = BL_V(fnmadd)(nf, BL_VS(0.693359375f), m);
    m = BL_V(fmadd)(nf, BL_VS(2.12194440e-4f), m);
    const BL_VT z = BL_V(mul)(m, m);
    BL_VT y = BL_VS(1.9875691500e-4f);
    y = BL_V(fmadd)(y, m, BL_VS(1.3981999507e-3f));
    y = BL_V(fmadd)(y, m, BL_VS(8.3334519073e-3f));
    y = BL_V(fmadd)(y, m, BL_VS(4.1665795894e-2f));
    y = BL_V(fmadd)(y, m, BL_VS(1.6666665459e-1f));
    y = BL_V(fmadd)(y, m, BL_VS(5.0000001201e-1f));
    y = BL_V(add)(BL_V(fmadd)(y, z, m), BL_VS(1.0f));
    return BL_V(div)(BL_VS(1.0f), BL_V(fmadd)(y, BL_VPOW2(nf), BL_VS(1.0f)));
}

/* bl_tanhf: the 13/6 rational form on x clamped to +-c, x itself below 0.0004 in magnitude,
 * and +-1 beyond c (a NaN passes every select). */
BL_VATTR static inline __attribute__((always_inline)) BL_VT BL_VFN(bl_tanh)(BL_VT x)
{
    const BL_VT c = BL_VS(7.90531110763549805f), sign = BL_VS(-0.0f);
    const BL_VT xc = BL_V(min)(c, BL_V(max)(BL_V(xor)(c, sign), x));
    const BL_VT x2 = BL_V(mul)(xc, xc);
    BL_VT p = BL_VS(-2.76076847742355e-16f);
    p = BL_V(fmadd)(p, x2, BL_VS(2.00018790482477e-13f));
    p = BL_V(fmadd)(p, x2, BL_VS(-8.60467152213735e-11f));
    p = BL_V(fmadd)(p, x2, BL_VS(5.12229709037114e-08f));
    p = BL_V(fmadd)(p, x2, BL_VS(1.48572235717979e-05f));
    p = BL_V(fmadd)(p, x2, BL_VS(6.37261928875436e-04f));
    p = BL_V(fmadd)(p, x2, BL_VS(4.89352455891786e-03f));
    p = BL_V(mul)(p, xc);
    BL_VT q = BL_VS(1.19825839466702e-06f);
    q = BL_V(fmadd)(q, x2, BL_VS(1.18534705686654e-04f));
    q = BL_V(fmadd)(q, x2, BL_VS(2.26843463243900e-03f));
    q = BL_V(fmadd)(q, x2, BL_VS(4.89352518554385e-03f));
    const BL_VT ax = BL_V(andnot)(sign, x);
    const BL_VT r = BL_VSEL_GT(ax, c, BL_V(or)(BL_VS(1.0f), BL_V(and)(sign, x)), BL_V(div)(p, q));
    return BL_VSEL_LT(ax, BL_VS(0.0004f), x, r);
}

/* BL_VW floats at p (full), or the lanes of mask (the last units of a row): plain loads and
 * stores where they can, the masked ones are slow on a Zen 1. */
BL_VATTR static inline __attribute__((always_inline)) BL_VT BL_VFN(bl_load)(const float *p,
                                                                           int full, BL_VMT mask)
{
    return full ? BL_V(loadu)(p) : BL_VMASKLOAD(p, mask);
}

BL_VATTR static inline __attribute__((always_inline)) void BL_VFN(bl_store)(float *p, BL_VT v,
                                                                           int full, BL_VMT mask)
{
    if (full)
        BL_V(storeu)(p, v);
    else
        BL_VMASKSTORE(p, mask, v);
}

/* ---- the forward (bl_cell_row, _cell.h) ---- */

/* One vector of units: the four pre-activations, then the new c and h. */
typedef struct {
    BL_VT a[4], c, h;
} BL_VFN(bl_cell);

BL_VATTR static inline __attribute__((always_inline)) void
BL_VFN(bl_cell_load)(BL_VFN(bl_cell) *u, size_t j, size_t H, const float *g, const float *b,
                     const float *c, int full, BL_VMT mask)
{
    for (int k = 0; k < 4; k++)
        u->a[k] = BL_V(add)(BL_VFN(bl_load)(g + k * H + j, full, mask),
                            BL_VFN(bl_load)(b + k * H + j, full, mask));
    u->c = BL_VFN(bl_load)(c + j, full, mask);
}

BL_VATTR static inline __attribute__((always_inline)) void
BL_VFN(bl_cell_store)(const BL_VFN(bl_cell) *u, size_t j, size_t H, float *c, float *h,
                      float *pre, int full, BL_VMT mask)
{
    if (pre != NULL)
        for (int k = 0; k < 4; k++)
            BL_VFN(bl_store)(pre + k * H + j, u->a[k], full, mask);
    BL_VFN(bl_store)(c + j, u->c, full, mask);
    BL_VFN(bl_store)(h + j, u->h, full, mask);
}

/* The pass on NU vectors of units side by side: one vector's pass is a chain of dependent
 * steps (sigmoid f, then c, then tanh c) longer than the out-of-order window reaches, so one
 * vector at a time leaves the cores idle; with two in flight (each step for both, the new c
 * as soon as its inputs are ready) the pass ran 15-17% faster than gcc's vectorized
 * bl_cell_row (AVX2 on a Zen 1, 16 x 256 units: 7.45-7.78 ns a unit against 8.98-9.11;
 * AVX-512 on an Emerald Rapids Xeon, 64 x 256: 1.24 against 1.48, the clone being 16 floats
 * wide too). Three AVX2 vectors spill registers, and all of one vector then all of the other
 * is 5% slower. Same operations as bl_cell_row, contracted as gcc contracts it:
 * c = f * c + (i * g), h = o * tanh(c). */
BL_VATTR static inline __attribute__((always_inline)) void
BL_VFN(bl_cell_pass)(const int NU, BL_VFN(bl_cell) *u)
{
    BL_VT si[2], sf[2], tg[2], so[2];
    for (int v = 0; v < NU; v++)
        sf[v] = BL_VFN(bl_sigmoid)(u[v].a[1]);
    for (int v = 0; v < NU; v++)
        si[v] = BL_VFN(bl_sigmoid)(u[v].a[0]);
    for (int v = 0; v < NU; v++)
        tg[v] = BL_VFN(bl_tanh)(u[v].a[2]);
    for (int v = 0; v < NU; v++)
        u[v].c = BL_V(fmadd)(sf[v], u[v].c, BL_V(mul)(si[v], tg[v]));
    for (int v = 0; v < NU; v++)
        so[v] = BL_VFN(bl_sigmoid)(u[v].a[3]);
    for (int v = 0; v < NU; v++)
        u[v].h = BL_V(mul)(so[v], BL_VFN(bl_tanh)(u[v].c));
}

/* bl_cell_default_rows (_cell.h): rows [0, rows), units [u0, u1) */
BL_VATTR static void BL_VFN(bl_cell_default_rows)(size_t rows, size_t H, size_t u0, size_t u1,
                                                  const float *g, const float *bias, float *c,
                                                  float *h, float *pre)
{
    const size_t U = u1 - u0, W = BL_VW;
    const BL_VMT none = BL_VMASK(0);
    bias += u0;
    for (size_t n = 0; n < rows; n++) {
        const float *gn = g + n * 4 * H + u0;
        float *cn = c + n * H + u0, *hn = h + n * H + u0;
        float *pn = pre != NULL ? pre + n * 4 * H + u0 : NULL;
        BL_VFN(bl_cell) u[2];
        size_t j = 0;
        for (; j + 2 * W <= U; j += 2 * W) {
            BL_VFN(bl_cell_load)(&u[0], j, H, gn, bias, cn, 1, none);
            BL_VFN(bl_cell_load)(&u[1], j + W, H, gn, bias, cn, 1, none);
            BL_VFN(bl_cell_pass)(2, u);
            BL_VFN(bl_cell_store)(&u[0], j, H, cn, hn, pn, 1, none);
            BL_VFN(bl_cell_store)(&u[1], j + W, H, cn, hn, pn, 1, none);
        }
        if (j + W <= U) {
            BL_VFN(bl_cell_load)(&u[0], j, H, gn, bias, cn, 1, none);
            BL_VFN(bl_cell_pass)(1, u);
            BL_VFN(bl_cell_store)(&u[0], j, H, cn, hn, pn, 1, none);
            j += W;
        }
        if (j < U) {
            const BL_VMT mask = BL_VMASK(U - j);
            BL_VFN(bl_cell_load)(&u[0], j, H, gn, bias, cn, 0, mask);
            BL_VFN(bl_cell_pass)(1, u);
            BL_VFN(bl_cell_store)(&u[0], j, H, cn, hn, pn, 0, mask);
        }
    }
}

/* ---- the backward (bl_grad_default_row, _cellgrad.h) ---- */

/* One vector of units (full: all lanes, else those of mask), NU = 2 vectors side by side as
 * in the forward's pass: with AVX2 7.7 ns a unit against the C clones' 11.8 (Zen 1, 16 x 256
 * units). Contracted as gcc contracts the C form: 1 - x * x and dc + (dh * o) * (1 - th * th)
 * are FMAs. */
BL_VATTR static inline __attribute__((always_inline)) void
BL_VFN(bl_grad)(const int NU, size_t j, size_t H, const float *pre, const float *cell,
                const float *cprev, const float *dy, const float *dh_next, float *dc, float *da,
                int full, BL_VMT mask)
{
    BL_VT i[2], f[2], g[2], o[2], th[2], dh[2], d[2];
    const BL_VT one = BL_VS(1.0f);
    for (int v = 0; v < NU; v++) {
        const size_t u = j + BL_VW * v;
        i[v] = BL_VFN(bl_sigmoid)(BL_VFN(bl_load)(pre + u, full, mask));
        f[v] = BL_VFN(bl_sigmoid)(BL_VFN(bl_load)(pre + H + u, full, mask));
    }
    for (int v = 0; v < NU; v++) {
        const size_t u = j + BL_VW * v;
        g[v] = BL_VFN(bl_tanh)(BL_VFN(bl_load)(pre + 2 * H + u, full, mask));
        o[v] = BL_VFN(bl_sigmoid)(BL_VFN(bl_load)(pre + 3 * H + u, full, mask));
    }
    for (int v = 0; v < NU; v++)
        th[v] = BL_VFN(bl_tanh)(BL_VFN(bl_load)(cell + j + BL_VW * v, full, mask));
    for (int v = 0; v < NU; v++) {
        const size_t u = j + BL_VW * v;
        dh[v] = BL_V(add)(BL_VFN(bl_load)(dy + u, full, mask),
                          BL_VFN(bl_load)(dh_next + u, full, mask));
        BL_VFN(bl_store)(da + 3 * H + u,
                         BL_V(mul)(BL_V(mul)(dh[v], th[v]), BL_V(mul)(o[v], BL_V(sub)(one, o[v]))),
                         full, mask);
        d[v] = BL_V(fmadd)(BL_V(mul)(dh[v], o[v]), BL_V(fnmadd)(th[v], th[v], one),
                           BL_VFN(bl_load)(dc + u, full, mask));
        BL_VFN(bl_store)(da + u,
                         BL_V(mul)(BL_V(mul)(d[v], g[v]), BL_V(mul)(i[v], BL_V(sub)(one, i[v]))),
                         full, mask);
        BL_VFN(bl_store)(da + H + u,
                         BL_V(mul)(BL_V(mul)(d[v], BL_VFN(bl_load)(cprev + u, full, mask)),
                                   BL_V(mul)(f[v], BL_V(sub)(one, f[v]))),
                         full, mask);
        BL_VFN(bl_store)(da + 2 * H + u,
                         BL_V(mul)(BL_V(mul)(d[v], i[v]), BL_V(fnmadd)(g[v], g[v], one)), full,
                         mask);
        BL_VFN(bl_store)(dc + u, BL_V(mul)(d[v], f[v]), full, mask);
    }
}

/* bl_grad_default_rows (_cellgrad.h) */
BL_VATTR static void BL_VFN(bl_grad_default_rows)(size_t rows, size_t H, const float *pre,
                                                  const float *cell, const float *cprev,
                                                  const float *dy, size_t ldy,
                                                  const float *dh_next, float *dc, float *da)
{
    const size_t W = BL_VW;
    const BL_VMT none = BL_VMASK(0);
    for (size_t n = 0; n < rows; n++) {
        const float *pn = pre + n * 4 * H, *cn = cell + n * H, *qn = cprev + n * H;
        const float *yn = dy + n * ldy, *hn = dh_next + n * H;
        float *dcn = dc + n * H, *dan = da + n * 4 * H;
        size_t j = 0;
        for (; j + 2 * W <= H; j += 2 * W)
            BL_VFN(bl_grad)(2, j, H, pn, cn, qn, yn, hn, dcn, dan, 1, none);
        if (j + W <= H) {
            BL_VFN(bl_grad)(1, j, H, pn, cn, qn, yn, hn, dcn, dan, 1, none);
            j += W;
        }
        if (j < H)
            BL_VFN(bl_grad)(1, j, H, pn, cn, qn, yn, hn, dcn, dan, 0, BL_VMASK(H - j));
    }
}

#undef BL_VW
#undef BL_VT
#undef BL_VMT
#undef BL_VATTR
#undef BL_VFN
#undef BL_V
#undef BL_VS
#undef BL_VPOW2
#undef BL_VSEL_GT
#undef BL_VSEL_LT
#undef BL_VMASK
#undef BL_VMASKLOAD
#undef BL_VMASKSTORE
