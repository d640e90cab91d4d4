// MpiProcessGroup: non-blocking MPI collectives progressed by the group's communication thread, which also
// answers arrival queries on a private control communicator; deadlines, arrival reports, bf16/f16 ops.
#include "parallel/comm/mpi_process_group.h"

#include <mpi.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <list>
#include <mutex>
#include <sstream>
#include <thread>
#include <type_traits>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/util/check.h"
#include "parallel/comm/world.h"

namespace px {

const char* mpi_error_string(int code) {
  thread_local char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) std::snprintf(text, sizeof(text), "unknown MPI error");
  return text;
}

}  // namespace px

namespace px::parallel {

using Clock = std::chrono::steady_clock;

namespace {

MPI_Comm as_comm(void* comm) { return static_cast<MPI_Comm>(comm); }

int comm_rank(void* comm) {
  int rank = -1;
  MPI_CHECK(MPI_Comm_rank(as_comm(comm), &rank));
  return rank;
}

// World rank of every member of `comm`, in group rank order.
std::vector<int> comm_world_ranks(void* comm) {
  MPI_Group group, world_group;
  int size = 0;
  MPI_CHECK(MPI_Comm_size(as_comm(comm), &size));
  MPI_CHECK(MPI_Comm_group(as_comm(comm), &group));
  MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world_group));
  std::vector<int> ranks(size), world_ranks(size);
  for (int r = 0; r < size; ++r) ranks[r] = r;
  MPI_CHECK(MPI_Group_translate_ranks(group, size, ranks.data(), world_group, world_ranks.data()));
  MPI_CHECK(MPI_Group_free(&group));
  MPI_CHECK(MPI_Group_free(&world_group));
  return world_ranks;
}

// bf16 / f16 reductions: elements stored as 16-bit patterns, combined in f32 and rounded back.
template <typename Half, float (*to_f32)(Half), Half (*from_f32)(float), bool is_max>
void half_op(void* in, void* inout, int* length, MPI_Datatype*) {
  const Half* a = static_cast<const Half*>(in);
  Half* b = static_cast<Half*>(inout);
  for (int i = 0; i < *length; ++i) {
    const float x = to_f32(a[i]), y = to_f32(b[i]);
    b[i] = from_f32(is_max ? std::max(x, y) : x + y);
  }
}

struct HalfOps {
  MPI_Op bf16_sum, bf16_max, f16_sum, f16_max;
};

// Created once, after MPI_Init; MPI_Finalize releases them.
const HalfOps& half_ops() {
  static const HalfOps ops = [] {
    HalfOps o;
    MPI_CHECK(MPI_Op_create(&half_op<bf16, from_bf16, to_bf16, false>, 1, &o.bf16_sum));
    MPI_CHECK(MPI_Op_create(&half_op<bf16, from_bf16, to_bf16, true>, 1, &o.bf16_max));
    MPI_CHECK(MPI_Op_create(&half_op<f16, from_f16, to_f16, false>, 1, &o.f16_sum));
    MPI_CHECK(MPI_Op_create(&half_op<f16, from_f16, to_f16, true>, 1, &o.f16_max));
    return o;
  }();
  return ops;
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::bf16:
    case DType::f16: return MPI_UINT16_T;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8:
    case DType::boolean: return MPI_UINT8_T;
  }
  __builtin_unreachable();
}

MPI_Op mpi_op(DType dtype, ReduceOp op) {
  const bool max = op == ReduceOp::max;  // avg is a sum divided afterwards
  if (dtype == DType::bf16) return max ? half_ops().bf16_max : half_ops().bf16_sum;
  if (dtype == DType::f16) return max ? half_ops().f16_max : half_ops().f16_sum;
  return max ? MPI_MAX : MPI_SUM;
}

int mpi_count(const ProcessGroup& group, const char* collective, int64_t numel) {
  CHECK(numel <= INT_MAX) << "group " << group.describe() << ": " << collective << " of " << numel
                          << " elements exceeds MPI's int count; split the tensor";
  return static_cast<int>(numel);
}

std::string seconds_str(std::chrono::milliseconds ms) {
  std::ostringstream os;
  os << ms.count() / 1000.0 << " s";
  return os.str();
}

