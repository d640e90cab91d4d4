// Tests of launcher/config: located parse errors, --set overrides and their errors, every validation
// rule, the defaults-included dump, shape comparison, translator options and the shipped configs.
#include "launcher/config.h"
#include "launcher/translator_task.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "core/util/error.h"
#include "tests/common/temp_dir.h"

// The tests of the deprecated model layout read its fields on purpose.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace px {
namespace {

namespace pb = google::protobuf;

// Runs f, which must throw px::ConfigError whose what() contains every one of `parts`; returns what().
template <typename F>
std::string expect_config_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const ConfigError& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError; expected one mentioning " << (parts.empty() ? std::string() : parts.front());
  return "";
}

// The smallest valid config: defaults everywhere and the one required field.
config::Config minimal_config() { return parse_config_text("data { dir: \"runs/data/x\" }\n", "minimal"); }

// True when every field of `message` and of its sub-messages is explicitly set (but deprecated fields and the
// other members of a set oneof).
bool all_fields_set(const pb::Message& message, std::string* missing) {
  const pb::Reflection& reflection = *message.GetReflection();
  const pb::Descriptor& type = *message.GetDescriptor();
  for (int i = 0; i < type.field_count(); ++i) {
    const pb::FieldDescriptor* field = type.field(i);
    if (field->options().deprecated() || field->is_repeated()) continue;  // lists are written as they are
    const pb::OneofDescriptor* oneof = field->real_containing_oneof();
    if (oneof != nullptr && reflection.HasOneof(message, oneof) && !reflection.HasField(message, field)) continue;
    if (!reflection.HasField(message, field)) {
      *missing = field->full_name();
      return false;
    }
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
        !all_fields_set(reflection.GetMessage(message, field), missing))
      return false;
  }
  return true;
}

std::filesystem::path source_configs_dir() {
  return std::filesystem::path(__FILE__).parent_path() / ".." / ".." / "configs";
}

// ---- parsing ----

TEST(ParseConfig, ReadsFieldsAndKeepsDefaults) {
  const config::Config c = parse_config_text(
      "# a comment\nmodel { d_model: 256 pre_norm: true activation: \"gelu\" }\n"
      "optimizer { lr: 1e-3 }\ndata { dir: 'runs/d' }\n",
      "inline");
  EXPECT_EQ(c.model().translator().d_model(), 256);
  EXPECT_TRUE(c.model().translator().pre_norm());
  EXPECT_EQ(c.model().translator().activation(), "gelu");
  EXPECT_DOUBLE_EQ(c.optimizer().lr(), 1e-3);
  EXPECT_EQ(c.data().dir(), "runs/d");
  EXPECT_EQ(c.model().translator().num_heads(), 8);  // the schema's default
  EXPECT_EQ(c.schedule().warmup_steps(), 4000);
}

TEST(ParseConfig, UnknownFieldIsAnErrorWithLineColumnAndName) {
  const std::string msg =
      expect_config_error([] { parse_config_text("model {\n  d_model: 256\n  d_modle: 3\n}\n", "cfg.pbtxt"); },
                          {"cfg.pbtxt:3:", "d_modle", "ModelConfig"});
  // protobuf places this error at the token after the name (the ':' in column 10, 1-based); the exact
  // column is its choice, so only "line:column:" is required.
  EXPECT_TRUE(std::regex_search(msg, std::regex("^cfg\\.pbtxt:3:[0-9]+: "))) << msg;
}

TEST(ParseConfig, UnknownTopLevelGroupIsAnError) {
  expect_config_error([] { parse_config_text("modle { d_model: 256 }\n", "cfg.pbtxt"); }, {"cfg.pbtxt:1:", "modle"});
}

TEST(ParseConfig, WrongTypeNamesTheFieldAndPosition) {
  const std::string msg = expect_config_error(
      [] { parse_config_text("data { dir: \"d\" }\nmodel {\n  d_model: \"abc\"\n}\n", "cfg.pbtxt"); },
      {"cfg.pbtxt:3:", "d_model", "integer"});
  EXPECT_NE(msg.find("cfg.pbtxt:3:12:"), std::string::npos) << msg;  // the string literal's column
}

