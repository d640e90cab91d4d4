// Checkpoint save and load: the manifest (protobuf text) and tensors.h5 written into step_<N>.tmp/ and
// renamed, `latest` swapped by rename, keep-last-K pruning, and loading that checks everything before applying.
#include "launcher/checkpoint.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <google/protobuf/text_format.h>

#include "core/autograd/grad_mode.h"
#include "core/ops/factory.h"
#include "core/ops/join.h"
#include "core/ops/view.h"
#include "core/util/check.h"
#include "core/util/durable_file.h"
#include "core/util/error.h"
#include "data/hdf5_file.h"
#include "data/text_proto.h"
#include "parallel/tp/shard_spec.h"

namespace px {
namespace {

namespace fs = std::filesystem;

constexpr int kFormatVersion = 1;
constexpr char kCheckpointsDir[] = "checkpoints";
constexpr char kManifestFile[] = "manifest.pbtxt";
constexpr char kTensorsFile[] = "tensors.h5";
constexpr char kLatestFile[] = "latest";
constexpr char kTmpSuffix[] = ".tmp";  // directories being written, replaced or deleted
constexpr char kModelPrefix[] = "model/";
constexpr char kOptimPrefix[] = "optim/";

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw CheckpointError(where + ": " + what);
}

// The last OS error as text; call right after the failing call.
std::string os_error() { return std::strerror(errno); }

// ---- names and paths ----

std::string checkpoints_root(const std::string& run_dir) { return (fs::path(run_dir) / kCheckpointsDir).string(); }
std::string step_name(int64_t step) { return "step_" + std::to_string(step); }
std::string join(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

// Entry names in the manifest: "model/<state dict key>", "optim/<state key>/<parameter name>".
std::string model_entry(const std::string& key) { return kModelPrefix + key; }
std::string optim_entry(const std::string& key, const std::string& param) {
  return std::string(kOptimPrefix) + key + "/" + param;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// N for a name spelled exactly "step_<N>" (canonical decimal, no sign, no leading zeros), else nullopt.
std::optional<int64_t> parse_step_name(const std::string& name) {
  const std::string digits = name.substr(std::min(name.size(), sizeof("step_") - 1));
  if (!starts_with(name, "step_") || digits.empty() || digits.size() > 18) return std::nullopt;
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  const int64_t step = std::stoll(digits);
  if (name != step_name(step)) return std::nullopt;
  return step;
}

// A step directory with its manifest, which is written last: a complete checkpoint.
bool is_complete(const std::string& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_regular_file(join(dir, kManifestFile), ec);
}

// The dataset holding entry `name`: '/' is HDF5's group separator, so it becomes ':'.
std::string dataset_name(const std::string& entry_name) {
  std::string out = entry_name;
  std::replace(out.begin(), out.end(), '/', ':');
  return out;
}

// ---- file operations; every failure is a CheckpointError naming the path ----

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open: " + os_error());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail(path, "cannot read");
  return text.str();
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) fail(path, "cannot create directory: " + ec.message());
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) fail(path, "cannot remove: " + ec.message());
}

// Moves the finished `tmp` directory to `final_dir`. An existing `final_dir` (a re-save of the same step) is
// swapped out atomically with renameat2(RENAME_EXCHANGE) where the filesystem supports it, else moved aside
// first; either way the old one ends in a *.tmp directory that is then removed.
void install_directory(const std::string& tmp, const std::string& final_dir) {
  if (::rename(tmp.c_str(), final_dir.c_str()) == 0) return;
  if (errno != ENOTEMPTY && errno != EEXIST) fail(tmp, "cannot rename to " + final_dir + ": " + os_error());
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) == 0) {
    remove_tree(tmp);  // now the replaced checkpoint
    return;
  }
  if (errno != EINVAL && errno != ENOSYS) fail(tmp, "cannot exchange with " + final_dir + ": " + os_error());
  const std::string replaced = final_dir + ".replaced" + kTmpSuffix;
  remove_tree(replaced);
  rename_file<CheckpointError>(final_dir, replaced);
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    const std::string error = os_error();
    ::rename(replaced.c_str(), final_dir.c_str());  // best effort: put the previous checkpoint back
    fail(tmp, "cannot rename to " + final_dir + ": " + error);
  }
  remove_tree(replaced);
}

// ---- tensors on disk ----

