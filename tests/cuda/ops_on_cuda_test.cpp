// Every public op of core/ops and the optimizers, from one table, on CUDA in f32, bf16 and f16 against the same op on
// the CPU (bf16/f16 inputs rounded, then computed in f32 there), forward and backward; the GPU test skips here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/index_check.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/clip_grad_norm.h"
#include "core/optim/sgd.h"
#include "tests/common/compare.h"
#include "tests/common/gpu_skip.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

namespace px {
namespace {

// Where a case runs and in which dtype its floating tensors are (f32 for the CPU stand-in).
struct Ctx {
  Device dev;
  DType dt;
};

using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>& xs, const Ctx& c)>;

// How a case's floating inputs are drawn: standard normal, uniform [0.5, 2), or small integers (ties for max).
enum class Init { normal, positive, ties };

struct OpCase {
  std::string name;           // "<family>/<op>": the audit's row (core/backend/cuda/KERNELS.md)
  std::vector<Shape> shapes;  // the floating inputs, leaves that require grad
  Fn fn;                      // the outputs; the floating ones get a backward when `grad`
  bool grad = true;
  Init init = Init::normal;
  std::vector<DType> dtypes = {DType::f32, DType::bf16, DType::f16};
};

// Integer or bool tensors on the case's device (the same values on both sides).
Tensor ids(const std::vector<int64_t>& v, const Shape& shape, const Ctx& c, DType dt = DType::i64) {
  return to_device(from_vector(v, shape, dt), c.dev);
}
Tensor mask(const std::vector<int64_t>& v, const Shape& shape, const Ctx& c) {
  return ids(v, shape, c, DType::boolean);
}

// y = x * 1.5 + 0.25: a floating output that depends on x, so a view's backward is not the identity.
Tensor touch(const Tensor& x) { return add(mul(x, 1.5), 0.25); }

std::vector<OpCase> elementwise_cases() {
  std::vector<OpCase> v;
  v.push_back({"elementwise/add", {{3, 1, 5}, {4, 5}}, [](auto& x, auto&) { return std::vector{add(x[0], x[1])}; }});
  v.push_back({"elementwise/sub", {{3, 4, 5}, {5}}, [](auto& x, auto&) { return std::vector{sub(x[0], x[1])}; }});
  v.push_back({"elementwise/mul", {{2, 3, 1}, {1, 64}}, [](auto& x, auto&) { return std::vector{mul(x[0], x[1])}; }});
  v.push_back({"elementwise/div", {{4, 33}, {4, 1}}, [](auto& x, auto&) { return std::vector{div(x[0], x[1])}; },
               true, Init::positive});
  v.push_back({"elementwise/add_scalar", {{7, 9}}, [](auto& x, auto&) { return std::vector{add(x[0], 0.75)}; }});
  v.push_back({"elementwise/mul_scalar", {{7, 9}}, [](auto& x, auto&) { return std::vector{mul(x[0], -1.25)}; }});
  v.push_back({"elementwise/neg", {{5, 6}}, [](auto& x, auto&) { return std::vector{neg(x[0])}; }});
  v.push_back({"elementwise/exp", {{5, 6}}, [](auto& x, auto&) { return std::vector{exp(x[0])}; }});
  v.push_back({"elementwise/log", {{5, 6}}, [](auto& x, auto&) { return std::vector{log(x[0])}; }, true,
               Init::positive});
  v.push_back({"elementwise/sqrt", {{5, 6}}, [](auto& x, auto&) { return std::vector{sqrt(x[0])}; }, true,
               Init::positive});
  v.push_back({"elementwise/pow", {{5, 6}}, [](auto& x, auto&) {
                 return std::vector{pow(x[0], 2.0), pow(x[0], 1.5), pow(x[0], -1.0)};
               }, true, Init::positive});
  v.push_back({"elementwise/relu", {{5, 6}}, [](auto& x, auto&) { return std::vector{relu(x[0])}; }});
  v.push_back({"elementwise/gelu", {{5, 6}}, [](auto& x, auto&) { return std::vector{gelu(x[0])}; }});
  v.push_back({"elementwise/tanh", {{5, 6}}, [](auto& x, auto&) { return std::vector{tanh(x[0])}; }});
  v.push_back({"elementwise/sigmoid", {{5, 6}}, [](auto& x, auto&) { return std::vector{sigmoid(x[0])}; }});
  // A strided (transposed) operand: the generic strided kernels rather than the flat ones.
  v.push_back({"elementwise/strided", {{6, 5}, {5, 6}}, [](auto& x, auto&) {
                 return std::vector{mul(transpose(x[0], 0, 1), x[1]), exp(transpose(x[0], 0, 1))};
               }});
  v.push_back({"elementwise/compare", {{4, 6}, {6}}, [](auto& x, auto&) {
                 return std::vector{eq(x[0], x[1]), ne(x[0], x[1]), lt(x[0], x[1]),
                                    le(x[0], x[1]), gt(x[0], x[1]), ge(x[0], x[1])};
               }, false, Init::ties});
  v.push_back({"elementwise/inplace", {{4, 6}, {4, 6}}, [](auto& x, auto&) {
                 NoGradGuard no_grad;
                 Tensor a = clone(x[0]), b = clone(x[0]), f = clone(x[0]), c = clone(x[1]);
                 add_(a, x[1], 0.5);
                 mul_(b, -2.0);
                 fill_(narrow(f, 1, 2, 3), 1.25);
                 copy_(transpose(reshape(c, {6, 4}), 0, 1), x[0]);  // a strided destination
                 return std::vector{a, b, f, c};
               }, false});
  return v;
}

std::vector<OpCase> reduce_cases() {
  std::vector<OpCase> v;
  v.push_back({"reduce/sum", {{3, 40, 5}}, [](auto& x, auto&) {
                 return std::vector{sum(x[0], {1}, true), sum(x[0]), sum(x[0], {0, 2})};
               }});
  v.push_back({"reduce/sum_wide_row", {{2, 8192}}, [](auto& x, auto&) { return std::vector{sum(x[0], {1})}; }});
  v.push_back({"reduce/mean", {{3, 4, 5}}, [](auto& x, auto&) { return std::vector{mean(x[0], {0, 2})}; }});
  v.push_back({"reduce/max", {{4, 6, 3}}, [](auto& x, auto&) {
                 return std::vector{max(x[0], {1}), max(x[0], {}, true)};
               }, true, Init::ties});
  v.push_back({"reduce/argmax", {{5, 7}}, [](auto& x, auto&) {
                 return std::vector{argmax(x[0], 1), argmax(x[0], 0, true)};
               }, false});
  v.push_back({"reduce/topk", {{6, 50}}, [](auto& x, auto&) {
                 const TopK t = topk(x[0], 5);
                 return std::vector{t.values, t.indices};
               }, false});
  v.push_back({"reduce/sum_to", {{2, 3, 4}}, [](auto& x, auto&) { return std::vector{sum_to(x[0], {3, 1})}; }});
  return v;
}

std::vector<OpCase> matmul_cases() {
  std::vector<OpCase> v;
  v.push_back({"matmul/matmul", {{2, 3, 4, 5}, {5, 6}}, [](auto& x, auto&) { return std::vector{matmul(x[0], x[1])}; }});
  v.push_back({"matmul/batched_broadcast", {{2, 1, 3, 4}, {1, 2, 4, 5}}, [](auto& x, auto&) {
                 return std::vector{matmul(x[0], x[1])};
               }});
  v.push_back({"matmul/transposed_operand", {{3, 7}, {5, 7}}, [](auto& x, auto&) {
                 return std::vector{matmul(x[0], transpose(x[1], 0, 1))};
               }});
  v.push_back({"matmul/vector", {{3, 4}, {4}}, [](auto& x, auto&) {
                 return std::vector{matmul(x[0], x[1]), matmul(x[1], transpose(x[0], 0, 1))};
               }});
  v.push_back({"matmul/linear", {{2, 3, 8}, {5, 8}, {5}}, [](auto& x, auto&) {
                 return std::vector{linear(x[0], x[1], x[2])};
               }});
  v.push_back({"matmul/linear_no_bias", {{6, 8}, {5, 8}}, [](auto& x, auto&) { return std::vector{linear(x[0], x[1])}; }});
  return v;
}

std::vector<OpCase> norm_cases() {
  std::vector<OpCase> v;
  v.push_back({"softmax/softmax", {{3, 4, 9}}, [](auto& x, auto&) { return std::vector{softmax(x[0])}; }});
  v.push_back({"softmax/log_softmax", {{3, 4, 9}}, [](auto& x, auto&) { return std::vector{log_softmax(x[0])}; }});
  v.push_back({"softmax/wide_rows", {{3, 3000}}, [](auto& x, auto&) {
                 return std::vector{softmax(x[0]), log_softmax(x[0])};
               }});
  v.push_back({"layernorm/affine", {{4, 5, 16}, {16}, {16}}, [](auto& x, auto&) {
                 return std::vector{layer_norm(x[0], x[1], x[2])};
               }});
  v.push_back({"layernorm/plain", {{6, 12}}, [](auto& x, auto&) {
                 return std::vector{layer_norm(x[0], Tensor(), Tensor())};
               }});
  v.push_back({"layernorm/wide_rows", {{3, 2048}, {2048}, {2048}}, [](auto& x, auto&) {
                 return std::vector{layer_norm(x[0], x[1], x[2])};
               }});
  return v;
}

std::vector<OpCase> vision_cases() {
  std::vector<OpCase> v;
  v.push_back({"conv/conv2d_3x3", {{2, 3, 9, 8}, {4, 3, 3, 3}, {4}}, [](auto& x, auto&) {
                 return std::vector{conv2d(x[0], x[1], x[2], {.padding = 1})};
               }});
  v.push_back({"conv/conv2d_stem", {{2, 3, 16, 13}, {4, 3, 7, 7}}, [](auto& x, auto&) {
                 return std::vector{conv2d(x[0], x[1], Tensor(), {.stride = 2, .padding = 3})};
               }});
  v.push_back({"conv/conv2d_1x1", {{2, 8, 5, 6}, {6, 8, 1, 1}}, [](auto& x, auto&) {
                 return std::vector{conv2d(x[0], x[1], Tensor()), conv2d(x[0], x[1], Tensor(), {.stride = 2})};
               }});
  v.push_back({"conv/conv2d_dilated_chunked", {{3, 2, 9, 10}, {3, 2, 3, 3}, {3}}, [](auto& x, auto&) {
                 Conv2dOptions o{.padding = 2, .dilation = 2};
                 o.max_col_bytes = 1;
                 return std::vector{conv2d(x[0], x[1], x[2], o)};
               }});
  v.push_back({"pool/max_pool2d", {{2, 3, 9, 8}}, [](auto& x, auto&) {
                 return std::vector{max_pool2d(x[0], 3, 2, 1), max_pool2d(x[0], 2, 2, 0)};
               }});
  v.push_back({"pool/interpolate_nearest", {{2, 3, 5, 4}}, [](auto& x, auto& c) {
                 const Tensor m = mask({0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 1}, {1, 4, 5}, c);
                 return std::vector{interpolate_nearest(x[0], 7, 3), interpolate_nearest(m, 2, 3)};
               }});
  // running statistics as f32 buffers (also for 16-bit inputs), updated in training and returned after it
  const auto buffers = [](const Ctx& c) {
    return std::pair{to_device(from_vector(std::vector<double>{0.1, -0.2, 0.3}, {3}), c.dev),
                     to_device(from_vector(std::vector<double>{1.5, 0.5, 2.0}, {3}), c.dev)};
  };
  v.push_back({"batchnorm/train", {{4, 3, 5, 6}, {3}, {3}}, [buffers](auto& x, auto& c) {
                 auto [rm, rv] = buffers(c);
                 const Tensor y = batch_norm(x[0], x[1], x[2], rm, rv, true);
                 return std::vector{y, batch_norm(x[0], Tensor(), Tensor(), Tensor(), Tensor(), true), rm, rv};
               }});
  v.push_back({"batchnorm/eval_and_frozen", {{2, 3, 4, 5}, {3}, {3}}, [buffers](auto& x, auto& c) {
                 auto [rm, rv] = buffers(c);
                 return std::vector{batch_norm(x[0], x[1], x[2], rm, rv, false),
                                    frozen_batch_norm(x[0], x[1].detach(), x[2].detach(), rm, rv)};
               }});
  return v;
}

std::vector<OpCase> index_cases() {
  std::vector<OpCase> v;
  v.push_back({"embedding/i64_ids", {{10, 6}}, [](auto& x, auto& c) {
                 return std::vector{embedding(x[0], ids({1, 3, 3, 9, 0, 1}, {2, 3}, c))};
               }});
  v.push_back({"embedding/i32_ids", {{10, 6}}, [](auto& x, auto& c) {
                 return std::vector{embedding(x[0], ids({7, 7, 2, 5}, {4}, c, DType::i32))};
               }});
  v.push_back({"indexing/masked_fill", {{3, 5}}, [](auto& x, auto& c) {
                 return std::vector{masked_fill(x[0], mask({1, 0, 0, 1, 0}, {1, 5}, c), -3.5)};
               }});
  v.push_back({"indexing/where", {{3, 5}, {5}}, [](auto& x, auto& c) {
                 return std::vector{where(mask({1, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0}, {3, 5}, c), x[0], x[1])};
               }});
  v.push_back({"indexing/index_select", {{3, 6, 4}}, [](auto& x, auto& c) {
                 return std::vector{index_select(x[0], 1, ids({5, 0, 5, 2, 5}, {5}, c)),
                                    index_select(x[0], 0, ids({2, 2}, {2}, c))};
               }});
  v.push_back({"indexing/gather", {{4, 6}}, [](auto& x, auto& c) {
                 return std::vector{gather(x[0], 1, ids({0, 0, 5, 1, 2, 2, 3, 3, 4, 0, 1, 1}, {4, 3}, c))};
               }});
  return v;
}

std::vector<OpCase> shape_cases() {
  std::vector<OpCase> v;
  v.push_back({"join/cat", {{2, 3, 4}, {2, 1, 4}, {2, 2, 4}}, [](auto& x, auto&) {
                 return std::vector{touch(cat({x[0], x[1], x[2]}, 1))};
               }});
  v.push_back({"join/stack", {{3, 4}, {3, 4}}, [](auto& x, auto&) { return std::vector{touch(stack({x[0], x[1]}, 1))}; }});
  v.push_back({"join/split", {{7, 3}}, [](auto& x, auto&) {
                 std::vector<Tensor> out;
                 for (const Tensor& p : split(x[0], 3, 0)) out.push_back(touch(p));
                 return out;
               }});
  v.push_back({"view/contiguous", {{3, 4, 5}}, [](auto& x, auto&) {
                 return std::vector{touch(contiguous(transpose(x[0], 0, 2))), touch(contiguous(permute(x[0], {1, 2, 0})))};
               }});
  v.push_back({"view/reshape_copy", {{3, 4}}, [](auto& x, auto&) {
                 return std::vector{touch(reshape(transpose(x[0], 0, 1), {12}))};
               }});
  v.push_back({"view/views", {{3, 1, 4}}, [](auto& x, auto&) {
                 return std::vector{touch(narrow(x[0], 2, 1, 2)), touch(contiguous(expand(x[0], {2, 3, 5, 4}))),
                                    touch(unsqueeze(squeeze(x[0], 1), 0))};
               }});
  return v;
}

std::vector<OpCase> loss_cases() {
  std::vector<OpCase> v;
  // Row 4's target is ignored (-100).
  const auto ce = [](Reduction r, double smoothing) {
    return [r, smoothing](const std::vector<Tensor>& x, const Ctx& c) {
      return std::vector{cross_entropy(x[0], ids({2, 0, 6, 3, -100, 1}, {6}, c), -100, smoothing, r)};
    };
  };
  v.push_back({"loss/cross_entropy_mean", {{6, 7}}, ce(Reduction::mean, 0.0)});
  v.push_back({"loss/cross_entropy_sum", {{6, 7}}, ce(Reduction::sum, 0.0)});
  v.push_back({"loss/cross_entropy_none", {{6, 7}}, ce(Reduction::none, 0.0)});
  v.push_back({"loss/label_smoothing", {{6, 7}}, ce(Reduction::mean, 0.1)});
  v.push_back({"loss/cross_entropy_wide", {{4, 5000}}, [](auto& x, auto& c) {
                 return std::vector{cross_entropy(x[0], ids({4999, 0, 17, 2500}, {4}, c), -100, 0.1)};
               }});
  return v;
}

std::vector<OpCase> attention_and_random_cases() {
  std::vector<OpCase> v;
  v.push_back({"attention/plain", {{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}}, [](auto& x, auto&) {
                 return std::vector{scaled_dot_product_attention(x[0], x[1], x[2])};
               }});
  v.push_back({"attention/padding_mask", {{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}}, [](auto& x, auto& c) {
                 const Tensor pad = mask({0, 0, 0, 1, 1, 0, 0, 0, 0, 1}, {2, 5}, c);
                 return std::vector{scaled_dot_product_attention(x[0], x[1], x[2], pad)};
               }});
  v.push_back({"attention/causal", {{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}}, [](auto& x, auto&) {
                 return std::vector{scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), true)};
               }});
  v.push_back({"attention/dropout", {{2, 2, 4, 8}, {2, 2, 4, 8}, {2, 2, 4, 8}}, [](auto& x, auto&) {
                 Generator gen(11);
                 return std::vector{scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), true, {0.2, &gen})};
               }});
  v.push_back({"dropout/dropout", {{5, 40}}, [](auto& x, auto&) {
                 Generator gen(5);
                 return std::vector{dropout(x[0], 0.25, true, gen)};
               }});
  v.push_back({"factory/constants", {}, [](auto&, auto& c) {
                 return std::vector{full({3, 4}, 1.5, c.dt, c.dev), zeros({5}, c.dt, c.dev), ones({2, 2}, c.dt, c.dev),
                                    scalar_tensor(-2.25, c.dt, c.dev), zeros({4}, DType::i64, c.dev),
                                    full({3}, 1.0, DType::boolean, c.dev)};
               }, false});
  v.push_back({"factory/arange", {}, [](auto&, auto& c) {
                 return std::vector{arange(7, DType::i64, c.dev), arange(2000, DType::i64, c.dev), arange(9, c.dt, c.dev),
                                    arange(0, DType::i64, c.dev)};
               }, false});
  v.push_back({"factory/random", {}, [](auto&, auto& c) {
                 Generator gen(9);
                 return std::vector{rand({4, 50}, gen, -1.0, 2.0, c.dt, c.dev), randn({3, 70}, gen, c.dt, c.dev)};
               }, false});
  v.push_back({"factory/to_dtype", {{4, 5}}, [](auto& x, auto& c) {
                 return std::vector{touch(to_dtype(x[0], DType::f32)), touch(to_dtype(to_dtype(x[0], DType::f32), c.dt)),
                                    to_dtype(to_dtype(mul(x[0], 4.0).detach(), DType::i64), DType::f32)};
               }});
  v.push_back({"factory/to_device_clone", {{4, 5}}, [](auto& x, auto& c) {
                 return std::vector{touch(to_device(to_device(x[0], cpu()), c.dev)), touch(clone(x[0]))};
               }});
  return v;
}

