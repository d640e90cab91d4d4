// bench/parallel/collective_bandwidth.cpp (bench_collective_bandwidth): MpiProcessGroup's all_reduce,
// all_gather, reduce_scatter and broadcast (f32) against the same blocking MPI call, interleaved in one run.
//
// Run under mpirun, e.g. `mpirun --oversubscribe --allow-run-as-root -np 2 bench_collective_bandwidth`.
// Columns follow nccl-tests: size is the bytes of the largest buffer (all_gather: the output, reduce_scatter:
// the input), algbw = size / time, busbw = algbw x 2(n-1)/n (all_reduce), (n-1)/n (all_gather,
// reduce_scatter), 1 (broadcast). A sample is the slowest rank's time of one call (issue to wait() return,
// after a barrier); the table shows the median sample of Parallax and of raw MPI and their ratio.
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/ops/factory.h"
#include "parallel/comm/mpi_process_group.h"
#include "parallel/comm/world.h"

namespace {

using px::Tensor;
using px::parallel::ProcessGroup;
using px::parallel::ReduceOp;
namespace pb = px::bench;

enum class Collective { all_reduce, all_gather, reduce_scatter, broadcast };
const char* name(Collective c) {
  switch (c) {
    case Collective::all_reduce: return "all_reduce";
    case Collective::all_gather: return "all_gather";
    case Collective::reduce_scatter: return "reduce_scatter";
    case Collective::broadcast: return "broadcast";
  }
  return "?";
}

double bus_factor(Collective c, int n) {
  switch (c) {
    case Collective::all_reduce: return 2.0 * (n - 1) / n;
    case Collective::all_gather:
    case Collective::reduce_scatter: return static_cast<double>(n - 1) / n;
    case Collective::broadcast: return 1.0;
  }
  return 1.0;
}

// The buffers of one size: `whole` (count) and `part` (count / n).
struct Buffers {
  Tensor whole, part;
};

void run_parallax(ProcessGroup& g, Collective c, const Buffers& b) {
  switch (c) {
    case Collective::all_reduce: g.all_reduce(b.whole, ReduceOp::sum)->wait(); break;
    case Collective::all_gather: g.all_gather(b.part, b.whole)->wait(); break;
    case Collective::reduce_scatter: g.reduce_scatter(b.whole, b.part, ReduceOp::sum)->wait(); break;
    case Collective::broadcast: g.broadcast(b.whole, 0)->wait(); break;
  }
}

void run_raw(MPI_Comm comm, Collective c, const Buffers& b) {
  const int whole = static_cast<int>(b.whole.numel()), part = static_cast<int>(b.part.numel());
  float* w = b.whole.data<float>();
  float* p = b.part.data<float>();
  switch (c) {
    case Collective::all_reduce: MPI_Allreduce(MPI_IN_PLACE, w, whole, MPI_FLOAT, MPI_SUM, comm); break;
    case Collective::all_gather: MPI_Allgather(p, part, MPI_FLOAT, w, part, MPI_FLOAT, comm); break;
    case Collective::reduce_scatter: MPI_Reduce_scatter_block(w, p, part, MPI_FLOAT, MPI_SUM, comm); break;
    case Collective::broadcast: MPI_Bcast(w, whole, MPI_FLOAT, 0, comm); break;
  }
}

// One sample: the slowest rank's seconds for fn, measured from a common barrier.
template <typename Fn>
double sample(MPI_Comm comm, Fn fn) {
  MPI_Barrier(comm);
  const double start = MPI_Wtime();
  fn();
  double seconds = MPI_Wtime() - start;
  MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  pb::Args args(argc, argv, {"--min-bytes", "--max-bytes", "--iters", "--warmup", "--ops"});
  const int64_t min_bytes = args.num("--min-bytes", 1024);
  const int64_t max_bytes = args.num("--max-bytes", int64_t{256} << 20);
  const int64_t max_iters = args.num("--iters", 40);
  const int64_t warmup = args.num("--warmup", 2);
  const std::string ops = args.str("--ops", "all_reduce,all_gather,reduce_scatter,broadcast");

  px::parallel::World world;
  CHECK(world.placement().launched) << "run bench_collective_bandwidth under mpirun";
  auto& group = dynamic_cast<px::parallel::MpiProcessGroup&>(world.group());
  // The raw peer runs on its own duplicate of the group's communicator, so the two never share a request.
  MPI_Comm raw_comm;
  MPI_Comm_dup(static_cast<MPI_Comm>(group.comm()), &raw_comm);
  const int n = group.size();
  const bool root = group.rank() == 0;
  if (root) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(version, &length);
    std::string library(version);
    library = library.substr(0, library.find_first_of(",\n"));
    std::printf("# collective bandwidth, f32, %d ranks, %s, load %s\n", n, library.c_str(),
                pb::load_average().c_str());
    std::printf("# time: median over samples of the slowest rank (us); algbw/busbw in GB/s (nccl-tests)\n");
    std::printf("%-15s %12s %11s | %11s %8s %8s | %11s %8s %8s | %7s\n", "collective", "size(B)", "count",
                "px time", "algbw", "busbw", "mpi time", "algbw", "busbw", "mpi/px");
  }
  for (Collective c : {Collective::all_reduce, Collective::all_gather, Collective::reduce_scatter,
                       Collective::broadcast}) {
    if (ops.find(name(c)) == std::string::npos) continue;
    for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
      const int64_t count = bytes / 4 / n * n;  // divisible by n for the gather/scatter parts
      Buffers b{px::ones({count}), px::ones({count / n})};
      // ~0.5 GB moved per size at most (at least 5 samples) so that 256 MiB does not run for minutes.
      const int64_t iters = std::clamp<int64_t>((int64_t{512} << 20) / std::max<int64_t>(bytes, 1), 5, max_iters);
      for (int64_t i = 0; i < warmup; ++i) {
        run_parallax(group, c, b);
        run_raw(raw_comm, c, b);
      }
      std::vector<double> px_s, raw_s;
      for (int64_t i = 0; i < iters; ++i) {  // interleaved A B B A so drift hits both alike
        auto px_sample = [&] { px_s.push_back(sample(raw_comm, [&] { run_parallax(group, c, b); })); };
        auto raw_sample = [&] { raw_s.push_back(sample(raw_comm, [&] { run_raw(raw_comm, c, b); })); };
        if (i % 2 == 0) {
          px_sample();
          raw_sample();
        } else {
          raw_sample();
          px_sample();
        }
      }
      if (root) {
        const double px_t = pb::median(px_s), raw_t = pb::median(raw_s);
        const double actual_bytes = static_cast<double>(count) * 4;
        const double px_alg = actual_bytes / px_t * 1e-9, raw_alg = actual_bytes / raw_t * 1e-9;
        const double f = bus_factor(c, n);
        std::printf("%-15s %12.0f %11ld | %11.1f %8.3f %8.3f | %11.1f %8.3f %8.3f | %7.2f\n", name(c),
                    actual_bytes, static_cast<long>(count), px_t * 1e6, px_alg, px_alg * f, raw_t * 1e6, raw_alg,
                    raw_alg * f, raw_t / px_t);
        std::fflush(stdout);
      }
    }
  }
  MPI_Comm_free(&raw_comm);
  return 0;
}
