// `parallax demo`: a small CPU training run (an MLP classifying 2-D spirals) that shows
// the engine, ops and optimizer working end to end with a falling loss.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace px {

struct DemoOptions {
  int64_t steps = 300;
  uint64_t seed = 0;
  int threads = 0;  // 0: default_num_threads()
};

// Throws UsageError naming the bad flag or value.
DemoOptions parse_demo_options(const std::vector<std::string>& args);
// Returns the process exit code (0 when the final loss is below the first).
int run_demo(const DemoOptions& options);

}  // namespace px
