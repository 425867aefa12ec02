/* Per-ISA clones of the hot C loops: the wheel is built for the baseline ISA, so gcc builds one
 * clone per ISA level (x86-64-v4 = AVX-512, v3 = AVX2+FMA, baseline) and the dynamic loader
 * picks the best one for the CPU at load time. Elsewhere (clang, arm64, macOS) the baseline
 * code is used as is.
 *
 * The GEMM kernels come in two blockings (bl_isa_wide): the wide one's 16-float vectors need
 * AVX-512 (on AVX2 gcc lowers them through the stack, at a sixth of the FMA peak), so it is
 * built once, for x86-64-v4 (BL_WIDE), and the narrow one only for v3 and the baseline
 * (BL_NARROW): each clone holds only code its CPUs run, which also halves the build time.
 *
 * A build for this CPU alone (meson's `native` option: -march=native, BL_NATIVE) has no
 * clones: every function is built for it. A target of x86-64-v4 there would take away the
 * CPU's features beyond v4 (a Zen 4 has AVX-512 BF16, VNNI, ...), which the always-inline
 * kernel bodies are built with, and gcc cannot inline them into it: no build. */
#ifndef BNNSLSTM_ISA_H
#define BNNSLSTM_ISA_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(BL_NATIVE)
#define BL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define BL_WIDE __attribute__((target("arch=x86-64-v4")))
#define BL_NARROW __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define BL_CLONES
#define BL_WIDE
#define BL_NARROW
#endif

/* Does this CPU take the wide blocking: 32 vector registers of 16 floats (the whole x86-64-v4
 * set, which BL_WIDE code is built for), or arm64's 32 NEON registers? */
static inline int bl_isa_wide(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
           && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
           && __builtin_cpu_supports("avx512vl");
#elif defined(__aarch64__)
    return 1;
#else
    return 0;
#endif
}

#endif
