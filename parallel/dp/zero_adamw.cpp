// ZeroAdamW: the slice layout (chunks, offsets, the padded (dp, c) rows of each parameter in one flat buffer set per
// master dtype), the reduce-scatter of gradients, the clipping norm over dp x tp, the all-gather of the updated
// slices and the full state in the model's terms.
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

// The dtype of the master weights and moments of a parameter of dtype `t`; CHECK-fails for unsupported dtypes.
DType master_dtype(DType t, const std::string& name) {
  CHECK(t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16)
      << "ZeroAdamW: parameter '" << name << "' is " << dtype_name(t) << "; only f32, f64, bf16 and f16 are supported";
  return t == DType::f64 ? DType::f64 : DType::f32;
}

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
  // The buffers of every parameter with one master dtype.
  struct Flat {
    Tensor master;  // (C) this rank's master slices back to back; the all-gather input
    Tensor rows;    // (dp * C) rank-major: the reduce-scatter input, then the all-gather output
    Tensor grad;    // (C) the reduce-scatter result; the slices' gradients are views of it
    int64_t total = 0;  // C = sum of the chunks
  };
  // One trained parameter.
  struct Part {
    std::string name;
    Tensor param;    // the model's parameter (shape and dtype as in the model)
    int64_t chunk;   // c
    size_t flat;     // index into flats
    int64_t offset;  // the slice is flats[flat].master[offset : offset + chunk]
    Tensor slice;    // (c) view of the master: the inner AdamW's parameter
    bool low_precision() const { return param.dtype() == DType::bf16 || param.dtype() == DType::f16; }
  };
  std::vector<Part> parts;  // group by group
  std::vector<Flat> flats;  // in order of the first parameter of each master dtype
  std::vector<optim::ParamGroup> groups;  // of slices; moved into the AdamW base
  int dp = 1;
  int rank = 0;
  int64_t unsharded_bytes = 0;  // both moments of every parameter in its own dtype
  int64_t param_bytes = 0;

  // Part i's columns of its flat rows. -> (dp, c)
  Tensor cols(size_t i) const {
    const Flat& f = flats[parts[i].flat];
    const Tensor rows_2d = f.rows.as_strided({dp, f.total}, {f.total, 1}, f.rows.offset());
    return narrow(rows_2d, 1, parts[i].offset, parts[i].chunk);
  }

  // This rank's slice (c) of a tensor shaped like part i's parameter (flattened, zero-padded), in the slice's dtype
  // and on its device. full (param shape) -> (c)
  Tensor local_slice(const Tensor& full, size_t i) const {
    const Part& p = parts[i];
    CHECK(full.shape() == p.param.shape())
        << "ZeroAdamW: tensor " << full.str() << " for '" << p.name << "' is not shaped like " << p.param.str();
    const Tensor flat = reshape(contiguous(full), {full.numel()});
    const int64_t own = own_count(flat.numel(), p.chunk, rank);
    Tensor out = zeros({p.chunk}, p.slice.dtype(), p.slice.device());
    if (own > 0) copy_(narrow(out, 0, 0, own), narrow(flat, 0, rank * p.chunk, own));
    return out;
  }

  // The tensor shaped like part i's parameter from every rank's (c) slice. Collective over `group`.
  Tensor gather_slices(const Tensor& slice, size_t i, ProcessGroup& group) const {
    const Part& p = parts[i];
    CHECK(slice.shape() == Shape{p.chunk}) << "ZeroAdamW: " << slice.str() << " is not a slice of '" << p.name << "'";
    const Tensor rows = Tensor::empty({dp * p.chunk}, slice.dtype(), slice.device());
    group.all_gather(contiguous(slice), rows)->wait();
    return reshape(narrow(rows, 0, 0, p.param.numel()), p.param.shape());
  }

  // Part i's slice = this rank's part of its parameter, zero-padded (rounding-free: the master dtype holds every
  // value of the parameter's). Under NoGradGuard.
  void load_slice(size_t i) const {
    const Part& p = parts[i];
    const Tensor flat = reshape(p.param, {p.param.numel()});
    const int64_t own = own_count(flat.numel(), p.chunk, rank);
    if (own > 0) copy_(narrow(p.slice, 0, 0, own), narrow(flat, 0, rank * p.chunk, own));
    if (own < p.chunk) fill_(narrow(p.slice, 0, own, p.chunk - own), 0.0);
  }

  static std::shared_ptr<Slices> build(const std::vector<std::pair<std::string, Tensor>>& named_params,
                                       std::vector<optim::ParamGroup> groups, ProcessGroup& dp) {
    auto s = std::make_shared<Slices>();
    s->dp = dp.size();
    s->rank = dp.rank();
    std::unordered_map<const TensorImpl*, std::string> names;
    for (const auto& [name, p] : named_params) {
      CHECK(p.defined()) << "ZeroAdamW: parameter '" << name << "' is undefined";
      names.emplace(p.impl(), name);
    }
    std::vector<DType> flat_dtypes;  // master dtype of each flat
    std::vector<std::vector<size_t>> group_parts(groups.size());
    std::unordered_set<const TensorImpl*> seen;
    for (size_t g = 0; g < groups.size(); ++g) {
      for (const Tensor& p : groups[g].params) {
        CHECK(p.defined()) << "ZeroAdamW: an undefined parameter in group " << g;
        const auto named = names.find(p.impl());
        CHECK(named != names.end()) << "ZeroAdamW: " << p.str() << " of group " << g << " is not in named_params";
        const std::string& name = named->second;
        if (!p.requires_grad()) continue;  // frozen: never updated
        CHECK(p.is_leaf() && p.is_contiguous())
            << "ZeroAdamW: parameter '" << name << "' (" << p.str() << ") must be a contiguous leaf";
        CHECK_GT(p.numel(), 0) << "ZeroAdamW: parameter '" << name << "' is empty";
        CHECK(seen.insert(p.impl()).second) << "ZeroAdamW: parameter '" << name << "' is listed twice";
        if (!s->parts.empty()) {
          const Part& first = s->parts.front();
          CHECK(p.device() == first.param.device())
              << "ZeroAdamW: parameter '" << name << "' (" << p.str() << ") is on another device than '" << first.name
              << "' (" << first.param.str() << ")";
        }
        const DType md = master_dtype(p.dtype(), name);
        const size_t flat = std::find(flat_dtypes.begin(), flat_dtypes.end(), md) - flat_dtypes.begin();
        if (flat == flat_dtypes.size()) {
          flat_dtypes.push_back(md);
          s->flats.emplace_back();
        }
        const int64_t c = (p.numel() + s->dp - 1) / s->dp;
        group_parts[g].push_back(s->parts.size());
        s->parts.push_back(Part{name, p, c, flat, s->flats[flat].total, Tensor()});
        s->flats[flat].total += c;
        const int64_t bytes = p.numel() * static_cast<int64_t>(dtype_size(p.dtype()));
        s->param_bytes += bytes;
        s->unsharded_bytes += 2 * bytes;
      }
    }
    CHECK(!s->parts.empty()) << "ZeroAdamW over " << dp.describe() << ": no parameter requires grad";

    const Device device = s->parts.front().param.device();
    for (size_t f = 0; f < s->flats.size(); ++f) {
      Flat& flat = s->flats[f];
      flat.master = zeros({flat.total}, flat_dtypes[f], device);
      flat.rows = zeros({s->dp * flat.total}, flat_dtypes[f], device);
      flat.grad = zeros({flat.total}, flat_dtypes[f], device);
    }
    NoGradGuard no_grad;
    for (size_t i = 0; i < s->parts.size(); ++i) {
      Part& p = s->parts[i];
      p.slice = flat_part(s->flats[p.flat].master, p.offset, p.chunk);
      s->load_slice(i);
      p.slice.set_requires_grad(true);
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      optim::ParamGroup group = std::move(groups[g]);
      group.params.clear();
      for (size_t i : group_parts[g]) group.params.push_back(s->parts[i].slice);
      s->groups.push_back(std::move(group));
    }
    return s;
  }
};