// The optimizers: two steps from gradients of sum(p0 * p1) + sum(p2^2) (dp0 = p1, dp1 = p0, dp2 = 2 p2).
void grads_of_a_loss(const std::vector<Tensor>& p) {
  backward(add(sum(mul(p[0], p[1])), sum(mul(p[2], p[2]))));
}
std::vector<Tensor> detached(const std::vector<Tensor>& p) {
  std::vector<Tensor> out;
  for (const Tensor& t : p) out.push_back(t.detach());
  return out;
}

std::vector<OpCase> optim_cases() {
  std::vector<OpCase> v;
  const std::vector<Shape> shapes{{4, 8}, {4, 8}, {70000}};  // the last over one multi-tensor chunk
  v.push_back({"optim/adamw", shapes, [](auto& x, auto&) {
                 optim::AdamW opt(x, 1e-2, 0.1);
                 for (int s = 0; s < 2; ++s) {
                   opt.zero_grad();
                   grads_of_a_loss(x);
                   opt.step();
                 }
                 return detached(x);
               }, false});
  v.push_back({"optim/sgd", shapes, [](auto& x, auto&) {
                 optim::SGDOptions o;
                 o.momentum = 0.9;
                 optim::SGD opt(x, 0.05, o, 0.01);
                 for (int s = 0; s < 2; ++s) {
                   opt.zero_grad();
                   grads_of_a_loss(x);
                   opt.step();
                 }
                 return detached(x);
               }, false, Init::normal, {DType::f32}});  // SGD keeps no f32 masters: 16-bit parameters are refused
  v.push_back({"optim/clip_grad_norm", shapes, [](auto& x, auto& c) {
                 grads_of_a_loss(x);
                 const double norm = optim::clip_grad_norm(x, 0.5);
                 std::vector<Tensor> out{scalar_tensor(norm, DType::f32, c.dev)};
                 for (const Tensor& p : x) out.push_back(p.grad());
                 return out;
               }, false});
  return v;
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> all;
  for (auto part : {elementwise_cases(), reduce_cases(), matmul_cases(), norm_cases(), vision_cases(), index_cases(),
                    shape_cases(),
                    loss_cases(), attention_and_random_cases(), optim_cases()})
    all.insert(all.end(), part.begin(), part.end());
  return all;
}