bool overlaps(const Tensor& a, const Tensor& b) {
  const char* a0 = static_cast<const char*>(a.raw_data());
  const char* b0 = static_cast<const char*>(b.raw_data());
  const int64_t a_bytes = a.numel() * static_cast<int64_t>(dtype_size(a.dtype()));
  const int64_t b_bytes = b.numel() * static_cast<int64_t>(dtype_size(b.dtype()));
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

// A host tensor holding t's values (t itself when it is on the host already). t (...)
Tensor host_copy(const Tensor& t) {
  if (t.device().is_cpu()) return t;
  NoGradGuard no_grad;
  return to_device(t, cpu());
}

// The host buffer a collective writes into for `t`: t itself on the host, else an uninitialised host tensor
// that is copied back to t after completion. t (...)
Tensor host_output(const Tensor& t) {
  return t.device().is_cpu() ? t : Tensor::empty(t.shape(), t.dtype(), cpu());
}

constexpr int kQueryTag = 1;   // {query id, sequence number asked about}
constexpr int kAnswerTag = 2;  // {query id, collectives the answering rank has entered}

}  // namespace

// One collective in flight: posted by the caller, tested by the communication thread, finished (avg
// division, copies back to the device) by the caller's wait() / is_completed().
struct Collective {
  enum State : int { pending, done, failed };
  int64_t seq = 0;
  std::string description;  // "all_reduce #17 (f32, 1048576 elements)"
  Clock::time_point deadline;
  std::chrono::milliseconds timeout{0};
  MPI_Request request = MPI_REQUEST_NULL;
  std::atomic<int> state{pending};
  std::string error;  // set before state becomes failed

  // Caller side.
  std::vector<Tensor> inputs;  // kept alive until completion
  std::vector<std::pair<Tensor, Tensor>> outputs;  // (tensor the caller sees, host buffer MPI writes)
  int avg_divisor = 1;  // avg: the outputs hold sums to divide by the group size
  std::mutex finish_mutex;
  bool finished = false;
};

