// `parallax demo`: a small CPU training run (an MLP classifying 2-D spirals) that shows
// the engine, ops and optimizer working end to end with a falling loss.
#pragma once

#include <cstdint>

namespace CLI {
class App;
}

namespace px {

struct DemoOptions {
  int64_t steps = 300;
  uint64_t seed = 0;
  int threads = 0;  // 0: default_num_threads()
};

// Registers `parallax demo` on the CLI; its callback runs the demo and stores the exit code.
void add_demo_command(CLI::App& app, int& exit_code);
// Returns the process exit code (0 when the final loss is below the first).
int run_demo(const DemoOptions& options);

}  // namespace px
