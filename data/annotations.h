// Detection annotations from outside Parallax: COCO-format JSON and Pascal-VOC XML folders, read
// into one in-memory form that build-detection turns into shards.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace px::data {

struct AnnotatedBox {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // pixels, x1 > x0, y1 > y0
  int32_t label = 0;                     // index into AnnotatedSet::category_names
};

struct AnnotatedImage {
  std::string path;          // image file, absolute or relative to the working directory
  int64_t image_id = 0;
  int32_t height = 0, width = 0;  // as annotated (checked against the decoded image by the builder)
  std::vector<AnnotatedBox> boxes;
};

struct AnnotatedSet {
  std::vector<std::string> category_names;  // label i's name
  std::vector<AnnotatedImage> images;
};

// COCO: images[].{id, file_name, height, width}, annotations[].{image_id, category_id, bbox = [x, y, w, h]},
// categories[].{id, name}. Category ids are mapped to contiguous labels in increasing id order;
// iscrowd annotations are skipped. file_name is resolved against image_dir. Bad JSON, a dangling id
// or a non-positive box is a DataError naming the file and the entry.
AnnotatedSet read_coco(const std::string& json_path, const std::string& image_dir);

// VOC: <dir>/Annotations/*.xml with <filename>, <size>, <object><name><bndbox>; images in
// <dir>/JPEGImages. Labels are the sorted set of object names unless <dir>/class_names.txt lists them
// (one per line; "__background__" and "_background_" entries are skipped). Files in sorted name order;
// image ids are their positions.
AnnotatedSet read_voc(const std::string& dir);

}  // namespace px::data
