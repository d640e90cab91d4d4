// ParallelGrid: splits the world into tp groups (consecutive ranks) and dp groups (ranks with the same tp
// rank), world rank = dp_rank * tp + tp_rank.
#include "parallel/grid.h"

#include <sstream>

#include "core/util/error.h"

namespace px::parallel {

ParallelGrid::ParallelGrid(ProcessGroup& world, int tp) : world_(&world) {
  if (tp < 1 || world.size() % tp != 0) {
    throw ConfigError("ParallelGrid: the tensor-parallel size " + std::to_string(tp) +
                      " must be positive and divide the world size " + std::to_string(world.size()));
  }
  const int tp_rank = world.rank() % tp, dp_rank = world.rank() / tp;
  tp_ = world.split(dp_rank, tp_rank, "tp");
  dp_ = world.split(tp_rank, dp_rank, "dp");
}

std::unique_ptr<ParallelGrid> ParallelGrid::single() {
  std::unique_ptr<ParallelGrid> grid(new ParallelGrid());
  grid->owned_world_ = std::make_unique<LocalProcessGroup>("world", 0);
  grid->world_ = grid->owned_world_.get();
  grid->tp_ = std::make_unique<LocalProcessGroup>("tp", 0);
  grid->dp_ = std::make_unique<LocalProcessGroup>("dp", 0);
  return grid;
}

std::string ParallelGrid::str() const {
  std::ostringstream os;
  os << "dp " << dp_size() << " x tp " << tp_size() << " (rank " << world_->rank() << ": dp " << dp_rank()
     << ", tp " << tp_rank() << ")";
  return os.str();
}

}  // namespace px::parallel
