// What a run reports while it trains: metrics.jsonl (one JSON object per logged step or evaluation, appended
// and flushed so a crash loses nothing written) and the console progress line rank 0 prints.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace px {

// Appends records to <run_dir>/metrics.jsonl. Each record is {"step": N, "<key>": value, ...} on one line,
// keys in the order given; non-finite values are written as null (JSON has no NaN).
class MetricsWriter {
 public:
  // Opens for append (a resumed run continues the same file). A failure is a px::Error naming the path.
  explicit MetricsWriter(const std::string& path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void write(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// "1h02m", "3m05s", "12s" for ETAs.
std::string format_duration(double seconds);

// One console progress line, throughput in the task's unit (tokens, images):
// "step  1200/20000 | loss 4.213 | lr 6.1e-04 | 10.5k tok/s | 0.78 s/step | ETA 4h03m"
struct ProgressLine {
  int64_t step = 0, max_steps = 0;
  double loss = 0, lr = 0, units_per_s = 0, step_time_s = 0, eta_s = 0;
  std::string unit = "tok";
  std::string str() const;  // the step field is as wide as max_steps, so successive lines align
};

}  // namespace px
