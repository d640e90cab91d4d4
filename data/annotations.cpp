// Readers for outside detection annotations: COCO JSON (nlohmann::json) and Pascal-VOC XML folders
// (pugixml), validated field by field so a bad file is a DataError naming the file and the entry.
#include "data/annotations.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string_view>

#include <nlohmann/json.hpp>
#include <pugixml.hpp>

#include "core/util/error.h"
#include "core/util/strings.h"

namespace px::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// ---- COCO ----------------------------------------------------------------------------------------

// Typed access to one JSON object; every failure names the file and the entry ("annotations[7]").
class CocoEntry {
 public:
  CocoEntry(const std::string& path, const json& value, std::string where)
      : path_(path), value_(value), where_(std::move(where)) {
    if (!value_.is_object()) fail("is not an object");
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw DataError("COCO file '" + path_ + "': " + where_ + " " + what);
  }
  bool has(const char* key) const { return value_.contains(key); }
  const json& field(const char* key) const {
    const auto it = value_.find(key);
    if (it == value_.end()) fail(std::string("has no '") + key + "'");
    return *it;
  }
  int64_t integer(const char* key) const {
    const json& v = field(key);
    if (!v.is_number_integer()) fail(std::string("'") + key + "' is not an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
      fail(std::string("'") + key + "' is out of range");
    }
    return v.get<int64_t>();
  }
  int32_t positive_int32(const char* key) const {
    const int64_t v = integer(key);
    if (v <= 0 || v > std::numeric_limits<int32_t>::max()) {
      fail(std::string("'") + key + "' = " + std::to_string(v) + " is not a positive size");
    }
    return static_cast<int32_t>(v);
  }
  std::string string(const char* key) const {
    const json& v = field(key);
    if (!v.is_string()) fail(std::string("'") + key + "' is not a string");
    return v.get<std::string>();
  }
  const std::string& where() const { return where_; }

 private:
  const std::string& path_;
  const json& value_;
  std::string where_;
};

json parse_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("COCO file '" + path + "': cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw DataError("COCO file '" + path + "': invalid JSON: " + e.what());
  }
}

const json& top_level_array(const std::string& path, const json& root, const char* key) {
  if (!root.is_object() || !root.contains(key) || !root[key].is_array()) {
    throw DataError("COCO file '" + path + "': top level has no '" + key + "' array");
  }
  return root[key];
}

// Category ids in increasing order become labels 0..n-1; returns id -> label.
std::map<int64_t, int32_t> read_coco_categories(const std::string& path, const json& root, AnnotatedSet& set) {
  const json& categories = top_level_array(path, root, "categories");
  std::map<int64_t, std::string> names;
  for (size_t k = 0; k < categories.size(); ++k) {
    const CocoEntry entry(path, categories[k], "categories[" + std::to_string(k) + "]");
    const int64_t id = entry.integer("id");
    if (!names.emplace(id, entry.string("name")).second) entry.fail("repeats id " + std::to_string(id));
  }
  std::map<int64_t, int32_t> label_of;
  for (const auto& [id, name] : names) {
    label_of[id] = static_cast<int32_t>(set.category_names.size());
    set.category_names.push_back(name);
  }
  return label_of;
}

// Images in file order; returns image id -> index into set.images.
std::map<int64_t, size_t> read_coco_images(const std::string& path, const json& root, const std::string& image_dir,
                                           AnnotatedSet& set) {
  const json& images = top_level_array(path, root, "images");
  std::map<int64_t, size_t> index_of;
  for (size_t k = 0; k < images.size(); ++k) {
    const CocoEntry entry(path, images[k], "images[" + std::to_string(k) + "]");
    AnnotatedImage image;
    image.image_id = entry.integer("id");
    image.path = (fs::path(image_dir) / entry.string("file_name")).string();
    image.height = entry.positive_int32("height");
    image.width = entry.positive_int32("width");
    if (!index_of.emplace(image.image_id, set.images.size()).second) {
      entry.fail("repeats id " + std::to_string(image.image_id));
    }
    set.images.push_back(std::move(image));
  }
  return index_of;
}

