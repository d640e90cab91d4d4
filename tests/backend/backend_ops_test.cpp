// Every backend kernel from one table of cases (op x dtype x shape x layout), run on every backend this build
// and machine have against the CPU reference kernels (harness: op_harness.h). Adding an op is adding rows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "tests/backend/op_harness.h"
#include "tests/common/gpu_skip.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/gemm_cublaslt.h"
#endif

namespace px::test {
namespace {

using Ops = std::vector<Operand>;

const std::vector<DType> kFloats = {DType::f32, DType::f64, DType::bf16, DType::f16};
const std::vector<DType> kEveryDtype = {DType::f32, DType::f64, DType::bf16, DType::f16,
                                        DType::i32, DType::i64, DType::u8,   DType::boolean};
constexpr int64_t kIgnore = -100;

std::string operator+(std::string s, DType t) { return s + dtype_name(t); }
std::string operator+(std::string s, const Shape& shape) { return s + shape_str(shape); }

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::contiguous: return "contiguous";
    case Layout::transposed: return "transposed";
    case Layout::padded: return "padded";
    case Layout::broadcast: return "broadcast";
  }
  return "?";
}

// `c` with outputs that must equal the reference bit for bit (when `exact`).
OpCase exactly(OpCase c, bool exact = true) {
  c.exact = exact;
  return c;
}

// Statistics and per-row losses of a 16-bit float kernel are f32.
DType stat_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// ---- the table, one section per op family ----

void add_copy_and_fill(std::vector<OpCase>& t) {
  const OpCall copy = [](Backend& b, const std::vector<Tensor>& o) { b.copy(o[0], o[1]); };
  for (DType from : kEveryDtype)
    for (DType to : kEveryDtype)
      t.push_back(
          exactly({std::string("copy ") + from + " -> " + to, OpFamily::copy, from,
                   Ops{Operand::in("src", {5, 7, 3}, from).range(0, 100), Operand::out("dst", {5, 7, 3}, to)}, copy}));
  // transposes (the tiled path), row slices, and host <-> device staging with strided ends
  for (DType to : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i64}) {
    for (auto [src, dst] : {std::pair{Layout::transposed, Layout::contiguous},
                            {Layout::contiguous, Layout::transposed},
                            {Layout::padded, Layout::padded},
                            {Layout::transposed, Layout::transposed}})
      t.push_back(
          exactly({std::string("copy f32 -> ") + to + " (40, 33) src " + layout_name(src) + " dst " + layout_name(dst),
                   OpFamily::copy, DType::f32,
                   Ops{Operand::in("src", {40, 33}, DType::f32).range(-50, 50).as(src),
                       Operand::out("dst", {40, 33}, to).as(dst)},
                   copy}));
    t.push_back(exactly({std::string("copy f32 -> ") + to + " host transposed -> device", OpFamily::copy, DType::f32,
                         Ops{Operand::in("src", {9, 6}, DType::f32).range(-50, 50).as(Layout::transposed).host(),
                             Operand::out("dst", {9, 6}, to)},
                         copy}));
    t.push_back(exactly({std::string("copy f32 -> ") + to + " device -> host transposed", OpFamily::copy, DType::f32,
                         Ops{Operand::in("src", {9, 6}, DType::f32).range(-50, 50),
                             Operand::out("dst", {9, 6}, to).as(Layout::transposed).host()},
                         copy}));
  }
  for (DType d : kEveryDtype)
    for (Layout l : {Layout::contiguous, Layout::transposed, Layout::padded})
      for (double value : {1.7, 0.0})
        t.push_back(exactly({std::string("fill ") + d + " (4, 6) " + layout_name(l) + " with " + std::to_string(value),
                             OpFamily::fill, d, Ops{Operand::out("dst", {4, 6}, d).as(l)},
                             [value](Backend& b, const std::vector<Tensor>& o) { b.fill(o[0], value); }}));
}

void add_random(std::vector<OpCase>& t) {
  for (DType d : kFloats) {
    t.push_back({std::string("uniform ") + d + " (3001)", OpFamily::uniform, d, Ops{Operand::out("out", {3001}, d)},
                 [](Backend& b, const std::vector<Tensor>& o) { b.uniform(o[0], 1234, 77, -0.5, 2.0); }});
    t.push_back({std::string("normal ") + d + " (3001)", OpFamily::normal, d, Ops{Operand::out("out", {3001}, d)},
                 [](Backend& b, const std::vector<Tensor>& o) { b.normal(o[0], 99, 1u << 20, 0.25, 3.0); }});
    for (auto [p, offset] :
         {std::pair{0.3, uint64_t{11}}, {0.3, uint64_t{4096}}, {0.0, uint64_t{5}}, {1.0, uint64_t{0}}})
      t.push_back(
          {std::string("dropout ") + d + " (64, 65) p " + std::to_string(p) + " offset " + std::to_string(offset),
           OpFamily::dropout, d, Ops{Operand::in("x", {64, 65}, d), Operand::out("y", {64, 65}, d)},
           [p, offset](Backend& b, const std::vector<Tensor>& o) { b.dropout(o[0], o[1], p, 7, offset); }});
  }
}

