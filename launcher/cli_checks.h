// Checks of integer command-line options whose messages read as a person writes bounds:
// "--shards: must be >= 1, got 0" (CLI11's own ranges print doubles: "Value 0 not in range 0.000000 to 1.79e308").
#pragma once

#include <cstdint>

#include <CLI/CLI.hpp>

namespace px {

// The value must be an integer >= min: "must be >= 1, got 0". Values beyond the option's type are left to
// CLI11's conversion ("Could not convert: --shards = 99999999999").
CLI::Validator at_least(int64_t min);

// The value must be an integer in [min, max]: "must be between 16 and 1048576, got 8".
CLI::Validator between(int64_t min, int64_t max);

}  // namespace px
