// Builds translation and detection shard directories: normalise + tokenizer training + streaming
// encode for text; decode, resize and box conversion for COCO / VOC images; composed Fashion-MNIST scenes.
#include "data/shard_builder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include <glog/logging.h>

#include "core/util/error.h"
#include "data/annotations.h"
#include "data/dataset_index.h"
#include "data/detection_shard.h"
#include "data/fashion_scenes.h"
#include "data/image_io.h"
#include "data/tokenizer.h"
#include "data/translation_shard.h"

namespace fs = std::filesystem;

namespace px::data {
namespace {

std::string shard_name(const std::string& split, int k, int n) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%s-%05d-of-%05d.h5", split.c_str(), k, n);
  return buf;
}

// Shard k of n holds examples [k * count / n, (k + 1) * count / n).
int64_t shard_begin(int64_t count, int k, int n) { return count * k / n; }

DatasetOptions compression_options(int level) {
  if (level < -1 || level > 9) throw UsageError("--compression must be -1 (none) or 0..9, got " + std::to_string(level));
  DatasetOptions o;
  o.deflate_level = level;
  return o;
}

void make_out_dir(const std::string& dir) {
  if (dir.empty()) throw UsageError("--out is required");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw DataError(dir + ": cannot create directory: " + ec.message());
}

// ---------------------------------------------------------------- translation

// Normalises a parallel pair of files line by line into two work files, skipping pairs with an
// empty side. Returns (kept, skipped).
std::pair<int64_t, int64_t> normalise_pair(const ParallelFiles& in, const std::string& src_out,
                                           const std::string& tgt_out) {
  std::ifstream src(in.src), tgt(in.tgt);
  if (!src) throw DataError(in.src + ": cannot open");
  if (!tgt) throw DataError(in.tgt + ": cannot open");
  std::ofstream so(src_out), to(tgt_out);
  std::string s, t;
  int64_t kept = 0, skipped = 0, line = 0;
  while (true) {
    const bool has_s = static_cast<bool>(std::getline(src, s));
    const bool has_t = static_cast<bool>(std::getline(tgt, t));
    if (has_s != has_t)
      throw DataError(in.src + " and " + in.tgt + ": different line counts (" + (has_s ? in.tgt : in.src) +
                      " ends at line " + std::to_string(line) + ")");
    if (!has_s) break;
    ++line;
    const std::string ns = normalize_text(s), nt = normalize_text(t);
    if (ns.empty() || nt.empty()) {
      ++skipped;
      continue;
    }
    so << ns << '\n';
    to << nt << '\n';
    ++kept;
  }
  if (!so.flush() || !to.flush()) throw DataError(src_out + ": write failed");
  return {kept, skipped};
}

struct SplitWork {
  ParallelFiles files;          // normalised work files
  int64_t kept = 0, skipped = 0;
};

proto::SplitInfo encode_split(const SplitWork& work, int shards, const Tokenizer& src_tok, const Tokenizer& tgt_tok,
                              const std::string& hash, const TranslationBuildOptions& options) {
  proto::SplitInfo info;
  info.set_name(work.files.split);
  info.set_skipped_examples(work.skipped);
  std::ifstream src(work.files.src), tgt(work.files.tgt);
  std::vector<int64_t> src_lengths, tgt_lengths;  // (N,) for the statistics
  std::string s, t;
  const int n = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(shards, work.kept)));
  for (int k = 0; k < n; ++k) {
    const std::string name = shard_name(work.files.split, k, n);
    TranslationShardWriter writer((fs::path(options.out_dir) / name).string(), hash, src_tok.vocab_size(),
                                  compression_options(options.compression));
    const int64_t count = shard_begin(work.kept, k + 1, n) - shard_begin(work.kept, k, n);
    for (int64_t i = 0; i < count; ++i) {
      CHECK(std::getline(src, s) && std::getline(tgt, t)) << work.files.src << ": shorter than counted";
      const auto src_ids = src_tok.encode(s);
      const auto tgt_ids = tgt_tok.encode(t);
      src_lengths.push_back(static_cast<int64_t>(src_ids.size()));
      tgt_lengths.push_back(static_cast<int64_t>(tgt_ids.size()));
      writer.add(src_ids, tgt_ids);
    }
    auto* shard = info.add_shards();
    shard->set_file(name);
    shard->set_num_examples(writer.num_examples());
    shard->set_src_tokens(writer.src_tokens());
    shard->set_tgt_tokens(writer.tgt_tokens());
    writer.finish();
    info.set_num_examples(info.num_examples() + count);
  }
  *info.mutable_src_length() = length_stats(std::move(src_lengths));
  *info.mutable_tgt_length() = length_stats(std::move(tgt_lengths));
  return info;
}

}  // namespace

