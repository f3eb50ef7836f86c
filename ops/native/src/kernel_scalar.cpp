// Portable scalar path: baseline x86-64 (or any CPU), popcount by SWAR bit tricks.
#include "kernel.h"

static inline uint64_t popcount_swar(uint64_t v) {
    v = v - ((v >> 1) & 0x5555555555555555ULL);
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return (v * 0x0101010101010101ULL) >> 56;
}

#define BSR_POPCOUNT64(v) popcount_swar(v)
#define BSR_SUFFIX(name) name##_scalar
#include "kernel_word.inc"
