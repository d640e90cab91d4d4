// Protobuf text-format parsing with located errors, one way for every text file Parallax reads (configs,
// checkpoint manifests, dataset indexes): "<origin>:<line>:<column>: <protobuf's message> (in `<the line>`)".
#pragma once

#include <optional>
#include <string>

#include <google/protobuf/message.h>

namespace px::data {

// protobuf's first error in a text (later ones are usually its consequences).
struct TextProtoError {
  int line = -1, column = -1;  // 0-based; -1 when protobuf gave no position
  std::string message;
};

// Parses `text` into `message`; unknown fields and a singular field given twice are errors. nullopt on success.
std::optional<TextProtoError> try_parse_text_proto(const std::string& text, google::protobuf::Message& message);

// The error as "<origin>:<L>:<C>: <message>" (1-based), followed by the offending line of `text` in backquotes,
// or by "(at the end of the input)" when nothing but blanks follows; "<origin>: <message>" without a position.
std::string located_message(const TextProtoError& error, const std::string& text, const std::string& origin);

// Parses `text` (read from `origin`, a path or a name) into `message`; an error throws ErrorT (a px::Error
// subclass) with its located_message.
template <class ErrorT>
void parse_text_proto(const std::string& text, const std::string& origin, google::protobuf::Message& message) {
  if (const std::optional<TextProtoError> error = try_parse_text_proto(text, message))
    throw ErrorT(located_message(*error, text, origin));
}

}  // namespace px::data
