# bench/translator/pbtxt_config.py: protobuf text format for the PyTorch reference trainer: a proto2 schema read from
# configs/parallax.proto (fields and defaults), .pbtxt parsing, `--set a.b=v` overrides and the config checks it needs.
"""Parallax configs without python3-protobuf: configs/parallax.proto is the schema, so defaults cannot drift."""
import codecs
import json
import re
import sys


class ConfigError(Exception):
    """A bad config, override or dataset index: printed as one line naming the field, exit status 2."""


_TOKEN = re.compile(r"\s+|#[^\n]*|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[{}:;,<>]|[^\s{}:;,<>\"'#]+")
_SCALAR_TYPES = {"int32", "int64", "uint32", "uint64", "double", "float", "bool", "string"}


def _tokens(text, origin):
    """(token, line) pairs of protobuf text format, comments and blanks dropped."""
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConfigError(f"{origin}:{line}: unexpected character {text[pos]!r}")
        tok = m.group(0)
        if not tok.isspace() and not tok.startswith("#"):
            out.append((tok, line))
        line += tok.count("\n")
        pos = m.end()
    return out


def parse_text_format(text, origin):
    """Generic text format -> list of (name, value, line); value is a str token or a nested list."""
    toks = _tokens(text, origin)
    pos = 0

    def message(closing):
        nonlocal pos
        entries = []
        while True:
            if pos == len(toks):
                if closing is None:
                    return entries
                raise ConfigError(f"{origin}: missing '{closing}' at the end of the input")
            tok, line = toks[pos]
            if tok == closing:
                pos += 1
                return entries
            if not re.fullmatch(r"[A-Za-z_]\w*", tok):
                raise ConfigError(f"{origin}:{line}: expected a field name, got {tok!r}")
            pos += 1
            colon = pos < len(toks) and toks[pos][0] == ":"
            pos += colon
            if pos == len(toks):
                raise ConfigError(f"{origin}:{line}: no value for {tok}")
            opener = toks[pos][0]
            if opener in ("{", "<"):
                pos += 1
                entries.append((tok, message("}" if opener == "{" else ">"), line))
            elif colon:
                entries.append((tok, toks[pos][0], line))
                pos += 1
            else:
                raise ConfigError(f"{origin}:{line}: expected ':' after {tok}")
            if pos < len(toks) and toks[pos][0] in (";", ","):
                pos += 1

    return message(None)


def unquote(token):
    """A quoted text-format string (C escapes, UTF-8) -> str."""
    return codecs.escape_decode(token[1:-1].encode("utf-8"))[0].decode("utf-8")


def scalar(type_name, token, field, quoted_only=True):
    """A text-format token -> the Python value of a proto scalar type; ConfigError naming `field`."""
    try:
        if type_name == "string":
            if token[:1] in ("'", '"'):
                return unquote(token)
            if quoted_only:
                raise ValueError("expected a quoted string")
            return token
        if type_name == "bool":
            if token in ("true", "True", "t", "1"):
                return True
            if token in ("false", "False", "f", "0"):
                return False
            raise ValueError("expected true or false")
        if type_name in ("double", "float"):
            return float(token)
        value = int(token, 0)
        if type_name.startswith("uint") and value < 0:
            raise ValueError("must not be negative")
        return value
    except ValueError as e:
        raise ConfigError(f"{field}: {token!r} is not a valid {type_name} ({e})") from None


class Field:
    """One field of a proto message: its type, its default (a Python value for scalars) and whether it is deprecated."""

    def __init__(self, type_name, default, deprecated):
        self.type_name, self.default, self.deprecated = type_name, default, deprecated


# The translator's fields written directly under `model` (the layout before ModelConfig's oneof) are deprecated and
# read as model.translator, as launcher/config.cpp does.
_LEGACY_MODEL_KIND = "translator"