namespace {

// One group of every parameter.
std::vector<optim::ParamGroup> one_group(const std::vector<std::pair<std::string, Tensor>>& named_params, double lr,
                                         double weight_decay) {
  optim::ParamGroup group{{}, lr, weight_decay, "", -1.0};
  for (const auto& [name, p] : named_params) group.params.push_back(p);
  return {std::move(group)};
}

}  // namespace

ZeroAdamW::ZeroAdamW(const std::vector<std::pair<std::string, Tensor>>& named_params,
                     std::vector<optim::ParamGroup> groups, optim::AdamWOptions options, ProcessGroup& dp)
    : ZeroAdamW(Slices::build(named_params, std::move(groups), dp), options, dp) {}

ZeroAdamW::ZeroAdamW(const std::vector<std::pair<std::string, Tensor>>& named_params, double lr, double weight_decay,
                     optim::AdamWOptions options, ProcessGroup& dp)
    : ZeroAdamW(named_params, one_group(named_params, lr, weight_decay), options, dp) {}

ZeroAdamW::ZeroAdamW(std::shared_ptr<Slices> slices, optim::AdamWOptions options, ProcessGroup& dp)
    : optim::AdamW(std::move(slices->groups), options), slices_(std::move(slices)), dp_(&dp) {
  const Slices& s = *slices_;
  int64_t buffer_bytes = 0;
  for (const Slices::Flat& f : s.flats)
    buffer_bytes += (s.dp + 1) * f.total * static_cast<int64_t>(dtype_size(f.master.dtype()));
  LOG(INFO) << "ZeroAdamW over " << dp.describe() << ": " << s.parts.size() << " parameters ("
            << mib(s.param_bytes) << " MiB) in " << num_groups() << " groups, optimizer state " << mib(state_bytes())
            << " MiB per rank (master slices + 2 moments) vs " << mib(unsharded_state_bytes())
            << " MiB for unsharded AdamW; gradient buffers " << mib(buffer_bytes) << " MiB";
}

