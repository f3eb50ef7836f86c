// AVX-512 path: vpopcntq on 8 x 64-bit lanes = 8 output channels per zmm, register tile of NP
// pixels. Needs AVX512F + VPOPCNTDQ (+ BW/VL for the pack compare masks). Compiled on any
// x86-64 compiler, executed only when the CPU reports these features (see binding.cpp).
#include "kernel.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,fma,popcnt")
#define BSR_HAVE_AVX512 1  // for kernel_body.inc (g++ sets no __AVX*__ macro for the pragma)

namespace bsr {
namespace {

#include "kernel_avx512_isa.inc"

}  // namespace

void conv_rows_avx512(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_impl(a, r0, r1); }
void pack_rows_avx512(const PackArgs& a, int64_t r0, int64_t r1) { pack_rows_impl(a, r0, r1); }

// Ceiling: 12 independent xor + vpopcntq + vpaddq chains on registers (4 activation x 3 weight
// registers, the activations re-declared live every iteration so nothing is hoisted).
double peak_avx512(int64_t iters, uint64_t* sink) {
    __m512i x0 = _mm512_set1_epi64(0x0123456789abcdefLL), x1 = _mm512_set1_epi64(0x7a5c3e1f09b2d4c6LL);
    __m512i x2 = _mm512_set1_epi64(0x5555aaaa3333ccccLL), x3 = _mm512_set1_epi64(0x0f0f00ff0ff0f00fLL);
    const __m512i w0 = _mm512_set_epi64(1, 3, 7, 15, 31, 63, 127, 255);
    const __m512i w1 = _mm512_set_epi64(-1, -3, -7, -15, -31, -63, -127, -255);
    const __m512i w2 = _mm512_set_epi64(0x1111, 0x2222, 0x4444, 0x8888, 0x1010, 0x2020, 0x4040, 0x8080);
    __m512i acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_si512();
    for (int64_t it = 0; it < iters; ++it) {
        const __m512i xs[4] = {x0, x1, x2, x3};
        const __m512i ws[3] = {w0, w1, w2};
        for (int i = 0; i < 12; ++i)
            acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(xs[i / 3], ws[i % 3])));
        __asm__ volatile("" : "+v"(x0), "+v"(x1), "+v"(x2), "+v"(x3));
    }
    __m512i t = acc[0];
    for (int i = 1; i < 12; ++i) t = _mm512_add_epi64(t, acc[i]);
    *sink += (uint64_t)_mm512_reduce_add_epi64(t);
    return (double)iters * 12 * 512;
}

// The naive loop of issue 15: one output pixel at a time; for each of the 9 taps and each input
// word, broadcast the word and xor + vpopcntq + add it against the zmm of weights of 8 output
// channels, up to 8 zmm (64 channels) per pass. Pre-padded input, int32 popcount output.
template <int T>
static void naive_pass(const NaiveArgs& a, int64_t y, int g0) {
    const int W = a.W, Cw = a.Cw, O = a.O, Wp = a.W + 2;
    for (int x = 0; x < W; ++x) {
        __m512i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_si512();
        for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
                const uint64_t* xp = a.xp + ((y + ky) * Wp + x + kx) * Cw;
                const uint64_t* wp = a.wn + ((int64_t)(ky * 3 + kx) * Cw) * O + g0 * 8;
                for (int j = 0; j < Cw; ++j) {
                    const __m512i xv = _mm512_set1_epi64((long long)xp[j]);
                    for (int t = 0; t < T; ++t)
                        acc[t] = _mm512_add_epi64(acc[t], _mm512_popcnt_epi64(_mm512_xor_si512(
                                                      xv, _mm512_loadu_si512((const void*)(wp + (int64_t)j * O + t * 8)))));
                }
            }
        int32_t* op = a.out + (y * W + x) * O + g0 * 8;
        for (int t = 0; t < T; ++t) _mm256_storeu_si256((__m256i*)(op + t * 8), _mm512_cvtepi64_epi32(acc[t]));
    }
}

void naive_rows_avx512(const NaiveArgs& a, int64_t r0, int64_t r1) {
    const int groups = a.O / 8;
    for (int64_t y = r0; y < r1; ++y)
        for (int g = 0; g < groups; g += 8) {
            switch (groups - g >= 8 ? 8 : groups - g) {
                case 8: naive_pass<8>(a, y, g); break;
                case 4: naive_pass<4>(a, y, g); break;
                case 2: naive_pass<2>(a, y, g); break;
                default:
                    for (int h = g; h < groups && h < g + 8; ++h) naive_pass<1>(a, y, h);
            }
        }
}

}  // namespace bsr

#else  // not x86-64: the binding never selects this path; forward to the portable code.
namespace bsr {
void conv_rows_avx512(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_scalar(a, r0, r1); }
void pack_rows_avx512(const PackArgs& a, int64_t r0, int64_t r1) { pack_rows_scalar(a, r0, r1); }
double peak_avx512(int64_t, uint64_t*) { return 0; }
void naive_rows_avx512(const NaiveArgs&, int64_t, int64_t) {}
}  // namespace bsr
#endif
