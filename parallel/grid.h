// ParallelGrid: the world as dp x tp with the tp ranks of a model replica adjacent (world rank =
// dp_rank * tp + tp_rank, so a tp group sits on one node), and the tp and dp subgroups built from it.
#pragma once

#include <memory>

#include "parallel/comm/process_group.h"

namespace px::parallel {

class ParallelGrid {
 public:
  // Splits `world` (collective over it). tp < 1 or world.size() % tp != 0 is a px::ConfigError (the launcher
  // checks the config first and names its field).
  ParallelGrid(ProcessGroup& world, int tp);
  // A single process (tp = dp = 1) over LocalProcessGroups: for tests and tools.
  static std::unique_ptr<ParallelGrid> single();

  int tp_size() const { return tp_->size(); }
  int tp_rank() const { return tp_->rank(); }
  int dp_size() const { return dp_->size(); }
  int dp_rank() const { return dp_->rank(); }
  ProcessGroup& world() { return *world_; }
  ProcessGroup& tp() { return *tp_; }  // "tp": the ranks holding shards of one model replica
  ProcessGroup& dp() { return *dp_; }  // "dp": the ranks holding the same shard of every replica
  std::string str() const;  // "dp 2 x tp 2 (rank 3: dp 1, tp 1)"

 private:
  ParallelGrid() = default;
  ProcessGroup* world_ = nullptr;
  std::unique_ptr<ProcessGroup> owned_world_;  // single() only
  std::unique_ptr<ProcessGroup> tp_, dp_;
};

}  // namespace px::parallel
