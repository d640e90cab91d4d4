// glog set-up shared by every binary: per-rank log files under a directory,
// console output from rank 0 only.
#pragma once

#include <string>

namespace px {

// Initialise glog once per process. With log_dir empty, logs go to stderr only.
// Ranks other than 0 write only to their log file (or only errors to stderr).
void init_logging(const char* argv0, const std::string& log_dir, int rank);

// From now on (call it before the first log line of a run), every log line goes to one file per rank,
// <log_dir>/rank<R>.<timestamp>.<pid> (all severities in one file, glog's prefix), and only warnings and
// errors (rank 0) or errors (other ranks) reach stderr, so the console keeps a command's own output.
void log_to_files(const std::string& log_dir, int rank);

}  // namespace px
