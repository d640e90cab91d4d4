// NcclProcessGroup: the non-blocking NCCL communicator (creation, split, finalisation, abort), collectives
// enqueued on the group's stream behind the caller's stream, and the Work that polls them to a deadline.
#include "parallel/comm/nccl_process_group.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/cuda/caching_allocator.h"
#include "core/backend/cuda/cuda_backend.h"
#include "core/ops/factory.h"
#include "core/util/check.h"
#include "parallel/comm/mpi_process_group.h"
#include "parallel/comm/world.h"

namespace px::parallel {

using Clock = std::chrono::steady_clock;

namespace {

// Between two polls of an event or the communicator's state. Short against a collective's usual duration
// (a gradient bucket takes milliseconds) and long enough not to spin a core.
constexpr std::chrono::microseconds kPollInterval{20};
// Between two rounds of the watchdog over the collectives nobody waits for on the host (wait_on_stream): a
// deadline is minutes, so a missed one is found within this much of it.
constexpr std::chrono::milliseconds kWatchInterval{100};

ncclDataType_t nccl_dtype(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8:
    case DType::boolean: return ncclUint8;  // one byte, moved as is (gather and broadcast only)
  }
  LOG(FATAL) << "NCCL: unhandled dtype " << static_cast<int>(t);
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
  }
  LOG(FATAL) << "NCCL: unhandled reduce op " << static_cast<int>(op);
}

std::string seconds(std::chrono::milliseconds ms) {
  std::ostringstream os;
  os << static_cast<double>(ms.count()) / 1000.0 << " s";
  return os.str();
}

// "ncclRemoteError: <NCCL's last message>" for a failed call on `comm`.
std::string nccl_failure(ncclComm_t comm, ncclResult_t result) {
  std::string text = ncclGetErrorString(result);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0') text += std::string(": ") + last;
  return text;
}

// Polls `comm` until its pending non-blocking operation (creation, split, an enqueue, finalisation) is over or
// `deadline` passes: ncclSuccess, the error it ended with, or ncclInProgress at the deadline.
ncclResult_t wait_until_ready(ncclComm_t comm, Clock::time_point deadline) {
  ncclResult_t state = ncclInProgress;
  while (true) {
    NCCL_CHECK(ncclCommGetAsyncError(comm, &state));
    if (state != ncclInProgress || Clock::now() >= deadline) return state;
    std::this_thread::sleep_for(kPollInterval);
  }
}

// Aborts `comm` (the device's must be current): its kernels stop and its resources are freed. An abort is the
// way out of a failure, so a failing abort is logged, not fatal.
void abort_comm(ncclComm_t comm, const std::string& name) {
  const ncclResult_t result = ncclCommAbort(comm);
  LOG_IF(ERROR, result != ncclSuccess && result != ncclInProgress)
      << "NCCL communicator '" << name << "': ncclCommAbort returned " << ncclGetErrorString(result);
}

// The runtime library's version, "2.28.9".
std::string nccl_version() {
  int code = 0;
  NCCL_CHECK(ncclGetVersion(&code));
  std::ostringstream os;
  os << code / 10000 << "." << code % 10000 / 100 << "." << code % 100;
  return os.str();
}

// "(f32, 1001 elements, sum)": a collective's operands for messages. t (...)
std::string operands(const Tensor& t, const std::string& detail) {
  std::ostringstream os;
  os << "(" << dtype_name(t.dtype()) << ", " << t.numel() << " elements" << (detail.empty() ? "" : ", " + detail)
     << ")";
  return os.str();
}

}  // namespace

// The communicator and what its collectives share; held by the group and by every Work in flight, so the
// communicator is finalised only once the last of them is gone.
struct NcclCommState {
  NcclCommState(std::string comm_name, Device device, std::chrono::milliseconds finalize_timeout);
  ~NcclCommState();
  NcclCommState(const NcclCommState&) = delete;
  NcclCommState& operator=(const NcclCommState&) = delete;

