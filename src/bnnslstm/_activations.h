/* Elementwise activations of spec section 2.3 over a row of floats, in place.
 *
 * Plain C so that gcc/clang vectorize the loops: sigmoid and tanh (the default LSTM
 * activations) use branch-free polynomial/rational forms with no libm call; the rarely used
 * functions may call libm. NaN propagates through every function (comparisons are written
 * so that a NaN input falls through to the arithmetic). _simd_body.h repeats bl_expf,
 * bl_sigmoidf and bl_tanhf in intrinsics for the default cell's passes: a change to them here
 * must be made there too (test_cell.py compares the two bit for bit).
 */
#ifndef BNNSLSTM_ACTIVATIONS_H
#define BNNSLSTM_ACTIVATIONS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_isa.h"

/* exp(x): Cephes expf (Cody-Waite reduction, degree-6 polynomial), relative error < 2e-7.
 * Clamped to [-87.3, 88] so that 2^n stays a normal float. A NaN passes the clamps and makes
 * y NaN, and y * scale is then NaN whatever the scale: no select is needed for it (dropping
 * the select made the forward's elementwise pass 9% faster: 8.4 -> 7.7 ns per unit, 64 x 256,
 * Zen 1). */
static inline float bl_expf(float x)
{
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.33654f ? -87.33654f : x;
    /* n = round(x / ln 2) without a branch: adding 1.5 * 2^23 rounds to an integer */
    float nf = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    int32_t n = (int32_t)nf;
    x = x - nf * 0.693359375f;
    x = x + nf * 2.12194440e-4f;
    float z = x * x;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

/* tanh(x): odd rational approximation (13/6), the form Eigen uses; |error| ~ 1 ulp. */
static inline float bl_tanhf(float x)
{
    const float c = 7.90531110763549805f;
    float xc = x > c ? c : (x < -c ? -c : x);
    float x2 = xc * xc;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * xc;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    float r = p / q;
    return fabsf(x) < 0.0004f ? x : r;
}

/* sigmoid(x) = 1 / (1 + exp(-x)); -x clamped at 87 so the result stays a normal float. */
static inline float bl_sigmoidf(float x)
{
    float m = -x;
    m = m > 87.0f ? 87.0f : m;
    return 1.0f / (1.0f + bl_expf(m));
}

/* min/clamp that let NaN through (fminf/fmaxf would drop it). */
static inline float bl_minf(float x, float hi) { return x > hi ? hi : x; }
static inline float bl_clampf(float x, float lo, float hi) { return x < lo ? lo : bl_minf(x, hi); }

/* log(1 + exp(z)) without overflow. */
static inline float bl_softplus1(float z)
{
    return (z > 0.0f ? z : 0.0f) + log1pf(bl_expf(-fabsf(z)));
}

#define BL_LOOP(expr) for (size_t j = 0; j < n; j++) { float x = v[j]; v[j] = (expr); } break

/* v[j] = f(v[j]) for the BNNSActivationFunction `fn` (validated as elementwise). */
BL_CLONES
static void bl_activation_row(uint32_t fn, float alpha, float beta, float *restrict v, size_t n)
{
    const float selu_l = 1.0507009873554804934f, selu_a = 1.6732632423543772848f;
    switch (fn) {
    case 0: break;                                                   /* Identity */
    case 1: BL_LOOP(x < 0.0f ? 0.0f : x);                            /* RectifiedLinear */
    case 2: BL_LOOP(x < 0.0f ? alpha * x : x);                       /* LeakyRectifiedLinear */
    case 3: BL_LOOP(bl_sigmoidf(x));                                 /* Sigmoid */
    case 4: BL_LOOP(bl_tanhf(x));                                    /* Tanh */
    case 5: BL_LOOP(alpha * bl_tanhf(beta * x));                     /* ScaledTanh */
    case 6: BL_LOOP(fabsf(x));                                       /* Abs */
    case 7: BL_LOOP(alpha * x);                                      /* Linear */
    case 8: BL_LOOP(bl_clampf(x, alpha, beta));                        /* Clamp */
    case 12: BL_LOOP(0.5f * x * (1.0f + bl_tanhf(alpha * (x + beta * x * x * x))));
    case 15: BL_LOOP(bl_clampf(alpha * x + beta, 0.0f, 1.0f));        /* HardSigmoid */
    case 16: BL_LOOP(alpha * bl_softplus1(beta * x));                /* Softplus */
    case 17: BL_LOOP(x / (1.0f + fabsf(x)));                         /* Softsign */
    case 18: BL_LOOP(x < 0.0f ? alpha * expm1f(x) : x);              /* ELU */
    case 19: BL_LOOP(bl_minf(x < 0.0f ? alpha * x : x, beta));        /* ClampedLeakyReLU */
    case 20: BL_LOOP(alpha * x + beta);                              /* LinearWithBias */
    case 22: BL_LOOP(-bl_softplus1(-x));                             /* LogSigmoid */
    case 23: BL_LOOP(x < 0.0f ? selu_l * selu_a * expm1f(x) : selu_l * x);   /* SELU */
    case 24: BL_LOOP(x < 0.0f ? alpha * expm1f(x / alpha) : x);      /* CELU */
    case 25: BL_LOOP(fabsf(x) < fabsf(alpha) ? 0.0f : x);            /* HardShrink */
    case 26: BL_LOOP(fabsf(x) < fabsf(alpha) ? 0.0f : x - copysignf(alpha, x)); /* SoftShrink */
    case 27: BL_LOOP(x - bl_tanhf(x));                               /* TanhShrink */
    case 28: BL_LOOP(x <= alpha ? beta : x);                         /* Threshold */
    case 30: BL_LOOP(x * bl_clampf(x + 3.0f, 0.0f, 6.0f) / 6.0f);     /* HardSwish */
    case 31: BL_LOOP(x * bl_sigmoidf(x));                            /* SiLU */
    case 32: BL_LOOP(bl_clampf(x, 0.0f, 6.0f));                        /* ReLU6 */
    case 33: BL_LOOP(erff(x));                                       /* Erf */
    case 34: BL_LOOP(0.5f * x * (1.0f + erff(x * 0.70710678118654752f)));    /* GELU */
    case 35: BL_LOOP(x * bl_sigmoidf(1.702f * x));                   /* GELUApproximationSigmoid */
    default: break;  /* unreachable: validation rejects every other value */
    }
}

#undef BL_LOOP

/* val[j] = f(pre[j]) and der[j] = f'(pre[j]) for the backward pass. At a kink the derivative is
 * the one of the branch that the forward formula takes for that x (e.g. ReLU'(0) = 1). */
#define BL_GRAD(value, deriv) \
    for (size_t j = 0; j < n; j++) { float x = pre[j]; val[j] = (value); der[j] = (deriv); } break

BL_CLONES
static void bl_activation_grad_row(uint32_t fn, float alpha, float beta, const float *restrict pre,
                                   float *restrict val, float *restrict der, size_t n)
{
    const float selu_l = 1.0507009873554804934f, selu_a = 1.6732632423543772848f;
    const float two_over_sqrt_pi = 1.1283791670955126f, inv_sqrt_2pi = 0.3989422804014327f;
    switch (fn) {
    case 0: BL_GRAD(x, 1.0f);
    case 1: BL_GRAD(x < 0.0f ? 0.0f : x, x < 0.0f ? 0.0f : 1.0f);
    case 2: BL_GRAD(x < 0.0f ? alpha * x : x, x < 0.0f ? alpha : 1.0f);
    case 3: for (size_t j = 0; j < n; j++) {
            float s = bl_sigmoidf(pre[j]); val[j] = s; der[j] = s * (1.0f - s);
        } break;
    case 4: for (size_t j = 0; j < n; j++) {
            float t = bl_tanhf(pre[j]); val[j] = t; der[j] = 1.0f - t * t;
        } break;
    case 5: for (size_t j = 0; j < n; j++) {
            float t = bl_tanhf(beta * pre[j]); val[j] = alpha * t; der[j] = alpha * beta * (1.0f - t * t);
        } break;
    case 6: BL_GRAD(fabsf(x), x < 0.0f ? -1.0f : 1.0f);
    case 7: BL_GRAD(alpha * x, alpha);
    case 8: BL_GRAD(bl_clampf(x, alpha, beta), (x < alpha || x > beta) ? 0.0f : 1.0f);
    case 12: for (size_t j = 0; j < n; j++) {
            float x = pre[j], t = bl_tanhf(alpha * (x + beta * x * x * x));
            val[j] = 0.5f * x * (1.0f + t);
            der[j] = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * alpha * (1.0f + 3.0f * beta * x * x);
        } break;
    case 15: BL_GRAD(bl_clampf(alpha * x + beta, 0.0f, 1.0f),
                     (alpha * x + beta < 0.0f || alpha * x + beta > 1.0f) ? 0.0f : alpha);
    case 16: BL_GRAD(alpha * bl_softplus1(beta * x), alpha * beta * bl_sigmoidf(beta * x));
    case 17: BL_GRAD(x / (1.0f + fabsf(x)), 1.0f / ((1.0f + fabsf(x)) * (1.0f + fabsf(x))));
    case 18: BL_GRAD(x < 0.0f ? alpha * expm1f(x) : x, x < 0.0f ? alpha * bl_expf(x) : 1.0f);
    case 19: BL_GRAD(bl_minf(x < 0.0f ? alpha * x : x, beta),
                     x < 0.0f ? (alpha * x > beta ? 0.0f : alpha) : (x > beta ? 0.0f : 1.0f));
    case 20: BL_GRAD(alpha * x + beta, alpha);
    case 22: BL_GRAD(-bl_softplus1(-x), bl_sigmoidf(-x));
    case 23: BL_GRAD(x < 0.0f ? selu_l * selu_a * expm1f(x) : selu_l * x,
                     x < 0.0f ? selu_l * selu_a * bl_expf(x) : selu_l);
    case 24: BL_GRAD(x < 0.0f ? alpha * expm1f(x / alpha) : x, x < 0.0f ? bl_expf(x / alpha) : 1.0f);
    case 25: BL_GRAD(fabsf(x) < fabsf(alpha) ? 0.0f : x, fabsf(x) < fabsf(alpha) ? 0.0f : 1.0f);
    case 26: BL_GRAD(fabsf(x) < fabsf(alpha) ? 0.0f : x - copysignf(alpha, x),
                     fabsf(x) < fabsf(alpha) ? 0.0f : 1.0f);
    case 27: for (size_t j = 0; j < n; j++) {
            float t = bl_tanhf(pre[j]); val[j] = pre[j] - t; der[j] = t * t;
        } break;
    case 28: BL_GRAD(x <= alpha ? beta : x, x <= alpha ? 0.0f : 1.0f);
    case 30: BL_GRAD(x * bl_clampf(x + 3.0f, 0.0f, 6.0f) / 6.0f,
                     bl_clampf(x + 3.0f, 0.0f, 6.0f) / 6.0f
                     + ((x + 3.0f < 0.0f || x + 3.0f > 6.0f) ? 0.0f : x / 6.0f));
    case 31: for (size_t j = 0; j < n; j++) {
            float x = pre[j], s = bl_sigmoidf(x); val[j] = x * s; der[j] = s + x * s * (1.0f - s);
        } break;
    case 32: BL_GRAD(bl_clampf(x, 0.0f, 6.0f), (x < 0.0f || x > 6.0f) ? 0.0f : 1.0f);
    case 33: BL_GRAD(erff(x), two_over_sqrt_pi * bl_expf(-x * x));
    case 34: BL_GRAD(0.5f * x * (1.0f + erff(x * 0.70710678118654752f)),
                     0.5f * (1.0f + erff(x * 0.70710678118654752f))
                     + x * inv_sqrt_2pi * bl_expf(-0.5f * x * x));
    case 35: for (size_t j = 0; j < n; j++) {
            float x = pre[j], s = bl_sigmoidf(1.702f * x);
            val[j] = x * s; der[j] = s + 1.702f * x * s * (1.0f - s);
        } break;
    default: break;  /* unreachable: validation rejects every other value */
    }
}

#undef BL_GRAD

/* Flush denormals to zero inside the kernel (saturated gates produce them, and they are
 * many times slower on most CPUs); the caller's FP state is restored on the way out. */
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <xmmintrin.h>
typedef unsigned int bl_fpstate;
static inline bl_fpstate bl_ftz_enter(void)
{
    bl_fpstate s = _mm_getcsr();
    _mm_setcsr(s | 0x8040u);  /* FTZ (bit 15) | DAZ (bit 6) */
    return s;
}
static inline void bl_ftz_leave(bl_fpstate s) { _mm_setcsr(s); }
#elif defined(__aarch64__)
typedef uint64_t bl_fpstate;
static inline bl_fpstate bl_ftz_enter(void)
{
    uint64_t s;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(s));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(s | (1ull << 24)));  /* FZ */
    return s;
}
static inline void bl_ftz_leave(bl_fpstate s) { __asm__ __volatile__("msr fpcr, %0" : : "r"(s)); }
#else
typedef int bl_fpstate;
static inline bl_fpstate bl_ftz_enter(void) { return 0; }
static inline void bl_ftz_leave(bl_fpstate s) { (void)s; }
#endif

#endif
