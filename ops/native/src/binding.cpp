// pybind11 binding of the xnor-popcount kernel: validation, ISA dispatch, thread split.
// Takes numpy arrays only (no PyTorch C++ API). Every bad input raises std::invalid_argument,
// which pybind11 maps to ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel.h"
#include "thread_pool.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace py = pybind11;
using bsr::ConvArgs;
using bsr::PackArgs;
using bsr_pool::parallel_rows;

namespace {

// ----------------------------------------------------------------------------- ISA dispatch
struct Features {
    bool x86 = false, popcnt = false, avx2 = false, avx512f = false, avx512bw = false,
         avx512vl = false, avx512vpopcntdq = false, amx_tile = false, amx_int8 = false,
         amx_os = false;  // amx_os: XCR0 enables the tile state and the OS granted its use
};

Features detect() {
    Features f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    f.x86 = true;
    f.popcnt = __builtin_cpu_supports("popcnt");
    f.avx2 = __builtin_cpu_supports("avx2");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512vpopcntdq = __builtin_cpu_supports("avx512vpopcntdq");
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.amx_tile = (d >> 24) & 1;
        f.amx_int8 = (d >> 25) & 1;
    }
    if (f.amx_tile && f.amx_int8 && __get_cpuid(1, &a, &b, &c, &d) && ((c >> 27) & 1)) {  // OSXSAVE
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        const bool xcr0 = ((lo >> 17) & 3) == 3;  // XTILECFG and XTILEDATA enabled
        f.amx_os = xcr0 && bsr::amx_request_permission();
    }
#endif
    return f;
}

const Features& features() {
    static const Features f = detect();
    return f;
}

bool isa_supported(const std::string& isa) {
    const Features& f = features();
    if (isa == "scalar") return true;
    if (isa == "popcnt") return f.popcnt;
    if (isa == "avx2") return f.avx2 && f.popcnt;
    if (isa == "avx512") return f.avx512f && f.avx512bw && f.avx512vl && f.avx512vpopcntdq;
    if (isa == "amx") return isa_supported("avx512") && f.amx_tile && f.amx_int8 && f.amx_os;
    return false;
}

// Order of preference of the automatic choice ("auto"): measured on the 64 -> 64 3x3 layer
// (BENCHMARKS.md `kernel`, README of ops/native), each path faster than the next where both run.
const char* const kIsaOrder[] = {"amx", "avx512", "avx2", "popcnt", "scalar"};

std::vector<std::string> supported_isas() {
    std::vector<std::string> out;
    for (const char* isa : kIsaOrder)
        if (isa_supported(isa)) out.push_back(isa);
    return out;
}

std::string resolve_isa(const std::string& isa) {
    if (isa == "auto") return supported_isas().front();
    bool known = false;
    for (const char* k : kIsaOrder) known = known || isa == k;
    if (!known)
        throw std::invalid_argument("isa: unknown value '" + isa +
                                    "'; allowed: auto, amx, avx512, avx2, popcnt, scalar");
    if (!isa_supported(isa)) {
        std::string s;
        for (const auto& k : supported_isas()) s += (s.empty() ? "" : ", ") + k;
        throw std::invalid_argument("isa: '" + isa + "' is not supported by this CPU; supported: " + s);
    }
    return isa;
}

typedef void (*ConvFn)(const ConvArgs&, int64_t, int64_t);
typedef void (*PackFn)(const PackArgs&, int64_t, int64_t);

ConvFn conv_fn(const std::string& isa) {
    if (isa == "amx") return bsr::conv_rows_amx;
    if (isa == "avx512") return bsr::conv_rows_avx512;
    if (isa == "avx2") return bsr::conv_rows_avx2;
    if (isa == "popcnt") return bsr::conv_rows_popcnt;
    return bsr::conv_rows_scalar;
}

PackFn pack_fn(const std::string& isa) {
    if (isa == "avx512" || isa == "amx") return bsr::pack_rows_avx512;
    if (isa == "avx2") return bsr::pack_rows_avx2;
    if (isa == "popcnt") return bsr::pack_rows_popcnt;
    return bsr::pack_rows_scalar;
}

// Kernel variants of each path (ConvArgs::variant), default first. The popcount paths differ in
// the register tile (pixels per weight load: kernel_body.inc conv_rows_np), amx in the block
// of tiles and the loop order (kernel_amx.cpp).
std::vector<std::string> conv_variants(const std::string& isa) {
    if (isa == "amx") {
        std::vector<std::string> v;
        for (int i = 0; i < bsr::amx_num_variants(); ++i) v.push_back(bsr::amx_variant_name(i));
        return v;
    }
    if (isa == "avx512")
        return {"8-pixel tile", "4-pixel tile", "12-pixel tile", "1 pixel x 64 channels (naive-loop order)",
                // 4-6: the epilogue in the register tail where the layer allows it (kernel_body.inc
                // tail_applies: a compiled network's folded layers, C % 64 == 0, O % 16 == 0),
                // else through a chunk buffer of pixel-major integers
                "direct: 3 pixels x 64 channels, register-tail epilogue", "direct: 6 pixels x 32 channels, register-tail epilogue",
                "direct: 4 pixels x 32 channels, register-tail epilogue"};
    if (isa == "avx2") return {"4-pixel tile (3 vector + 1 scalar)", "3-pixel tile", "2-pixel tile"};
    return {"1-pixel tile", "2-pixel tile", "4-pixel tile"};
}

