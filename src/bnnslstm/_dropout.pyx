# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Dropout between stacked layers (D6): inverted, from a seeded counter-based generator.

Each element's keep/drop decision is a pure function of (key, layer boundary, element index),
so a mask is reproducible from its key and needs no generator state in the loop. The key of
each training call comes from a per-thread (seed, call counter) pair: setting the seed makes
the following calls' masks reproducible on that thread.
"""
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    static _Thread_local uint64_t bl_seed = 0, bl_calls = 0;
    static inline uint64_t bl_mix(uint64_t z) {   /* splitmix64's finalizer */
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    """
    uint64_t bl_seed, bl_calls
    uint64_t mix "bl_mix"(uint64_t z) nogil

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL

cdef void set_seed(uint64_t seed) noexcept nogil:
    global bl_seed, bl_calls
    bl_seed = seed
    bl_calls = 0

cdef uint64_t next_key() noexcept nogil:
    global bl_calls
    bl_calls += 1
    return mix(bl_seed ^ mix(bl_calls * GOLDEN))

cdef void fill_mask(uint64_t key, size_t boundary, size_t n, float p,
                    unsigned char *mask) noexcept nogil:
    """mask[i] = 1 with probability 1 - p, for the outputs of layer `boundary`."""
    cdef uint64_t keep = <uint64_t>((1.0 - <double>p) * 16777216.0)   # 24-bit threshold
    cdef uint64_t base = key + GOLDEN * (<uint64_t>boundary << 40)
    cdef size_t i
    for i in range(n):
        mask[i] = (mix(base + GOLDEN * (i + 1)) >> 40) < keep

cdef void apply_mask(const float *src, const unsigned char *mask, size_t n, float p,
                     float *dst) noexcept nogil:
    """Inverted dropout: kept values scaled by 1 / (1 - p), dropped ones 0."""
    cdef float scale = 1.0 / (1.0 - p)
    cdef size_t i
    for i in range(n):
        dst[i] = src[i] * scale if mask[i] else 0.0