void build_translation(const TranslationBuildOptions& options) {
  if (options.inputs.empty()) throw UsageError("build-translation: --src and --tgt are required");
  if (options.shards < 1) throw UsageError("--shards must be >= 1");
  make_out_dir(options.out_dir);
  const fs::path work_dir = fs::path(options.out_dir) / ".work";
  fs::create_directories(work_dir);

  std::vector<SplitWork> splits;
  for (const auto& in : options.inputs) {
    SplitWork w;
    w.files = {in.split, (work_dir / (in.split + ".src")).string(), (work_dir / (in.split + ".tgt")).string()};
    std::tie(w.kept, w.skipped) = normalise_pair(in, w.files.src, w.files.tgt);
    if (w.kept == 0) throw DataError(in.src + ": no non-empty sentence pairs");
    LOG(INFO) << "build-translation: " << in.split << ": " << w.kept << " pairs (" << w.skipped << " skipped)";
    splits.push_back(std::move(w));
  }

  TokenizerTrainOptions train;
  train.vocab_size = options.vocab_size;
  train.model_type = options.model_type;
  train.seed = options.seed;
  const fs::path out(options.out_dir);
  proto::DatasetIndex index;
  auto* tok = index.mutable_tokenizer();
  tok->set_joint(options.joint_vocab);
  if (options.joint_vocab) {
    Tokenizer::train({splits[0].files.src, splits[0].files.tgt}, (out / "spm").string(), train);
    tok->set_src_model("spm.model");
    tok->set_tgt_model("spm.model");
  } else {
    Tokenizer::train({splits[0].files.src}, (out / "spm.src").string(), train);
    Tokenizer::train({splits[0].files.tgt}, (out / "spm.tgt").string(), train);
    tok->set_src_model("spm.src.model");
    tok->set_tgt_model("spm.tgt.model");
  }
  const Tokenizer src_tok((out / tok->src_model()).string());
  const Tokenizer tgt_tok((out / tok->tgt_model()).string());
  const std::string hash = options.joint_vocab ? src_tok.hash() : fnv1a64_hex(src_tok.hash() + tgt_tok.hash());
  tok->set_vocab_size(src_tok.vocab_size());
  tok->set_hash(hash);
  tok->set_pad_id(kPadId);
  tok->set_unk_id(kUnkId);
  tok->set_bos_id(kBosId);
  tok->set_eos_id(kEosId);

  index.set_schema(kTranslationSchema);
  index.set_schema_version(kTranslationSchemaVersion);
  index.set_source(options.command_line);
  for (size_t i = 0; i < splits.size(); ++i)
    *index.add_splits() = encode_split(splits[i], i == 0 ? options.shards : 1, src_tok, tgt_tok, hash, options);
  fs::remove_all(work_dir);
  write_index(options.out_dir, index);
}

// ---------------------------------------------------------------- detection
namespace {

// Converts pixel boxes of an image of size (h, w) to normalised cx, cy, w, h, clamped to the image;
// boxes left with no area are dropped.
void add_normalised_boxes(const std::vector<AnnotatedBox>& boxes, int32_t h, int32_t w, DetectionExample& ex) {
  for (const auto& b : boxes) {
    const float x0 = std::clamp(b.x0, 0.f, float(w)), x1 = std::clamp(b.x1, 0.f, float(w));
    const float y0 = std::clamp(b.y0, 0.f, float(h)), y1 = std::clamp(b.y1, 0.f, float(h));
    if (x1 <= x0 || y1 <= y0) continue;
    ex.boxes.insert(ex.boxes.end(), {(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h});
    ex.labels.push_back(b.label);
  }
}

// Decodes an annotated image, checks its size, shrinks it so the longer side <= max_size.
DetectionExample load_annotated(const AnnotatedImage& a, int32_t max_size) {
  Image img = read_image(a.path);
  if (img.height != a.height || img.width != a.width)
    throw DataError(a.path + ": decoded size " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                    " differs from the annotated " + std::to_string(a.width) + "x" + std::to_string(a.height));
  DetectionExample ex;
  ex.image_id = a.image_id;
  add_normalised_boxes(a.boxes, img.height, img.width, ex);
  const int32_t longer = std::max(img.height, img.width);
  if (max_size > 0 && longer > max_size) {
    const double s = double(max_size) / longer;
    img = resize_bilinear(img, std::max<int32_t>(1, int32_t(std::lround(img.height * s))),
                          std::max<int32_t>(1, int32_t(std::lround(img.width * s))));
  }
  ex.height = img.height;
  ex.width = img.width;
  ex.channels = 3;
  ex.pixels = std::move(img.pixels);
  return ex;
}

// Writes `count` examples made by make(i) into `shards` shards of one split; returns its SplitInfo.
proto::SplitInfo write_detection_split(const std::string& split, int64_t count, int shards,
                                       const std::vector<std::string>& categories,
                                       const std::function<DetectionExample(int64_t)>& make,
                                       const DetectionBuildOptions& options) {
  proto::SplitInfo info;
  info.set_name(split);
  std::vector<int64_t> sizes;  // (N,) longer image side
  const int n = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(shards, count)));
  int64_t i = 0;
  for (int k = 0; k < n; ++k) {
    const std::string name = shard_name(split, k, n);
    DetectionShardWriter writer((fs::path(options.out_dir) / name).string(), categories,
                                compression_options(options.compression));
    for (const int64_t end = shard_begin(count, k + 1, n); i < end; ++i) {
      const DetectionExample ex = make(i);
      sizes.push_back(std::max(ex.height, ex.width));
      writer.add(ex);
    }
    auto* shard = info.add_shards();
    shard->set_file(name);
    shard->set_num_examples(writer.num_examples());
    shard->set_num_boxes(writer.num_boxes());
    shard->set_image_bytes(writer.image_bytes());
    info.set_num_examples(info.num_examples() + writer.num_examples());
    info.set_num_boxes(info.num_boxes() + writer.num_boxes());
    writer.finish();
  }
  *info.mutable_image_size() = length_stats(std::move(sizes));
  LOG(INFO) << "build-detection: " << split << ": " << info.num_examples() << " images, " << info.num_boxes()
            << " boxes in " << n << " shards";
  return info;
}