bool is_crowd(const CocoEntry& entry) {
  if (!entry.has("iscrowd")) return false;
  const json& v = entry.field("iscrowd");
  if (v.is_boolean()) return v.get<bool>();
  return entry.integer("iscrowd") != 0;
}

// bbox = [x, y, w, h] with w, h > 0 -> corners.
AnnotatedBox coco_box(const CocoEntry& entry) {
  const json& bbox = entry.field("bbox");
  if (!bbox.is_array() || bbox.size() != 4 || !std::all_of(bbox.begin(), bbox.end(), [](const json& v) {
        return v.is_number();
      })) {
    entry.fail("'bbox' is not [x, y, w, h]");
  }
  const double x = bbox[0].get<double>(), y = bbox[1].get<double>();
  const double w = bbox[2].get<double>(), h = bbox[3].get<double>();
  if (!std::isfinite(x) || !std::isfinite(y) || !(w > 0 && std::isfinite(w)) || !(h > 0 && std::isfinite(h))) {
    entry.fail("has a non-positive or non-finite bbox [" + bbox[0].dump() + ", " + bbox[1].dump() + ", " +
               bbox[2].dump() + ", " + bbox[3].dump() + "]");
  }
  AnnotatedBox box;
  box.x0 = static_cast<float>(x);
  box.y0 = static_cast<float>(y);
  box.x1 = static_cast<float>(x + w);
  box.y1 = static_cast<float>(y + h);
  return box;
}

void read_coco_annotations(const std::string& path, const json& root, const std::map<int64_t, int32_t>& label_of,
                           const std::map<int64_t, size_t>& image_index, AnnotatedSet& set) {
  const json& annotations = top_level_array(path, root, "annotations");
  for (size_t k = 0; k < annotations.size(); ++k) {
    const CocoEntry entry(path, annotations[k], "annotations[" + std::to_string(k) + "]");
    const int64_t image_id = entry.integer("image_id"), category_id = entry.integer("category_id");
    const auto image = image_index.find(image_id);
    if (image == image_index.end()) entry.fail("refers to unknown image_id " + std::to_string(image_id));
    const auto label = label_of.find(category_id);
    if (label == label_of.end()) entry.fail("refers to unknown category_id " + std::to_string(category_id));
    if (is_crowd(entry)) continue;
    AnnotatedBox box = coco_box(entry);
    box.label = label->second;
    set.images[image->second].boxes.push_back(box);
  }
}

// ---- VOC -----------------------------------------------------------------------------------------

bool is_background(const std::string& name) { return name == "__background__" || name == "_background_"; }

// class_names.txt: one name a line, background entries skipped. Empty when the file is absent.
std::vector<std::string> read_class_names(const fs::path& file) {
  std::vector<std::string> names;
  if (!fs::exists(file)) return names;
  std::ifstream in(file);
  if (!in) throw DataError("VOC class list '" + file.string() + "': cannot open");
  std::set<std::string> seen;
  for (std::string line; std::getline(in, line);) {
    const std::string name = trim(line);
    if (name.empty() || is_background(name)) continue;
    if (!seen.insert(name).second) throw DataError("VOC class list '" + file.string() + "': repeats '" + name + "'");
    names.push_back(name);
  }
  return names;
}

// One XML file before labels are assigned.
struct VocFile {
  std::string xml_path;
  AnnotatedImage image;
  std::vector<std::string> object_names;  // boxes[i]'s class name
};

class VocReader {
 public:
  explicit VocReader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void fail(const std::string& what) const { throw DataError("VOC file '" + path_ + "': " + what); }

  VocFile read(const fs::path& image_dir) const {
    pugi::xml_document doc;
    const pugi::xml_parse_result parsed = doc.load_file(path_.c_str());
    if (!parsed) fail(std::string("invalid XML at offset ") + std::to_string(parsed.offset) + ": " + parsed.description());
    const pugi::xml_node root = doc.child("annotation");
    if (!root) fail("has no <annotation> root");
    VocFile file;
    file.xml_path = path_;
    const std::string filename = text(root, "filename", "<annotation>");
    if (filename.empty()) fail("<filename> is empty");
    file.image.path = (image_dir / filename).string();
    const pugi::xml_node size = child(root, "size", "<annotation>");
    file.image.height = positive_size(size, "height");
    file.image.width = positive_size(size, "width");
    int index = 0;
    for (const pugi::xml_node object : root.children("object")) {
      const std::string where = "<object> " + std::to_string(index++);
      file.object_names.push_back(text(object, "name", where));
      file.image.boxes.push_back(box(child(object, "bndbox", where), where));
    }
    return file;
  }

