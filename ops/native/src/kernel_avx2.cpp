// AVX2 path: popcount by the vpshufb nibble lookup (W. Mula), byte counters flushed with
// vpsadbw every 31 words (31 * 8 = 248 < 256). 8 output channels = two ymm of 4 x 64 bits;
// a register tile of 4 pixels reuses each weight load 4 times and each broadcast activation
// word for 8 output channels. Three of the pixels run on the vector pipes, the fourth on the
// scalar POPCNT units, which Zen 3 otherwise leaves idle (measured about 5% faster than a
// 3-pixel vector-only tile, and a 4-pixel vector-only tile was slower: 16 ymm registers).
#include "kernel.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC target("avx2,fma,popcnt")
#define BSR_HAVE_AVX2 1  // for kernel_body.inc (g++ sets no __AVX*__ macro for the pragma)

namespace bsr {
namespace {

static inline __m256i popcount_bytes(__m256i v, __m256i lut, __m256i low) {
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

struct Isa {
    static const int NP = 4;
    static const bool WIDE = false;
    static const bool DIRECT = false;
    static const int NP1 = 3, NP2 = 2;  // variants: vector-only tiles of 3 and 2 pixels
    static const bool HALF = true;
    template <int NPT, bool MASK>
    static void tile(const uint64_t* const* xr, const uint64_t* const* wr, int nrows, int nwords,
                     int Cw, const uint64_t* maskj, int64_t xoff, int32_t* pop) {
        const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                             0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
        const __m256i low = _mm256_set1_epi8(0x0f);
        const __m256i zero = _mm256_setzero_si256();
        alignas(32) uint64_t tot[NPT][8] = {};
        __m256i acc[NPT][2];
        for (int i = 0; i < NPT; ++i) acc[i][0] = acc[i][1] = zero;
        // byte counters hold at most 255: flush after at most 31 words (31 * 8 = 248)
        auto flush = [&]() {
            for (int i = 0; i < (NPT == 4 ? NPT - 1 : NPT); ++i)
                for (int h = 0; h < 2; ++h) {
                    __m256i t = _mm256_load_si256((const __m256i*)&tot[i][4 * h]);
                    t = _mm256_add_epi64(t, _mm256_sad_epu8(acc[i][h], zero));
                    _mm256_store_si256((__m256i*)&tot[i][4 * h], t);
                    acc[i][h] = zero;
                }
        };
        // HYB: the last pixel of the tile runs on the scalar POPCNT units, in parallel with
        // the vector pipes doing the others
        constexpr bool HYB = NPT == 4;
        constexpr int NV = HYB ? NPT - 1 : NPT;
        uint64_t sacc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        auto run = [&](const uint64_t* xp, const uint64_t* wp, int j0, int j1) {
            for (int j = j0; j < j1; ++j) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i*)(wp + (int64_t)j * 8));
                const __m256i w1 = _mm256_loadu_si256((const __m256i*)(wp + (int64_t)j * 8 + 4));
                if (HYB) {
                    uint64_t xs = xp[(int64_t)NV * Cw + j];
                    if (MASK) xs &= maskj[j];
                    const uint64_t* wj = wp + (int64_t)j * 8;
                    for (int o = 0; o < 8; ++o) sacc[o] += (uint64_t)__builtin_popcountll(xs ^ wj[o]);
                }
                for (int i = 0; i < NV; ++i) {
                    uint64_t xs = xp[(int64_t)i * Cw + j];
                    if (MASK) xs &= maskj[j];
                    const __m256i xv = _mm256_set1_epi64x((long long)xs);
                    acc[i][0] = _mm256_add_epi8(acc[i][0], popcount_bytes(_mm256_xor_si256(xv, w0), lut, low));
                    acc[i][1] = _mm256_add_epi8(acc[i][1], popcount_bytes(_mm256_xor_si256(xv, w1), lut, low));
                }
            }
        };
        if (nrows * nwords <= 31) {  // one block: no 64-bit totals, straight to int32
            for (int r = 0; r < nrows; ++r) run(xr[r] + xoff, wr[r], 0, nwords);
            const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
            for (int i = 0; i < NV; ++i) {
                // 64-bit lane sums are < 2^31: put channels 4-7 in the high dwords, reorder
                const __m256i lo = _mm256_sad_epu8(acc[i][0], zero);
                const __m256i hi = _mm256_slli_epi64(_mm256_sad_epu8(acc[i][1], zero), 32);
                const __m256i both = _mm256_permutevar8x32_epi32(_mm256_or_si256(lo, hi), order);
                _mm256_storeu_si256((__m256i*)(pop + i * 8), both);
            }
            if (HYB)
                for (int o = 0; o < 8; ++o) pop[NV * 8 + o] = (int32_t)sacc[o];
            return;
        }
        if (nwords <= 31) {
            const int rows_per_flush = 31 / nwords;
            for (int r0 = 0; r0 < nrows; r0 += rows_per_flush) {
                const int r1 = r0 + rows_per_flush < nrows ? r0 + rows_per_flush : nrows;
                for (int r = r0; r < r1; ++r) run(xr[r] + xoff, wr[r], 0, nwords);
                flush();
            }
        } else {
            for (int r = 0; r < nrows; ++r)
                for (int j0 = 0; j0 < nwords; j0 += 31) {
                    run(xr[r] + xoff, wr[r], j0, j0 + 31 < nwords ? j0 + 31 : nwords);
                    flush();
                }
        }
        for (int i = 0; i < NV; ++i)
            for (int o = 0; o < 8; ++o) pop[i * 8 + o] = (int32_t)tot[i][o];
        if (HYB)
            for (int o = 0; o < 8; ++o) pop[NV * 8 + o] = (int32_t)sacc[o];
    }
    // C <= 32 (one word per tap, its upper half empty): 8 x 32-bit lanes per ymm, so one ymm
    // holds a tile of 8 output channels (two tiles per weight row of 16 lanes) instead of two;
    // byte counters are summed per 32-bit lane (vpmaddubsw + vpmaddwd). All pixels of the tile
    // run on the vector pipes: a scalar 4th pixel would need 16 popcounts per word here, and
    // measured 24 % slower (Intel Xeon, 32 -> 32 3x3 on 128x128).
    template <int NPT, bool MASK>
    static void tile_half(const uint64_t* const* xr, const uint32_t* const* wr, int nrows, int nwords,
                          const uint64_t* maskj, int64_t xoff, int32_t* pop0, int32_t* pop1) {
        const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                             0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
        const __m256i low = _mm256_set1_epi8(0x0f);
        const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
        __m256i acc[NPT][2], tot[NPT][2];
        for (int i = 0; i < NPT; ++i) acc[i][0] = acc[i][1] = tot[i][0] = tot[i][1] = _mm256_setzero_si256();
        auto flush = [&]() {  // byte counters (at most 31 words of 8 bits each) -> 32-bit lanes
            for (int i = 0; i < NPT; ++i)
                for (int h = 0; h < 2; ++h) {
                    const __m256i s16 = _mm256_maddubs_epi16(acc[i][h], ones8);
                    tot[i][h] = _mm256_add_epi32(tot[i][h], _mm256_madd_epi16(s16, ones16));
                    acc[i][h] = _mm256_setzero_si256();
                }
        };
        int since_flush = 0;
        for (int r = 0; r < nrows; ++r) {
            const uint64_t* xp = xr[r] + xoff;
            const uint32_t* wp = wr[r];
            for (int j = 0; j < nwords; ++j) {
                if (since_flush == 31) {
                    flush();
                    since_flush = 0;
                }
                ++since_flush;
                const __m256i w0 = _mm256_loadu_si256((const __m256i*)(wp + (int64_t)j * 16));
                const __m256i w1 = _mm256_loadu_si256((const __m256i*)(wp + (int64_t)j * 16 + 8));
                for (int i = 0; i < NPT; ++i) {
                    uint64_t xs = xp[i + j];
                    if (MASK) xs &= maskj[j];
                    const __m256i xv = _mm256_set1_epi32((int)(uint32_t)xs);
                    acc[i][0] = _mm256_add_epi8(acc[i][0], popcount_bytes(_mm256_xor_si256(xv, w0), lut, low));
                    acc[i][1] = _mm256_add_epi8(acc[i][1], popcount_bytes(_mm256_xor_si256(xv, w1), lut, low));
                }
            }
        }
        flush();
        for (int i = 0; i < NPT; ++i) {
            _mm256_storeu_si256((__m256i*)(pop0 + i * 8), tot[i][0]);
            _mm256_storeu_si256((__m256i*)(pop1 + i * 8), tot[i][1]);
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
    const __m256 zero = _mm256_setzero_ps();
    uint64_t word = 0;
    int g = 0;
    for (; 8 * g + 8 <= nb; ++g) {
        __m256 v = _mm256_loadu_ps(x + 8 * g);
        if (m) v = _mm256_sub_ps(v, _mm256_loadu_ps(m + 8 * g));
        v = _mm256_sub_ps(v, _mm256_loadu_ps(off + 8 * g));
        word |= (uint64_t)(unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)) << (8 * g);
    }
    if (8 * g < nb)
        word |= pack_word_generic(x + 8 * g, m ? m + 8 * g : nullptr, off + 8 * g, nb - 8 * g) << (8 * g);
    return word;
}

}  // namespace