struct UnaryRow {
  UnaryOp op;
  const char* name;
  double alpha;
  bool positive;  // needs x > 0
};
const std::vector<UnaryRow> kUnaryRows = {
    {UnaryOp::neg, "neg", 0, false},
    {UnaryOp::exp, "exp", 0, false},
    {UnaryOp::log, "log", 0, true},
    {UnaryOp::sqrt, "sqrt", 0, true},
    {UnaryOp::relu, "relu", 0, false},
    {UnaryOp::gelu, "gelu", 0, false},
    {UnaryOp::tanh, "tanh", 0, false},
    {UnaryOp::sigmoid, "sigmoid", 0, false},
    {UnaryOp::add_scalar, "add_scalar", 1.5, false},
    {UnaryOp::mul_scalar, "mul_scalar", 1.5, false},
    {UnaryOp::pow, "pow 2", 2, false},
    {UnaryOp::pow, "pow 0.5", 0.5, true},
    {UnaryOp::pow, "pow -1", -1, true},
    {UnaryOp::pow, "pow 1", 1, false},
    {UnaryOp::pow, "pow 0", 0, false},
    {UnaryOp::pow, "pow 1.5", 1.5, true},
};

void add_unary(std::vector<OpCase>& t) {
  for (const UnaryRow& u : kUnaryRows) {
    const double lo = u.positive ? 0.1 : -3.0;
    const OpCall forward = [u](Backend& b, const std::vector<Tensor>& o) { b.unary(u.op, o[0], o[1], u.alpha); };
    for (DType d : kFloats) {
      for (Layout l : {Layout::contiguous, Layout::transposed, Layout::padded})
        t.push_back({std::string("unary ") + u.name + " " + d + " (13, 37) " + layout_name(l), OpFamily::unary, d,
                     Ops{Operand::in("x", {13, 37}, d).range(lo, 3).as(l), Operand::out("out", {13, 37}, d)}, forward});
      t.push_back(
          {std::string("unary_backward ") + u.name + " " + d + " (13, 37)", OpFamily::unary_backward, d,
           Ops{Operand::in("x", {13, 37}, d).range(lo, 3), Operand::in("y", {13, 37}, d).range(lo, 3),
               Operand::in("gy", {13, 37}, d), Operand::out("gx", {13, 37}, d)},
           [u](Backend& b, const std::vector<Tensor>& o) { b.unary_backward(u.op, o[0], o[1], o[2], o[3], u.alpha); }});
    }
    // large enough for the threaded CPU loops
    t.push_back({std::string("unary ") + u.name + " f32 (300, 200) transposed", OpFamily::unary, DType::f32,
                 Ops{Operand::in("x", {300, 200}, DType::f32).range(lo, 3).as(Layout::transposed),
                     Operand::out("out", {300, 200}, DType::f32)},
                 forward});
  }
}

void add_binary_and_where(std::vector<OpCase>& t) {
  const std::vector<std::pair<BinaryOp, const char*>> ops = {
      {BinaryOp::add, "add"},         {BinaryOp::sub, "sub"},         {BinaryOp::mul, "mul"}, {BinaryOp::div, "div"},
      {BinaryOp::maximum, "maximum"}, {BinaryOp::minimum, "minimum"}, {BinaryOp::eq, "eq"},   {BinaryOp::ne, "ne"},
      {BinaryOp::lt, "lt"},           {BinaryOp::le, "le"},           {BinaryOp::gt, "gt"},   {BinaryOp::ge, "ge"}};
  const Shape s{4, 5, 6};
  for (DType d : kEveryDtype) {
    for (auto [op, name] : ops) {
      const bool integer = !is_floating(d);
      if (integer && op == BinaryOp::div) continue;
      if ((d == DType::u8 && !is_comparison(op)) || (d == DType::boolean && op != BinaryOp::eq && op != BinaryOp::ne))
        continue;
      const DType out = is_comparison(op) ? DType::boolean : d;
      const auto operand = [&](const char* n) {
        return d == DType::boolean ? Operand::mask(n, s) : Operand::in(n, s, d).range(1, 5);
      };
      const OpCall call = [op](Backend& b, const std::vector<Tensor>& o) { b.binary(op, o[0], o[1], o[2]); };
      t.push_back({std::string("binary ") + name + " " + d + " (4, 5, 6) b broadcast from (1, 5, 1)", OpFamily::binary,
                   d, Ops{operand("a"), operand("b").broadcast_from({1, 5, 1}), Operand::out("out", s, out)}, call});
      t.push_back(
          {std::string("binary ") + name + " " + d + " (4, 5, 6) a transposed, b padded", OpFamily::binary, d,
           Ops{operand("a").as(Layout::transposed), operand("b").as(Layout::padded), Operand::out("out", s, out)},
           call});
    }
    t.push_back(exactly({std::string("where ") + d + " (4, 5, 6) b broadcast from (1, 5, 1)", OpFamily::where, d,
                         Ops{Operand::mask("cond", s), Operand::in("a", s, d).range(0, 10),
                             Operand::in("b", s, d).range(0, 10).broadcast_from({1, 5, 1}), Operand::out("out", s, d)},
                         [](Backend& b, const std::vector<Tensor>& o) { b.where(o[0], o[1], o[2], o[3]); }}));
  }
}

