// A random stream: a seed plus a counter offset into Philox. Ops that draw random numbers
// reserve a range of counters, so a draw can be repeated (dropout backward) or resumed (checkpoints).
#pragma once

#include <cstdint>

namespace px {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves n counters and returns the first.
  uint64_t take(uint64_t n) {
    const uint64_t first = offset_;
    offset_ += n;
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The process's default stream (seed 0 unless reseeded), used where no Generator is passed.
Generator& default_generator();

}  // namespace px
