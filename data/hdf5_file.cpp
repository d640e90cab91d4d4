// H5File: the only translation unit in Parallax that includes hdf5.h. RAII identifiers, one process-wide
// lock around the library, extendible chunked datasets with fletcher32, attributes, and HDF5 errors as DataError.
#include "data/hdf5_file.h"

#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

#include "core/util/check.h"
#include "core/util/error.h"

namespace px::data {
namespace {

constexpr int64_t kChunkBytes = int64_t{1} << 20;       // default chunk: ~1 MiB of rows
constexpr size_t kChunkCacheBytes = size_t{8} << 20;    // per open dataset: several default chunks
constexpr size_t kChunkCacheSlots = 521;                // prime, well above the chunks that fit
constexpr int64_t kMaxAttrBytes = int64_t{1} << 30;     // refuse absurd (corrupted) attribute sizes

// Debian's libhdf5 is the serial build without --enable-threadsafe: its error stack, identifier
// tables and metadata caches are global and unguarded, and data loaders read shards from background
// threads. So every HDF5 call in this file runs under this one lock. It is recursive because public
// methods call one another and RAII identifiers close while it is held. Never destroyed, so that
// identifiers released during static destruction still find it.
std::recursive_mutex& h5_mutex() {
  static auto* mutex = new std::recursive_mutex;
  return *mutex;
}

// Holds the HDF5 lock; the first one also turns off HDF5's automatic printing of its error stack.
class H5Lock {
 public:
  H5Lock() : lock_(h5_mutex()) {
    static const bool silenced = H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0;
    (void)silenced;
  }

 private:
  std::lock_guard<std::recursive_mutex> lock_;
};

// The description HDF5 gave where the last failure was first detected (the innermost entry of its
// error stack), e.g. "data error detected by Fletcher32 checksum". Call it right after the failing call.
std::string h5_reason() {
  std::string reason;
  auto innermost = [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
    if (n == 0 && e->desc != nullptr) *static_cast<std::string*>(out) = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &reason);
  return reason;
}

[[noreturn]] void fail(const std::string& path, const std::string& name, const std::string& what) {
  throw DataError(path + ": " + name + ": " + what);
}

// Like fail(), with HDF5's own reason for the failure that just happened appended.
[[noreturn]] void fail_h5(const std::string& path, const std::string& name, const std::string& what) {
  const std::string reason = h5_reason();
  fail(path, name, reason.empty() ? what : what + ": " + reason);
}

void check(herr_t status, const std::string& path, const std::string& name, const std::string& what) {
  if (status < 0) fail_h5(path, name, what);
}

// One HDF5 identifier, released by its kind's close function (under the lock) when dropped.
class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  // Takes `id` from an HDF5 call; a negative one is that call's failure, thrown as DataError.
  Id(hid_t id, Closer closer, const std::string& path, const std::string& name, const std::string& what)
      : id_(id), closer_(closer) {
    if (id_ < 0) fail_h5(path, name, what);
  }
  Id(Id&& other) noexcept : id_(std::exchange(other.id_, -1)), closer_(other.closer_) {}
  Id& operator=(Id&& other) noexcept {
    if (this != &other) {
      close();
      id_ = std::exchange(other.id_, -1);
      closer_ = other.closer_;
    }
    return *this;
  }
  ~Id() { close(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Releases the identifier; returns the close function's status (negative on failure).
  herr_t close() {
    if (id_ < 0) return 0;
    H5Lock lock;
    return closer_(std::exchange(id_, -1));
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// Little-endian standard types on disk, whatever the host.
hid_t file_type(DType t) {
  switch (t) {
    case DType::i32: return H5T_STD_I32LE;
    case DType::i64: return H5T_STD_I64LE;
    case DType::u8: return H5T_STD_U8LE;
    case DType::f32: return H5T_IEEE_F32LE;
    case DType::f64: return H5T_IEEE_F64LE;
    default: LOG(FATAL) << "HDF5 datasets hold i32, i64, u8, f32 or f64, not " << dtype_name(t);
  }
  __builtin_unreachable();
}

hid_t memory_type(DType t) {
  switch (t) {
    case DType::i32: return H5T_NATIVE_INT32;
    case DType::i64: return H5T_NATIVE_INT64;
    case DType::u8: return H5T_NATIVE_UINT8;
    case DType::f32: return H5T_NATIVE_FLOAT;
    case DType::f64: return H5T_NATIVE_DOUBLE;
    default: LOG(FATAL) << "HDF5 datasets hold i32, i64, u8, f32 or f64, not " << dtype_name(t);
  }
  __builtin_unreachable();
}

// A readable name for a stored type, for error messages ("int16", "float64", "string", ...).
std::string type_description(hid_t type) {
  const size_t bits = 8 * H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: return (H5Tget_sign(type) == H5T_SGN_2 ? "int" : "uint") + std::to_string(bits);
    case H5T_FLOAT: return "float" + std::to_string(bits);
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length sequence";
    case H5T_REFERENCE: return "reference";
    case H5T_OPAQUE: return "opaque";
    case H5T_BITFIELD: return "bitfield";
    default: return "unknown type";
  }
}

DType stored_dtype(hid_t type, const std::string& path, const std::string& name) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (is_signed && size == 4) return DType::i32;
    if (is_signed && size == 8) return DType::i64;
    if (!is_signed && size == 1) return DType::u8;
  } else if (cls == H5T_FLOAT && size == 4) {
    return DType::f32;
  } else if (cls == H5T_FLOAT && size == 8) {
    return DType::f64;
  }
  fail(path, name, "stored type " + type_description(type) + " is not one of i32, i64, u8, f32, f64");
}

std::vector<hsize_t> to_hsize(const Shape& shape) { return {shape.begin(), shape.end()}; }

// The dims of a dataspace; each, and the element count, must fit in int64.
Shape extent(hid_t space, const std::string& path, const std::string& name) {
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) fail_h5(path, name, "cannot read dataspace");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0) fail_h5(path, name, "cannot read dims");
  Shape shape;
  int64_t count = 1;
  for (hsize_t d : dims) {
    if (d > static_cast<hsize_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(count, static_cast<int64_t>(d), &count)) {
      fail(path, name, "dims overflow int64");
    }
    shape.push_back(static_cast<int64_t>(d));
  }
  return shape;
}

