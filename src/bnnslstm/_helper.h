/* A second thread for the small-batch recurrent product (the "split the 4H output
 * rows across threads"): for one forward call, a helper thread computes the upper part of the
 * rows of W while the calling thread computes the lower part. Each output element is still
 * computed by the same code in the same order, so results are bit-identical to one thread.
 *
 * Hand-off per step: the caller publishes the job and bumps `epoch` (release); the helper,
 * spinning then yielding, sees it (acquire), works, and stores the epoch into `done`.
 */
#ifndef BNNSLSTM_HELPER_H
#define BNNSLSTM_HELPER_H

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "_activations.h"   /* bl_ftz_enter */
#include "_skinny.h"

typedef struct {
    pthread_t thread;
    int running;
    atomic_uint epoch, done;
    atomic_int quit;
    int m, n, k, lda, ldw, ldc, split;   /* the job: rows [split, n) of W */
    const float *A, *W;
    float *C;
} bl_helper;

static inline void bl_relax(unsigned spins)
{
    if (spins < 256) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    } else {
        sched_yield();   /* let BLAS's own threads run while we wait */
    }
}

static void *bl_helper_main(void *arg)
{
    bl_helper *h = (bl_helper *)arg;
    unsigned seen = 0;
    /* the same denormal mode as the calling thread inside the kernel, so that both halves are
       computed alike (the thread ends with the call: nothing to restore) */
    (void)bl_ftz_enter();
    for (;;) {
        unsigned e, spins = 0;
        while ((e = atomic_load_explicit(&h->epoch, memory_order_acquire)) == seen)
            bl_relax(spins++);
        seen = e;
        if (atomic_load_explicit(&h->quit, memory_order_relaxed))
            return NULL;
        bl_skinny_gemm_nt(h->m, h->n - h->split, h->k, h->A, h->lda,
                          h->W + (size_t)h->split * h->ldw, h->ldw, h->C + h->split, h->ldc);
        atomic_store_explicit(&h->done, e, memory_order_release);
    }
}

/* 1 if the helper runs; 0 (no helper, single-threaded results) if it could not start. */
static int bl_helper_start(bl_helper *h)
{
    atomic_init(&h->epoch, 0);
    atomic_init(&h->done, 0);
    atomic_init(&h->quit, 0);
    h->running = pthread_create(&h->thread, NULL, bl_helper_main, h) == 0;
    return h->running;
}

static void bl_helper_stop(bl_helper *h)
{
    if (!h->running)
        return;
    atomic_store_explicit(&h->quit, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->epoch, 1, memory_order_release);
    pthread_join(h->thread, NULL);
    h->running = 0;
}

/* bl_skinny_gemm_nt, its rows of W split between the caller and the helper (if running). */
static void bl_skinny_gemm_nt_split(bl_helper *h, int m, int n, int k, const float *A, int lda,
                                    const float *W, int ldw, float *C, int ldc)
{
    unsigned e, spins = 0;
    if (h == NULL || !h->running || n < 64) {
        bl_skinny_gemm_nt(m, n, k, A, lda, W, ldw, C, ldc);
        return;
    }
    h->m = m; h->n = n; h->k = k; h->lda = lda; h->ldw = ldw; h->ldc = ldc;
    h->split = (n / 2) & ~15;            /* each half's outputs start on a cache line */
    h->A = A; h->W = W; h->C = C;
    e = atomic_fetch_add_explicit(&h->epoch, 1, memory_order_release) + 1;
    bl_skinny_gemm_nt(m, h->split, k, A, lda, W, ldw, C, ldc);
    while (atomic_load_explicit(&h->done, memory_order_acquire) != e)
        bl_relax(spins++);
}

/* OpenBLAS's per-thread thread count (0.3.27+): while the helper runs, the calling thread's
 * BLAS calls must not wake OpenBLAS's own workers, which then spin on the core the helper
 * needs. Found in the library that holds `sgemm_addr`; NULL when absent (Accelerate, older
 * OpenBLAS), and then the helper is not used. */
typedef int (*bl_set_threads_local_fn)(int);

static bl_set_threads_local_fn bl_blas_threads_local(const void *sgemm_addr)
{
    /* one lookup per BLAS back end (they switch rarely: bnnslstm.set_blas) */
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static const void *looked_up;
    static bl_set_threads_local_fn found;
    bl_set_threads_local_fn fn;
    pthread_mutex_lock(&lock);
    if (sgemm_addr != looked_up) {
        Dl_info info;
        void *lib = NULL;
        found = NULL;
        looked_up = sgemm_addr;
        if (sgemm_addr != NULL && dladdr(sgemm_addr, &info) && info.dli_fname != NULL)
            lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
        if (lib != NULL)
            found = (bl_set_threads_local_fn)dlsym(lib, "openblas_set_num_threads_local");
    }
    fn = found;
    pthread_mutex_unlock(&lock);
    return fn;
}

/* Worker threads "0 = automatic" means: the online CPUs. */
static inline long bl_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

#endif