// ---- the harness ----

struct Tolerance {
  double rtol, atol;  // atol is scaled by max(1, max |expected|)
};
Tolerance forward_tolerance(DType dt) {
  switch (dt) {
    case DType::bf16: return {4e-2, 4e-2};
    case DType::f16: return {1e-2, 1e-2};
    default: return {1e-4, 1e-4};
  }
}
Tolerance backward_tolerance(DType dt) {
  const Tolerance t = forward_tolerance(dt);
  return {2 * t.rtol, 2 * t.atol};
}

// f32 host values of `shape` drawn as `init` asks, already rounded to dt (the inputs both sides see).
Tensor draw(const Shape& shape, Init init, DType dt, Generator& gen) {
  NoGradGuard no_grad;
  Tensor h;
  switch (init) {
    case Init::normal: h = randn(shape, gen); break;
    case Init::positive: h = rand(shape, gen, 0.5, 2.0); break;
    case Init::ties: h = to_dtype(to_dtype(mul(randn(shape, gen), 2.0), DType::i64), DType::f32); break;
  }
  return to_dtype(to_dtype(h, dt), DType::f32);
}

struct Result {
  std::vector<Tensor> outs;   // on the host, floating ones as f32
  std::vector<Tensor> grads;  // per input, f32 host, or undefined
};

