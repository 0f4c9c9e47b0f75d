/*
 * Processor helpers for the IPVS fast path that Swift has no words for:
 * cache prefetch and a one-instruction compare of an index bucket's seven
 * signatures. Header-only and DPDK-free (the IPVS module must stay
 * unit-testable without DPDK); being static inline they compile into the
 * Swift caller.
 */
#ifndef SWITCHYARD_CINTRINSICS_H
#define SWITCHYARD_CINTRINSICS_H

#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Bring a cache line in for reading (all cache levels). */
static inline void sy_prefetch_read(const void *p) { __builtin_prefetch(p, 0, 3); }
/* Bring a cache line in for writing. */
static inline void sy_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

/*
 * Bit s (0...7) set when 32-bit word s of the 32 bytes at `bucket` equals
 * `sig`. The connection index keeps seven signatures and an overflow count
 * in the first 32 bytes of a 64-byte bucket; callers mask off bit 7.
 */
static inline uint32_t sy_match_signatures(const void *bucket, uint32_t sig) {
#if defined(__SSE2__)
    const __m128i key = _mm_set1_epi32((int)sig);
    const __m128i lo = _mm_load_si128((const __m128i *)bucket);
    const __m128i hi = _mm_load_si128((const __m128i *)bucket + 1);
    uint32_t a = (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(lo, key)));
    uint32_t b = (uint32_t)_mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(hi, key)));
    return a | (b << 4);
#else
    const uint32_t *w = (const uint32_t *)bucket;
    uint32_t m = 0;
    for (int s = 0; s < 8; s++) m |= (uint32_t)(w[s] == sig) << s;
    return m;
#endif
}

#endif