def load_schema(proto_path):
    """{message: {field: Field}} of a proto2 file whose messages nest only oneof blocks (configs/parallax.proto)."""
    text = re.sub(r"//[^\n]*", "", open(proto_path, encoding="utf-8").read())
    schema = {}
    field_pattern = r"(?:(?:optional|required)\s+)?(\w+)\s+(\w+)\s*=\s*\d+\s*(?:\[(.*?)\])?\s*;"
    for m in re.finditer(r"message\s+(\w+)\s*\{((?:[^{}]|\{[^{}]*\})*)\}", text):
        body = re.sub(r"oneof\s+\w+\s*\{([^{}]*)\}", r"\1", m.group(2))
        fields = {}
        for f in re.finditer(field_pattern, body):
            type_name, name, options = f.groups()
            default = re.search(r"\bdefault\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^,\s]+)", options or "")
            deprecated = re.search(r"\bdeprecated\s*=\s*true\b", options or "") is not None
            fields[name] = Field(type_name, default.group(1) if default else None, deprecated)
        schema[m.group(1)] = fields
    for fields in schema.values():  # defaults to values now that every message type is known
        for name, field in fields.items():
            if field.type_name in _SCALAR_TYPES:
                default = field.default
                if default is None:
                    default = {"string": '""', "bool": "false"}.get(field.type_name, "0")
                field.default = scalar(field.type_name, default, name)
            elif field.type_name not in schema:
                raise ConfigError(f"{proto_path}: field {name} has unknown type {field.type_name}")
    return schema


def _defaults(schema, type_name):
    return {name: (_defaults(schema, f.type_name) if f.type_name in schema else f.default)
            for name, f in schema[type_name].items() if not f.deprecated}


def _move_legacy_model_fields(entries, path, schema):
    """Top-level entries with the translator's fields written directly under `model` moved into model.translator
    (ModelConfig's deprecated fields; its model kinds, translator or detr, stay)."""
    out = []
    for name, value, line in entries:
        if name == "model" and isinstance(value, list):
            model_fields = schema["ModelConfig"]
            legacy = [e for e in value if e[0] in model_fields and model_fields[e[0]].deprecated]
            kinds = [e for e in value if e not in legacy]
            if legacy and kinds:
                raise ConfigError(f"{path}: model.{legacy[0][0]} is written directly under `model` next to "
                                  f"`{kinds[0][0]} {{ ... }}`; move it into the latter")
            if legacy:
                print(f"warning: {path}: model fields written directly under `model` are deprecated; write them in "
                      f"`model {{ translator {{ ... }} }}` (read as such)", file=sys.stderr)
                value = [(_LEGACY_MODEL_KIND, legacy, legacy[0][2])]
        out.append((name, value, line))
    return out


