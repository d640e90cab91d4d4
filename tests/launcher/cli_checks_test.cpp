// at_least / between: integer options accepted inside their bounds, and rejected with "--name: must be ...,
// got <value>" outside them or when the value is not an integer.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "launcher/cli_checks.h"

namespace px {
namespace {

// The message CLI11 throws for `args` on an app with --n (int64) checked by `check`, or "" when it parses.
std::string parse_error(const CLI::Validator& check, std::vector<std::string> args) {
  CLI::App app;
  int64_t n = 0;
  app.add_option("--n", n)->check(check);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return "";
}

TEST(CliChecks, AtLeast) {
  EXPECT_EQ(parse_error(at_least(1), {"--n", "1"}), "");
  EXPECT_EQ(parse_error(at_least(1), {"--n", "0"}), "--n: must be >= 1, got 0");
  EXPECT_EQ(parse_error(at_least(0), {"--n", "-3"}), "--n: must be >= 0, got -3");
  EXPECT_EQ(parse_error(at_least(0), {"--n", "-99999999999999999999"}), "--n: must be >= 0, got -99999999999999999999");
  EXPECT_EQ(parse_error(at_least(1), {"--n", "1.5"}), "--n: must be an integer, got 1.5");
  EXPECT_EQ(parse_error(at_least(1), {"--n", "x"}), "--n: must be an integer, got x");
}

TEST(CliChecks, Between) {
  EXPECT_EQ(parse_error(between(-1, 9), {"--n", "-1"}), "");
  EXPECT_EQ(parse_error(between(-1, 9), {"--n", "9"}), "");
  EXPECT_EQ(parse_error(between(-1, 9), {"--n", "10"}), "--n: must be between -1 and 9, got 10");
  EXPECT_EQ(parse_error(between(16, 1 << 20), {"--n", "99999999999999999999"}),
            "--n: must be between 16 and 1048576, got 99999999999999999999");
}

}  // namespace
}  // namespace px