 private:
  pugi::xml_node child(const pugi::xml_node& parent, const char* name, const std::string& where) const {
    const pugi::xml_node node = parent.child(name);
    if (!node) fail(where + " has no <" + name + ">");
    return node;
  }
  std::string text(const pugi::xml_node& parent, const char* name, const std::string& where) const {
    return trim(child(parent, name, where).text().as_string());
  }
  double number(const pugi::xml_node& parent, const char* name, const std::string& where) const {
    const std::string s = text(parent, name, where);
    double v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) {
      fail(where + " <" + name + "> = '" + s + "' is not a number");
    }
    return v;
  }
  int32_t positive_size(const pugi::xml_node& size, const char* name) const {
    const double v = number(size, name, "<size>");
    if (!(v >= 1 && v <= std::numeric_limits<int32_t>::max()) || v != std::floor(v)) {
      fail(std::string("<size> <") + name + "> = " + std::to_string(v) + " is not a positive integer");
    }
    return static_cast<int32_t>(v);
  }
  AnnotatedBox box(const pugi::xml_node& bndbox, const std::string& where) const {
    const double x0 = number(bndbox, "xmin", where), y0 = number(bndbox, "ymin", where);
    const double x1 = number(bndbox, "xmax", where), y1 = number(bndbox, "ymax", where);
    if (!(x1 > x0 && y1 > y0)) fail(where + " has an empty or inverted <bndbox>");
    return AnnotatedBox{static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x1),
                        static_cast<float>(y1)};
  }

  std::string path_;
};

std::vector<fs::path> sorted_xml_files(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw DataError("VOC folder '" + dir.string() + "' does not exist");
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".xml") files.push_back(e.path());
  }
  if (ec) throw DataError("VOC folder '" + dir.string() + "': " + ec.message());
  if (files.empty()) throw DataError("VOC folder '" + dir.string() + "' holds no .xml files");
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

AnnotatedSet read_coco(const std::string& json_path, const std::string& image_dir) {
  const json root = parse_json_file(json_path);
  AnnotatedSet set;
  try {
    const std::map<int64_t, int32_t> label_of = read_coco_categories(json_path, root, set);
    const std::map<int64_t, size_t> image_index = read_coco_images(json_path, root, image_dir, set);
    read_coco_annotations(json_path, root, label_of, image_index, set);
  } catch (const json::exception& e) {  // the checks above leave none; this keeps the contract if one slips
    throw DataError("COCO file '" + json_path + "': " + e.what());
  }
  return set;
}

AnnotatedSet read_voc(const std::string& dir) {
  const fs::path root(dir);
  AnnotatedSet set;
  set.category_names = read_class_names(root / "class_names.txt");
  const bool listed = !set.category_names.empty();
  std::vector<VocFile> files;
  std::set<std::string> seen_names;
  for (const fs::path& xml : sorted_xml_files(root / "Annotations")) {
    files.push_back(VocReader(xml.string()).read(root / "JPEGImages"));
    seen_names.insert(files.back().object_names.begin(), files.back().object_names.end());
  }
  if (!listed) set.category_names.assign(seen_names.begin(), seen_names.end());
  std::map<std::string, int32_t> label_of;
  for (size_t k = 0; k < set.category_names.size(); ++k) label_of[set.category_names[k]] = static_cast<int32_t>(k);
  for (VocFile& file : files) {
    for (size_t b = 0; b < file.image.boxes.size(); ++b) {
      const auto label = label_of.find(file.object_names[b]);
      if (label == label_of.end()) {
        throw DataError("VOC file '" + file.xml_path + "': <object> " + std::to_string(b) + " has class '" +
                        file.object_names[b] + "', which class_names.txt does not list");
      }
      file.image.boxes[b].label = label->second;
    }
    file.image.image_id = static_cast<int64_t>(set.images.size());
    set.images.push_back(std::move(file.image));
  }
  return set;
}

}  // namespace px::data