// How a tensor is stored (see TensorEntry.dataset in checkpoint.proto).
struct DiskLayout {
  DType dtype = DType::u8;
  Shape shape;  // (rows, inner...)
};

bool stored_natively(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::i32 || t == DType::i64 || t == DType::u8;
}

DiskLayout disk_layout(DType dtype, const Shape& shape) {
  DiskLayout layout;
  layout.dtype = stored_natively(dtype) ? dtype : DType::u8;
  layout.shape = shape.empty() ? Shape{1} : shape;
  if (shape_numel(shape) == 0) layout.shape = {0};
  if (!stored_natively(dtype) && dtype_size(dtype) > 1) layout.shape.push_back(static_cast<int64_t>(dtype_size(dtype)));
  return layout;
}

std::optional<DType> parse_dtype(const std::string& name) {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8, DType::boolean})
    if (name == dtype_name(t)) return t;
  return std::nullopt;
}

std::string crc32_hex(const void* data, size_t bytes) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(data);
  constexpr size_t kPiece = size_t{1} << 30;  // zlib takes uInt lengths
  for (size_t done = 0; done < bytes; done += kPiece)
    crc = ::crc32(crc, p + done, static_cast<uInt>(std::min(kPiece, bytes - done)));
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return hex;
}

size_t byte_size(const Tensor& t) { return static_cast<size_t>(t.numel()) * dtype_size(t.dtype()); }

// `t` (any shape) as a contiguous host tensor (itself when it already is one), detached from autograd.
Tensor host_contiguous(const Tensor& t) {
  NoGradGuard no_grad;
  Tensor host = t.detach();
  if (!host.device().is_cpu()) host = to_device(host, cpu());
  return contiguous(host);
}

// Device tensors are read back in packs of at most this many bytes (one device-to-host copy each).
constexpr int64_t kStageBytes = int64_t{64} << 20;

// Host copies of `tensors` (any shapes, dtypes and devices; contiguous, detached; host tensors as they are): the
// device tensors of one device and dtype are packed into device buffers of at most kStageBytes (a tensor larger
// than that alone), each read back in one copy, so a save waits on a GPU a few times instead of once per tensor.
std::vector<Tensor> stage_to_host(const std::vector<Tensor>& tensors) {
  NoGradGuard no_grad;
  std::vector<Tensor> host(tensors.size());
  std::map<std::pair<std::string, DType>, std::vector<size_t>> groups;  // (device, dtype) -> indices
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].device().is_cpu()) {
      host[i] = host_contiguous(tensors[i]);
    } else {
      groups[{tensors[i].device().str(), tensors[i].dtype()}].push_back(i);
    }
  }
  const auto read_back = [&](const std::vector<size_t>& pack) {
    std::vector<Tensor> flat;  // (n_i) each
    for (size_t i : pack) flat.push_back(reshape(contiguous(tensors[i].detach()), {tensors[i].numel()}));
    const Tensor packed = to_device(flat.size() == 1 ? flat[0] : cat(flat, 0), cpu());  // (sum n_i)
    int64_t offset = 0;
    for (size_t i : pack) {
      host[i] = reshape(narrow(packed, 0, offset, tensors[i].numel()), tensors[i].shape());
      offset += tensors[i].numel();
    }
  };
  for (const auto& [key, indices] : groups) {
    std::vector<size_t> pack;
    int64_t bytes = 0;
    for (size_t i : indices) {
      const auto size = static_cast<int64_t>(byte_size(tensors[i]));
      if (!pack.empty() && bytes + size > kStageBytes) {
        read_back(pack);
        pack.clear();
        bytes = 0;
      }
      pack.push_back(i);
      bytes += size;
    }
    if (!pack.empty()) read_back(pack);
  }
  return host;
}

// Writes `t` (any shape, dtype and device) as dataset dataset_name(name) of `file`; records its entry in `manifest`.
void write_tensor(data::H5File& file, const std::string& name, const Tensor& t, ckpt::proto::Manifest& manifest) {
  const Tensor host = host_contiguous(t);
  const DiskLayout layout = disk_layout(host.dtype(), host.shape());
  const std::string dataset = dataset_name(name);
  // Chunks of at most ~1 MiB, never more rows than the tensor has: a bias is one small chunk, not 1 MiB.
  const Shape inner(layout.shape.begin() + 1, layout.shape.end());
  const int64_t row_bytes = std::max<int64_t>(1, shape_numel(inner) * static_cast<int64_t>(dtype_size(layout.dtype)));
  data::DatasetOptions options;
  options.chunk_rows = std::clamp<int64_t>((int64_t{1} << 20) / row_bytes, 1, std::max<int64_t>(1, layout.shape[0]));
  file.create_dataset(dataset, layout.dtype, inner, options);
  file.append(dataset, layout.dtype, host.raw_data(), layout.shape[0]);
  ckpt::proto::TensorEntry* entry = manifest.add_tensors();
  entry->set_name(name);
  entry->set_dtype(dtype_name(host.dtype()));
  for (int64_t d : host.shape()) entry->add_shape(d);
  entry->set_file(kTensorsFile);
  entry->set_dataset(dataset);
  entry->set_crc32(crc32_hex(host.raw_data(), byte_size(host)));
}

