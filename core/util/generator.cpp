// A random stream: a seed plus a counter offset into Philox. Ops that draw random numbers
// reserve a range of counters, so a draw can be repeated (dropout backward) or resumed (checkpoints).
#include "core/util/generator.h"

namespace px {

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

}  // namespace px
