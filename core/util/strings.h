// Small string helpers shared by the readers of text input (configs, annotation lists, protobuf text).
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace px {

// `s` without leading and trailing whitespace (std::isspace: blanks, tabs, CR, LF, ...).
inline std::string trim(std::string_view s) {
  const auto not_space = [](char c) { return !std::isspace(static_cast<unsigned char>(c)); };
  const auto begin = std::find_if(s.begin(), s.end(), not_space);
  const auto end = std::find_if(s.rbegin(), s.rend(), not_space).base();
  return begin < end ? std::string(begin, end) : std::string();
}

}  // namespace px
