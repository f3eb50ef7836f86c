// pybind11 binding of the xnor-popcount kernel: validation, ISA dispatch, thread split.
// Takes numpy arrays only (no PyTorch C++ API). Every bad input raises std::invalid_argument,
// which pybind11 maps to ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel.h"
#include "thread_pool.h"

namespace py = pybind11;
using bsr::ConvArgs;
using bsr::PackArgs;
using bsr_pool::parallel_rows;

namespace {

// ----------------------------------------------------------------------------- ISA dispatch
struct Features {
    bool x86 = false, popcnt = false, avx2 = false, avx512f = false, avx512bw = false,
         avx512vl = false, avx512vpopcntdq = false;
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
    return false;
}

// Order of preference of the automatic choice ("auto").
const char* const kIsaOrder[] = {"avx512", "avx2", "popcnt", "scalar"};

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
                                    "'; allowed: auto, avx512, avx2, popcnt, scalar");
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
    if (isa == "avx512") return bsr::conv_rows_avx512;
    if (isa == "avx2") return bsr::conv_rows_avx2;
    if (isa == "popcnt") return bsr::conv_rows_popcnt;
    return bsr::conv_rows_scalar;
}

PackFn pack_fn(const std::string& isa) {
    if (isa == "avx512") return bsr::pack_rows_avx512;
    if (isa == "avx2") return bsr::pack_rows_avx2;
    if (isa == "popcnt") return bsr::pack_rows_popcnt;
    return bsr::pack_rows_scalar;
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

// Per-channel vector padded to n entries (default value where None).
std::vector<float> channel_vector(const py::object& obj, const char* name, int count, int padded,
                                  float fill) {
    std::vector<float> v(padded, fill);
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

void conv(const py::object& xo, const py::object& wo, int in_ch, int out_ch, const py::object& outo,
          const std::string& mode, const py::object& part_scale, const py::object& bias,
          const py::object& spatial, const py::object& post_scale, const py::object& post_bias,
          const std::string& act, bool act_after_skip, const py::object& slope,
          const py::object& act_shift, const py::object& act_bias, const py::object& residual,
          int repeat, const py::object& out_threshold, int threads, const std::string& isa_name) {
    const std::string isa = resolve_isa(isa_name);
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
    std::vector<float> ps((size_t)P * padded, 1.f);
    if (!part_scale.is_none()) {
        py::array s = as_array(part_scale, "part_scale");
        check_array<float>(s, "part_scale", 2, true);
        check_shape(s, "part_scale", {P, out_ch});
        for (int p = 0; p < P; ++p)
            for (int o = 0; o < out_ch; ++o) ps[(size_t)p * padded + o] = ((const float*)s.data())[p * out_ch + o];
    }
    std::vector<float> b = channel_vector(bias, "bias", out_ch, padded, 0.f);
    std::vector<float> pos = channel_vector(post_scale, "post_scale", out_ch, padded, 1.f);
    std::vector<float> pob = channel_vector(post_bias, "post_bias", out_ch, padded, 0.f);
    std::vector<float> sl = channel_vector(slope, "slope", out_ch, padded, 1.f);
    std::vector<float> sh = channel_vector(act_shift, "act_shift", out_ch, padded, 0.f);
    std::vector<float> ab = channel_vector(act_bias, "act_bias", out_ch, padded, 0.f);
    std::vector<float> thr = channel_vector(out_threshold, "out_threshold", out_ch, padded, 0.f);
    a.part_scale = ps.data(); a.bias = b.data(); a.post_scale = pos.data(); a.post_bias = pob.data();
    a.slope = sl.data(); a.act_shift = sh.data(); a.act_bias = ab.data(); a.out_threshold = thr.data();
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
    if (a.mode == bsr::kOutPacked)
        std::fill((uint64_t*)a.out, (uint64_t*)a.out + (size_t)N * H * W * a.Ow, (uint64_t)0);
    if ((int64_t)N * H * W == 0) return;
    ConvFn fn = conv_fn(isa);
    // conv: about one cycle per 64 binary MACs plus one per output value
    const double per_row = (double)W * Ot * 8 * (P * (double)k * k * Cw + 1.0);
    parallel_rows((int64_t)N * H, threads, per_row, [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

}  // namespace

PYBIND11_MODULE(_bsrnas_native, m) {
    m.doc() = "xnor-popcount binary conv kernel (see ops/native/__init__.py)";
    m.def("cpu_features", []() {
        const Features& f = features();
        py::dict d;
        d["x86_64"] = f.x86; d["popcnt"] = f.popcnt; d["avx2"] = f.avx2; d["avx512f"] = f.avx512f;
        d["avx512bw"] = f.avx512bw; d["avx512vl"] = f.avx512vl; d["avx512vpopcntdq"] = f.avx512vpopcntdq;
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
          py::arg("threads") = 1, py::arg("isa") = "auto");
}