Id dataset_access_plist(const std::string& path, const std::string& name) {
  Id dapl(H5Pcreate(H5P_DATASET_ACCESS), H5Pclose, path, name, "cannot create access properties");
  check(H5Pset_chunk_cache(dapl.get(), kChunkCacheSlots, kChunkCacheBytes, H5D_CHUNK_CACHE_W0_DEFAULT), path, name,
        "cannot set the chunk cache");
  return dapl;
}

// Rows per chunk: the caller's choice, else as many rows as fit in ~1 MiB (at least one), large enough
// for streaming reads and compression, small enough that a few stay in each dataset's chunk cache.
int64_t chunk_rows(const DatasetOptions& options, int64_t row_bytes) {
  if (options.chunk_rows > 0) return options.chunk_rows;
  return std::max<int64_t>(1, kChunkBytes / row_bytes);
}

// The memory type for reading variable-length strings of character set `cset`.
Id vlen_string_type(H5T_cset_t cset, const std::string& path, const std::string& name) {
  Id type(H5Tcopy(H5T_C_S1), H5Tclose, path, name, "cannot create string type");
  check(H5Tset_size(type.get(), H5T_VARIABLE), path, name, "cannot create string type");
  check(H5Tset_cset(type.get(), cset), path, name, "cannot create string type");
  return type;
}

