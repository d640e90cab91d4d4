// metrics.jsonl records (nlohmann's ordered JSON, one flushed line each, non-finite values as null), ETA
// durations and rank 0's console progress line.
#include "launcher/metrics.h"

#include <glog/logging.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/util/error.h"

namespace px {

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr) throw Error(path + ": cannot open metrics file for appending: " + std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsWriter::write(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  nlohmann::ordered_json record;
  record["step"] = step;
  std::set<std::string> seen{"step"};
  for (const auto& [key, value] : values) {
    CHECK(seen.insert(key).second) << "MetricsWriter: key '" << key << "' given twice (or named step) at step " << step;
    // nlohmann would write NaN and Inf as null too; saying so here keeps the contract visible.
    record[key] = std::isfinite(value) ? nlohmann::ordered_json(value) : nlohmann::ordered_json(nullptr);
  }
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    throw Error(path_ + ": cannot write metrics record: " + std::strerror(errno));
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const int64_t total = static_cast<int64_t>(std::llround(seconds));
  char buffer[48];
  if (total < 60) {
    std::snprintf(buffer, sizeof(buffer), "%llds", static_cast<long long>(total));
  } else if (total < 3600) {
    std::snprintf(buffer, sizeof(buffer), "%lldm%02llds", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%lldh%02lldm", static_cast<long long>(total / 3600),
                  static_cast<long long>(total % 3600 / 60));
  }
  return buffer;
}

namespace {

// "850", "10.5k", "1.2M" tokens (or images) per second.
std::string format_rate(double per_second) {
  char buffer[32];
  if (!std::isfinite(per_second)) return "--";
  // Thresholds just below 1e3 and 1e6 so that rounding never prints "1000" or "1000.0k".
  if (per_second < 999.5) {
    std::snprintf(buffer, sizeof(buffer), "%.0f", per_second);
  } else if (per_second < 999.95e3) {
    std::snprintf(buffer, sizeof(buffer), "%.1fk", per_second / 1e3);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%.1fM", per_second / 1e6);
  }
  return buffer;
}

}  // namespace

std::string ProgressLine::str() const {
  // The step field is as wide as max_steps so that successive lines align.
  const int width = static_cast<int>(std::to_string(max_steps).size());
  char buffer[256];
  std::snprintf(buffer, sizeof(buffer), "step %*lld/%lld | loss %.3f | lr %.1e | %s %s/s | %.2f s/step | ETA %s",
                width, static_cast<long long>(step), static_cast<long long>(max_steps), loss, lr,
                format_rate(units_per_s).c_str(), unit.c_str(), step_time_s, format_duration(eta_s).c_str());
  return buffer;
}

}  // namespace px
