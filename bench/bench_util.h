// bench/bench_util.h: the plain timing harness the benchmarks share (clock, median, flags)
// and the machine's rough FP32 peak, so every figure can be read against the limit.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <immintrin.h>
#include <time.h>

namespace px::bench {

inline double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

// CPU time of the whole process (all threads): with one thread it measures the work done and is
// robust to other load on the machine; with several it also counts threads spin-waiting.
inline double cpu_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// Wall and process-CPU milliseconds per call of fn, averaged over `inner` back-to-back calls.
struct Timing {
  double wall_ms, cpu_ms;
};
inline Timing time_both(const std::function<void()>& fn, int inner) {
  const double w0 = now_ms(), c0 = cpu_now_ms();
  for (int i = 0; i < inner; ++i) fn();
  return {(now_ms() - w0) / inner, (cpu_now_ms() - c0) / inner};
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline double min_of(const std::vector<double>& v) { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); }

// Milliseconds per call of fn, averaged over `inner` back-to-back calls.
inline double time_ms(const std::function<void()>& fn, int inner) {
  const double t0 = now_ms();
  for (int i = 0; i < inner; ++i) fn();
  return (now_ms() - t0) / inner;
}

// How many back-to-back calls make one sample last at least target_ms (given one call's time).
inline int inner_for(double one_call_ms, double target_ms) {
  if (one_call_ms <= 0.0) return 1;
  return std::clamp(static_cast<int>(target_ms / one_call_ms + 0.999), 1, 1000);
}

// --name value / --name=value / --flag parsing; unknown flags are an error (typos should not pass).
class Args {
 public:
  Args(int argc, char** argv, std::vector<std::string> known) : known_(std::move(known)) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) throw std::runtime_error("unexpected argument: " + a);
      std::string key = a, value;
      const auto eq = a.find('=');
      if (eq != std::string::npos) {
        key = a.substr(0, eq);
        value = a.substr(eq + 1);
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        value = argv[++i];
      }
      if (std::find(known_.begin(), known_.end(), key) == known_.end())
        throw std::runtime_error("unknown option: " + key);
      kv_.emplace_back(key, value);
    }
  }
  bool has(const std::string& key) const {
    for (const auto& [k, v] : kv_)
      if (k == key) return true;
    return false;
  }
  std::string str(const std::string& key, const std::string& def) const {
    for (const auto& [k, v] : kv_)
      if (k == key) return v;
    return def;
  }
  int64_t num(const std::string& key, int64_t def) const {
    const std::string v = str(key, "");
    return v.empty() ? def : std::stoll(v);
  }
  double real(const std::string& key, double def) const {
    const std::string v = str(key, "");
    return v.empty() ? def : std::stod(v);
  }

 private:
  std::vector<std::string> known_;
  std::vector<std::pair<std::string, std::string>> kv_;
};

// Rough FP32 peak: threads x clock x FLOPs/cycle/core. AMD Zen 4 and Intel cores with two
// 256-bit (or one 512-bit double-pumped) FMA pipes retire 2 x 8 lanes x 2 = 32 FP32 FLOPs/cycle.
struct Peak {
  double mhz = 0.0;
  int flops_per_cycle = 0;
  std::string model;
  double gflops(int threads) const { return threads * mhz * 1e-3 * flops_per_cycle; }
};

inline Peak cpu_peak() {
  Peak p;
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  bool avx2 = false, fma = false;
  while (std::getline(f, line)) {
    auto value = [&] { return line.substr(line.find(':') + 1); };
    if (p.model.empty() && line.rfind("model name", 0) == 0) p.model = value();
    if (p.mhz == 0.0 && line.rfind("cpu MHz", 0) == 0) p.mhz = std::atof(value().c_str());
    if (line.rfind("flags", 0) == 0) {
      avx2 = line.find(" avx2") != std::string::npos;
      fma = line.find(" fma") != std::string::npos;
    }
  }
  if (const char* m = std::getenv("BENCH_CPU_MHZ")) p.mhz = std::atof(m);  // override a wrong reading
  p.flops_per_cycle = (avx2 && fma) ? 32 : 8;
  return p;
}

// Measured FP32 FMA throughput (GFLOP/s) of `threads` threads running independent 256-bit FMA
// chains for ~ms each: what the cores really reach (turbo clocks included), unlike the nominal MHz.
inline double measured_fma_gflops(int threads, double ms = 200.0) {
  std::vector<double> rates(threads, 0.0);
  auto work = [&](int t) {
    constexpr int kChains = 12;  // > FMA latency x pipes, so the pipes stay full
    __m256 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(1.0f + 1e-3f * c);
    const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    const double t0 = now_ms();
    int64_t iters = 0;
    while (now_ms() - t0 < ms) {
      for (int i = 0; i < 4096; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
      iters += 4096;
    }
    const double secs = (now_ms() - t0) * 1e-3;
    float sink = 0.f;
    for (int c = 0; c < kChains; ++c) {
      alignas(32) float v[8];
      _mm256_store_ps(v, acc[c]);
      sink += v[0];
    }
    rates[t] = iters * kChains * 16.0 / secs * 1e-9 + (sink == 12345.f ? 1e-12 : 0.0);
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work, t);
  for (auto& th : pool) th.join();
  double total = 0.0;
  for (double r : rates) total += r;
  return total;
}

inline std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace px::bench
