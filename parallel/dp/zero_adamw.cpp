// ZeroAdamW: the slice layout (chunks, offsets, the padded (dp, c) rows of each parameter), the reduce-scatter
// of gradients, the clipping norm over dp x tp, the all-gather of the updated slices and the checkpoint helpers.
#include "parallel/dp/zero_adamw.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "core/autograd/grad_mode.h"
#include "core/backend/backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/view.h"
#include "core/util/error.h"
#include "parallel/grad_clip.h"

namespace px::parallel {

namespace {

// Elements [start, start + length) of a contiguous 1-D tensor as a contiguous view without an autograd link
// (a leaf of its own). t (N) -> (length)
Tensor flat_part(const Tensor& t, int64_t start, int64_t length) {
  return t.as_strided({length}, {1}, t.offset() + start);
}

// How many of rank r's c elements of a parameter of n elements are real (the rest is padding).
int64_t own_count(int64_t n, int64_t c, int rank) { return std::clamp<int64_t>(n - rank * c, 0, c); }

// The elements of one parameter in its padded rank-major layout, paired with the same elements of the flat
// parameter, plus the padding. cols: the parameter's (dp, c) columns of the (dp, C) rows; flat: (n).
struct PaddedLayout {
  std::vector<std::pair<Tensor, Tensor>> pieces;  // (in cols, in flat): full rows (q, c), then a partial row (1, rem)
  std::vector<Tensor> padding;                    // views of cols holding no element of the parameter
};

PaddedLayout padded_layout(const Tensor& cols, const Tensor& flat) {
  const int64_t dp = cols.size(0), c = cols.size(1), n = flat.numel();
  const int64_t q = n / c, rem = n - q * c;  // q full rows, then rem elements of row q
  PaddedLayout layout;
  if (q > 0) layout.pieces.emplace_back(narrow(cols, 0, 0, q), reshape(narrow(flat, 0, 0, q * c), {q, c}));
  int64_t first_padding_row = q;
  if (rem > 0) {
    const Tensor row = narrow(cols, 0, q, 1);
    layout.pieces.emplace_back(narrow(row, 1, 0, rem), reshape(narrow(flat, 0, q * c, rem), {1, rem}));
    layout.padding.push_back(narrow(row, 1, rem, c - rem));
    first_padding_row = q + 1;
  }
  if (first_padding_row < dp) layout.padding.push_back(narrow(cols, 0, first_padding_row, dp - first_padding_row));
  return layout;
}

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

}  // namespace

struct ZeroAdamW::Slices {
  std::vector<SliceOf> of;        // per trained parameter, in model order
  std::vector<int64_t> offsets;   // parameter i's slice is master[offsets[i] : offsets[i] + of[i].chunk]
  std::vector<Tensor> slices;     // (c_i) views of master: the inner AdamW's parameters
  std::unordered_map<const TensorImpl*, size_t> index;  // slice -> i
  Tensor master;  // (C) this rank's master slices back to back; the all-gather input
  Tensor rows;    // (dp * C) rank-major: the reduce-scatter input, then the all-gather output
  Tensor grad;    // (C) the reduce-scatter result; the slices' gradients are views of it
  int dp = 1;
  int rank = 0;
  int64_t total = 0;        // C = sum of the chunks
  int64_t param_numel = 0;  // sum of the parameters' numel
  int64_t element_bytes = 0;

  // rows as (dp, C). -> (dp, C)
  Tensor rows_2d() const { return rows.as_strided({dp, total}, {total, 1}, rows.offset()); }
  // Parameter i's columns of the rows. -> (dp, c)
  Tensor cols(size_t i) const { return narrow(rows_2d(), 1, offsets[i], of[i].chunk); }

  // slices[i] = this rank's part of its parameter, zero-padded. Under NoGradGuard.
  void load_slice(size_t i) const {
    const Tensor flat = reshape(of[i].param, {of[i].param.numel()});
    const int64_t c = of[i].chunk, own = own_count(flat.numel(), c, rank);
    if (own > 0) copy_(narrow(slices[i], 0, 0, own), narrow(flat, 0, rank * c, own));
    if (own < c) fill_(narrow(slices[i], 0, own, c - own), 0.0);
  }