void conv_rows_avx2(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_impl(a, r0, r1); }
void pack_rows_avx2(const PackArgs& a, int64_t r0, int64_t r1) { pack_rows_impl(a, r0, r1); }

// Ceiling: 6 independent chains of xor + nibble-lookup popcount + byte add on registers, byte
// counters folded into 64-bit lanes (vpsadbw) every 31 iterations, as in the kernel.
double peak_avx2(int64_t iters, uint64_t* sink) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i x0 = _mm256_set1_epi64x(0x0123456789abcdefLL), x1 = _mm256_set1_epi64x(0x7a5c3e1f09b2d4c6LL);
    const __m256i w0 = _mm256_set_epi64x(1, 3, 7, 15), w1 = _mm256_set_epi64x(-1, -3, -7, -15);
    const __m256i w2 = _mm256_set_epi64x(0x1111, 0x2222, 0x4444, 0x8888);
    __m256i acc[6], tot = zero;
    for (int i = 0; i < 6; ++i) acc[i] = zero;
    const int64_t blocks = (iters + 30) / 31;
    for (int64_t b = 0; b < blocks; ++b) {
        for (int it = 0; it < 31; ++it) {
            const __m256i xs[2] = {x0, x1};
            const __m256i ws[3] = {w0, w1, w2};
            for (int i = 0; i < 6; ++i)
                acc[i] = _mm256_add_epi8(acc[i], popcount_bytes(_mm256_xor_si256(xs[i / 3], ws[i % 3]), lut, low));
            __asm__ volatile("" : "+x"(x0), "+x"(x1));
        }
        for (int i = 0; i < 6; ++i) {
            tot = _mm256_add_epi64(tot, _mm256_sad_epu8(acc[i], zero));
            acc[i] = zero;
        }
    }
    alignas(32) uint64_t t[4];
    _mm256_store_si256((__m256i*)t, tot);
    *sink += t[0] + t[1] + t[2] + t[3];
    return (double)blocks * 31 * 6 * 256;
}

