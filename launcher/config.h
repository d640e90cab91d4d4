// Training configs: protobuf text files checked against configs/parallax.proto, command-line overrides
// (`--set a.b=value`) and the consistency checks a schema cannot express; every failure names the field.
#pragma once

#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "configs/parallax.pb.h"

namespace px {

// Parses protobuf text. Syntax errors, unknown fields and wrong types are a ConfigError
// "<origin>:<line>:<col>: <protobuf's message>" (the message names the field). The translator's fields of the
// layout before `model { translator { ... } }` (written directly under `model`) are moved into
// model.translator; a config naming no model kind trains the translator with its defaults.
config::Config parse_config_text(const std::string& text, const std::string& origin);
// Reads and parses a .pbtxt file; a missing or unreadable file is a ConfigError naming it. The first file of
// the process with the old model layout prints one deprecation line on stderr (rank 0).
config::Config load_config_file(const std::string& path);

// Applies "a.b.c=value" to the scalar field at the path (model.<field> of the translator reads as
// model.translator.<field>) (text-format value syntax: numbers,
// true/false, strings with or without quotes). An unknown path, a message or repeated field, or a value of
// the wrong type is a ConfigError naming the path.
void apply_override(config::Config& config, const std::string& assignment);
void apply_overrides(config::Config& config, const std::vector<std::string>& assignments);

// Consistency checks: positive sizes and steps, label smoothing in [0, 1), a known optimizer / schedule name,
// data.dir set, ..., and the model kind's own (TaskKind::validate). ConfigError "<field>: <why>".
void validate_config(const config::Config& config);

// The range checks validate_config and the model kinds share: ConfigError "<field>: must be ..., got <value>".
// NaN fails each.
void require_at_least(const std::string& field, int64_t value, int64_t min);
void require_non_negative(const std::string& field, double value);  // finite, >= 0
void require_positive(const std::string& field, double value);      // finite, > 0
void require_unit_interval(const std::string& field, double value); // [0, 1)
// ConfigError "<field>: unknown value '<v>' (expected a, b or c)" unless value is one of `allowed`.
void require_one_of(const std::string& field, const std::string& value, const std::vector<std::string>& allowed);

// world_size % parallel.tp == 0, once the world size is known. ConfigError naming parallel.tp.
void check_world_layout(const config::Config& config, int world_size);

// The config as protobuf text with every field written out (defaults included), as stored in run dirs and
// checkpoint manifests.
std::string config_to_text(const config::Config& config);

// "" when a checkpoint of `checkpoint`'s model can be loaded into `current`'s, else the first difference:
// another model kind, or the kind's first differing shape field (TaskKind::shape_difference), e.g.
// "model.translator.d_model: 512 in the checkpoint, 256 in the config".
std::string model_shape_difference(const config::Config& checkpoint, const config::Config& current);

// The first of `fields` (of one message type) whose effective values (unset: the default) differ, as
// "<prefix><field>: <a> in the checkpoint, <b> in the config"; "" when none does.
std::string shape_difference_of_fields(const google::protobuf::Message& checkpoint,
                                       const google::protobuf::Message& current,
                                       const std::vector<std::string>& fields, const std::string& prefix);

}  // namespace px