void add_reduce(std::vector<OpCase>& t) {
  struct Dims {
    Shape x, out;
    Layout layout;
  };
  const std::vector<Dims> dims = {
      {{6, 50, 7}, {6, 50, 1}, Layout::contiguous}, {{6, 50, 7}, {1, 50, 7}, Layout::contiguous},
      {{6, 50, 7}, {6, 1, 7}, Layout::contiguous},  {{6, 50, 7}, {1, 1, 1}, Layout::contiguous},
      {{3, 10000}, {3, 1}, Layout::contiguous},     {{20000, 3}, {1, 3}, Layout::contiguous},
      {{6, 50, 7}, {6, 50, 7}, Layout::contiguous}, {{40, 30}, {40, 1}, Layout::transposed},
      {{40, 30}, {1, 30}, Layout::transposed},      {{6, 50, 7}, {6, 1, 1}, Layout::padded}};
  const std::vector<std::pair<ReduceOp, const char*>> ops = {
      {ReduceOp::sum, "sum"}, {ReduceOp::max, "max"}, {ReduceOp::min, "min"}, {ReduceOp::argmax, "argmax"}};
  for (DType d : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64})
    for (const Dims& dm : dims)
      for (auto [op, name] : ops) {
        int reduced = 0;
        for (size_t k = 0; k < dm.x.size(); ++k) reduced += dm.x[k] != dm.out[k];
        if (op == ReduceOp::argmax && (reduced > 1 || !is_floating(d))) continue;
        const double range = is_floating(d) ? 2.0 : 100.0;
        t.push_back(exactly(
            {std::string("reduce ") + name + " " + d + " " + dm.x + " -> " + dm.out + " " + layout_name(dm.layout),
             OpFamily::reduce, d,
             Ops{Operand::in("x", dm.x, d).range(-range, range).as(dm.layout),
                 Operand::out("out", dm.out, op == ReduceOp::argmax ? DType::i64 : d)},
             [op](Backend& b, const std::vector<Tensor>& o) { b.reduce(op, o[0], o[1]); }},
            op != ReduceOp::sum));
      }
}

void add_gemm(std::vector<OpCase>& t) {
  struct Size {
    int64_t b, m, k, n;
  };
  enum class Variant { plain, a_transposed, b_transposed, a_broadcast, b_broadcast, padded };
  const std::vector<std::pair<Variant, const char*>> variants = {{Variant::plain, "plain"},
                                                                 {Variant::a_transposed, "a transposed"},
                                                                 {Variant::b_transposed, "b transposed"},
                                                                 {Variant::a_broadcast, "a broadcast over the batch"},
                                                                 {Variant::b_broadcast, "b broadcast over the batch"},
                                                                 {Variant::padded, "a and b row slices"}};
  const auto add = [&](DType d, Size z, Variant v, const char* vname, bool beta_zero) {
    Operand a = Operand::in("a", {z.b, z.m, z.k}, d), b = Operand::in("b", {z.b, z.k, z.n}, d);
    if (v == Variant::a_transposed) a = std::move(a).as(Layout::transposed);
    if (v == Variant::b_transposed) b = std::move(b).as(Layout::transposed);
    if (v == Variant::a_broadcast) a = std::move(a).broadcast_from({1, z.m, z.k});
    if (v == Variant::b_broadcast) b = std::move(b).broadcast_from({1, z.k, z.n});
    if (v == Variant::padded) {
      a = std::move(a).as(Layout::padded);
      b = std::move(b).as(Layout::padded);
    }
    const Shape cs{z.b, z.m, z.n};
    const double beta = beta_zero ? 0.0 : 0.5;
    t.push_back({std::string("gemm ") + d + " " + Shape{z.b, z.m, z.k} + " @ " + Shape{z.b, z.k, z.n} + " " + vname +
                     (beta_zero ? ", beta 0 over NaN" : ", beta 0.5"),
                 OpFamily::gemm, d,
                 Ops{std::move(a), std::move(b), beta_zero ? Operand::out("c", cs, d) : Operand::in_out("c", cs, d)},
                 [beta](Backend& be, const std::vector<Tensor>& o) { be.gemm(o[0], o[1], o[2], 0.75, beta); }});
  };
  for (DType d : {DType::f32, DType::f64})
    for (Size z : {Size{1, 5, 7, 3}, Size{3, 33, 17, 65}, Size{4, 64, 128, 32}, Size{2, 1, 9, 1}})
      for (auto [v, vname] : variants) add(d, z, v, vname, false);
  for (DType d : {DType::bf16, DType::f16})
    for (auto [v, vname] : variants) add(d, {3, 33, 17, 65}, v, vname, false);
  for (DType d : kFloats) {
    add(d, {3, 33, 17, 65}, Variant::plain, "plain", true);
    for (bool transposed : {false, true})
      t.push_back({std::string("gemm ") + d + " 2-d (48, 40) @ (40, 24)" + (transposed ? " b transposed" : ""),
                   OpFamily::gemm, d,
                   Ops{Operand::in("a", {48, 40}, d),
                       Operand::in("b", {40, 24}, d).as(transposed ? Layout::transposed : Layout::contiguous),
                       Operand::out("c", {48, 24}, d)},
                   [](Backend& be, const std::vector<Tensor>& o) { be.gemm(o[0], o[1], o[2], 1.0, 0.0); }});
  }
}

