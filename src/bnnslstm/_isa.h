/* Per-ISA clones of the hot C loops: the wheel is built for the baseline ISA, so gcc builds one
 * clone per ISA level (x86-64-v4 = AVX-512, v3 = AVX2+FMA, baseline) and the dynamic loader
 * picks the best one for the CPU at load time. Elsewhere (clang, arm64, macOS) the baseline
 * code is used as is. */
#ifndef BNNSLSTM_ISA_H
#define BNNSLSTM_ISA_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define BL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BL_CLONES
#endif

#endif
