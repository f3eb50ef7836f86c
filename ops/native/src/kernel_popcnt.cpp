// Scalar-style path with the hardware POPCNT instruction (x86-64 + popcnt, no vector unit
// needed). On AMD Zen 3 POPCNT r64 issues on all four integer ALUs, so this loop competes
// with the AVX2 nibble-lookup path; BENCHMARKS.md records which one is faster here.
#include "kernel.h"

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("popcnt")
#endif

namespace bsr {
namespace {

struct Isa {
    static const int NP = 1;
    template <int NPT, bool MASK>
    static void tile(const uint64_t* const* xr, const uint64_t* const* wr, int nrows, int nwords,
                     int Cw, const uint64_t* maskj, int64_t xoff, int32_t* pop) {
        uint64_t acc[NPT][8] = {};
        for (int r = 0; r < nrows; ++r) {
            const uint64_t* xp = xr[r] + xoff;
            const uint64_t* wp = wr[r];
            for (int j = 0; j < nwords; ++j) {
                const uint64_t* wj = wp + (int64_t)j * 8;
                for (int i = 0; i < NPT; ++i) {
                    uint64_t xv = xp[(int64_t)i * Cw + j];
                    if (MASK) xv &= maskj[j];
                    for (int o = 0; o < 8; ++o) acc[i][o] += __builtin_popcountll(xv ^ wj[o]);
                }
            }
        }
        for (int i = 0; i < NPT; ++i)
            for (int o = 0; o < 8; ++o) pop[i * 8 + o] = (int32_t)acc[i][o];
    }
    static uint64_t pack_word(const float* x, const float* m, const float* off, int nb);
    static unsigned mask8(const float* x, const float* m, float t);
};

#include "kernel_body.inc"

uint64_t Isa::pack_word(const float* x, const float* m, const float* off, int nb) {
    return pack_word_generic(x, m, off, nb);
}

unsigned Isa::mask8(const float* x, const float* m, float t) { return mask_generic(x, m, t, 8); }

}  // namespace

void conv_rows_popcnt(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_impl(a, r0, r1); }
void pack_rows_popcnt(const PackArgs& a, int64_t r0, int64_t r1) { pack_rows_impl(a, r0, r1); }

}  // namespace bsr
