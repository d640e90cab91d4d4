// ProcessGroup's shared parts (naming, argument checks) and LocalProcessGroup, the world of one process
// whose collectives complete at once.
#include "parallel/comm/process_group.h"

#include <cstring>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/util/check.h"

namespace px::parallel {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
  }
  return "?";
}

double all_reduce_value(ProcessGroup& group, double value, ReduceOp op) {
  if (group.size() == 1) return value;
  const Tensor t = full({1}, value, DType::f64);
  group.all_reduce(t, op)->wait();
  return t.item();
}

ProcessGroup::ProcessGroup(std::string name, int rank, std::vector<int> world_ranks, GroupOptions options)
    : name_(std::move(name)), rank_(rank), world_ranks_(std::move(world_ranks)), options_(options) {
  CHECK(rank_ >= 0 && rank_ < size()) << "group '" << name_ << "': rank " << rank_ << " outside 0.." << size() - 1;
}

std::unique_ptr<ProcessGroup> ProcessGroup::split_with_control(int color, int key, const std::string& name,
                                                             ProcessGroup& control) {
  CHECK(control.size() <= size()) << "group " << describe() << ": split '" << name << "' beside control group "
                                  << control.describe() << ", which is larger";
  return split(color, key, name);
}

std::string ProcessGroup::describe() const {
  std::ostringstream os;
  os << "'" << name_ << "' (world ranks ";
  for (size_t i = 0; i < world_ranks_.size(); ++i) os << (i ? "," : "") << world_ranks_[i];
  os << ")";
  return os.str();
}

void ProcessGroup::check_tensor_arg(const char* collective, const Tensor& t) const {
  CHECK(t.defined()) << "group " << describe() << ": " << collective << " of an undefined tensor";
  CHECK(t.is_contiguous()) << "group " << describe() << ": " << collective << " needs a contiguous tensor, got "
                           << t.str() << " with strides " << shape_str(t.strides());
}

void ProcessGroup::check_reduce_args(const char* collective, const Tensor& t, ReduceOp op) const {
  check_tensor_arg(collective, t);
  CHECK(t.dtype() != DType::u8 && t.dtype() != DType::boolean)
      << "group " << describe() << ": " << collective << " cannot reduce " << t.str()
      << " (u8/bool only for all_gather and broadcast)";
  CHECK(op != ReduceOp::avg || is_floating(t.dtype()))
      << "group " << describe() << ": " << collective << " avg of an integer tensor " << t.str()
      << " (use sum and divide)";
}

void ProcessGroup::check_gather_args(const char* collective, const Tensor& part, const Tensor& whole) const {
  check_tensor_arg(collective, part);
  check_tensor_arg(collective, whole);
  CHECK(part.dtype() == whole.dtype() && part.device() == whole.device())
      << "group " << describe() << ": " << collective << " between " << part.str() << " and " << whole.str();
  bool shapes_ok = whole.numel() == part.numel() * size();
  if (part.dim() >= 1 && whole.dim() == part.dim()) {
    shapes_ok = shapes_ok && whole.size(0) == part.size(0) * size();
  } else {
    shapes_ok = shapes_ok && part.dim() == 0 && whole.dim() == 1;
  }
  CHECK(shapes_ok) << "group " << describe() << ": " << collective << " of size " << size() << " needs the whole "
                   << "tensor to be (size * n, ...) for a part (n, ...), got part " << shape_str(part.shape())
                   << " and whole " << shape_str(whole.shape());
}

namespace {

// The Work of a collective that completed when it was issued.
class CompletedWork final : public Work {
 public:
  void wait() override {}
  bool is_completed() override { return true; }
};

}  // namespace

LocalProcessGroup::LocalProcessGroup(std::string name, int world_rank)
    : ProcessGroup(std::move(name), 0, {world_rank}, GroupOptions{}) {}

std::shared_ptr<Work> LocalProcessGroup::all_reduce(const Tensor& t, ReduceOp op) {
  check_reduce_args("all_reduce", t, op);
  return std::make_shared<CompletedWork>();
}

std::shared_ptr<Work> LocalProcessGroup::all_gather(const Tensor& in, const Tensor& out) {
  check_gather_args("all_gather", in, out);
  if (in.raw_data() != out.raw_data()) {
    NoGradGuard no_grad;
    copy_(out, in.as_strided(out.shape(), out.strides(), in.offset()));
  }
  return std::make_shared<CompletedWork>();
}

std::shared_ptr<Work> LocalProcessGroup::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  check_reduce_args("reduce_scatter", in, op);
  check_gather_args("reduce_scatter", out, in);
  if (in.raw_data() != out.raw_data()) {
    NoGradGuard no_grad;
    copy_(out, in.as_strided(out.shape(), out.strides(), in.offset()));
  }
  return std::make_shared<CompletedWork>();
}

std::shared_ptr<Work> LocalProcessGroup::broadcast(const Tensor& t, int root) {
  check_tensor_arg("broadcast", t);
  CHECK(root == 0) << "group " << describe() << ": broadcast from root " << root << " in a group of 1";
  return std::make_shared<CompletedWork>();
}

std::shared_ptr<Work> LocalProcessGroup::barrier() { return std::make_shared<CompletedWork>(); }

std::unique_ptr<ProcessGroup> LocalProcessGroup::split(int color, int key, const std::string& name) {
  CHECK(color >= 0) << "group " << describe() << ": split with negative color " << color;
  auto group = std::make_unique<LocalProcessGroup>(name, world_ranks()[0]);
  group->set_timeout(options().timeout);
  return group;
}

}  // namespace px::parallel
