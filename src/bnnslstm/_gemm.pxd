# cython: language_level=3
"""The one place the kernels multiply matrices: row-major GEMM on top of Fortran-ABI sgemm
(the backward's products, unless the next one takes them), the products with weights packed
once per call (_pgemm.h), and the backward's whole-sequence products on that kernel, blocked for
the caches (_bgemm.h); each split in two parts that a helper thread can share (_helper.h)."""

from bnnslstm._blas cimport dispatch_sgemm as sgemm

cdef extern from "_helper.h" nogil:
    ctypedef struct bl_helper:
        pass
    ctypedef void (*task_fn "bl_task_fn")(void *arg, int part) noexcept nogil
    void run_parts "bl_run_parts"(bl_helper *h, task_fn fn, void *arg)
    bint parts_here "bl_parts_here"(const bl_helper *h)
    long online_cpus "bl_online_cpus"()
    ctypedef unsigned long atomic_ulong
    void step_barrier "bl_step_barrier"(atomic_ulong *arrived, unsigned long target)
    unsigned long claim "bl_claim"(atomic_ulong *tickets)

cdef extern from "_pgemm.h" nogil:
    ctypedef struct bl_pgemm_job:
        int rev, pf
        const float *W
        size_t ldw
        float *buf[2]
        float *keep
    size_t packed_size "bl_packed_size"(int n, int k)
    ctypedef struct bl_pack_job:
        int gates, H, k
        size_t ldw
        const float *W
        float *Wp
    void pack_task "bl_pack_task"(void *job, int part)
    void pack_panels_t "bl_pack_panels_t"(int n, int k, const float *W, size_t ldw, float *Wp)
    bl_pgemm_job pgemm_job "bl_pgemm_job_make"(int m, int gates, int H, int k, const float *A,
                                                size_t lda, const float *Wp, float *C,
                                                size_t ldc, int add)
    void pgemm_task "bl_pgemm_task"(void *job, int part)
    void pgemm_all "bl_pgemm_all"(const bl_pgemm_job *job)
    void pgemm_units_job "bl_pgemm_units"(const bl_pgemm_job *job, int p0, int p1)
    size_t direct_floats "bl_direct_floats"(int k)
    bint pf_wanted "bl_pf_wanted"(int m, int n, int k)
    int unit_chunk "bl_unit_chunk"(int P)

cdef extern from "_bgemm.h" nogil:
    void bgemm "bl_bgemm"(int m, int n, int k, const float *A, size_t lda, int at,
                          const float *B, size_t ldb, float *C, size_t ldc, int add, float *buf)
    size_t bgemm_floats "bl_bgemm_floats"(int n, int k, int at)
    void bgemm2 "bl_bgemm2"(int m, int k, const float *A, size_t lda, int at, int n1,
                            const float *B1, size_t ldb1, float *C1, size_t ldc1, int n2,
                            const float *B2, size_t ldb2, float *C2, size_t ldc2, int add,
                            float *buf)
    size_t bgemm2_floats "bl_bgemm2_floats"(int n1, int n2, int k, int at)
    bint bgemm_ok "bl_bgemm_ok"()
    int bg_choose_l1_blocks "bl_bg_choose_l1_blocks"(int l1)
    ctypedef struct bl_bgemm_shared:
        int m, k, n1, n2
        const float *A
        size_t lda
        const float *B1
        const float *B2
        size_t ldb1, ldb2
        float *C1
        float *C2
        size_t ldc1, ldc2
        float *bp
    size_t bgemm_shared_floats "bl_bgemm_shared_floats"(int m, int n1, int n2, int k)
    void bgemm_shared_init "bl_bgemm_shared_init"(bl_bgemm_shared *j)
    int bgemm_shared_run "bl_bgemm_shared_run"(bl_bgemm_shared *j, float *ap)

cdef enum:
    # With two threads, each takes half of the batch rows of a time loop (forward or
    # backward) from this many rows each; below, the forward splits the panels of each product
    # (small batches are bound by streaming W_h, which the row split would stream twice).
    SPLIT_MIN_ROWS = 8
    # The multiply-adds from which the helper pays for its hand-offs: a forward or backward
    # call below it runs on one thread (_forward.use_helper), and so do the backward's
    # whole-sequence products. The helper is each calling thread's worker, kept between calls
    # (_worker.h). 2 threads / 1 on the Zen 4 VM: back to back, below 2M 0.68-0.78 (N = 1: H =
    # 128, 256, 384, T = 1), from 2M 0.53-0.73; after 10 ms pauses (the worker parked, the
    # caches cold) below 2M up to 1.24 (H = 128, N = 1: T = 1 1.24, T = 8 1.05-1.17; H = 256,
    # T = 1 0.94-0.97), from 2M 0.57-0.98 except H = 128 with 1 to 25 steps of 1 to 16 rows
    # (0.90-1.16). With a thread started per call (60-110 us) the bound was 4M.
    HELPER_MIN_MACS = 1 << 21

cdef inline void gemm_rm(char ta, char tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta,
                         float *c, int ldc) noexcept nogil:
    """C[m x n] = alpha * op(A)[m x k] @ op(B)[k x n] + beta * C, all row-major.

    Row-major C is column-major C^T, so this is column-major C^T = op(B)^T @ op(A)^T.
    """
    sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *>b, &ldb, <float *>a, &lda, &beta, c, &ldc)

cdef inline void run_pgemm(bl_helper *helper, bl_pgemm_job *job) noexcept nogil:
    """The job's two parts on this thread and a running helper, or all of it here in one pass
    (bl_pgemm_all: rev then reverses the whole order, not each half)."""
    if parts_here(helper):
        pgemm_all(job)
    else:
        run_parts(helper, pgemm_task, job)