#ifdef PARALLAX_WITH_CUDA
// cuBLASLt's fused epilogues (CUDA only, beside the Backend interface) against gemm, then + bias, then relu.
void add_gemm_epilogue(std::vector<OpCase>& t) {
  using gpu::GemmEpilogue;
  for (DType d : {DType::f32, DType::bf16, DType::f16})
    for (auto [ep, name] : {std::pair{GemmEpilogue::bias, "bias"},
                            {GemmEpilogue::relu, "relu"},
                            {GemmEpilogue::bias_relu, "bias_relu"}}) {
      const bool bias = ep != GemmEpilogue::relu, relu = ep != GemmEpilogue::bias;
      t.push_back(
          {std::string("gemm_epilogue ") + name + " " + d + " (1, 16, 32) @ (1, 32, 8)", OpFamily::gemm_epilogue, d,
           Ops{Operand::in("a", {1, 16, 32}, d), Operand::in("b", {1, 32, 8}, d),
               bias ? Operand::in("bias", {8}, d) : Operand::absent("bias"), Operand::out("c", {1, 16, 8}, d)},
           [ep](Backend&, const std::vector<Tensor>& o) { gpu::gemm_epilogue(o[0], o[1], o[3], 1.0, 0.0, ep, o[2]); },
           [bias, relu](Backend& be, const std::vector<Tensor>& o) {
             be.gemm(o[0], o[1], o[3], 1.0, 0.0);
             if (bias) be.binary(BinaryOp::add, o[3], o[2].as_strided(o[3].shape(), {0, 0, 1}, o[2].offset()), o[3]);
             if (relu) be.unary(UnaryOp::relu, o[3], o[3], 0.0);
           }});
    }
}
#endif

void add_softmax(std::vector<OpCase>& t) {
  for (DType d : kFloats)
    for (const Shape& s : {Shape{7, 33}, Shape{5, 3000}, Shape{2, 3, 1024}})
      for (bool log : {false, true}) {
        const std::string name = std::string(log ? "log_softmax " : "softmax ") + d + " " + s;
        t.push_back({name, OpFamily::softmax, d, Ops{Operand::in("x", s, d).range(-5, 5), Operand::out("y", s, d)},
                     [log](Backend& b, const std::vector<Tensor>& o) { b.softmax(o[0], o[1], log); }});
        t.push_back({name + " backward", OpFamily::softmax_backward, d,
                     Ops{Operand::in("y", s, d).range(log ? -5 : 0, log ? 0 : 1), Operand::in("gy", s, d),
                         Operand::out("gx", s, d)},
                     [log](Backend& b, const std::vector<Tensor>& o) { b.softmax_backward(o[0], o[1], o[2], log); }});
      }
}

// Beam search's selection: rows of log-probabilities over a vocabulary; bf16's rounding makes ties (lower column
// first), k up to the whole row.
void add_topk(std::vector<OpCase>& t) {
  struct Rows {
    Shape x;
    int64_t k;
  };
  for (DType d : kFloats)
    for (const Rows& r : {Rows{{7, 33}, 5}, Rows{{12, 3000}, 8}, Rows{{3, 1000}, 64}, Rows{{4, 17}, 17}, Rows{{1, 1}, 1}}) {
      const int64_t k = r.k;
      t.push_back(exactly({std::string("topk ") + d + " " + r.x + " k " + std::to_string(k), OpFamily::topk, d,
                           Ops{Operand::in("x", r.x, d).range(-8, 0), Operand::out("values", {r.x[0], k}, d),
                               Operand::out("indices", {r.x[0], k}, DType::i64)},
                           [k](Backend& b, const std::vector<Tensor>& o) { b.topk(o[0], k, o[1], o[2]); }}));
    }
}

void add_layernorm(std::vector<OpCase>& t) {
  const OpCall forward = [](Backend& b, const std::vector<Tensor>& o) {
    b.layernorm(o[0], o[1], o[2], 1e-5, o[3], o[4], o[5]);
  };
  const OpCall backward = [](Backend& b, const std::vector<Tensor>& o) {
    b.layernorm_backward(o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]);
  };
  for (DType d : kFloats)
    for (const Shape& s : {Shape{9, 40}, Shape{4, 2000}, Shape{300, 64}})
      for (bool affine : {true, false}) {
        const int64_t r = s[0], c = s[1];
        const DType sd = stat_dtype(d);
        const auto param = [&](const char* n) { return affine ? Operand::in(n, {c}, d) : Operand::absent(n); };
        const auto param_grad = [&](const char* n) { return affine ? Operand::out(n, {c}, d) : Operand::absent(n); };
        const std::string name = std::string("layernorm ") + d + " " + s + (affine ? " affine" : "");
        t.push_back({name, OpFamily::layernorm, d,
                     Ops{Operand::in("x", s, d).range(-3, 4), param("w"), param("b"), Operand::out("y", s, d),
                         Operand::out("mean", {r}, sd), Operand::out("rstd", {r}, sd)},
                     forward});
        t.push_back({name + " backward", OpFamily::layernorm_backward, d,
                     Ops{Operand::in("x", s, d).range(-3, 4), param("w"), Operand::in("mean", {r}, sd).range(-0.5, 0.5),
                         Operand::in("rstd", {r}, sd).range(0.5, 2), Operand::in("gy", s, d), Operand::out("gx", s, d),
                         param_grad("gw"), param_grad("gb")},
                     backward});
      }
  // optional outputs: no statistics in the forward, no gx in the backward
  for (DType d : {DType::f32, DType::f64}) {
    t.push_back({std::string("layernorm ") + d + " (9, 40) affine without statistics", OpFamily::layernorm, d,
                 Ops{Operand::in("x", {9, 40}, d), Operand::in("w", {40}, d), Operand::in("b", {40}, d),
                     Operand::out("y", {9, 40}, d), Operand::absent("mean"), Operand::absent("rstd")},
                 forward});
    t.push_back(
        {std::string("layernorm ") + d + " (300, 64) affine backward without gx", OpFamily::layernorm_backward, d,
         Ops{Operand::in("x", {300, 64}, d), Operand::in("w", {64}, d), Operand::in("mean", {300}, d).range(-0.5, 0.5),
             Operand::in("rstd", {300}, d).range(0.5, 2), Operand::in("gy", {300, 64}, d), Operand::absent("gx"),
             Operand::out("gw", {64}, d), Operand::out("gb", {64}, d)},
         backward});
  }
}

