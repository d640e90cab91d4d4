// The World of a multi-rank test binary (tests/**/*_mpi_test.cpp, run under mpirun), created by its main()
// in mpi_test_main.cpp before any test runs.
#pragma once

#include "parallel/comm/world.h"

namespace px::test {

extern parallel::World* g_world;  // set by main() for the run
parallel::World& world();

}  // namespace px::test
