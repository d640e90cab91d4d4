// Training configs: text-format parsing with located errors, `--set` overrides walked through the
// descriptors, the consistency checks of validate_config, the defaults-included dump and shape comparison.
#include "launcher/config.h"

#include <glog/logging.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/stubs/strutil.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "core/util/error.h"
#include "core/util/strings.h"
#include "data/text_proto.h"
#include "launcher/task.h"

namespace px {

namespace pb = google::protobuf;

namespace {

// The checks of validate_config, each throwing ConfigError "<field>: <why>, got <value>".
[[noreturn]] void invalid(const std::string& field, const std::string& why, const std::string& value) {
  throw ConfigError(field + ": " + why + ", got " + value);
}

std::string number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

void require_at_least(const std::string& field, int64_t value, int64_t min) {
  if (value < min) invalid(field, "must be >= " + std::to_string(min), std::to_string(value));
}

// NaN fails every range check: each is written as "value inside", never as "value outside".
void require_non_negative(const std::string& field, double value) {
  if (!(value >= 0 && std::isfinite(value))) invalid(field, "must be finite and >= 0", number(value));
}

void require_positive(const std::string& field, double value) {
  if (!(value > 0 && std::isfinite(value))) invalid(field, "must be finite and > 0", number(value));
}

void require_one_of(const std::string& field, const std::string& value, const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
  std::string expected;
  for (size_t i = 0; i < allowed.size(); ++i)
    expected += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + allowed[i];
  throw ConfigError(field + ": unknown value '" + value + "' (expected " + expected + ")");
}

void require_unit_interval(const std::string& field, double value) {  // [0, 1)
  if (!(value >= 0 && value < 1)) invalid(field, "must be in [0, 1)", number(value));
}

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t pos; (pos = s.find(sep, start)) != std::string::npos; start = pos + 1)
    parts.push_back(s.substr(start, pos - start));
  parts.push_back(s.substr(start));
  return parts;
}

// "d_model, num_heads, ..." for an error message listing what a message type offers.
std::string field_names(const pb::Descriptor& type) {
  std::string names;
  for (int i = 0; i < type.field_count(); ++i) {
    if (type.field(i)->options().deprecated()) continue;
    names += (names.empty() ? "" : ", ") + type.field(i)->name();
  }
  return names;
}

// Sets every unset scalar field of `message` and its sub-messages to its default, so that printing writes it;
// deprecated fields and the unset members of a oneof stay unset, and lists are written as they are (an empty list
// means the default its comment documents).
void set_defaults_explicitly(pb::Message& message) {
  const pb::Reflection& reflection = *message.GetReflection();
  const pb::Descriptor& type = *message.GetDescriptor();
  for (int i = 0; i < type.field_count(); ++i) {
    const pb::FieldDescriptor* field = type.field(i);
    if (field->is_repeated() || field->options().deprecated()) continue;
    if (field->real_containing_oneof() != nullptr && !reflection.HasField(message, field)) continue;
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      set_defaults_explicitly(*reflection.MutableMessage(&message, field));
      continue;
    }
    if (reflection.HasField(message, field)) continue;
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        reflection.SetInt32(&message, field, field->default_value_int32());
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        reflection.SetInt64(&message, field, field->default_value_int64());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        reflection.SetUInt32(&message, field, field->default_value_uint32());
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        reflection.SetUInt64(&message, field, field->default_value_uint64());
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        reflection.SetFloat(&message, field, field->default_value_float());
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        reflection.SetDouble(&message, field, field->default_value_double());
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        reflection.SetBool(&message, field, field->default_value_bool());
        break;
      case pb::FieldDescriptor::CPPTYPE_STRING:
        reflection.SetString(&message, field, field->default_value_string());
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        reflection.SetEnum(&message, field, field->default_value_enum());
        break;
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        break;  // handled above
    }
  }
}

void require_non_empty(const std::string& field, const std::string& value) {
  if (value.empty()) throw ConfigError(field + ": must be set (non-empty)");
}

// The model's own fields; the rest of the config is checked by validate_config.
void validate_model_kind(const config::Config& config) { task_kind(config).validate(config); }