// Puts `split` into the directory's index (replacing a split of that name), keeping the others when
// the category names agree.
void merge_into_index(const DetectionBuildOptions& options, const std::vector<std::string>& categories,
                      std::vector<proto::SplitInfo> splits) {
  proto::DatasetIndex index;
  if (fs::exists(fs::path(options.out_dir) / kIndexFile)) {
    index = read_index(options.out_dir);
    const std::vector<std::string> old(index.category_names().begin(), index.category_names().end());
    if (index.schema() != kDetectionSchema || old != categories)
      throw DataError(options.out_dir + ": holds a dataset with other categories or schema; use a new --out");
  }
  index.set_schema(kDetectionSchema);
  index.set_schema_version(kDetectionSchemaVersion);
  index.clear_category_names();
  for (const auto& c : categories) index.add_category_names(c);
  index.set_source(options.command_line);
  for (auto& split : splits) {
    auto* all = index.mutable_splits();
    const auto it = std::find_if(all->begin(), all->end(), [&](const auto& s) { return s.name() == split.name(); });
    if (it != all->end()) *it = std::move(split);
    else *index.add_splits() = std::move(split);
  }
  write_index(options.out_dir, index);
}

}  // namespace

void build_detection(const DetectionBuildOptions& options) {
  const int sources = int(!options.coco_json.empty()) + int(!options.voc_dir.empty()) +
                      int(!options.fashion_mnist_dir.empty());
  if (sources != 1) throw UsageError("build-detection: give exactly one of --coco, --voc, --fashion-mnist");
  if (options.shards < 1) throw UsageError("--shards must be >= 1");
  make_out_dir(options.out_dir);

  if (!options.fashion_mnist_dir.empty()) {
    const FashionMnist train = read_fashion_mnist(options.fashion_mnist_dir, "train");
    const FashionMnist test = read_fashion_mnist(options.fashion_mnist_dir, "t10k");
    const auto& categories = fashion_mnist_classes();
    // train scenes use train items [0, 50000), valid scenes [50000, 60000), test scenes t10k.
    const int64_t valid_begin = train.count * 5 / 6;
    struct SceneSplit {
      const char* name;
      const FashionMnist* source;
      int64_t begin, end, count;
    };
    const SceneSplit plan[] = {{"train", &train, 0, valid_begin, options.scenes_train},
                               {"valid", &train, valid_begin, train.count, options.scenes_valid},
                               {"test", &test, 0, test.count, options.scenes_test}};
    std::vector<proto::SplitInfo> splits;
    for (int s = 0; s < 3; ++s) {
      if (plan[s].count <= 0) continue;
      SceneOptions scene;
      scene.canvas = options.canvas;
      scene.seed = options.seed * 3 + s;
      scene.item_begin = plan[s].begin;
      scene.item_end = plan[s].end;
      const FashionMnist& source = *plan[s].source;
      splits.push_back(write_detection_split(plan[s].name, plan[s].count, options.shards, categories,
                                             [&](int64_t i) { return compose_scene(source, scene, i); }, options));
    }
    merge_into_index(options, categories, std::move(splits));
    return;
  }

  const AnnotatedSet set = !options.coco_json.empty() ? read_coco(options.coco_json, options.image_dir)
                                                      : read_voc(options.voc_dir);
  if (set.images.empty()) throw DataError("build-detection: the annotations list no images");
  auto split = write_detection_split(options.split, static_cast<int64_t>(set.images.size()), options.shards,
                                     set.category_names,
                                     [&](int64_t i) { return load_annotated(set.images[i], options.max_size); },
                                     options);
  merge_into_index(options, set.category_names, {std::move(split)});
}

}  // namespace px::data
