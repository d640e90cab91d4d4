// Typed errors for bad user input (configs, data files, checkpoints, command lines)
// and misuse of the autograd API; the launcher catches Error, prints one line, exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace px {

// Base of every error a user can cause; what() is a one-line message.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

class UsageError : public Error {  // command line
 public:
  using Error::Error;
};
class ConfigError : public Error {  // config files and overrides
 public:
  using Error::Error;
};
class DataError : public Error {  // data files
 public:
  using Error::Error;
};
class CheckpointError : public Error {  // checkpoints and manifests
 public:
  using Error::Error;
};
class AutogradError : public Error {  // backward through a freed graph, stale saved tensors
 public:
  using Error::Error;
};

}  // namespace px
