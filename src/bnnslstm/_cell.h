/* The forward's elementwise pass of one step (spec 3.5) for the default gate functions: sigmoid
 * for i, f and o, tanh for g and for the hidden activation, no peepholes (every LSTM that
 * does not ask for something else). One sweep over the four gates of each unit, in per-ISA
 * clones: the general pass in _forward.pyx sweeps each row seven times (bias, four
 * activations, cell update, output), partly in scalar SSE code, and was about 10% of a
 * stacked bidirectional forward. The arithmetic is the general pass's: the same bl_sigmoidf
 * and bl_tanhf, c = f * c + i * g, h = o * tanh(c). On AVX2 CPUs without AVX-512 (gcc
 * builds for x86-64 Linux) the same pass runs in intrinsics (bl_cell_default_rows_avx2),
 * with the same results; there every unit also takes the same instructions wherever it
 * lies in the row, where gcc's clones finish a row that is not a whole number of vectors in
 * scalar code, which may contract c = f * c + i * g the other way (1 ulp apart). */
#ifndef BNNSLSTM_CELL_H
#define BNNSLSTM_CELL_H

#include <stddef.h>

#include "_act8.h"
#include "_activations.h"
#include "_isa.h"

/* Units [0, U) of one row: gates g [4][H] (order i f g o, gate stride H, not modified), bias
 * [4][H]; c [U] becomes the new cell state, h [U] the new hidden state; keep: also store the
 * pre-activations in pre (gate stride H). */
static inline __attribute__((always_inline)) void
bl_cell_row(size_t U, size_t H, const float *restrict g, const float *restrict b,
            float *restrict c, float *restrict h, float *restrict pre, int keep)
{
    for (size_t j = 0; j < U; j++) {
        float ai = g[j] + b[j], af = g[H + j] + b[H + j];
        float ag = g[2 * H + j] + b[2 * H + j], ao = g[3 * H + j] + b[3 * H + j];
        if (keep) {
            pre[j] = ai;
            pre[H + j] = af;
            pre[2 * H + j] = ag;
            pre[3 * H + j] = ao;
        }
        float cn = bl_sigmoidf(af) * c[j] + bl_sigmoidf(ai) * bl_tanhf(ag);
        c[j] = cn;
        h[j] = bl_sigmoidf(ao) * bl_tanhf(cn);
    }
}

/* Rows [0, rows), units [u0, u1) of a step: g, pre [rows][4H]; c, h [rows][H]; pre NULL:
 * inference. (Two threads of a unit split each take their units of every row.) Without clones
 * (_isa.h) the body of a build per ISA level, below. */
BL_CLONED(bl_cell_default_rows_c, bl_cell_default_rows)(size_t rows, size_t H, size_t u0,
                                                       size_t u1, const float *g,
                                                       const float *bias, float *c, float *h,
                                                       float *pre)
{
    for (size_t n = 0; n < rows; n++) {
        if (pre != NULL)
            bl_cell_row(u1 - u0, H, g + n * 4 * H + u0, bias + u0, c + n * H + u0,
                        h + n * H + u0, pre + n * 4 * H + u0, 1);
        else
            bl_cell_row(u1 - u0, H, g + n * 4 * H + u0, bias + u0, c + n * H + u0,
                        h + n * H + u0, NULL, 0);
    }
}

/* Without clones, each level's build (at the baseline alone clang's pass of 64 rows x 512
 * units took 243 us a step, its AVX-512 build 53-61: 9% of a forward then) */
BL_BY_LEVEL(bl_cell_default_rows_c, bl_cell_default_rows,
            (size_t rows, size_t H, size_t u0, size_t u1, const float *g, const float *bias,
             float *c, float *h, float *pre),
            (rows, H, u0, u1, g, bias, c, h, pre))

#if BL_HAVE_AVX2_PASSES
/* 8 units of bl_cell_row in AVX2: the four pre-activations, then the new c and h. */
typedef struct {
    __m256 a[4], c, h;
} bl_cell8;

/* full: all 8 lanes, else the lanes of mask (bl_load8) */
BL_AVX2 static inline __attribute__((always_inline)) void
bl_cell8_load(bl_cell8 *u, size_t j, size_t H, const float *g, const float *b, const float *c,
              int full, __m256i mask)
{
    for (int k = 0; k < 4; k++)
        u->a[k] = _mm256_add_ps(bl_load8(g + k * H + j, full, mask),
                                bl_load8(b + k * H + j, full, mask));
    u->c = bl_load8(c + j, full, mask);
}

BL_AVX2 static inline __attribute__((always_inline)) void
bl_cell8_store(const bl_cell8 *u, size_t j, size_t H, float *c, float *h, float *pre, int full,
               __m256i mask)
{
    if (pre != NULL)
        for (int k = 0; k < 4; k++)
            bl_store8(pre + k * H + j, u->a[k], full, mask);
    bl_store8(c + j, u->c, full, mask);
    bl_store8(h + j, u->h, full, mask);
}

