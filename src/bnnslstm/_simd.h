/* The default cell's elementwise passes (_cell.h, _cellgrad.h) in intrinsics, for AVX2 (8
 * floats: bl_cell_default_rows8, bl_grad_default_rows8) and AVX-512 (16 floats: ...16), both
 * from one body (_simd_body.h) with the same results as the C forms bit for bit. gcc's clones
 * of the C forms compute one vector at a time, a chain of dependent steps that leaves the core
 * idle; these keep two vectors in flight (_simd_body.h). */
#ifndef BNNSLSTM_SIMD_H
#define BNNSLSTM_SIMD_H

#include <stddef.h>

#include "_isa.h"

/* Built where the C passes are gcc's per-ISA clones (_isa.h), whose results these repeat
 * (another compiler may fold and contract the C forms otherwise), or gcc's build of them for a
 * baseline with FMA (without clones, on a baseline without FMA, they would differ: the C
 * passes run there on every CPU). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && (!defined(BL_NO_CLONES) || defined(__FMA__))
#define BL_HAVE_SIMD_PASSES 1

#include <immintrin.h>

/* ---- AVX2 and FMA: 8 floats ---- */
#define BL_AVX2 __attribute__((target("avx2,fma")))
#define BL_VW 8
#define BL_VT __m256
#define BL_VMT __m256i
#define BL_VATTR BL_AVX2
#define BL_VFN(name) name##8
#define BL_V(op) _mm256_##op##_ps
#define BL_VS _mm256_set1_ps
#define BL_VPOW2(nf)                                                                           \
    _mm256_castsi256_ps(                                                                       \
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(nf), _mm256_set1_epi32(127)), 23))
#define BL_VSEL_GT(a, b, t, e) _mm256_blendv_ps(e, t, _mm256_cmp_ps(a, b, _CMP_GT_OQ))
#define BL_VSEL_LT(a, b, t, e) _mm256_blendv_ps(e, t, _mm256_cmp_ps(a, b, _CMP_LT_OQ))
/* lanes [0, n) */
#define BL_VMASK(n)                                                                            \
    _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define BL_VMASKLOAD(p, m) _mm256_maskload_ps(p, m)
#define BL_VMASKSTORE(p, m, v) _mm256_maskstore_ps(p, m, v)
#include "_simd_body.h"

/* ---- AVX-512 (F and DQ, for the float logic): 16 floats ---- */
#define BL_AVX512 __attribute__((target("avx2,fma,avx512f,avx512dq")))
#define BL_VW 16
#define BL_VT __m512
#define BL_VMT __mmask16
#define BL_VATTR BL_AVX512
#define BL_VFN(name) name##16
#define BL_V(op) _mm512_##op##_ps
#define BL_VS _mm512_set1_ps
#define BL_VPOW2(nf)                                                                           \
    _mm512_castsi512_ps(                                                                       \
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(nf), _mm512_set1_epi32(127)), 23))
#define BL_VSEL_GT(a, b, t, e) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), e, t)
#define BL_VSEL_LT(a, b, t, e) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), e, t)
#define BL_VMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define BL_VMASKLOAD(p, m) _mm512_maskz_loadu_ps(m, p)
#define BL_VMASKSTORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#include "_simd_body.h"

/* Which of these passes this CPU can run: 16 (AVX-512F and DQ), 8 (AVX2 and FMA), 0 (none).
 * The test hooks run each wherever the CPU can. */
static inline int bl_simd_runs(int width)
{
    if (width == 8)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (width == 16)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    return 0;
}

/* The pass this CPU takes: the widest it runs, on the CPUs whose clones of the C forms have
 * that width (on AVX-512, those of the wide blocking, bl_isa_wide). */
static inline int bl_simd_width(void)
{
    if (bl_isa_wide())
        return 16;
    return bl_simd_runs(8) ? 8 : 0;
}

#else
#define BL_HAVE_SIMD_PASSES 0
static inline int bl_simd_runs(int width)
{
    (void)width;
    return 0;
}

static inline int bl_simd_width(void)
{
    return 0;
}
#endif

#endif
