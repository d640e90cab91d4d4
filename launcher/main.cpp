// The `parallax` binary: parses the subcommand, runs it, and turns a px::Error (bad user
// input) into one line on stderr and a non-zero exit.
#include <cstdio>
#include <string>
#include <vector>

#include "core/util/error.h"
#include "core/util/logging.h"
#include "launcher/demo.h"

namespace {

constexpr const char* kUsage =
    "usage: parallax <command> [options]\n"
    "commands:\n"
    "  demo   train a small MLP on synthetic data on the CPU and print the falling loss\n"
    "         options: --steps N (default 300) --seed S (default 0) --threads T (default cores / local ranks)\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty() || args[0] == "--help" || args[0] == "-h") {
      std::fputs(kUsage, args.empty() ? stderr : stdout);
      return args.empty() ? 2 : 0;
    }
    px::init_logging(argv[0], "", 0);
    const std::string command = args[0];
    args.erase(args.begin());
    if (command == "demo") return px::run_demo(px::parse_demo_options(args));
    throw px::UsageError("unknown command '" + command + "' (try: parallax --help)");
  } catch (const px::Error& e) {
    std::fprintf(stderr, "parallax: error: %s\n", e.what());
    return 2;
  }
}
