/* The helper's worker thread (_helper.h), one per calling thread, kept between calls: starting
 * a thread cost 60-110 us on the Zen 4 VM and waking a parked one 5-18 us, and a worker still
 * spinning from the call before takes the next call's first task at once. Compiled into one
 * module (_worker.pyx), so that the forward and the backward of a training step share it.
 *
 * Life: started on a thread's first two-thread call; after each task it spins, then yields,
 * and after BL_LINGER_NS without one it parks on a condition variable; it is joined when its
 * owner thread exits (a pthread key's destructor). After fork() the child's copy of the owner
 * finds a worker of another process (pid) and starts its own.
 */
#ifndef BNNSLSTM_WORKER_H
#define BNNSLSTM_WORKER_H

#include <stdlib.h>
#include <time.h>

#include "_activations.h"   /* bl_ftz_enter */
#include "_helper.h"

/* A worker keeps spinning this long after its last task before it parks: long enough for a
 * stream of one-step calls (Python's turn between them is 10-50 us), short enough that an idle
 * process gives its CPU back at once. */
#define BL_LINGER_NS 200000LL

static atomic_ulong bl_workers_started;   /* threads started, ever (tests) */
static atomic_long bl_workers_live;       /* workers running now (tests) */

static pthread_key_t bl_worker_key;
static pthread_once_t bl_worker_once = PTHREAD_ONCE_INIT;

static long long bl_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The next epoch after `seen`: spin, then yield, then park. */
static unsigned bl_worker_wait(bl_worker *w, unsigned seen)
{
    unsigned e, spins = 0;
    long long since = 0;
    while ((e = atomic_load_explicit(&w->epoch, memory_order_acquire)) == seen) {
        if (spins == 256)
            since = bl_now_ns();
        if (spins > 256 && (spins & 15) == 0 && bl_now_ns() - since > BL_LINGER_NS) {
            pthread_mutex_lock(&w->lock);
            atomic_store(&w->parked, 1);
            while ((e = atomic_load(&w->epoch)) == seen)
                pthread_cond_wait(&w->wake, &w->lock);
            atomic_store(&w->parked, 0);
            pthread_mutex_unlock(&w->lock);
            return e;
        }
        bl_relax(spins++);
    }
    return e;
}

static void *bl_worker_main(void *arg)
{
    bl_worker *w = (bl_worker *)arg;
    unsigned seen = 0;
    /* the same denormal mode as the calling threads inside the kernel, so that both parts are
       computed alike (this thread runs nothing else) */
    (void)bl_ftz_enter();
    for (;;) {
        seen = bl_worker_wait(w, seen);
        if (atomic_load_explicit(&w->quit, memory_order_relaxed))
            return NULL;
        w->fn(w->arg, 1);
        atomic_store_explicit(&w->done, seen, memory_order_release);
    }
}

/* Keep the worker on the caller's CPUs but off the caller's own one. The scheduler may otherwise
 * place it beside the caller when every CPU was idle (measured after a 20 ms sleep: both
 * threads on one core, 5x slower) and not move it before the call ends. The caller may have
 * moved, or been given other CPUs (sched_setaffinity, taskset), since the last call: the worker
 * follows (one system call a call to read the caller's affinity, one more when it changed). A
 * caller allowed one CPU shares it with the worker, as a thread it started would. */
static void bl_worker_place(bl_worker *w)
{
#if defined(__linux__)
    cpu_set_t cpus;
    int cpu = sched_getcpu();
    if (pthread_getaffinity_np(pthread_self(), sizeof cpus, &cpus) != 0)
        return;
    if (cpu == w->excluded && CPU_EQUAL(&cpus, &w->placed))
        return;
    w->placed = cpus;
    w->excluded = cpu;
    if (cpu >= 0 && CPU_COUNT(&cpus) >= 2)
        CPU_CLR(cpu, &cpus);
    (void)pthread_setaffinity_np(w->thread, sizeof cpus, &cpus);
#else
    (void)w;
#endif
}

static void bl_worker_free(void *arg)
{
    bl_worker *w = (bl_worker *)arg;
    atomic_store_explicit(&w->quit, 1, memory_order_relaxed);
    bl_worker_post(w);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->lock);
    atomic_fetch_sub(&bl_workers_live, 1);
    free(w);
}

static void bl_worker_key_make(void)
{
    (void)pthread_key_create(&bl_worker_key, bl_worker_free);
}

static bl_worker *bl_worker_new(void)
{
    bl_worker *w = (bl_worker *)calloc(1, sizeof *w);
    int started;
    if (w == NULL)
        return NULL;
    w->pid = getpid();
    w->excluded = -1;
    atomic_init(&w->parked, 0);
    atomic_init(&w->epoch, 0);
    atomic_init(&w->done, 0);
    atomic_init(&w->quit, 0);
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w);
        return NULL;
    }
    if (pthread_cond_init(&w->wake, NULL) != 0) {
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    /* placed (bl_worker_place) before its first task */
    started = pthread_create(&w->thread, NULL, bl_worker_main, w) == 0;
    if (!started) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    atomic_fetch_add(&bl_workers_started, 1);
    atomic_fetch_add(&bl_workers_live, 1);
    return w;
}

/* This thread's record of its worker (NULL: none yet). */
static bl_worker *bl_worker_record(void)
{
    pthread_once(&bl_worker_once, bl_worker_key_make);
    return (bl_worker *)pthread_getspecific(bl_worker_key);
}

/* This thread's worker, started if it has none (or only the parent's, after fork); NULL if
 * it could not start. */
static bl_worker *bl_own_worker(void)
{
    bl_worker *w = bl_worker_record();
    if (w != NULL && w->pid != getpid()) {
        /* fork's child: the thread is not here, and its lock may be held by no one who will
           give it back; leave the parent's copy alone */
        (void)pthread_setspecific(bl_worker_key, NULL);
        w = NULL;
    }
    if (w == NULL) {
        w = bl_worker_new();
        if (w != NULL && pthread_setspecific(bl_worker_key, w) != 0) {
            bl_worker_free(w);
            w = NULL;
        }
    }
    return w;
}

/* Stop and join this thread's worker, if it has one (bnnslstm_release_workspace); the next
 * two-thread call starts another. */
static void bl_worker_release_own(void)
{
    bl_worker *w = bl_worker_record();
    if (w == NULL || w->busy)
        return;
    (void)pthread_setspecific(bl_worker_key, NULL);
    if (w->pid == getpid())      /* a fork's child has only the parent's record: leave it */
        bl_worker_free(w);
}

/* 1 if this call has the helper; 0 (one thread, the same results) if it could not start or
 * this thread's worker is lent already (a nested call). */
static int bl_helper_start(bl_helper *h)
{
    bl_worker *w = bl_own_worker();
    h->w = NULL;
    if (w == NULL || w->busy)
        return 0;
    w->busy = 1;
    bl_worker_place(w);
    h->w = w;
    return 1;
}

/* The call is done with the helper (its last bl_run_parts waited for it). */
static void bl_helper_stop(bl_helper *h)
{
    if (h->w == NULL)
        return;
    h->w->busy = 0;
    h->w = NULL;
}

#endif
