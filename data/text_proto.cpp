// Protobuf text-format parsing: the first error protobuf reports, with its position and the line it is in.
#include "data/text_proto.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <sstream>

#include "core/util/strings.h"

namespace px::data {
namespace {

namespace pb = google::protobuf;

// Keeps protobuf's first error with its 0-based position.
class FirstErrorCollector : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (error_) return;
    error_ = TextProtoError{line, column, message};
  }
  const std::optional<TextProtoError>& error() const { return error_; }

 private:
  std::optional<TextProtoError> error_;
};

// Line `line` (0-based) of `text` without surrounding blanks, or "" when there is no such line.
std::string source_line(const std::string& text, int line) {
  std::istringstream lines(text);
  std::string current;
  for (int i = 0; std::getline(lines, current); ++i)
    if (i == line) return trim(current);
  return "";
}

// Offset of the first character of line `line` (0-based) in `text`; text.size() when there is no such line.
size_t line_start(const std::string& text, int line) {
  size_t offset = 0;
  for (int i = 0; i < line; ++i) {
    offset = text.find('\n', offset);
    if (offset == std::string::npos) return text.size();
    ++offset;
  }
  return offset;
}

}  // namespace

std::optional<TextProtoError> try_parse_text_proto(const std::string& text, pb::Message& message) {
  FirstErrorCollector errors;
  pb::TextFormat::Parser parser;  // unknown fields and repeated singular fields are errors by default
  parser.RecordErrorsTo(&errors);
  if (parser.ParseFromString(text, &message)) return std::nullopt;
  if (errors.error()) return errors.error();
  return TextProtoError{-1, -1, "not a valid " + message.GetDescriptor()->name()};
}

std::string located_message(const TextProtoError& error, const std::string& text, const std::string& origin) {
  if (error.line < 0) return origin + ": " + error.message;
  std::string message =
      origin + ":" + std::to_string(error.line + 1) + ":" + std::to_string(error.column + 1) + ": " + error.message;
  // protobuf's type errors ("Expected integer, got: ...") do not name the field; the line does.
  const std::string line = source_line(text, error.line);
  if (!line.empty())
    message += " (in `" + line + "`)";
  else if (text.find_first_not_of(" \t\r\n", line_start(text, error.line)) == std::string::npos)
    message += " (at the end of the input)";
  return message;
}

}  // namespace px::data
