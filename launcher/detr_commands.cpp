// `parallax detect` and DETR's `parallax eval` on the latest checkpoint of a run directory: the model loaded with the
// run's dataset categories, COCO evaluation of a split, and per-image detection with its JSON and annotated PNG.
#include "launcher/detr_commands.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/util/error.h"
#include "data/bitmap_font.h"
#include "data/detection_transforms.h"
#include "data/image_io.h"
#include "launcher/detr_eval.h"
#include "launcher/detr_task.h"
#include "launcher/metrics.h"
#include "launcher/task.h"
#include "models/detr/postprocess.h"

namespace px {

namespace {

namespace fs = std::filesystem;

// A DETR run's dataset (for its categories) and model with the latest checkpoint's weights, in eval mode.
struct LoadedDetr {
  DetectionData data;
  DetrBundle bundle;
  int64_t step = 0;
};

LoadedDetr load_detr(const TrainedRun& run) {
  LoadedDetr loaded;
  loaded.data = open_detection_data(run.config);
  loaded.bundle = build_detr(run.config, loaded.data, nullptr, run.plan);
  loaded.step = load_trained_weights(run, *loaded.bundle.model);
  return loaded;
}

// The detections of one image scoring >= threshold, best first: the image through DETR's eval transform alone
// (no padding), every query post-processed to the original image's pixels.
std::vector<detr::Detection> detect(const detr::Detr& model, const std::string& path, const data::Image& image,
                                    const data::DetectionAugment& augment, double threshold) {
  const auto [height, width] =
      data::get_size_with_aspect_ratio(image.height, image.width, augment.eval_size, augment.max_size);
  if (height < 1 || width < 1) {
    throw DataError("image file '" + path + "': " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                    " pixels is too elongated for data.augment.eval_size " + std::to_string(augment.eval_size) +
                    " and max_size " + std::to_string(augment.max_size) + " (a side would be resized to 0)");
  }
  data::DetectionSample sample;
  sample.image = image;
  data::PhiloxStream unused = data::augment_stream(0, 0, 0);  // the eval transform draws nothing
  data::augment(sample, augment, unused);
  const data::PaddedImages batch = data::collate_images({sample});
  NoGradGuard no_grad;
  const Device device = model.parameters().front().device();
  const detr::FeaturePositions positions = model.feature_positions(batch.mask, device);
  const auto predictions = model.forward(to_dtype(to_device(batch.images, device), model.dtype()), positions, false);
  const auto detections = detr::post_process(predictions.back(), {{image.height, image.width}});
  std::vector<detr::Detection> kept;
  for (const detr::Detection& d : detections[0]) {
    if (d.score >= threshold) kept.push_back(d);
  }
  std::stable_sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
  return kept;
}

std::string label_text(const std::string& name, double score) {
  char text[32];
  std::snprintf(text, sizeof text, " %.2f", score);
  return name + text;
}

// A copy of the image with each detection's box and "name 0.93" label, in a colour per category; the best
// detection is drawn last, on top.
data::Image annotate(const data::Image& image, const std::vector<detr::Detection>& detections,
                     const std::vector<std::string>& names) {
  static const uint8_t kPalette[][3] = {{230, 25, 75},  {60, 180, 75},   {255, 225, 25}, {0, 130, 200},
                                        {245, 130, 48}, {145, 30, 180},  {70, 240, 240}, {240, 50, 230},
                                        {210, 245, 60}, {250, 190, 212}, {0, 128, 128},  {170, 110, 40}};
  constexpr size_t kColours = sizeof kPalette / sizeof kPalette[0];
  data::Image out = image;
  const int32_t shorter = std::min(image.height, image.width);
  const int thickness = std::max(1, shorter / 160), scale = std::max(1, shorter / 256);
  for (auto it = detections.rbegin(); it != detections.rend(); ++it) {
    const detr::Detection& d = *it;
    if (!std::all_of(d.box.begin(), d.box.end(), [](double v) { return std::isfinite(v); })) continue;
    const uint8_t* colour = kPalette[static_cast<size_t>(d.label) % kColours];
    // The box's corners are pixel edges; draw_box takes the inclusive pixels inside them.
    data::draw_box(out, static_cast<float>(d.box[0]), static_cast<float>(d.box[1]), static_cast<float>(d.box[2]) - 1,
                   static_cast<float>(d.box[3]) - 1, colour, thickness);
    const std::string text = label_text(names[static_cast<size_t>(d.label)], d.score);
    const auto [text_w, text_h] = data::text_size(text, scale);
    const int64_t label_h = text_h + 2 * scale, label_w = text_w + 2 * scale;
    const auto clamp_to = [](double v, int64_t hi) {
      return static_cast<int64_t>(std::clamp(v, 0.0, static_cast<double>(std::max<int64_t>(hi, 0))));
    };
    // Above the box where it fits, else just inside its top edge; always inside the image where it can be.
    const int64_t x = clamp_to(d.box[0], out.width - label_w);
    const double above = d.box[1] - static_cast<double>(label_h);
    const int64_t y = clamp_to(above >= 0 ? above : d.box[1], out.height - label_h);
    data::draw_label(out, x, y, text, colour, scale);
  }
  return out;
}

// One line of JSON; bytes that are not UTF-8 (a file name's) become U+FFFD instead of an exception.
std::string compact(const nlohmann::ordered_json& value) {
  return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// An object of scalars and one array of objects, laid out for people: a key per line, an array element per line.
void write_json(const std::string& path, const nlohmann::ordered_json& json) {
  std::ofstream out(path, std::ios::trunc);
  out << "{";
  const char* separator = "\n";
  for (const auto& [key, value] : json.items()) {
    out << separator << "  " << compact(key) << ": ";
    separator = ",\n";
    if (!value.is_array()) {
      out << compact(value);
      continue;
    }
    out << "[";
    for (size_t i = 0; i < value.size(); ++i) out << (i == 0 ? "\n    " : ",\n    ") << compact(value[i]);
    out << (value.empty() ? "]" : "\n  ]");
  }
  out << "\n}\n";
  if (!out.flush()) throw DataError(path + ": cannot write the detections");
}

// <dir>/<stem>, <stem>_2, ... : the first name of the image's stem not taken by an earlier image of this call.
std::string output_base(const std::string& dir, const std::string& image_path, std::set<std::string>& taken) {
  const std::string stem = fs::path(image_path).stem().string();
  std::string name = stem;
  for (int k = 2; taken.count(name) > 0; ++k) name = stem + "_" + std::to_string(k);
  taken.insert(name);
  return (fs::path(dir) / name).string();
}

// One image: detections, <base>.json, <base>.png and the stdout line. px::Error naming the image (or the output
// file) when it cannot be read, transformed or written.
void detect_one(const LoadedDetr& loaded, const data::DetectionAugment& augment, const DetectCommand& command,
                const std::string& path, const std::string& out_dir, std::set<std::string>& taken) {
  const data::Image image = data::read_image(path);
  const std::vector<detr::Detection> detections = detect(*loaded.bundle.model, path, image, augment,
                                                         command.threshold);
  const std::string base = output_base(out_dir, path, taken);
  std::error_code ec;
  if (fs::equivalent(path, base + ".png", ec)) {
    throw UsageError("image file '" + path + "': its annotated copy " + base +
                     ".png would replace it; choose another --out");
  }
  const std::vector<std::string>& names = loaded.data.category_names;
  nlohmann::ordered_json found = nlohmann::ordered_json::array();
  std::string line;
  for (const detr::Detection& d : detections) {
    const std::string& name = names[static_cast<size_t>(d.label)];
    found.push_back({{"label", name}, {"label_id", d.label}, {"score", d.score}, {"box", d.box}});
    line += (line.empty() ? "" : ", ") + label_text(name, d.score);
  }
  nlohmann::ordered_json json{{"image", path},
                              {"width", image.width},
                              {"height", image.height},
                              {"step", loaded.step},
                              {"threshold", command.threshold},
                              {"detections", std::move(found)}};
  write_json(base + ".json", json);
  data::write_png(base + ".png", annotate(image, detections, names));
  std::printf("%s: %zu object%s%s\n", path.c_str(), detections.size(), detections.size() == 1 ? "" : "s",
              line.empty() ? "" : (" (" + line + ")").c_str());
  std::fflush(stdout);
}

void require_detr(const TrainedRun& run, const std::string& command) {
  if (&task_kind(run.config) != &kDetrKind) {
    throw UsageError(run.run.root + " is a " + task_kind(run.config).name + " run; " + command +
                     " needs a DETR run");
  }
}

}  // namespace

int run_detr_eval(const TrainedRun& run, const EvalCommand& command) {
  const LoadedDetr loaded = load_detr(run);
  std::printf("%s\n", run.plan.summary.c_str());
  DetectionEvalOptions options;
  options.split = command.split;
  options.batch_size = run.config.eval().batch_size();
  options.max_images = command.max_images >= 0 ? command.max_images : run.config.eval().max_images();
  options.augment = augment_options(run.config, /*train=*/false);
  const DetectionEvalResult r = evaluate_detection(*loaded.bundle.model, loaded.data, options);
  std::printf("%s", r.stats.summary.c_str());
  std::printf("%s @ step %lld: mAP %.4f | AP50 %.4f | %lld images | %.1f s\n", command.split.c_str(),
              static_cast<long long>(loaded.step), r.stats.values[0], r.stats.values[1],
              static_cast<long long>(r.images), r.seconds);
  MetricsWriter metrics(run.run.metrics());
  metrics.write(loaded.step, coco_metrics(r.stats, command.split + "_"));
  return 0;
}

int run_detect(const DetectCommand& command) {
  const TrainedRun run = open_trained_run(command.run_dir, command.device, command.overrides);
  require_detr(run, "detect");
  const std::string out_dir = command.out_dir.empty() ? run.run.root + "/detect" : command.out_dir;
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec)) {
    throw UsageError("--out: " + out_dir + " exists and is not a directory");
  }
  fs::create_directories(out_dir, ec);
  if (ec) throw UsageError("--out: cannot create " + out_dir + ": " + ec.message());
  const LoadedDetr loaded = load_detr(run);
  const data::DetectionAugment augment = augment_options(run.config, /*train=*/false);
  std::printf("%s\n", run.plan.summary.c_str());
  std::set<std::string> taken;
  int rejected = 0;
  for (const std::string& path : command.images) {
    try {
      detect_one(loaded, augment, command, path, out_dir, taken);
    } catch (const Error& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "parallax: error: %s\n", e.what());
      ++rejected;
    }
  }
  const size_t done = command.images.size() - static_cast<size_t>(rejected);
  std::printf("%zu of %zu images -> %s\n", done, command.images.size(), out_dir.c_str());
  return rejected > 0 ? 2 : 0;
}

void add_detr_commands(CLI::App& app, int& exit_code) {
  auto detect = std::make_shared<DetectCommand>();
  CLI::App* d =
      app.add_subcommand("detect", "Find objects in JPEG/PNG images with a DETR run: JSON and annotated PNGs");
  add_trained_run_options(*d, detect->run_dir, detect->device, detect->overrides);
  d->add_option("images", detect->images, "JPEG or PNG files")->required();
  d->add_option("--threshold", detect->threshold, "Keep detections scoring at least this")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  d->add_option("--out", detect->out_dir, "Output directory (default RUN_DIR/detect)");
  d->callback([detect, &exit_code] { exit_code = run_detect(*detect); });
}

}  // namespace px