// The model's name of each optimizer parameter: the same TensorImpl, else the same storage, offset and shape.
std::string parameter_name(const std::vector<std::pair<std::string, Tensor>>& named, const Tensor& param) {
  for (const auto& [name, p] : named)
    if (p.impl() == param.impl()) return name;
  for (const auto& [name, p] : named)
    if (p.storage() == param.storage() && p.offset() == param.offset() && p.shape() == param.shape()) return name;
  return "";
}

// The spec of `t` when it is a sharded parameter of `model` under `layout`, else nullopt (replicated).
std::optional<parallel::ShardSpec> sharded_spec(const std::vector<std::pair<std::string, Tensor>>& named,
                                                const Tensor& t, const ShardLayout& layout) {
  if (layout.tp == nullptr || layout.tp->size() == 1) return std::nullopt;
  const auto it = layout.specs.find(parameter_name(named, t));
  if (it == layout.specs.end() || !it->second.sharded()) return std::nullopt;
  return it->second;
}

// Everything a checkpoint stores, as full (tp = 1) tensors.
struct FullState {
  std::vector<std::pair<std::string, Tensor>> model;  // state-dict key -> tensor
  struct Param {
    std::string name;
    int64_t step = 0;
    std::vector<std::pair<std::string, Tensor>> tensors;  // state key -> tensor
  };
  std::vector<Param> optimizer;

  uint64_t bytes() const {
    uint64_t total = 0;
    for (const auto& [key, t] : model) total += byte_size(t);
    for (const Param& p : optimizer)
      for (const auto& [key, t] : p.tensors) total += byte_size(t);
    return total;
  }
};

// Collective over layout.tp (and whatever the optimizer's full state needs, e.g. dp under ZeRO-1): every tensor
// staged to the host (stage_to_host), then every sharded one gathered, in the same order on every rank.
FullState gather_full_state(const nn::Module& model, const optim::Optimizer& optimizer, const ShardLayout& layout) {
  const std::vector<std::pair<std::string, Tensor>> named = model.named_parameters();
  const nn::StateDict model_state = model.state_dict();
  const std::vector<optim::FullParamState> optimizer_state = optimizer.gather_full_state();
  std::vector<Tensor> on_device;
  for (const auto& [key, t] : model_state) on_device.push_back(t);
  for (const optim::FullParamState& param_state : optimizer_state)
    for (const auto& [key, t] : param_state.state.tensors) on_device.push_back(t);
  const std::vector<Tensor> host = stage_to_host(on_device);
  size_t next = 0;
  auto full = [&](const Tensor& param) {
    const Tensor& t = host[next++];
    const std::optional<parallel::ShardSpec> spec = sharded_spec(named, param, layout);
    return spec ? parallel::gather_shards(t, *spec, *layout.tp) : t;
  };
  FullState state;
  for (const auto& [key, t] : model_state) state.model.emplace_back(key, full(t));
  for (const optim::FullParamState& param_state : optimizer_state) {
    FullState::Param saved;
    saved.name = parameter_name(named, param_state.param);
    CHECK(!saved.name.empty()) << "save_checkpoint: " << optimizer.name() << " parameter " << param_state.param.str()
                               << " is not a parameter of the " << model.type_name();
    saved.step = param_state.state.step;
    for (const auto& [key, t] : param_state.state.tensors) {
      CHECK(!key.empty() && key.find('/') == std::string::npos)
          << optimizer.name() << ": state key '" << key << "' must be non-empty without '/'";
      saved.tensors.emplace_back(key, full(param_state.param));
    }
    state.optimizer.push_back(std::move(saved));
  }
  return state;
}