Tensor to_host(const Tensor& t) {
  NoGradGuard no_grad;
  const Tensor h = to_device(t, cpu());
  return is_floating(h.dtype()) ? to_dtype(h, DType::f32) : h;
}

// Runs c on `ctx` with inputs `hs` (f32 host); gouts: the gradients of the floating outputs (f32 host, rounded to dt),
// drawn here on the first run (empty) and reused by the next.
Result run(const OpCase& c, const std::vector<Tensor>& hs, const Ctx& ctx, DType dt, std::vector<Tensor>* gouts,
           Generator& gen) {
  std::vector<Tensor> xs;
  for (const Tensor& h : hs) {
    Tensor x = to_device(to_dtype(h, ctx.dt), ctx.dev);
    x.set_requires_grad();
    xs.push_back(x);
  }
  const std::vector<Tensor> outs = c.fn(xs, ctx);
  Result r;
  if (c.grad) {
    std::vector<Tensor> roots, gs;
    const bool first = gouts->empty();
    for (const Tensor& o : outs) {
      if (!is_floating(o.dtype()) || !o.requires_grad()) continue;
      if (first) gouts->push_back(draw(o.shape(), Init::normal, dt, gen));
      gs.push_back(to_device(to_dtype((*gouts)[roots.size()], ctx.dt), ctx.dev));
      roots.push_back(o);
    }
    if (!roots.empty()) backward(roots, gs);
  }
  for (const Tensor& o : outs) r.outs.push_back(to_host(o));
  for (const Tensor& x : xs) r.grads.push_back(c.grad && x.grad().defined() ? to_host(x.grad()) : Tensor());
  return r;
}

