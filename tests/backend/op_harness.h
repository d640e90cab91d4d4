// The harness behind the backend op table (backend_ops_test.cpp): a case's operands laid out in guarded
// buffers, the case run on a backend under test and on the CPU reference kernels, and the comparison.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/tensor/tensor.h"

namespace px::test {

// The kernel a case exercises: a Backend method, or a kernel a backend exposes beside that interface.
enum class OpFamily : uint8_t {
  copy,
  fill,
  uniform,
  normal,
  dropout,
  unary,
  unary_backward,
  binary,
  where,
  reduce,
  gemm,
  gemm_epilogue,
  softmax,
  softmax_backward,
  layernorm,
  layernorm_backward,
  im2col,
  col2im,
  max_pool2d,
  batchnorm_stats,
  channel_affine,
  batchnorm_backward,
  index_select,
  index_add,
  gather,
  scatter_add,
  cross_entropy,
  cross_entropy_backward,
  topk,
  adamw
};
constexpr int kOpFamilies = static_cast<int>(OpFamily::adamw) + 1;
const char* family_name(OpFamily family);

// How an operand's view sits in its buffer.
enum class Layout : uint8_t {
  contiguous,  // row-major
  transposed,  // the last two dims swapped in memory: a transpose view
  padded,      // rows of the last dim spaced kRowPadding elements wider than they are: a slice of a wider tensor
  broadcast,   // stride 0 on the dims where Operand::stored has size 1
};
constexpr int64_t kRowPadding = 3;

// What an operand holds when the op starts: inputs and in_outs random values, outputs poison
// (NaN for floats, sentinel bytes otherwise) so an unwritten element shows; absent is an undefined Tensor.
enum class Role : uint8_t { input, output, in_out, absent };

// How an input's values are drawn (from the case's seed).
enum class Draw : uint8_t {
  uniform,  // uniform in [lo, hi), rounded to the dtype
  index,    // integers in [0, hi)
  labels,   // integers in [0, hi), with elements 1 and numel - 1 set to lo (an ignore_index)
  mask,     // true or false with equal odds
};

// One tensor argument of a case; chain the setters: Operand::in("x", {4, 5}, t).range(0.1, 3).as(Layout::padded).
struct Operand {
  std::string name;
  Shape shape;  // the view's shape
  DType dtype = DType::f32;
  Role role = Role::input;
  Draw draw = Draw::uniform;
  double lo = -2.0, hi = 2.0;
  Layout layout = Layout::contiguous;
  Shape stored;          // Layout::broadcast: the stored shape, 1 where the view repeats
  bool on_host = false;  // stays on the host whatever the backend (host <-> device copies)

  static Operand in(std::string name, Shape shape, DType dtype);
  static Operand out(std::string name, Shape shape, DType dtype);
  static Operand in_out(std::string name, Shape shape, DType dtype);
  static Operand index(std::string name, Shape shape, int64_t n);  // i64 in [0, n)
  static Operand labels(std::string name, Shape shape, int64_t n, int64_t ignore_index);
  static Operand mask(std::string name, Shape shape);
  static Operand absent(std::string name);

  Operand range(double low, double high) &&;
  Operand as(Layout l) &&;
  Operand broadcast_from(Shape stored_shape) &&;
  Operand host() &&;
};

// Calls one kernel on `backend` with the case's operands, in the order of OpCase::operands.
using OpCall = std::function<void(Backend& backend, const std::vector<Tensor>& operands)>;

// One row of the table.
struct OpCase {
  std::string name;  // unique, e.g. "gemm f32 (3, 33, 17) @ (3, 17, 65) a transposed"
  OpFamily family;
  DType dtype;  // the dtype the kernel computes in (what a backend must support)
  std::vector<Operand> operands;
  OpCall run;
  OpCall reference;    // run through the reference backend; empty: `run` itself
  bool exact = false;  // outputs must equal the reference bit for bit (else the dtype's NMSE bound)
};

// A backend this build has, as the table sees it.
struct BackendUnderTest {
  std::string name;  // "cpu", "cuda", "cuda-reference"
  Device device;
  Backend* backend;
  std::function<bool(OpFamily, DType)> supports;  // whether it has a kernel for the family in the dtype
};

// The optimised CPU kernels.
BackendUnderTest cpu_under_test();
#ifdef PARALLAX_WITH_CUDA
// The CUDA backend, and CUDA's plain Impl::reference kernels; only where cuda_available().
BackendUnderTest cuda_under_test();
BackendUnderTest cuda_reference_under_test();
#endif
// The largest normalised squared error sum (a - r)^2 / sum r^2 accepted for outputs of `dtype`.
double max_nmse(DType dtype);

// Runs `c` on `b` and on the reference backend from the same inputs (drawn from `seed`) and checks every
// output: within max_nmse (or equal when exact), no NaN/Inf where the reference is finite, every element
// of every buffer outside the outputs' views untouched (sentinels around views, gaps, inputs).
::testing::AssertionResult run_case(const OpCase& c, const BackendUnderTest& b, uint32_t seed);

}  // namespace px::test