// Convolution windows: 3x3, the ResNet stem's 7x7 stride 2, a strided 1x1 (downsample), dilation, a non-square
// kernel with per-dim stride and padding, and a batch large enough for the threaded CPU loops.
const std::vector<std::pair<std::string, ConvGeometry>> kWindows = {
    {"3x3 s1 p1 (3, 9, 7)", {3, 9, 7, 3, 3, 1, 1, 1, 1, 1, 1}},
    {"7x7 s2 p3 (2, 19, 16)", {2, 19, 16, 7, 7, 2, 2, 3, 3, 1, 1}},
    {"1x1 s2 p0 (4, 8, 7)", {4, 8, 7, 1, 1, 2, 2, 0, 0, 1, 1}},
    {"3x3 s2 p1 d2 (3, 11, 10)", {3, 11, 10, 3, 3, 2, 2, 1, 1, 2, 2}},
    {"3x2 s(2, 1) p(1, 0) (2, 6, 9)", {2, 6, 9, 3, 2, 2, 1, 1, 0, 1, 1}},
    {"3x3 s1 p1 (16, 32, 32)", {16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1}},
};

void add_conv(std::vector<OpCase>& t) {
  for (const auto& [wname, g] : kWindows)
    for (DType d : kFloats) {
      const Shape image{2, g.channels, g.height, g.width}, col{g.col_rows(), 2, g.out_area()};
      t.push_back(exactly({std::string("im2col ") + d + " " + wname, OpFamily::im2col, d,
                           Ops{Operand::in("x", image, d), Operand::out("col", col, d)},
                           [g = g](Backend& b, const std::vector<Tensor>& o) { b.im2col(o[0], o[1], g); }}));
      t.push_back({std::string("col2im ") + d + " " + wname, OpFamily::col2im, d,
                   Ops{Operand::in("col", col, d), Operand::out("x", image, d)},
                   [g = g](Backend& b, const std::vector<Tensor>& o) { b.col2im(o[0], o[1], g); }});
    }
}

// Max pooling windows: ResNet's 3x3 stride 2 padded, 2x2 stride 2, a stride-1 padded 3x3 on a non-square image,
// and a batch for the threaded CPU loop. 16-bit floats round the inputs into ties (the first maximum wins).
void add_max_pool(std::vector<OpCase>& t) {
  const std::vector<std::pair<std::string, ConvGeometry>> windows = {
      {"3x3 s2 p1 (3, 9, 8)", {3, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1}},
      {"2x2 s2 p0 (2, 7, 6)", {2, 7, 6, 2, 2, 2, 2, 0, 0, 1, 1}},
      {"3x3 s1 p1 (2, 5, 11)", {2, 5, 11, 3, 3, 1, 1, 1, 1, 1, 1}},
      {"3x3 s2 p1 (16, 32, 32)", {16, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1}}};
  for (const auto& [wname, g] : windows)
    for (DType d : kFloats) {
      const Shape out{2, g.channels, g.out_h(), g.out_w()};
      t.push_back(exactly({std::string("max_pool2d ") + d + " " + wname, OpFamily::max_pool2d, d,
                           Ops{Operand::in("x", {2, g.channels, g.height, g.width}, d), Operand::out("y", out, d),
                               Operand::out("indices", out, DType::i64)},
                           [g = g](Backend& b, const std::vector<Tensor>& o) { b.max_pool2d(o[0], o[1], o[2], g); }}));
    }
}

// Batch norm over (N, C, L): a few channels of many elements, many of few (L = 1: BatchNorm1d's layout), one large
// enough for the threaded CPU loops; the per-channel affine with and without shift; the backward with batch and
// running statistics, with and without weight and gx.
void add_batchnorm(std::vector<OpCase>& t) {
  for (DType d : kFloats)
    for (const Shape& s : {Shape{4, 3, 50}, Shape{8, 5, 1}, Shape{1, 7, 33}, Shape{2, 16, 1024}}) {
      const int64_t c = s[1];
      const DType sd = stat_dtype(d);
      const std::string where = std::string(" ") + d + " " + s;
      t.push_back({"batchnorm_stats" + where, OpFamily::batchnorm_stats, d,
                   Ops{Operand::in("x", s, d).range(-3, 4), Operand::out("mean", {c}, sd),
                       Operand::out("var", {c}, sd)},
                   [](Backend& b, const std::vector<Tensor>& o) { b.batchnorm_stats(o[0], o[1], o[2]); }});
      for (bool shift : {true, false})
        t.push_back({"channel_affine" + where + (shift ? "" : " without shift"), OpFamily::channel_affine, d,
                     Ops{Operand::in("x", s, d), Operand::in("scale", {c}, sd),
                         shift ? Operand::in("shift", {c}, sd) : Operand::absent("shift"), Operand::out("y", s, d)},
                     [](Backend& b, const std::vector<Tensor>& o) { b.channel_affine(o[0], o[1], o[2], o[3]); }});
      for (bool batch_stats : {true, false})
        for (bool weight : {true, false})
          for (bool with_gx : {true, false}) {
            if (!with_gx && !weight) continue;
            t.push_back(
                {"batchnorm_backward" + where + (batch_stats ? " batch" : " running") + " statistics" +
                     (weight ? " with weight" : "") + (with_gx ? "" : " without gx"),
                 OpFamily::batchnorm_backward, d,
                 Ops{Operand::in("x", s, d).range(-3, 4), Operand::in("gy", s, d),
                     weight ? Operand::in("w", {c}, d) : Operand::absent("w"), Operand::in("mean", {c}, sd).range(0, 1),
                     Operand::in("invstd", {c}, sd).range(0.5, 2),
                     with_gx ? Operand::out("gx", s, d) : Operand::absent("gx"),
                     weight ? Operand::out("gw", {c}, d) : Operand::absent("gw"), Operand::out("gb", {c}, d)},
                 [batch_stats](Backend& b, const std::vector<Tensor>& o) {
                   b.batchnorm_backward(o[0], o[1], o[2], o[3], o[4], batch_stats, o[5], o[6], o[7]);
                 }});
          }
    }
}

