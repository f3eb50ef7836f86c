// Shared declarations of the xnor-popcount kernel (see ops/native/__init__.py for the contract).
//
// Bit convention: a bit is SET when the binarized value is -1, i.e. when (x - t) - offset < 0
// (sign(0) = +1 -> bit clear), as in Larq. Channels are packed along the innermost axis into
// uint64 words, NHWC: word c / 64, bit c % 64. Bits past the last real channel are zero in
// everything this library produces, and the conv masks them anyway.
//
// Weights are pre-packed per tile of 8 output channels: shape (ceil(O/8), k, k, Cw, 8), so one
// 512-bit load (or two 256-bit loads) holds the same word of 8 output channels.
//
// This header is plain C++ (no std templates) because it is included in translation units
// compiled for different instruction sets (see kernel_*.cpp).
#pragma once
#include <stdint.h>
#include <stdlib.h>  // aligned_alloc: the kernels' scratch buffers start on a cache line

namespace bsr {

constexpr int kOcTile = 8;  // output channels per weight tile

enum OutMode : int { kOutInt = 0, kOutFloat = 1, kOutPacked = 2 };

struct PackArgs {
    const float* x;        // element (n, c, y, x) at x + n*sn + c*sc + y*sy + x*sx
    int64_t sn, sc, sy, sx;
    const float* map;      // optional threshold map, same shape, own strides (nullptr: none)
    int64_t mn, mc, my, mx;
    const float* offsets;  // (P, C) contiguous
    int N, C, H, W, P, Cw;
    uint64_t* out;         // (P, N, H, W, Cw) contiguous, zero-initialised not required
};

struct ConvArgs {
    const uint64_t* x;     // (P, N, H, W, Cw)
    const uint64_t* w;     // (Ot, k, k, Cw, 8)
    int N, H, W, C, Cw, k, P, O, Ot;
    int mode;              // OutMode
    // epilogue (float and packed modes); per-channel vectors are padded to Ot*8 entries
    const float* part_scale;  // (P, Ot*8)
    const float* bias;        // (Ot*8)
    const float* spatial;     // optional (n, y, x) at spatial + n*pn + y*py + x*px
    int64_t pn, py, px;
    const float* post_scale;  // (Ot*8)
    const float* post_bias;   // (Ot*8)
    // optional (nullptr: none) affine step before the spatial multiply, z = z * norm_scale +
    // norm_bias (a BN followed by an input-dependent rescale, as PyTorch orders them)
    const float* norm_scale;  // (Ot*8)
    const float* norm_bias;   // (Ot*8)
    int fma;                  // 1: the affine steps are fused multiply-adds (one rounding), as
                              // PyTorch's CPU batch_norm does where its kernels use FMA
    // optional (nullptr: none; one part, no norm step, no spatial map): the part scale, bias and
    // post affine folded into one step, z = I * fold_scale + fold_bias with fold_scale =
    // part_scale * post_scale, fold_bias = bias * post_scale + post_bias: one rounding instead
    // of four, so within float32 rounding of the unfolded order, not bit-equal to it (the
    // compiled network's exact=False; exact=True never folds)
    const float* fold_scale;  // (Ot*8)
    const float* fold_bias;   // (Ot*8)
    int act;                  // 0 none, 1 prelu-family: t = z - shift; t<0 ? t*slope : t; + abias
    int act_after_skip;       // 1: activation after the residual add, 0: before
    const float* slope;       // (Ot*8)
    const float* act_shift;   // (Ot*8)
    const float* act_bias;    // (Ot*8)
    const float* residual;    // optional (n, c, y, x), c = o / repeat, own strides
    int64_t rn, rc, ry, rx;
    int repeat;
    const float* out_threshold;  // packed mode: bit set when (z - thr) < 0, (Ot*8)
    // outputs: int32 (P, n, o, y, x) / float32 (n, o, y, x) with strides; packed (N,H,W,Ow)
    void* out;
    int64_t on, oo, oy, ox, op;  // element strides (op: between parts, int mode)
    int Ow;
    // float mode: optionally also the next layer's packed bits in the same pass. Plane q of
    // bits_out (q < Pn, at bits_out + q * bits_ps, each (N, H, W, Ow) contiguous) gets bit o set
    // when (z - bits_off[q * Ot*8 + o]) < 0, z the float value stored: exactly what packing
    // the float output with those offsets gives. Packed mode uses the same fields (Pn = 1).
    uint64_t* bits_out;
    int64_t bits_ps;
    const float* bits_off;
    int Pn;
    // kernel variant (tile shape / loop order) of the chosen path: 0 is the default; see
    // conv_variants_<isa>. Every variant computes the same integers.
    int variant;
    // amx only: the weights as int8 +-1 B tiles, prepared by amx_prepare_weights (nullptr:
    // the kernel prepares its own copy)
    const int8_t* wamx;
};

constexpr int kMaxBitPlanes = 4;  // planes of packed output one conv call can write

// The AMX path's variants (ConvArgs::variant): block shapes and loop orders of its tiles.
int amx_num_variants();
const char* amx_variant_name(int v);

// One function per instruction set; each processes output rows [r0, r1) of the flattened
// (n, y) index. Defined in kernel_<isa>.cpp.
void conv_rows_scalar(const ConvArgs& a, int64_t r0, int64_t r1);
void conv_rows_popcnt(const ConvArgs& a, int64_t r0, int64_t r1);
void conv_rows_avx2(const ConvArgs& a, int64_t r0, int64_t r1);
void conv_rows_avx512(const ConvArgs& a, int64_t r0, int64_t r1);
void pack_rows_scalar(const PackArgs& a, int64_t r0, int64_t r1);
void pack_rows_popcnt(const PackArgs& a, int64_t r0, int64_t r1);
void pack_rows_avx2(const PackArgs& a, int64_t r0, int64_t r1);
void pack_rows_avx512(const PackArgs& a, int64_t r0, int64_t r1);
// amx: AMX-INT8 tile matrix multiply on bits unpacked to int8 +-1 (packing and the epilogue are
// the avx512 path's). amx_prepare_weights fills amx_weight_bytes(a) bytes (plain C++).
void conv_rows_amx(const ConvArgs& a, int64_t r0, int64_t r1);
int64_t amx_weight_bytes(const ConvArgs& a);
void amx_prepare_weights(const ConvArgs& a, int8_t* out);
bool amx_request_permission();  // Linux: arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)

// Measured ceilings (benchmarks/kernel.py): a register-resident loop of the path's inner
// operation (xor + popcount + add; amx: TDPBSSD), `iters` iterations; returns the number of
// binary MACs it did (the result is kept live through *sink).
double peak_scalar(int64_t iters, uint64_t* sink);
double peak_popcnt(int64_t iters, uint64_t* sink);
double peak_avx2(int64_t iters, uint64_t* sink);
double peak_avx512(int64_t iters, uint64_t* sink);
double peak_amx(int64_t iters, uint64_t* sink);

// The "naive loop" baseline of issue 15: per output pixel, broadcast each input word of the
// 3x3 window of a pre-padded input xp (H+2, W+2, Cw) and xor + popcount + add it against
// O/8 (avx512: zmm of 8 channels; avx2: 2 ymm) weight registers, wn (k, k, Cw, O) words, int32
// output out (H, W, O) = popcount sums (no border handling, no epilogue). Rows [r0, r1).
struct NaiveArgs {
    const uint64_t* xp;
    const uint64_t* wn;
    int32_t* out;
    int H, W, Cw, O;
};
void naive_rows_avx512(const NaiveArgs& a, int64_t r0, int64_t r1);
void naive_rows_avx2(const NaiveArgs& a, int64_t r0, int64_t r1);

}  // namespace bsr