void validate_data(const config::DataConfig& d) {
  require_non_empty("data.dir", d.dir());
  require_non_empty("data.train_split", d.train_split());
  require_non_empty("data.valid_split", d.valid_split());
  require_at_least("data.max_length", d.max_length(), 2);  // one token plus its eos/bos
  require_at_least("data.prefetch", d.prefetch(), 1);
}


void validate_optimizer(const config::OptimizerConfig& o) {
  if (o.name() != "adamw") throw ConfigError("optimizer.name: unknown optimizer '" + o.name() + "' (expected adamw)");
  require_positive("optimizer.lr", o.lr());
  require_unit_interval("optimizer.beta1", o.beta1());
  require_unit_interval("optimizer.beta2", o.beta2());
  require_non_negative("optimizer.eps", o.eps());
  require_non_negative("optimizer.weight_decay", o.weight_decay());
  require_non_negative("optimizer.clip_grad_norm", o.clip_grad_norm());
}

void validate_schedule(const config::ScheduleConfig& s, const config::TrainConfig& t) {
  const std::string& name = s.name();
  require_one_of("schedule.name", name, {"inverse_sqrt", "cosine", "constant", "step"});
  require_at_least("schedule.warmup_steps", s.warmup_steps(), name == "inverse_sqrt" ? 1 : 0);
  if (name == "cosine" && s.warmup_steps() >= t.max_steps())
    throw ConfigError("schedule.warmup_steps: the cosine schedule needs warmup < train.max_steps (" +
                      std::to_string(t.max_steps()) + "), got " + std::to_string(s.warmup_steps()));
  if (!(s.min_lr_ratio() >= 0 && s.min_lr_ratio() <= 1))
    invalid("schedule.min_lr_ratio", "must be in [0, 1]", number(s.min_lr_ratio()));
  require_at_least("schedule.step_size", s.step_size(), 1);
  require_positive("schedule.gamma", s.gamma());
}

void validate_train(const config::TrainConfig& t) {
  require_at_least("train.max_steps", t.max_steps(), 1);
  require_at_least("train.max_epochs", t.max_epochs(), 0);
  require_non_negative("train.max_minutes", t.max_minutes());
  require_at_least("train.batch_tokens", t.batch_tokens(), 1);
  require_at_least("train.batch_size", t.batch_size(), 1);
  require_at_least("train.threads", t.threads(), 0);
  require_unit_interval("train.label_smoothing", t.label_smoothing());
  require_at_least("train.accumulate_steps", t.accumulate_steps(), 1);
  require_one_of("train.device", t.device(), {"auto", "cpu", "cuda"});
  require_one_of("train.precision", t.precision(), {"auto", "f32", "bf16", "f16", "f64"});
  require_at_least("train.max_skipped_steps", t.max_skipped_steps(), 1);
}

void validate_eval(const config::EvalConfig& e) {
  require_at_least("eval.every_steps", e.every_steps(), 0);
  require_at_least("eval.beam", e.beam(), 1);
  require_non_negative("eval.length_penalty", e.length_penalty());
  require_non_negative("eval.max_len_a", e.max_len_a());
  require_at_least("eval.max_len_b", e.max_len_b(), 0);
  if (e.max_len_a() == 0 && e.max_len_b() == 0)
    throw ConfigError("eval.max_len_b: must be >= 1 when eval.max_len_a is 0 (no hypothesis token allowed)");
  require_at_least("eval.max_sentences", e.max_sentences(), 0);
  require_at_least("eval.batch_tokens", e.batch_tokens(), 1);
  require_at_least("eval.batch_size", e.batch_size(), 1);
  require_at_least("eval.max_images", e.max_images(), 0);
}

// What tp splits is the model's to check (its validate); the world size is only known at launch.
void validate_parallel(const config::ParallelConfig& p) {
  require_at_least("parallel.tp", p.tp(), 1);
  require_positive("parallel.bucket_mb", p.bucket_mb());
  require_positive("parallel.timeout_minutes", p.timeout_minutes());
  require_one_of("parallel.grad_dtype", p.grad_dtype(), {"f32", "bf16"});
  require_one_of("parallel.gpu_collectives", p.gpu_collectives(), {"auto", "nccl", "mpi"});
}

}  // namespace