// ----------------------------------------------------------------------------- array checks
std::string shape_str(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

template <class T>
void check_array(const py::array& a, const char* name, int ndim, bool contiguous) {
    if (!a.dtype().is(py::dtype::of<T>()))
        throw std::invalid_argument(std::string(name) + ": dtype " + std::string(py::str(a.dtype())) +
                                    " given; allowed: " + std::string(py::str(py::dtype::of<T>())));
    if (a.ndim() != ndim)
        throw std::invalid_argument(std::string(name) + ": " + std::to_string(a.ndim()) +
                                    "-D array of shape " + shape_str(a) + " given; allowed: " +
                                    std::to_string(ndim) + "-D");
    for (py::ssize_t i = 0; i < a.ndim(); ++i)
        if (a.strides(i) % (py::ssize_t)sizeof(T) != 0)
            throw std::invalid_argument(std::string(name) + ": strides not a multiple of the item size");
    if (contiguous && !(a.flags() & py::array::c_style))
        throw std::invalid_argument(std::string(name) + ": non-contiguous array given; allowed: C-contiguous");
}

void check_shape(const py::array& a, const char* name, const std::vector<py::ssize_t>& want) {
    bool ok = a.ndim() == (py::ssize_t)want.size();
    for (size_t i = 0; ok && i < want.size(); ++i) ok = a.shape(i) == want[i];
    if (!ok) {
        std::string w = "(";
        for (size_t i = 0; i < want.size(); ++i) w += (i ? ", " : "") + std::to_string(want[i]);
        throw std::invalid_argument(std::string(name) + ": shape " + shape_str(a) + " given; expected " +
                                    w + (want.size() == 1 ? ",)" : ")"));
    }
}

int64_t es(const py::array& a, int i) { return a.strides(i) / (py::ssize_t)a.itemsize(); }

// Storage on 64-byte boundaries for what the kernels read with whole-vector loads (weights,
// epilogue vectors): a zmm load that straddles two cache lines costs two (AMD Zen 5: the
// naive loop 0.30 ms with 64-byte-aligned weights, 0.40 ms at a 16-byte offset). Used in this
// (baseline-ISA) translation unit only.
template <class T>
struct Aligned64 {
    using value_type = T;
    Aligned64() = default;
    template <class U>
    Aligned64(const Aligned64<U>&) {}
    T* allocate(size_t n) {
        void* p = aligned_alloc(64, ((n ? n : 1) * sizeof(T) + 63) / 64 * 64);
        if (!p) throw std::bad_alloc();
        return (T*)p;
    }
    void deallocate(T* p, size_t) { free(p); }
    template <class U>
    bool operator==(const Aligned64<U>&) const { return true; }
    template <class U>
    bool operator!=(const Aligned64<U>&) const { return false; }
};
template <class T>
using avec = std::vector<T, Aligned64<T>>;

// Per-channel vector padded to n entries (default value where None).
avec<float> channel_vector(const py::object& obj, const char* name, int count, int padded,
                           float fill) {
    avec<float> v(padded, fill);
    if (obj.is_none()) return v;
    py::array a = py::reinterpret_borrow<py::array>(obj);
    check_array<float>(a, name, 1, true);
    check_shape(a, name, {count});
    const float* p = (const float*)a.data();
    for (int i = 0; i < count; ++i) v[i] = p[i];
    return v;
}

py::array as_array(const py::object& o, const char* name) {
    if (!py::isinstance<py::array>(o))
        throw std::invalid_argument(std::string(name) + ": numpy array required, got " +
                                    std::string(py::str(py::type::of(o))));
    return py::reinterpret_borrow<py::array>(o);
}

// ----------------------------------------------------------------------------- entry points
py::array pack_activations(const py::object& xo, const py::object& offo, const py::object& mapo,
                           int threads, const std::string& isa_name) {
    const std::string isa = resolve_isa(isa_name);
    py::array x = as_array(xo, "x"), off = as_array(offo, "offsets");
    check_array<float>(x, "x", 4, false);
    check_array<float>(off, "offsets", 2, true);
    const int N = (int)x.shape(0), C = (int)x.shape(1), H = (int)x.shape(2), W = (int)x.shape(3);
    if (C < 1) throw std::invalid_argument("x: channel count must be >= 1, got shape " + shape_str(x));
    if (off.shape(1) != C || off.shape(0) < 1)
        throw std::invalid_argument("offsets: shape " + shape_str(off) + " given; expected (P, " +
                                    std::to_string(C) + ") with P >= 1 (C from x " + shape_str(x) + ")");
    PackArgs a{};
    a.x = (const float*)x.data();
    a.sn = es(x, 0); a.sc = es(x, 1); a.sy = es(x, 2); a.sx = es(x, 3);
    py::array map;
    if (!mapo.is_none()) {
        map = as_array(mapo, "threshold_map");
        check_array<float>(map, "threshold_map", 4, false);
        check_shape(map, "threshold_map", {N, C, H, W});
        a.map = (const float*)map.data();
        a.mn = es(map, 0); a.mc = es(map, 1); a.my = es(map, 2); a.mx = es(map, 3);
    }
    a.offsets = (const float*)off.data();
    a.N = N; a.C = C; a.H = H; a.W = W; a.P = (int)off.shape(0); a.Cw = (C + 63) / 64;
    py::array_t<uint64_t> out({(py::ssize_t)a.P, (py::ssize_t)N, (py::ssize_t)H, (py::ssize_t)W,
                               (py::ssize_t)a.Cw});
    a.out = out.mutable_data();
    PackFn fn = pack_fn(isa);
    // packing: about one cycle per channel and part of a pixel
    parallel_rows((int64_t)N * H, threads, (double)W * C * a.P, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
    return out;
}

py::array pack_weights(const py::object& wo) {
    py::array w = as_array(wo, "weight");
    check_array<float>(w, "weight", 4, true);
    const int O = (int)w.shape(0), C = (int)w.shape(1), k = (int)w.shape(2);
    if (w.shape(3) != k || (k != 1 && k != 3))
        throw std::invalid_argument("weight: shape " + shape_str(w) +
                                    " given; expected (out, in, k, k) with k in {1, 3}");
    if (O < 1 || C < 1) throw std::invalid_argument("weight: empty shape " + shape_str(w));
    const int Cw = (C + 63) / 64, Ot = (O + 7) / 8;
    py::array_t<uint64_t> out({(py::ssize_t)Ot, (py::ssize_t)k, (py::ssize_t)k, (py::ssize_t)Cw,
                               (py::ssize_t)8});
    uint64_t* o = out.mutable_data();
    std::fill(o, o + (size_t)Ot * k * k * Cw * 8, (uint64_t)0);
    const float* p = (const float*)w.data();
    for (int oc = 0; oc < O; ++oc)
        for (int c = 0; c < C; ++c)
            for (int ky = 0; ky < k; ++ky)
                for (int kx = 0; kx < k; ++kx)
                    if (p[(((int64_t)oc * C + c) * k + ky) * k + kx] < 0.f)
                        o[((((int64_t)(oc / 8) * k + ky) * k + kx) * Cw + c / 64) * 8 + oc % 8] |=
                            (uint64_t)1 << (c % 64);
    return out;
}

// fma=True runs the epilogue's affine steps as fused multiply-adds: refused where the CPU has
// no FMA unit (the vector paths would fault on vfmadd).
static void check_fma(bool fma) {
    if (fma && !__builtin_cpu_supports("fma"))
        throw std::invalid_argument("fma: True given, but this CPU has no FMA instructions; allowed: False");
}

void conv(const py::object& xo, const py::object& wo, int in_ch, int out_ch, const py::object& outo,
          const std::string& mode, const py::object& part_scale, const py::object& bias,
          const py::object& spatial, const py::object& post_scale, const py::object& post_bias,
          const std::string& act, bool act_after_skip, const py::object& slope,
          const py::object& act_shift, const py::object& act_bias, const py::object& residual,
          int repeat, const py::object& out_threshold, int threads, const std::string& isa_name,
          const py::object& out_bits, const py::object& bits_offsets, int variant,
          const py::object& norm_scale, const py::object& norm_bias, bool fma) {
    const std::string isa = resolve_isa(isa_name);
    check_fma(fma);
    py::array x = as_array(xo, "x_bits"), w = as_array(wo, "w_bits"), out = as_array(outo, "out");
    check_array<uint64_t>(x, "x_bits", 5, true);
    check_array<uint64_t>(w, "w_bits", 5, true);
    if (in_ch < 1 || out_ch < 1)
        throw std::invalid_argument("in_ch/out_ch: must be >= 1, got " + std::to_string(in_ch) + "/" +
                                    std::to_string(out_ch));
    const int P = (int)x.shape(0), N = (int)x.shape(1), H = (int)x.shape(2), W = (int)x.shape(3);
    const int Cw = (in_ch + 63) / 64, Ot = (out_ch + 7) / 8, k = (int)w.shape(1);
    if (x.shape(4) != Cw)
        throw std::invalid_argument("x_bits: " + std::to_string(x.shape(4)) + " words per pixel given; in_ch=" +
                                    std::to_string(in_ch) + " needs " + std::to_string(Cw));
    if (k != 1 && k != 3)
        throw std::invalid_argument("w_bits: kernel size " + std::to_string(k) + " given; allowed: 1, 3");
    check_shape(w, "w_bits", {Ot, k, k, Cw, 8});
    ConvArgs a{};
    a.x = (const uint64_t*)x.data(); a.w = (const uint64_t*)w.data();
    avec<uint64_t> w64;  // weights not on a cache line: an aligned copy (they are small)
    if ((uintptr_t)w.data() % 64) {
        w64.assign(a.w, a.w + (size_t)Ot * k * k * Cw * 8);
        a.w = w64.data();
    }
    a.N = N; a.H = H; a.W = W; a.C = in_ch; a.Cw = Cw; a.k = k; a.P = P; a.O = out_ch; a.Ot = Ot;
    const int padded = Ot * 8;
    if (mode == "int") {
        a.mode = bsr::kOutInt;
        check_array<int32_t>(out, "out", 5, false);
        check_shape(out, "out", {P, N, out_ch, H, W});
        a.op = es(out, 0); a.on = es(out, 1); a.oo = es(out, 2); a.oy = es(out, 3); a.ox = es(out, 4);
    } else if (mode == "float") {
        a.mode = bsr::kOutFloat;
        check_array<float>(out, "out", 4, false);
        check_shape(out, "out", {N, out_ch, H, W});
        a.on = es(out, 0); a.oo = es(out, 1); a.oy = es(out, 2); a.ox = es(out, 3);
    } else if (mode == "packed") {
        a.mode = bsr::kOutPacked;
        a.Ow = (out_ch + 63) / 64;
        check_array<uint64_t>(out, "out", 4, true);
        check_shape(out, "out", {N, H, W, a.Ow});
    } else {
        throw std::invalid_argument("mode: '" + mode + "' given; allowed: int, float, packed");
    }
    if (!out.writeable()) throw std::invalid_argument("out: array is read-only");
    avec<float> ps((size_t)P * padded, 1.f);
    if (!part_scale.is_none()) {
        py::array s = as_array(part_scale, "part_scale");
        check_array<float>(s, "part_scale", 2, true);
        check_shape(s, "part_scale", {P, out_ch});
        for (int p = 0; p < P; ++p)
            for (int o = 0; o < out_ch; ++o) ps[(size_t)p * padded + o] = ((const float*)s.data())[p * out_ch + o];
    }
    avec<float> b = channel_vector(bias, "bias", out_ch, padded, 0.f);
    avec<float> pos = channel_vector(post_scale, "post_scale", out_ch, padded, 1.f);
    avec<float> pob = channel_vector(post_bias, "post_bias", out_ch, padded, 0.f);
    avec<float> sl = channel_vector(slope, "slope", out_ch, padded, 1.f);
    avec<float> sh = channel_vector(act_shift, "act_shift", out_ch, padded, 0.f);
    avec<float> ab = channel_vector(act_bias, "act_bias", out_ch, padded, 0.f);
    avec<float> thr = channel_vector(out_threshold, "out_threshold", out_ch, padded, 0.f);
    a.part_scale = ps.data(); a.bias = b.data(); a.post_scale = pos.data(); a.post_bias = pob.data();
    a.slope = sl.data(); a.act_shift = sh.data(); a.act_bias = ab.data(); a.out_threshold = thr.data();
    avec<float> ns, nb;
    if (!norm_scale.is_none() || !norm_bias.is_none()) {
        ns = channel_vector(norm_scale, "norm_scale", out_ch, padded, 1.f);
        nb = channel_vector(norm_bias, "norm_bias", out_ch, padded, 0.f);
        a.norm_scale = ns.data(); a.norm_bias = nb.data();
    }
    a.fma = fma ? 1 : 0;
    if (act == "none") a.act = 0;
    else if (act == "prelu") a.act = 1;
    else throw std::invalid_argument("act: '" + act + "' given; allowed: none, prelu");
    a.act_after_skip = act_after_skip ? 1 : 0;
    py::array sp, res;
    if (!spatial.is_none()) {
        sp = as_array(spatial, "spatial");
        check_array<float>(sp, "spatial", 3, false);
        check_shape(sp, "spatial", {N, H, W});
        a.spatial = (const float*)sp.data();
        a.pn = es(sp, 0); a.py = es(sp, 1); a.px = es(sp, 2);
    }
    if (repeat < 1) throw std::invalid_argument("repeat: must be >= 1, got " + std::to_string(repeat));
    a.repeat = repeat;
    if (!residual.is_none()) {
        if (out_ch % repeat != 0)
            throw std::invalid_argument("repeat: " + std::to_string(repeat) + " does not divide out_ch=" +
                                        std::to_string(out_ch));
        res = as_array(residual, "residual");
        check_array<float>(res, "residual", 4, false);
        check_shape(res, "residual", {N, out_ch / repeat, H, W});
        a.residual = (const float*)res.data();
        a.rn = es(res, 0); a.rc = es(res, 1); a.ry = es(res, 2); a.rx = es(res, 3);
    }
    a.out = out.mutable_data();
    avec<float> boff;
    py::array ob;
    if (a.mode == bsr::kOutPacked) {
        if (!out_bits.is_none())
            throw std::invalid_argument("out_bits: only with mode 'float' (mode 'packed' writes out)");
        a.bits_out = (uint64_t*)a.out; a.bits_ps = 0; a.Pn = 1; a.bits_off = thr.data();
    } else if (!out_bits.is_none()) {
        if (a.mode != bsr::kOutFloat)
            throw std::invalid_argument("out_bits: only with mode 'float'");
        ob = as_array(out_bits, "out_bits");
        check_array<uint64_t>(ob, "out_bits", 5, true);
        if (!ob.writeable()) throw std::invalid_argument("out_bits: array is read-only");
        const int Pn = (int)ob.shape(0);
        a.Ow = (out_ch + 63) / 64;
        if (Pn < 1 || Pn > bsr::kMaxBitPlanes)
            throw std::invalid_argument("out_bits: " + std::to_string(Pn) + " planes given; allowed: 1 to " +
                                        std::to_string(bsr::kMaxBitPlanes));
        check_shape(ob, "out_bits", {Pn, N, H, W, a.Ow});
        if (bits_offsets.is_none()) throw std::invalid_argument("bits_offsets: required with out_bits");
        py::array bo = as_array(bits_offsets, "bits_offsets");
        check_array<float>(bo, "bits_offsets", 2, true);
        check_shape(bo, "bits_offsets", {Pn, out_ch});
        boff.assign((size_t)Pn * padded, 0.f);
        for (int q = 0; q < Pn; ++q)
            for (int o = 0; o < out_ch; ++o) boff[(size_t)q * padded + o] = ((const float*)bo.data())[q * out_ch + o];
        a.bits_out = (uint64_t*)ob.mutable_data(); a.bits_ps = (int64_t)N * H * W * a.Ow; a.Pn = Pn;
        a.bits_off = boff.data();
    } else if (!bits_offsets.is_none()) {
        throw std::invalid_argument("bits_offsets: only with out_bits");
    }
    const int nvar = (int)conv_variants(isa).size();
    if (variant < 0) variant = 0;
    if (variant >= nvar)
        throw std::invalid_argument("variant: " + std::to_string(variant) + " given; path " + isa + " has " +
                                    std::to_string(nvar) + " (0 to " + std::to_string(nvar - 1) + ")");
    a.variant = variant;
    if ((int64_t)N * H * W == 0) return;
    avec<int8_t> wamx;
    if (isa == "amx") {
        wamx.resize((size_t)bsr::amx_weight_bytes(a));
        bsr::amx_prepare_weights(a, wamx.data());
        a.wamx = wamx.data();
    }
    ConvFn fn = conv_fn(isa);
    // conv: about one cycle per 64 binary MACs plus one per output value
    const double per_row = (double)W * Ot * 8 * (P * (double)k * k * Cw + 1.0);
    parallel_rows((int64_t)N * H, threads, per_row, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

// Measured ceiling of a path: its register-resident inner loop (kernel.h peak_*), `iters`
// iterations on each of `threads` threads at once; returns the binary MACs done in total.
double peak(const std::string& isa_name, int64_t iters, int threads) {
    const std::string isa = resolve_isa(isa_name);
    if (iters < 1) throw std::invalid_argument("iters: must be >= 1");
    double (*fn)(int64_t, uint64_t*) = isa == "amx" ? bsr::peak_amx : isa == "avx512" ? bsr::peak_avx512
                                     : isa == "avx2" ? bsr::peak_avx2 : isa == "popcnt" ? bsr::peak_popcnt
                                     : bsr::peak_scalar;
    std::vector<double> macs((size_t)std::max(threads, 1), 0.0);
    std::vector<uint64_t> sink((size_t)std::max(threads, 1) * 8, 0);
    parallel_rows(threads, threads, 1e12, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) macs[(size_t)r] = fn(iters, &sink[(size_t)r * 8]);
    });
    double total = 0;
    for (double m : macs) total += m;
    return total;
}

// The naive-loop baseline (kernel.h NaiveArgs): x_padded (H+2, W+2, Cw) uint64, w_naive
// (3, 3, Cw, O) uint64 with O a multiple of 8 (avx2: of 4), out (H, W, O) int32.
void naive_conv(const py::object& xo, const py::object& wo, const py::object& outo, int threads,
                const std::string& isa_name) {
    std::string isa = resolve_isa(isa_name);
    if (isa == "amx") isa = "avx512";
    if (isa != "avx512" && isa != "avx2")
        throw std::invalid_argument("naive_conv: path '" + isa + "' given; allowed: avx512, avx2");
    py::array x = as_array(xo, "x_padded"), w = as_array(wo, "w_naive"), out = as_array(outo, "out");
    check_array<uint64_t>(x, "x_padded", 3, true);
    check_array<uint64_t>(w, "w_naive", 4, true);
    check_array<int32_t>(out, "out", 3, true);
    const int H = (int)x.shape(0) - 2, W = (int)x.shape(1) - 2, Cw = (int)x.shape(2), O = (int)w.shape(3);
    if (H < 1 || W < 1) throw std::invalid_argument("x_padded: shape " + shape_str(x) + " too small");
    if (O % 8) throw std::invalid_argument("w_naive: O must be a multiple of 8");
    check_shape(w, "w_naive", {3, 3, Cw, O});
    check_shape(out, "out", {H, W, O});
    bsr::NaiveArgs a{(const uint64_t*)x.data(), (const uint64_t*)w.data(), (int32_t*)out.mutable_data(), H, W, Cw, O};
    auto fn = isa == "avx512" ? bsr::naive_rows_avx512 : bsr::naive_rows_avx2;
    parallel_rows(H, threads, (double)W * O * 9 * Cw, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}


// ----------------------------------------------------------------------------- compiled layer
// One binary conv of a compiled network, frozen: packed weights (and the amx path's int8 B
// tiles), the epilogue vectors padded to whole tiles, the next layer's binarization offsets
// when its packed bits are produced here. run() only checks the shapes of what changes per call
// and starts the kernel: no per-call copies or conversions of the layer's constants.
class Layer {
  public:
    Layer(const py::object& wo, int in_ch, int out_ch, const py::object& part_scale, const py::object& bias,
          const py::object& post_scale, const py::object& post_bias, const std::string& act,
          bool act_after_skip, const py::object& slope, const py::object& act_shift,
          const py::object& act_bias, int repeat, int parts, const py::object& bits_offsets,
          const std::string& isa_name, const py::object& norm_scale, const py::object& norm_bias,
          bool fma, bool fold)
        : isa_(resolve_isa(isa_name)) {
        check_fma(fma);
        py::array w = as_array(wo, "w_bits");
        check_array<uint64_t>(w, "w_bits", 5, true);
        if (in_ch < 1 || out_ch < 1 || parts < 1 || repeat < 1 || out_ch % repeat)
            throw std::invalid_argument("Layer: in_ch, out_ch, parts, repeat must be >= 1 and repeat divide out_ch");
        const int k = (int)w.shape(1), Cw = (in_ch + 63) / 64, Ot = (out_ch + 7) / 8;
        if (k != 1 && k != 3) throw std::invalid_argument("w_bits: kernel size must be 1 or 3");
        check_shape(w, "w_bits", {Ot, k, k, Cw, 8});
        w_.assign((const uint64_t*)w.data(), (const uint64_t*)w.data() + (size_t)Ot * k * k * Cw * 8);
        a_.w = w_.data();
        a_.C = in_ch; a_.Cw = Cw; a_.k = k; a_.O = out_ch; a_.Ot = Ot; a_.P = parts; a_.repeat = repeat;
        const int padded = Ot * 8;
        ps_.assign((size_t)parts * padded, 1.f);
        if (!part_scale.is_none()) {
            py::array sa = as_array(part_scale, "part_scale");
            check_array<float>(sa, "part_scale", 2, true);
            check_shape(sa, "part_scale", {parts, out_ch});
            for (int q = 0; q < parts; ++q)
                for (int o = 0; o < out_ch; ++o) ps_[(size_t)q * padded + o] = ((const float*)sa.data())[q * out_ch + o];
        }
        b_ = channel_vector(bias, "bias", out_ch, padded, 0.f);
        pos_ = channel_vector(post_scale, "post_scale", out_ch, padded, 1.f);
        pob_ = channel_vector(post_bias, "post_bias", out_ch, padded, 0.f);
        sl_ = channel_vector(slope, "slope", out_ch, padded, 1.f);
        sh_ = channel_vector(act_shift, "act_shift", out_ch, padded, 0.f);
        ab_ = channel_vector(act_bias, "act_bias", out_ch, padded, 0.f);
        a_.part_scale = ps_.data(); a_.bias = b_.data(); a_.post_scale = pos_.data(); a_.post_bias = pob_.data();
        a_.slope = sl_.data(); a_.act_shift = sh_.data(); a_.act_bias = ab_.data();
        if (!norm_scale.is_none() || !norm_bias.is_none()) {
            ns_ = channel_vector(norm_scale, "norm_scale", out_ch, padded, 1.f);
            nb_ = channel_vector(norm_bias, "norm_bias", out_ch, padded, 0.f);
            a_.norm_scale = ns_.data(); a_.norm_bias = nb_.data();
        }
        a_.fma = fma ? 1 : 0;
        // fold: one part and no norm step (the kernel also skips it where a spatial map is given)
        if (fold && parts == 1 && !a_.norm_scale) {
            fs_.resize(padded);
            fb_.resize(padded);
            for (int o = 0; o < padded; ++o) {
                fs_[o] = ps_[o] * pos_[o];
                fb_[o] = b_[o] * pos_[o] + pob_[o];
            }
            a_.fold_scale = fs_.data(); a_.fold_bias = fb_.data();
        }
        if (act == "none") a_.act = 0;
        else if (act == "prelu") a_.act = 1;
        else throw std::invalid_argument("act: '" + act + "' given; allowed: none, prelu");
        a_.act_after_skip = act_after_skip ? 1 : 0;
        a_.Ow = (out_ch + 63) / 64;
        if (!bits_offsets.is_none()) {
            py::array bo = as_array(bits_offsets, "bits_offsets");
            check_array<float>(bo, "bits_offsets", 2, true);
            pn_ = (int)bo.shape(0);
            if (pn_ < 1 || pn_ > bsr::kMaxBitPlanes)
                throw std::invalid_argument("bits_offsets: 1 to 4 planes allowed");
            check_shape(bo, "bits_offsets", {pn_, out_ch});
            boff_.assign((size_t)pn_ * padded, 0.f);
            for (int q = 0; q < pn_; ++q)
                for (int o = 0; o < out_ch; ++o) boff_[(size_t)q * padded + o] = ((const float*)bo.data())[q * out_ch + o];
            a_.bits_off = boff_.data();
        }
        if (isa_ == "amx") {
            wamx_.resize((size_t)bsr::amx_weight_bytes(a_));
            bsr::amx_prepare_weights(a_, wamx_.data());
            a_.wamx = wamx_.data();
        }
        nvar_ = (int)conv_variants(isa_).size();
    }

    // x_bits (P, N, H, W, Cw); out float (N, O, H, W) any strides; residual (N, O/repeat, H, W);
    // spatial (N, H, W); post_scale (O,) replaces the layer's for this call (input-dependent
    // channel factor, one sample); out_bits (Pn, N, H, W, Ow) for the next layer.
    void run(py::array x, py::array out, const py::object& residual, const py::object& spatial,
             const py::object& post_scale, const py::object& out_bits, int threads, int variant) {
        check_array<uint64_t>(x, "x_bits", 5, true);
        check_array<float>(out, "out", 4, false);
        if (!out.writeable()) throw std::invalid_argument("out: array is read-only");
        bsr::ConvArgs a = a_;
        const int N = (int)x.shape(1), H = (int)x.shape(2), W = (int)x.shape(3);
        check_shape(x, "x_bits", {a.P, N, H, W, a.Cw});
        check_shape(out, "out", {N, a.O, H, W});
        a.x = (const uint64_t*)x.data(); a.N = N; a.H = H; a.W = W; a.mode = bsr::kOutFloat;
        a.on = es(out, 0); a.oo = es(out, 1); a.oy = es(out, 2); a.ox = es(out, 3);
        a.out = out.mutable_data();
        py::array res, sp, ob;
        avec<float> pos;
        if (!residual.is_none()) {
            res = as_array(residual, "residual");
            check_array<float>(res, "residual", 4, false);
            check_shape(res, "residual", {N, a.O / a.repeat, H, W});
            a.residual = (const float*)res.data();
            a.rn = es(res, 0); a.rc = es(res, 1); a.ry = es(res, 2); a.rx = es(res, 3);
        }
        if (!spatial.is_none()) {
            sp = as_array(spatial, "spatial");
            check_array<float>(sp, "spatial", 3, false);
            check_shape(sp, "spatial", {N, H, W});
            a.spatial = (const float*)sp.data();
            a.pn = es(sp, 0); a.py = es(sp, 1); a.px = es(sp, 2);
        }
        if (!post_scale.is_none()) {  // a per-call post scale: the unfolded order
            pos = channel_vector(post_scale, "post_scale", a.O, a.Ot * 8, 1.f);
            a.post_scale = pos.data();
            a.fold_scale = a.fold_bias = nullptr;
        }
        if (!out_bits.is_none()) {
            if (!pn_) throw std::invalid_argument("out_bits: this layer was built without bits_offsets");
            ob = as_array(out_bits, "out_bits");
            check_array<uint64_t>(ob, "out_bits", 5, true);
            check_shape(ob, "out_bits", {pn_, N, H, W, a.Ow});
            if (!ob.writeable()) throw std::invalid_argument("out_bits: array is read-only");
            a.bits_out = (uint64_t*)ob.mutable_data(); a.bits_ps = (int64_t)N * H * W * a.Ow; a.Pn = pn_;
        }
        if (variant < 0 || variant >= nvar_) variant = 0;
        a.variant = variant;
        if ((int64_t)N * H * W == 0) return;
        ConvFn fn = conv_fn(isa_);
        const double per_row = (double)W * a.Ot * 8 * (a.P * (double)a.k * a.k * a.Cw + 1.0);
        parallel_rows((int64_t)N * H, threads, per_row, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
    }

    const std::string& isa() const { return isa_; }
    int planes() const { return pn_; }

  private:
    std::string isa_;
    bsr::ConvArgs a_{};
    avec<uint64_t> w_;
    avec<int8_t> wamx_;
    avec<float> ps_, b_, pos_, pob_, sl_, sh_, ab_, boff_, ns_, nb_, fs_, fb_;
    int pn_ = 0, nvar_ = 1;
};

// ----------------------------------------------------------------------------- FP data movement
// Channels-last (NHWC memory) float32 helpers of the compiled network: rows of the output are
// split over the thread pool; every value is computed with the float operations PyTorch uses.

// PixelShuffle(r): in (N, C r^2, H, W) channels-last -> out (N, C, rH, rW) channels-last,
// out[n, c, r y + i, r x + j] = in[n, c r^2 + i r + j, y, x].
void depth_to_space(py::array x, py::array out, int r, int threads) {
    check_array<float>(x, "x", 4, false);
    check_array<float>(out, "out", 4, false);
    const int N = (int)x.shape(0), Cin = (int)x.shape(1), H = (int)x.shape(2), W = (int)x.shape(3);
    if (r < 1 || Cin % (r * r)) throw std::invalid_argument("depth_to_space: channels not a multiple of r^2");
    const int C = Cin / (r * r);
    check_shape(out, "out", {N, C, H * r, W * r});
    if (es(x, 1) != 1 || es(out, 1) != 1)
        throw std::invalid_argument("depth_to_space: x and out must be channels-last");
    const float* xp = (const float*)x.data();
    float* op = (float*)out.mutable_data();
    const int64_t xn = es(x, 0), xy = es(x, 2), xx = es(x, 3), on = es(out, 0), oy = es(out, 2), ox = es(out, 3);
    const int rr = r * r;
    parallel_rows((int64_t)N * H * r, threads, (double)W * r * C, [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
            const int64_t n = row / (H * r);
            const int yo = (int)(row % (H * r)), y = yo / r, i = yo % r;
            float* orow = op + n * on + yo * oy;
            const float* irow = xp + n * xn + y * xy;
            for (int x0 = 0; x0 < W; ++x0) {
                const float* ip = irow + x0 * xx + i * r;
                for (int j = 0; j < r; ++j) {
                    float* o = orow + (int64_t)(x0 * r + j) * ox;
                    const float* s = ip + j;
                    for (int c = 0; c < C; ++c) o[c] = s[(int64_t)c * rr];
                }
            }
        }
    });
}

// Layout change of a float32 (N, C, H, W) tensor between NCHW-contiguous and channels-last (the
// two memory orders of the compiled network: TorchLayoutConv2d), in either direction: a copy
// (same values), cache-blocked (a block of 64 pixels x all channels, at most 64 KB, transposed
// through L1) in the thread pool; PyTorch's own channels-last -> NCHW copy is several times
// slower. x and out have the same shape; one of them NCHW-contiguous, the other channels-last.
void change_layout(py::array x, py::array out, int threads) {
    check_array<float>(x, "x", 4, false);
    check_array<float>(out, "out", 4, false);
    if (!out.writeable()) throw std::invalid_argument("out: array is read-only");
    const int64_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3), HW = H * W;
    check_shape(out, "out", {(int)N, (int)C, (int)H, (int)W});
    // (a dimension of size 1 has no meaningful stride)
    auto nchw = [&](const py::array& a) {
        return (W == 1 || es(a, 3) == 1) && (H == 1 || es(a, 2) == W) && (C == 1 || es(a, 1) == HW) &&
               (N == 1 || es(a, 0) == C * HW);
    };
    auto nhwc = [&](const py::array& a) {
        return (C == 1 || es(a, 1) == 1) && (W == 1 || es(a, 3) == C) && (H == 1 || es(a, 2) == W * C) &&
               (N == 1 || es(a, 0) == C * HW);
    };
    const bool to_nchw = nhwc(x) && nchw(out), to_nhwc = nchw(x) && nhwc(out);
    if (!to_nchw && !to_nhwc)
        throw std::invalid_argument("change_layout: one of x, out must be NCHW-contiguous and the other channels-last");
    const float* xp = (const float*)x.data();
    float* op = (float*)out.mutable_data();
    const int64_t PB = 64, CB = 256, nblk = (HW + PB - 1) / PB;
    parallel_rows(N * nblk, threads, (double)PB * C, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t n = r / nblk, p0 = (r % nblk) * PB, p1 = std::min(p0 + PB, HW);
            const float* xn = xp + n * C * HW;
            float* on = op + n * C * HW;
            for (int64_t c0 = 0; c0 < C; c0 += CB) {
                const int64_t c1 = std::min(c0 + CB, C);
                if (to_nchw) {  // in[p][c] -> out[c][p]: contiguous writes along p
                    for (int64_t c = c0; c < c1; ++c)
                        for (int64_t q = p0; q < p1; ++q) on[c * HW + q] = xn[q * C + c];
                } else {        // in[c][p] -> out[p][c]: contiguous writes along c
                    for (int64_t q = p0; q < p1; ++q)
                        for (int64_t c = c0; c < c1; ++c) on[q * C + c] = xn[c * HW + q];
                }
            }
        }
    });
}

