// `parallax data build-translation` and `build-detection`: stream user data (parallel text files,
// COCO / VOC annotations, Fashion-MNIST scenes) into HDF5 shards plus dataset.pbtxt, in bounded memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace px::data {

struct ParallelFiles {
  std::string split;  // train, valid, test
  std::string src, tgt;
};

struct TranslationBuildOptions {
  std::vector<ParallelFiles> inputs;  // the first is the training split; the tokenizer trains on it
  std::string out_dir;
  int shards = 4;                     // shards of the training split; other splits get one each
  int32_t vocab_size = 8000;
  bool joint_vocab = true;            // one SentencePiece model for both sides, else one per side
  std::string model_type = "unigram";
  int compression = -1;               // gzip level for token datasets, -1: none
  uint32_t seed = 0;
  std::string command_line;           // recorded in the index
};

// Writes <out>/{split}-{k:05d}-of-{n:05d}.h5, spm.model (or spm.src.model + spm.tgt.model) and
// dataset.pbtxt. Pairs with an empty side after normalisation are skipped and counted; files with
// different line counts are a DataError naming both.
void build_translation(const TranslationBuildOptions& options);

struct DetectionBuildOptions {
  // Exactly one source: a COCO json (+ image_dir), a VOC folder, or a Fashion-MNIST folder.
  std::string coco_json, image_dir, voc_dir, fashion_mnist_dir;
  std::string split = "train";        // COCO / VOC: the split this call writes (others in the index stay)
  int64_t scenes_train = 60000, scenes_valid = 5000, scenes_test = 5000;  // Fashion-MNIST scene counts
  int32_t canvas = 128;
  std::string out_dir;
  int shards = 4;                     // shards of each split written
  int32_t max_size = 0;               // resize so the longer side <= max_size (0: keep)
  int compression = 1;                // gzip level for images, -1: none
  uint64_t seed = 0;
  std::string command_line;
};

void build_detection(const DetectionBuildOptions& options);

}  // namespace px::data