TEST(ParseConfig, OutOfRangeAndFractionalIntegersAreErrors) {
  expect_config_error([] { parse_config_text("model { d_model: 3000000000 }", "c"); }, {"c:1:", "d_model"});
  expect_config_error([] { parse_config_text("model { d_model: 1.5 }", "c"); }, {"c:1:", "d_model"});
  expect_config_error([] { parse_config_text("train { seed: -1 }", "c"); }, {"c:1:", "seed"});
  expect_config_error([] { parse_config_text("model { pre_norm: maybe }", "c"); }, {"c:1:", "pre_norm"});
}

TEST(ParseConfig, SyntaxErrorHasLineAndColumn) {
  expect_config_error([] { parse_config_text("model {\n  d_model: 256\n", "cfg.pbtxt"); },
                      {"cfg.pbtxt:3:", "end of the input"});
  expect_config_error([] { parse_config_text("model {\n  d_model 256 }\n", "cfg.pbtxt"); },
                      {"cfg.pbtxt:2:11:", "d_model"});
}

TEST(ParseConfig, FieldGivenTwiceIsAnError) {
  expect_config_error([] { parse_config_text("model { d_model: 256 d_model: 512 }", "c"); }, {"c:1:", "d_model"});
}

TEST(ParseConfig, TheOldModelLayoutReadsAsTheTranslator) {
  const config::Config now =
      parse_config_text("model { translator { d_model: 256 pre_norm: true } }\ndata { dir: 'd' }", "now");
  const config::Config old = parse_config_text("model { d_model: 256 pre_norm: true }\ndata { dir: 'd' }", "old");
  EXPECT_TRUE(old.model().has_translator());
  EXPECT_FALSE(old.model().has_d_model());  // moved, not copied
  EXPECT_EQ(old.model().translator().d_model(), 256);
  std::string report;
  pb::util::MessageDifferencer differ;
  differ.ReportDifferencesToString(&report);
  EXPECT_TRUE(differ.Compare(now, old)) << report;
}

TEST(ParseConfig, BothModelLayoutsAtOnceIsAnError) {
  expect_config_error([] { parse_config_text("model { d_ff: 64 translator { d_model: 32 } }", "c"); },
                      {"c: model.d_ff", "translator { ... }"});
}

TEST(ParseConfig, NoModelIsTheDefaultTranslator) {
  const config::Config c = minimal_config();
  EXPECT_TRUE(c.model().has_translator());
  EXPECT_EQ(c.model().translator().d_model(), 512);
}

class LoadConfigFile : public test::TempDirTest {};

TEST_F(LoadConfigFile, ReadsAFileAndNamesItInErrors) {
  {
    std::ofstream(path("ok.pbtxt")) << "data { dir: \"x\" }\nmodel { num_heads: 4 }\n";
    std::ofstream(path("bad.pbtxt")) << "model {\n  heads: 4\n}\n";
  }
  EXPECT_EQ(load_config_file(path("ok.pbtxt")).model().translator().num_heads(), 4);
  expect_config_error([&] { load_config_file(path("bad.pbtxt")); }, {path("bad.pbtxt") + ":2:", "heads"});
  expect_config_error([&] { load_config_file(path("missing.pbtxt")); }, {path("missing.pbtxt")});
}

// ---- overrides ----