// HDF5 1.10 can crash in H5Dclose after a write fails with ENOSPC/EFBIG, so a save that cannot fit is
// refused before it starts: the tensors' bytes plus 5% and 1 MiB for HDF5's metadata must be available.
void check_free_space(const std::string& dir, uint64_t bytes) {
  const uint64_t needed = bytes + bytes / 20 + (uint64_t{1} << 20);
  std::error_code ec;
  const fs::space_info space = fs::space(dir, ec);
  if (!ec && space.available < needed) {
    fail(dir, "no space for the checkpoint: " + std::to_string(space.available >> 20) + " MiB free, about " +
                  std::to_string(needed >> 20) + " MiB needed");
  }
}

// Writes <dir>/tensors.h5 (synced to disk) and returns the manifest that describes it and `state`.
ckpt::proto::Manifest write_tensors(const std::string& dir, const nn::Module& model, const FullState& full,
                                    const optim::Optimizer& optimizer, const TrainState& state,
                                    const std::string& config_text, const ShardLayout& layout) {
  ckpt::proto::Manifest manifest;
  manifest.set_format_version(kFormatVersion);
  manifest.set_step(state.step);
  manifest.set_config(config_text);
  manifest.set_world_size(layout.world_size);
  manifest.set_tp(layout.tp != nullptr ? layout.tp->size() : 1);
  manifest.set_model_kind(model.type_name());
  manifest.set_optimizer(optimizer.name());
  manifest.set_tokens_seen(state.tokens_seen);
  manifest.set_train_seconds(state.train_seconds);
  if (state.loss_scale) {
    ckpt::proto::LossScale& scale = *manifest.mutable_loss_scale();
    scale.set_scale(state.loss_scale->scale);
    scale.set_good_steps(state.loss_scale->good_steps);
    scale.set_hysteresis_left(state.loss_scale->hysteresis_left);
  }
  ckpt::proto::Cursor* cursor = manifest.mutable_data_cursor();
  cursor->set_seed(state.cursor.seed);
  cursor->set_epoch(state.cursor.epoch);
  cursor->set_position(state.cursor.position);
  cursor->set_batch_in_window(state.cursor.batch_in_window);
  std::set<std::string> rng_names;
  for (const auto& [name, gen] : state.rngs) {
    CHECK(gen != nullptr) << "save_checkpoint: rng '" << name << "' is null";
    CHECK(rng_names.insert(name).second) << "save_checkpoint: rng '" << name << "' listed twice";
    ckpt::proto::RngState* rng = manifest.add_rng();
    rng->set_name(name);
    rng->set_seed(gen->seed());
    rng->set_offset(gen->offset());
  }

  const std::string path = join(dir, kTensorsFile);
  try {
    data::H5File file = data::H5File::create(path);
    for (const auto& [key, t] : full.model) write_tensor(file, model_entry(key), t, manifest);
    for (const FullState::Param& param : full.optimizer) {
      ckpt::proto::OptimizerParamState* saved = manifest.add_optimizer_state();
      saved->set_param(param.name);
      saved->set_step(param.step);
      for (const auto& [key, t] : param.tensors) {
        saved->add_keys(key);
        write_tensor(file, optim_entry(key, param.name), t, manifest);
      }
    }
    file.close();
  } catch (const DataError& e) {
    throw CheckpointError(e.what());
  }
  sync_to_disk<CheckpointError>(path, false);
  return manifest;
}

// ---- manifest ----

