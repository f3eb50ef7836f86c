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
};

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

}  // namespace bsr