void ZeroAdamW::reduce_gradients() {
  Slices& s = *slices_;
  {
    NoGradGuard no_grad;
    Backend& be = backend_for(s.parts.front().param.device());  // strided writes into the rows, converting dtypes
    for (size_t i = 0; i < s.parts.size(); ++i) {
      const Tensor& param = s.parts[i].param;
      const Tensor grad = param.grad();
      const Tensor cols = s.cols(i);
      if (!grad.defined()) {  // no gradient on this rank in this step: it contributes zeros
        be.fill(cols, 0.0);
        continue;
      }
      CHECK(grad.shape() == param.shape())
          << "ZeroAdamW: gradient " << grad.str() << " of parameter '" << s.parts[i].name << "' " << param.str();
      const PaddedLayout layout = padded_layout(cols, reshape(grad, {grad.numel()}));
      for (const auto& [in_cols, in_flat] : layout.pieces) be.copy(in_flat, in_cols);
      for (const Tensor& padding : layout.padding) be.fill(padding, 0.0);
    }
  }
  std::vector<std::shared_ptr<Work>> works;
  for (const Slices::Flat& f : s.flats) works.push_back(dp_->reduce_scatter(f.rows, f.grad, ReduceOp::sum));
  for (size_t f = 0; f < works.size(); ++f) {
    works[f]->wait_on_stream();  // NCCL: the current stream waits; MPI: the host
    s.flats[f].grad.bump_version();
  }
  for (const Slices::Part& p : s.parts) p.slice.set_grad(flat_part(s.flats[p.flat].grad, p.offset, p.chunk));
}

double ZeroAdamW::clip_grad_norm(const std::map<std::string, ShardSpec>& specs, ProcessGroup& tp, double max_norm,
                                 double grad_scale) {
  std::vector<std::pair<std::string, Tensor>> named_slices;  // each slice under its parameter's name
  for (const Slices::Part& p : slices_->parts) named_slices.emplace_back(p.name, p.slice);
  // The dp slices are disjoint parts of every gradient: every element counted once.
  return parallel::clip_grad_norm(named_slices, specs, tp, max_norm, dp_, grad_scale);
}