  static std::shared_ptr<Slices> build(const std::vector<std::pair<std::string, Tensor>>& named_params,
                                       ProcessGroup& dp) {
    auto s = std::make_shared<Slices>();
    s->dp = dp.size();
    s->rank = dp.rank();
    std::unordered_set<const TensorImpl*> seen;
    for (const auto& [name, p] : named_params) {
      CHECK(p.defined()) << "ZeroAdamW: parameter '" << name << "' is undefined";
      if (!p.requires_grad()) continue;  // frozen: never updated
      CHECK(p.is_leaf() && p.is_contiguous())
          << "ZeroAdamW: parameter '" << name << "' (" << p.str() << ") must be a contiguous leaf";
      CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64)
          << "ZeroAdamW: parameter '" << name << "' is " << p.str() << "; only f32 and f64 are supported";
      CHECK_GT(p.numel(), 0) << "ZeroAdamW: parameter '" << name << "' is empty";
      CHECK(seen.insert(p.impl()).second) << "ZeroAdamW: parameter '" << name << "' is listed twice";
      if (!s->of.empty()) {
        const Tensor& first = s->of.front().param;
        CHECK(p.dtype() == first.dtype() && p.device() == first.device())
            << "ZeroAdamW: parameter '" << name << "' (" << p.str() << ") differs in dtype or device from '"
            << s->of.front().name << "' (" << first.str() << "); the flat buffers hold one dtype on one device";
      }
      const int64_t c = (p.numel() + s->dp - 1) / s->dp;
      s->of.push_back(SliceOf{name, p, c});
      s->offsets.push_back(s->total);
      s->total += c;
      s->param_numel += p.numel();
    }
    CHECK(!s->of.empty()) << "ZeroAdamW over " << dp.describe() << ": no parameter requires grad";

    const Tensor& first = s->of.front().param;
    s->element_bytes = static_cast<int64_t>(dtype_size(first.dtype()));
    s->master = zeros({s->total}, first.dtype(), first.device());
    s->rows = zeros({s->dp * s->total}, first.dtype(), first.device());
    s->grad = zeros({s->total}, first.dtype(), first.device());
    NoGradGuard no_grad;
    for (size_t i = 0; i < s->of.size(); ++i) {
      Tensor slice = flat_part(s->master, s->offsets[i], s->of[i].chunk);
      s->slices.push_back(slice);
      s->load_slice(i);
      slice.set_requires_grad(true);
      s->index.emplace(slice.impl(), i);
    }
    return s;
  }
};

ZeroAdamW::ZeroAdamW(const std::vector<std::pair<std::string, Tensor>>& named_params, double lr, double weight_decay,
                     optim::AdamWOptions options, ProcessGroup& dp)
    : ZeroAdamW(Slices::build(named_params, dp), lr, weight_decay, options, dp) {}

ZeroAdamW::ZeroAdamW(std::shared_ptr<Slices> slices, double lr, double weight_decay, optim::AdamWOptions options,
                     ProcessGroup& dp)
    : optim::AdamW(std::vector<optim::ParamGroup>{optim::ParamGroup{slices->slices, lr, weight_decay, "", -1.0}},
                   options),
      slices_(std::move(slices)),
      dp_(&dp) {
  const Slices& s = *slices_;
  LOG(INFO) << "ZeroAdamW over " << dp.describe() << ": " << s.of.size() << " parameters ("
            << mib(s.param_numel * s.element_bytes) << " MiB), optimizer state " << mib(state_bytes())
            << " MiB per rank (master slices + 2 moments) vs " << mib(unsharded_state_bytes())
            << " MiB for unsharded AdamW; gradient buffers " << mib((s.dp + 1) * s.total * s.element_bytes)
            << " MiB";
}

