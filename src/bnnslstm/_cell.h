/* The forward's elementwise pass of one step (spec 3.5) for the default gate functions: sigmoid
 * for i, f and o, tanh for g and for the hidden activation, no peepholes (every LSTM that
 * does not ask for something else). One sweep over the four gates of each unit, in per-ISA
 * clones: the general pass in _forward.pyx sweeps each row seven times (bias, four
 * activations, cell update, output), partly in scalar SSE code, and was about 10% of a
 * stacked bidirectional forward. The arithmetic is the general pass's: the same bl_sigmoidf
 * and bl_tanhf, c = f * c + i * g, h = o * tanh(c). On AVX2 and AVX-512 CPUs (gcc builds
 * for x86-64 Linux) the same pass runs in intrinsics (_simd.h), with the same results; there
 * every unit also takes the same instructions wherever it lies in the row, where gcc's clones
 * finish a row that is not a whole number of vectors in scalar code, which may contract
 * c = f * c + i * g the other way (1 ulp apart). */
#ifndef BNNSLSTM_CELL_H
#define BNNSLSTM_CELL_H

#include <stddef.h>

#include "_activations.h"
#include "_simd.h"
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

/* The pass for the CPU: the intrinsics one of its width (bit-identical, faster: _simd.h) or
 * the C clones. On AVX-512 the intrinsics pass runs the inference only (db_train_h256_b64_t150's
 * forward 1-2.5% faster): keeping pre (training), it ran slower than the clone, alone into cold
 * memory as the training cache is (150 steps of 64 x 256 units: 4.1 against 3.9 ms) and in a
 * training step (perf, t150 on an Emerald Rapids Xeon: 3.1% against 2.3%, even with pre
 * stored as soon as made, which made it 9% faster alone). */
static inline void bl_cell_default_rows(size_t rows, size_t H, size_t u0, size_t u1,
                                        const float *g, const float *bias, float *c, float *h,
                                        float *pre)
{
#if BL_HAVE_SIMD_PASSES
    switch (bl_simd_width()) {
    case 16:
        if (pre != NULL)
            break;
        bl_cell_default_rows16(rows, H, u0, u1, g, bias, c, h, pre);
        return;
    case 8:
        bl_cell_default_rows8(rows, H, u0, u1, g, bias, c, h, pre);
        return;
    }
#endif
    bl_cell_default_rows_c(rows, H, u0, u1, g, bias, c, h, pre);
}

/* The intrinsics pass of `width` floats (8, 16: wherever the CPU can run it, -1 where this
 * build or CPU has none) or, width 0, the C clones' (tests). */
static inline int bl_cell_default_rows_on(int width, size_t rows, size_t H, size_t u0,
                                          size_t u1, const float *g, const float *bias,
                                          float *c, float *h, float *pre)
{
    if (width == 0)
        bl_cell_default_rows_c(rows, H, u0, u1, g, bias, c, h, pre);
#if BL_HAVE_SIMD_PASSES
    else if (width == 16 && bl_simd_runs(16))
        bl_cell_default_rows16(rows, H, u0, u1, g, bias, c, h, pre);
    else if (width == 8 && bl_simd_runs(8))
        bl_cell_default_rows8(rows, H, u0, u1, g, bias, c, h, pre);
#endif
    else
        return -1;
    return 0;
}

#endif
