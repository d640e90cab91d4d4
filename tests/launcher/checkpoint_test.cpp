// Checkpoints: bitwise save/load round trips (model, AdamW state, cursor, RNGs), bit-identical resumed
// training, keep-last, `latest` fallbacks, and the CheckpointErrors for corrupt, mismatched or unwritable ones.
#include "launcher/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <google/protobuf/text_format.h>

#include "core/nn/dropout.h"
#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/sgd.h"
#include "data/hdf5_file.h"
#include "tests/common/gpu_skip.h"
#include "tests/common/temp_dir.h"

#ifdef PARALLAX_WITH_CUDA
#include "core/backend/cuda/cuda_backend.h"
#endif

namespace px {
namespace {

namespace fs = std::filesystem;

struct NetOptions {
  int64_t hidden = 8;
  bool bias = true;
  DType dtype = DType::f32;
};

// fc2(dropout(relu(fc1(x)))) plus two buffers that exercise the other storage layouts: a 0-d i64 counter
// and a bf16 vector (stored as raw bytes).
class TinyNet : public nn::Module {
 public:
  TinyNet(const NetOptions& o, Generator& init, Generator& dropout_gen) : Module("TinyNet") {
    fc1_ = register_module("fc1", std::make_shared<nn::Linear>(4, o.hidden, init, o.bias, o.dtype));
    dropout_ = register_module("dropout", std::make_shared<nn::Dropout>(0.25, dropout_gen));
    fc2_ = register_module("fc2", std::make_shared<nn::Linear>(o.hidden, 3, init, o.bias, o.dtype));
    updates_ = register_buffer("updates", zeros({}, DType::i64));
    scale_ = register_buffer("scale", from_vector(std::vector<double>{0.5, -1.25, 3.0}, {3}, DType::bf16));
  }
  // x (B, 4) -> (B, 3)
  Tensor forward(const Tensor& x) const { return fc2_->forward(dropout_->forward(relu(fc1_->forward(x)))); }
  void count_update() { *updates_.data<int64_t>() += 1; }

 private:
  std::shared_ptr<nn::Linear> fc1_, fc2_;
  std::shared_ptr<nn::Dropout> dropout_;
  Tensor updates_;  // () i64
  Tensor scale_;    // (3) bf16
};

// A model, its AdamW, and the random streams and counters of a training run.
struct TrainingRun {
  explicit TrainingRun(uint64_t init_seed, NetOptions o = {})
      : options(o), init_gen(init_seed), net(o, init_gen, dropout_gen), opt(net.parameters(), 1e-2) {
    state.rngs = {{"dropout", &dropout_gen}, {"data", &data_gen}};
  }

  // Steps of mean(y^2) on random inputs drawn from data_gen; advances the counters like a trainer would.
  void train(int steps) {
    for (int i = 0; i < steps; ++i) {
      const Tensor x = randn({5, 4}, data_gen, options.dtype);  // (5, 4)
      const Tensor y = net.forward(x);                          // (5, 3)
      backward(mean(mul(y, y)));
      opt.step();
      opt.zero_grad();
      net.count_update();
      state.step += 1;
      state.tokens_seen += 5;
      state.cursor.position += 5;
      state.train_seconds += 0.25;
    }
  }

  std::string save(const std::string& run_dir, int keep_last = 0) const {
    return save_checkpoint(run_dir, net, opt, state, "model { d_model: 8 }\n", keep_last);
  }
  ckpt::proto::Manifest load(const std::string& dir) { return load_checkpoint(dir, net, &opt, &state); }

