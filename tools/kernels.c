/* The kernels' own speed on this CPU, outside Python: how close each product of the benchmark
 * shapes comes to the core's multiply-add peak, with its operands as warm as repeated calls
 * leave them. It separates what the kernels can do from what a call adds around them (the
 * per-call packing, cold caches, the elementwise pass, threads), which the benchmark
 * (`python -m bnnslstm bench`) measures as a whole.
 *
 *   cc -O3 -std=c11 -fno-math-errno -fno-trapping-math -fopenmp-simd -ffp-contract=fast \
 *      -Wno-unused-function -I src/bnnslstm tools/kernels.c -o kernels -lpthread -lm
 *   ./kernels            # or ./kernels --quick: one call of each, the smaller shapes (a
 *                        # check that it builds and computes right; its times mean little)
 *   ./kernels --tiny     # the check alone, on small shapes that still reach every block
 *                        # size and tail: fast enough under an emulator (qemu-aarch64)
 *
 * (the extension's kernel flags: the kernels pick their ISA level at run time, as in the
 * wheel). One thread. For each product: the best time of repeated calls, GFLOP/s (GB/s of
 * source for a pack) and the fraction of the FMA peak measured first (_peak.h). Before
 * timing, every product is checked on sampled elements against a double-precision dot
 * product: exit status 1 if one is off.
 */
#define _GNU_SOURCE
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "_bgemm.h"
#include "_peak.h"