void check_world_layout(const config::Config& config, int world_size) {
  const int tp = config.parallel().tp();
  if (world_size % tp != 0)
    throw ConfigError("parallel.tp: " + std::to_string(tp) + " does not divide the world size " +
                      std::to_string(world_size) + " (ranks started by mpirun/srun)");
}

namespace {

// Moves the translator's fields written directly under `model` (the layout before the `kind` oneof) into
// model.translator; a model with no kind is the translator with its defaults. Returns whether any was moved.
// Both layouts at once is a ConfigError naming the first moved field.
bool move_legacy_model_fields(config::ModelConfig& model, const std::string& origin) {
  const pb::Descriptor& type = *config::ModelConfig::descriptor();
  const pb::Reflection& reflection = *model.GetReflection();
  std::vector<const pb::FieldDescriptor*> legacy;
  for (int i = 0; i < type.field_count(); ++i) {
    const pb::FieldDescriptor* field = type.field(i);
    if (field->options().deprecated() && reflection.HasField(model, field)) legacy.push_back(field);
  }
  if (legacy.empty()) {
    if (model.kind_case() == config::ModelConfig::KIND_NOT_SET) model.mutable_translator();
    return false;
  }
  if (model.kind_case() != config::ModelConfig::KIND_NOT_SET)
    throw ConfigError(origin + ": model." + legacy.front()->name() + " is written directly under `model` next to `" +
                      model.GetDescriptor()->FindFieldByNumber(model.kind_case())->name() +
                      " { ... }`; move it into the latter");
  // The deprecated fields carry TranslatorConfig's numbers and types, so the wire format moves them.
  config::ModelConfig fields_only = model;
  std::string bytes;
  CHECK(fields_only.SerializeToString(&bytes)) << "move_legacy_model_fields: cannot serialise model";
  CHECK(model.mutable_translator()->ParseFromString(bytes)) << "move_legacy_model_fields: cannot move model fields";
  for (const pb::FieldDescriptor* field : legacy) reflection.ClearField(&model, field);
  return true;
}

// Parses and moves the legacy model fields (see move_legacy_model_fields).
config::Config parse_config(const std::string& text, const std::string& origin, bool* had_legacy_fields) {
  config::Config config;
  data::parse_text_proto<ConfigError>(text, origin, config);
  *had_legacy_fields = move_legacy_model_fields(*config.mutable_model(), origin);
  return config;
}

// The rank mpirun/srun gave this process (0 without one): the deprecation notice is printed by rank 0 only.
bool is_first_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
    if (const char* value = std::getenv(name)) return std::string(value) == "0";
  }
  return true;
}

}  // namespace

config::Config parse_config_text(const std::string& text, const std::string& origin) {
  bool had_legacy_fields = false;
  return parse_config(text, origin, &had_legacy_fields);
}

config::Config load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open config file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": cannot read config file");
  bool had_legacy_fields = false;
  config::Config config = parse_config(text.str(), path, &had_legacy_fields);
  static bool warned = false;  // one line per process, however many files
  if (had_legacy_fields && !warned && is_first_rank()) {
    warned = true;
    std::fprintf(stderr,
                 "parallax: warning: %s: model fields written directly under `model` are deprecated; write them "
                 "in `model { translator { ... } }` (read as such)\n",
                 path.c_str());
  }
  return config;
}

