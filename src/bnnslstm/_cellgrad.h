/* The backward's elementwise pass of one step (spec 4.3), one sample's H units at a time.
 * Plain loops over restrict pointers, in per-ISA clones, so that they vectorize: written in
 * Cython they compiled to scalar SSE code (7% of a stacked bidirectional training step). */
#ifndef BNNSLSTM_CELLGRAD_H
#define BNNSLSTM_CELLGRAD_H

#include <stddef.h>

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

#endif