cdef inline void pgemm(bl_helper *helper, int m, int gates, int H, int k, const float *a,
                       size_t lda, const float *wp, float beta, float *c, size_t ldc,
                       bint rev=False) noexcept nogil:
    """C[m x gates*H] = A[m x k] @ W^T + beta * C (beta 0 or 1), row-major, W packed by
    pack_gates; a running helper (NULL: none) takes half of the panels. rev: visit the panels
    last to first, for a time loop to alternate (each step then starts on the panels the
    previous step left in L2; results do not depend on the order)."""
    cdef bl_pgemm_job job = pgemm_job(m, gates, H, k, a, lda, wp, c, ldc, beta != 0)
    job.rev = rev
    run_pgemm(helper, &job)

cdef inline void pgemm_units(int m, int gates, int H, int k, const float *a, size_t lda,
                             const float *wp, float beta, float *c, size_t ldc, int p0, int p1,
                             bint rev) noexcept nogil:
    """pgemm on this thread, panels [p0, p1) of every gate only (a unit split's share)."""
    cdef bl_pgemm_job job = pgemm_job(m, gates, H, k, a, lda, wp, c, ldc, beta != 0)
    job.rev = rev
    pgemm_units_job(&job, p0, p1)

cdef inline float *align64(float *p) noexcept nogil:
    """p moved up to the next 64-byte boundary (the aligned loads of the panels): a buffer
    needs 15 floats to spare."""
    return p + ((-(<size_t>p) // sizeof(float)) & 15)

cdef enum:
    # The products with W^T packed in k blocks (pack_kblocks): k beyond KBLOCK_MAX goes in
    # blocks of KBLOCK, whose panels (and A's rows) stay in L2 while the rows pass (h1024's
    # dh = dA W_h, k = 4096: 192-196 GFLOP/s against 176-190 over the whole k, with prefetch)
    KBLOCK_MAX = 2048
    KBLOCK = 1024

cdef inline int kblock(int k) noexcept nogil:
    return k if k <= KBLOCK_MAX else KBLOCK

cdef inline void pack_kblocks(int n, int k, const float *w, size_t ldw, float *wp) noexcept nogil:
    """W [k x n] (row stride ldw) as panels of W^T, one packed matrix per k block (kblock(k)):
    packed_size(n, k) floats in all."""
    cdef int kc = kblock(k), k0 = 0
    while k0 < k:
        pack_panels_t(n, min(kc, k - k0), w + <size_t>k0 * ldw, ldw,
                      wp + packed_size(n, kc) * <size_t>(k0 // kc))
        k0 += kc

cdef inline void pgemm_kblocks(bl_helper *helper, int m, int n, int k, const float *a,
                               size_t lda, const float *wp, float *c, size_t ldc,
                               bint rev) noexcept nogil:
    """C[m x n] = A[m x k] @ W, W packed by pack_kblocks: block by block, the blocks added in
    k order (one block, k <= KBLOCK_MAX: pgemm's result); a running helper (NULL: none) takes
    half of each block's panels. The blocks prefetch as the whole W's size asks (pf_wanted),
    not as one block's."""
    cdef int kc = kblock(k), k0 = 0
    cdef bl_pgemm_job job
    while k0 < k:
        job = pgemm_job(m, 1, n, min(kc, k - k0), a + k0, lda,
                        wp + packed_size(n, kc) * <size_t>(k0 // kc), c, ldc, k0 > 0)
        job.rev, job.pf = rev, pf_wanted(m, n, k)
        run_pgemm(helper, &job)
        k0 += kc

cdef inline void pgemm_direct(bl_helper *helper, int m, int gates, int H, int k, const float *a,
                              size_t lda, const float *w, size_t ldw, float beta, float *c,
                              size_t ldc, float *buf) noexcept nogil:
    """pgemm with W ([gates*H x k], row stride ldw) as it lies, packed chunk by chunk into buf
    (2 * direct_floats(k) floats: one half per thread) as the rows pass."""
    cdef bl_pgemm_job job = pgemm_job(m, gates, H, k, a, lda, NULL, c, ldc, beta != 0)
    job.W, job.ldw = w, ldw
    job.buf[0], job.buf[1] = buf, buf + direct_floats(k)
    run_pgemm(helper, &job)

cdef inline void pgemm_packing(bl_helper *helper, int m, int gates, int H, int k,
                               const float *a, size_t lda, const float *w, size_t ldw,
                               float *wp, float beta, float *c, size_t ldc) noexcept nogil:
    """C = A @ W^T + beta * C, packing W ([gates*H x k], row stride ldw) into wp (as
    pack_gates does) chunk by chunk as the product passes it: the first step of a time loop
    reads W once for both. Results are those of pack_gates then pgemm."""
    cdef bl_pgemm_job job = pgemm_job(m, gates, H, k, a, lda, NULL, c, ldc, beta != 0)
    job.W, job.ldw, job.keep = w, ldw, wp
    run_pgemm(helper, &job)

cdef inline void pack_gates(bl_helper *helper, int gates, int H, int k, const float *w,
                            size_t ldw, float *wp) noexcept nogil:
    """W ([gates*H x k], row stride ldw) into the panels pgemm reads; the helper packs half."""
    cdef bl_pack_job job
    job.gates, job.H, job.k, job.ldw, job.W, job.Wp = gates, H, k, ldw, w, wp
    run_parts(helper, pack_task, &job)
