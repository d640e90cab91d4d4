// Finite-difference gradient checks in f64: analytic grads from backward vs central differences,
// plus input builders (random, non-contiguous, expanded, integer) that use no op under test.
#include "tests/common/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/util/error.h"

namespace px::test {
namespace {

// Calls f(row-major logical index, element offset into storage) for every element of t.
template <typename F>
void for_each_element(const Tensor& t, F&& f) {
  const Shape& shape = t.shape();
  const int64_t n = t.numel();
  if (n == 0) return;
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = t.offset();
    for (size_t d = 0; d < shape.size(); ++d) off += idx[d] * t.strides()[d];
    f(i, off);
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

std::string index_str(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  std::ostringstream os;
  os << "[";
  for (size_t d = 0; d < idx.size(); ++d) os << (d ? ", " : "") << idx[d];
  os << "]";
  return os.str();
}

// Keeps `count` entries of `elements` chosen at random (the first and last always among them).
template <typename Map>
void keep_sample(Map& elements, size_t count, uint64_t seed) {
  std::vector<typename Map::key_type> keys;
  for (const auto& kv : elements) keys.push_back(kv.first);
  std::mt19937_64 rng(seed);
  std::shuffle(keys.begin() + 1, keys.end() - 1, rng);
  keys.resize(std::max<size_t>(count, 2) - 1);
  keys.push_back(elements.rbegin()->first);
  Map kept;
  for (const auto& k : keys) kept.insert(*elements.find(k));
  elements.swap(kept);
}

Tensor contiguous_from(const std::vector<double>& values, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::f64);
  std::copy(values.begin(), values.end(), t.data<double>());
  return t;
}

std::vector<double> uniform_values(int64_t n, uint64_t seed, double lo, double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

// One differentiable input's comparison: worst excess over the tolerance, per storage element.
struct InputReport {
  double worst_excess = -1;  // < 0: all within tolerance
  int64_t worst_flat = 0;
  double analytic = 0, numeric = 0;
  int64_t bad = 0, checked = 0;
};

}  // namespace

std::vector<double> host_values(const Tensor& t) {
  CHECK(t.device().is_cpu()) << "host_values on " << t.str();
  std::vector<double> v(static_cast<size_t>(t.numel()));
  if (t.dtype() == DType::f64 && t.is_contiguous()) {
    std::copy(t.data<double>(), t.data<double>() + t.numel(), v.begin());
    return v;
  }
  dispatch_dtype(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* base = static_cast<const T*>(t.storage()->data());
    for_each_element(t, [&](int64_t i, int64_t off) { v[i] = to_double(base[off]); });
  });
  return v;
}

::testing::AssertionResult gradcheck(const GradFn& fn, const std::vector<Tensor>& inputs,
                                     const GradcheckOptions& opts) {
  std::vector<bool> diff(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    diff[i] = inputs[i].defined() && is_floating(inputs[i].dtype()) &&
              std::find(opts.nondiff.begin(), opts.nondiff.end(), i) == opts.nondiff.end();
    if (diff[i] && inputs[i].dtype() != DType::f64)
      return ::testing::AssertionFailure()
             << "gradcheck: input " << i << " is " << inputs[i].str() << "; differentiable inputs must be f64";
  }

  // Analytic: leaves over the same storage (same strides), backward with weights w.
  std::vector<Tensor> leaves(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) continue;
    leaves[i] = inputs[i].detach();
    if (diff[i]) leaves[i].set_requires_grad(true);
  }
  Tensor out;
  try {
    out = fn(leaves);
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "gradcheck: forward threw: " << e.what();
  }
  if (!out.defined()) return ::testing::AssertionFailure() << "gradcheck: fn returned an undefined tensor";
  if (out.dtype() != DType::f64)
    return ::testing::AssertionFailure() << "gradcheck: output is " << out.str() << ", expected f64";
  const std::vector<double> w = uniform_values(out.numel(), opts.seed, -1.0, 1.0);
  const bool any_diff = std::find(diff.begin(), diff.end(), true) != diff.end();
  if (any_diff) {
    if (!out.requires_grad())
      return ::testing::AssertionFailure()
             << "gradcheck: output " << out.str() << " does not require grad although an input does";
    try {
      backward(out, contiguous_from(w, out.shape()));
    } catch (const std::exception& e) {
      return ::testing::AssertionFailure() << "gradcheck: backward threw: " << e.what();
    }
  }
  out = Tensor();

  // Numeric: perturb each storage element an input reads, run forward without grad.
  NoGradGuard no_grad;
  std::vector<Tensor> plain(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) plain[i] = inputs[i].detach();
  auto eval = [&] { return host_values(fn(plain)); };

