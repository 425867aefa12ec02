# cython: language_level=3
"""Workspace memory (DESIGN step 8: one allocation per call, never inside the time loop).

With allocator callbacks in BNNSFilterParameters (spec 1.9, 4.4), every call allocates and
frees through them. Without, each thread keeps its largest workspace so far for its next call
(freed when the thread exits, or by bnnslstm_release_workspace): fresh memory costs a page
fault and a page of zeroing per 4 KiB, which was a sixth of the time of a forward pass.
"""
from bnnslstm.bnns cimport BNNSFilterParameters

cdef extern from *:
    """
    #include <pthread.h>
    #include <stdlib.h>
    typedef struct { void *ptr; size_t size; } bl_block;
    static pthread_key_t bl_block_key;
    static pthread_once_t bl_block_once = PTHREAD_ONCE_INIT;
    static void bl_block_destroy(void *b) { free(((bl_block *)b)->ptr); free(b); }
    static void bl_block_init(void) { pthread_key_create(&bl_block_key, bl_block_destroy); }

    /* This thread's cached block, grown to `size` bytes (64-byte aligned); NULL if out of
       memory. Grows by at least 1/8 so that slowly growing calls do not reallocate each time. */
    static void *bl_cached_block(size_t size) {
        bl_block *b;
        pthread_once(&bl_block_once, bl_block_init);
        b = (bl_block *)pthread_getspecific(bl_block_key);
        if (b == NULL) {
            b = (bl_block *)calloc(1, sizeof *b);
            if (b == NULL || pthread_setspecific(bl_block_key, b) != 0) { free(b); return NULL; }
        }
        if (b->size < size) {
            size_t grow = b->size + b->size / 8;
            void *p = NULL;
            if (grow < size) grow = size;
            free(b->ptr);
            b->ptr = NULL;
            b->size = 0;
            if (posix_memalign(&p, 64, grow) != 0) return NULL;
            b->ptr = p;
            b->size = grow;
        }
        return b->ptr;
    }
    static void bl_release_block(void) {
        bl_block *b;
        pthread_once(&bl_block_once, bl_block_init);
        b = (bl_block *)pthread_getspecific(bl_block_key);
        if (b != NULL) { free(b->ptr); b->ptr = NULL; b->size = 0; }
    }
    """
    void *cached_block "bl_cached_block"(size_t size) nogil
    void release_block "bl_release_block"() nogil

cdef enum:
    WS_ALIGN = 64   # bytes: a cache line, and a full AVX-512 vector

cdef inline void *ws_alloc(const BNNSFilterParameters *fp, size_t nbytes) noexcept nogil:
    cdef void *p = NULL
    if nbytes == 0:
        nbytes = WS_ALIGN
    if fp.alloc_memory != NULL:
        if fp.alloc_memory(&p, WS_ALIGN, nbytes) != 0:
            return NULL
        return p
    return cached_block(nbytes)

cdef inline void ws_free(const BNNSFilterParameters *fp, void *p) noexcept nogil:
    if p != NULL and fp.free_memory != NULL:
        fp.free_memory(p)
