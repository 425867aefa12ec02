/* A second thread for one forward call or one backward (layer, direction) (DESIGN step 7, the
 * issue's "split the 4H output rows across threads"): work is cut into two parts (the panels
 * of W of a product, bl_pgemm_task, the batch rows of a time loop, or the gates and rows of
 * the backward's whole-sequence products), the calling thread runs part 0 while the helper
 * runs part 1. Each output element is computed by the same code in the same
 * order either way, so results are bit-identical to one thread.
 *
 * The helper is a worker thread kept by each calling thread between its calls (_worker.h:
 * started on first use, parked when idle, joined when its owner exits); a call borrows it
 * (bl_helper_start) and gives it back (bl_helper_stop).
 *
 * Hand-off per task: the caller publishes it and bumps `epoch`; the worker, spinning, then
 * yielding, then parked (waking it takes the lock only when it is parked), sees it
 * (acquire), runs it, and stores the epoch into `done`.
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

#include <sys/types.h>   /* pid_t */

typedef void (*bl_task_fn)(void *arg, int part);

typedef struct bl_worker {
    pthread_t thread;
    pid_t pid;                  /* the process that started it (a fork's child has no worker) */
    int busy;                   /* lent to a call of its owner (only the owner reads or writes) */
    int excluded;               /* the caller's CPU at the last placement, -1 before the first */
#if defined(__linux__)
    cpu_set_t placed;           /* the caller's affinity at the last placement */
#endif
    pthread_mutex_t lock;       /* parking: the worker sleeps on `wake` under `lock` */
    pthread_cond_t wake;
    atomic_int parked;
    atomic_uint epoch, done;
    atomic_int quit;
    bl_task_fn fn;              /* the task: fn(arg, 1) on the worker */
    void *arg;
} bl_worker;

/* A call's hold on its thread's worker: w NULL means one thread (no worker available). */
typedef struct {
    bl_worker *w;
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

/* Hand the worker its next task (or its quit). The worker marks itself parked under the lock
 * and then reads the epoch; we bump the epoch and then read the mark (both sequentially
 * consistent), so one of us sees the other: it does not sleep through the task. */
static inline unsigned bl_worker_post(bl_worker *w)
{
    unsigned e = atomic_fetch_add(&w->epoch, 1) + 1;
    if (atomic_load(&w->parked)) {
        pthread_mutex_lock(&w->lock);
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
    }
    return e;
}

/* Does bl_run_parts run both parts here, one after the other (no helper: h NULL or holding no
 * worker)? */
static inline int bl_parts_here(const bl_helper *h)
{
    return h == NULL || h->w == NULL;
}

/* fn(arg, 0) and fn(arg, 1): on this thread and the helper at once, or one after the other
 * here when there is no helper. */
static void bl_run_parts(bl_helper *h, bl_task_fn fn, void *arg)
{
    unsigned e, spins = 0;
    bl_worker *w;
    if (bl_parts_here(h)) {
        fn(arg, 0);
        fn(arg, 1);
        return;
    }
    w = h->w;
    w->fn = fn;
    w->arg = arg;
    e = bl_worker_post(w);
    fn(arg, 0);
    while (atomic_load_explicit(&w->done, memory_order_acquire) != e)
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