void add_index(std::vector<OpCase>& t) {
  // index_select / index_add along a dim of x (O, D, I) with index (L); dim 0 of a (V, C) table is the embedding
  struct Along {
    Shape x;
    int64_t dim, len;
  };
  for (const Along& a :
       {Along{{4, 6, 5}, 1, 8}, Along{{3, 10, 40}, 1, 8}, Along{{50, 16}, 0, 37}, Along{{50, 16}, 0, 300},
        Along{{8, 64}, 0, 3000}}) {  // the last: segments of ~375 rows, many chunks of the CUDA segmented sum
    Shape picked = a.x;
    picked[a.dim] = a.len;
    const int64_t dim = a.dim;
    for (DType d : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
      const std::string where =
          std::string(" ") + d + " " + a.x + " dim " + std::to_string(dim) + " index (" + std::to_string(a.len) + ")";
      t.push_back(
          exactly({"index_select" + where, OpFamily::index_select, d,
                   Ops{Operand::in("x", a.x, d).range(-10, 10), Operand::index("index", {a.len}, a.x[dim]),
                       Operand::out("out", picked, d)},
                   [dim](Backend& b, const std::vector<Tensor>& o) { b.index_select(o[0], dim, o[1], o[2]); }}));
      if (d == DType::bf16 && a.len > 8) continue;  // many bf16 roundings on one element: beyond its NMSE bound
      t.push_back({"index_add" + where, OpFamily::index_add, d,
                   Ops{Operand::in_out("out", a.x, d).range(-10, 10), Operand::index("index", {a.len}, a.x[dim]),
                       Operand::in("src", picked, d).range(-10, 10)},
                   [dim](Backend& b, const std::vector<Tensor>& o) { b.index_add(o[0], dim, o[1], o[2]); }});
    }
  }
  // gather / scatter_add with index as large as x outside dim, or smaller
  struct Gathered {
    int64_t dim;
    Shape index;
  };
  const Shape xs{4, 6, 5};
  for (const Gathered& g :
       {Gathered{2, {4, 6, 3}}, Gathered{2, {2, 6, 3}}, Gathered{0, {3, 6, 5}}, Gathered{1, {4, 2, 5}}}) {
    const int64_t dim = g.dim;
    for (DType d : {DType::f32, DType::f64, DType::bf16, DType::i64}) {
      const std::string where = std::string(" ") + d + " " + xs + " dim " + std::to_string(dim) + " index " + g.index;
      t.push_back(exactly({"gather" + where, OpFamily::gather, d,
                           Ops{Operand::in("x", xs, d).range(-10, 10), Operand::index("index", g.index, xs[dim]),
                               Operand::out("out", g.index, d)},
                           [dim](Backend& b, const std::vector<Tensor>& o) { b.gather(o[0], dim, o[1], o[2]); }}));
      t.push_back({"scatter_add" + where, OpFamily::scatter_add, d,
                   Ops{Operand::in_out("out", xs, d).range(-10, 10), Operand::index("index", g.index, xs[dim]),
                       Operand::in("src", g.index, d).range(-10, 10)},
                   [dim](Backend& b, const std::vector<Tensor>& o) { b.scatter_add(o[0], dim, o[1], o[2]); }});
    }
  }
}

void add_cross_entropy(std::vector<OpCase>& t) {
  for (DType d : kFloats)
    for (const Shape& s : {Shape{16, 10}, Shape{6, 5000}})
      for (double eps : {0.0, 0.1}) {
        const int64_t n = s[0], c = s[1];
        const DType ld = stat_dtype(d);
        const std::string name = std::string("cross_entropy ") + d + " " + s + " eps " + std::to_string(eps);
        t.push_back({name, OpFamily::cross_entropy, d,
                     Ops{Operand::in("logits", s, d).range(-4, 4), Operand::labels("target", {n}, c, kIgnore),
                         Operand::out("loss", {n}, ld), Operand::out("lse", {n}, ld)},
                     [eps](Backend& b, const std::vector<Tensor>& o) {
                       b.cross_entropy(o[0], o[1], kIgnore, eps, o[2], o[3]);
                     }});
        for (bool scalar_grad : {false, true})
          t.push_back({name + " backward" + (scalar_grad ? " scalar gloss" : ""), OpFamily::cross_entropy_backward, d,
                       Ops{Operand::in("logits", s, d).range(-4, 4), Operand::labels("target", {n}, c, kIgnore),
                           Operand::in("lse", {n}, ld).range(3, 5), Operand::in("gloss", {scalar_grad ? 1 : n}, ld),
                           Operand::out("glogits", s, d)},
                       [eps](Backend& b, const std::vector<Tensor>& o) {
                         b.cross_entropy_backward(o[0], o[1], o[2], o[3], kIgnore, eps, o[4]);
                       }});
      }
  t.push_back(
      {"cross_entropy f32 (16, 10) without lse", OpFamily::cross_entropy, DType::f32,
       Ops{Operand::in("logits", {16, 10}, DType::f32), Operand::labels("target", {16}, 10, kIgnore),
           Operand::out("loss", {16}, DType::f32), Operand::absent("lse")},
       [](Backend& b, const std::vector<Tensor>& o) { b.cross_entropy(o[0], o[1], kIgnore, 0.1, o[2], o[3]); }});
}

