// AMX path (Intel AMX-TILE + AMX-INT8, e.g. Sapphire Rapids): the binary conv as an int8 matrix
// multiply on the tile unit. Each input row is unpacked once from its packed bits to int8
// (bit set -> -1, clear -> +1, 64 bytes per 64-channel word: one masked blend) into a ring of
// k padded rows; then for every block of 16-pixel M tiles x 16-channel N tiles, TDPBSSD
// accumulates the k x k taps straight from the ring rows (A: 16 pixels x 64 channels at a
// stride of one pixel, the tap's column offset being the start address) against B tiles of the
// +-1 weights, prepared once per call (or once per layer, ConvArgs::wamx). The int32 tile sums
// are sign-domain dot products: padding pixels and channels past C are zero bytes, so they add
// nothing, exactly the 'same' zero padding of the sign domain; no popcount correction. The
// epilogue and the packing are the avx512 path's (kernel_avx512_isa.inc, kernel_body.inc).
//
// TDPBSSD does 16 x 16 x 64 = 16384 int8 MACs per instruction; where it issues every 16 cycles
// that is 1024 binary MACs per cycle, three times the xor + vpopcntq + add ceiling of AVX-512
// (341 per cycle where vpopcntq issues once per cycle).
#include "kernel.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>
#include <stdlib.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vpopcntdq,avx2,fma,popcnt,amx-tile,amx-int8")
#define BSR_HAVE_AVX512 1  // for kernel_body.inc (g++ sets no __AVX*__ macro for the pragma)