static int quick, tiny;
static double peak;     /* GFLOP/s */
static int failures;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *floats(size_t n, unsigned seed)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {    /* small values in [-1, 1), no denormals */
        seed = seed * 1103515245u + 12345u;
        p[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    return p;
}

typedef void (*product_fn)(void *);

/* With `cold`, every timed call starts from memory: 96 MiB written before it, as a call after
 * a pause or after another party's work finds its operands (the per-call packing's case). */
static int cold;
static char *sweep;
#define SWEEP_BYTES ((size_t)96 << 20)

static void flush_caches(void)
{
    if (sweep == NULL)
        sweep = (char *)floats(SWEEP_BYTES / sizeof(float), 26);
    for (size_t i = 0; i < SWEEP_BYTES; i += 64)
        sweep[i]++;
}

/* Best seconds per call over repeated calls (about 0.3 s of them, 21 calls cold; one with
 * --quick). */
static double best_of(product_fn fn, void *arg)
{
    double best = 1e30, spent = 0;
    for (int r = 0; r < (quick ? 1 : cold ? 21 : 200) && (r < 3 || spent < 0.3 || cold); r++) {
        if (cold)
            flush_caches();
        double t = now();
        fn(arg);
        t = now() - t;
        spent += t;
        best = t < best ? t : best;
    }
    return best;
}

/* C[i][j] against sum_k A[i][k] * B[k][j] (strides: A's row and k, B's k and column), in
 * double, on 64 sampled elements, within the rounding bound of a float sum of k products. */
static void check(const char *name, int m, int n, int k, const float *A, size_t ai, size_t ak,
                  const float *B, size_t bk, size_t bj, const float *C, size_t ldc)
{
    unsigned s = 12345;
    for (int q = 0; q < 64; q++) {
        s = s * 1103515245u + 12345u;
        const int i = (int)((s >> 8) % (unsigned)m), j = (int)((s >> 4) % (unsigned)n);
        double ref = 0, mag = 0;
        for (int kk = 0; kk < k; kk++) {
            double t = (double)A[i * ai + kk * ak] * (double)B[kk * bk + j * bj];
            ref += t;
            mag += fabs(t);
        }
        if (fabs(C[i * ldc + j] - ref) > k * FLT_EPSILON * mag) {
            printf("%s: C[%d][%d] = %g, expected %g\n", name, i, j, C[i * ldc + j], ref);
            failures++;
            return;
        }
    }
}

static void report(const char *name, double seconds, double flops)
{
    printf("  %-44s %9.1f us  %6.1f GFLOP/s  %3.0f%% of the FMA peak\n", name, seconds * 1e6,
           flops / seconds / 1e9, 100 * flops / seconds / 1e9 / peak);
}

/* One register block's rows past 3 panels (W [48 x k] packed), all in L1 and L2: the kernel
 * alone. */
typedef struct {
    int m, k;
    const float *A, *Wp;
    float *C;
} block_arg;

static void run_block(void *p)
{
    block_arg *a = p;
    bl_pgemm_panels(bl_isa_wide(), a->m, 48, a->k, a->A, (size_t)a->k, a->Wp, 0, 3, a->C, 48,
                    NULL, 0, NULL, 0, 0, 0, 0);
}

static void block_case(int m, int k)
{
    float *W = floats((size_t)48 * k, 18), *Wp = floats(bl_packed_size(48, k), 19);
    block_arg a = {m, k, floats((size_t)m * k, 20), Wp, floats((size_t)m * 48, 21)};
    bl_pack_panels(48, k, W, k, Wp);
    run_block(&a);
    char name[96];
    snprintf(name, sizeof name, "block m=%d n=48 k=%d", m, k);
    check(name, m, 48, k, a.A, k, 1, W, 1, k, a.C, 48);
    report(name, best_of(run_block, &a), 2.0 * m * 48 * k);
    free(W), free(Wp), free((void *)a.A), free(a.C);
}

/* The recurrent product of one step, C[m x 4H] += h[m x H] W_h^T, from the packed panels,
 * every other call visiting them last to first (as the time loop does); and the input
 * projection of all steps, from packed W_x or in the direct form (packing it chunk by chunk,
 * as a per-call forward does). */
typedef struct {
    bl_pgemm_job job;
    int calls;
} pgemm_arg;

static void run_pgemm(void *p)
{
    pgemm_arg *a = p;
    a->job.rev = a->calls++ & 1;
    bl_pgemm_all(&a->job);      /* as a time loop on one thread runs it */
}

static void pgemm_case(const char *what, int m, int H, int k, int direct)
{
    float *W = floats((size_t)4 * H * k, 1), *A = floats((size_t)m * k, 2);
    float *Wp = floats(4 * bl_packed_size(H, k), 3), *C = floats((size_t)m * 4 * H, 4);
    float *buf = floats(bl_direct_floats(k), 5);
    for (int g = 0; g < 4; g++)
        bl_pack_panels(H, k, W + (size_t)g * H * k, k, Wp + g * bl_packed_size(H, k));
    pgemm_arg a = {bl_pgemm_job_make(m, 4, H, k, A, k, Wp, C, 4 * H, 0), 0};
    if (direct) {
        a.job.W = W;
        a.job.ldw = (size_t)k;
        a.job.buf[0] = buf;
    }
    run_pgemm(&a);
    char name[96];
    snprintf(name, sizeof name, "%s m=%d 4H=%d k=%d%s%s", what, m, 4 * H, k,
             direct ? " direct" : "", cold ? " cold" : "");
    check(name, m, 4 * H, k, A, k, 1, W, 1, k, C, 4 * H);
    a.job.add = 1;      /* the time loop adds to the projection's gates */
    report(name, best_of(run_pgemm, &a), 2.0 * m * 4 * H * k);
    free(W), free(A), free(Wp), free(C), free(buf);
}

/* The backward's per-step dh = dA W_h, W_h [4H x H] packed as panels of W_h^T (one k block: 4H
 * <= 2048, as pack_kblocks packs it then). */
static void dh_case(int m, int H)
{
    const int G = 4 * H;
    float *Wh = floats((size_t)G * H, 22), *dA = floats((size_t)m * G, 23);
    float *Wp = floats(bl_packed_size(H, G), 24), *C = floats((size_t)m * H, 25);
    bl_pack_panels_t(H, G, Wh, H, Wp);
    pgemm_arg a = {bl_pgemm_job_make(m, 1, H, G, dA, G, Wp, C, H, 0), 0};
    run_pgemm(&a);
    char name[96];
    snprintf(name, sizeof name, "dh = dA W_h  m=%d k=%d n=%d", m, G, H);
    check(name, m, H, G, dA, G, 1, Wh, H, 1, C, H);
    report(name, best_of(run_pgemm, &a), 2.0 * m * G * H);
    free(Wh), free(dA), free(Wp), free(C);
}

/* The backward's whole-sequence products: dW = dA^T [X, H_prev] (at) and dX = dA W_x. */
typedef struct {
    int m, k, n1, n2, at;
    const float *A, *B1, *B2;
    float *C1, *C2, *buf;
} bgemm_arg;

static void run_bgemm(void *p)
{
    bgemm_arg *a = p;
    const size_t lda = a->at ? (size_t)a->m : (size_t)a->k;
    bl_bgemm2(a->m, a->k, a->A, lda, a->at, a->n1, a->B1, a->n1, a->C1, a->n1, a->n2, a->B2,
              a->n2, a->C2, a->n2, 0, a->buf);
}

static void dw_case(int H, int SN, int in)
{
    const int G = 4 * H;
    bgemm_arg a = {G, SN, in, H, 1, floats((size_t)SN * G, 6), floats((size_t)SN * in, 7),
                   floats((size_t)SN * H, 8), floats((size_t)G * in, 9),
                   floats((size_t)G * H, 10), floats(bl_bgemm2_floats(in, H, SN, 1), 11)};
    run_bgemm(&a);
    char name[96];
    snprintf(name, sizeof name, "dW = dA^T [X, H_prev]  4H=%d k=%d n=%d", G, SN, in + H);
    check(name, G, in, SN, a.A, 1, G, a.B1, in, 1, a.C1, in);
    check(name, G, H, SN, a.A, 1, G, a.B2, H, 1, a.C2, H);
    report(name, best_of(run_bgemm, &a), 2.0 * G * SN * (in + H));
    free((void *)a.A), free((void *)a.B1), free((void *)a.B2), free(a.C1), free(a.C2);
    free(a.buf);
}

static void dx_case(int H, int SN, int in)
{
    const int G = 4 * H;
    bgemm_arg a = {SN, G, in, 0, 0, floats((size_t)SN * G, 12), floats((size_t)G * in, 13),
                   NULL, floats((size_t)SN * in, 14), NULL,
                   floats(bl_bgemm2_floats(in, 0, G, 0), 15)};
    run_bgemm(&a);
    char name[96];
    snprintf(name, sizeof name, "dX = dA W_x  m=%d k=%d n=%d", SN, G, in);
    check(name, SN, in, G, a.A, G, 1, a.B1, in, 1, a.C1, in);
    report(name, best_of(run_bgemm, &a), 2.0 * SN * G * in);
    free((void *)a.A), free((void *)a.B1), free(a.C1), free(a.buf);
}

/* The per-call pack of a weight matrix into panels (the transposition a forward pays on every
 * call for W_h, unless the weights are frozen). */
typedef struct {
    int n, k;
    const float *W;
    float *Wp;
} pack_arg;

static void run_pack(void *p)
{
    pack_arg *a = p;
    bl_pack_panels(a->n, a->k, a->W, (size_t)a->k, a->Wp);
}

static void pack_case(int n, int k)
{
    pack_arg a = {n, k, floats((size_t)n * k, 16), floats(bl_packed_size(n, k), 17)};
    run_pack(&a);
    for (int q = 0; q < 64; q++) {      /* panel p, column c at kk holds W[16 p + c][kk] */
        const int r = (q * 7919) % n, kk = (q * 104729) % k, P = (n + BL_PANEL - 1) / BL_PANEL;
        int ks;
        const float *panel = bl_panel(a.Wp, P, k, r / BL_PANEL, &ks);
        if (panel[(size_t)kk * ks + r % BL_PANEL] != a.W[(size_t)r * k + kk]) {
            printf("pack n=%d k=%d: W[%d][%d] misplaced\n", n, k, r, kk);
            failures++;
            break;
        }
    }
    const double s = best_of(run_pack, &a), bytes = (double)n * k * sizeof(float);
    printf("  pack W [%d x %d] into panels (%4.1f MiB)    %9.1f us  %6.1f GB/s of W\n", n, k,
           bytes / (1 << 20), s * 1e6, bytes / s / 1e9);
    free((void *)a.W), free(a.Wp);
}

/* --tiny: every row count of a block and its tails (1 to 13 rows, 64), the wide and narrow
 * choices of panels per block, a partial last panel (H = 40), each product once */
static void tiny_cases(void)
{
    for (int m = 1; m <= 13; m++)
        pgemm_case("h W_h^T", m, m % 2 ? 40 : 64, 64, 0);
    pgemm_case("h W_h^T", 64, 64, 96, 0);
    pgemm_case("x W_x^T", 100, 40, 72, 1);
    pgemm_case("x W_x^T", 100, 64, 72, 0);
    dh_case(13, 40);
    dw_case(40, 100, 24);
    dx_case(40, 100, 24);
    pack_case(200, 72);
}

int main(int argc, char **argv)
{
    tiny = argc > 1 && strcmp(argv[1], "--tiny") == 0;
    quick = tiny || (argc > 1 && strcmp(argv[1], "--quick") == 0);
    const long iters = tiny ? 10000 : quick ? 1000000 : 20000000;
    int lanes = 0;
    for (int r = 0; r < 3; r++) {       /* the best of 3: the first may run at a lower clock */
        double t = now();
        lanes = bl_fma_peak_run(iters);
        t = now() - t;
        const double rate = (double)iters * 12 * 2 * lanes / t / 1e9;
        peak = rate > peak ? rate : peak;
    }
    printf("FMA peak, one core: %.1f GFLOP/s (%d-float vectors); kernels: %s\n", peak, lanes,
           bl_isa_wide() ? "AVX-512 (wide)" : "AVX2 or portable (narrow)");

    if (tiny) {
        tiny_cases();
        return failures ? 1 : 0;
    }
    printf("one register block (the kernel alone, operands in L1 and L2):\n");
    block_case(bl_isa_wide() ? BL_WIDE_ROWS : BL_NARROW_ROWS, 512);
    printf("time loop, one step (W_h from the packed panels):\n");
    const int steps[][2] = {{1, 256}, {1, 512}, {4, 512}, {4, 1024}, {64, 512}, {64, 1024}};
    for (int i = 0; i < (quick ? 3 : 6); i++)
        pgemm_case("h W_h^T", steps[i][0], steps[i][1], steps[i][1], 0);
    printf("input projection of all steps (T = 25, N = 64):\n");
    pgemm_case("x W_x^T", 1600, 512, 512, 0);
    pgemm_case("x W_x^T", 1600, 512, 512, 1);
    if (!quick)
        pgemm_case("x W_x^T", 1600, 1024, 1024, 1);
    if (!quick) {
        /* a small-batch call's projection, packed per call in the direct form, from memory:
         * db_inf_h512_b1's 25 rows, db_inf_h1024_b4's 100 */
        printf("input projection of one inference call, caches flushed before each call:\n");
        cold = 1;
        pgemm_case("x W_x^T", 25, 512, 512, 1);
        pgemm_case("x W_x^T", 25, 512, 512, 0);
        pgemm_case("x W_x^T", 100, 1024, 1024, 1);
        pgemm_case("x W_x^T", 100, 1024, 1024, 0);
        cold = 0;
    }
    printf("backward, one step (N = 64):\n");
    dh_case(64, 512);
    printf("backward, whole sequence (T = 25, N = 64):\n");
    dw_case(512, 1600, 512);
    dx_case(512, 1600, 512);
    if (!quick) {
        dw_case(1024, 1600, 1024);
        dw_case(256, 9600, 256);
    }
    printf("packing:\n");
    pack_case(2048, 512);
    if (!quick)
        pack_case(4096, 1024);
    if (failures)
        printf("%d product(s) off the double-precision reference\n", failures);
    return failures ? 1 : 0;
}
