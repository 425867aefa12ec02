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

/* One unit row: gates g [4][H] (order i f g o, not modified), bias [4][H]; c [H] becomes the
 * new cell state, h [H] the new hidden state; keep: also store the pre-activations in pre. */
static inline __attribute__((always_inline)) void
bl_cell_row(size_t H, const float *restrict g, const float *restrict b, float *restrict c,
            float *restrict h, float *restrict pre, int keep)
{
    for (size_t j = 0; j < H; j++) {
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

/* Rows [0, rows) of a step: g, pre [rows][4H]; c, h [rows][H]; pre NULL: inference. */
BL_CLONES
static void bl_cell_default_rows(size_t rows, size_t H, const float *g, const float *bias,
                                 float *c, float *h, float *pre)
{
    for (size_t n = 0; n < rows; n++) {
        if (pre != NULL)
            bl_cell_row(H, g + n * 4 * H, bias, c + n * H, h + n * H, pre + n * 4 * H, 1);
        else
            bl_cell_row(H, g + n * 4 * H, bias, c + n * H, h + n * H, NULL, 0);
    }
}

#endif