namespace bsr {
namespace {

#include "kernel_avx512_isa.inc"

struct TileConfig {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

// tiles 0-3: C (16 pixels x 16 int32), 4-5: A (16 pixels x 64 int8), 6-7: B (16 x 64 int8)
static void load_tile_config() {
    TileConfig c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; ++i) {
        c.rows[i] = 16;
        c.colsb[i] = 64;
    }
    _tile_loadconfig(&c);
}

static inline int ntiles16(int O) { return (O + 15) / 16; }
static inline int ntiles_padded(int O) { return (ntiles16(O) + 1) & ~1; }  // even: 2-wide blocks

// C[mi][ni] += sum over taps and words of A(pixels m0 + 16 mi, tap) x B(tap, nt0 + ni)
template <int MB, int NB>
static void amx_block(const int8_t* const* rowp, const int* kys, int nky, int k, int Cw, int64_t CB,
                      const int8_t* wamx, int NTp, int m0, int nt0, int32_t* cbuf, int64_t ldc) {
    _tile_zero(0);
    if (NB > 1) _tile_zero(1);
    if (MB > 1) _tile_zero(2);
    if (MB > 1 && NB > 1) _tile_zero(3);
    for (int q = 0; q < nky; ++q) {
        const int ky = kys[q];
        for (int kx = 0; kx < k; ++kx) {
            const int8_t* arow = rowp[q] + (int64_t)(m0 + kx) * CB;
            const int8_t* brow = wamx + ((int64_t)(ky * k + kx) * Cw * NTp + nt0) * 1024;
            for (int j = 0; j < Cw; ++j) {
                const int8_t* ap = arow + (int64_t)j * 64;
                const int8_t* bp = brow + (int64_t)j * NTp * 1024;
                _tile_loadd(4, ap, CB);
                _tile_loadd(6, bp, 64);
                if (NB > 1) _tile_loadd(7, bp + 1024, 64);
                if (MB > 1) _tile_loadd(5, ap + 16 * CB, CB);
                _tile_dpbssd(0, 4, 6);
                if (NB > 1) _tile_dpbssd(1, 4, 7);
                if (MB > 1) _tile_dpbssd(2, 5, 6);
                if (MB > 1 && NB > 1) _tile_dpbssd(3, 5, 7);
            }
        }
    }
    int32_t* c0 = cbuf + (int64_t)m0 * ldc + nt0 * 16;
    _tile_stored(0, c0, ldc * 4);
    if (NB > 1) _tile_stored(1, c0 + 16, ldc * 4);
    if (MB > 1) _tile_stored(2, c0 + 16 * ldc, ldc * 4);
    if (MB > 1 && NB > 1) _tile_stored(3, c0 + 16 * ldc + 16, ldc * 4);
}

// 2 x 2 block, software-pipelined: the tiles of the next (tap, word) step are loaded right
// after the last TDPBSSD that reads the register they replace, so the loads overlap the
// multiplies still running (the tile registers are not renamed).
static void amx_block_pipelined(const int8_t* const* rowp, const int* kys, int nky, int k, int Cw,
                                int64_t CB, const int8_t* wamx, int NTp, int m0, int nt0, int32_t* cbuf,
                                int64_t ldc) {
    const int nsteps = nky * k * Cw;
    const int8_t* ap[27 * 4];
    const int8_t* bp[27 * 4];
    int n = 0;
    for (int q = 0; q < nky; ++q)
        for (int kx = 0; kx < k; ++kx)
            for (int j = 0; j < Cw && n < 27 * 4; ++j, ++n) {
                ap[n] = rowp[q] + (int64_t)(m0 + kx) * CB + (int64_t)j * 64;
                bp[n] = wamx + (((int64_t)(kys[q] * k + kx) * Cw + j) * NTp + nt0) * 1024;
            }
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, ap[0], CB);
    _tile_loadd(6, bp[0], 64);
    _tile_loadd(7, bp[0] + 1024, 64);
    _tile_loadd(5, ap[0] + 16 * CB, CB);
    for (int i = 0; i < nsteps; ++i) {
        const int nx = i + 1 < nsteps ? i + 1 : i;
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        if (i + 1 < nsteps) _tile_loadd(4, ap[nx], CB);
        _tile_dpbssd(2, 5, 6);
        if (i + 1 < nsteps) _tile_loadd(6, bp[nx], 64);
        _tile_dpbssd(3, 5, 7);
        if (i + 1 < nsteps) {
            _tile_loadd(5, ap[nx] + 16 * CB, CB);
            _tile_loadd(7, bp[nx] + 1024, 64);
        }
    }
    int32_t* c0 = cbuf + (int64_t)m0 * ldc + nt0 * 16;
    _tile_stored(0, c0, ldc * 4);
    _tile_stored(1, c0 + 16, ldc * 4);
    _tile_stored(2, c0 + 16 * ldc, ldc * 4);
    _tile_stored(3, c0 + 16 * ldc + 16, ldc * 4);
}

template <int ORDER>
static void amx_row_pipelined(const int8_t* const* rowp, const int* kys, int nky, const ConvArgs& a,
                              int64_t CB, const int8_t* wamx, int32_t* cbuf, int64_t ldc) {
    const int NTp = ntiles_padded(a.O);
    const int nm = (a.W + 15) / 16;
    const int mblocks = (nm + 1) / 2, nblocks = NTp / 2;
    if (nky * a.k * a.Cw > 27 * 4) {  // more steps than the address tables hold
        for (int mb = 0; mb < mblocks; ++mb)
            for (int nb = 0; nb < nblocks; ++nb)
                amx_block<2, 2>(rowp, kys, nky, a.k, a.Cw, CB, wamx, NTp, mb * 32, nb * 2, cbuf, ldc);
        return;
    }
    if (ORDER == 0) {
        for (int mb = 0; mb < mblocks; ++mb)
            for (int nb = 0; nb < nblocks; ++nb)
                amx_block_pipelined(rowp, kys, nky, a.k, a.Cw, CB, wamx, NTp, mb * 32, nb * 2, cbuf, ldc);
    } else {
        for (int nb = 0; nb < nblocks; ++nb)
            for (int mb = 0; mb < mblocks; ++mb)
                amx_block_pipelined(rowp, kys, nky, a.k, a.Cw, CB, wamx, NTp, mb * 32, nb * 2, cbuf, ldc);
    }
}

// Variants: blocks of MB x NB tiles; ORDER 0 walks M blocks outermost (the B tiles of a block
// row are reread per M block), 1 walks N blocks outermost.
template <int MB, int NB, int ORDER>
static void amx_row(const int8_t* const* rowp, const int* kys, int nky, const ConvArgs& a, int64_t CB,
                    const int8_t* wamx, int32_t* cbuf, int64_t ldc) {
    const int NTp = ntiles_padded(a.O);
    const int nm = (a.W + 15) / 16;
    const int mblocks = (nm + MB - 1) / MB, nblocks = NTp / NB;
    if (ORDER == 0) {
        for (int mb = 0; mb < mblocks; ++mb)
            for (int nb = 0; nb < nblocks; ++nb)
                amx_block<MB, NB>(rowp, kys, nky, a.k, a.Cw, CB, wamx, NTp, mb * MB * 16, nb * NB, cbuf, ldc);
    } else {
        for (int nb = 0; nb < nblocks; ++nb)
            for (int mb = 0; mb < mblocks; ++mb)
                amx_block<MB, NB>(rowp, kys, nky, a.k, a.Cw, CB, wamx, NTp, mb * MB * 16, nb * NB, cbuf, ldc);
    }
}

typedef void (*AmxRowFn)(const int8_t* const*, const int*, int, const ConvArgs&, int64_t, const int8_t*,
                         int32_t*, int64_t);
const AmxRowFn kAmxVariants[] = {amx_row_pipelined<0>, amx_row_pipelined<1>, amx_row<2, 2, 0>,
                                  amx_row<2, 2, 1>, amx_row<1, 2, 0>, amx_row<2, 1, 0>};
const char* const kAmxVariantNames[] = {"2x2 tiles pipelined, M outer", "2x2 tiles pipelined, N outer",
                                        "2x2 tiles, M outer", "2x2 tiles, N outer", "1x2 tiles", "2x1 tiles"};
constexpr int kAmxNumVariants = 6;

static void unpack_row(const uint64_t* src, int nwords, int8_t* dst) {
    const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
    for (int i = 0; i < nwords; ++i)
        _mm512_storeu_si512((void*)(dst + (int64_t)i * 64),
                            _mm512_mask_blend_epi8(_cvtu64_mask64(src[i]), plus, minus));
}

static void conv_rows_amx_impl(const ConvArgs& a, int64_t r0, int64_t r1) {
    const int k = a.k, pad = k / 2, Cw = a.Cw, W = a.W, H = a.H, P = a.P, Ot = a.Ot;
    const int NTp = ntiles_padded(a.O);
    const int64_t CB = (int64_t)Cw * 64;
    const int mpix = ((W + 15) / 16 + 1) / 2 * 32;  // pixels the widest block covers
    const int Wp = mpix + 2 * pad + 16;             // ring row: left pad, pixels, slack (zero)
    int8_t* wown = nullptr;
    const int8_t* wamx = a.wamx;
    if (!wamx) {
        wown = new int8_t[amx_weight_bytes(a)];
        amx_prepare_weights(a, wown);
        wamx = wown;
    }
    const int64_t ring_bytes = (int64_t)P * k * Wp * CB;
    int8_t* ring = (int8_t*)aligned_alloc(64, (ring_bytes + 63) / 64 * 64);
    memset(ring, 0, ring_bytes);
    int64_t* tag = new int64_t[(int64_t)P * k];
    for (int i = 0; i < P * k; ++i) tag[i] = -1;
    const int64_t ldc = (int64_t)NTp * 16;
    int32_t* cbuf = (int32_t*)aligned_alloc(64, (size_t)(mpix + 16) * ldc * 4);
    float* zrow = P > 1 ? new float[(int64_t)Ot * W * 8 + 8] : nullptr;
    int64_t* ridx = new int64_t[(int64_t)Ot * 8];
    for (int o = 0; o < Ot * 8; ++o)
        ridx[o] = (int64_t)(imin(o, a.O - 1) / (a.repeat > 0 ? a.repeat : 1)) * a.rc;
    const AmxRowFn row_fn = kAmxVariants[a.variant >= 0 && a.variant < kAmxNumVariants ? a.variant : 0];
    load_tile_config();
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / H;
        const int y = (int)(r % H);
        const int ky0 = imax(0, pad - y), ky1 = imin(k, H - y + pad), nky = ky1 - ky0;
        for (int p = 0; p < P; ++p) {
            const int8_t* rowp[8];
            int kys[8];
            for (int q = 0; q < nky; ++q) {
                const int yy = y + ky0 + q - pad, s = yy % k;
                const int64_t key = n * H + yy;
                int8_t* slot = ring + ((int64_t)p * k + s) * Wp * CB;
                if (tag[p * k + s] != key) {
                    unpack_row(a.x + (((int64_t)p * a.N + n) * H + yy) * W * Cw, W * Cw, slot + pad * CB);
                    tag[p * k + s] = key;
                }
                rowp[q] = slot;
                kys[q] = ky0 + q;
            }
            row_fn(rowp, kys, nky, a, CB, wamx, cbuf, ldc);
            if (a.mode == kOutInt) {
                int32_t* op = (int32_t*)a.out + p * a.op + n * a.on + y * a.oy;
                for (int x = 0; x < W; ++x)
                    for (int o = 0; o < a.O; ++o) op[x * a.ox + o * a.oo] = cbuf[x * ldc + o];
            } else if (P > 1) {
                const float* ps = a.part_scale + (int64_t)p * Ot * kOcTile;
                for (int ot = 0; ot < Ot; ++ot) {
                    const v8f sc = ld8(ps + ot * kOcTile);
                    float* zt = zrow + (int64_t)ot * W * 8;
                    for (int x = 0; x < W; ++x) {
                        const v8f term = sc * __builtin_convertvector(ld8i(cbuf + x * ldc + ot * 8), v8f);
                        const v8f prev = p == 0 ? v8f{} : ld8(zt + x * 8);
                        st8(zt + x * 8, prev + term);
                    }
                }
            }
        }
        if (a.mode != kOutInt) {
            const IntSrc is{cbuf, 8, ldc, 0, W};
            if (P == 1)
                epilogue_row<true>(a, n, y, zrow, is, ridx);
            else
                epilogue_row<false>(a, n, y, zrow, is, ridx);
        }
    }
    _tile_release();
    free(ring);
    free(cbuf);
    delete[] tag;
    delete[] zrow;
    delete[] ridx;
    delete[] wown;
}

}  // namespace