// Case c in dtype dt on `dev` against the CPU's f32 stand-in; failures name the case.
void check_case(const OpCase& c, DType dt, Device dev, uint64_t seed) {
  SCOPED_TRACE(c.name + " in " + dtype_name(dt) + " on " + (dev.is_cpu() ? "cpu" : "cuda"));
  Generator gen(seed);
  std::vector<Tensor> hs;
  for (const Shape& s : c.shapes) hs.push_back(draw(s, c.init, dt, gen));
  std::vector<Tensor> gouts;
  const Result want = run(c, hs, {cpu(), DType::f32}, dt, &gouts, gen);
  const Result got = run(c, hs, {dev, dt}, dt, &gouts, gen);
  ASSERT_EQ(got.outs.size(), want.outs.size());
  const Tolerance ft = forward_tolerance(dt), bt = backward_tolerance(dt);
  const auto close = [](const Tensor& a, const Tensor& e, Tolerance t, const std::string& what) {
    if (!is_floating(e.dtype())) {
      EXPECT_EQ(a.dtype(), e.dtype()) << what;
      EXPECT_EQ(to_vector(a), to_vector(e)) << what;
      return;
    }
    double scale = 1.0;
    for (double v : to_vector(e)) scale = std::max(scale, std::abs(v));
    EXPECT_TRUE(test::all_close(a, e, t.rtol, t.atol * scale, what));
  };
  for (size_t i = 0; i < want.outs.size(); ++i) close(got.outs[i], want.outs[i], ft, "output " + std::to_string(i));
  for (size_t i = 0; i < want.grads.size(); ++i) {
    ASSERT_EQ(got.grads[i].defined(), want.grads[i].defined()) << "gradient of input " << i;
    if (want.grads[i].defined()) close(got.grads[i], want.grads[i], bt, "gradient of input " + std::to_string(i));
  }
}

