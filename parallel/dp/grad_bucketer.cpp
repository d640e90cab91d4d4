// GradBucketer: forms the gradient buckets, starts each bucket's all-reduce from the grad-ready hooks in
// bucket order, and in finish() launches the rest, waits and writes the reduced gradients back.
#include "parallel/dp/grad_bucketer.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <unordered_set>
#include <utility>

#include "core/backend/backend.h"

namespace px::parallel {

struct GradBucketer::Bucket {
  std::vector<Tensor> params;    // this bucket's parameters, in reverse model order
  std::vector<int64_t> offsets;  // params[i] occupies flat[offsets[i] : offsets[i] + params[i].numel()]
  Tensor flat;                   // (total numel) the wire dtype, the gradients' device; all-reduced in place
  std::vector<bool> ready;       // per param: its grad-ready hook fired in this synchronised backward
  size_t num_ready = 0;
  std::shared_ptr<Work> work;  // the all-reduce in flight, from launch until finish() has waited for it
  // The hooks hold a weak_ptr to this: once the bucketer (and so the bucket) is gone they do nothing.
  std::shared_ptr<const bool> alive = std::make_shared<const bool>(true);

  bool launched() const { return work != nullptr; }
  bool complete() const { return num_ready == params.size(); }
  // params[slot]'s elements of flat, shaped like the parameter.
  Tensor slot_view(size_t slot) const {
    const Shape& shape = params[slot].shape();
    return flat.as_strided(shape, contiguous_strides(shape), flat.offset() + offsets[slot]);
  }
};

namespace {

// The dtype parameter p's gradient travels in: the options' wire dtype, else the gradient's own (master_dtype).
DType wire_dtype(const Tensor& p, const GradBucketerOptions& options) {
  return options.wire_dtype.value_or(master_dtype(p.dtype()));
}

// Buckets of indices into `params` (in reverse order, one wire dtype and device each, at most bucket_bytes unless a
// single parameter is larger), ordered by their first index in reverse order: the order backward produces
// gradients in, and the order every rank launches them in.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<Tensor>& params, const GradBucketerOptions& options) {
  struct Open {
    size_t first;  // position in reverse order of its first parameter (sort key)
    std::vector<size_t> members;
    int64_t bytes = 0;
  };
  std::vector<Open> closed;
  std::map<std::pair<int, std::string>, Open> open;  // (dtype, device) -> the bucket being filled
  for (size_t pos = 0; pos < params.size(); ++pos) {
    const size_t index = params.size() - 1 - pos;
    const Tensor& p = params[index];
    const DType dtype = wire_dtype(p, options);
    const int64_t bytes = p.numel() * static_cast<int64_t>(dtype_size(dtype));
    const auto key = std::make_pair(static_cast<int>(dtype), p.device().str());
    auto it = open.find(key);
    if (it != open.end() && it->second.bytes + bytes > options.bucket_bytes) {
      closed.push_back(std::move(it->second));
      open.erase(it);
      it = open.end();
    }
    if (it == open.end()) it = open.emplace(key, Open{pos, {}, 0}).first;
    it->second.members.push_back(index);
    it->second.bytes += bytes;
  }
  for (auto& [key, bucket] : open) closed.push_back(std::move(bucket));
  std::sort(closed.begin(), closed.end(), [](const Open& a, const Open& b) { return a.first < b.first; });
  std::vector<std::vector<size_t>> buckets;
  for (Open& b : closed) buckets.push_back(std::move(b.members));
  return buckets;
}

}  // namespace

GradBucketer::GradBucketer(const std::vector<Tensor>& params, ProcessGroup& dp, GradBucketerOptions options)
    : dp_(&dp), options_(options) {
  CHECK_GT(options_.bucket_bytes, 0) << "GradBucketer over " << dp.describe() << ": bucket_bytes must be positive";
  // Frozen parameters (requires_grad false) get no gradient on any rank: they stay out of the buckets.
  std::vector<Tensor> trained;
  std::unordered_set<const TensorImpl*> seen;
  for (const Tensor& p : params) {
    CHECK(p.defined()) << "GradBucketer: undefined parameter";
    if (!p.requires_grad()) continue;
    CHECK(p.is_leaf()) << "GradBucketer: parameter " << p.str() << " is not a leaf";
    CHECK(seen.insert(p.impl()).second) << "GradBucketer: parameter " << p.str() << " is listed twice";
    trained.push_back(p);
  }

  int64_t total_bytes = 0;
  for (const std::vector<size_t>& members : assign_buckets(trained, options_)) {
    auto bucket = std::make_unique<Bucket>();
    int64_t numel = 0;
    for (size_t index : members) {
      bucket->params.push_back(trained[index]);
      bucket->offsets.push_back(numel);
      numel += trained[index].numel();
    }
    const Tensor& first = bucket->params.front();
    const DType dtype = wire_dtype(first, options_);
    bucket->flat = Tensor::empty({numel}, dtype, first.device());
    bucket->ready.assign(members.size(), false);
    total_bytes += numel * static_cast<int64_t>(dtype_size(dtype));
    buckets_.push_back(std::move(bucket));
  }

  for (size_t b = 0; b < buckets_.size(); ++b) {
    const std::weak_ptr<const bool> alive = buckets_[b]->alive;
    for (size_t slot = 0; slot < buckets_[b]->params.size(); ++slot) {
      buckets_[b]->params[slot].register_grad_ready_hook([this, alive, b, slot](const Tensor&) {
        if (alive.lock()) on_grad_ready(b, slot);
      });
    }
  }
  LOG(INFO) << "GradBucketer over " << dp.describe() << ": " << trained.size() << " parameters ("
            << total_bytes / (1024.0 * 1024.0) << " MiB) in " << buckets_.size() << " buckets of <= "
            << options_.bucket_bytes / (1024.0 * 1024.0) << " MiB, op " << reduce_op_name(options_.op)
            << (options_.wire_dtype ? std::string(", sent as ") + dtype_name(*options_.wire_dtype) : "")
            << (options_.overlap ? ", overlapped with backward" : ", all at finish()");
}