// Image-level skip on channels-last data: out = o + up(x), up = F.interpolate(x, scale_factor=s,
// mode) for mode 'bilinear' (align_corners=False) or 'nearest', or for mode 'repeat' (the
// pre-shuffle nearest skip) o (N, C s^2, H, W) + x.repeat_interleave(s^2, 1). o and out have
// the same shape, x is (N, C, H, W) (any strides). PyTorch's index and weight arithmetic.
void image_skip(py::array o, py::array x, py::array out, int s, const std::string& mode,
                int threads) {
    check_array<float>(o, "o", 4, false);
    check_array<float>(x, "x", 4, false);
    check_array<float>(out, "out", 4, false);
    const int N = (int)o.shape(0), Co = (int)o.shape(1), Ho = (int)o.shape(2), Wo = (int)o.shape(3);
    const int C = (int)x.shape(1), H = (int)x.shape(2), W = (int)x.shape(3);
    check_shape(out, "out", {N, Co, Ho, Wo});
    if (mode == "repeat") {
        check_shape(x, "x", {N, Co / (s * s), Ho, Wo});
    } else {
        check_shape(x, "x", {N, Co, Ho / s, Wo / s});
        if (Ho != H * s || Wo != W * s) throw std::invalid_argument("image_skip: o is not s times x");
        if (mode != "bilinear" && mode != "nearest") throw std::invalid_argument("image_skip: unknown mode " + mode);
    }
    const float* op = (const float*)o.data();
    const float* xp = (const float*)x.data();
    float* dp = (float*)out.mutable_data();
    const int64_t on = es(o, 0), oc = es(o, 1), oy = es(o, 2), ox = es(o, 3);
    const int64_t xn = es(x, 0), xc = es(x, 1), xy = es(x, 2), xx = es(x, 3);
    const int64_t dn = es(out, 0), dc = es(out, 1), dy = es(out, 2), dx = es(out, 3);
    const float scale = 1.0f / (float)s;  // PyTorch: 1 / scale_factor when it is given
    parallel_rows((int64_t)N * Ho, threads, (double)Wo * Co * 4, [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
            const int64_t n = row / Ho;
            const int yo = (int)(row % Ho);
            const float* orow = op + n * on + yo * oy;
            float* drow = dp + n * dn + yo * dy;
            if (mode == "repeat") {
                const int rep = s * s;
                const float* xr = xp + n * xn + yo * xy;
                for (int xo = 0; xo < Wo; ++xo)
                    for (int c = 0; c < Co; ++c)
                        drow[xo * dx + c * dc] = orow[xo * ox + c * oc] + xr[xo * xx + (c / rep) * xc];
                continue;
            }
            if (mode == "nearest") {  // src = floor(dst * scale), clamped
                const int ys = std::min((int)std::floor((float)yo * scale), H - 1);
                const float* xr = xp + n * xn + ys * xy;
                for (int xo = 0; xo < Wo; ++xo) {
                    const int xs = std::min((int)std::floor((float)xo * scale), W - 1);
                    for (int c = 0; c < Co; ++c)
                        drow[xo * dx + c * dc] = orow[xo * ox + c * oc] + xr[xs * xx + c * xc];
                }
                continue;
            }
            float sy = scale * ((float)yo + 0.5f) - 0.5f;
            if (sy < 0) sy = 0;
            const int y0 = (int)sy, y1 = y0 + (y0 < H - 1 ? 1 : 0);
            const float ly1 = sy - (float)y0, ly0 = 1.f - ly1;
            const float* x0r = xp + n * xn + y0 * xy;
            const float* x1r = xp + n * xn + y1 * xy;
            for (int xo = 0; xo < Wo; ++xo) {
                float sx = scale * ((float)xo + 0.5f) - 0.5f;
                if (sx < 0) sx = 0;
                const int c0 = (int)sx, c1 = c0 + (c0 < W - 1 ? 1 : 0);
                const float lx1 = sx - (float)c0, lx0 = 1.f - lx1;
                for (int c = 0; c < Co; ++c) {
                    const int64_t cc = c * xc;
                    const float up = ly0 * (lx0 * x0r[c0 * xx + cc] + lx1 * x0r[c1 * xx + cc]) +
                                     ly1 * (lx0 * x1r[c0 * xx + cc] + lx1 * x1r[c1 * xx + cc]);
                    drow[xo * dx + c * dc] = orow[xo * ox + c * oc] + up;
                }
            }
        }
    });
}

}  // namespace

