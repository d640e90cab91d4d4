// Translation shards (schema "parallax.translation" v1): the streaming writer and the validating reader.
// Offsets are read and checked at open; token ids are checked against vocab_size on every add and read.
#include "data/translation_shard.h"

#include <algorithm>
#include <limits>

#include "core/util/check.h"
#include "core/util/error.h"

namespace px::data {
namespace {

constexpr size_t kFlushBytes = size_t{1} << 20;  // a pending buffer this large is appended to its dataset
// Offsets are monotonic and read once at open: shuffle + gzip shrinks them, and the mostly empty last
// chunk of a small shard, to almost nothing.
constexpr DatasetOptions kOffsetOptions{0, 1};
// Token chunks of 16K tokens (64 KiB): the loader reads examples in shuffled order, and a random read
// costs a whole chunk (0.87 ms per example with 1 MiB chunks on a 96 MB shard, 85 us with 16K-token
// chunks; sequential reads ~15 us either way).
constexpr int64_t kTokenChunkRows = 16384;

[[noreturn]] void fail(const std::string& path, const std::string& name, const std::string& what) {
  throw DataError(path + ": " + name + ": " + what);
}

// Token ids are stored as i32, so a vocabulary holds at most 2^31 entries.
int64_t checked_vocab_size(const std::string& path, int64_t vocab_size) {
  if (vocab_size <= 0 || vocab_size > int64_t{std::numeric_limits<int32_t>::max()} + 1) {
    fail(path, "vocab_size", std::to_string(vocab_size) + " outside [1, 2^31]");
  }
  return vocab_size;
}

// Throws unless every token of example `index` lies in [0, vocab_size).
void check_tokens(const std::vector<int32_t>& tokens, int64_t vocab_size, const std::string& path,
                  const std::string& dataset, int64_t index) {
  for (int32_t t : tokens) {
    if (t < 0 || t >= vocab_size) {
      fail(path, dataset, "example " + std::to_string(index) + ": token id " + std::to_string(t) + " outside [0, " +
                              std::to_string(vocab_size) + ")");
    }
  }
}

int64_t read_num_examples(const H5File& file) {
  if (!file.has_attr("num_examples")) fail(file.path(), "num_examples", "missing: the shard's writer never finished");
  const int64_t n = file.read_attr_int("num_examples");
  if (n < 0 || n == std::numeric_limits<int64_t>::max()) fail(file.path(), "num_examples", std::to_string(n));
  return n;
}

// Reads the tokens of example i from `dataset` into `out`, bounded by offsets (N+1,), and checks them.
void read_tokens(const H5File& file, const std::string& dataset, const std::vector<int64_t>& offsets,
                 int64_t vocab_size, int64_t i, std::vector<int32_t>& out) {
  const int64_t begin = offsets[i], length = offsets[i + 1] - begin;
  out.resize(static_cast<size_t>(length));
  file.read_rows(dataset, DType::i32, begin, length, out.data());
  check_tokens(out, vocab_size, file.path(), dataset, i);
}

}  // namespace

TranslationShardWriter::TranslationShardWriter(const std::string& path, const std::string& tokenizer_hash,
                                               int64_t vocab_size, const DatasetOptions& token_options)
    : file_(H5File::create(path)), vocab_size_(checked_vocab_size(path, vocab_size)) {
  file_.write_attr("schema", std::string(kTranslationSchema));
  file_.write_attr("schema_version", kTranslationSchemaVersion);
  file_.write_attr("tokenizer_hash", tokenizer_hash);
  file_.write_attr("vocab_size", vocab_size_);
  const int64_t zero = 0;
  DatasetOptions tokens = token_options;
  if (tokens.chunk_rows == 0) tokens.chunk_rows = kTokenChunkRows;
  for (const std::string side : {"src", "tgt"}) {
    file_.create_dataset(side + "_tokens", DType::i32, {}, tokens);
    file_.create_dataset(side + "_offsets", DType::i64, {}, kOffsetOptions);
    file_.append(side + "_offsets", DType::i64, &zero, 1);
  }
}

void TranslationShardWriter::add(const std::vector<int32_t>& src, const std::vector<int32_t>& tgt) {
  CHECK(!finished_) << file_.path() << ": add() after finish()";
  check_tokens(src, vocab_size_, file_.path(), "src_tokens", num_examples_);
  check_tokens(tgt, vocab_size_, file_.path(), "tgt_tokens", num_examples_);
  src_buf_.insert(src_buf_.end(), src.begin(), src.end());
  tgt_buf_.insert(tgt_buf_.end(), tgt.begin(), tgt.end());
  src_total_ += static_cast<int64_t>(src.size());
  tgt_total_ += static_cast<int64_t>(tgt.size());
  src_off_buf_.push_back(src_total_);
  tgt_off_buf_.push_back(tgt_total_);
  ++num_examples_;
  const size_t pending = std::max({src_buf_.size() * sizeof(int32_t), tgt_buf_.size() * sizeof(int32_t),
                                   src_off_buf_.size() * sizeof(int64_t)});
  if (pending >= kFlushBytes) flush();
}

void TranslationShardWriter::flush() {
  file_.append("src_tokens", DType::i32, src_buf_.data(), static_cast<int64_t>(src_buf_.size()));
  file_.append("tgt_tokens", DType::i32, tgt_buf_.data(), static_cast<int64_t>(tgt_buf_.size()));
  file_.append("src_offsets", DType::i64, src_off_buf_.data(), static_cast<int64_t>(src_off_buf_.size()));
  file_.append("tgt_offsets", DType::i64, tgt_off_buf_.data(), static_cast<int64_t>(tgt_off_buf_.size()));
  src_buf_.clear();
  tgt_buf_.clear();
  src_off_buf_.clear();
  tgt_off_buf_.clear();
}

void TranslationShardWriter::finish() {
  CHECK(!finished_) << file_.path() << ": finish() called twice";
  flush();
  file_.write_attr("num_examples", num_examples_);
  file_.close();
  finished_ = true;
}

TranslationShardReader::TranslationShardReader(const std::string& path) : file_(H5File::open_read(path)) {
  file_.check_schema(kTranslationSchema, kTranslationSchemaVersion);
  tokenizer_hash_ = file_.read_attr_string("tokenizer_hash");
  vocab_size_ = checked_vocab_size(path, file_.read_attr_int("vocab_size"));
  const int64_t n = read_num_examples(file_);
  file_.check_dataset("src_tokens", DType::i32, {});
  file_.check_dataset("tgt_tokens", DType::i32, {});
  src_offsets_ = file_.read_offsets("src_offsets", n + 1, "src_tokens");
  tgt_offsets_ = file_.read_offsets("tgt_offsets", n + 1, "tgt_tokens");
}

void TranslationShardReader::read(int64_t i, std::vector<int32_t>& src, std::vector<int32_t>& tgt) const {
  if (i < 0 || i >= num_examples()) {
    throw DataError(path() + ": example " + std::to_string(i) + " outside [0, " + std::to_string(num_examples()) + ")");
  }
  read_tokens(file_, "src_tokens", src_offsets_, vocab_size_, i, src);
  read_tokens(file_, "tgt_tokens", tgt_offsets_, vocab_size_, i, tgt);
}

}  // namespace px::data