// The communication thread of one group and its two duplicate communicators (data, control).
class MpiProgressThread {
 public:
  MpiProgressThread(MPI_Comm comm, std::string group_description, std::vector<int> world_ranks)
      : description_(std::move(group_description)), world_ranks_(std::move(world_ranks)) {
    MPI_CHECK(MPI_Comm_dup(comm, &data_));
    MPI_CHECK(MPI_Comm_dup(comm, &control_));
    MPI_CHECK(MPI_Comm_set_errhandler(data_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_set_errhandler(control_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(data_, &rank_));
    post_control_receives();
    thread_ = std::thread([this] { run(); });
  }

  ~MpiProgressThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) {
      LOG(ERROR) << "an MPI process group outlived MPI_Finalize (destroy groups before the World)";
      return;
    }
    for (MPI_Request* r : {&query_request_, &answer_request_}) {
      MPI_Cancel(r);
      MPI_Wait(r, MPI_STATUS_IGNORE);
    }
    // Messages still unsent go to ranks that stopped listening: release their requests and leave their
    // 16-byte buffers to the process, since MPI may still read them.
    static auto* abandoned_sends = new std::list<Send>;
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      MPI_Test(&it->request, &done, MPI_STATUS_IGNORE);
      if (done) {
        it = sends_.erase(it);
      } else {
        MPI_Request_free(&it->request);
        ++it;
      }
    }
    abandoned_sends->splice(abandoned_sends->end(), sends_);
    MPI_Comm_free(&control_);
    if (!active_.empty()) {
      // A collective request cannot be cancelled or freed: keep its communicator (the job is failing anyway).
      LOG(WARNING) << active_.size() << " collective(s) still in flight when their group was destroyed";
      return;
    }
    MPI_Comm_free(&data_);
  }

  MPI_Comm data() const { return data_; }
  int64_t enter() { return entered_.fetch_add(1) + 1; }

  // Hands a posted collective to the thread.
  void track(const std::shared_ptr<Collective>& c) {
    {
      std::lock_guard<std::mutex> lock(progress_mutex_);
      active_.push_back(c);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    tracked_ = true;
  }

  // Waits until c is no longer pending or the deadline passes; false on the deadline. The waiting thread
  // tests the requests itself, as a blocking MPI call would: back to back for the first 100 ms (collectives
  // finish at MPI's latency and bandwidth), then every 50 us (a peer is late; leave the cores to it).
  bool wait_until(Collective& c, Clock::time_point deadline) {
    const auto spin_until = Clock::now() + std::chrono::milliseconds(100);
    while (c.state.load() == Collective::pending) {
      {
        std::lock_guard<std::mutex> lock(progress_mutex_);
        test_collectives();
      }
      if (c.state.load() != Collective::pending) break;
      const auto now = Clock::now();
      if (now >= deadline) return false;
      if (now < spin_until) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
    return true;
  }

  // Asks every other member how many collectives it has entered; waits up to `budget` for the answers.
  std::string arrival_report(int64_t seq, std::chrono::milliseconds budget) {
    std::lock_guard<std::mutex> one_report(report_mutex_);
    std::unique_lock<std::mutex> lock(mutex_);
    report_id_ = ++report_count_;
    report_answers_.assign(world_ranks_.size(), -1);
    report_answers_[rank_] = entered_.load();
    for (int r = 0; r < static_cast<int>(world_ranks_.size()); ++r) {
      if (r != rank_) outgoing_.push_back(Outgoing{r, kQueryTag, {report_id_, seq}});
    }
    wake_.notify_all();
    auto all_answered = [&] {
      return std::none_of(report_answers_.begin(), report_answers_.end(), [](int64_t a) { return a < 0; });
    };
    reported_.wait_for(lock, budget, all_answered);
    std::vector<int64_t> answers = report_answers_;
    report_id_ = 0;
    lock.unlock();

    std::ostringstream os;
    const char* separator = "";
    for (size_t r = 0; r < answers.size(); ++r) {
      if (answers[r] < 0) {
        os << separator << "rank " << world_ranks_[r] << " did not answer (dead or stalled)";
      } else if (answers[r] < seq) {
        os << separator << "rank " << world_ranks_[r] << " has not arrived (it is at #" << answers[r] << ")";
      } else {
        continue;
      }
      separator = "; ";
    }
    const std::string report = os.str();
    return report.empty() ? "every rank arrived" : report;
  }

 private:
  struct Outgoing {
    int dest, tag;
    std::array<int64_t, 2> message;
  };
  struct Send {
    std::array<int64_t, 2> message;
    MPI_Request request = MPI_REQUEST_NULL;
  };

  void post_control_receives() {
    MPI_CHECK(MPI_Irecv(query_.data(), 2, MPI_INT64_T, MPI_ANY_SOURCE, kQueryTag, control_, &query_request_));
    MPI_CHECK(MPI_Irecv(answer_.data(), 2, MPI_INT64_T, MPI_ANY_SOURCE, kAnswerTag, control_, &answer_request_));
  }

  void send(int dest, int tag, const std::array<int64_t, 2>& message) {
    sends_.push_back(Send{message});
    Send& s = sends_.back();
    if (MPI_Isend(s.message.data(), 2, MPI_INT64_T, dest, tag, control_, &s.request) != MPI_SUCCESS)
      sends_.pop_back();  // the peer is unreachable: it will show as not answering
  }

  // Tests the tracked collectives (progress_mutex_ held); true when one ended.
  bool test_collectives() {
    bool any = false;
    for (auto it = active_.begin(); it != active_.end();) {
      Collective& c = **it;
      int done = 0;
      const int rc = MPI_Test(&c.request, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) {
        c.error = std::string("failed: MPI error: ") + mpi_error_string(rc);
        c.state.store(Collective::failed);
      } else if (done) {
        c.state.store(Collective::done);
      } else {
        ++it;
        continue;
      }
      it = active_.erase(it);
      any = true;
    }
    return any;
  }

  // Answers queries and records answers; true when a message arrived.
  bool serve_control() {
    bool any = false;
    int arrived = 0;
    MPI_Status status;
    if (MPI_Test(&query_request_, &arrived, &status) == MPI_SUCCESS && arrived) {
      const int64_t entered = entered_.load();
      // On this side too: the log of a late rank says who waited for it.
      LOG(WARNING) << "group " << description_ << ": rank " << world_ranks_[status.MPI_SOURCE]
                   << " is waiting on collective #" << query_[1] << "; this rank is at #" << entered;
      send(status.MPI_SOURCE, kAnswerTag, {query_[0], entered});
      MPI_Irecv(query_.data(), 2, MPI_INT64_T, MPI_ANY_SOURCE, kQueryTag, control_, &query_request_);
      any = true;
    }
    if (MPI_Test(&answer_request_, &arrived, &status) == MPI_SUCCESS && arrived) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (report_id_ != 0 && answer_[0] == report_id_) report_answers_[status.MPI_SOURCE] = answer_[1];
      }
      reported_.notify_all();
      MPI_Irecv(answer_.data(), 2, MPI_INT64_T, MPI_ANY_SOURCE, kAnswerTag, control_, &answer_request_);
      any = true;
    }
    for (auto it = sends_.begin(); it != sends_.end();) {
      int done = 0;
      if (MPI_Test(&it->request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done) {
        it = sends_.erase(it);
      } else {
        ++it;
      }
    }
    return any;
  }

  // Tests collectives nobody waits on with a growing pause (20 us .. 500 us; libnbc advances a collective
  // only inside MPI calls), and checks the control messages every 1 ms when no collective is in flight, so an
  // idle group costs no core. An arrival report to send wakes it at once; a new collective is seen at the
  // next check (waking the thread on every issue costs a context switch, 10+ us per small collective).
  void run() {
    auto backoff = std::chrono::microseconds(20);
    std::vector<Outgoing> outgoing;
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_) return;
        if (tracked_) backoff = std::chrono::microseconds(20);
        tracked_ = false;
        outgoing.swap(outgoing_);
      }
      for (const Outgoing& o : outgoing) send(o.dest, o.tag, o.message);
      outgoing.clear();
      bool in_flight = true;
      {
        // A waiting caller holding the lock is testing the requests itself.
        std::unique_lock<std::mutex> lock(progress_mutex_, std::try_to_lock);
        if (lock.owns_lock()) {
          if (test_collectives()) backoff = std::chrono::microseconds(20);
          in_flight = !active_.empty();
        }
      }
      if (serve_control()) backoff = std::chrono::microseconds(20);
      std::chrono::microseconds pause(1000);
      if (in_flight) {
        pause = backoff;
        backoff = std::min(backoff * 2, std::chrono::microseconds(500));
      }
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, pause, [&] { return stop_ || !outgoing_.empty(); });
    }
  }

  const std::string description_;  // "'dp' (world ranks 0,2)"
  const std::vector<int> world_ranks_;
  MPI_Comm data_ = MPI_COMM_NULL, control_ = MPI_COMM_NULL;
  int rank_ = 0;
  std::atomic<int64_t> entered_{0};

  std::mutex mutex_;  // guards the fields below
  std::condition_variable wake_, reported_;
  bool stop_ = false;
  bool tracked_ = false;  // a collective was tracked since the thread last looked
  std::vector<Outgoing> outgoing_;
  int64_t report_id_ = 0, report_count_ = 0;
  std::vector<int64_t> report_answers_;  // by group rank; -1 until answered
  std::mutex report_mutex_;  // one arrival report at a time

  std::mutex progress_mutex_;  // guards active_: the thread and waiting callers test its requests
  std::list<std::shared_ptr<Collective>> active_;

  // Communication thread only.
  std::array<int64_t, 2> query_{}, answer_{};
  MPI_Request query_request_ = MPI_REQUEST_NULL, answer_request_ = MPI_REQUEST_NULL;
  std::list<Send> sends_;
  std::thread thread_;
};