GradBucketer::~GradBucketer() {
  // MPI may still be writing into a bucket's buffer (a step abandoned between backward and finish()).
  for (auto& bucket : buckets_) {
    if (!bucket->launched()) continue;
    try {
      bucket->work->wait();
    } catch (const std::exception& e) {
      LOG(ERROR) << "GradBucketer destroyed with an all-reduce in flight that failed: " << e.what();
    }
  }
}

int GradBucketer::num_buckets() const { return static_cast<int>(buckets_.size()); }

void GradBucketer::on_grad_ready(size_t bucket_index, size_t slot) {
  if (!sync_) return;  // an accumulation micro-batch: the gradient stays local
  Bucket& bucket = *buckets_[bucket_index];
  CHECK(!bucket.ready[slot]) << "GradBucketer over " << dp_->describe() << ": the gradient of "
                             << bucket.params[slot].str() << " (bucket " << bucket_index
                             << ") became ready twice before finish(); run one synchronised backward per "
                                "step and set_sync(false) for the micro-batches before it";
  bucket.ready[slot] = true;
  ++bucket.num_ready;
  if (!options_.overlap || !bucket.complete()) return;
  // Launch in bucket order only, so every rank issues the same collectives in the same order: this bucket
  // waits for the ones before it, and completing the first unlaunched one releases those ready after it.
  for (auto& b : buckets_) {
    if (b->launched()) continue;
    if (!b->complete()) break;
    launch(*b);
  }
}

void GradBucketer::launch(Bucket& bucket) {
  CHECK(!bucket.launched()) << "GradBucketer: bucket launched twice in one step";
  Backend& be = backend_for(bucket.flat.device());
  for (size_t slot = 0; slot < bucket.params.size(); ++slot) {
    const Tensor grad = bucket.params[slot].grad();
    const Tensor view = bucket.slot_view(slot);
    if (grad.defined()) {
      CHECK(grad.shape() == bucket.params[slot].shape())
          << "GradBucketer: gradient " << grad.str() << " of parameter " << bucket.params[slot].str();
      be.copy(grad, view);
    } else {
      be.fill(view, 0.0);  // no gradient on this rank in this step: it contributes zeros
    }
  }
  bucket.work = dp_->all_reduce(bucket.flat, options_.op);
}

void GradBucketer::finish() {
  CHECK(sync_) << "GradBucketer::finish() over " << dp_->describe()
               << " with sync off: set_sync(true) before the last micro-batch's backward";
  for (auto& bucket : buckets_)
    if (!bucket->launched()) launch(*bucket);

  // NCCL: the current stream waits for each all-reduce's event (the host does not block; the group's watchdog
  // holds the deadline); MPI and a group of one: the host waits.
  const auto wait_start = std::chrono::steady_clock::now();
  for (auto& bucket : buckets_) bucket->work->wait_on_stream();
  last_wait_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();

  for (auto& bucket : buckets_) {
    Backend& be = backend_for(bucket->flat.device());
    for (size_t slot = 0; slot < bucket->params.size(); ++slot) {
      const Tensor& param = bucket->params[slot];
      const Tensor reduced = bucket->slot_view(slot);
      Tensor grad = param.grad();
      if (grad.defined()) {
        be.copy(reduced, grad);
        grad.bump_version();
      } else {
        grad = Tensor::empty(param.shape(), master_dtype(param.dtype()), param.device());
        be.copy(reduced, grad);
        param.set_grad(grad);
      }
    }
    bucket->work.reset();
    bucket->ready.assign(bucket->params.size(), false);
    bucket->num_ready = 0;
  }
}

}  // namespace px::parallel