// ---- AdamW: several slots per call ----

// One slot's step coefficients, from its lr, weight decay and step count t (betas 0.9, 0.999).
struct AdamWCoefs {
  double step_size, bc2_sqrt, decay;
};
AdamWCoefs adamw_coefs(double lr, double wd, int t) {
  return {lr / (1.0 - std::pow(0.9, t)), std::sqrt(1.0 - std::pow(0.999, t)), 1.0 - lr * wd};
}
constexpr int kAdamWOperands = 5;  // per slot: param, grad, exp_avg, exp_avg_sq, master

// Appends the operands of one slot of shape s for a parameter of dtype d (a master where d is bf16/f16).
void add_adamw_slot(Ops& ops, const std::string& tag, const Shape& s, DType d) {
  const DType md = stat_dtype(d);
  ops.push_back(Operand::in_out("param" + tag, s, d));
  ops.push_back(Operand::in("grad" + tag, s, md).range(-1, 1));
  ops.push_back(Operand::in_out("exp_avg" + tag, s, md).range(-0.1, 0.1));
  ops.push_back(Operand::in_out("exp_avg_sq" + tag, s, md).range(1e-4, 1e-2));
  ops.push_back(d == md ? Operand::absent("master" + tag) : Operand::in_out("master" + tag, s, DType::f32));
}

// Backend::adamw over the case's slots (kAdamWOperands operands each) with per-slot coefficients.
OpCall adamw_call(std::vector<AdamWCoefs> coefs, double beta1, double beta2, double eps) {
  return [=](Backend& b, const std::vector<Tensor>& o) {
    std::vector<AdamWSlot> slots;
    for (size_t k = 0; k < coefs.size(); ++k) {
      const Tensor* t = &o[k * kAdamWOperands];
      slots.push_back({t[0], t[1], t[2], t[3], t[4], coefs[k].step_size, coefs[k].bc2_sqrt, coefs[k].decay});
    }
    b.adamw(slots, beta1, beta2, eps);
  };
}

// Slots of the given shapes and parameter dtypes, each with its own lr, weight decay and step count.
OpCase adamw_case(const std::string& name, DType dtype, const std::vector<std::pair<Shape, DType>>& slots) {
  Ops ops;
  std::vector<AdamWCoefs> coefs;
  for (size_t k = 0; k < slots.size(); ++k) {
    add_adamw_slot(ops, "." + std::to_string(k), slots[k].first, slots[k].second);
    coefs.push_back(adamw_coefs(1e-3 * static_cast<double>(1 + k % 4), k % 3 == 0 ? 0.0 : 0.1, 1 + 7 * (k % 5)));
  }
  return {name, OpFamily::adamw, dtype, std::move(ops), adamw_call(std::move(coefs), 0.9, 0.999, 1e-8)};
}

// Per dtype: tensors of sizes off the vector width and the CUDA chunk (65536), one spanning three chunks, an empty
// one and a scalar; 30 tensors (more than one CUDA launch holds); every dtype in one call.
std::vector<OpCase> adamw_cases() {
  std::vector<OpCase> t;
  for (DType d : kFloats) {
    t.push_back(adamw_case(std::string("adamw ") + d + " 6 tensors", d,
                           {{{7}, d}, {{0}, d}, {{33, 17}, d}, {{2 * 65536 + 37}, d}, {{}, d}, {{4, 1000}, d}}));
    std::vector<std::pair<Shape, DType>> many;
    for (int64_t k = 0; k < 30; ++k) many.push_back({{1 + 37 * k}, d});
    t.push_back(adamw_case(std::string("adamw ") + d + " 30 tensors", d, many));
  }
  t.push_back(adamw_case("adamw f32 f64 bf16 f16 in one call", DType::f32,
                         {{{513}, DType::bf16}, {{65537}, DType::f32}, {{9, 9}, DType::f16}, {{100}, DType::f64},
                          {{0}, DType::bf16}, {{70000}, DType::f16}, {{31}, DType::f32}}));
  return t;
}

void add_adamw(std::vector<OpCase>& t) {
  for (OpCase& c : adamw_cases()) t.push_back(std::move(c));
}

const std::vector<OpCase>& op_table() {
  static const std::vector<OpCase> table = [] {
    std::vector<OpCase> t;
    add_copy_and_fill(t);
    add_random(t);
    add_unary(t);
    add_binary_and_where(t);
    add_reduce(t);
    add_gemm(t);
#ifdef PARALLAX_WITH_CUDA
    add_gemm_epilogue(t);
#endif
    add_softmax(t);
    add_topk(t);
    add_layernorm(t);
    add_conv(t);
    add_max_pool(t);
    add_batchnorm(t);
    add_index(t);
    add_cross_entropy(t);
    add_adamw(t);
    return t;
  }();
  return table;
}

