// Training configs: protobuf text files checked against configs/parallax.proto, command-line overrides
// (`--set a.b=value`) and the consistency checks a schema cannot express; every failure names the field.
#pragma once

#include <string>
#include <vector>

#include "configs/parallax.pb.h"
#include "models/translator/transformer.h"

namespace px {

// Parses protobuf text. Syntax errors, unknown fields and wrong types are a ConfigError
// "<origin>:<line>:<col>: <protobuf's message>" (the message names the field).
config::Config parse_config_text(const std::string& text, const std::string& origin);
// Reads and parses a .pbtxt file; a missing or unreadable file is a ConfigError naming it.
config::Config load_config_file(const std::string& path);

// Applies "a.b.c=value" to the scalar field model.d_model-style path (text-format value syntax: numbers,
// true/false, strings with or without quotes). An unknown path, a message or repeated field, or a value of
// the wrong type is a ConfigError naming the path.
void apply_override(config::Config& config, const std::string& assignment);
void apply_overrides(config::Config& config, const std::vector<std::string>& assignments);

// Consistency checks: positive sizes and steps, d_model % num_heads == 0, dropouts and label smoothing in
// [0, 1), a known activation / optimizer / schedule name, data.dir set, ... . ConfigError "<field>: <why>".
void validate_config(const config::Config& config);

// The layout checks that need the world size and the vocabularies: world_size % parallel.tp, and both
// vocabulary sizes % parallel.tp (Parallax does not pad vocabularies). ConfigError naming parallel.tp.
void check_parallel_layout(const config::Config& config, int world_size, int64_t src_vocab, int64_t tgt_vocab);

// The config as protobuf text with every field written out (defaults included), as stored in run dirs and
// checkpoint manifests.
std::string config_to_text(const config::Config& config);

// Fields that fix the model's parameters and their shapes (d_model, num_heads, encoder_layers,
// decoder_layers, d_ff, pre_norm, share_embeddings, tie_output; not dropouts, activation or max_positions,
// which sizes a buffer that is rebuilt); two configs whose model shapes differ cannot share a checkpoint. Returns "" when equal, else the first differing field as
// "model.d_model: 512 in the checkpoint, 256 in the config".
std::string model_shape_difference(const config::Config& checkpoint, const config::Config& current);

// The Translator options a config describes, for vocabularies of the given sizes.
translator::TranslatorOptions translator_options(const config::Config& config, int64_t src_vocab,
                                                 int64_t tgt_vocab, int64_t pad_id);

}  // namespace px
