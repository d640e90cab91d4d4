// SentencePiece training and encode/decode behind Parallax's fixed special ids, plus the text
// normalisation applied before SentencePiece and the model fingerprint.
#include "data/tokenizer.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/util/error.h"
#include "data/spm_shim/spm_api.h"

namespace px::data {
namespace {

// Debian's libsentencepiece carries its own protobuf 3.14 runtime and exports it; linked into a
// process that also uses libprotobuf 3.21 (dataset.pbtxt, configs) one copy's symbols interpose on
// the other's and protobuf aborts ("compiled against version 3.14.0"). So SentencePiece lives in a
// shim loaded with RTLD_DEEPBIND, which binds the shim and libsentencepiece to their own symbols.
const PxSpmApi& spm() {
  static const PxSpmApi* api = [] {
    const char* env = std::getenv("PARALLAX_SPM_SHIM");
    const std::string path = env && *env ? env : PX_SPM_SHIM_PATH;
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!lib) throw DataError("tokenizer: cannot load the SentencePiece shim " + path + ": " + dlerror());
    const auto get = reinterpret_cast<const PxSpmApi* (*)()>(dlsym(lib, "px_spm_api"));
    if (!get) throw DataError("tokenizer: " + path + " has no px_spm_api");
    return get();
  }();
  return *api;
}

// Turns a shim error (malloc'd or null) into a DataError with `context`.
void check_spm(char* error, const std::string& context) {
  if (!error) return;
  const std::string message = context + ": " + error;
  std::free(error);
  throw DataError(message);
}

}  // namespace

std::string normalize_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {  // ASCII controls and space; UTF-8 continuation bytes are >= 0x80
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

std::string fnv1a64_hex(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void Tokenizer::train(const std::vector<std::string>& inputs, const std::string& model_prefix,
                      const TokenizerTrainOptions& options) {
  if (inputs.empty()) throw DataError("tokenizer: no training input");
  std::string joined;
  for (const auto& f : inputs) joined += (joined.empty() ? "" : ",") + f;
  const int threads = options.num_threads > 0 ? options.num_threads
                                              : std::max(1u, std::thread::hardware_concurrency());
  const std::vector<std::pair<std::string, std::string>> args = {
      {"input", joined},
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"model_type", options.model_type},
      {"character_coverage", "1.0"},
      {"byte_fallback", "true"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},  // normalize_text already did it
      {"input_sentence_size", std::to_string(options.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"num_threads", std::to_string(threads)},
      {"pad_id", std::to_string(kPadId)},
      {"unk_id", std::to_string(kUnkId)},
      {"bos_id", std::to_string(kBosId)},
      {"eos_id", std::to_string(kEosId)},
      {"hard_vocab_limit", "false"},  // a small corpus gets a smaller vocabulary, not an error
      {"minloglevel", "1"},
  };
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : args) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  check_spm(spm().train(keys.data(), values.data(), keys.size(), options.seed),
            "tokenizer: SentencePiece training failed");
}

Tokenizer::Tokenizer(const std::string& model_path) : path_(model_path) {
  std::ifstream in(model_path, std::ios::binary);
  if (!in) throw DataError(model_path + ": cannot open tokenizer model");
  std::stringstream bytes;
  bytes << in.rdbuf();
  const std::string model = bytes.str();
  check_spm(spm().load(model.data(), model.size(), &handle_), model_path + ": not a SentencePiece model");
  const PxSpmApi& api = spm();
  if (api.query(handle_, 1) != kPadId || api.query(handle_, 2) != kUnkId || api.query(handle_, 3) != kBosId ||
      api.query(handle_, 4) != kEosId) {
    api.destroy(handle_);
    throw DataError(model_path + ": special ids differ from Parallax's (pad 0, unk 1, bos 2, eos 3)");
  }
  vocab_size_ = api.query(handle_, 0);
  hash_ = fnv1a64_hex(model);
}

Tokenizer::~Tokenizer() {
  if (handle_) spm().destroy(handle_);
}

Tokenizer::Tokenizer(Tokenizer&& other) noexcept
    : path_(std::move(other.path_)), hash_(std::move(other.hash_)), handle_(other.handle_),
      vocab_size_(other.vocab_size_) {
  other.handle_ = nullptr;
}

std::vector<int32_t> Tokenizer::encode(std::string_view normalized_text) const {
  std::vector<int32_t> ids;
  const auto sink = [](void* ctx, const int* p, size_t n) { static_cast<std::vector<int32_t>*>(ctx)->assign(p, p + n); };
  check_spm(spm().encode(handle_, normalized_text.data(), normalized_text.size(), sink, &ids), path_ + ": encode failed");
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<int> kept;
  kept.reserve(ids.size());
  for (const int32_t id : ids) {
    if (id == kPadId || id == kBosId || id == kEosId) continue;
    if (id < 0 || id >= vocab_size_) throw DataError(path_ + ": token id " + std::to_string(id) + " out of range");
    kept.push_back(id);
  }
  std::string text;
  const auto sink = [](void* ctx, const char* p, size_t n) { static_cast<std::string*>(ctx)->assign(p, n); };
  check_spm(spm().decode(handle_, kept.data(), kept.size(), sink, &text), path_ + ": decode failed");
  return text;
}

int32_t Tokenizer::vocab_size() const { return vocab_size_; }

}  // namespace px::data
