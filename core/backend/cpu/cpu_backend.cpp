// The CpuBackend singleton and the thread settings shared by OpenMP kernels and OpenBLAS: cores / the local
// ranks the caller names by default (all cores on first use), PARALLAX_NUM_THREADS overriding.
#include "core/backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "core/util/check.h"

namespace px {
namespace {

std::atomic<int> g_num_threads{0};
std::once_flag g_threads_once;

// A positive integer from the environment variable `name`, or 0 when unset or unparsable.
int env_positive_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || n <= 0 || n > (1 << 20)) return 0;
  return static_cast<int>(n);
}

void apply_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  g_num_threads.store(n, std::memory_order_relaxed);
}

void ensure_threads() {
  std::call_once(g_threads_once, [] {
    if (g_num_threads.load(std::memory_order_relaxed) == 0) apply_threads(default_num_threads());
  });
}

}  // namespace

int default_num_threads(int local_ranks) {
  CHECK_GE(local_ranks, 1) << "default_num_threads: local_ranks (processes sharing this node's cores)";
  if (const int forced = env_positive_int("PARALLAX_NUM_THREADS")) return forced;
  const int cores = std::max(1, omp_get_num_procs());
  return std::max(1, cores / local_ranks);
}

void set_num_threads(int n) {
  CHECK_GE(n, 1) << "set_num_threads needs at least one thread";
  std::call_once(g_threads_once, [] {});  // an explicit setting wins over the lazy default
  apply_threads(n);
}

int num_threads() {
  const int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  ensure_threads();
  return g_num_threads.load(std::memory_order_relaxed);
}

CpuBackend& cpu_backend() {
  static CpuBackend backend;
  ensure_threads();
  return backend;
}

}  // namespace px
