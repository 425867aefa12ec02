/* The forward's elementwise pass of one step (spec 3.5) for the default gate functions: sigmoid
 * for i, f and o, tanh for g and for the hidden activation, no peepholes (every LSTM that
 * does not ask for something else). One sweep over the four gates of each unit, in per-ISA
 * clones: the general pass in _forward.pyx sweeps each row seven times (bias, four
 * activations, cell update, output), partly in scalar SSE code, and was about 10% of a
 * stacked bidirectional forward. The arithmetic is the general pass's: the same bl_sigmoidf
 * and bl_tanhf, c = f * c + i * g, h = o * tanh(c). */
#ifndef BNNSLSTM_CELL_H
#define BNNSLSTM_CELL_H

#include <stddef.h>

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
 * inference. (Two threads of a unit split each take their units of every row.) */
BL_CLONES
static void bl_cell_default_rows(size_t rows, size_t H, size_t u0, size_t u1, const float *g,
                                 const float *bias, float *c, float *h, float *pre)
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

#endif