namespace {

// The Work of an MpiProcessGroup collective; it must not outlive its group.
class MpiWork final : public Work {
 public:
  MpiWork(std::shared_ptr<Collective> c, MpiProcessGroup& group, MpiProgressThread& progress)
      : c_(std::move(c)), group_(group), progress_(progress) {}

  void wait() override {
    if (!progress_.wait_until(*c_, c_->deadline)) time_out();
    finish();
  }

  bool is_completed() override {
    if (c_->state.load() == Collective::pending) {
      if (Clock::now() < c_->deadline) return false;
      time_out();
    }
    finish();
    return true;
  }

 private:
  // Past the deadline: an arrival report, then a CommError unless the collective ended meanwhile.
  void time_out() {
    const std::string report = group_.arrival_report(c_->seq);
    if (c_->state.load() != Collective::pending) return;
    note_comm_error();
    throw CommError("group " + group_.describe() + ": " + c_->description + " did not complete within " +
                    seconds_str(c_->timeout) + ": " + report);
  }

  void finish() {
    std::lock_guard<std::mutex> lock(c_->finish_mutex);
    if (c_->state.load() == Collective::failed) {
      note_comm_error();
      throw CommError("group " + group_.describe() + ": " + c_->description + " " + c_->error);
    }
    if (c_->finished) return;
    c_->finished = true;
    NoGradGuard no_grad;
    for (auto& [tensor, host] : c_->outputs) {
      if (c_->avg_divisor != 1) divide(host, c_->avg_divisor);
      if (tensor.device().is_cpu()) {
        tensor.bump_version();
      } else {
        copy_(tensor, host);
      }
    }
    c_->inputs.clear();
    c_->outputs.clear();
  }