  // Aborts the communicator (once); `cause` is repeated by every later collective's error. Needs mu.
  void abort_locked(const std::string& cause);
  // Throws CommError when the communicator was aborted. Needs mu.
  void throw_if_aborted_locked(const std::string& group, const std::string& what) const;
  // Hands a collective whose completion the host does not wait for (wait_on_stream) to the watchdog thread
  // (started on first use), which polls it until it completes or fails: past its deadline it aborts the
  // communicator and logs the CommError, which the group's next call throws (check_health, issue).
  void watch(std::shared_ptr<Work> work);
  // Stops the watchdog; what it still watches is waited for here (to its deadline). Before the group goes.
  void stop_watchdog();

  const std::string comm_name;  // NCCL's name for the communicator (its logs); outlives comm
  const Device device;
  const std::chrono::milliseconds finalize_timeout;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;        // the communication stream, non-blocking w.r.t. the legacy stream
  cudaEvent_t caller_ready = nullptr;   // recorded on the caller's stream at each issue; `stream` waits on it
  std::mutex mu;                        // issue order on `stream`, state queries, abort
  std::string abort_cause;              // non-empty once aborted

 private:
  void watch_loop();

  std::mutex watch_mu;                          // the three below
  std::condition_variable watch_cv;             // a new work, or stopping
  std::vector<std::shared_ptr<Work>> watched;   // issue order; each holds this state (a cycle until it is done)
  bool watch_stopping = false;
  std::thread watchdog;
};

NcclCommState::NcclCommState(std::string name, Device dev, std::chrono::milliseconds timeout)
    : comm_name(std::move(name)), device(dev), finalize_timeout(timeout) {
  CudaDeviceGuard guard(device);
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&caller_ready, cudaEventDisableTiming));
}

NcclCommState::~NcclCommState() {
  CudaDeviceGuard guard(device);
  if (comm != nullptr) {
    // Finalize flushes what is still queued; a peer that is gone can stall it, hence the deadline.
    ncclResult_t result = ncclCommFinalize(comm);
    if (result == ncclSuccess || result == ncclInProgress) {
      result = wait_until_ready(comm, Clock::now() + finalize_timeout);
    }
    if (result == ncclSuccess) {
      NCCL_CHECK(ncclCommDestroy(comm));
    } else {
      LOG(ERROR) << "NCCL communicator '" << comm_name << "': finalisation "
                 << (result == ncclInProgress ? "did not complete in " + seconds(finalize_timeout)
                                              : "failed: " + nccl_failure(comm, result))
                 << "; aborting it";
      abort_comm(comm, comm_name);
    }
  }
  CUDA_CHECK(cudaEventDestroy(caller_ready));
  CUDA_CHECK(cudaStreamDestroy(stream));
}

void NcclCommState::watch(std::shared_ptr<Work> work) {
  std::lock_guard<std::mutex> lock(watch_mu);
  CHECK(!watch_stopping) << "NCCL communicator '" << comm_name << "': a collective handed to a stopped watchdog";
  watched.push_back(std::move(work));
  if (!watchdog.joinable()) watchdog = std::thread([this] { watch_loop(); });
  watch_cv.notify_one();
}

void NcclCommState::watch_loop() {
  CudaDeviceGuard guard(device);
  std::unique_lock<std::mutex> lock(watch_mu);
  while (!watch_stopping) {
    if (watched.empty()) {
      watch_cv.wait(lock, [this] { return watch_stopping || !watched.empty(); });
      continue;
    }
    std::vector<std::shared_ptr<Work>> round;
    round.swap(watched);
    lock.unlock();
    std::vector<std::shared_ptr<Work>> pending;
    for (std::shared_ptr<Work>& work : round) {
      try {
        if (!work->is_completed()) pending.push_back(std::move(work));
      } catch (const CommError& e) {
        // fail_collective logged it and aborted the communicator: every other collective fails the same way.
        LOG(ERROR) << "NCCL watchdog of '" << comm_name << "': " << e.what();
        pending.clear();
        break;
      }
    }
    round.clear();  // the completed works' events and tensors go here, outside watch_mu
    lock.lock();
    watched.insert(watched.begin(), std::make_move_iterator(pending.begin()), std::make_move_iterator(pending.end()));
    if (!watched.empty()) watch_cv.wait_for(lock, kWatchInterval, [this] { return watch_stopping; });
  }
}