// Reads `count` strings of an attribute stored as variable- or fixed-length strings.
std::vector<std::string> read_strings(hid_t attr, hid_t stored, int64_t count, const std::string& path,
                                      const std::string& name) {
  std::vector<std::string> out;
  if (count == 0) return out;
  if (H5Tis_variable_str(stored) > 0) {
    Id type = vlen_string_type(H5Tget_cset(stored), path, name);
    std::vector<char*> ptrs(static_cast<size_t>(count), nullptr);
    check(H5Aread(attr, type.get(), ptrs.data()), path, name, "cannot read string attribute");
    for (char* p : ptrs) {
      out.emplace_back(p != nullptr ? p : "");
      H5free_memory(p);
    }
    return out;
  }
  const int64_t size = static_cast<int64_t>(H5Tget_size(stored));
  int64_t bytes = 0;
  if (size <= 0 || __builtin_mul_overflow(size, count, &bytes) || bytes > kMaxAttrBytes) {
    fail(path, name, "string attribute of " + std::to_string(count) + " x " + std::to_string(size) + " bytes");
  }
  Id type(H5Tcopy(stored), H5Tclose, path, name, "cannot copy string type");
  std::vector<char> buf(static_cast<size_t>(bytes));
  check(H5Aread(attr, type.get(), buf.data()), path, name, "cannot read string attribute");
  const bool space_padded = H5Tget_strpad(stored) == H5T_STR_SPACEPAD;
  for (int64_t i = 0; i < count; ++i) {
    std::string s(buf.data() + i * size, static_cast<size_t>(size));
    s.resize(std::min(s.size(), s.find('\0')));
    if (space_padded) s.resize(s.find_last_not_of(' ') + 1);
    out.push_back(std::move(s));
  }
  return out;
}

template <typename Ptr>
auto& live(const Ptr& impl) {
  CHECK(impl) << "use of a moved-from H5File";
  return *impl;
}

}  // namespace

struct H5File::Impl {
  std::string path;
  Id file;
  std::map<std::string, Id> datasets;  // opened once, so each keeps its chunk cache between reads

  hid_t fid() const {
    CHECK(file.valid()) << path << ": H5File used after close()";
    return file.get();
  }

  hid_t dataset(const std::string& name) {
    if (auto it = datasets.find(name); it != datasets.end()) return it->second.get();
    const htri_t exists = H5Lexists(fid(), name.c_str(), H5P_DEFAULT);
    if (exists < 0) fail_h5(path, name, "cannot look up dataset");
    if (exists == 0) fail(path, name, "no such dataset");
    Id dapl = dataset_access_plist(path, name);
    Id d(H5Dopen2(fid(), name.c_str(), dapl.get()), H5Dclose, path, name, "cannot open dataset");
    return datasets.emplace(name, std::move(d)).first->second.get();
  }

  Id open_attr(const std::string& name) const {
    const htri_t exists = H5Aexists(fid(), name.c_str());
    if (exists < 0) fail_h5(path, name, "cannot look up attribute");
    if (exists == 0) fail(path, name, "no such attribute");
    return Id(H5Aopen(fid(), name.c_str(), H5P_DEFAULT), H5Aclose, path, name, "cannot open attribute");
  }

  // Opens a scalar or 1-element attribute of class `cls` (`expected` names it for errors); returns it and its type.
  std::pair<Id, Id> open_scalar_attr(const std::string& name, H5T_class_t cls, const std::string& expected) const {
    Id attr = open_attr(name);
    Id type(H5Aget_type(attr.get()), H5Tclose, path, name, "cannot read attribute type");
    if (H5Tget_class(type.get()) != cls) {
      fail(path, name, "attribute is " + type_description(type.get()) + ", expected " + expected);
    }
    Id space(H5Aget_space(attr.get()), H5Sclose, path, name, "cannot read attribute dataspace");
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    if (n != 1) fail(path, name, "attribute holds " + std::to_string(n) + " values, expected one " + expected);
    return {std::move(attr), std::move(type)};
  }