  static void divide(const Tensor& host, int divisor) {
    dispatch_dtype(host.dtype(), [&](auto zero) {
      using T = decltype(zero);
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
        T* p = host.data<T>();
        for (int64_t i = 0; i < host.numel(); ++i) p[i] /= static_cast<T>(divisor);
      } else if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
        T* p = host.data<T>();
        for (int64_t i = 0; i < host.numel(); ++i)
          p[i] = from_double<T>(static_cast<float>(to_double(p[i])) / static_cast<float>(divisor));
      } else {
        LOG(FATAL) << "avg of " << host.str() << " (integer dtypes are refused at issue)";
      }
    });
  }

  std::shared_ptr<Collective> c_;
  MpiProcessGroup& group_;
  MpiProgressThread& progress_;
};

}  // namespace

MpiProcessGroup::MpiProcessGroup(std::string name, void* comm, GroupOptions options)
    : ProcessGroup(std::move(name), comm_rank(comm), comm_world_ranks(comm), options),
      progress_(std::make_unique<MpiProgressThread>(as_comm(comm), describe(), world_ranks())) {}

MpiProcessGroup::~MpiProcessGroup() = default;

void* MpiProcessGroup::comm() const { return progress_->data(); }

int64_t MpiProcessGroup::enter_external(const std::string& op_description) {
  const int64_t seq = progress_->enter();
  VLOG(2) << "group " << describe() << ": " << op_description << " is #" << seq;
  return seq;
}

std::string MpiProcessGroup::arrival_report(int64_t seq) {
  const auto budget = std::min<std::chrono::milliseconds>(std::chrono::seconds(5), options().timeout / 2);
  return progress_->arrival_report(seq, budget);
}

namespace {

// Counts the collective, posts it with `post(request)` and hands it to the thread.
template <typename Post>
std::shared_ptr<Work> issue(MpiProcessGroup& group, MpiProgressThread& progress, std::shared_ptr<Collective> c,
                            const std::string& op_name, const std::string& detail, Post post) {
  c->seq = progress.enter();
  c->description = op_name + " #" + std::to_string(c->seq) + detail;
  c->timeout = group.options().timeout;
  c->deadline = Clock::now() + c->timeout;
  const int rc = post(&c->request);
  if (rc != MPI_SUCCESS) {
    note_comm_error();
    throw CommError("group " + group.describe() + ": " + c->description + " failed: MPI error: " +
                    mpi_error_string(rc));
  }
  progress.track(c);
  return std::make_shared<MpiWork>(std::move(c), group, progress);
}

std::string detail_str(DType dtype, int64_t elements, const char* unit = "elements") {
  return std::string(" (") + dtype_name(dtype) + ", " + std::to_string(elements) + " " + unit + ")";
}

}  // namespace

std::shared_ptr<Work> MpiProcessGroup::all_reduce(const Tensor& t, ReduceOp op) {
  check_reduce_args("all_reduce", t, op);
  const int count = mpi_count(*this, "all_reduce", t.numel());
  auto c = std::make_shared<Collective>();
  Tensor buffer = host_copy(t);
  c->outputs.emplace_back(t, buffer);
  if (op == ReduceOp::avg) c->avg_divisor = size();
  return issue(*this, *progress_, c, "all_reduce", detail_str(t.dtype(), t.numel()), [&](MPI_Request* r) {
    return MPI_Iallreduce(MPI_IN_PLACE, buffer.raw_data(), count, mpi_type(t.dtype()), mpi_op(t.dtype(), op),
                          progress_->data(), r);
  });
}

