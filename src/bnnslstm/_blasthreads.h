/* OpenBLAS's per-thread thread count (openblas_set_num_threads_local, OpenBLAS >= 0.3.27),
 * looked up in the library that holds the sgemm in use. With it, the backward's two threads
 * each run half of a whole-sequence product on one BLAS thread: OpenBLAS's own workers then
 * never wake, and so never spin (about 0.1 s after each threaded call) on the cores that our
 * next time loop, or the caller's next call, needs. */
#ifndef BNNSLSTM_BLASTHREADS_H
#define BNNSLSTM_BLASTHREADS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* dladdr */
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

typedef int (*bl_set_threads_local_fn)(int);
typedef int (*bl_get_threads_fn)(void);

typedef struct {
    bl_set_threads_local_fn set_local;   /* NULL: not OpenBLAS, or older than 0.3.27 */
    bl_get_threads_fn get;               /* the BLAS's (global) thread count */
} bl_blas_threads;

static bl_blas_threads bl_blas_threads_of(const void *sgemm_addr)
{
    /* one lookup per BLAS back end (they switch rarely: bnnslstm.set_blas) */
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static const void *looked_up;
    static bl_blas_threads found;
    bl_blas_threads t;
    pthread_mutex_lock(&lock);
    if (sgemm_addr != looked_up) {
        Dl_info info;
        void *lib = NULL;
        found.set_local = NULL;
        found.get = NULL;
        looked_up = sgemm_addr;
        if (sgemm_addr != NULL && dladdr(sgemm_addr, &info) && info.dli_fname != NULL)
            lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
        if (lib != NULL) {
            found.set_local = (bl_set_threads_local_fn)dlsym(lib,
                                                             "openblas_set_num_threads_local");
            /* scipy's wheels build OpenBLAS with a symbol prefix, though not for this one */
            found.get = (bl_get_threads_fn)dlsym(lib, "scipy_openblas_get_num_threads");
            if (found.get == NULL)
                found.get = (bl_get_threads_fn)dlsym(lib, "openblas_get_num_threads");
            if (found.get == NULL)
                found.set_local = NULL;
            dlclose(lib);   /* drops the reference RTLD_NOLOAD took; the library stays */
        }
    }
    t = found;
    pthread_mutex_unlock(&lock);
    return t;
}

#endif
