// Scalar-style path with the hardware POPCNT instruction (x86-64 + popcnt, no vector unit
// needed). On AMD Zen 3 POPCNT r64 issues on all four integer ALUs, so this loop competes
// with the AVX2 nibble-lookup path; BENCHMARKS.md records which one is faster here.
#include "kernel.h"

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("popcnt")
#endif

#define BSR_POPCOUNT64(v) __builtin_popcountll(v)
#define BSR_SUFFIX(name) name##_popcnt
#include "kernel_word.inc"
