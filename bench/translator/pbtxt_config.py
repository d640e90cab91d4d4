# bench/translator/pbtxt_config.py: protobuf text format for the PyTorch reference trainer: a proto2 schema read from
# configs/parallax.proto (fields and defaults), .pbtxt parsing, `--set a.b=v` overrides and the config checks it needs.
"""Parallax configs without python3-protobuf: configs/parallax.proto is the schema, so defaults cannot drift."""
import codecs
import json
import re


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


def load_schema(proto_path):
    """{message: {field: (type, default)}} of a proto2 file without nested messages (configs/parallax.proto)."""
    text = re.sub(r"//[^\n]*", "", open(proto_path, encoding="utf-8").read())
    schema = {}
    for m in re.finditer(r"message\s+(\w+)\s*\{(.*?)\}", text, re.S):
        fields = {}
        field_pattern = r"(?:optional|required)\s+(\w+)\s+(\w+)\s*=\s*\d+\s*(?:\[\s*default\s*=\s*(.*?)\s*\])?\s*;"
        for f in re.finditer(field_pattern, m.group(2)):
            type_name, name, default = f.groups()
            fields[name] = (type_name, default)
        schema[m.group(1)] = fields
    for fields in schema.values():  # defaults to values now that every message type is known
        for name, (type_name, default) in fields.items():
            if type_name in _SCALAR_TYPES:
                if default is None:
                    default = {"string": '""', "bool": "false"}.get(type_name, "0")
                fields[name] = (type_name, scalar(type_name, default, name))
            elif type_name not in schema:
                raise ConfigError(f"{proto_path}: field {name} has unknown type {type_name}")
    return schema


def _defaults(schema, type_name):
    return {name: (_defaults(schema, t) if t in schema else value) for name, (t, value) in schema[type_name].items()}


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
            if name not in schema[type_name]:
                raise ConfigError(f"{path}:{line}: no field '{name}' in {prefix.rstrip('.') or 'the config'} "
                                  f"(fields: {', '.join(schema[type_name])})")
            if name in seen:
                raise ConfigError(f"{path}:{line}: {field} is set twice")
            seen.add(name)
            field_type = schema[type_name][name][0]
            if (field_type in schema) != isinstance(value, list):
                raise ConfigError(f"{path}:{line}: {field} is {'a message' if field_type in schema else field_type}")
            if field_type in schema:
                merge(target[name], field_type, value, field + ".")
            else:
                target[name] = scalar(field_type, value, f"{path}:{line}: {field}")

    merge(config, "Config", parse_text_format(text, path), "")
    for assignment in overrides:
        if "=" not in assignment:
            raise ConfigError(f"--set {assignment}: expected <field>=<value>, e.g. model.d_model=256")
        field, value = assignment.split("=", 1)
        parts, target, type_name = field.strip().split("."), config, "Config"
        for i, part in enumerate(parts):
            if part not in schema[type_name]:
                raise ConfigError(f"--set {field}: no field '{part}' (fields: {', '.join(schema[type_name])})")
            part_type = schema[type_name][part][0]
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
    m, d, o, s, t, e = c["model"], c["data"], c["optimizer"], c["schedule"], c["train"], c["eval"]
    checks = [
        ("model.num_heads", m["num_heads"] >= 1 and m["d_model"] % m["num_heads"] == 0, "must divide model.d_model"),
        ("model.activation", m["activation"] in ("relu", "gelu"), "must be relu or gelu"),
        ("model.dropout", 0 <= m["dropout"] < 1, "must be in [0, 1)"),
        ("model.attention_dropout", 0 <= m["attention_dropout"] < 1, "must be in [0, 1)"),
        ("model.max_positions", m["max_positions"] >= d["max_length"], "must be >= data.max_length"),
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