void NcclCommState::stop_watchdog() {
  std::vector<std::shared_ptr<Work>> left;
  {
    std::lock_guard<std::mutex> lock(watch_mu);
    watch_stopping = true;
    watch_cv.notify_one();
  }
  if (watchdog.joinable()) watchdog.join();
  {
    std::lock_guard<std::mutex> lock(watch_mu);
    left.swap(watched);
  }
  for (const std::shared_ptr<Work>& work : left) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      LOG(ERROR) << "NCCL communicator '" << comm_name << "' closed with a collective that failed: " << e.what();
    }
  }
}

void NcclCommState::abort_locked(const std::string& cause) {
  if (!abort_cause.empty()) return;
  abort_cause = cause;
  if (comm == nullptr) return;
  CudaDeviceGuard guard(device);
  abort_comm(comm, comm_name);
  comm = nullptr;
}

void NcclCommState::throw_if_aborted_locked(const std::string& group, const std::string& what) const {
  if (abort_cause.empty()) return;
  throw CommError("group " + group + ": NCCL " + what + " refused: the communicator was aborted after an " +
                  "earlier failure: " + abort_cause);
}

namespace {

// Who to name in errors: the group, the collective, and the control group that can say who did not arrive.
struct CollectiveContext {
  std::string group;             // ProcessGroup::describe()
  std::string what;              // "all_reduce #17 (f32, 1001 elements, sum)"
  int64_t seq = 0;
  MpiProcessGroup* arrivals = nullptr;  // nullptr: no arrival report (a control group without MPI)
};

// Aborts the communicator and throws CommError "group ...: NCCL <what> <problem>: <arrival report>". Takes
// state.mu itself: the arrival report talks to the other ranks and must not hold it.
[[noreturn]] void fail_collective(NcclCommState& state, const CollectiveContext& ctx, const std::string& problem) {
  std::string message = "group " + ctx.group + ": NCCL " + ctx.what + " " + problem;
  if (ctx.arrivals != nullptr) message += ": " + ctx.arrivals->arrival_report(ctx.seq);
  {
    std::lock_guard<std::mutex> lock(state.mu);
    state.abort_locked(message);
  }
  LOG(ERROR) << message;
  note_comm_error();
  throw CommError(message);
}

// The handle of one enqueued collective: `done` is recorded on the communication stream right after it.
class NcclWork final : public Work, public std::enable_shared_from_this<NcclWork> {
 public:
  NcclWork(std::shared_ptr<NcclCommState> state, CollectiveContext ctx, Clock::time_point deadline,
           std::chrono::milliseconds timeout, std::vector<Tensor> tensors, cudaEvent_t done)
      : state_(std::move(state)), ctx_(std::move(ctx)), deadline_(deadline), timeout_(timeout),
        tensors_(std::move(tensors)), done_(done) {}
  ~NcclWork() override { CUDA_CHECK(cudaEventDestroy(done_)); }

  // Polls on the host (so the deadline holds) until the collective has run on the GPU: work queued after
  // this returns, on any stream, sees the result without a stream dependency.
  void wait() override {
    std::lock_guard<std::mutex> lock(mu_);
    while (!poll_locked()) std::this_thread::sleep_for(kPollInterval);
  }

  bool is_completed() override {
    std::lock_guard<std::mutex> lock(mu_);
    return poll_locked();
  }

  // The caller's current stream waits (on the GPU) for the completion event; the watchdog polls the deadline.
  void wait_on_stream() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (poll_locked()) return;
    }
    CudaDeviceGuard guard(state_->device);
    CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(current_cuda_stream()), done_, 0));
    state_->watch(shared_from_this());
  }

 private:
  // True once the collective has completed; throws CommError on an NCCL error, past the deadline, or when
  // the communicator was aborted by another collective's failure.
  bool poll_locked() {
    if (complete_) return true;
    std::string problem;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->throw_if_aborted_locked(ctx_.group, ctx_.what);
      const cudaError_t query = cudaEventQuery(done_);
      if (query == cudaSuccess) {
        complete_ = true;
        tensors_.clear();
        return true;
      }
      if (query != cudaErrorNotReady) CUDA_CHECK(query);
      ncclResult_t async = ncclSuccess;
      NCCL_CHECK(ncclCommGetAsyncError(state_->comm, &async));
      if (async != ncclSuccess && async != ncclInProgress) {
        problem = "failed: " + nccl_failure(state_->comm, async);
      } else if (Clock::now() >= deadline_) {
        problem = "did not complete in " + seconds(timeout_);
      }
    }
    if (problem.empty()) return false;
    fail_collective(*state_, ctx_, problem);
  }

  std::shared_ptr<NcclCommState> state_;
  CollectiveContext ctx_;
  Clock::time_point deadline_;
  std::chrono::milliseconds timeout_;
  std::vector<Tensor> tensors_;  // the collective's operands, held until it completes
  cudaEvent_t done_;
  std::mutex mu_;
  bool complete_ = false;
};