TEST(ApplyOverride, SetsScalarsOfEveryType) {
  config::Config c = minimal_config();
  apply_override(c, "model.d_model=256");
  apply_override(c, "model.dropout=0.25");
  apply_override(c, "optimizer.lr=3e-4");
  apply_override(c, "model.pre_norm=true");
  apply_override(c, "model.share_embeddings=false");
  apply_override(c, "model.activation=gelu");
  apply_override(c, "train.max_steps=5000000000");  // beyond int32: train.max_steps is int64
  apply_override(c, "train.seed=18446744073709551615");
  apply_override(c, "eval.max_len_b=-1");  // a valid int32; validate_config rejects it later
  EXPECT_EQ(c.model().translator().d_model(), 256);
  EXPECT_EQ(c.model().translator().dropout(), 0.25f);
  EXPECT_DOUBLE_EQ(c.optimizer().lr(), 3e-4);
  EXPECT_TRUE(c.model().translator().pre_norm());
  EXPECT_FALSE(c.model().translator().share_embeddings());
  EXPECT_EQ(c.model().translator().activation(), "gelu");
  EXPECT_EQ(c.train().max_steps(), 5000000000LL);
  EXPECT_EQ(c.train().seed(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(c.eval().max_len_b(), -1);
}

TEST(ApplyOverride, StringsWithAndWithoutQuotes) {
  config::Config c = minimal_config();
  apply_override(c, "data.dir=runs/my data/ü");
  EXPECT_EQ(c.data().dir(), "runs/my data/ü");
  apply_override(c, "data.dir=\"quoted \\\"dir\\\"\"");
  EXPECT_EQ(c.data().dir(), "quoted \"dir\"");
  apply_override(c, "data.dir=a\\b\"c");  // bare: taken verbatim, backslash and quote included
  EXPECT_EQ(c.data().dir(), "a\\b\"c");
  apply_override(c, "data.train_split=");
  EXPECT_EQ(c.data().train_split(), "");
}

TEST(ApplyOverride, TheOldAndTheNewModelPathSetTheSameField) {
  config::Config c = minimal_config();
  apply_override(c, "model.translator.d_ff=100");
  EXPECT_EQ(c.model().translator().d_ff(), 100);
  apply_override(c, "model.d_ff=200");
  EXPECT_EQ(c.model().translator().d_ff(), 200);
  EXPECT_FALSE(c.model().has_d_ff());
  config::Config empty;  // no model kind yet: the translator's
  apply_override(empty, "model.d_ff=300");
  EXPECT_EQ(empty.model().translator().d_ff(), 300);
}

TEST(ApplyOverride, LaterOverridesWin) {
  config::Config c = minimal_config();
  apply_overrides(c, {"model.d_model=256", "model.num_heads=4", "model.d_model=128"});
  EXPECT_EQ(c.model().translator().d_model(), 128);
  EXPECT_EQ(c.model().translator().num_heads(), 4);
}

TEST(ApplyOverride, UnknownPathsNameThePathAndTheChoices) {
  config::Config c = minimal_config();
  expect_config_error([&] { apply_override(c, "model.d_modle=256"); },
                      {"--set model.d_modle", "no field 'd_modle' in model", "d_model", "num_heads"});
  expect_config_error([&] { apply_override(c, "modle.d_model=256"); },
                      {"--set modle.d_model", "no field 'modle' in the config", "model, data"});
  expect_config_error([&] { apply_override(c, "model.d_model.x=1"); }, {"--set model.d_model.x", "scalar"});
  expect_config_error([&] { apply_override(c, "model=1"); }, {"--set model", "message", "translator"});
  expect_config_error([&] { apply_override(c, "model.d_model"); }, {"model.d_model", "<field>=<value>"});
  expect_config_error([&] { apply_override(c, "=1"); }, {"no field name"});
}

TEST(ApplyOverride, BadValuesNameThePathAndType) {
  config::Config c = minimal_config();
  expect_config_error([&] { apply_override(c, "model.d_model=abc"); }, {"--set model.d_model=abc", "int32"});
  expect_config_error([&] { apply_override(c, "model.d_model=3000000000"); }, {"--set model.d_model", "range"});
  expect_config_error([&] { apply_override(c, "model.d_model=1.5"); }, {"--set model.d_model", "int32"});
  expect_config_error([&] { apply_override(c, "model.d_model=256 512"); }, {"--set model.d_model"});
  expect_config_error([&] { apply_override(c, "model.pre_norm=yes"); }, {"--set model.pre_norm", "bool"});
  expect_config_error([&] { apply_override(c, "model.dropout=fast"); }, {"--set model.dropout", "double"});
  expect_config_error([&] { apply_override(c, "train.seed=-1"); }, {"--set train.seed", "uint64"});
  expect_config_error([&] { apply_override(c, "data.dir=\"unterminated"); }, {"--set data.dir"});
  EXPECT_EQ(c.model().translator().d_model(), 512);  // the failed overrides left the field alone
}

// ---- validation ----

TEST(ValidateConfig, DefaultsWithADataDirAreValid) { EXPECT_NO_THROW(validate_config(minimal_config())); }

TEST(ValidateConfig, BoundaryValuesAreAccepted) {
  const std::vector<std::vector<std::string>> cases = {
      {"model.dropout=0", "model.attention_dropout=0.999", "train.label_smoothing=0"},
      {"schedule.name=constant", "schedule.warmup_steps=0"},
      {"schedule.name=cosine", "schedule.warmup_steps=0", "train.max_steps=1", "schedule.min_lr_ratio=1"},
      {"schedule.name=inverse_sqrt", "schedule.warmup_steps=1"},
      {"optimizer.eps=0", "optimizer.weight_decay=0", "optimizer.clip_grad_norm=0", "optimizer.beta1=0"},
      {"train.max_minutes=0", "train.threads=0", "train.max_epochs=0", "train.batch_tokens=1"},
      {"eval.every_steps=0", "eval.beam=1", "eval.length_penalty=0", "eval.max_len_a=0", "eval.max_len_b=1"},
      {"eval.max_len_a=0.5", "eval.max_len_b=0", "eval.max_sentences=0"},
      {"checkpoint.every_steps=0", "checkpoint.keep_last=0", "log.every_steps=1"},
      {"data.max_length=2", "model.max_positions=2", "data.prefetch=1"},
      {"model.d_model=6", "model.num_heads=3", "model.encoder_layers=1", "model.decoder_layers=1", "model.d_ff=1"},
      {"parallel.gpu_collectives=auto"},
      {"parallel.gpu_collectives=nccl"},
      {"parallel.gpu_collectives=mpi", "train.device=cuda"},
  };
  for (const std::vector<std::string>& overrides : cases) {
    config::Config c = minimal_config();
    apply_overrides(c, overrides);
    EXPECT_NO_THROW(validate_config(c)) << overrides.front();
  }
}

struct InvalidCase {
  std::vector<std::string> overrides;
  std::string field;  // the field the message must start with
};

TEST(ValidateConfig, EveryRuleNamesItsField) {
  const std::vector<InvalidCase> cases = {
      {{"model.d_model=0"}, "model.translator.d_model"},
      {{"model.num_heads=0"}, "model.translator.num_heads"},
      {{"model.num_heads=7"}, "model.translator.num_heads"},  // 512 % 7 != 0
      {{"model.encoder_layers=0"}, "model.translator.encoder_layers"},
      {{"model.decoder_layers=-1"}, "model.translator.decoder_layers"},
      {{"model.d_ff=0"}, "model.translator.d_ff"},
      {{"model.dropout=1"}, "model.translator.dropout"},
      {{"model.dropout=-0.1"}, "model.translator.dropout"},
      {{"model.dropout=nan"}, "model.translator.dropout"},
      {{"model.attention_dropout=1.5"}, "model.translator.attention_dropout"},
      {{"model.activation=tanh"}, "model.translator.activation"},
      {{"model.max_positions=255"}, "model.translator.max_positions"},  // data.max_length defaults to 256
      {{"data.dir="}, "data.dir"},
      {{"data.train_split="}, "data.train_split"},
      {{"data.valid_split="}, "data.valid_split"},
      {{"data.max_length=1"}, "data.max_length"},
      {{"data.prefetch=0"}, "data.prefetch"},
      {{"optimizer.name=adam"}, "optimizer.name"},
      {{"optimizer.lr=0"}, "optimizer.lr"},
      {{"optimizer.lr=inf"}, "optimizer.lr"},
      {{"optimizer.beta1=1"}, "optimizer.beta1"},
      {{"optimizer.beta2=-0.5"}, "optimizer.beta2"},
      {{"optimizer.eps=-1e-9"}, "optimizer.eps"},
      {{"optimizer.weight_decay=-0.01"}, "optimizer.weight_decay"},
      {{"optimizer.clip_grad_norm=-1"}, "optimizer.clip_grad_norm"},
      {{"schedule.name=linear"}, "schedule.name"},
      {{"schedule.warmup_steps=0"}, "schedule.warmup_steps"},  // inverse_sqrt divides by it
      {{"schedule.name=constant", "schedule.warmup_steps=-1"}, "schedule.warmup_steps"},
      {{"schedule.name=cosine", "schedule.warmup_steps=100", "train.max_steps=100"}, "schedule.warmup_steps"},
      {{"schedule.min_lr_ratio=1.5"}, "schedule.min_lr_ratio"},
      {{"train.max_steps=0"}, "train.max_steps"},
      {{"train.max_epochs=-1"}, "train.max_epochs"},
      {{"train.max_minutes=-5"}, "train.max_minutes"},
      {{"train.batch_tokens=0"}, "train.batch_tokens"},
      {{"train.threads=-1"}, "train.threads"},
      {{"train.label_smoothing=1"}, "train.label_smoothing"},
      {{"eval.every_steps=-1"}, "eval.every_steps"},
      {{"eval.beam=0"}, "eval.beam"},
      {{"eval.length_penalty=-1"}, "eval.length_penalty"},
      {{"eval.max_len_a=-0.5"}, "eval.max_len_a"},
      {{"eval.max_len_b=-1"}, "eval.max_len_b"},
      {{"eval.max_len_a=0", "eval.max_len_b=0"}, "eval.max_len_b"},
      {{"eval.max_sentences=-1"}, "eval.max_sentences"},
      {{"eval.batch_tokens=0"}, "eval.batch_tokens"},
      {{"log.every_steps=0"}, "log.every_steps"},
      {{"checkpoint.every_steps=-1"}, "checkpoint.every_steps"},
      {{"checkpoint.keep_last=-1"}, "checkpoint.keep_last"},
      {{"parallel.grad_dtype=f16"}, "parallel.grad_dtype"},
      {{"parallel.gpu_collectives=gloo"}, "parallel.gpu_collectives"},
      {{"parallel.gpu_collectives=NCCL"}, "parallel.gpu_collectives"},
  };
  for (const InvalidCase& invalid : cases) {
    config::Config c = minimal_config();
    apply_overrides(c, invalid.overrides);
    const std::string msg = expect_config_error([&] { validate_config(c); }, {invalid.field + ":"});
    EXPECT_EQ(msg.rfind(invalid.field + ":", 0), 0u) << invalid.overrides.back() << " -> " << msg;
  }
}

TEST(ValidateConfig, MissingDataDirIsReported) {
  expect_config_error([] { validate_config(config::Config()); }, {"data.dir:"});
}

// ---- text dump ----

TEST(ConfigToText, WritesEveryFieldIncludingDefaults) {
  const std::string text = config_to_text(minimal_config());
  for (const char* line : {"d_model: 512", "activation: \"relu\"", "share_embeddings: true", "warmup_steps: 4000",
                           "beta2: 0.98", "eps: 1e-09", "keep_last: 3", "train_split: \"train\"", "seed: 1"})
    EXPECT_NE(text.find(line), std::string::npos) << line << " missing from\n" << text;
  std::string missing;
  EXPECT_TRUE(all_fields_set(parse_config_text(text, "dump"), &missing)) << missing << " not written";
  // The empty config still writes its unset string as "".
  EXPECT_TRUE(all_fields_set(parse_config_text(config_to_text(config::Config()), "dump"), &missing)) << missing;
}

TEST(ConfigToText, WritesTheTranslatorBlockAndNoDeprecatedField) {
  const std::string text = config_to_text(parse_config_text("model { d_model: 64 }\ndata { dir: 'd' }", "old"));
  EXPECT_TRUE(std::regex_search(text, std::regex("model \\{\\s*translator \\{\\s*d_model: 64"))) << text;
  config::Config back;
  ASSERT_TRUE(pb::TextFormat::ParseFromString(text, &back)) << text;  // the raw message, before any moving
  EXPECT_FALSE(back.model().has_d_model()) << text;
}

TEST(ConfigToText, RoundTripsAFullySetConfigExactly) {
  config::Config c = parse_config_text(config_to_text(minimal_config()), "dump");
  apply_overrides(c, {"model.dropout=0.1", "model.attention_dropout=0.3333333", "optimizer.lr=7.123456789012345e-4",
                      "optimizer.eps=1e-9", "train.seed=18446744073709551615", "train.max_minutes=0.1",
                      "data.dir=runs/\"odd\" dir/ñ", "eval.max_len_a=1.2", "model.pre_norm=true"});
  std::string missing;
  ASSERT_TRUE(all_fields_set(c, &missing)) << missing;
  const config::Config back = parse_config_text(config_to_text(c), "dump");
  std::string report;
  pb::util::MessageDifferencer differ;
  differ.ReportDifferencesToString(&report);
  EXPECT_TRUE(differ.Compare(c, back)) << report;
}

// ---- shapes ----

TEST(ModelShapeDifference, ReportsTheFirstShapeFieldOnly) {
  const config::Config checkpoint = minimal_config();
  config::Config current = minimal_config();
  EXPECT_EQ(model_shape_difference(checkpoint, current), "");
  // Non-shape fields: dropouts, activation, max_positions (a buffer rebuilt at load).
  apply_overrides(current, {"model.dropout=0.3", "model.attention_dropout=0.2", "model.activation=gelu",
                            "model.max_positions=4096", "optimizer.lr=1"});
  EXPECT_EQ(model_shape_difference(checkpoint, current), "");
  apply_override(current, "model.d_model=256");
  EXPECT_EQ(model_shape_difference(checkpoint, current), "model.translator.d_model: 512 in the checkpoint, 256 in the config");
}

TEST(ModelShapeDifference, EachShapeFieldIsCompared) {
  const config::Config checkpoint = minimal_config();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model.num_heads=4", "model.translator.num_heads: 8 in the checkpoint, 4 in the config"},
      {"model.encoder_layers=3", "model.translator.encoder_layers: 6 in the checkpoint, 3 in the config"},
      {"model.decoder_layers=2", "model.translator.decoder_layers: 6 in the checkpoint, 2 in the config"},
      {"model.d_ff=1024", "model.translator.d_ff: 2048 in the checkpoint, 1024 in the config"},
      {"model.pre_norm=true", "model.translator.pre_norm: false in the checkpoint, true in the config"},
      {"model.share_embeddings=false", "model.translator.share_embeddings: true in the checkpoint, false in the config"},
      {"model.tie_output=false", "model.translator.tie_output: true in the checkpoint, false in the config"},
  };
  for (const auto& [assignment, expected] : cases) {
    config::Config current = minimal_config();
    apply_override(current, assignment);
    EXPECT_EQ(model_shape_difference(checkpoint, current), expected);
  }
}

TEST(ModelShapeDifference, UnsetEqualsExplicitDefault) {
  config::Config explicit_defaults = parse_config_text(config_to_text(minimal_config()), "dump");
  EXPECT_EQ(model_shape_difference(explicit_defaults, config::Config()), "");
}

// ---- translator options ----

TEST(TranslatorOptionsFromConfig, MapsEveryModelField) {
  config::Config c = minimal_config();
  apply_overrides(
      c, {"model.d_model=96", "model.num_heads=3", "model.encoder_layers=2", "model.decoder_layers=5", "model.d_ff=200",
          "model.dropout=0.1", "model.attention_dropout=0.05", "model.activation=gelu", "model.pre_norm=true",
          "model.share_embeddings=false", "model.tie_output=true", "model.max_positions=300"});
  const translator::TranslatorOptions o = translator_options(c, 1000, 1200, 3);
  EXPECT_EQ(o.src_vocab, 1000);
  EXPECT_EQ(o.tgt_vocab, 1200);
  EXPECT_EQ(o.pad_id, 3);
  EXPECT_EQ(o.d_model, 96);
  EXPECT_EQ(o.num_heads, 3);
  EXPECT_EQ(o.encoder_layers, 2);
  EXPECT_EQ(o.decoder_layers, 5);
  EXPECT_EQ(o.d_ff, 200);
  EXPECT_EQ(o.dropout, 0.1);
  EXPECT_EQ(o.attention_dropout, 0.05);
  EXPECT_EQ(o.activation, nn::Activation::gelu);
  EXPECT_TRUE(o.pre_norm);
  EXPECT_FALSE(o.share_embeddings);
  EXPECT_TRUE(o.tie_output);
  EXPECT_EQ(o.max_positions, 300);
  apply_override(c, "model.activation=swish");
  expect_config_error([&] { translator_options(c, 10, 10, 0); }, {"model.translator.activation", "swish"});
}

// ---- shipped configs ----

TEST(ShippedConfigs, LoadAndValidate) {
  const std::filesystem::path dir = source_configs_dir();
  for (const char* name : {"translator_base.pbtxt", "translator_bible_tiny.pbtxt"}) {
    SCOPED_TRACE(name);
    config::Config c;
    ASSERT_NO_THROW(c = load_config_file((dir / name).string()));
    EXPECT_NO_THROW(validate_config(c));
    EXPECT_EQ(c.data().dir(), "runs/data/bible_en_es");
  }
}

TEST(ShippedConfigs, BaseIsThePapersBaseModel) {
  const config::Config c = load_config_file((source_configs_dir() / "translator_base.pbtxt").string());
  EXPECT_EQ(c.model().translator().d_model(), 512);
  EXPECT_EQ(c.model().translator().num_heads(), 8);
  EXPECT_EQ(c.model().translator().encoder_layers(), 6);
  EXPECT_EQ(c.model().translator().decoder_layers(), 6);
  EXPECT_EQ(c.model().translator().d_ff(), 2048);
  EXPECT_FALSE(c.model().translator().pre_norm());
  EXPECT_EQ(c.schedule().name(), "inverse_sqrt");
  EXPECT_EQ(c.schedule().warmup_steps(), 4000);
  EXPECT_DOUBLE_EQ(c.optimizer().beta2(), 0.98);
  EXPECT_DOUBLE_EQ(c.optimizer().eps(), 1e-9);
  EXPECT_EQ(c.train().batch_tokens(), 25000);
}

}  // namespace
}  // namespace px
