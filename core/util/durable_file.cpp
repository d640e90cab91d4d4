// Durable file writes over POSIX open/write/fsync/rename, instantiated for each px::Error type a caller throws.
#include "core/util/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/util/error.h"

namespace px {
namespace {

// The last OS error as text; call right after the failing call.
std::string os_error() { return std::strerror(errno); }

}  // namespace

template <class ErrorT>
void sync_to_disk(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) throw ErrorT(path + ": cannot open to sync: " + os_error());
  const bool synced = ::fsync(fd) == 0;
  const std::string error = synced ? "" : os_error();
  ::close(fd);
  if (!synced) throw ErrorT(path + ": cannot sync to disk: " + error);
}

template <class ErrorT>
void write_file_synced(const std::string& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw ErrorT(path + ": cannot create: " + os_error());
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string error = os_error();
      ::close(fd);
      throw ErrorT(path + ": cannot write: " + error);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const std::string error = synced ? "" : os_error();
  if (::close(fd) != 0 && synced) throw ErrorT(path + ": cannot close: " + os_error());
  if (!synced) throw ErrorT(path + ": cannot sync to disk: " + error);
}

template <class ErrorT>
void rename_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) throw ErrorT(from + ": cannot rename to " + to + ": " + os_error());
}

template <class ErrorT>
void write_file_durably(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp";
  try {
    write_file_synced<ErrorT>(tmp, bytes);
    rename_file<ErrorT>(tmp, path);
  } catch (const ErrorT&) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);  // best effort: the target still holds its previous content
    throw;
  }
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  sync_to_disk<ErrorT>(folder.empty() ? "." : folder.string(), /*directory=*/true);
}

#define PX_INSTANTIATE_DURABLE_FILE(ErrorT)                                              \
  template void sync_to_disk<ErrorT>(const std::string&, bool);                          \
  template void write_file_synced<ErrorT>(const std::string&, std::string_view);         \
  template void rename_file<ErrorT>(const std::string&, const std::string&);             \
  template void write_file_durably<ErrorT>(const std::string&, std::string_view);
PX_INSTANTIATE_DURABLE_FILE(Error)
PX_INSTANTIATE_DURABLE_FILE(UsageError)
PX_INSTANTIATE_DURABLE_FILE(ConfigError)
PX_INSTANTIATE_DURABLE_FILE(DataError)
PX_INSTANTIATE_DURABLE_FILE(CheckpointError)
#undef PX_INSTANTIATE_DURABLE_FILE

}  // namespace px
