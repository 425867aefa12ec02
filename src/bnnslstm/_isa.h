/* Per-ISA builds of the hot C loops. The wheel is built for the x86-64 baseline, so gcc on
 * x86-64 Linux builds one clone per ISA level (x86-64-v4 = AVX-512, v3 = AVX2+FMA, baseline)
 * and the dynamic loader picks the best one for the CPU at load time.
 *
 * The GEMM kernels come in two blockings (bl_isa_wide): the wide one's 16-float vectors need
 * AVX-512 (on AVX2 gcc lowers them through the stack, at a sixth of the FMA peak), so it is
 * built once, for x86-64-v4 (BL_WIDE), and the narrow one only for v3 and the baseline
 * (BL_NARROW): each clone holds only code its CPUs run, which also halves the build time.
 *
 * Clones build only on a baseline that is an x86-64 level (gcc's arch of them all is k8) with
 * no extension beyond x86-64-v4. On any other (-march=native or -march=haswell in CFLAGS,
 * meson's `native` option), a clone's target would take away the baseline's arch or features,
 * which the always-inline kernel bodies are built with, and gcc refuses to inline them into
 * it: no build. Without clones (BL_NO_CLONES: there, with clang, off Linux; meson defines it
 * too when a probe of exactly this fails, for an extension named on its own in CFLAGS: -maes)
 * every function is built for the baseline, and the kernels add what their CPUs have, chosen
 * at run time: the wide blocking AVX-512, and on a baseline below AVX2 the narrow blocking a
 * second build with AVX2 and FMA (bl_isa_avx2). Adding never takes a baseline feature away.
 * Before, such builds ran every kernel at the baseline's SSE2: clang's (macOS on Intel) at a
 * fifth to a quarter of the FMA peak, gcc's off Linux at 2%. On arm64 NEON is the baseline
 * and every function is built for it. */
#ifndef BNNSLSTM_ISA_H
#define BNNSLSTM_ISA_H

#if defined(__GNUC__) && defined(__x86_64__)
#if (defined(__clang__) || !defined(__linux__) || !defined(__k8__) || defined(__3dNOW__)) \
    && !defined(BL_NO_CLONES)
#define BL_NO_CLONES 1
#endif
#ifndef BL_NO_CLONES
#define BL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define BL_WIDE __attribute__((target("arch=x86-64-v4")))
#define BL_NARROW __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define BL_CLONES
#ifdef __clang__
#define BL_WIDE __attribute__((target("avx2,fma,avx512f,avx512bw,avx512cd,avx512dq,avx512vl")))
#else
/* gcc: with the wheel's tuning too, which the kernels were measured with (gcc 12 tunes
 * -march=native for znver3 on a Zen 4: the 4-row step ran at 72-83% of the FMA peak, not 97) */
#define BL_WIDE                                                                              \
    __attribute__((target("avx2,fma,avx512f,avx512bw,avx512cd,avx512dq,avx512vl,tune=generic")))
#endif
#define BL_NARROW
#if !defined(__AVX2__) || !defined(__FMA__)
#define BL_NARROW_AVX2 __attribute__((target("avx2,fma")))
#endif
#endif
#else
#define BL_CLONES
#define BL_WIDE
#define BL_NARROW
#endif

/* Does this CPU take the wide blocking: 32 vector registers of 16 floats (the whole x86-64-v4
 * set, which BL_WIDE code is built for)? arm64's 32 NEON registers hold 4 floats each: it
 * takes the narrow blocking on 4-float vectors (_pgemm.h, bl_vn). */
static inline int bl_isa_wide(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
           && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
           && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

/* Does this CPU take the narrow blocking's AVX2 build (BL_NARROW_AVX2: only in builds without
 * clones, on a baseline below AVX2)? */
static inline int bl_isa_avx2(void)
{
#ifdef BL_NARROW_AVX2
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* A void function `fn` of per-ISA clones (BL_CLONES) whose body is written once:
 *     BL_CLONED(fn, base)(params) { body }
 *     BL_BY_LEVEL(fn, base, (params), (args))
 * With clones that is `BL_CLONES static void fn`. Without them (see above) the body becomes
 * base_body, built into base_wide (BL_WIDE) and, on a baseline below AVX2, base_fma
 * (BL_NARROW_AVX2), and fn chooses among them and the baseline's at run time, as the kernels
 * do. */
#ifdef BL_NO_CLONES
#define BL_CLONED(fn, base) static inline __attribute__((always_inline)) void base##_body
#ifdef BL_NARROW_AVX2
#define BL_FMA_BUILD(base, params, args)                                                       \
    BL_NARROW_AVX2 static void base##_fma params { base##_body args; }
#define BL_FMA_CHOICE(base, args) else if (bl_isa_avx2()) base##_fma args;
#else
#define BL_FMA_BUILD(base, params, args)
#define BL_FMA_CHOICE(base, args)
#endif
#define BL_BY_LEVEL(fn, base, params, args)                                                    \
    BL_WIDE static void base##_wide params { base##_body args; }                              \
    BL_FMA_BUILD(base, params, args)                                                           \
    static void fn params                                                                      \
    {                                                                                          \
        if (bl_isa_wide())                                                                     \
            base##_wide args;                                                                  \
        BL_FMA_CHOICE(base, args)                                                              \
        else                                                                                   \
            base##_body args;                                                                  \
    }
#else
#define BL_CLONED(fn, base) BL_CLONES static void fn
#define BL_BY_LEVEL(fn, base, params, args)
#endif

#endif
