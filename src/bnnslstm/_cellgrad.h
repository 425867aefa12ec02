/* The backward's elementwise pass of one step (spec 4.3), one sample's H units at a time.
 * Plain loops over restrict pointers, in per-ISA clones, so that they vectorize: written in
 * Cython they compiled to scalar SSE code (7% of a stacked bidirectional training step). */
#ifndef BNNSLSTM_CELLGRAD_H
#define BNNSLSTM_CELLGRAD_H

#include <stddef.h>

#include "_activations.h"
#include "_simd.h"
#include "_isa.h"

/* With dh = dy + dh_next: da_o = dh * act_h(c) * o' and dc += dh * o * act_h'(c). */
BL_CLONES
static void bl_grad_output_row(size_t H, const float *restrict dy, const float *restrict dh_next,
                               const float *restrict th, const float *restrict thd,
                               const float *restrict o, const float *restrict o_der,
                               float *restrict da_o, float *restrict dc)
{
    for (size_t j = 0; j < H; j++) {
        float dh = dy[j] + dh_next[j];
        da_o[j] = dh * th[j] * o_der[j];
        dc[j] += dh * o[j] * thd[j];
    }
}

/* Gates i, f, g (val/der: the [4][H] gate values and derivatives, order i f g o):
 * da_i = dc * g * i', da_f = dc * c_prev * f', da_g = dc * i * g'; then dc becomes dc * f. */
BL_CLONES
static void bl_grad_cell_row(size_t H, const float *restrict val, const float *restrict der,
                             const float *restrict cprev, float *restrict dc,
                             float *restrict da)
{
    for (size_t j = 0; j < H; j++) {
        float d = dc[j];
        da[j] = d * val[2 * H + j] * der[j];
        da[H + j] = d * cprev[j] * der[H + j];
        da[2 * H + j] = d * val[j] * der[2 * H + j];
        dc[j] = d * val[H + j];
    }
}

/* The default cell (sigmoid i, f, o; tanh g and hidden; no peepholes) in one sweep per unit:
 * the gate values and derivatives are recomputed from the cached pre-activations in
 * registers, where the general pass writes them to val/der/th/thd and reads them back (seven
 * sweeps of a row). Same arithmetic as bl_activation_grad_row, bl_grad_output_row and
 * bl_grad_cell_row. pre [4][H] (order i f g o), cell: c after the step, cprev: c before it;
 * dc [H] comes in as dL/dc of this step's output and leaves as dL/dc_prev. */
static inline __attribute__((always_inline)) void
bl_grad_default_row(size_t H, const float *restrict pre, const float *restrict cell,
                    const float *restrict cprev, const float *restrict dy,
                    const float *restrict dh_next, float *restrict dc, float *restrict da)
{
    for (size_t j = 0; j < H; j++) {
        float i = bl_sigmoidf(pre[j]), f = bl_sigmoidf(pre[H + j]);
        float g = bl_tanhf(pre[2 * H + j]), o = bl_sigmoidf(pre[3 * H + j]);
        float th = bl_tanhf(cell[j]);
        float dh = dy[j] + dh_next[j];
        da[3 * H + j] = dh * th * (o * (1.0f - o));
        float d = dc[j] + dh * o * (1.0f - th * th);
        da[j] = d * g * (i * (1.0f - i));
        da[H + j] = d * cprev[j] * (f * (1.0f - f));
        da[2 * H + j] = d * i * (1.0f - g * g);
        dc[j] = d * f;
    }
}

/* Rows [0, rows) of a step: pre, da [rows][4H]; cell, cprev, dh_next, dc [rows][H]; dy rows
 * ldy apart. Without clones (_isa.h) the body of a build per ISA level, as _cell.h's. */
BL_CLONED(bl_grad_default_rows_c, bl_grad_default_rows)(size_t rows, size_t H, const float *pre,
                                                       const float *cell, const float *cprev,
                                                       const float *dy, size_t ldy,
                                                       const float *dh_next, float *dc,
                                                       float *da)
{
    for (size_t n = 0; n < rows; n++)
        bl_grad_default_row(H, pre + n * 4 * H, cell + n * H, cprev + n * H, dy + n * ldy,
                            dh_next + n * H, dc + n * H, da + n * 4 * H);
}

BL_BY_LEVEL(bl_grad_default_rows_c, bl_grad_default_rows,
            (size_t rows, size_t H, const float *pre, const float *cell, const float *cprev,
             const float *dy, size_t ldy, const float *dh_next, float *dc, float *da),
            (rows, H, pre, cell, cprev, dy, ldy, dh_next, dc, da))

/* The pass for the CPU: the intrinsics one of its width (bit-identical, faster: _simd.h) or
 * the C clones. */
static inline void bl_grad_default_rows(size_t rows, size_t H, const float *pre,
                                        const float *cell, const float *cprev, const float *dy,
                                        size_t ldy, const float *dh_next, float *dc, float *da)
{
#if BL_HAVE_SIMD_PASSES
    switch (bl_simd_width()) {
    case 16:
        bl_grad_default_rows16(rows, H, pre, cell, cprev, dy, ldy, dh_next, dc, da);
        return;
    case 8:
        bl_grad_default_rows8(rows, H, pre, cell, cprev, dy, ldy, dh_next, dc, da);
        return;
    }
#endif
    bl_grad_default_rows_c(rows, H, pre, cell, cprev, dy, ldy, dh_next, dc, da);
}

/* The intrinsics pass of `width` floats (8, 16: wherever the CPU can run it, -1 where this
 * build or CPU has none) or, width 0, the C clones' (tests). */
static inline int bl_grad_default_rows_on(int width, size_t rows, size_t H, const float *pre,
                                          const float *cell, const float *cprev,
                                          const float *dy, size_t ldy, const float *dh_next,
                                          float *dc, float *da)
{
    if (width == 0)
        bl_grad_default_rows_c(rows, H, pre, cell, cprev, dy, ldy, dh_next, dc, da);
#if BL_HAVE_SIMD_PASSES
    else if (width == 16 && bl_simd_runs(16))
        bl_grad_default_rows16(rows, H, pre, cell, cprev, dy, ldy, dh_next, dc, da);
    else if (width == 8 && bl_simd_runs(8))
        bl_grad_default_rows8(rows, H, pre, cell, cprev, dy, ldy, dh_next, dc, da);
#endif
    else
        return -1;
    return 0;
}

/* acc[j] += a[r][j] over rows [0, rows), j < n: the bias gradient, summed step by step while
 * the step's dA is still in cache (after the loop, dA is read from memory). */
BL_CLONES
static void bl_add_rows(size_t rows, size_t n, const float *restrict a, size_t lda,
                        float *restrict acc)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < n; j++)
            acc[j] += a[r * lda + j];
}

#endif