  // Writes `values` as attribute `name`: fixed-length, NUL-padded UTF-8 strings, one scalar or an array.
  // Not variable-length: those live in HDF5's global heap, which has no checksum, and HDF5 1.10 copies a
  // corrupted heap object's length unchecked (a segfault found by shard_fuzz_test). Fixed-length strings
  // live in the object header, which the 1.10 format checksums.
  void write_strings(const std::string& name, const std::vector<std::string>& values, bool scalar) {
    size_t width = 1;
    for (const std::string& v : values) width = std::max(width, v.size());
    Id type(H5Tcopy(H5T_C_S1), H5Tclose, path, name, "cannot create string type");
    check(H5Tset_size(type.get(), width), path, name, "cannot create string type");
    check(H5Tset_strpad(type.get(), H5T_STR_NULLPAD), path, name, "cannot create string type");
    check(H5Tset_cset(type.get(), H5T_CSET_UTF8), path, name, "cannot create string type");
    const hsize_t n = values.size();
    Id space(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr), H5Sclose, path, name,
             "cannot create dataspace");
    Id attr = replace_attr(name, type.get(), space.get());
    std::vector<char> text(values.size() * width, '\0');
    for (size_t i = 0; i < values.size(); ++i) std::copy(values[i].begin(), values[i].end(), text.begin() + i * width);
    if (!values.empty()) check(H5Awrite(attr.get(), type.get(), text.data()), path, name, "cannot write attribute");
  }

  // Creates attribute `name` of `type` and `space`, replacing an existing one.
  Id replace_attr(const std::string& name, hid_t type, hid_t space) {
    const htri_t exists = H5Aexists(fid(), name.c_str());
    if (exists < 0) fail_h5(path, name, "cannot look up attribute");
    if (exists > 0) check(H5Adelete(fid(), name.c_str()), path, name, "cannot replace attribute");
    return Id(H5Acreate2(fid(), name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, path, name,
              "cannot create attribute");
  }
};

H5File::H5File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
H5File::H5File(H5File&&) noexcept = default;
H5File& H5File::operator=(H5File&& other) noexcept {
  H5Lock lock;
  impl_ = std::move(other.impl_);
  return *this;
}
H5File::~H5File() {
  H5Lock lock;
  impl_.reset();  // datasets close before the file (member order); failures are ignored here
}

H5File H5File::open_read(const std::string& path) {
  H5Lock lock;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw DataError(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) throw DataError(path + ": is a directory, not an HDF5 file");
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  // The default access properties keep HDF5's file locking (and its HDF5_USE_FILE_LOCKING switch).
  const hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) {
    const std::string reason = h5_reason();
    throw DataError(path + ": not a readable HDF5 file" + (reason.empty() ? "" : ": " + reason));
  }
  impl->file = Id(id, H5Fclose, path, "", "");
  return H5File(std::move(impl));
}

H5File H5File::create(const std::string& path) {
  H5Lock lock;
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  // The 1.10 file format: superblock, object headers and chunk indexes carry checksums, so corrupted
  // metadata is reported rather than misread (readable by HDF5 >= 1.10, h5py included). File locking
  // stays at HDF5's default, which HDF5_USE_FILE_LOCKING overrides.
  Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, path, "(file)", "cannot create file access properties");
  check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_V110), path, "(file)", "cannot set format");
  const hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (id < 0) {
    const std::string reason = h5_reason();
    throw DataError(path + ": cannot create HDF5 file" + (reason.empty() ? "" : ": " + reason));
  }
  impl->file = Id(id, H5Fclose, path, "", "");
  return H5File(std::move(impl));
}

const std::string& H5File::path() const { return live(impl_).path; }

void H5File::close() {
  H5Lock lock;
  Impl& im = live(impl_);
  im.fid();
  for (auto& [name, d] : im.datasets) check(d.close(), im.path, name, "cannot close dataset");
  im.datasets.clear();
  if (im.file.close() < 0) {
    const std::string reason = h5_reason();
    throw DataError(im.path + ": cannot close (flush) the file" + (reason.empty() ? "" : ": " + reason));
  }
}

bool H5File::has_attr(const std::string& name) const {
  H5Lock lock;
  const Impl& im = live(impl_);
  const htri_t exists = H5Aexists(im.fid(), name.c_str());
  if (exists < 0) fail_h5(im.path, name, "cannot look up attribute");
  return exists > 0;
}

void H5File::write_attr(const std::string& name, const std::string& value) {
  H5Lock lock;
  live(impl_).write_strings(name, {value}, true);
}

void H5File::write_attr(const std::string& name, int64_t value) {
  H5Lock lock;
  Impl& im = live(impl_);
  Id space(H5Screate(H5S_SCALAR), H5Sclose, im.path, name, "cannot create dataspace");
  Id attr = im.replace_attr(name, H5T_STD_I64LE, space.get());
  check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), im.path, name, "cannot write attribute");
}

