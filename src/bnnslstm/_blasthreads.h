/* Make OpenBLAS single-threaded while the backward's whole-sequence products run: our two
 * threads then each run half of a product on one BLAS thread, and OpenBLAS's own workers
 * never wake, so never spin (about 0.1 s after each threaded call) on the cores that our next
 * time loop, or the caller's next call, needs.
 *
 * The thread count of OpenBLAS's pthreads builds (scipy's wheels) is process-wide, and so is
 * this setting, as threadpoolctl's limits are: calls that overlap share one save and restore,
 * counted under a lock. openblas_set_num_threads_local does not help: outside OpenMP builds
 * it sets the same process-wide count. The functions are looked up in the library that holds
 * the sgemm in use; another BLAS (or none found) keeps its own threads. */
#ifndef BNNSLSTM_BLASTHREADS_H
#define BNNSLSTM_BLASTHREADS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* dladdr */
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

typedef void (*bl_set_threads_fn)(int);
typedef int (*bl_get_threads_fn)(void);

static pthread_mutex_t bl_blas_lock = PTHREAD_MUTEX_INITIALIZER;
static const void *bl_blas_looked_up;          /* the sgemm whose library was searched */
static bl_set_threads_fn bl_blas_set;          /* NULL: not OpenBLAS */
static bl_get_threads_fn bl_blas_get;
static int bl_blas_users, bl_blas_saved;       /* calls inside, and the count to restore */

static void *bl_blas_symbol(void *lib, const char *name)
{
    /* scipy's wheels build OpenBLAS with a symbol prefix */
    char prefixed[64] = "scipy_";
    size_t i = 6;
    void *f;
    for (const char *c = name; *c != '\0' && i + 1 < sizeof prefixed; c++)
        prefixed[i++] = *c;
    prefixed[i] = '\0';
    f = dlsym(lib, prefixed);
    return f != NULL ? f : dlsym(lib, name);
}

static void bl_blas_lookup(const void *sgemm_addr)   /* under bl_blas_lock */
{
    Dl_info info;
    void *lib = NULL;
    bl_blas_looked_up = sgemm_addr;
    bl_blas_set = NULL;
    bl_blas_get = NULL;
    if (sgemm_addr != NULL && dladdr(sgemm_addr, &info) && info.dli_fname != NULL)
        lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (lib == NULL)
        return;
    /* dlsym on a handle also searches the libraries it depends on (scipy's cython_blas
       module depends on its OpenBLAS) */
    bl_blas_set = (bl_set_threads_fn)bl_blas_symbol(lib, "openblas_set_num_threads");
    bl_blas_get = (bl_get_threads_fn)bl_blas_symbol(lib, "openblas_get_num_threads");
    if (bl_blas_get == NULL)
        bl_blas_set = NULL;
    dlclose(lib);   /* drops the reference RTLD_NOLOAD took; the library stays loaded */
}

/* 1: OpenBLAS now runs single-threaded until bl_blas_single_leave. 0: nothing changed (not
 * OpenBLAS, or it has more than 2 threads: with more it is faster on its own threads). */
static int bl_blas_single_enter(const void *sgemm_addr)
{
    int entered = 0;
    pthread_mutex_lock(&bl_blas_lock);
    if (sgemm_addr != bl_blas_looked_up && bl_blas_users == 0)
        bl_blas_lookup(sgemm_addr);   /* once per back end: they switch rarely (set_blas) */
    if (sgemm_addr == bl_blas_looked_up && bl_blas_set != NULL) {
        if (bl_blas_users > 0) {
            entered = 1;
        } else {
            int n = bl_blas_get();
            if (n <= 2) {
                bl_blas_saved = n;
                bl_blas_set(1);
                entered = 1;
            }
        }
        bl_blas_users += entered;
    }
    pthread_mutex_unlock(&bl_blas_lock);
    return entered;
}

static void bl_blas_single_leave(void)
{
    pthread_mutex_lock(&bl_blas_lock);
    if (--bl_blas_users == 0)
        bl_blas_set(bl_blas_saved);
    pthread_mutex_unlock(&bl_blas_lock);
}

#endif
