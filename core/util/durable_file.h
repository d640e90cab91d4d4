// Durable file writes: content flushed to disk before it counts, and files replaced so that a crash or power
// loss leaves the old content or the new one, never a torn mix (write a temporary, fsync, rename, fsync the folder).
#pragma once

#include <string>
#include <string_view>

namespace px {

// Every function throws ErrorT (px::Error or one of its subclasses in core/util/error.h) naming the path and the
// operating system's reason.

// Flushes `path` to disk: a file's content, or a directory's entries (after creating or renaming in it).
template <class ErrorT>
void sync_to_disk(const std::string& path, bool directory);

// Creates or truncates `path`, writes `bytes` and flushes them to disk.
template <class ErrorT>
void write_file_synced(const std::string& path, std::string_view bytes);

// Renames `from` to `to` (replacing `to` atomically when it exists).
template <class ErrorT>
void rename_file(const std::string& from, const std::string& to);

// Replaces `path` by `bytes` durably: <path>.tmp written and synced, renamed over `path`, its folder synced.
template <class ErrorT>
void write_file_durably(const std::string& path, std::string_view bytes);

}  // namespace px
