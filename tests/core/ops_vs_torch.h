// Runs the PyTorch oracle cases of tests/oracle/gen_ops.py through px ops: forward, backward with torch's
// upstream gradient, and a comparison of every output and input gradient. Shared by ops_vs_torch_*_test.cpp.
#pragma once

#include <functional>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "tests/common/compare.h"
#include "tests/common/pxt.h"

namespace px::test {

// How inputs reach the op: as loaded (contiguous), or as non-contiguous leaves over a transposed buffer.
enum class Layout { contiguous, transposed };

inline void PrintTo(Layout layout, std::ostream* os) {
  *os << (layout == Layout::contiguous ? "contiguous" : "transposed");
}
inline std::string layout_name(const ::testing::TestParamInfo<Layout>& info) {
  return info.param == Layout::contiguous ? "Contiguous" : "Transposed";
}

// The f32 references are float64 results rounded to f32, so the tolerances bound px's own error.
inline double rtol_for(DType t) { return t == DType::f64 ? 1e-9 : 1e-5; }
inline double atol_for(DType t) { return t == DType::f64 ? 1e-11 : 1e-5; }

// One run (<op>/<i>/<dtype>/) of an oracle case: its inputs as autograd leaves and its parameters.
class OracleRun {
 public:
  OracleRun(const PxtFile& file, std::string prefix, Layout layout)
      : file_(file), prefix_(std::move(prefix)), layout_(layout) {}

  const std::string& prefix() const { return prefix_; }
  bool has(const std::string& name) const { return file_.has(prefix_ + "in/" + name); }

  // A fresh leaf holding input `name`; float inputs require grad. In the transposed layout every input with
  // two non-trivial trailing dims is a non-contiguous view (strides of a transposed buffer).
  Tensor in(const std::string& name) {
    auto it = leaves_.find(name);
    if (it != leaves_.end()) return it->second;
    const Tensor& stored = file_.get(prefix_ + "in/" + name);
    Tensor leaf = clone(stored).detach();
    if (layout_ == Layout::transposed && leaf.dim() >= 2 && leaf.size(-1) > 1 && leaf.size(-2) > 1) {
      leaf = transpose(contiguous(transpose(leaf, -1, -2)), -1, -2).detach();
      EXPECT_FALSE(leaf.is_contiguous()) << prefix_ << name;
      EXPECT_TRUE(all_close(leaf, stored, 0, 0, prefix_ + name + " (transposed copy)"));
    }
    if (is_floating(leaf.dtype())) leaf.set_requires_grad(true);
    leaves_[name] = leaf;
    return leaf;
  }
  // Every input named <stem>0, <stem>1, ... in order.
  std::vector<Tensor> ins(const std::string& stem) {
    std::vector<Tensor> xs;
    for (int k = 0; has(stem + std::to_string(k)); ++k) xs.push_back(in(stem + std::to_string(k)));
    return xs;
  }

  double num(const std::string& name) const { return param(name).item(); }
  int64_t integer(const std::string& name) const { return static_cast<int64_t>(num(name)); }
  bool flag(const std::string& name) const { return num(name) != 0; }
  std::vector<int64_t> ints(const std::string& name) const {
    std::vector<int64_t> v;
    for (double d : to_vector(param(name))) v.push_back(static_cast<int64_t>(d));
    return v;
  }

  const std::map<std::string, Tensor>& leaves() const { return leaves_; }

 private:
  const Tensor& param(const std::string& name) const { return file_.get(prefix_ + "p/" + name); }

  const PxtFile& file_;
  std::string prefix_;
  Layout layout_;
  std::map<std::string, Tensor> leaves_;
};

using OracleOp = std::function<std::vector<Tensor>(OracleRun&)>;

// Runs `op`, compares its outputs with y/<k>, backpropagates gy/<k> from the float outputs and compares
// the gradient of every float input with grad/<name>.
inline void expect_run_matches_torch(const PxtFile& file, const std::string& prefix, Layout layout,
                                     const OracleOp& op) {
  SCOPED_TRACE(prefix + (layout == Layout::contiguous ? " contiguous" : " transposed"));
  OracleRun run(file, prefix, layout);
  const std::vector<Tensor> ys = op(run);
  size_t n_refs = 0;
  while (file.has(prefix + "y/" + std::to_string(n_refs))) ++n_refs;
  ASSERT_EQ(ys.size(), n_refs) << "outputs";

  std::vector<Tensor> roots, gys;
  for (size_t k = 0; k < ys.size(); ++k) {
    const std::string key = prefix + "y/" + std::to_string(k);
    const Tensor ref = file.get(key);
    ASSERT_TRUE(ys[k].defined()) << key;
    EXPECT_EQ(ys[k].dtype(), ref.dtype()) << key << ": " << ys[k].str() << " vs " << ref.str();
    EXPECT_TRUE(all_close(ys[k], ref, rtol_for(ref.dtype()), atol_for(ref.dtype()), key));
    if (!is_floating(ys[k].dtype())) continue;
    EXPECT_TRUE(ys[k].requires_grad()) << key << " should require grad";
    if (!ys[k].requires_grad()) return;
    roots.push_back(ys[k]);
    gys.push_back(file.get(prefix + "gy/" + std::to_string(k)));
  }
  if (roots.empty()) return;
  backward(roots, gys);

  std::set<std::string> checked;
  for (const auto& [name, leaf] : run.leaves()) {
    if (!leaf.requires_grad()) continue;
    const std::string key = prefix + "grad/" + name;
    const Tensor& ref = file.get(key);
    checked.insert(key);
    ASSERT_TRUE(leaf.grad().defined()) << key << ": no gradient reached the input";
    EXPECT_EQ(leaf.grad().dtype(), ref.dtype()) << key;
    EXPECT_TRUE(all_close(leaf.grad(), ref, rtol_for(ref.dtype()), atol_for(ref.dtype()), key));
  }
  for (const auto& [key, t] : file.all())
    if (key.rfind(prefix + "grad/", 0) == 0) EXPECT_TRUE(checked.count(key)) << key << " was not checked";
}

// Runs every case <op>/<i>/{f32,f64}/ of the file; `op` returns a Tensor or a vector of them.
template <typename Fn>
void expect_op_matches_torch(const PxtFile& file, const std::string& op_name, Layout layout, Fn fn) {
  const OracleOp op = [&fn](OracleRun& run) -> std::vector<Tensor> {
    if constexpr (std::is_same_v<std::invoke_result_t<Fn&, OracleRun&>, Tensor>)
      return {fn(run)};
    else
      return fn(run);
  };
  int runs = 0;
  for (int i = 0;; ++i) {
    bool any = false;
    for (const char* dt : {"f32", "f64"}) {
      const std::string prefix = op_name + "/" + std::to_string(i) + "/" + dt + "/";
      if (!file.has(prefix + "y/0")) continue;
      any = true;
      ++runs;
      expect_run_matches_torch(file, prefix, layout, op);
    }
    if (!any) break;
  }
  EXPECT_GT(runs, 0) << "no oracle cases for " << op_name;
}

}  // namespace px::test
