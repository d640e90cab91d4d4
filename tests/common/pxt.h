// Reads PXT files (named tensors written by tests/oracle/pxt.py) for the PyTorch oracle tests.
#pragma once

#include <map>
#include <string>

#include "core/tensor/tensor.h"

namespace px::test {

class PxtFile {
 public:
  // Loads every tensor of <PX_ORACLE_DIR>/<name> (or of `name` itself when it is a path).
  explicit PxtFile(const std::string& name);
  // CHECK-fails naming the file when `key` is missing.
  const Tensor& get(const std::string& key) const;
  bool has(const std::string& key) const { return tensors_.count(key) != 0; }
  const std::map<std::string, Tensor>& all() const { return tensors_; }

 private:
  std::string path_;
  std::map<std::string, Tensor> tensors_;
};

}  // namespace px::test
