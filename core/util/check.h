// Invariant checks: glog CHECKs plus status checks for CUDA, cuBLAS, NCCL and MPI calls
// that name the failing statement and its file:line. Library status codes are passed as ints.
#pragma once

#include <glog/logging.h>

namespace px {

// Human-readable text for a library status code. The CUDA ones are defined in
// core/backend/cuda/ (only built with CUDA); mpi_error_string in parallel/.
const char* cuda_error_string(int code);
const char* cublas_error_string(int code);
const char* nccl_error_string(int code);
const char* mpi_error_string(int code);

}  // namespace px

#define PX_STATUS_CHECK_(stmt, ok, kind, to_string)                                   \
  do {                                                                                \
    const int px_status_ = static_cast<int>(stmt);                                    \
    LOG_IF(FATAL, px_status_ != (ok))                                                 \
        << kind << " error " << px_status_ << " (" << ::px::to_string(px_status_)     \
        << ") in `" #stmt "` at " << __FILE__ << ":" << __LINE__;                     \
  } while (0)

#define CUDA_CHECK(stmt) PX_STATUS_CHECK_(stmt, 0, "CUDA", cuda_error_string)
#define CUBLAS_CHECK(stmt) PX_STATUS_CHECK_(stmt, 0, "cuBLAS", cublas_error_string)
#define NCCL_CHECK(stmt) PX_STATUS_CHECK_(stmt, 0, "NCCL", nccl_error_string)
#define MPI_CHECK(stmt) PX_STATUS_CHECK_(stmt, 0, "MPI", mpi_error_string)