PYBIND11_MODULE(_bsrnas_native, m) {
    m.doc() = "xnor-popcount binary conv kernel (see ops/native/__init__.py)";
    m.def("cpu_features", []() {
        const Features& f = features();
        py::dict d;
        d["x86_64"] = f.x86; d["popcnt"] = f.popcnt; d["avx2"] = f.avx2; d["avx512f"] = f.avx512f;
        d["avx512bw"] = f.avx512bw; d["avx512vl"] = f.avx512vl; d["avx512vpopcntdq"] = f.avx512vpopcntdq;
        d["amx_tile"] = f.amx_tile; d["amx_int8"] = f.amx_int8; d["amx_os"] = f.amx_os;
        return d;
    });
    m.def("supported_isas", &supported_isas);
    m.def("resolve_isa", &resolve_isa, py::arg("isa"));
    m.def("pack_activations", &pack_activations, py::arg("x"), py::arg("offsets"),
          py::arg("threshold_map") = py::none(), py::arg("threads") = 1, py::arg("isa") = "auto");
    m.def("pack_weights", &pack_weights, py::arg("weight"));
    m.def("conv", &conv, py::arg("x_bits"), py::arg("w_bits"), py::arg("in_ch"), py::arg("out_ch"),
          py::arg("out"), py::arg("mode"), py::arg("part_scale") = py::none(), py::arg("bias") = py::none(),
          py::arg("spatial") = py::none(), py::arg("post_scale") = py::none(),
          py::arg("post_bias") = py::none(), py::arg("act") = "none", py::arg("act_after_skip") = true,
          py::arg("slope") = py::none(), py::arg("act_shift") = py::none(), py::arg("act_bias") = py::none(),
          py::arg("residual") = py::none(), py::arg("repeat") = 1, py::arg("out_threshold") = py::none(),
          py::arg("threads") = 1, py::arg("isa") = "auto", py::arg("out_bits") = py::none(),
          py::arg("bits_offsets") = py::none(), py::arg("variant") = -1,
          py::arg("norm_scale") = py::none(), py::arg("norm_bias") = py::none(), py::arg("fma") = false);
    py::class_<Layer>(m, "Layer")
        .def(py::init<const py::object&, int, int, const py::object&, const py::object&, const py::object&,
                      const py::object&, const std::string&, bool, const py::object&, const py::object&,
                      const py::object&, int, int, const py::object&, const std::string&,
                      const py::object&, const py::object&, bool, bool>(),
             py::arg("w_bits"), py::arg("in_ch"), py::arg("out_ch"), py::arg("part_scale") = py::none(),
             py::arg("bias") = py::none(), py::arg("post_scale") = py::none(), py::arg("post_bias") = py::none(),
             py::arg("act") = "none", py::arg("act_after_skip") = true, py::arg("slope") = py::none(),
             py::arg("act_shift") = py::none(), py::arg("act_bias") = py::none(), py::arg("repeat") = 1,
             py::arg("parts") = 1, py::arg("bits_offsets") = py::none(), py::arg("isa") = "auto",
             py::arg("norm_scale") = py::none(), py::arg("norm_bias") = py::none(), py::arg("fma") = false,
             py::arg("fold") = false)
        .def("run", &Layer::run, py::arg("x_bits"), py::arg("out"), py::arg("residual") = py::none(),
             py::arg("spatial") = py::none(), py::arg("post_scale") = py::none(), py::arg("out_bits") = py::none(),
             py::arg("threads") = 1, py::arg("variant") = 0)
        .def_property_readonly("isa", &Layer::isa)
        .def_property_readonly("planes", &Layer::planes);
    m.def("change_layout", &change_layout, py::arg("x"), py::arg("out"), py::arg("threads") = 1);
    m.def("depth_to_space", &depth_to_space, py::arg("x"), py::arg("out"), py::arg("r"), py::arg("threads") = 1);
    m.def("image_skip", &image_skip, py::arg("o"), py::arg("x"), py::arg("out"), py::arg("s"), py::arg("mode"),
          py::arg("threads") = 1);
    m.def("conv_variants", [](const std::string& isa) { return conv_variants(resolve_isa(isa)); }, py::arg("isa"));
    m.def("peak", &peak, py::arg("isa"), py::arg("iters"), py::arg("threads") = 1);
    m.def("attach_openmp", &bsr_pool::attach_openmp, py::arg("path"),
          "Run the kernels on torch's OpenMP team: the path of the libgomp torch loaded. Returns '' "
          "on success, else the reason (the kernels keep their own thread pool).");
    m.def("detach_openmp", []() { bsr_pool::g_use_omp = false; },
          "Back to the kernels' own thread pool.");
    m.def("pool_backend", []() { return std::string(bsr_pool::g_use_omp ? "openmp" : "own"); });
    m.def("naive_conv", &naive_conv, py::arg("x_padded"), py::arg("w_naive"), py::arg("out"),
          py::arg("threads") = 1, py::arg("isa") = "auto");
}