void H5File::write_attr(const std::string& name, const std::vector<std::string>& values) {
  H5Lock lock;
  live(impl_).write_strings(name, values, false);
}

std::string H5File::read_attr_string(const std::string& name) const {
  H5Lock lock;
  const Impl& im = live(impl_);
  auto [attr, type] = im.open_scalar_attr(name, H5T_STRING, "a string");
  return read_strings(attr.get(), type.get(), 1, im.path, name).front();
}

int64_t H5File::read_attr_int(const std::string& name) const {
  H5Lock lock;
  const Impl& im = live(impl_);
  auto [attr, type] = im.open_scalar_attr(name, H5T_INTEGER, "an integer");
  int64_t value = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), im.path, name, "cannot read attribute");
  return value;
}

std::vector<std::string> H5File::read_attr_strings(const std::string& name) const {
  H5Lock lock;
  const Impl& im = live(impl_);
  Id attr = im.open_attr(name);
  Id type(H5Aget_type(attr.get()), H5Tclose, im.path, name, "cannot read attribute type");
  if (H5Tget_class(type.get()) != H5T_STRING) {
    fail(im.path, name, "attribute is " + type_description(type.get()) + ", expected an array of strings");
  }
  Id space(H5Aget_space(attr.get()), H5Sclose, im.path, name, "cannot read attribute dataspace");
  const Shape shape = extent(space.get(), im.path, name);
  if (shape.size() > 1) fail(im.path, name, "attribute has rank " + std::to_string(shape.size()) + ", expected 1");
  return read_strings(attr.get(), type.get(), shape_numel(shape), im.path, name);
}

bool H5File::has_dataset(const std::string& name) const {
  H5Lock lock;
  const Impl& im = live(impl_);
  const htri_t exists = H5Lexists(im.fid(), name.c_str(), H5P_DEFAULT);
  if (exists < 0) fail_h5(im.path, name, "cannot look up dataset");
  if (exists == 0) return false;
  H5O_info_t object;
  check(H5Oget_info_by_name2(im.fid(), name.c_str(), &object, H5O_INFO_BASIC, H5P_DEFAULT), im.path, name,
        "cannot read object header");
  return object.type == H5O_TYPE_DATASET;
}

DatasetInfo H5File::info(const std::string& name) const {
  H5Lock lock;
  Impl& im = live(impl_);
  const hid_t d = im.dataset(name);
  const std::string& path = im.path;
  DatasetInfo info;
  Id type(H5Dget_type(d), H5Tclose, path, name, "cannot read dataset type");
  info.dtype = stored_dtype(type.get(), path, name);
  Id space(H5Dget_space(d), H5Sclose, path, name, "cannot read dataspace");
  info.shape = extent(space.get(), path, name);
  int64_t bytes = 0;
  if (__builtin_mul_overflow(shape_numel(info.shape), static_cast<int64_t>(dtype_size(info.dtype)), &bytes)) {
    fail(path, name, "size in bytes overflows int64");
  }
  Id dcpl(H5Dget_create_plist(d), H5Pclose, path, name, "cannot read creation properties");
  if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(info.shape.size());
    const int rank = H5Pget_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    if (rank != static_cast<int>(chunk.size())) fail_h5(path, name, "cannot read chunk dims");
    info.chunk.assign(chunk.begin(), chunk.end());
  }
  const int filters = H5Pget_nfilters(dcpl.get());
  if (filters < 0) fail_h5(path, name, "cannot read filters");
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0, config = 0, params[1] = {0};
    size_t num_params = 1;
    char filter_name[64];
    const H5Z_filter_t filter = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &num_params, params,
                                               sizeof filter_name, filter_name, &config);
    if (filter < 0) fail_h5(path, name, "cannot read filter " + std::to_string(i));
    if (filter == H5Z_FILTER_FLETCHER32) info.fletcher32 = true;
    if (filter == H5Z_FILTER_DEFLATE) info.deflate_level = num_params > 0 ? static_cast<int>(params[0]) : 0;
  }
  return info;
}