void conv_rows_amx(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_amx_impl(a, r0, r1); }

int amx_num_variants() { return kAmxNumVariants; }
const char* amx_variant_name(int v) { return kAmxVariantNames[v]; }

// Ceiling: four independent TDPBSSD on tiles that stay in the tile registers.
double peak_amx(int64_t iters, uint64_t* sink) {
    alignas(64) int8_t ab[1024];
    alignas(64) int32_t c[256];
    for (int i = 0; i < 1024; ++i) ab[i] = (int8_t)((i * 7) % 3 - 1);
    load_tile_config();
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, ab, 64); _tile_loadd(5, ab, 64); _tile_loadd(6, ab, 64); _tile_loadd(7, ab, 64);
    for (int64_t i = 0; i < iters; ++i) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    _tile_release();
    *sink += (uint64_t)c[0];
    return (double)iters * 4 * 16384;
}

}  // namespace bsr

#else  // not x86-64: the binding never selects this path.
namespace bsr {
void conv_rows_amx(const ConvArgs& a, int64_t r0, int64_t r1) { conv_rows_scalar(a, r0, r1); }
int amx_num_variants() { return 1; }
const char* amx_variant_name(int) { return "none"; }
double peak_amx(int64_t, uint64_t*) { return 0; }
}  // namespace bsr
#endif

