// AVX-512 path: vpopcntq on 8 x 64-bit lanes = 8 output channels per zmm, register tile of NP
// pixels. Needs AVX512F + VPOPCNTDQ (+ BW/VL for the pack compare masks). Compiled on any
// x86-64 compiler, executed only when the CPU reports these features (see binding.cpp).
#include "kernel.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,popcnt")

namespace bsr {
namespace {

struct Isa {
    static const int NP = 8;
    static const bool HALF = true;
    // CW: words per pixel when known at compile time (1: pixels are consecutive words, one
    // base register serves the whole tile), 0 = the run-time Cw.
    template <int NPT, bool MASK, int CW>
    static void tile_cw(const uint64_t* const* xr, const uint64_t* const* wr, int nrows, int nwords,
                        int Cw, const uint64_t* maskj, int64_t xoff, int32_t* pop) {
        const int64_t cw = CW ? CW : Cw;
        __m512i acc[NPT];
        for (int i = 0; i < NPT; ++i) acc[i] = _mm512_setzero_si512();
        for (int r = 0; r < nrows; ++r) {
            const uint64_t* xp = xr[r] + xoff;
            const uint64_t* wp = wr[r];
            for (int j = 0; j < nwords; ++j) {
                const __m512i w = _mm512_loadu_si512((const void*)(wp + (int64_t)j * 8));
                for (int i = 0; i < NPT; ++i) {
                    uint64_t xs = xp[i * cw + j];
                    if (MASK) xs &= maskj[j];
                    const __m512i xv = _mm512_set1_epi64((long long)xs);
                    acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(xv, w)));
                }
            }
        }
        for (int i = 0; i < NPT; ++i)  // lane sums < 2^31: narrow to int32 in one instruction
            _mm256_storeu_si256((__m256i*)(pop + i * 8), _mm512_cvtepi64_epi32(acc[i]));
    }
    template <int NPT, bool MASK>
    static void tile(const uint64_t* const* xr, const uint64_t* const* wr, int nrows, int nwords,
                     int Cw, const uint64_t* maskj, int64_t xoff, int32_t* pop) {
        if (Cw == 1)
            tile_cw<NPT, MASK, 1>(xr, wr, nrows, nwords, Cw, maskj, xoff, pop);
        else
            tile_cw<NPT, MASK, 0>(xr, wr, nrows, nwords, Cw, maskj, xoff, pop);
    }
    // C <= 32: vpopcntd on 16 x 32-bit lanes = two tiles of 8 output channels per zmm, so no
    // lane counts the empty upper half of a word (twice the channels per instruction).
    template <int NPT, bool MASK>
    static void tile_half(const uint64_t* const* xr, const uint32_t* const* wr, int nrows, int nwords,
                          const uint64_t* maskj, int64_t xoff, int32_t* pop0, int32_t* pop1) {
        __m512i acc[NPT];
        for (int i = 0; i < NPT; ++i) acc[i] = _mm512_setzero_si512();
        for (int r = 0; r < nrows; ++r) {
            const uint64_t* xp = xr[r] + xoff;
            const uint32_t* wp = wr[r];
            for (int j = 0; j < nwords; ++j) {
                const __m512i w = _mm512_loadu_si512((const void*)(wp + (int64_t)j * 16));
                for (int i = 0; i < NPT; ++i) {
                    uint64_t xs = xp[i + j];
                    if (MASK) xs &= maskj[j];
                    const __m512i xv = _mm512_set1_epi32((int)(uint32_t)xs);
                    acc[i] = _mm512_add_epi32(acc[i], _mm512_popcnt_epi32(_mm512_xor_si512(xv, w)));
                }
            }
        }
        for (int i = 0; i < NPT; ++i) {
            _mm256_storeu_si256((__m256i*)(pop0 + i * 8), _mm512_castsi512_si256(acc[i]));
            _mm256_storeu_si256((__m256i*)(pop1 + i * 8), _mm512_extracti64x4_epi64(acc[i], 1));
        }
    }
    static uint64_t pack_word(const float* x, const float* m, const float* off, int nb);
    static unsigned mask8(const float* x, const float* m, float t) {
        __m256 v = _mm256_loadu_ps(x);
        if (m) v = _mm256_sub_ps(v, _mm256_loadu_ps(m));
        v = _mm256_sub_ps(v, _mm256_set1_ps(t));
        return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
    }
};

#include "kernel_body.inc"

uint64_t Isa::pack_word(const float* x, const float* m, const float* off, int nb) {
    const __m512 zero = _mm512_setzero_ps();
    uint64_t word = 0;
    int g = 0;
    for (; 16 * g + 16 <= nb; ++g) {
        __m512 v = _mm512_loadu_ps(x + 16 * g);
        if (m) v = _mm512_sub_ps(v, _mm512_loadu_ps(m + 16 * g));
        v = _mm512_sub_ps(v, _mm512_loadu_ps(off + 16 * g));
        word |= (uint64_t)_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ) << (16 * g);
    }
    if (16 * g < nb)
        word |= pack_word_generic(x + 16 * g, m ? m + 16 * g : nullptr, off + 16 * g, nb - 16 * g) << (16 * g);
    return word;
}

}  // namespace

void conv_rows_avx512(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_impl(a, r0, r1); }
void pack_rows_avx512(const PackArgs& a, int64_t r0, int64_t r1) { pack_rows_impl(a, r0, r1); }

}  // namespace bsr

#else  // not x86-64: the binding never selects this path; forward to the portable code.
namespace bsr {
void conv_rows_avx512(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_scalar(a, r0, r1); }
void pack_rows_avx512(const PackArgs& a, int64_t r0, int64_t r1) { pack_rows_scalar(a, r0, r1); }
}  // namespace bsr
#endif