/* The pass on NU vectors of units side by side: one vector's pass is a chain of dependent
 * steps (sigmoid f, then c, then tanh c) longer than the out-of-order window reaches, so one
 * vector at a time leaves the cores idle; with two in flight (each step for both, the new c
 * as soon as its inputs are ready) the pass ran 15-17% faster than gcc's vectorized
 * bl_cell_row (Zen 1, 16 x 256 units: 7.45-7.78 ns a unit against 8.98-9.11; three vectors
 * spill registers, all of one vector then all of the other is 5% slower). Same operations as
 * bl_cell_row, contracted as gcc contracts it: c = f * c + (i * g), h = o * tanh(c). */
BL_AVX2 static inline __attribute__((always_inline)) void bl_cell8_pass(const int NU, bl_cell8 *u)
{
    __m256 si[2], sf[2], tg[2], so[2];
    for (int v = 0; v < NU; v++)
        sf[v] = bl_sigmoid8(u[v].a[1]);
    for (int v = 0; v < NU; v++)
        si[v] = bl_sigmoid8(u[v].a[0]);
    for (int v = 0; v < NU; v++)
        tg[v] = bl_tanh8(u[v].a[2]);
    for (int v = 0; v < NU; v++)
        u[v].c = _mm256_fmadd_ps(sf[v], u[v].c, _mm256_mul_ps(si[v], tg[v]));
    for (int v = 0; v < NU; v++)
        so[v] = bl_sigmoid8(u[v].a[3]);
    for (int v = 0; v < NU; v++)
        u[v].h = _mm256_mul_ps(so[v], bl_tanh8(u[v].c));
}

BL_AVX2 static void bl_cell_default_rows_avx2(size_t rows, size_t H, size_t u0, size_t u1,
                                              const float *g, const float *bias, float *c,
                                              float *h, float *pre)
{
    const size_t U = u1 - u0;
    bias += u0;
    for (size_t n = 0; n < rows; n++) {
        const float *gn = g + n * 4 * H + u0;
        float *cn = c + n * H + u0, *hn = h + n * H + u0;
        float *pn = pre != NULL ? pre + n * 4 * H + u0 : NULL;
        const __m256i none = _mm256_setzero_si256();
        bl_cell8 u[2];
        size_t j = 0;
        for (; j + 16 <= U; j += 16) {
            bl_cell8_load(&u[0], j, H, gn, bias, cn, 1, none);
            bl_cell8_load(&u[1], j + 8, H, gn, bias, cn, 1, none);
            bl_cell8_pass(2, u);
            bl_cell8_store(&u[0], j, H, cn, hn, pn, 1, none);
            bl_cell8_store(&u[1], j + 8, H, cn, hn, pn, 1, none);
        }
        if (j + 8 <= U) {
            bl_cell8_load(&u[0], j, H, gn, bias, cn, 1, none);
            bl_cell8_pass(1, u);
            bl_cell8_store(&u[0], j, H, cn, hn, pn, 1, none);
            j += 8;
        }
        if (j < U) {
            const __m256i mask = bl_mask8(U - j);
            bl_cell8_load(&u[0], j, H, gn, bias, cn, 0, mask);
            bl_cell8_pass(1, u);
            bl_cell8_store(&u[0], j, H, cn, hn, pn, 0, mask);
        }
    }
}
#endif

/* The pass for the CPU: the AVX2 one (bit-identical, faster: _act8.h) or the C clones. */
static inline void bl_cell_default_rows(size_t rows, size_t H, size_t u0, size_t u1,
                                        const float *g, const float *bias, float *c, float *h,
                                        float *pre)
{
#if BL_HAVE_AVX2_PASSES
    if (bl_avx2_passes()) {
        bl_cell_default_rows_avx2(rows, H, u0, u1, g, bias, c, h, pre);
        return;
    }
#endif
    bl_cell_default_rows_c(rows, H, u0, u1, g, bias, c, h, pre);
}

/* The AVX2 pass (avx2 = 1, wherever the CPU can run it; -1 where this build or CPU has none)
 * or the C clones' (tests). */
static inline int bl_cell_default_rows_on(int avx2, size_t rows, size_t H, size_t u0,
                                          size_t u1, const float *g, const float *bias,
                                          float *c, float *h, float *pre)
{
    if (!avx2)
        bl_cell_default_rows_c(rows, H, u0, u1, g, bias, c, h, pre);
#if BL_HAVE_AVX2_PASSES
    else if (bl_avx2_runs())
        bl_cell_default_rows_avx2(rows, H, u0, u1, g, bias, c, h, pre);
#endif
    else
        return -1;
    return 0;
}

#endif