// Runs every case `b` has kernels for (case i drawing its inputs from seed i + 1).
void run_table(const BackendUnderTest& b) {
  const std::vector<OpCase>& table = op_table();
  size_t ran = 0;
  for (size_t i = 0; i < table.size(); ++i) {
    if (!b.supports(table[i].family, table[i].dtype)) continue;
    ++ran;
    EXPECT_TRUE(run_case(table[i], b, static_cast<uint32_t>(i + 1)));
  }
  std::printf("op table on %s: %zu of %zu cases (the rest need kernels %s lacks)\n", b.name.c_str(), ran, table.size(),
              b.name.c_str());
  EXPECT_GT(ran, 0u);
}

TEST(BackendOps, CpuKernelsMatchTheReference) { run_table(cpu_under_test()); }

// The CPU's AdamW computes in the target's dtype in the reference's order: the same bits, f32 included.
TEST(BackendOps, CpuAdamWEqualsTheReferenceBitForBit) {
  const std::vector<OpCase> cases = adamw_cases();
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_TRUE(run_case(exactly(cases[i]), cpu_under_test(), 100 + i));
}

// Skips the test, with one line saying why, where the CUDA rows cannot run.
#define PX_SKIP_WITHOUT_CUDA() \
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << "CUDA rows: " << why

TEST(BackendOps, CudaKernelsMatchTheReference) {
  PX_SKIP_WITHOUT_CUDA();
#ifdef PARALLAX_WITH_CUDA
  run_table(cuda_under_test());
#endif
}

TEST(BackendOps, CudaReferenceKernelsMatchTheReference) {
  PX_SKIP_WITHOUT_CUDA();
#ifdef PARALLAX_WITH_CUDA
  run_table(cuda_reference_under_test());
#endif
}

TEST(BackendOpsTable, NamesAreUniqueAndEveryFamilyHasRows) {
  std::set<std::string> names;
  std::vector<int> per_family(kOpFamilies, 0);
  for (const OpCase& c : op_table()) {
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case name: " << c.name;
    ++per_family[static_cast<int>(c.family)];
  }
  for (int f = 0; f < kOpFamilies; ++f) {
    const auto family = static_cast<OpFamily>(f);
#ifndef PARALLAX_WITH_CUDA
    if (family == OpFamily::gemm_epilogue) continue;  // a CUDA kernel
#endif
    EXPECT_GT(per_family[f], 0) << "no rows for " << family_name(family);
  }
}

// ---- the harness's own checks fail where they should ----

// unary neg on f32 (4, 5) with `run` in place of the backend's kernel.
OpCase neg_case(OpCall run, bool exact = false) {
  return {"neg under test",
          OpFamily::unary,
          DType::f32,
          Ops{Operand::in("x", {4, 5}, DType::f32), Operand::out("out", {4, 5}, DType::f32)},
          std::move(run),
          [](Backend& b, const std::vector<Tensor>& o) { b.unary(UnaryOp::neg, o[0], o[1], 0.0); },
          exact};
}

void expect_caught(const OpCall& faulty, const std::string& message, bool exact = false) {
  const ::testing::AssertionResult r = run_case(neg_case(faulty, exact), cpu_under_test(), 1);
  ASSERT_FALSE(r) << "not caught: " << message;
  EXPECT_NE(std::string(r.message()).find(message), std::string::npos) << r.message();
}

TEST(BackendOpsHarness, PassesACorrectKernel) {
  EXPECT_TRUE(
      run_case(neg_case([](Backend& b, const std::vector<Tensor>& o) { b.unary(UnaryOp::neg, o[0], o[1], 0); }, true),
               cpu_under_test(), 1));
}

TEST(BackendOpsHarness, CatchesWritesOutsideTheOutputAndIntoInputs) {
  expect_caught(
      [](Backend& b, const std::vector<Tensor>& o) {
        b.unary(UnaryOp::neg, o[0], o[1], 0);
        o[1].data<float>()[o[1].numel()] = 0.0f;
      },
      "the guard after it");
  expect_caught(
      [](Backend& b, const std::vector<Tensor>& o) {
        b.unary(UnaryOp::neg, o[0], o[1], 0);
        o[1].data<float>()[-1] = 0.0f;
      },
      "the guard before it");
  expect_caught(
      [](Backend& b, const std::vector<Tensor>& o) {
        b.unary(UnaryOp::neg, o[0], o[1], 0);
        o[0].data<float>()[3] = 0.0f;
      },
      "x: 1 element(s) outside what the op may write changed");
}

TEST(BackendOpsHarness, CatchesUnwrittenNonFiniteAndInaccurateOutputs) {
  expect_caught(
      [](Backend& b, const std::vector<Tensor>& o) {  // the last element never written: NaN poison
        b.unary(UnaryOp::neg, o[0].as_strided({19}, {1}, o[0].offset()), o[1].as_strided({19}, {1}, o[1].offset()), 0);
      },
      "1 of 20 element(s) are NaN/Inf");
  expect_caught(
      [](Backend& b, const std::vector<Tensor>& o) {
        b.unary(UnaryOp::neg, o[0], o[1], 0);
        b.unary(UnaryOp::mul_scalar, o[1], o[1], 1.0 + 1e-4);
      },
      "NMSE");
  expect_caught(
      [](Backend& b, const std::vector<Tensor>& o) {
        b.unary(UnaryOp::neg, o[0], o[1], 0);
        o[1].data<float>()[7] = std::nextafter(o[1].data<float>()[7], 0.0f);
      },
      "1 of 20 element(s) differ from the reference", true);
}

}  // namespace
}  // namespace px::test
