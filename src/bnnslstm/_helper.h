/* A second thread for one forward call or one backward (layer, direction) (DESIGN step 7, the
 * issue's "split the 4H output rows across threads"): work is cut into two parts (the panels
 * of W of a product, bl_pgemm_task, the batch rows of a time loop, or the gates and rows of
 * the backward's whole-sequence products), the calling thread runs part 0 while the helper
 * runs part 1. Each output element is computed by the same code in the same
 * order either way, so results are bit-identical to one thread.
 *
 * Hand-off per task: the caller publishes it and bumps `epoch` (release); the helper, spinning
 * then yielding, sees it (acquire), runs it, and stores the epoch into `done`.
 */
#ifndef BNNSLSTM_HELPER_H
#define BNNSLSTM_HELPER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* sched_getcpu, CPU_SET, pthread_attr_setaffinity_np */
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "_activations.h"   /* bl_ftz_enter */

typedef void (*bl_task_fn)(void *arg, int part);

typedef struct {
    pthread_t thread;
    int running;
    atomic_uint epoch, done;
    atomic_int quit;
    bl_task_fn fn;   /* the task: fn(arg, 1) on the helper */
    void *arg;
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
        sched_yield();   /* let other threads run while we wait */
    }
}

static void *bl_helper_main(void *arg)
{
    bl_helper *h = (bl_helper *)arg;
    unsigned seen = 0;
    /* the same denormal mode as the calling thread inside the kernel, so that both parts are
       computed alike (the thread ends with the call: nothing to restore) */
    (void)bl_ftz_enter();
    for (;;) {
        unsigned e, spins = 0;
        while ((e = atomic_load_explicit(&h->epoch, memory_order_acquire)) == seen)
            bl_relax(spins++);
        seen = e;
        if (atomic_load_explicit(&h->quit, memory_order_relaxed))
            return NULL;
        h->fn(h->arg, 1);
        atomic_store_explicit(&h->done, e, memory_order_release);
    }
}

/* 1 if the helper runs; 0 (no helper, single-threaded results) if it could not start. */
static int bl_helper_start(bl_helper *h)
{
    atomic_init(&h->epoch, 0);
    atomic_init(&h->done, 0);
    atomic_init(&h->quit, 0);
    pthread_attr_t attr;
    int attr_ok = pthread_attr_init(&attr) == 0;
#if defined(__linux__)
    /* Start the helper on another CPU than the caller's. The scheduler may otherwise place
     * it beside the caller when every CPU was idle (measured after a 20 ms sleep: both
     * threads on one core, 5x slower), and not move it before the call ends. */
    cpu_set_t cpus;
    int self = sched_getcpu();
    if (attr_ok && self >= 0 && pthread_getaffinity_np(pthread_self(), sizeof cpus, &cpus) == 0
            && CPU_COUNT(&cpus) >= 2) {
        CPU_CLR(self, &cpus);
        pthread_attr_setaffinity_np(&attr, sizeof cpus, &cpus);
    }
#endif
    h->running = pthread_create(&h->thread, attr_ok ? &attr : NULL, bl_helper_main, h) == 0;
    if (attr_ok)
        pthread_attr_destroy(&attr);
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

/* fn(arg, 0) and fn(arg, 1): on this thread and the helper at once, or one after the other
 * here when there is no helper (h NULL or not running). */
static void bl_run_parts(bl_helper *h, bl_task_fn fn, void *arg)
{
    unsigned e, spins = 0;
    if (h == NULL || !h->running) {
        fn(arg, 0);
        fn(arg, 1);
        return;
    }
    h->fn = fn;
    h->arg = arg;
    e = atomic_fetch_add_explicit(&h->epoch, 1, memory_order_release) + 1;
    fn(arg, 0);
    while (atomic_load_explicit(&h->done, memory_order_acquire) != e)
        bl_relax(spins++);
}

/* The two threads of a unit split wait here at the end of each step until both have finished
 * it: arrivals only grow, so step s is done when 2 * (s + 1) have arrived. */
static inline void bl_step_barrier(atomic_ulong *arrived, unsigned long target)
{
    unsigned spins = 0;
    atomic_fetch_add_explicit(arrived, 1, memory_order_acq_rel);
    while (atomic_load_explicit(arrived, memory_order_acquire) < target)
        bl_relax(spins++);
}

/* The next ticket of a unit split's claims (units_loop): tickets only grow. Relaxed: the
 * threads pass their chunks' results to each other through bl_step_barrier, never through a
 * claim. */
static inline unsigned long bl_claim(atomic_ulong *tickets)
{
    return atomic_fetch_add_explicit(tickets, 1, memory_order_relaxed);
}

/* Worker threads "0 = automatic" means: the online CPUs. */
static inline long bl_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

#endif