void H5File::create_dataset(const std::string& name, DType dtype, const Shape& inner, const DatasetOptions& options) {
  H5Lock lock;
  Impl& im = live(impl_);
  const std::string& path = im.path;
  if (options.deflate_level < -1 || options.deflate_level > 9) {
    fail(path, name, "deflate level " + std::to_string(options.deflate_level) + " outside -1..9");
  }
  CHECK_GE(options.chunk_rows, 0) << path << ": " << name;
  for (int64_t d : inner) CHECK_GT(d, 0) << path << ": " << name << ": inner dims " << shape_str(inner);
  const int64_t row_bytes = shape_numel(inner) * static_cast<int64_t>(dtype_size(dtype));
  Shape dims = {0}, max_dims = {0}, chunk = {chunk_rows(options, row_bytes)};
  for (int64_t d : inner) {
    dims.push_back(d);
    max_dims.push_back(d);
    chunk.push_back(d);
  }
  std::vector<hsize_t> h_dims = to_hsize(dims), h_max = to_hsize(max_dims), h_chunk = to_hsize(chunk);
  h_max[0] = H5S_UNLIMITED;
  const int rank = static_cast<int>(dims.size());
  Id space(H5Screate_simple(rank, h_dims.data(), h_max.data()), H5Sclose, path, name, "cannot create dataspace");
  Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, path, name, "cannot create creation properties");
  check(H5Pset_chunk(dcpl.get(), rank, h_chunk.data()), path, name, "cannot set chunk dims " + shape_str(chunk));
  if (options.deflate_level >= 0) {
    check(H5Pset_shuffle(dcpl.get()), path, name, "cannot add the shuffle filter");
    check(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(options.deflate_level)), path, name,
          "cannot add the deflate filter");
  }
  // Last in the pipeline, so the checksum covers the bytes exactly as stored.
  check(H5Pset_fletcher32(dcpl.get()), path, name, "cannot add the fletcher32 filter");
  Id dapl = dataset_access_plist(path, name);
  Id d(H5Dcreate2(im.fid(), name.c_str(), file_type(dtype), space.get(), H5P_DEFAULT, dcpl.get(), dapl.get()),
       H5Dclose, path, name, "cannot create dataset");
  im.datasets.insert_or_assign(name, std::move(d));
}

void H5File::append(const std::string& name, DType dtype, const void* data, int64_t rows) {
  H5Lock lock;
  Impl& im = live(impl_);
  const std::string& path = im.path;
  CHECK_GE(rows, 0) << path << ": " << name;
  const DatasetInfo stored = info(name);
  if (stored.dtype != dtype) {
    fail(path, name, std::string("stored as ") + dtype_name(stored.dtype) + ", appending " + dtype_name(dtype));
  }
  if (stored.shape.empty()) fail(path, name, "is a scalar, cannot append rows");
  if (rows == 0) return;
  const hid_t d = im.dataset(name);
  std::vector<hsize_t> grown = to_hsize(stored.shape), start(stored.shape.size(), 0), count = to_hsize(stored.shape);
  grown[0] += static_cast<hsize_t>(rows);
  start[0] = static_cast<hsize_t>(stored.shape[0]);
  count[0] = static_cast<hsize_t>(rows);
  check(H5Dset_extent(d, grown.data()), path, name, "cannot extend dataset");
  Id file_space(H5Dget_space(d), H5Sclose, path, name, "cannot read dataspace");
  check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), path,
        name, "cannot select rows");
  const int rank = static_cast<int>(count.size());
  Id memory_space(H5Screate_simple(rank, count.data(), nullptr), H5Sclose, path, name, "cannot create dataspace");
  check(H5Dwrite(d, memory_type(dtype), memory_space.get(), file_space.get(), H5P_DEFAULT, data), path, name,
        "cannot append " + std::to_string(rows) + " rows");
}