void apply_override(config::Config& config, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos)
    throw ConfigError("--set " + assignment + ": expected <field>=<value>, e.g. model.d_model=256");
  const std::string path = trim(assignment.substr(0, eq));
  const std::string value = assignment.substr(eq + 1);
  const std::string where = "--set " + path;
  if (path.empty()) throw ConfigError("--set " + assignment + ": no field name before '='");

  pb::Message* message = &config;
  std::string walked;  // the path so far, for messages
  std::vector<std::string> components = split(path, '.');
  // model.<field> of the layout before the `kind` oneof addresses the translator (model.translator.<field>).
  if (config.model().kind_case() == config::ModelConfig::KIND_NOT_SET) config.mutable_model()->mutable_translator();
  if (components.size() >= 2 && components[0] == "model" && config.model().has_translator()) {
    const pb::FieldDescriptor* own = config::ModelConfig::descriptor()->FindFieldByName(components[1]);
    if (own == nullptr || own->options().deprecated()) components.insert(components.begin() + 1, "translator");
  }
  for (size_t i = 0; i < components.size(); ++i) {
    const pb::Descriptor& type = *message->GetDescriptor();
    const std::string parent = walked.empty() ? "the config" : walked;
    const pb::FieldDescriptor* field = type.FindFieldByName(components[i]);
    if (field == nullptr)
      throw ConfigError(where + ": no field '" + components[i] + "' in " + parent + " (fields: " + field_names(type) +
                        ")");
    walked += (walked.empty() ? "" : ".") + components[i];
    if (field->is_repeated())
      throw ConfigError(where + ": " + walked + " is a repeated field; only scalars can be set");
    const bool is_message = field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    const bool is_last = i + 1 == components.size();
    if (is_last && is_message)
      throw ConfigError(where + ": " + walked + " is a message; set one of its fields (" +
                        field_names(*field->message_type()) + ")");
    if (!is_last && !is_message)
      throw ConfigError(where + ": " + walked + " is a scalar field and has no field '" + components[i + 1] + "'");
    if (!is_last) {
      message = message->GetReflection()->MutableMessage(message, field);
      continue;
    }
    // A string may be written bare (data.dir=runs/x); anything quoted is parsed as text format writes it.
    std::string literal = value;
    const std::string trimmed = trim(value);
    const bool quoted = !trimmed.empty() && (trimmed.front() == '"' || trimmed.front() == '\'');
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING && !quoted) literal = "\"" + pb::CEscape(value) + "\"";
    // "<name>: <literal>" parsed as a whole into a scratch message, so trailing tokens are errors too, then
    // merged: the scratch holds only this field, and only a fully parsed value reaches the config.
    std::unique_ptr<pb::Message> scratch(message->New());
    if (const auto error = data::try_parse_text_proto(field->name() + ": " + literal, *scratch)) {
      throw ConfigError(where + "=" + value + ": " + error->message + " (" + walked + " is " + field->type_name() +
                        ")");
    }
    message->MergeFrom(*scratch);
  }
}

void apply_overrides(config::Config& config, const std::vector<std::string>& assignments) {
  for (const std::string& assignment : assignments) apply_override(config, assignment);
}

void validate_config(const config::Config& config) {
  validate_data(config.data());
  validate_optimizer(config.optimizer());
  validate_schedule(config.schedule(), config.train());
  validate_train(config.train());
  validate_eval(config.eval());
  validate_parallel(config.parallel());
  validate_model_kind(config);
  require_at_least("log.every_steps", config.log().every_steps(), 1);
  require_at_least("checkpoint.every_steps", config.checkpoint().every_steps(), 0);
  require_at_least("checkpoint.keep_last", config.checkpoint().keep_last(), 0);
}

std::string config_to_text(const config::Config& config) {
  config::Config full = config;
  if (full.model().kind_case() == config::ModelConfig::KIND_NOT_SET) full.mutable_model()->mutable_translator();
  set_defaults_explicitly(full);
  std::string text;
  CHECK(pb::TextFormat::PrintToString(full, &text)) << "config_to_text: protobuf could not print the config";
  return text;
}

std::string model_shape_difference(const config::Config& checkpoint, const config::Config& current) {
  const TaskKind& saved = task_kind(checkpoint);
  const TaskKind& wanted = task_kind(current);
  if (&saved != &wanted)
    return std::string("model: ") + saved.name + " in the checkpoint, " + wanted.name + " in the config";
  return saved.shape_difference(checkpoint, current);
}

std::string shape_difference_of_fields(const pb::Message& checkpoint, const pb::Message& current,
                                       const std::vector<std::string>& fields, const std::string& prefix) {
  for (const std::string& name : fields) {
    const pb::FieldDescriptor* field = checkpoint.GetDescriptor()->FindFieldByName(name);
    CHECK(field != nullptr) << "shape_difference_of_fields: no field " << prefix << name << " in parallax.proto";
    std::string in_checkpoint, in_config;  // effective values: an unset field reads as its default
    pb::TextFormat::PrintFieldValueToString(checkpoint, field, -1, &in_checkpoint);
    pb::TextFormat::PrintFieldValueToString(current, field, -1, &in_config);
    if (in_checkpoint != in_config)
      return prefix + name + ": " + in_checkpoint + " in the checkpoint, " + in_config + " in the config";
  }
  return "";
}

}  // namespace px