std::shared_ptr<Work> MpiProcessGroup::all_gather(const Tensor& in, const Tensor& out) {
  check_gather_args("all_gather", in, out);
  const int count = mpi_count(*this, "all_gather", in.numel());
  const int64_t part_bytes = in.numel() * static_cast<int64_t>(dtype_size(in.dtype()));
  const bool in_place = in.device().is_cpu() &&
                        in.raw_data() == static_cast<char*>(out.raw_data()) + rank() * part_bytes;
  CHECK(in_place || !overlaps(in, out)) << "group " << describe() << ": all_gather input " << in.str()
                                        << " overlaps the output other than as this rank's slice";
  auto c = std::make_shared<Collective>();
  Tensor send = host_copy(in), receive = host_output(out);
  c->inputs.push_back(send);
  c->outputs.emplace_back(out, receive);
  const MPI_Datatype type = mpi_type(in.dtype());
  return issue(*this, *progress_, c, "all_gather", detail_str(in.dtype(), in.numel(), "elements per rank"),
               [&](MPI_Request* r) {
                 return MPI_Iallgather(in_place ? MPI_IN_PLACE : send.raw_data(), count, type,
                                       receive.raw_data(), count, type, progress_->data(), r);
               });
}

std::shared_ptr<Work> MpiProcessGroup::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  check_reduce_args("reduce_scatter", in, op);
  check_gather_args("reduce_scatter", out, in);
  CHECK(!overlaps(in, out)) << "group " << describe() << ": reduce_scatter output " << out.str()
                            << " overlaps its input";
  const int count = mpi_count(*this, "reduce_scatter", out.numel());
  auto c = std::make_shared<Collective>();
  Tensor send = host_copy(in), receive = host_output(out);
  c->inputs.push_back(send);
  c->outputs.emplace_back(out, receive);
  if (op == ReduceOp::avg) c->avg_divisor = size();
  return issue(*this, *progress_, c, "reduce_scatter", detail_str(in.dtype(), out.numel(), "elements per rank"),
               [&](MPI_Request* r) {
                 return MPI_Ireduce_scatter_block(send.raw_data(), receive.raw_data(), count, mpi_type(in.dtype()),
                                                  mpi_op(in.dtype(), op), progress_->data(), r);
               });
}

std::shared_ptr<Work> MpiProcessGroup::broadcast(const Tensor& t, int root) {
  check_tensor_arg("broadcast", t);
  CHECK(root >= 0 && root < size()) << "group " << describe() << ": broadcast from root " << root
                                    << " outside 0.." << size() - 1;
  const int count = mpi_count(*this, "broadcast", t.numel());
  auto c = std::make_shared<Collective>();
  Tensor buffer = host_copy(t);
  c->outputs.emplace_back(t, buffer);
  return issue(*this, *progress_, c, "broadcast", detail_str(t.dtype(), t.numel()), [&](MPI_Request* r) {
    return MPI_Ibcast(buffer.raw_data(), count, mpi_type(t.dtype()), root, progress_->data(), r);
  });
}

std::shared_ptr<Work> MpiProcessGroup::barrier() {
  return issue(*this, *progress_, std::make_shared<Collective>(), "barrier", "",
               [&](MPI_Request* r) { return MPI_Ibarrier(progress_->data(), r); });
}

std::unique_ptr<ProcessGroup> MpiProcessGroup::split(int color, int key, const std::string& name) {
  CHECK(color >= 0) << "group " << describe() << ": split into '" << name << "' with negative color " << color;
  // Every member must arrive at the split: a timed all_gather first, so a missing one is a CommError with an
  // arrival report instead of a hang in the blocking MPI_Comm_split.
  Tensor mine = from_vector(std::vector<int64_t>{color, key}, {2}, DType::i64);
  Tensor all = Tensor::empty({2 * static_cast<int64_t>(size())}, DType::i64);
  all_gather(mine, all)->wait();
  MPI_Comm sub = MPI_COMM_NULL;
  const int rc = MPI_Comm_split(progress_->data(), color, key, &sub);
  if (rc != MPI_SUCCESS) {
    note_comm_error();
    throw CommError("group " + describe() + ": split into '" + name + "' failed: MPI error: " + mpi_error_string(rc));
  }
  auto group = std::make_unique<MpiProcessGroup>(name, sub, options());
  MPI_CHECK(MPI_Comm_free(&sub));
  const int64_t* colors_keys = all.data<int64_t>();
  int members = 0;
  for (int r = 0; r < size(); ++r) members += colors_keys[2 * r] == color ? 1 : 0;
  CHECK_EQ(group->size(), members) << "group " << describe() << ": split into '" << name << "' by color " << color;
  return group;
}

}  // namespace px::parallel
