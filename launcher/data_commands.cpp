// Wires `parallax data ...` onto the builders and inspectors of data/: parsing, option checks and the
// one-line error / exit-code conventions of the launcher.
#include "launcher/data_commands.h"

#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "core/util/error.h"
#include "data/inspect.h"
#include "data/shard_builder.h"
#include "launcher/cli_checks.h"

namespace px {
namespace {

// The options a subcommand was given, on one line, for the dataset index's `source` field.
std::string command_line(const CLI::App& cmd) {
  std::string line = "parallax data " + cmd.get_name();
  std::string config = cmd.config_to_str(false, false);
  for (char& c : config) c = c == '\n' ? ' ' : c;
  return line + " " + config;
}

void add_build_translation(CLI::App& data) {
  struct Args {
    data::TranslationBuildOptions build;
    std::string src, tgt, valid_src, valid_tgt, test_src, test_tgt;
    bool separate = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = data.add_subcommand("build-translation",
                                      "train a SentencePiece model and write parallel text as HDF5 shards");
  cmd->add_option("--src", a->src, "training source text, one sentence per line")->required()->check(CLI::ExistingFile);
  cmd->add_option("--tgt", a->tgt, "training target text, line-aligned with --src")->required()->check(CLI::ExistingFile);
  cmd->add_option("--valid-src", a->valid_src, "validation source text")->check(CLI::ExistingFile);
  cmd->add_option("--valid-tgt", a->valid_tgt, "validation target text")->check(CLI::ExistingFile);
  cmd->add_option("--test-src", a->test_src, "test source text")->check(CLI::ExistingFile);
  cmd->add_option("--test-tgt", a->test_tgt, "test target text")->check(CLI::ExistingFile);
  cmd->add_option("--out", a->build.out_dir, "output dataset directory")->required();
  cmd->add_option("--shards", a->build.shards, "shards of the training split")->capture_default_str()
      ->check(at_least(1));
  cmd->add_option("--vocab-size", a->build.vocab_size, "SentencePiece vocabulary size")->capture_default_str()
      ->check(between(16, 1 << 20));
  cmd->add_flag("--separate-vocab", a->separate, "one SentencePiece model per language instead of a joint one");
  cmd->add_option("--model-type", a->build.model_type, "SentencePiece model type")->capture_default_str()
      ->check(CLI::IsMember({"unigram", "bpe"}));
  cmd->add_option("--compression", a->build.compression, "gzip level of token datasets, -1 for none")
      ->capture_default_str()->check(between(-1, 9));
  cmd->add_option("--seed", a->build.seed, "tokenizer training seed")->capture_default_str();
  cmd->callback([a, cmd] {
    auto& b = a->build;
    b.joint_vocab = !a->separate;
    b.inputs = {{"train", a->src, a->tgt}};
    if (a->valid_src.empty() != a->valid_tgt.empty()) throw UsageError("--valid-src and --valid-tgt go together");
    if (a->test_src.empty() != a->test_tgt.empty()) throw UsageError("--test-src and --test-tgt go together");
    if (!a->valid_src.empty()) b.inputs.push_back({"valid", a->valid_src, a->valid_tgt});
    if (!a->test_src.empty()) b.inputs.push_back({"test", a->test_src, a->test_tgt});
    b.command_line = command_line(*cmd);
    data::build_translation(b);
    std::cout << "wrote " << b.out_dir << "/dataset.pbtxt\n";
  });
}

void add_build_detection(CLI::App& data) {
  auto b = std::make_shared<data::DetectionBuildOptions>();
  CLI::App* cmd = data.add_subcommand("build-detection",
                                      "write annotated images (COCO, VOC or Fashion-MNIST scenes) as HDF5 shards");
  auto* coco = cmd->add_option("--coco", b->coco_json, "COCO-format annotation JSON")->check(CLI::ExistingFile);
  cmd->add_option("--images", b->image_dir, "folder the COCO file_name entries are relative to")
      ->needs(coco)->check(CLI::ExistingDirectory);
  auto* voc = cmd->add_option("--voc", b->voc_dir, "Pascal-VOC folder (Annotations/, JPEGImages/)")
                  ->check(CLI::ExistingDirectory);
  auto* fashion = cmd->add_option("--fashion-mnist", b->fashion_mnist_dir,
                                  "Fashion-MNIST idx folder (Debian: /usr/share/datasets/fashion-mnist): compose scenes")
                      ->check(CLI::ExistingDirectory);
  coco->excludes(voc)->excludes(fashion);
  voc->excludes(fashion);
  cmd->add_option("--split", b->split, "split written from --coco / --voc")->capture_default_str();
  cmd->add_option("--out", b->out_dir, "output dataset directory")->required();
  cmd->add_option("--shards", b->shards, "shards per split")->capture_default_str()->check(at_least(1));
  cmd->add_option("--max-size", b->max_size, "--coco / --voc: resize so the longer side is at most this (0: keep)")
      ->capture_default_str()->check(at_least(0));
  cmd->add_option("--canvas", b->canvas, "scene canvas side (Fashion-MNIST)")->capture_default_str()
      ->check(between(32, 4096));
  cmd->add_option("--train-scenes", b->scenes_train, "training scenes (Fashion-MNIST)")->capture_default_str()
      ->check(at_least(0));
  cmd->add_option("--valid-scenes", b->scenes_valid, "validation scenes (Fashion-MNIST)")->capture_default_str()
      ->check(at_least(0));
  cmd->add_option("--test-scenes", b->scenes_test, "test scenes (Fashion-MNIST)")->capture_default_str()
      ->check(at_least(0));
  cmd->add_option("--compression", b->compression, "gzip level of the image dataset, -1 for none")
      ->capture_default_str()->check(between(-1, 9));
  cmd->add_option("--seed", b->seed, "scene seed")->capture_default_str();
  cmd->callback([b, cmd] {
    if (b->split.empty() || b->split.find('/') != std::string::npos)
      throw UsageError("--split must be a plain name such as train, valid or test");
    b->command_line = command_line(*cmd);
    data::build_detection(*b);
    std::cout << "wrote " << b->out_dir << "/dataset.pbtxt\n";
  });
}

void add_inspect(CLI::App& data, int& exit_code) {
  struct Args {
    data::InspectOptions inspect;
    bool verify = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = data.add_subcommand("inspect", "summarise a dataset directory, or --verify every chunk");
  cmd->add_option("dir", a->inspect.dir, "dataset directory (holds dataset.pbtxt)")->required();
  cmd->add_flag("--verify", a->verify, "read every chunk of every shard; exit 1 naming the first corrupt one");
  cmd->add_option("--examples", a->inspect.examples, "decoded examples per split")->capture_default_str()
      ->check(at_least(0));
  cmd->add_option("--png-dir", a->inspect.png_dir, "where detection example PNGs go (default DIR/inspect)");
  cmd->add_flag("--no-boxes{false}", a->inspect.draw_boxes, "write the detection example PNGs without their boxes");
  cmd->callback([a, &exit_code] {
    if (!a->verify) return data::inspect_dataset(a->inspect, std::cout);
    try {
      data::verify_dataset(a->inspect.dir, std::cout);
      std::cout << "verified " << a->inspect.dir << "\n";
    } catch (const DataError& e) {
      std::cerr << "parallax: verify failed: " << e.what() << "\n";
      exit_code = 1;
    }
  });
}

}  // namespace

void add_data_commands(CLI::App& app, int& exit_code) {
  CLI::App* data = app.add_subcommand("data", "build, inspect and verify HDF5 shard datasets");
  data->require_subcommand(1);
  add_build_translation(*data);
  add_build_detection(*data);
  add_inspect(*data, exit_code);
}

}  // namespace px