// Structural checks of a parsed manifest; each failure names `path` and the offending field.
void check_manifest(const ckpt::proto::Manifest& m, const std::string& path) {
  if (m.format_version() != kFormatVersion) {
    fail(path, "format_version " + std::to_string(m.format_version()) + ", this build reads " +
                   std::to_string(kFormatVersion));
  }
  if (m.step() < 0) fail(path, "step " + std::to_string(m.step()) + " is negative");
  std::set<std::string> names;
  for (const ckpt::proto::TensorEntry& e : m.tensors()) {
    const std::string where = path + ": tensor '" + e.name() + "'";
    if (!starts_with(e.name(), kModelPrefix) && !starts_with(e.name(), kOptimPrefix))
      fail(where, "name must start with model/ or optim/");
    if (!names.insert(e.name()).second) fail(where, "listed twice");
    if (!parse_dtype(e.dtype())) fail(where, "unknown dtype '" + e.dtype() + "'");
    for (int64_t d : e.shape())
      if (d < 0) fail(where, "negative dim in shape");
    if (e.file().empty() || e.file().find('/') != std::string::npos || e.file() == "." || e.file() == "..")
      fail(where, "file '" + e.file() + "' is not a file name in the checkpoint directory");
    if (e.dataset().empty()) fail(where, "no dataset");
    if (e.crc32().size() != 8 || !std::all_of(e.crc32().begin(), e.crc32().end(), ::isxdigit))
      fail(where, "crc32 '" + e.crc32() + "' is not 8 hex digits");
    // Whole tensors only: resharding a tensor-parallel checkpoint is not implemented yet.
    const bool whole = e.slice_start().empty() && e.slice_length().empty();
    bool covers = e.slice_start().size() == e.shape().size() && e.slice_length().size() == e.shape().size();
    for (int i = 0; covers && i < e.shape().size(); ++i)
      covers = e.slice_start(i) == 0 && e.slice_length(i) == e.shape(i);
    if (!whole && !covers)
      fail(where, "holds a slice of the tensor; sliced (tensor-parallel) checkpoints cannot be loaded yet");
  }
  std::set<std::string> params;
  for (const ckpt::proto::OptimizerParamState& s : m.optimizer_state()) {
    const std::string where = path + ": optimizer_state '" + s.param() + "'";
    if (s.param().empty()) fail(path, "optimizer_state without a param name");
    if (!params.insert(s.param()).second) fail(where, "listed twice");
    if (s.step() < 0) fail(where, "step " + std::to_string(s.step()) + " is negative");
    for (const std::string& key : s.keys())
      if (!names.count(optim_entry(key, s.param())))
        fail(where, "its tensor " + optim_entry(key, s.param()) + " is not listed");
  }
  std::set<std::string> rngs;
  for (const ckpt::proto::RngState& r : m.rng())
    if (!rngs.insert(r.name()).second) fail(path, "rng '" + r.name() + "' listed twice");
}

// ---- loading ----

// Reads the listed entries (all of them, checked against their manifest entry and checksum) as host tensors.
std::map<std::string, Tensor> read_tensors(const std::string& dir,
                                           const std::map<std::string, const ckpt::proto::TensorEntry*>& entries) {
  std::map<std::string, Tensor> out;
  std::map<std::string, data::H5File> files;
  try {
    for (const auto& [name, e] : entries) {
      const std::string path = join(dir, e->file());
      auto it = files.find(e->file());
      if (it == files.end()) it = files.emplace(e->file(), data::H5File::open_read(path)).first;
      const data::H5File& file = it->second;
      const DType dtype = *parse_dtype(e->dtype());
      const Shape shape(e->shape().begin(), e->shape().end());
      const DiskLayout layout = disk_layout(dtype, shape);
      const std::string where = path + ": " + e->name();
      if (!file.has_dataset(e->dataset())) fail(where, "no dataset '" + e->dataset() + "'");
      const data::DatasetInfo stored = file.info(e->dataset());
      if (stored.dtype != layout.dtype || stored.shape != layout.shape) {
        fail(where, std::string("dataset '") + e->dataset() + "' is " + dtype_name(stored.dtype) +
                        shape_str(stored.shape) + ", the manifest's " + e->dtype() + shape_str(shape) +
                        " needs " + dtype_name(layout.dtype) + shape_str(layout.shape));
      }
      Tensor t = Tensor::empty(shape, dtype);
      if (layout.shape[0] > 0) file.read_rows(e->dataset(), layout.dtype, 0, layout.shape[0], t.raw_data());
      const std::string crc = crc32_hex(t.raw_data(), byte_size(t));
      std::string expected = e->crc32();
      std::transform(expected.begin(), expected.end(), expected.begin(), ::tolower);
      if (crc != expected) fail(where, "checksum mismatch (manifest " + expected + ", data " + crc + ")");
      out.emplace(e->name(), std::move(t));
    }
  } catch (const DataError& e) {
    throw CheckpointError(e.what());
  }
  return out;
}

// One parameter of the optimizer being loaded and its saved state (null: it had none).
struct ParamLoad {
  Tensor param;
  const ckpt::proto::OptimizerParamState* saved = nullptr;
};

