/* The core's float32 multiply-add peak: 12 independent chains of vector FMAs on registers, no
 * memory traffic, so nothing but the FMA units' throughput limits them (12 chains cover the
 * FMA latency of two pipes). The benchmark divides by it to say how far any kernel, ours or a
 * peer's, is from what the core can do at all.
 *
 * One function per vector width, each compiled for its ISA; the widest the CPU runs is used
 * (target_clones would compile one body for every width, and 12 chains of 16 floats do not
 * fit the 16 registers of AVX2). */
#ifndef BNNSLSTM_PEAK_H
#define BNNSLSTM_PEAK_H

/* The chains must stay 12 FMAs per iteration: gcc -O3 otherwise splits one off into a loop of
 * its own (measured: 11 in the loop, and a "peak" 9% above a hand-written assembly loop's). An
 * empty asm that "modifies" every chain keeps them in registers and in one loop. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__aarch64__))
#if defined(__x86_64__)
#define BL_R "+v"
#else
#define BL_R "+w"
#endif
#define BL_KEEP_CHAINS()                                                                     \
    __asm__("" : BL_R(a0), BL_R(a1), BL_R(a2), BL_R(a3), BL_R(a4), BL_R(a5), BL_R(a6),        \
            BL_R(a7), BL_R(a8), BL_R(a9), BL_R(a10), BL_R(a11))
#else
#define BL_KEEP_CHAINS() ((void)0)
#endif

#define BL_FMA_CHAINS(V, iters, out)                                                         \
    do {                                                                                     \
        V x, y, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;                           \
        for (unsigned i = 0; i < sizeof x / sizeof(float); i++) {                            \
            x[i] = 0.999999f;                                                                \
            y[i] = 1e-6f;                                                                    \
        }                                                                                    \
        a0 = a1 = a2 = a3 = a4 = a5 = y;                                                     \
        a6 = a7 = a8 = a9 = a10 = a11 = x;                                                   \
        for (long n = 0; n < (iters); n++) {                                                 \
            a0 = a0 * x + y; a1 = a1 * x + y; a2 = a2 * x + y; a3 = a3 * x + y;               \
            a4 = a4 * x + y; a5 = a5 * x + y; a6 = a6 * x + y; a7 = a7 * x + y;               \
            a8 = a8 * x + y; a9 = a9 * x + y; a10 = a10 * x + y; a11 = a11 * x + y;           \
            BL_KEEP_CHAINS();                                                                \
        }                                                                                    \
        a0 += a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                        \
        out = 0.0f;                                                                          \
        for (unsigned i = 0; i < sizeof x / sizeof(float); i++)                              \
            out += a0[i];                                                                    \
    } while (0)

typedef float bl_f4 __attribute__((vector_size(16)));

#if defined(__GNUC__) && defined(__x86_64__)
typedef float bl_f8 __attribute__((vector_size(32)));
typedef float bl_f16 __attribute__((vector_size(64)));

__attribute__((target("avx512f"))) static float bl_fma_chains16(long iters)
{
    float s;
    BL_FMA_CHAINS(bl_f16, iters, s);
    return s;
}

__attribute__((target("avx2,fma"))) static float bl_fma_chains8(long iters)
{
    float s;
    BL_FMA_CHAINS(bl_f8, iters, s);
    return s;
}
#endif

static float bl_fma_chains4(long iters)
{
    float s;
    BL_FMA_CHAINS(bl_f4, iters, s);
    return s;
}

/* The chains' sum goes here, so that no compiler drops them as unused. */
static volatile float bl_fma_sink;

/* Run `iters` iterations (12 vector FMAs each) at the widest vector width the CPU has;
 * returns the floats per vector (flops = iters * 12 * 2 * lanes). */
static int bl_fma_peak_run(long iters)
{
#if defined(__GNUC__) && defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) {
        bl_fma_sink = bl_fma_chains16(iters);
        return 16;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        bl_fma_sink = bl_fma_chains8(iters);
        return 8;
    }
#endif
    bl_fma_sink = bl_fma_chains4(iters);
    return 4;
}

#endif