namespace bsr {

int64_t amx_weight_bytes(const ConvArgs& a) {
    const int NTp = ((a.O + 15) / 16 + 1) & ~1;
    return (int64_t)a.k * a.k * a.Cw * NTp * 1024;
}

// B tile (tap, word j, N tile t): 16 rows of 64 bytes; row r, byte 4 n + q holds the +-1 weight
// of output channel 16 t + n and input channel 64 j + 4 r + q (zero past O or C).
void amx_prepare_weights(const ConvArgs& a, int8_t* out) {
    const int k = a.k, Cw = a.Cw, NTp = ((a.O + 15) / 16 + 1) & ~1;
    for (int tap = 0; tap < k * k; ++tap)
        for (int j = 0; j < Cw; ++j)
            for (int t = 0; t < NTp; ++t) {
                int8_t* b = out + (((int64_t)tap * Cw + j) * NTp + t) * 1024;
                for (int r = 0; r < 16; ++r)
                    for (int n = 0; n < 16; ++n)
                        for (int q = 0; q < 4; ++q) {
                            const int o = 16 * t + n, c = 64 * j + 4 * r + q;
                            int8_t v = 0;
                            if (o < a.O && c < a.C) {
                                const uint64_t word = a.w[(((int64_t)(o / 8) * k * k + tap) * Cw + j) * 8 + o % 8];
                                v = (word >> (c % 64)) & 1 ? -1 : 1;
                            }
                            b[r * 64 + 4 * n + q] = v;
                        }
            }
}

bool amx_request_permission() {
#if defined(__x86_64__) && defined(__linux__)
    // ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 (Linux >= 5.16)
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return false;
#endif
}

}  // namespace bsr