void H5File::read_rows(const std::string& name, DType dtype, int64_t row_begin, int64_t rows, void* out) const {
  H5Lock lock;
  Impl& im = live(impl_);
  const std::string& path = im.path;
  const DatasetInfo stored = info(name);
  if (stored.dtype != dtype) {
    fail(path, name, std::string("stored as ") + dtype_name(stored.dtype) + ", read as " + dtype_name(dtype));
  }
  if (stored.shape.empty()) fail(path, name, "is a scalar, expected rows");
  const int64_t n = stored.shape[0];
  int64_t row_end = 0;
  const std::string range = __builtin_add_overflow(row_begin, rows, &row_end)
                                ? std::to_string(rows) + " rows from row " + std::to_string(row_begin)
                                : "rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) + ")";
  if (row_begin < 0 || rows < 0 || row_begin > n || rows > n - row_begin) {
    fail(path, name, range + " outside the " + std::to_string(n) + " stored rows");
  }
  if (rows == 0) return;
  const hid_t d = im.dataset(name);
  std::vector<hsize_t> start(stored.shape.size(), 0), count = to_hsize(stored.shape);
  start[0] = static_cast<hsize_t>(row_begin);
  count[0] = static_cast<hsize_t>(rows);
  Id file_space(H5Dget_space(d), H5Sclose, path, name, "cannot read dataspace");
  check(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), path,
        name, "cannot select " + range);
  const int rank = static_cast<int>(count.size());
  Id memory_space(H5Screate_simple(rank, count.data(), nullptr), H5Sclose, path, name, "cannot create dataspace");
  check(H5Dread(d, memory_type(dtype), memory_space.get(), file_space.get(), H5P_DEFAULT, out), path, name,
        "cannot read " + range);
}

void H5File::check_schema(const std::string& schema, int64_t version) const {
  const std::string& path = live(impl_).path;
  const std::string stored = read_attr_string("schema");
  if (stored != schema) fail(path, "schema", "unsupported schema '" + stored + "', expected '" + schema + "'");
  const int64_t stored_version = read_attr_int("schema_version");
  if (stored_version != version) {
    fail(path, "schema_version", "schema_version " + std::to_string(stored_version) + ", this build reads " +
                                     std::to_string(version));
  }
}

int64_t H5File::check_dataset(const std::string& name, DType dtype, const Shape& inner) const {
  const std::string& path = live(impl_).path;
  const DatasetInfo stored = info(name);
  if (stored.dtype != dtype) {
    fail(path, name, std::string("stored as ") + dtype_name(stored.dtype) + ", the schema says " + dtype_name(dtype));
  }
  Shape expected = {stored.shape.empty() ? 0 : stored.shape[0]};
  expected.insert(expected.end(), inner.begin(), inner.end());
  if (stored.shape != expected) {
    fail(path, name, "shape " + shape_str(stored.shape) + ", expected " + shape_str(expected));
  }
  if (!stored.fletcher32) fail(path, name, "no fletcher32 checksum filter (the schema requires one)");
  return stored.shape[0];
}

std::vector<int64_t> H5File::read_offsets(const std::string& name, int64_t count, const std::string& data) const {
  const std::string& path = live(impl_).path;
  CHECK_GE(count, 1) << path << ": " << name;
  const int64_t stored = check_dataset(name, DType::i64, {});
  if (stored != count) {
    fail(path, name, std::to_string(stored) + " entries, expected " + std::to_string(count) + " (num_examples + 1)");
  }
  std::vector<int64_t> offsets(static_cast<size_t>(count));
  read_rows(name, DType::i64, 0, count, offsets.data());
  if (offsets.front() != 0) fail(path, name, "starts at " + std::to_string(offsets.front()) + ", expected 0");
  for (size_t i = 1; i < offsets.size(); ++i) {
    if (offsets[i] < offsets[i - 1]) {
      fail(path, name, "decreases at entry " + std::to_string(i) + ": " + std::to_string(offsets[i - 1]) + " -> " +
                           std::to_string(offsets[i]));
    }
  }
  const DatasetInfo rows = info(data);
  const int64_t total = rows.shape.empty() ? 0 : rows.shape[0];
  if (offsets.back() != total) {
    fail(path, name, "ends at " + std::to_string(offsets.back()) + " but " + data + " holds " + std::to_string(total) +
                         " rows");
  }
  return offsets;
}

}  // namespace px::data
