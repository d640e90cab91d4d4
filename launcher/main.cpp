// The `parallax` binary: parses the subcommand line with CLI11, runs it, and turns a px::Error (bad
// user input) or a command-line error into one line on stderr and exit code 2.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "core/util/error.h"
#include "core/util/logging.h"
#include "launcher/data_commands.h"
#include "launcher/demo.h"
#include "launcher/translator_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"parallax: trains Transformer models (translation, detection) across CPUs and GPUs"};
  app.require_subcommand(1);
  int exit_code = 0;
  px::add_demo_command(app, exit_code);
  px::add_data_commands(app, exit_code);
  px::add_translator_commands(app, exit_code);
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
