// The C ABI between tokenizer.cpp and the SentencePiece shim (libparallax_spm.so), which is loaded with
// dlopen(RTLD_DEEPBIND) because Debian's libsentencepiece exports a bundled protobuf 3.14 runtime.
#pragma once

#include <stddef.h>

extern "C" {

// Receives encoded ids or decoded text.
typedef void (*PxSpmIdSink)(void* ctx, const int* ids, size_t n);
typedef void (*PxSpmTextSink)(void* ctx, const char* text, size_t n);

// Every call returning char* returns nullptr on success or a malloc'd error message (caller frees).
struct PxSpmApi {
  char* (*train)(const char* const* keys, const char* const* values, size_t n, unsigned seed);
  char* (*load)(const char* model_bytes, size_t n, void** handle);
  void (*destroy)(void* handle);
  char* (*encode)(void* handle, const char* text, size_t n, PxSpmIdSink sink, void* ctx);
  char* (*decode)(void* handle, const int* ids, size_t n, PxSpmTextSink sink, void* ctx);
  // 0: piece count, 1: pad id, 2: unk id, 3: bos id, 4: eos id.
  int (*query)(void* handle, int what);
};

// The one exported symbol of the shim.
const PxSpmApi* px_spm_api(void);
}