// Enqueues one collective on state's stream behind the caller's current stream and returns its Work.
// `enqueue` makes the NCCL call; `tensors` are its operands.
std::shared_ptr<Work> issue(const std::shared_ptr<NcclCommState>& state, CollectiveContext ctx,
                            std::chrono::milliseconds timeout, std::vector<Tensor> tensors,
                            const std::function<ncclResult_t(ncclComm_t, cudaStream_t)>& enqueue) {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::string problem;
  cudaEvent_t done = nullptr;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->throw_if_aborted_locked(ctx.group, ctx.what);
    CudaDeviceGuard guard(state->device);
    CUDA_CHECK(cudaEventRecord(state->caller_ready, static_cast<cudaStream_t>(current_cuda_stream())));
    CUDA_CHECK(cudaStreamWaitEvent(state->stream, state->caller_ready, 0));
    // A non-blocking communicator may return before the work is on the stream (ncclInProgress, e.g. while
    // connecting to peers): the completion event must be recorded only after it is.
    ncclResult_t result = enqueue(state->comm, state->stream);
    if (result == ncclInProgress) result = wait_until_ready(state->comm, deadline);
    if (result == ncclInProgress) {
      problem = "could not be enqueued in " + seconds(timeout);
    } else if (result != ncclSuccess) {
      problem = "failed: " + nccl_failure(state->comm, result);
    } else {
      CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
      CUDA_CHECK(cudaEventRecord(done, state->stream));
      // Blocks freed before the collective is done must not be reused by the caller's stream meanwhile.
      for (const Tensor& t : tensors) {
        if (t.storage()->bytes() > 0) cuda_caching_allocator().record_stream(t.storage()->data(), state->stream);
      }
    }
  }
  if (!problem.empty()) fail_collective(*state, ctx, problem);
  return std::make_shared<NcclWork>(state, std::move(ctx), deadline, timeout, std::move(tensors), done);
}

}  // namespace

NcclProcessGroup::NcclProcessGroup(std::string name, ProcessGroup& control, Device device, GroupOptions options)
    : ProcessGroup(std::move(name), control.rank(), control.world_ranks(), options),
      control_(&control),
      mpi_control_(dynamic_cast<MpiProcessGroup*>(&control)),
      device_(device) {
  CHECK(device.type == DeviceType::cuda) << "NCCL group " << describe() << " needs a CUDA device, got "
                                         << device.str();
  CHECK(cuda_available()) << "NCCL group " << describe() << ": no usable GPU for " << device.str();

  // Rank 0 makes the id; everyone gets it over the control group.
  ncclUniqueId id;
  Tensor id_bytes = Tensor::empty({static_cast<int64_t>(sizeof(id))}, DType::u8);  // (128) on the host
  if (rank() == 0) {
    NCCL_CHECK(ncclGetUniqueId(&id));
    std::memcpy(id_bytes.raw_data(), &id, sizeof(id));
  }
  control.broadcast(id_bytes, 0)->wait();
  std::memcpy(&id, id_bytes.raw_data(), sizeof(id));

  state_ = std::make_shared<NcclCommState>(this->name(), device, options.timeout);
  const CollectiveContext ctx{describe(), "communicator setup on " + device.str(),
                              next_sequence("nccl communicator setup"), mpi_control_};
  const Clock::time_point deadline = Clock::now() + options.timeout;
  std::string problem;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    CudaDeviceGuard guard(device);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    config.commName = state_->comm_name.c_str();
    ncclResult_t result = ncclCommInitRankConfig(&state_->comm, size(), id, rank(), &config);
    if (result == ncclSuccess || result == ncclInProgress) result = wait_until_ready(state_->comm, deadline);
    if (result == ncclInProgress) problem = "did not complete in " + seconds(options.timeout);
    else if (result != ncclSuccess) problem = "failed: " + nccl_failure(state_->comm, result);
  }
  if (!problem.empty()) fail_collective(*state_, ctx, problem);

  CudaDeviceGuard guard(device);  // the allocator takes memory on the current device
  barrier_buffer_ = zeros({1}, DType::f32, device);
  LOG(INFO) << "NCCL " << nccl_version() << ": group " << describe() << " on " << device.str() << " (rank "
            << rank() << " of " << size() << ")";
}

