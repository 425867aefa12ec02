/* bl_sigmoidf and bl_tanhf (_activations.h) on 8 floats in AVX2 intrinsics, for the default
 * cell's passes on CPUs that take the narrow blocking (_cell.h, _cellgrad.h).
 *
 * The same operations, each FMA where gcc contracts the C form to one, so that the results
 * are those of the C forms bit for bit (test_cell.py compares them over every float class).
 * Two differences in the instructions, none in the results: each NaN-passing clamp is one
 * vminps/vmaxps (minps(hi, x) returns x when x is NaN), where gcc compiles the C clamp to a
 * compare and a blend; and tanh beyond its clamp is +-1 outright, the value gcc's constant
 * folding gives the C form there (the rational form evaluated at the clamp is 1 - 2^-21). */
#ifndef BNNSLSTM_ACT8_H
#define BNNSLSTM_ACT8_H

#include "_isa.h"

/* Built where the C passes are gcc's per-ISA clones (_isa.h), whose results these repeat
 * (another compiler may fold and contract the C forms otherwise), or gcc's build of them for a
 * baseline with FMA (without clones, on a baseline without FMA, they would differ: the C
 * passes run there on every CPU). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && (!defined(BL_NO_CLONES) || defined(__FMA__))
#define BL_HAVE_AVX2_PASSES 1

#include <immintrin.h>

#define BL_AVX2 __attribute__((target("avx2,fma")))
#define BL_S8 _mm256_set1_ps

/* 1 / (1 + exp(-x)) as bl_sigmoidf: -x clamped at 87 (bl_expf's clamp at 88 then changes
 * nothing), bl_expf's clamp at -87.34, Cody-Waite reduction and polynomial; the final
 * 1 + y * 2^n is one FMA, as gcc contracts it. */
BL_AVX2 static inline __attribute__((always_inline)) __m256 bl_sigmoid8(__m256 x)
{
    __m256 m = _mm256_min_ps(BL_S8(87.0f), _mm256_xor_ps(x, BL_S8(-0.0f)));
    m = _mm256_max_ps(BL_S8(-87.33654f), m);
    const __m256 nf = _mm256_sub_ps(
        _mm256_fmadd_ps(m, BL_S8(1.44269504088896341f), BL_S8(12582912.0f)), BL_S8(12582912.0f));
    const __m256i n = _mm256_cvttps_epi32(nf);
    m = _mm256_fnmadd_ps(nf, BL_S8(0.693359375f), m);
    m = _mm256_fmadd_ps(nf, BL_S8(2.12194440e-4f), m);
    const __m256 z = _mm256_mul_ps(m, m);
    __m256 y = BL_S8(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, m, BL_S8(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, m, BL_S8(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, m, BL_S8(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, m, BL_S8(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, m, BL_S8(5.0000001201e-1f));
    y = _mm256_add_ps(_mm256_fmadd_ps(y, z, m), BL_S8(1.0f));
    const __m256 scale = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
    return _mm256_div_ps(BL_S8(1.0f), _mm256_fmadd_ps(y, scale, BL_S8(1.0f)));
}

/* bl_tanhf: the 13/6 rational form on x clamped to +-c, x itself below 0.0004 in magnitude,
 * and +-1 beyond c (a NaN passes every select). */
BL_AVX2 static inline __attribute__((always_inline)) __m256 bl_tanh8(__m256 x)
{
    const __m256 c = BL_S8(7.90531110763549805f), sign = BL_S8(-0.0f);
    const __m256 xc = _mm256_min_ps(c, _mm256_max_ps(_mm256_xor_ps(c, sign), x));
    const __m256 x2 = _mm256_mul_ps(xc, xc);
    __m256 p = BL_S8(-2.76076847742355e-16f);
    p = _mm256_fmadd_ps(p, x2, BL_S8(2.00018790482477e-13f));
    p = _mm256_fmadd_ps(p, x2, BL_S8(-8.60467152213735e-11f));
    p = _mm256_fmadd_ps(p, x2, BL_S8(5.12229709037114e-08f));
    p = _mm256_fmadd_ps(p, x2, BL_S8(1.48572235717979e-05f));
    p = _mm256_fmadd_ps(p, x2, BL_S8(6.37261928875436e-04f));
    p = _mm256_fmadd_ps(p, x2, BL_S8(4.89352455891786e-03f));
    p = _mm256_mul_ps(p, xc);
    __m256 q = BL_S8(1.19825839466702e-06f);
    q = _mm256_fmadd_ps(q, x2, BL_S8(1.18534705686654e-04f));
    q = _mm256_fmadd_ps(q, x2, BL_S8(2.26843463243900e-03f));
    q = _mm256_fmadd_ps(q, x2, BL_S8(4.89352518554385e-03f));
    const __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 r = _mm256_div_ps(p, q);
    r = _mm256_blendv_ps(r, _mm256_or_ps(BL_S8(1.0f), _mm256_and_ps(sign, x)),
                         _mm256_cmp_ps(ax, c, _CMP_GT_OQ));
    return _mm256_blendv_ps(r, x, _mm256_cmp_ps(ax, BL_S8(0.0004f), _CMP_LT_OQ));
}

/* Lanes [0, n) of an 8-float mask load/store (the rows' last units). */
BL_AVX2 static inline __attribute__((always_inline)) __m256i bl_mask8(size_t n)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), lane);
}

/* 8 floats at p (full), or the lanes of mask (the last units of a row): plain loads and
 * stores where they can, the masked ones are slow on a Zen 1. */
BL_AVX2 static inline __attribute__((always_inline)) __m256 bl_load8(const float *p, int full,
                                                                     __m256i mask)
{
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}

BL_AVX2 static inline __attribute__((always_inline)) void bl_store8(float *p, __m256 v, int full,
                                                                    __m256i mask)
{
    if (full)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, mask, v);
}

/* Can this CPU run the AVX2 passes (AVX2 and FMA)? The test hooks run them wherever it can,
 * so that the passes are tested on AVX-512 CPUs too, which do not take them. */
static inline int bl_avx2_runs(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Does this CPU take the AVX2 passes: it can run them, and not the wide blocking (whose
 * x86-64-v4 clones of the C passes are kept there)? */
static inline int bl_avx2_passes(void)
{
    return bl_avx2_runs() && !bl_isa_wide();
}

#else
#define BL_HAVE_AVX2_PASSES 0
static inline int bl_avx2_runs(void)
{
    return 0;
}

static inline int bl_avx2_passes(void)
{
    return 0;
}
#endif

#endif
