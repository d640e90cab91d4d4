// parse_text_proto: the parsed message, and errors as "<origin>:<line>:<column>: <message>" with the line
// quoted or "(at the end of the input)", thrown as the caller's error type.
#include <string>

#include <gtest/gtest.h>

#include "core/util/error.h"
#include "data/dataset.pb.h"
#include "data/text_proto.h"

namespace px::data {
namespace {

// The message of the DataError parsing `text` throws (fails the test when none is thrown).
std::string error_of(const std::string& text) {
  proto::DatasetIndex index;
  try {
    parse_text_proto<DataError>(text, "idx.pbtxt", index);
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no DataError for: " << text;
  return "";
}

TEST(ParseTextProto, ReadsFields) {
  proto::DatasetIndex index;
  parse_text_proto<DataError>("schema: \"parallax.translation\"\nsplits { name: \"train\" num_examples: 3 }\n",
                              "idx.pbtxt", index);
  EXPECT_EQ(index.schema(), "parallax.translation");
  ASSERT_EQ(index.splits_size(), 1);
  EXPECT_EQ(index.splits(0).num_examples(), 3);
}

TEST(ParseTextProto, UnknownFieldNamesPositionAndLine) {
  const std::string msg = error_of("schema: \"x\"\n  splitz { name: \"a\" }\n");
  EXPECT_EQ(msg.rfind("idx.pbtxt:2:", 0), 0u) << msg;
  EXPECT_NE(msg.find("splitz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(in `splitz { name: \"a\" }`)"), std::string::npos) << msg;
}

TEST(ParseTextProto, WrongTypeQuotesTheLine) {
  const std::string msg = error_of("schema_version: \"two\"\n");
  EXPECT_EQ(msg.rfind("idx.pbtxt:1:17: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("(in `schema_version: \"two\"`)"), std::string::npos) << msg;
}

TEST(ParseTextProto, UnclosedMessageIsAtTheEndOfTheInput) {
  const std::string msg = error_of("splits {\n  name: \"a\"\n");
  EXPECT_EQ(msg.rfind("idx.pbtxt:3:", 0), 0u) << msg;
  EXPECT_NE(msg.find("(at the end of the input)"), std::string::npos) << msg;
}

TEST(ParseTextProto, TryParseReturnsTheFirstErrorWithoutThrowing) {
  proto::DatasetIndex index;
  EXPECT_FALSE(try_parse_text_proto("schema: \"x\"", index).has_value());
  const auto error = try_parse_text_proto("schema: 1 2", index);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->line, 0);
  EXPECT_FALSE(error->message.empty());
  EXPECT_EQ(located_message(TextProtoError{-1, -1, "why"}, "", "f"), "f: why");
}

}  // namespace
}  // namespace px::data