// A checkpoint being loaded into a model of `layout`: the listing checks (each a CheckpointError naming the
// entry), then the tensors cut to this rank's part. Nothing is modified until every check has passed.
class CheckpointLoad {
 public:
  CheckpointLoad(const std::string& checkpoint_dir, const nn::Module& model, const ShardLayout& layout)
      : manifest_(read_manifest(checkpoint_dir)),
        manifest_path_(join(checkpoint_dir, kManifestFile)),
        model_(model),
        named_params_(model.named_parameters()),
        layout_(layout),
        tp_size_(layout.tp != nullptr ? layout.tp->size() : 1) {}

  const ckpt::proto::Manifest& manifest() const { return manifest_; }

  // Every model/ entry, and the optim/ entries when there is an optimizer to fill.
  std::map<std::string, const ckpt::proto::TensorEntry*> wanted_entries(bool with_optimizer) const {
    std::map<std::string, const ckpt::proto::TensorEntry*> wanted;
    for (const ckpt::proto::TensorEntry& e : manifest_.tensors())
      if (starts_with(e.name(), kModelPrefix) || with_optimizer) wanted.emplace(e.name(), &e);
    return wanted;
  }

  // The model's entries: the same keys, shapes and dtypes as its state dict, and no other.
  void check_model(const std::map<std::string, const ckpt::proto::TensorEntry*>& wanted,
                   const nn::StateDict& expected) const {
    for (const auto& [key, t] : expected) {
      const std::string name = model_entry(key);
      auto it = wanted.find(name);
      if (it == wanted.end()) fail(manifest_path_, name + ": missing (the " + model_.type_name() + " has it)");
      const Shape shape(it->second->shape().begin(), it->second->shape().end());
      if (shape != full_shape(t, t)) {
        fail(manifest_path_,
             name + ": shape " + shape_str(shape) + " in the checkpoint, the model has " + shape_str(full_shape(t, t)));
      }
      const DType saved = *parse_dtype(it->second->dtype());  // check_manifest: known
      if (saved != t.dtype() && !(is_floating(saved) && is_floating(t.dtype()))) {
        fail(manifest_path_,
             name + ": dtype " + it->second->dtype() + " in the checkpoint, the model has " + dtype_name(t.dtype()));
      }
    }
    for (const auto& [name, e] : wanted)
      if (starts_with(name, kModelPrefix) && !expected.count(name.substr(sizeof(kModelPrefix) - 1)))
        fail(manifest_path_, name + ": not a parameter or persistent buffer of the " + model_.type_name());
  }

  // The optimizer's parameters by name with their saved state: each saved state must belong to one of them,
  // with its shape, and every optim/ entry to a saved state.
  std::map<std::string, ParamLoad> plan_optimizer(const std::map<std::string, const ckpt::proto::TensorEntry*>& wanted,
                                                  const optim::Optimizer& optimizer) const {
    if (manifest_.optimizer() != optimizer.name())
      fail(manifest_path_, "optimizer state of " + manifest_.optimizer() + ", loading into " + optimizer.name());
    std::map<std::string, ParamLoad> loads;
    for (const Tensor& param : optimizer.model_params()) {
      const std::string name = parameter_name(named_params_, param);
      CHECK(!name.empty()) << "load_checkpoint: " << optimizer.name() << " parameter " << param.str()
                           << " is not a parameter of the " << model_.type_name();
      loads[name].param = param;
    }
    std::set<std::string> used;
    for (const ckpt::proto::OptimizerParamState& s : manifest_.optimizer_state()) {
      auto it = loads.find(s.param());
      if (it == loads.end())
        fail(manifest_path_, "optimizer_state '" + s.param() + "': not a parameter of the " + optimizer.name());
      it->second.saved = &s;
      for (const std::string& key : s.keys()) {
        const std::string name = optim_entry(key, s.param());
        const ckpt::proto::TensorEntry* e = wanted.at(name);  // check_manifest: listed
        used.insert(name);
        const Shape shape(e->shape().begin(), e->shape().end());
        const Tensor& param = it->second.param;
        if (shape != full_shape(param, param)) {
          fail(manifest_path_,
               name + ": shape " + shape_str(shape) + ", the parameter has " + shape_str(full_shape(param, param)));
        }
      }
    }
    for (const auto& [name, e] : wanted)
      if (starts_with(name, kOptimPrefix) && !used.count(name))
        fail(manifest_path_, name + ": not the state of any parameter in optimizer_state");
    return loads;
  }

