// Reads PXT files (named tensors written by tests/oracle/pxt.py) for the PyTorch oracle tests.
#include "tests/common/pxt.h"

#include <cstring>
#include <fstream>

namespace px::test {

PxtFile::PxtFile(const std::string& name)
    : path_(name.find('/') == std::string::npos ? std::string(PX_ORACLE_DIR) + "/" + name : name) {
  std::ifstream in(path_, std::ios::binary);
  CHECK(in) << "cannot open oracle file " << path_ << " (built by the oracle_data target)";
  char magic[4];
  in.read(magic, 4);
  CHECK(in && std::memcmp(magic, "PXT1", 4) == 0) << path_ << " is not a PXT file";
  uint32_t count = 0;
  in.read(reinterpret_cast<char*>(&count), 4);
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t len = 0;
    in.read(reinterpret_cast<char*>(&len), 4);
    std::string key(len, '\0');
    in.read(key.data(), len);
    uint8_t code = 0;
    uint32_t ndim = 0;
    in.read(reinterpret_cast<char*>(&code), 1);
    in.read(reinterpret_cast<char*>(&ndim), 4);
    CHECK(in && code <= static_cast<uint8_t>(DType::boolean) && ndim <= 16) << path_ << ": bad header for " << key;
    Shape shape(ndim);
    in.read(reinterpret_cast<char*>(shape.data()), 8 * ndim);
    Tensor t = Tensor::empty(shape, static_cast<DType>(code));
    in.read(static_cast<char*>(t.raw_data()), t.numel() * dtype_size(t.dtype()));
    CHECK(in) << path_ << ": truncated at " << key;
    tensors_[key] = t;
  }
}

const Tensor& PxtFile::get(const std::string& key) const {
  auto it = tensors_.find(key);
  CHECK(it != tensors_.end()) << "oracle file " << path_ << " has no tensor " << key;
  return it->second;
}

}  // namespace px::test