  NetOptions options;
  Generator init_gen;
  Generator dropout_gen{11};
  Generator data_gen{22};
  TinyNet net;
  optim::AdamW opt;
  TrainState state;
};

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor c = contiguous(to_device(t.detach(), cpu()));
  const auto* p = static_cast<const uint8_t*>(c.raw_data());
  return {p, p + c.numel() * static_cast<int64_t>(dtype_size(c.dtype()))};
}

// Everything of a run a checkpoint restores, as bytes and numbers, for exact comparisons.
struct Snapshot {
  std::map<std::string, std::vector<uint8_t>> tensors;  // state dict and optimizer state tensors
  std::map<std::string, int64_t> optimizer_steps;
  int64_t step = 0, tokens_seen = 0;
  double train_seconds = 0;
  data::DataCursor cursor;
  std::vector<std::pair<uint64_t, uint64_t>> rngs;  // (seed, offset)
  bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(const TrainingRun& run) {
  Snapshot s;
  for (const auto& [name, t] : run.net.state_dict()) s.tensors["model/" + name] = bytes_of(t);
  for (const auto& [name, p] : run.net.named_parameters()) {
    const optim::ParamState* state = run.opt.state(p);
    if (state == nullptr) continue;
    s.optimizer_steps[name] = state->step;
    for (const auto& [key, t] : state->tensors) s.tensors["optim/" + key + "/" + name] = bytes_of(t);
  }
  s.step = run.state.step;
  s.tokens_seen = run.state.tokens_seen;
  s.train_seconds = run.state.train_seconds;
  s.cursor = run.state.cursor;
  for (const auto& [name, gen] : run.state.rngs) s.rngs.emplace_back(gen->seed(), gen->offset());
  return s;
}

// Runs f, which must throw px::CheckpointError whose what() contains every one of `parts`.
template <typename F>
void expect_checkpoint_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no CheckpointError; expected one mentioning " << (parts.empty() ? "" : parts.front());
  } catch (const CheckpointError& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

void write_manifest(const std::string& dir, const ckpt::proto::Manifest& manifest) {
  std::string text;
  ASSERT_TRUE(google::protobuf::TextFormat::PrintToString(manifest, &text));
  write_file(dir + "/manifest.pbtxt", text);
}

// The step_* entries of a run's checkpoints directory, sorted.
std::vector<std::string> step_entries(const std::string& run_dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(run_dir + "/checkpoints"))
    if (e.path().filename().string().rfind("step_", 0) == 0) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class CheckpointTest : public test::TempDirTest {
 protected:
  std::string run_dir() const { return path("run"); }
  std::string step_dir(int64_t step) const { return run_dir() + "/checkpoints/step_" + std::to_string(step); }
};

class CheckpointDTypeTest : public CheckpointTest, public ::testing::WithParamInterface<DType> {};

TEST_P(CheckpointDTypeTest, RoundTripRestoresEverythingBitwise) {
  TrainingRun trained(1, {.dtype = GetParam()});
  trained.train(3);
  trained.state.cursor = {7, 1, 42, 2};
  const std::string dir = trained.save(run_dir());
  EXPECT_EQ(dir, step_dir(3));
  EXPECT_EQ(read_file(run_dir() + "/checkpoints/latest"), "step_3\n");

  TrainingRun fresh(2, {.dtype = GetParam()});
  ASSERT_FALSE(snapshot(fresh) == snapshot(trained));  // a different init, so the load must do the work
  const ckpt::proto::Manifest manifest = fresh.load(dir);
  const Snapshot expected = snapshot(trained), loaded = snapshot(fresh);
  EXPECT_EQ(loaded.tensors, expected.tensors);
  EXPECT_EQ(loaded.optimizer_steps, expected.optimizer_steps);
  EXPECT_EQ(loaded.optimizer_steps.at("fc1.weight"), 3);
  EXPECT_TRUE(loaded.tensors.count("optim/exp_avg/fc2.bias") && loaded.tensors.count("optim/exp_avg_sq/fc1.weight"));
  EXPECT_EQ(loaded.cursor, (data::DataCursor{7, 1, 42, 2}));
  EXPECT_EQ(loaded, expected);
  EXPECT_EQ(manifest.step(), 3);
  EXPECT_EQ(manifest.config(), "model { d_model: 8 }\n");
  EXPECT_EQ(manifest.optimizer(), "AdamW");
  EXPECT_EQ(manifest.model_kind(), "TinyNet");
}

TEST_P(CheckpointDTypeTest, ResumedTrainingIsBitIdentical) {
  TrainingRun uninterrupted(1, {.dtype = GetParam()});
  uninterrupted.train(6);

  TrainingRun first_half(1, {.dtype = GetParam()});
  first_half.train(3);
  const std::string dir = first_half.save(run_dir());
  TrainingRun resumed(5, {.dtype = GetParam()});
  resumed.load(dir);
  resumed.train(3);
  EXPECT_EQ(snapshot(resumed), snapshot(uninterrupted));
}

// bf16/f16: the f32 master weights and moments are optimizer state like any other.
INSTANTIATE_TEST_SUITE_P(DTypes, CheckpointDTypeTest, ::testing::Values(DType::f32, DType::f64, DType::bf16,
                                                                        DType::f16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// A run on the GPU saves with one device-to-host copy per (device, dtype) pack, not one per tensor, and its checkpoint
// resumes on the CPU bit for bit; a CPU checkpoint loads onto a GPU model the same way.
TEST_F(CheckpointTest, GpuStateIsStagedInFewCopiesAndResumesOnEitherDevice) {
  if (const std::string why = test::gpu_skip_reason(); !why.empty()) GTEST_SKIP() << why;
#ifdef PARALLAX_WITH_CUDA
  TrainingRun gpu_run(1);
  gpu_run.net.to(cuda(0));
  for (int i = 0; i < 2; ++i) {
    const Tensor y = gpu_run.net.forward(to_device(randn({5, 4}, gpu_run.data_gen), cuda(0)));  // (5, 3)
    backward(mean(mul(y, y)));
    gpu_run.opt.step();
    gpu_run.opt.zero_grad();
    gpu_run.state.step += 1;
  }
  const uint64_t syncs_before = cuda_host_syncs();
  const std::string dir = gpu_run.save(run_dir());
  // Three packs: the f32 parameters and AdamW moments, the i64 counter, the bf16 buffer.
  EXPECT_LE(cuda_host_syncs() - syncs_before, 3u);
  TrainingRun cpu_run(2);
  cpu_run.load(dir);
  EXPECT_TRUE(cpu_run.net.named_parameters().front().second.device().is_cpu());
  EXPECT_EQ(snapshot(cpu_run), snapshot(gpu_run));

  cpu_run.state.step += 1;
  const std::string cpu_dir = cpu_run.save(run_dir());
  TrainingRun gpu_again(3);
  gpu_again.net.to(cuda(0));
  gpu_again.load(cpu_dir);
  EXPECT_FALSE(gpu_again.net.named_parameters().front().second.device().is_cpu());
  EXPECT_EQ(snapshot(gpu_again), snapshot(cpu_run));
#endif
}

// An f16 run's loss scale comes back; a run without one (f32, bf16) writes none and reads none.
TEST_F(CheckpointTest, LossScaleRoundTrips) {
  TrainingRun trained(1);
  trained.train(1);
  const std::string unscaled = trained.save(path("unscaled"));
  trained.state.loss_scale = optim::LossScalerState{1024.0, 7, 1};
  const std::string scaled = trained.save(run_dir());
  EXPECT_NE(read_file(scaled + "/manifest.pbtxt").find("loss_scale"), std::string::npos);
  EXPECT_EQ(read_file(unscaled + "/manifest.pbtxt").find("loss_scale"), std::string::npos);

  TrainingRun fresh(2);
  fresh.load(scaled);
  ASSERT_TRUE(fresh.state.loss_scale.has_value());
  EXPECT_EQ(fresh.state.loss_scale->scale, 1024.0);
  EXPECT_EQ(fresh.state.loss_scale->good_steps, 7);
  EXPECT_EQ(fresh.state.loss_scale->hysteresis_left, 1);
  fresh.load(unscaled);
  EXPECT_FALSE(fresh.state.loss_scale.has_value());
}

// train.precision may change on resume. bf16 -> f32: the f32 weights are the bf16 run's f32 masters, exactly, and
// its moments carry over; f32 -> bf16: the weights are the f32 ones rounded to bf16 (the master starts from them).
TEST_F(CheckpointTest, ResumesInAnotherPrecision) {
  TrainingRun half(1, {.dtype = DType::bf16});
  half.train(3);
  const std::string half_dir = half.save(path("half"));
  TrainingRun full(2, {.dtype = DType::f32});
  full.load(half_dir);
  const auto half_params = half.net.named_parameters(), full_params = full.net.named_parameters();
  ASSERT_EQ(full_params.size(), half_params.size());
  for (size_t i = 0; i < full_params.size(); ++i) {
    const std::string& name = full_params[i].first;
    ASSERT_EQ(half_params[i].first, name);
    EXPECT_EQ(full_params[i].second.dtype(), DType::f32) << name;
    const optim::ParamState* half_state = half.opt.state(half_params[i].second);
    const optim::ParamState* full_state = full.opt.state(full_params[i].second);
    ASSERT_TRUE(half_state != nullptr && full_state != nullptr) << name;
    EXPECT_EQ(bytes_of(full_params[i].second), bytes_of(half_state->tensors.at(optim::kMasterKey))) << name;
    EXPECT_EQ(full_state->tensors.count(optim::kMasterKey), 0u) << name << ": an f32 parameter is its own master";
    EXPECT_EQ(bytes_of(full_state->tensors.at("exp_avg")), bytes_of(half_state->tensors.at("exp_avg"))) << name;
    EXPECT_EQ(full_state->step, 3) << name;
  }
  full.train(1);  // and trains on

  const std::string full_dir = full.save(path("full"));
  TrainingRun again(3, {.dtype = DType::bf16});
  again.load(full_dir);
  const auto expected = full.net.named_parameters(), loaded = again.net.named_parameters();
  for (size_t i = 0; i < loaded.size(); ++i) {
    EXPECT_EQ(loaded[i].second.dtype(), DType::bf16) << loaded[i].first;
    EXPECT_EQ(bytes_of(loaded[i].second), bytes_of(to_dtype(expected[i].second, DType::bf16))) << loaded[i].first;
  }
  again.train(1);
  for (const auto& [name, p] : again.net.named_parameters())
    EXPECT_EQ(again.opt.state(p)->tensors.at(optim::kMasterKey).dtype(), DType::f32) << name;
}

// The on-disk schema documented in checkpoint.proto: dataset names, row layout, raw-byte dtypes, fletcher32.
TEST_F(CheckpointTest, TensorsFileLayout) {
  TrainingRun run(1);
  run.train(1);
  const std::string dir = run.save(run_dir());
  const data::H5File file = data::H5File::open_read(dir + "/tensors.h5");
  const data::DatasetInfo weight = file.info("model:fc1.weight");
  EXPECT_EQ(weight.dtype, DType::f32);
  EXPECT_EQ(weight.shape, (Shape{8, 4}));
  EXPECT_TRUE(weight.fletcher32);
  EXPECT_EQ(file.info("optim:exp_avg_sq:fc1.weight").shape, (Shape{8, 4}));
  EXPECT_EQ(file.info("model:updates").dtype, DType::i64);
  EXPECT_EQ(file.info("model:updates").shape, (Shape{1}));
  EXPECT_EQ(file.read_all<int64_t>("model:updates", DType::i64), std::vector<int64_t>{1});
  EXPECT_EQ(file.info("model:scale").dtype, DType::u8);
  EXPECT_EQ(file.info("model:scale").shape, (Shape{3, 2}));

  const ckpt::proto::Manifest manifest = read_manifest(dir);
  auto entry = std::find_if(manifest.tensors().begin(), manifest.tensors().end(),
                            [](const auto& e) { return e.name() == "model/scale"; });
  ASSERT_NE(entry, manifest.tensors().end());
  EXPECT_EQ(entry->dtype(), "bf16");
  EXPECT_EQ(entry->dataset(), "model:scale");
  EXPECT_EQ(entry->file(), "tensors.h5");
  EXPECT_EQ(entry->crc32().size(), 8u);
}

TEST_F(CheckpointTest, LoadsWithoutOptimizerOrState) {
  TrainingRun trained(1);
  trained.train(2);
  const std::string dir = trained.save(run_dir());
  TrainingRun fresh(2);
  load_checkpoint(dir, fresh.net, nullptr, nullptr);
  EXPECT_EQ(snapshot(fresh).tensors.at("model/fc2.weight"), snapshot(trained).tensors.at("model/fc2.weight"));
  EXPECT_EQ(fresh.opt.state(fresh.net.parameters()[0]), nullptr);
  EXPECT_EQ(fresh.state.step, 0);
}

TEST_F(CheckpointTest, KeepLastDeletesOlderDirectories) {
  TrainingRun run(1);
  for (int i = 0; i < 5; ++i) {
    run.train(1);
    run.save(run_dir(), /*keep_last=*/2);
  }
  EXPECT_EQ(step_entries(run_dir()), (std::vector<std::string>{"step_4", "step_5"}));
  EXPECT_EQ(read_file(run_dir() + "/checkpoints/latest"), "step_5\n");
  EXPECT_EQ(latest_checkpoint(run_dir()), step_dir(5));

  for (int i = 0; i < 2; ++i) {  // keep_last 0 deletes nothing
    run.train(1);
    run.save(run_dir(), 0);
  }
  EXPECT_EQ(step_entries(run_dir()), (std::vector<std::string>{"step_4", "step_5", "step_6", "step_7"}));

  // An older step saved later is never the one deleted: it counts as one of the keep_last.
  run.state.step = 2;
  run.save(run_dir(), 2);
  EXPECT_EQ(step_entries(run_dir()), (std::vector<std::string>{"step_2", "step_7"}));
  EXPECT_EQ(latest_checkpoint(run_dir()), step_dir(2));
}

TEST_F(CheckpointTest, ResaveAtTheSameStepReplacesTheDirectory) {
  TrainingRun run(1);
  run.train(3);
  run.save(run_dir());
  run.train(1);
  run.state.step = 3;  // e.g. a signal-triggered save right after the periodic one
  run.save(run_dir());
  EXPECT_EQ(step_entries(run_dir()), (std::vector<std::string>{"step_3"}));
  TrainingRun fresh(2);
  fresh.load(step_dir(3));
  EXPECT_EQ(snapshot(fresh), snapshot(run));
}

TEST_F(CheckpointTest, NoCheckpointIsNullopt) {
  EXPECT_EQ(latest_checkpoint(run_dir()), std::nullopt);
  fs::create_directories(run_dir() + "/checkpoints/step_4.tmp");
  EXPECT_EQ(latest_checkpoint(run_dir()), std::nullopt);
}

TEST_F(CheckpointTest, StaleTmpIsIgnoredAndCleanedOnTheNextSave) {
  TrainingRun run(1);
  run.train(2);
  run.save(run_dir());
  const std::string stale = run_dir() + "/checkpoints/step_5.tmp";
  fs::create_directories(stale);
  fs::copy_file(step_dir(2) + "/manifest.pbtxt", stale + "/manifest.pbtxt");
  EXPECT_EQ(latest_checkpoint(run_dir()), step_dir(2));
  fs::remove(run_dir() + "/checkpoints/latest");
  EXPECT_EQ(latest_checkpoint(run_dir()), step_dir(2));  // the fallback skips *.tmp too
  run.train(1);
  run.save(run_dir());
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_EQ(step_entries(run_dir()), (std::vector<std::string>{"step_2", "step_3"}));
}

TEST_F(CheckpointTest, DanglingLatestFallsBackToTheNewestCompleteCheckpoint) {
  TrainingRun run(1);
  run.train(1);
  run.save(run_dir());
  run.train(1);
  run.save(run_dir());
  fs::create_directories(step_dir(3));  // incomplete: no manifest
  for (const char* content : {"step_9\n", "step_3\n", "garbage", ""}) {
    write_file(run_dir() + "/checkpoints/latest", content);
    EXPECT_EQ(latest_checkpoint(run_dir()), step_dir(2)) << "latest: '" << content << "'";
  }
  fs::remove(run_dir() + "/checkpoints/latest");
  EXPECT_EQ(latest_checkpoint(run_dir()), step_dir(2));
  fs::remove_all(step_dir(1));
  fs::remove_all(step_dir(2));
  EXPECT_EQ(latest_checkpoint(run_dir()), std::nullopt);
}

// A byte of fc1.weight flipped inside the HDF5 file: fletcher32 catches it and the load changes nothing.
TEST_F(CheckpointTest, CorruptedDataIsCheckpointError) {
  TrainingRun run(1);
  run.train(2);
  const std::string dir = run.save(run_dir());
  const std::string h5 = dir + "/tensors.h5";
  std::string bytes = read_file(h5);
  const std::vector<uint8_t> weight = bytes_of(run.net.state_dict().at("fc1.weight"));
  const size_t at = bytes.find(std::string(weight.begin(), weight.end()));
  ASSERT_NE(at, std::string::npos) << "fc1.weight's bytes are stored uncompressed";
  bytes[at + weight.size() / 2] ^= 0x10;
  write_file(h5, bytes);

  TrainingRun target(2);
  target.train(1);
  const Snapshot before = snapshot(target);
  expect_checkpoint_error([&] { target.load(dir); }, {h5, "fc1.weight"});
  EXPECT_EQ(snapshot(target), before);
}

TEST_F(CheckpointTest, TruncatedFileIsCheckpointError) {
  TrainingRun run(1);
  run.train(1);
  const std::string dir = run.save(run_dir());
  const std::string h5 = dir + "/tensors.h5";
  fs::resize_file(h5, fs::file_size(h5) / 2);
  TrainingRun target(2);
  const Snapshot before = snapshot(target);
  expect_checkpoint_error([&] { target.load(dir); }, {h5});
  EXPECT_EQ(snapshot(target), before);
}

// The manifest's checksum no longer matching the data (which HDF5 itself finds intact).
TEST_F(CheckpointTest, ChecksumMismatchNamesTheTensor) {
  TrainingRun run(1);
  run.train(1);
  const std::string dir = run.save(run_dir());
  ckpt::proto::Manifest manifest = read_manifest(dir);
  for (auto& e : *manifest.mutable_tensors()) {
    if (e.name() != "model/fc2.weight") continue;
    std::string crc = e.crc32();
    crc[0] = crc[0] == '0' ? '1' : '0';
    e.set_crc32(crc);
  }
  write_manifest(dir, manifest);
  TrainingRun target(2);
  const Snapshot before = snapshot(target);
  expect_checkpoint_error([&] { target.load(dir); }, {dir + "/tensors.h5: model/fc2.weight: checksum mismatch"});
  EXPECT_EQ(snapshot(target), before);
}

TEST_F(CheckpointTest, BadManifestIsCheckpointError) {
  TrainingRun run(1);
  run.train(1);
  const std::string dir = run.save(run_dir());
  ckpt::proto::Manifest manifest = read_manifest(dir);
  manifest.set_format_version(2);
  write_manifest(dir, manifest);
  expect_checkpoint_error([&] { read_manifest(dir); }, {dir + "/manifest.pbtxt", "format_version 2"});
  TrainingRun target(2);
  expect_checkpoint_error([&] { target.load(dir); }, {"format_version"});

  write_file(dir + "/manifest.pbtxt", "format_version: 1\nstep: {oops\n");
  expect_checkpoint_error([&] { read_manifest(dir); }, {dir + "/manifest.pbtxt:2:"});
  write_file(dir + "/manifest.pbtxt", "format_version: 1\nno_such_field: 3\n");
  expect_checkpoint_error([&] { read_manifest(dir); }, {"no_such_field"});

  manifest.set_format_version(1);
  manifest.mutable_tensors(0)->set_file("../elsewhere.h5");
  write_manifest(dir, manifest);
  expect_checkpoint_error([&] { read_manifest(dir); }, {manifest.tensors(0).name(), "../elsewhere.h5"});

  fs::remove(dir + "/manifest.pbtxt");
  expect_checkpoint_error([&] { target.load(dir); }, {dir + "/manifest.pbtxt", "no such file"});
  EXPECT_EQ(snapshot(target), snapshot(TrainingRun(2)));
}

TEST_F(CheckpointTest, DifferentShapeNamesTheTensorAndChangesNothing) {
  TrainingRun run(1);
  run.train(1);
  const std::string dir = run.save(run_dir());
  TrainingRun narrower(2, {.hidden = 6});
  narrower.train(1);
  const Snapshot before = snapshot(narrower);
  expect_checkpoint_error([&] { narrower.load(dir); }, {"model/fc1.bias", "(8)", "(6)"});
  EXPECT_EQ(snapshot(narrower), before);
}

TEST_F(CheckpointTest, MissingOrExtraTensorsAreCheckpointErrors) {
  TrainingRun without_bias(1, {.bias = false});
  without_bias.train(1);
  const std::string no_bias_dir = without_bias.save(path("no_bias"));
  TrainingRun with_bias(2);
  const Snapshot before = snapshot(with_bias);
  expect_checkpoint_error([&] { with_bias.load(no_bias_dir); }, {"model/fc1.bias", "missing"});
  EXPECT_EQ(snapshot(with_bias), before);

  with_bias.train(1);
  const std::string bias_dir = with_bias.save(path("bias"));
  TrainingRun target(3, {.bias = false});
  expect_checkpoint_error([&] { target.load(bias_dir); }, {"model/fc1.bias", "not a parameter"});
}

TEST_F(CheckpointTest, OptimizerOrRngMismatchChangesNothing) {
  TrainingRun run(1);
  run.train(2);
  const std::string dir = run.save(run_dir());

  TrainingRun target(2);
  optim::SGD sgd(target.net.parameters(), 0.1);
  const Snapshot before = snapshot(target);
  expect_checkpoint_error([&] { load_checkpoint(dir, target.net, &sgd, &target.state); }, {"AdamW", "SGD"});
  EXPECT_EQ(snapshot(target), before);

  Generator augment(5);
  target.state.rngs.emplace_back("augment", &augment);
  expect_checkpoint_error([&] { target.load(dir); }, {"rng 'augment'"});
  target.state.rngs.pop_back();
  EXPECT_EQ(snapshot(target), before);
}

TEST_F(CheckpointTest, UnwritableDirectoryLeavesThePreviousCheckpoint) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into read-only directories";
  TrainingRun run(1);
  run.train(1);
  run.save(run_dir());
  const Snapshot saved = snapshot(run);
  run.train(1);
  const std::string checkpoints = run_dir() + "/checkpoints";
  fs::permissions(checkpoints, fs::perms::owner_read | fs::perms::owner_exec);
  expect_checkpoint_error([&] { run.save(run_dir()); }, {step_dir(2)});
  fs::permissions(checkpoints, fs::perms::owner_all);
  TrainingRun fresh(2);
  fresh.load(*latest_checkpoint(run_dir()));
  EXPECT_EQ(snapshot(fresh), saved);
}

TEST_F(CheckpointTest, RunDirThatIsAFileIsCheckpointError) {
  write_file(run_dir(), "not a directory");
  TrainingRun run(1);
  expect_checkpoint_error([&] { run.save(run_dir()); }, {run_dir() + "/checkpoints"});
}

}  // namespace
}  // namespace px