void ZeroAdamW::step_and_gather() {
  step();
  const Slices& s = *slices_;
  std::vector<std::shared_ptr<Work>> works;
  for (const Slices::Flat& f : s.flats) works.push_back(dp_->all_gather(f.master, f.rows));
  for (const std::shared_ptr<Work>& work : works) work->wait_on_stream();  // NCCL: the current stream waits
  NoGradGuard no_grad;
  Backend& be = backend_for(s.parts.front().param.device());  // strided reads from the rows, rounding to the param
  for (size_t i = 0; i < s.parts.size(); ++i) {
    const Tensor& param = s.parts[i].param;
    const PaddedLayout layout = padded_layout(s.cols(i), reshape(param, {param.numel()}));
    for (const auto& [in_cols, in_flat] : layout.pieces) be.copy(in_cols, in_flat);
    param.bump_version();  // as an in-place write does
  }
}

std::vector<Tensor> ZeroAdamW::model_params() const {
  std::vector<Tensor> out;
  for (const Slices::Part& p : slices_->parts) out.push_back(p.param);
  return out;
}

std::vector<optim::FullParamState> ZeroAdamW::gather_full_state() const {
  const Slices& s = *slices_;
  std::vector<optim::FullParamState> out;
  NoGradGuard no_grad;
  for (size_t i = 0; i < s.parts.size(); ++i) {
    const Slices::Part& p = s.parts[i];
    const optim::ParamState* mine = state(p.slice);
    if (mine == nullptr) continue;
    optim::FullParamState full{p.param, optim::ParamState{mine->step, {}}};
    for (const auto& [key, t] : mine->tensors) full.state.tensors.emplace(key, s.gather_slices(t, i, *dp_));
    if (p.low_precision()) full.state.tensors.emplace(kMasterKey, s.gather_slices(p.slice, i, *dp_));
    out.push_back(std::move(full));
  }
  return out;
}

void ZeroAdamW::load_full_state(const std::vector<optim::FullParamState>& states) {
  const Slices& s = *slices_;
  std::unordered_map<const TensorImpl*, const optim::FullParamState*> by_param;
  for (const optim::FullParamState& full : states)
    CHECK(by_param.emplace(full.param.impl(), &full).second)
        << "ZeroAdamW::load_full_state: " << full.param.str() << " has two states";
  NoGradGuard no_grad;
  size_t loaded = 0;
  for (size_t i = 0; i < s.parts.size(); ++i) {
    const Slices::Part& p = s.parts[i];
    s.load_slice(i);
    const auto it = by_param.find(p.param.impl());
    if (it == by_param.end()) {
      reset_state(p.slice, nullptr);
      continue;
    }
    ++loaded;
    optim::ParamState restored{it->second->state.step, {}};
    for (const auto& [key, full] : it->second->state.tensors) {
      if (key != kMasterKey) {
        restored.tensors.emplace(key, s.local_slice(full, i));
        continue;
      }
      if (!p.low_precision()) copy_(p.param, full);  // its own master (a checkpoint of a bf16 run)
      copy_(p.slice, s.local_slice(full, i));
    }
    reset_state(p.slice, &restored);
  }
  CHECK_EQ(loaded, states.size()) << "ZeroAdamW::load_full_state: a state of a tensor that is not a trained "
                                  << "parameter of this optimizer";
}

int64_t ZeroAdamW::state_bytes() const {
  int64_t bytes = 0;
  for (const Slices::Flat& f : slices_->flats)
    bytes += 3 * f.total * static_cast<int64_t>(dtype_size(f.master.dtype()));
  return bytes;
}

int64_t ZeroAdamW::unsharded_state_bytes() const { return slices_->unsharded_bytes; }

}  // namespace px::parallel