void ZeroAdamW::reduce_gradients() {
  Slices& s = *slices_;
  {
    NoGradGuard no_grad;
    Backend& be = backend_for(s.rows.device());  // strided writes into the rows (the in-place ops want contiguous)
    for (size_t i = 0; i < s.of.size(); ++i) {
      const Tensor& param = s.of[i].param;
      const Tensor grad = param.grad();
      const Tensor cols = s.cols(i);
      if (!grad.defined()) {  // no gradient on this rank in this step: it contributes zeros
        be.fill(cols, 0.0);
        continue;
      }
      CHECK(grad.shape() == param.shape())
          << "ZeroAdamW: gradient " << grad.str() << " of parameter '" << s.of[i].name << "' " << param.str();
      const PaddedLayout layout = padded_layout(cols, reshape(grad, {grad.numel()}));
      for (const auto& [in_cols, in_flat] : layout.pieces) be.copy(in_flat, in_cols);
      for (const Tensor& padding : layout.padding) be.fill(padding, 0.0);
    }
  }
  dp_->reduce_scatter(s.rows, s.grad, ReduceOp::sum)->wait();
  s.grad.bump_version();
  for (size_t i = 0; i < s.of.size(); ++i) s.slices[i].set_grad(flat_part(s.grad, s.offsets[i], s.of[i].chunk));
}

double ZeroAdamW::clip_grad_norm(const std::map<std::string, ShardSpec>& specs, ProcessGroup& tp, double max_norm) {
  const Slices& s = *slices_;
  std::vector<std::pair<std::string, Tensor>> named_slices;  // each slice under its parameter's name
  for (size_t i = 0; i < s.of.size(); ++i) named_slices.emplace_back(s.of[i].name, s.slices[i]);
  // The dp slices are disjoint parts of every gradient: every element counted once.
  return parallel::clip_grad_norm(named_slices, specs, tp, max_norm, dp_);
}

void ZeroAdamW::step_and_gather() {
  step();
  const Slices& s = *slices_;
  dp_->all_gather(s.master, s.rows)->wait();
  NoGradGuard no_grad;
  Backend& be = backend_for(s.rows.device());  // strided reads from the rows
  for (size_t i = 0; i < s.of.size(); ++i) {
    const Tensor& param = s.of[i].param;
    const PaddedLayout layout = padded_layout(s.cols(i), reshape(param, {param.numel()}));
    for (const auto& [in_cols, in_flat] : layout.pieces) be.copy(in_cols, in_flat);
    param.bump_version();  // as an in-place write does
  }
}

void ZeroAdamW::reload_slices() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < slices_->of.size(); ++i) slices_->load_slice(i);
}

const ZeroAdamW::SliceOf& ZeroAdamW::slice_of(const Tensor& slice) const {
  const auto it = slices_->index.find(slice.impl());
  CHECK(it != slices_->index.end()) << "ZeroAdamW::slice_of: " << (slice.defined() ? slice.str() : "undefined")
                                    << " is not one of this optimizer's slices";
  return slices_->of[it->second];
}

Tensor ZeroAdamW::local_slice(const Tensor& full, const SliceOf& s) const {
  if (full.shape() != s.param.shape())
    throw CheckpointError("ZeroAdamW: tensor for '" + s.name + "' is " + full.str() + ", the parameter is " +
                          s.param.str());
  NoGradGuard no_grad;
  const Tensor flat = reshape(contiguous(full), {full.numel()});
  const int64_t own = own_count(flat.numel(), s.chunk, dp_->rank());
  Tensor out = zeros({s.chunk}, full.dtype(), full.device());
  if (own > 0) copy_(narrow(out, 0, 0, own), narrow(flat, 0, dp_->rank() * s.chunk, own));
  return out;
}

Tensor ZeroAdamW::gather_slices(const Tensor& slice, const SliceOf& s) const {
  CHECK(slice.defined() && slice.shape() == Shape{s.chunk})
      << "ZeroAdamW::gather_slices: " << (slice.defined() ? slice.str() : "undefined") << " is not a (" << s.chunk
      << ") slice of '" << s.name << "'";
  NoGradGuard no_grad;
  const Tensor rows = Tensor::empty({dp_->size() * s.chunk}, slice.dtype(), slice.device());
  dp_->all_gather(contiguous(slice), rows)->wait();
  return reshape(narrow(rows, 0, 0, s.param.numel()), s.param.shape());
}

int64_t ZeroAdamW::state_bytes() const { return 3 * slices_->total * slices_->element_bytes; }

int64_t ZeroAdamW::unsharded_state_bytes() const { return 2 * slices_->param_numel * slices_->element_bytes; }

}  // namespace px::parallel