NcclProcessGroup::NcclProcessGroup(std::string name, std::unique_ptr<ProcessGroup> owned_control,
                                   ProcessGroup& control, Device device, GroupOptions options,
                                   std::shared_ptr<NcclCommState> state)
    : ProcessGroup(std::move(name), control.rank(), control.world_ranks(), options),
      owned_control_(std::move(owned_control)),
      control_(&control),
      mpi_control_(dynamic_cast<MpiProcessGroup*>(control_)),
      device_(device),
      state_(std::move(state)) {
  CudaDeviceGuard guard(device);
  barrier_buffer_ = zeros({1}, DType::f32, device);
}

NcclProcessGroup::~NcclProcessGroup() {
  // The watched collectives hold the state: the watchdog lets go of them (waiting for each to its deadline).
  if (state_ != nullptr) state_->stop_watchdog();
}

void NcclProcessGroup::check_health() {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->abort_cause.empty()) return;
  throw CommError("group " + describe() + ": the NCCL communicator was aborted after a failure: " +
                  state_->abort_cause);
}

void NcclProcessGroup::check_device(const char* collective, const Tensor& t) const {
  CHECK(t.defined() && t.device() == device_) << "NCCL group " << describe() << ": " << collective
                                              << " needs tensors on " << device_.str() << ", got "
                                              << (t.defined() ? t.str() : std::string("an undefined tensor"));
}

int64_t NcclProcessGroup::next_sequence(const std::string& description) {
  return mpi_control_ != nullptr ? mpi_control_->enter_external(description) : ++local_sequence_;
}

std::shared_ptr<Work> NcclProcessGroup::all_reduce(const Tensor& t, ReduceOp op) {
  check_reduce_args("all_reduce", t, op);
  check_device("all_reduce", t);
  const std::string what = operands(t, reduce_op_name(op));
  const int64_t seq = next_sequence("nccl all_reduce " + what);
  CollectiveContext ctx{describe(), "all_reduce #" + std::to_string(seq) + " " + what, seq, mpi_control_};
  return issue(state_, std::move(ctx), options().timeout, {t}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_dtype(t.dtype()),
                         nccl_op(op), comm, stream);
  });
}

std::shared_ptr<Work> NcclProcessGroup::all_gather(const Tensor& in, const Tensor& out) {
  check_gather_args("all_gather", in, out);
  check_device("all_gather", in);
  const std::string what = operands(in, "");
  const int64_t seq = next_sequence("nccl all_gather " + what);
  CollectiveContext ctx{describe(), "all_gather #" + std::to_string(seq) + " " + what, seq, mpi_control_};
  return issue(state_, std::move(ctx), options().timeout, {in, out}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllGather(in.raw_data(), out.raw_data(), static_cast<size_t>(in.numel()), nccl_dtype(in.dtype()),
                         comm, stream);
  });
}

std::shared_ptr<Work> NcclProcessGroup::reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) {
  check_reduce_args("reduce_scatter", in, op);
  check_gather_args("reduce_scatter", out, in);
  check_device("reduce_scatter", in);
  const std::string what = operands(in, reduce_op_name(op));
  const int64_t seq = next_sequence("nccl reduce_scatter " + what);
  CollectiveContext ctx{describe(), "reduce_scatter #" + std::to_string(seq) + " " + what, seq, mpi_control_};
  return issue(state_, std::move(ctx), options().timeout, {in, out}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclReduceScatter(in.raw_data(), out.raw_data(), static_cast<size_t>(out.numel()),
                             nccl_dtype(in.dtype()), nccl_op(op), comm, stream);
  });
}

