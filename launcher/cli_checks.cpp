// Integer option checks for CLI11: parse the text as a decimal integer, compare it with the bounds, and say
// what the bound is and what was given.
#include "launcher/cli_checks.h"

#include <charconv>
#include <limits>
#include <string>
#include <system_error>

#include "core/util/strings.h"

namespace px {
namespace {

// "" when `text` is an integer in [min, max], else what is wrong with it. `show_max`: max is a real bound
// (between), not the end of int64 (at_least).
std::string integer_problem(const std::string& text, int64_t min, int64_t max, bool show_max) {
  const std::string given = trim(text);
  const std::string bound = show_max ? "must be between " + std::to_string(min) + " and " + std::to_string(max)
                                     : "must be >= " + std::to_string(min);
  int64_t value = 0;
  const char* end = given.data() + given.size();
  const auto [stop, error] = std::from_chars(given.data(), end, value);
  if (given.empty() || stop != end || (error != std::errc() && error != std::errc::result_out_of_range))
    return "must be an integer, got " + (given.empty() ? std::string("''") : given);
  if (error == std::errc::result_out_of_range) {
    const bool too_small = given.front() == '-';
    return too_small || show_max ? bound + ", got " + given : "";
  }
  if (value < min || value > max) return bound + ", got " + given;
  return "";
}

}  // namespace

CLI::Validator at_least(int64_t min) {
  return CLI::Validator(
      [min](std::string& text) { return integer_problem(text, min, std::numeric_limits<int64_t>::max(), false); },
      "INT >= " + std::to_string(min));
}

CLI::Validator between(int64_t min, int64_t max) {
  return CLI::Validator([min, max](std::string& text) { return integer_problem(text, min, max, true); },
                        "INT in [" + std::to_string(min) + " - " + std::to_string(max) + "]");
}

}  // namespace px