// The audit's op families (core/backend/cuda/KERNELS.md): the table has at least one case of each.
const std::vector<std::string> kAuditedOps = {
    "elementwise/add", "elementwise/sub", "elementwise/mul", "elementwise/div", "elementwise/add_scalar",
    "elementwise/mul_scalar", "elementwise/neg", "elementwise/exp", "elementwise/log", "elementwise/sqrt",
    "elementwise/pow", "elementwise/relu", "elementwise/gelu", "elementwise/tanh", "elementwise/sigmoid",
    "elementwise/compare", "elementwise/inplace", "reduce/sum", "reduce/mean", "reduce/max", "reduce/argmax",
    "reduce/topk", "reduce/sum_to", "matmul/matmul", "matmul/linear", "softmax/softmax", "softmax/log_softmax",
    "layernorm/affine", "conv/conv2d_3x3", "conv/conv2d_stem", "conv/conv2d_1x1", "pool/max_pool2d",
    "pool/interpolate_nearest", "batchnorm/train", "batchnorm/eval_and_frozen", "embedding/i64_ids",
    "indexing/masked_fill", "indexing/where", "indexing/index_select",
    "indexing/gather", "join/cat", "join/stack", "join/split", "view/contiguous", "view/reshape_copy",
    "dropout/dropout", "loss/cross_entropy_mean", "loss/label_smoothing", "attention/plain", "attention/causal",
    "attention/dropout", "factory/arange", "factory/constants", "factory/random", "factory/to_dtype",
    "factory/to_device_clone", "optim/adamw", "optim/sgd", "optim/clip_grad_norm"};