  std::ostringstream failures;
  bool ok = true;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!diff[i]) continue;
    Tensor g = leaves[i].grad();
    if (g.defined() && (g.shape() != inputs[i].shape() || g.dtype() != DType::f64)) {
      ok = false;
      failures << "\n  input " << i << ": grad is " << g.str() << " for input " << inputs[i].str();
      continue;
    }
    const std::vector<double> grad =
        g.defined() ? host_values(g) : std::vector<double>(static_cast<size_t>(inputs[i].numel()), 0.0);

    // storage offset -> (first logical index, summed analytic gradient of its aliases)
    std::map<int64_t, std::pair<int64_t, double>> elements;
    for_each_element(inputs[i], [&](int64_t flat, int64_t off) {
      elements.try_emplace(off, flat, 0.0).first->second.second += grad[flat];
    });

    if (opts.max_checked > 0 && elements.size() > opts.max_checked)
      keep_sample(elements, opts.max_checked, opts.seed + i);

    double* base = static_cast<double*>(inputs[i].storage()->data());
    InputReport r;
    for (const auto& [off, entry] : elements) {
      const double orig = base[off];
      base[off] = orig + opts.eps;
      const std::vector<double> yp = eval();
      base[off] = orig - opts.eps;
      const std::vector<double> ym = eval();
      base[off] = orig;
      if (yp.size() != w.size() || ym.size() != w.size())
        return ::testing::AssertionFailure()
               << "gradcheck: forward without grad gave " << yp.size() << " elements, with grad " << w.size();
      // sum(w * (y+ - y-)): outputs the element does not touch cancel exactly, so the rounding
      // error does not grow with the output's size.
      double df = 0;
      for (size_t k = 0; k < w.size(); ++k) df += w[k] * (yp[k] - ym[k]);
      const double numeric = df / (2 * opts.eps);
      const double analytic = entry.second;
      double excess = std::abs(analytic - numeric) - (opts.atol + opts.rtol * std::abs(numeric));
      if (std::isnan(excess)) excess = 1e300;
      ++r.checked;
      if (excess > 0) {
        ++r.bad;
        if (excess > r.worst_excess) {
          r.worst_excess = excess;
          r.worst_flat = entry.first;
          r.analytic = analytic;
          r.numeric = numeric;
        }
      }
    }
    if (r.bad > 0) {
      ok = false;
      failures << std::setprecision(10) << "\n  input " << i << " " << inputs[i].str() << ": " << r.bad << " of "
               << r.checked << " elements differ; worst at " << index_str(inputs[i].shape(), r.worst_flat)
               << ": analytic " << r.analytic << ", numeric " << r.numeric << " (rtol " << opts.rtol << ", atol "
               << opts.atol << (g.defined() ? "" : "; backward gave no gradient") << ")";
    }
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "gradcheck failed:" << failures.str();
}

Tensor uniform64(const Shape& shape, uint64_t seed, double lo, double hi) {
  return contiguous_from(uniform_values(shape_numel(shape), seed, lo, hi), shape);
}

Tensor away_from_zero64(const Shape& shape, uint64_t seed, double min_abs, double max_abs) {
  std::vector<double> v = uniform_values(shape_numel(shape), seed, min_abs, max_abs);
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  for (double& x : v)
    if (rng() & 1) x = -x;
  return contiguous_from(v, shape);
}

Tensor distinct64(const Shape& shape, uint64_t seed, double gap) {
  const int64_t n = shape_numel(shape);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = gap * (static_cast<double>(i) - 0.5 * static_cast<double>(n - 1));
  std::mt19937_64 rng(seed);
  std::shuffle(v.begin(), v.end(), rng);
  return contiguous_from(v, shape);
}

Tensor transposed64(const Shape& shape, uint64_t seed, double lo, double hi) {
  CHECK_GE(shape.size(), 2u);
  Shape mem = shape;
  std::swap(mem[mem.size() - 1], mem[mem.size() - 2]);
  Tensor base = uniform64(mem, seed, lo, hi);
  Shape strides = base.strides();
  std::swap(strides[strides.size() - 1], strides[strides.size() - 2]);
  return base.as_strided(shape, strides, 0);
}

Tensor narrowed64(const Shape& shape, int64_t dim, uint64_t seed, double lo, double hi) {
  dim = wrap_dim(dim, static_cast<int64_t>(shape.size()));
  Shape big = shape;
  big[dim] += 3;
  Tensor base = uniform64(big, seed, lo, hi);
  return base.as_strided(shape, base.strides(), base.strides()[dim]);
}

Tensor expanded64(const Shape& shape, int64_t dim, uint64_t seed, double lo, double hi) {
  dim = wrap_dim(dim, static_cast<int64_t>(shape.size()));
  Shape small = shape;
  small[dim] = 1;
  Tensor base = uniform64(small, seed, lo, hi);
  Shape strides = base.strides();
  strides[dim] = 0;
  return base.as_strided(shape, strides, 0);
}

Tensor int_tensor(const std::vector<int64_t>& values, const Shape& shape, DType dtype) {
  CHECK_EQ(static_cast<int64_t>(values.size()), shape_numel(shape));
  Tensor t = Tensor::empty(shape, dtype);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = from_double<T>(static_cast<double>(values[i]));
  });
  return t;
}

Tensor bool_tensor(const std::vector<int>& values, const Shape& shape) {
  CHECK_EQ(static_cast<int64_t>(values.size()), shape_numel(shape));
  Tensor t = Tensor::empty(shape, DType::boolean);
  bool* p = t.data<bool>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i] != 0;
  return t;
}

}  // namespace px::test
