// glog set-up shared by every binary: per-rank log files under a directory,
// console output from rank 0 only.
#include "core/util/logging.h"

#include <filesystem>

#include <glog/logging.h>

namespace px {

void init_logging(const char* argv0, const std::string& log_dir, int rank) {
  static bool initialised = false;
  if (initialised) return;
  initialised = true;
  if (!log_dir.empty()) {
    std::filesystem::create_directories(log_dir);
    FLAGS_log_dir = log_dir;
    FLAGS_logtostderr = false;
    FLAGS_alsologtostderr = (rank == 0);
  } else {
    FLAGS_logtostderr = true;
  }
  FLAGS_stderrthreshold = rank == 0 ? google::GLOG_INFO : google::GLOG_ERROR;
  google::InitGoogleLogging(argv0);
}

void log_to_files(const std::string& log_dir, int rank) {
  std::filesystem::create_directories(log_dir);
  FLAGS_logtostderr = false;
  FLAGS_alsologtostderr = false;
  FLAGS_stderrthreshold = rank == 0 ? google::GLOG_WARNING : google::GLOG_ERROR;
  const std::string base = log_dir + "/rank" + std::to_string(rank) + ".";
  google::SetLogDestination(google::GLOG_INFO, base.c_str());
  for (int severity : {google::GLOG_WARNING, google::GLOG_ERROR, google::GLOG_FATAL}) {
    google::SetLogDestination(severity, "");  // their lines are in the INFO file already
  }
}

}  // namespace px