TEST(OpsOnCudaTable, ListsEveryAuditedOp) {
  std::set<std::string> names;
  for (const OpCase& c : all_cases()) EXPECT_TRUE(names.insert(c.name).second) << "duplicate case " << c.name;
  for (const std::string& op : kAuditedOps) EXPECT_TRUE(names.count(op)) << "no case for " << op;
}

// The table itself on the CPU (the CPU backend computes bf16/f16 too): every lambda runs and the tolerances hold, so
// a GPU run fails only on what CUDA does differently.
TEST(OpsOnCudaTable, RunsOnTheCpu) {
  const std::vector<OpCase> cases = all_cases();
  for (size_t i = 0; i < cases.size(); ++i)
    for (DType dt : cases[i].dtypes) check_case(cases[i], dt, cpu(), 1000 + i);
}

TEST(OpsOnCuda, EveryOpInF32Bf16F16MatchesTheCpu) {
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  const std::vector<OpCase> cases = all_cases();
  for (size_t i = 0; i < cases.size(); ++i)
    for (DType dt : cases[i].dtypes) check_case(cases[i], dt, cuda(0), 1000 + i);
}

#ifdef PARALLAX_WITH_CUDA
// The ops that read the host before (arange's host-to-device copy in the causal mask and vocab-parallel
// cross-entropy, the mean cross-entropy's count) run without waiting for the GPU once the iota exists, with the ids
// checked on the host (HostCheckedIndicesGuard, as the trainer does).
TEST(OpsOnCuda, CausalAttentionMeanCrossEntropyAndArangeNeverWaitForTheGpu) {
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why;
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dt));
    Generator gen(3);
    const auto leaf = [&](const Shape& s) { return to_device(randn(s, gen, dt), cuda(0)).set_requires_grad(); };
    const Tensor q = leaf({2, 2, 6, 8}), k = leaf({2, 2, 6, 8}), v = leaf({2, 2, 6, 8}), logits = leaf({5, 11});
    const Tensor target = to_device(from_vector(std::vector<int64_t>{3, -100, 0, 10, 7}, {5}), cuda(0));
    (void)arange(4096, DType::i64, cuda(0));  // builds the device iota (one host copy, once per process)
    const uint64_t before = cuda_host_syncs();
    {
      HostCheckedIndicesGuard host_checked;
      backward(sum(scaled_dot_product_attention(q, k, v, Tensor(), true)));
      backward(cross_entropy(logits, target, -100, 0.1, Reduction::mean));
      (void)arange(1000, dt, cuda(0));
    }
    EXPECT_EQ(cuda_host_syncs(), before) << "a host sync in causal attention, mean cross-entropy or arange";
    EXPECT_TRUE(q.grad().defined() && logits.grad().defined());
  }
}
#endif

}  // namespace
}  // namespace px
