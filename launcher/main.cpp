// The `parallax` binary: parses the subcommand line with CLI11, runs it, and turns a px::Error (bad
// user input) or a command-line error into one line on stderr and exit code 2.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "core/util/error.h"
#include "core/util/logging.h"
#include "launcher/data_commands.h"
#include "launcher/detr_commands.h"
#include "launcher/run_commands.h"
#include "launcher/translator_commands.h"

namespace {

// libgomp reads its wait policy once, when it is loaded. Its default spins idle workers for ~300k
// iterations per barrier, which on a busy machine (ctest -j, another job on the node) keeps a descheduled
// thread's partners burning whole time slices: decoding ran 89% inside libgomp's spin loop. A short spin
// (GOMP_SPINCOUNT=20000, tens of microseconds) keeps barriers fast on a quiet machine and sleeps on a busy
// one. Set before libgomp loads by re-executing once; an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
void use_short_openmp_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  setenv("GOMP_SPINCOUNT", "20000", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: run on with libgomp's default
}

}  // namespace

int main(int argc, char** argv) {
  use_short_openmp_spin(argv);
  CLI::App app{"parallax: trains Transformer models (translation, detection) across CPUs and GPUs"};
  app.require_subcommand(1);
  int exit_code = 0;
  px::add_data_commands(app, exit_code);
  px::add_run_commands(app, exit_code);
  px::add_translator_commands(app, exit_code);
  px::add_detr_commands(app, exit_code);
  try {
    px::init_logging(argv[0], "", 0);
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "parallax: error: %s (try: parallax --help)\n", e.what());
    return 2;
  } catch (const px::Error& e) {
    std::fprintf(stderr, "parallax: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {  // the file system or the C++ library: not the user's input
    std::fprintf(stderr, "parallax: error: %s\n", e.what());
    return 1;
  }
  return exit_code;
}