std::shared_ptr<Work> NcclProcessGroup::broadcast(const Tensor& t, int root) {
  check_tensor_arg("broadcast", t);
  check_device("broadcast", t);
  CHECK(root >= 0 && root < size()) << "NCCL group " << describe() << ": broadcast from root " << root
                                    << " outside 0.." << size() - 1;
  const std::string what = operands(t, "root " + std::to_string(root));
  const int64_t seq = next_sequence("nccl broadcast " + what);
  CollectiveContext ctx{describe(), "broadcast #" + std::to_string(seq) + " " + what, seq, mpi_control_};
  return issue(state_, std::move(ctx), options().timeout, {t}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclBroadcast(t.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()), nccl_dtype(t.dtype()), root,
                         comm, stream);
  });
}

std::shared_ptr<Work> NcclProcessGroup::barrier() {
  const Tensor& t = barrier_buffer_;
  const int64_t seq = next_sequence("nccl barrier");
  CollectiveContext ctx{describe(), "barrier #" + std::to_string(seq), seq, mpi_control_};
  return issue(state_, std::move(ctx), options().timeout, {t}, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(t.raw_data(), t.raw_data(), 1, ncclFloat32, ncclSum, comm, stream);
  });
}

std::unique_ptr<ProcessGroup> NcclProcessGroup::split(int color, int key, const std::string& name) {
  CHECK(color >= 0) << "NCCL group " << describe() << ": split with negative color " << color;
  std::unique_ptr<ProcessGroup> control = control_->split(color, key, name);
  ProcessGroup& control_ref = *control;
  return split_beside(color, key, name, std::move(control), control_ref);
}

std::unique_ptr<ProcessGroup> NcclProcessGroup::split_with_control(int color, int key, const std::string& name,
                                                                   ProcessGroup& control) {
  CHECK(color >= 0) << "NCCL group " << describe() << ": split with negative color " << color;
  return split_beside(color, key, name, nullptr, control);
}

std::unique_ptr<ProcessGroup> NcclProcessGroup::split_beside(int color, int key, const std::string& name,
                                                             std::unique_ptr<ProcessGroup> owned_control,
                                                             ProcessGroup& control) {
  auto state = std::make_shared<NcclCommState>(name, device_, options().timeout);
  const int64_t seq = next_sequence("nccl split into '" + name + "'");
  const CollectiveContext ctx{describe(), "split #" + std::to_string(seq) + " into '" + name + "'", seq,
                              mpi_control_};
  const Clock::time_point deadline = Clock::now() + options().timeout;
  std::string problem;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->throw_if_aborted_locked(ctx.group, ctx.what);
    CudaDeviceGuard guard(device_);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    config.commName = state->comm_name.c_str();
    // Both communicators settle: the new one is set up, the parent's part of the split is over.
    ncclResult_t result = ncclCommSplit(state_->comm, color, key, &state->comm, &config);
    if (result == ncclSuccess || result == ncclInProgress) result = wait_until_ready(state->comm, deadline);
    if (result == ncclSuccess) result = wait_until_ready(state_->comm, deadline);
    if (result == ncclInProgress) problem = "did not complete in " + seconds(options().timeout);
    else if (result != ncclSuccess) problem = "failed: " + nccl_failure(state_->comm, result);
  }
  if (!problem.empty()) {
    {
      std::lock_guard<std::mutex> lock(state->mu);
      state->abort_locked(problem);
    }
    fail_collective(*state_, ctx, problem);
  }
  int nccl_rank = -1, nccl_size = -1;
  NCCL_CHECK(ncclCommUserRank(state->comm, &nccl_rank));
  NCCL_CHECK(ncclCommCount(state->comm, &nccl_size));
  CHECK(nccl_rank == control.rank() && nccl_size == control.size())
      << "NCCL group " << describe() << ": split into '" << name << "' gave NCCL rank " << nccl_rank << " of "
      << nccl_size << " but control rank " << control.rank() << " of " << control.size()
      << " (the control group must be split with the same color and key)";
  return std::unique_ptr<ProcessGroup>(
      new NcclProcessGroup(name, std::move(owned_control), control, device_, options(), std::move(state)));
}

}  // namespace px::parallel
