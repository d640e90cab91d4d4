// libparallax_spm.so: SentencePiece behind the C table of spm_api.h. It is its own shared object so the
// bundled protobuf 3.14 inside libsentencepiece never meets the process's libprotobuf 3.21.
#include "data/spm_shim/spm_api.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

namespace {

char* error_copy(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  std::memcpy(out, message.c_str(), message.size() + 1);
  return out;
}

char* status_error(const sentencepiece::util::Status& status) {
  return status.ok() ? nullptr : error_copy(status.ToString());
}

char* train(const char* const* keys, const char* const* values, size_t n, unsigned seed) {
  std::unordered_map<std::string, std::string> args;
  for (size_t i = 0; i < n; ++i) args[keys[i]] = values[i];
  sentencepiece::SetRandomGeneratorSeed(seed);
  return status_error(sentencepiece::SentencePieceTrainer::Train(args));
}

char* load(const char* model_bytes, size_t n, void** handle) {
  auto* sp = new sentencepiece::SentencePieceProcessor;
  if (char* err = status_error(sp->LoadFromSerializedProto(std::string(model_bytes, n)))) {
    delete sp;
    return err;
  }
  *handle = sp;
  return nullptr;
}

void destroy(void* handle) { delete static_cast<sentencepiece::SentencePieceProcessor*>(handle); }

char* encode(void* handle, const char* text, size_t n, PxSpmIdSink sink, void* ctx) {
  std::vector<int> ids;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Encode(std::string(text, n), &ids);
  if (status.ok()) sink(ctx, ids.data(), ids.size());
  return status_error(status);
}

char* decode(void* handle, const int* ids, size_t n, PxSpmTextSink sink, void* ctx) {
  std::string text;
  const auto status =
      static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Decode(std::vector<int>(ids, ids + n), &text);
  if (status.ok()) sink(ctx, text.data(), text.size());
  return status_error(status);
}

int query(void* handle, int what) {
  const auto* sp = static_cast<const sentencepiece::SentencePieceProcessor*>(handle);
  switch (what) {
    case 0: return sp->GetPieceSize();
    case 1: return sp->pad_id();
    case 2: return sp->unk_id();
    case 3: return sp->bos_id();
    case 4: return sp->eos_id();
    default: return -1;
  }
}

const PxSpmApi kApi = {train, load, destroy, encode, decode, query};

}  // namespace

extern "C" __attribute__((visibility("default"))) const PxSpmApi* px_spm_api(void) { return &kApi; }