  // The saved state of each random stream of `state`: every one must be in the checkpoint.
  std::vector<std::pair<Generator*, const ckpt::proto::RngState*>> plan_rngs(const TrainState& state) const {
    std::vector<std::pair<Generator*, const ckpt::proto::RngState*>> loads;
    for (const auto& [name, gen] : state.rngs) {
      CHECK(gen != nullptr) << "load_checkpoint: rng '" << name << "' is null";
      auto it = std::find_if(manifest_.rng().begin(), manifest_.rng().end(),
                             [&](const ckpt::proto::RngState& r) { return r.name() == name; });
      if (it == manifest_.rng().end()) fail(manifest_path_, "rng '" + name + "' is not in the checkpoint");
      loads.emplace_back(gen, &*it);
    }
    return loads;
  }

  // This rank's part of a full tensor read from the file that is `param` or its optimizer state.
  Tensor local_part(const Tensor& full, const Tensor& param) const {
    const std::optional<parallel::ShardSpec> spec = sharded_spec(named_params_, param, layout_);
    return spec ? parallel::shard_of(full, *spec, layout_.tp->rank(), tp_size_) : full;
  }

 private:
  // The tp = 1 shape of a local tensor that is `param` or its optimizer state.
  Shape full_shape(const Tensor& t, const Tensor& param) const {
    Shape shape = t.shape();
    if (const std::optional<parallel::ShardSpec> spec = sharded_spec(named_params_, param, layout_))
      shape[spec->dim] *= tp_size_;
    return shape;
  }

  const ckpt::proto::Manifest manifest_;
  const std::string manifest_path_;
  const nn::Module& model_;
  const std::vector<std::pair<std::string, Tensor>> named_params_;
  const ShardLayout& layout_;
  const int tp_size_;
};

}  // namespace

ckpt::proto::Manifest read_manifest(const std::string& checkpoint_dir) {
  const std::string path = join(checkpoint_dir, kManifestFile);
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(path, "no such file (not a complete checkpoint)");
  const std::string text = read_text_file(path);
  ckpt::proto::Manifest manifest;
  data::parse_text_proto<CheckpointError>(text, path, manifest);
  check_manifest(manifest, path);
  return manifest;
}

std::string save_checkpoint(const std::string& run_dir, const nn::Module& model, const optim::Optimizer& optimizer,
                            const TrainState& state, const std::string& config_text, int keep_last,
                            const ShardLayout& layout) {
  CHECK_GE(keep_last, 0) << "save_checkpoint: keep_last";
  CHECK_GE(state.step, 0) << "save_checkpoint: step";
  const std::string root = checkpoints_root(run_dir);
  const std::string name = step_name(state.step);
  const std::string final_dir = join(root, name);
  const std::string tmp_dir = final_dir + kTmpSuffix;
  const FullState full = gather_full_state(model, optimizer, layout);
  if (!layout.writer) return final_dir;
  make_dirs(root);
  remove_tree(tmp_dir);  // left by a save that died
  check_free_space(root, full.bytes());
  try {
    make_dirs(tmp_dir);
    const ckpt::proto::Manifest manifest = write_tensors(tmp_dir, model, full, optimizer, state, config_text, layout);
    std::string text;
    CHECK(google::protobuf::TextFormat::PrintToString(manifest, &text)) << "cannot print the manifest of " << final_dir;
    // Last: its presence marks the directory complete.
    write_file_synced<CheckpointError>(join(tmp_dir, kManifestFile), text);
    sync_to_disk<CheckpointError>(tmp_dir, true);
    install_directory(tmp_dir, final_dir);
    sync_to_disk<CheckpointError>(root, true);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);  // best effort; a leftover *.tmp is ignored and cleaned by the next save
    throw;
  }

  const std::string latest = join(root, kLatestFile);
  write_file_durably<CheckpointError>(latest, name + "\n");

  // Prune: stale *.tmp directories, and step directories beyond the newest keep_last (this one always kept).
  std::vector<std::pair<int64_t, std::string>> others;
  std::vector<std::string> stale;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string entry = it->path().filename().string();
    std::error_code type_ec;
    if (!it->is_directory(type_ec)) continue;
    if (starts_with(entry, "step_") && ends_with(entry, kTmpSuffix)) stale.push_back(it->path().string());
    const std::optional<int64_t> step = parse_step_name(entry);
    if (step && *step != state.step) others.emplace_back(*step, it->path().string());
  }
  if (ec) fail(root, "cannot list: " + ec.message());
  for (const std::string& dir : stale) remove_tree(dir);
  if (keep_last > 0) {
    std::sort(others.rbegin(), others.rend());
    for (size_t i = static_cast<size_t>(keep_last) - 1; i < others.size(); ++i) {
      // Renamed first, so that a removal that fails halfway leaves a *.tmp, never a damaged step_<N>.
      const std::string doomed = others[i].second + ".deleted" + kTmpSuffix;
      rename_file<CheckpointError>(others[i].second, doomed);
      remove_tree(doomed);
    }
  }
  return final_dir;
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  const std::string root = checkpoints_root(run_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return std::nullopt;
  const std::string latest = join(root, kLatestFile);
  std::string problem;
  if (fs::exists(latest, ec)) {
    std::string target = read_text_file(latest);
    while (!target.empty() && std::isspace(static_cast<unsigned char>(target.back()))) target.pop_back();
    if (parse_step_name(target) && is_complete(join(root, target))) return join(root, target);
    problem = latest + " names '" + target + "', which is not a complete checkpoint";
  } else {
    problem = latest + " is missing";
  }
  std::optional<std::pair<int64_t, std::string>> newest;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const std::optional<int64_t> step = parse_step_name(it->path().filename().string());
    if (step && is_complete(it->path().string()) && (!newest || *step > newest->first))
      newest.emplace(*step, it->path().string());
  }
  if (ec) fail(root, "cannot list: " + ec.message());
  if (!newest) return std::nullopt;
  LOG(WARNING) << problem << "; using the newest complete checkpoint " << newest->second;
  return newest->second;
}