def load_config(path, overrides, schema):
    """The Config message of a .pbtxt with its defaults, then `a.b=v` overrides, as nested dicts."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    config = _defaults(schema, "Config")

    def merge(target, type_name, entries, prefix):
        seen = set()
        for name, value, line in entries:
            field = prefix + name
            if name not in schema[type_name] or schema[type_name][name].deprecated:
                raise ConfigError(f"{path}:{line}: no field '{name}' in {prefix.rstrip('.') or 'the config'} "
                                  f"(fields: {', '.join(_defaults(schema, type_name))})")
            if name in seen:
                raise ConfigError(f"{path}:{line}: {field} is set twice")
            seen.add(name)
            field_type = schema[type_name][name].type_name
            if (field_type in schema) != isinstance(value, list):
                raise ConfigError(f"{path}:{line}: {field} is {'a message' if field_type in schema else field_type}")
            if field_type in schema:
                merge(target[name], field_type, value, field + ".")
            else:
                target[name] = scalar(field_type, value, f"{path}:{line}: {field}")

    merge(config, "Config", _move_legacy_model_fields(parse_text_format(text, path), path, schema), "")
    for assignment in overrides:
        if "=" not in assignment:
            raise ConfigError(f"--set {assignment}: expected <field>=<value>, e.g. model.d_model=256")
        field, value = assignment.split("=", 1)
        parts, target, type_name = field.strip().split("."), config, "Config"
        # model.<field> of the layout before ModelConfig's oneof addresses the translator.
        if len(parts) >= 2 and parts[0] == "model" and parts[1] not in config["model"]:
            parts.insert(1, _LEGACY_MODEL_KIND)
        for i, part in enumerate(parts):
            if part not in target:
                raise ConfigError(f"--set {field}: no field '{part}' (fields: {', '.join(target)})")
            part_type = schema[type_name][part].type_name
            last = i + 1 == len(parts)
            if last == (part_type in schema):
                raise ConfigError(f"--set {field}: {'.'.join(parts[:i + 1])} is "
                                  f"{'a message; set one of its fields' if last else 'a scalar field'}")
            if last:
                target[part] = scalar(part_type, value.strip(), f"--set {field}", quoted_only=False)
            else:
                target, type_name = target[part], part_type
    validate_config(config)
    return config


def validate_config(c):
    """The checks of launcher/config.cpp's validate_config that this script depends on."""
    m, d, o, s, t, e = c["model"]["translator"], c["data"], c["optimizer"], c["schedule"], c["train"], c["eval"]
    checks = [
        ("model.translator.num_heads", m["num_heads"] >= 1 and m["d_model"] % m["num_heads"] == 0,
         "must divide model.translator.d_model"),
        ("model.translator.activation", m["activation"] in ("relu", "gelu"), "must be relu or gelu"),
        ("model.translator.dropout", 0 <= m["dropout"] < 1, "must be in [0, 1)"),
        ("model.translator.attention_dropout", 0 <= m["attention_dropout"] < 1, "must be in [0, 1)"),
        ("model.translator.max_positions", m["max_positions"] >= d["max_length"], "must be >= data.max_length"),
        ("data.dir", d["dir"] != "", "must be set"),
        ("data.max_length", d["max_length"] >= 2, "must be >= 2"),
        ("optimizer.name", o["name"] == "adamw", "must be adamw"),
        ("optimizer.lr", o["lr"] > 0, "must be > 0"),
        ("optimizer.clip_grad_norm", o["clip_grad_norm"] >= 0, "must be >= 0"),
        ("schedule.name", s["name"] in ("inverse_sqrt", "cosine", "constant"),
         "must be inverse_sqrt, cosine or constant"),
        ("schedule.warmup_steps", s["warmup_steps"] >= (1 if s["name"] == "inverse_sqrt" else 0) and
         (s["name"] != "cosine" or s["warmup_steps"] < t["max_steps"]), "out of range for the schedule"),
        ("train.max_steps", t["max_steps"] >= 1, "must be >= 1"),
        ("train.batch_tokens", t["batch_tokens"] >= 1, "must be >= 1"),
        ("train.label_smoothing", 0 <= t["label_smoothing"] < 1, "must be in [0, 1)"),
        ("eval.beam", e["beam"] >= 1, "must be >= 1"),
        ("eval.max_len_b", e["max_len_b"] >= 1 or (e["max_len_b"] == 0 and e["max_len_a"] > 0), "allows no token"),
        ("log.every_steps", c["log"]["every_steps"] >= 1, "must be >= 1"),
    ]
    for field, ok, why in checks:
        if not ok:
            value = c
            for part in field.split("."):
                value = value[part]
            raise ConfigError(f"{field}: {why}, got {value!r}")


def config_text(config, indent=""):
    """Nested dicts -> text format with every field explicit (what Parallax writes to <run_dir>/config.pbtxt)."""
    lines = []
    for name, value in config.items():
        if isinstance(value, dict):
            lines += [f"{indent}{name} {{", config_text(value, indent + "  "), f"{indent}}}"]
        elif isinstance(value, bool):
            lines.append(f"{indent}{name}: {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f"{indent}{name}: {json.dumps(value)}")
        else:
            text = repr(value)
            lines.append(f"{indent}{name}: {text[:-2] if text.endswith('.0') else text}")
    return "\n".join(lines)
