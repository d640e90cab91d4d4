// RAII access to one HDF5 file: the only code in Parallax that includes hdf5.h.
// Every dtype, rank, shape and row range is validated before a read; HDF5 failures become DataError.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/dtype.h"
#include "core/tensor/shape.h"

namespace px::data {

// What a dataset is, as stored.
struct DatasetInfo {
  DType dtype = DType::u8;  // only i32, i64, u8, f32, f64 are supported on disk
  Shape shape;              // dims; dim 0 is the row dimension
  Shape chunk;              // empty when the dataset is contiguous
  bool fletcher32 = false;  // HDF5's per-chunk checksum filter is present
  int deflate_level = -1;   // -1: no deflate filter
};

// Options for an extendible, chunked dataset: dim 0 grows with append().
struct DatasetOptions {
  int64_t chunk_rows = 0;      // 0: choose ~1 MiB chunks for streaming reads
  int deflate_level = -1;      // -1: no compression; 0..9: gzip level (after the shuffle filter)
};

// An open HDF5 file. Every error (missing, truncated, bit-flipped, wrong schema) is thrown as
// DataError("<file>: <dataset>: <what>"); HDF5's own error printing is silenced.
// File locking follows HDF5's HDF5_USE_FILE_LOCKING environment variable (set it to FALSE on
// network filesystems that do not support locks).
class H5File {
 public:
  static H5File open_read(const std::string& path);
  static H5File create(const std::string& path);  // truncates an existing file
  H5File(H5File&&) noexcept;
  H5File& operator=(H5File&&) noexcept;
  ~H5File();

  const std::string& path() const;
  // Flushes and closes; further use is an error. Writers call this to surface errors on close.
  void close();

  // Root-group attributes. Strings are written as fixed-length UTF-8 (covered by the 1.10 format's
  // metadata checksums); reads accept fixed- and variable-length strings.
  bool has_attr(const std::string& name) const;
  void write_attr(const std::string& name, const std::string& value);
  void write_attr(const std::string& name, int64_t value);
  void write_attr(const std::string& name, const std::vector<std::string>& values);
  std::string read_attr_string(const std::string& name) const;
  int64_t read_attr_int(const std::string& name) const;
  std::vector<std::string> read_attr_strings(const std::string& name) const;

  // Datasets in the root group.
  bool has_dataset(const std::string& name) const;
  DatasetInfo info(const std::string& name) const;
  // Creates an empty dataset of shape (0, inner...) with unlimited dim 0, chunked, fletcher32.
  void create_dataset(const std::string& name, DType dtype, const Shape& inner, const DatasetOptions& options = {});
  // Appends rows (each prod(inner) elements of dtype) at the end of dim 0.
  void append(const std::string& name, DType dtype, const void* data, int64_t rows);
  // Reads rows [row_begin, row_begin + rows) of a dataset whose dtype must equal `dtype` into `out`
  // (rows * prod(inner) elements). Bounds are checked against the stored shape.
  void read_rows(const std::string& name, DType dtype, int64_t row_begin, int64_t rows, void* out) const;
  template <typename T>
  std::vector<T> read_all(const std::string& name, DType dtype) const {
    const DatasetInfo i = info(name);
    int64_t n = 1;
    for (int64_t d : i.shape) n *= d;
    std::vector<T> out(static_cast<size_t>(n));
    if (!i.shape.empty() && i.shape[0] > 0) read_rows(name, dtype, 0, i.shape[0], out.data());
    return out;
  }

  // Validation shared by the shard readers; each failure is a DataError naming the file and item.
  // Checks the root attributes `schema` (== schema) and `schema_version` (== version).
  void check_schema(const std::string& schema, int64_t version) const;
  // Checks that dataset `name` exists with `dtype`, shape (rows, inner...) and the fletcher32 filter;
  // returns rows.
  int64_t check_dataset(const std::string& name, DType dtype, const Shape& inner) const;
  // Reads the i64 offsets dataset `name`, which must hold `count` entries, start at 0, never decrease
  // and end at the row count of dataset `data`.
  std::vector<int64_t> read_offsets(const std::string& name, int64_t count, const std::string& data) const;

 private:
  struct Impl;
  explicit H5File(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace px::data