ckpt::proto::Manifest load_checkpoint(const std::string& checkpoint_dir, nn::Module& model,
                                      optim::Optimizer* optimizer, TrainState* state, const ShardLayout& layout) {
  const CheckpointLoad load(checkpoint_dir, model, layout);
  const ckpt::proto::Manifest& manifest = load.manifest();
  const std::map<std::string, const ckpt::proto::TensorEntry*> wanted = load.wanted_entries(optimizer != nullptr);
  const nn::StateDict expected = model.state_dict();
  load.check_model(wanted, expected);
  const std::map<std::string, ParamLoad> param_loads =
      optimizer != nullptr ? load.plan_optimizer(wanted, *optimizer) : std::map<std::string, ParamLoad>{};
  const auto rng_loads = state != nullptr ? load.plan_rngs(*state)
                                          : std::vector<std::pair<Generator*, const ckpt::proto::RngState*>>{};

  // Everything is listed consistently; read and verify the data before touching anything.
  const std::map<std::string, Tensor> tensors = read_tensors(checkpoint_dir, wanted);

  nn::StateDict model_state;
  for (const auto& [key, t] : expected) {
    const Tensor part = load.local_part(tensors.at(model_entry(key)), t);
    model_state.emplace(key, part.dtype() == t.dtype() ? part : to_dtype(part, t.dtype()));  // another precision
  }
  model.load_state_dict(model_state, /*strict=*/true);
  if (optimizer != nullptr) {
    // Parameters never updated when saved have no entry: no state, as in a fresh optimizer.
    std::vector<optim::FullParamState> restored;
    for (const auto& [name, param_load] : param_loads) {
      if (param_load.saved == nullptr) continue;
      optim::FullParamState param_state{param_load.param, optim::ParamState{param_load.saved->step(), {}}};
      for (const std::string& key : param_load.saved->keys()) {
        param_state.state.tensors.emplace(key,
                                          load.local_part(tensors.at(optim_entry(key, name)), param_load.param));
      }
      restored.push_back(std::move(param_state));
    }
    optimizer->load_full_state(restored);
  }
  if (state != nullptr) {
    state->step = manifest.step();
    state->cursor.seed = manifest.data_cursor().seed();
    state->cursor.epoch = manifest.data_cursor().epoch();
    state->cursor.position = manifest.data_cursor().position();
    state->cursor.batch_in_window = manifest.data_cursor().batch_in_window();
    state->tokens_seen = manifest.tokens_seen();
    state->train_seconds = manifest.train_seconds();
    state->loss_scale.reset();
    if (manifest.has_loss_scale()) {
      state->loss_scale = optim::LossScalerState{manifest.loss_scale().scale(), manifest.loss_scale().good_steps(),
                                                 manifest.loss_scale().hysteresis_left()};
    }
    for (const auto& [gen, rng] : rng_loads) gen->set_state(rng->seed(), rng->offset());
  }
  return manifest;
}

}  // namespace px
