// `parallax data build-translation | build-detection | inspect`: the command-line front of data/.
// Options map one to one onto data::TranslationBuildOptions, DetectionBuildOptions, InspectOptions.
#pragma once

namespace CLI {
class App;
}

namespace px {

// Registers `parallax data` and its subcommands; a callback that fails throws px::Error, one that
// finds a corrupt dataset (inspect --verify) sets exit_code.
void add_data_commands(CLI::App& app, int& exit_code);

}  // namespace px