// The naive loop's AVX2 analogue: one output pixel at a time, 32 output channels (8 ymm of byte
// counters) per pass; each input word of the pre-padded 3x3 window is broadcast and xor +
// nibble-lookup popcount + add against the weights; counters folded after each kernel row.
void naive_rows_avx2(const NaiveArgs& a, int64_t r0, int64_t r1) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const int W = a.W, Cw = a.Cw, O = a.O, Wp = a.W + 2;
    for (int64_t y = r0; y < r1; ++y)
        for (int g = 0; g < O; g += 32) {
            const int ng = (O - g) >= 32 ? 8 : (O - g) / 4;  // ymm of 4 channels
            for (int x = 0; x < W; ++x) {
                __m256i tot[8];
                for (int t = 0; t < 8; ++t) tot[t] = zero;
                for (int ky = 0; ky < 3; ++ky) {
                    __m256i acc[8];
                    for (int t = 0; t < 8; ++t) acc[t] = zero;
                    for (int kx = 0; kx < 3; ++kx) {
                        const uint64_t* xp = a.xp + ((y + ky) * Wp + x + kx) * Cw;
                        const uint64_t* wp = a.wn + ((int64_t)(ky * 3 + kx) * Cw) * O + g;
                        for (int j = 0; j < Cw; ++j) {
                            const __m256i xv = _mm256_set1_epi64x((long long)xp[j]);
                            for (int t = 0; t < 8; ++t)
                                if (t < ng)
                                    acc[t] = _mm256_add_epi8(acc[t], popcount_bytes(_mm256_xor_si256(xv,
                                        _mm256_loadu_si256((const __m256i*)(wp + (int64_t)j * O + t * 4))), lut, low));
                        }
                    }
                    for (int t = 0; t < 8; ++t) tot[t] = _mm256_add_epi64(tot[t], _mm256_sad_epu8(acc[t], zero));
                }
                int32_t* op = a.out + (y * W + x) * O + g;
                for (int t = 0; t < ng; ++t) {
                    alignas(32) int64_t v[4];
                    _mm256_store_si256((__m256i*)v, tot[t]);
                    for (int l = 0; l < 4; ++l) op[t * 4 + l] = (int32_t)v[l];
                }
            }
        }
}

}  // namespace bsr

#else  // not x86-64: the binding never selects this path; forward to the portable code.
namespace bsr {
void conv_rows_avx2(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_scalar(a, r0, r1); }
void pack_rows_avx2(const PackArgs& a, int64_t r0, int64_t r1) { pack_rows_scalar(a, r0, r1); }
double peak_avx2(int64_t, uint64_t*) { return 0; }
void naive_rows_avx2(const NaiveArgs&, int64_t, int64_t) {}
}  // namespace bsr
#endif
