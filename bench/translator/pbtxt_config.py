# bench/translator/pbtxt_config.py: protobuf text format for the PyTorch reference trainers: a proto2 schema read from
# configs/parallax.proto (fields, defaults, repeated fields, the model oneof), .pbtxt parsing, overrides and checks.
"""Parallax configs without python3-protobuf: configs/parallax.proto is the schema, so defaults cannot drift."""
import codecs
import json
import re
import sys


class ConfigError(Exception):
    """A bad config, override or dataset index: printed as one line naming the field, exit status 2."""


_TOKEN = re.compile(r"\s+|#[^\n]*|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[{}:;,<>\[\]]|[^\s{}:;,<>\[\]\"'#]+")
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
    """Generic text format -> list of (name, value, line); value is a str token or a nested list. A list of
    scalars, `name: [a, b]`, gives one entry per element, as writing `name: a` and `name: b` does."""
    toks = _tokens(text, origin)
    pos = 0

    def scalar_list(name, line):
        nonlocal pos
        entries = []
        pos += 1  # '['
        while pos < len(toks) and toks[pos][0] != "]":
            if toks[pos][0] in ("{", "}", "<", ">", "[", ":", ";", ","):
                raise ConfigError(f"{origin}:{toks[pos][1]}: expected a value in the list {name}, got {toks[pos][0]!r}")
            entries.append((name, toks[pos][0], line))
            pos += 1
            if pos < len(toks) and toks[pos][0] == ",":
                pos += 1
        if pos == len(toks):
            raise ConfigError(f"{origin}:{line}: missing ']' after the list {name}")
        pos += 1
        return entries

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
            elif colon and opener == "[":
                entries += scalar_list(tok, line)
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
    """One field of a proto message: its type, its default (a Python value for scalars, [] for a repeated field),
    whether it is repeated or deprecated, and the oneof it belongs to (None when it is in none)."""

    def __init__(self, type_name, default, deprecated, repeated=False, oneof=None):
        self.type_name, self.default, self.deprecated = type_name, default, deprecated
        self.repeated, self.oneof = repeated, oneof


# The translator's fields written directly under `model` (the layout before ModelConfig's oneof) are deprecated and
# read as model.translator, as launcher/config.cpp does; a model with no kind is the translator too.
_LEGACY_MODEL_KIND = "translator"
_MODEL_KINDS = ("translator", "detr")  # ModelConfig's `oneof kind`
_MODEL_ONEOF = "model.kind"  # that oneof as load_config keys the oneofs it has seen set


def load_schema(proto_path):
    """{message: {field: Field}} of a proto2 file whose messages nest only oneof blocks (configs/parallax.proto)."""
    text = re.sub(r"//[^\n]*", "", open(proto_path, encoding="utf-8").read())
    schema = {}
    field_pattern = r"(?:(optional|required|repeated)\s+)?(\w+)\s+(\w+)\s*=\s*\d+\s*(?:\[(.*?)\])?\s*;"
    oneof_pattern = r"oneof\s+(\w+)\s*\{([^{}]*)\}"
    for m in re.finditer(r"message\s+(\w+)\s*\{((?:[^{}]|\{[^{}]*\})*)\}", text):
        oneof_of = {f.group(3): block.group(1) for block in re.finditer(oneof_pattern, m.group(2))
                    for f in re.finditer(field_pattern, block.group(2))}
        body = re.sub(oneof_pattern, r"\2", m.group(2))
        fields = {}
        for f in re.finditer(field_pattern, body):
            label, type_name, name, options = f.groups()
            default = re.search(r"\bdefault\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^,\s]+)", options or "")
            deprecated = re.search(r"\bdeprecated\s*=\s*true\b", options or "") is not None
            fields[name] = Field(type_name, default.group(1) if default else None, deprecated,
                                 repeated=label == "repeated", oneof=oneof_of.get(name))
        schema[m.group(1)] = fields
    for fields in schema.values():  # defaults to values now that every message type is known
        for name, field in fields.items():
            if field.repeated:
                field.default = []
            elif field.type_name in _SCALAR_TYPES:
                default = field.default
                if default is None:
                    default = {"string": '""', "bool": "false"}.get(field.type_name, "0")
                field.default = scalar(field.type_name, default, name)
            if field.type_name not in _SCALAR_TYPES and field.type_name not in schema:
                raise ConfigError(f"{proto_path}: field {name} has unknown type {field.type_name}")
            if field.repeated and field.type_name in schema:
                raise ConfigError(f"{proto_path}: repeated message field {name} is not supported")
    return schema


def _defaults(schema, type_name):
    def default(f):
        if f.type_name in schema:
            return _defaults(schema, f.type_name)
        return list(f.default) if f.repeated else f.default

    return {name: default(f) for name, f in schema[type_name].items() if not f.deprecated}


def _move_legacy_model_fields(entries, path):
    """Top-level entries with the translator's fields written directly under `model` moved into model.translator."""
    out = []
    for name, value, line in entries:
        if name == "model" and isinstance(value, list):
            legacy = [e for e in value if e[0] not in _MODEL_KINDS]
            kinds = [e for e in value if e[0] in _MODEL_KINDS]
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
    """The Config message of a .pbtxt with its defaults, then `a.b=v` overrides, as nested dicts. Of the model's
    oneof only the kind the file sets is kept (config["model"] = {"detr": {...}}); none set is the translator. An
    override of a repeated field appends (`--set data.augment.scales=[96,128]`), as Parallax's merge does."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror})") from None
    config = _defaults(schema, "Config")
    chosen = {}  # "<message path>.<oneof>" -> the member that is set

    def merge(target, type_name, entries, prefix):
        seen = set()
        for name, value, line in entries:
            field = prefix + name
            if name not in schema[type_name] or schema[type_name][name].deprecated:
                raise ConfigError(f"{path}:{line}: no field '{name}' in {prefix.rstrip('.') or 'the config'} "
                                  f"(fields: {', '.join(_defaults(schema, type_name))})")
            spec = schema[type_name][name]
            if name in seen and not spec.repeated:
                raise ConfigError(f"{path}:{line}: {field} is set twice")
            seen.add(name)
            if spec.oneof is not None:
                other = chosen.setdefault(prefix + spec.oneof, name)
                if other != name:
                    raise ConfigError(f"{path}:{line}: {field} is set next to {prefix}{other}; they are members of "
                                      f"one oneof ({spec.oneof}): a config sets one")
            if (spec.type_name in schema) != isinstance(value, list):
                kind = "a message" if spec.type_name in schema else spec.type_name
                raise ConfigError(f"{path}:{line}: {field} is {kind}")
            if spec.type_name in schema:
                merge(target[name], spec.type_name, value, field + ".")
            elif spec.repeated:
                target[name].append(scalar(spec.type_name, value, f"{path}:{line}: {field}"))
            else:
                target[name] = scalar(spec.type_name, value, f"{path}:{line}: {field}")

    merge(config, "Config", _move_legacy_model_fields(parse_text_format(text, path), path), "")
    kind = chosen.get(_MODEL_ONEOF, _LEGACY_MODEL_KIND)
    config["model"] = {kind: config["model"][kind]}
    for assignment in overrides:
        _apply_override(config, schema, assignment)
    validate_config(config)
    return config


def _apply_override(config, schema, assignment):
    """One `--set a.b=v` on the loaded config."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected <field>=<value>, e.g. model.d_model=256")
    field, value = assignment.split("=", 1)
    parts, target, type_name = field.strip().split("."), config, "Config"
    # model.<field> of the layout before ModelConfig's oneof addresses the translator.
    if (len(parts) >= 2 and parts[0] == "model" and _LEGACY_MODEL_KIND in config["model"]
            and parts[1] in schema["TranslatorConfig"]):
        parts.insert(1, _LEGACY_MODEL_KIND)
    for i, part in enumerate(parts):
        if part not in target:
            if part in schema[type_name] and schema[type_name][part].oneof is not None:
                raise ConfigError(f"--set {field}: the config's model is {model_kind(config)}, not {part}")
            raise ConfigError(f"--set {field}: no field '{part}' (fields: {', '.join(target)})")
        spec = schema[type_name][part]
        last = i + 1 == len(parts)
        if last == (spec.type_name in schema):
            raise ConfigError(f"--set {field}: {'.'.join(parts[:i + 1])} is "
                              f"{'a message; set one of its fields' if last else 'a scalar field'}")
        if not last:
            target, type_name = target[part], spec.type_name
        elif spec.repeated:
            tokens = parse_text_format(f"{part}: {value.strip()}", f"--set {field}")
            if any(isinstance(token, list) for _, token, _ in tokens):
                raise ConfigError(f"--set {field}: expected a {spec.type_name} or a list of them, got {value!r}")
            target[part] += [scalar(spec.type_name, token, f"--set {field}", quoted_only=False)
                             for _, token, _ in tokens]
        else:
            target[part] = scalar(spec.type_name, value.strip(), f"--set {field}", quoted_only=False)


def model_kind(config):
    """The model a loaded config trains: "translator" or "detr"."""
    (kind,) = config["model"]
    return kind


def validate_config(c):
    """The checks of launcher/config.cpp's validate_config (and the model kind's own) that the trainers depend on."""
    kind = model_kind(c)
    m, d, o, s, t, e = c["model"][kind], c["data"], c["optimizer"], c["schedule"], c["train"], c["eval"]
    checks = [
        ("data.dir", d["dir"] != "", "must be set"),
        ("data.max_length", d["max_length"] >= 2, "must be >= 2"),
        ("data.prefetch", d["prefetch"] >= 1, "must be >= 1"),
        ("optimizer.name", o["name"] == "adamw", "must be adamw"),
        ("optimizer.lr", o["lr"] > 0, "must be > 0"),
        ("optimizer.clip_grad_norm", o["clip_grad_norm"] >= 0, "must be >= 0"),
        ("schedule.name", s["name"] in ("inverse_sqrt", "cosine", "constant", "step"),
         "must be inverse_sqrt, cosine, constant or step"),
        ("schedule.warmup_steps", s["warmup_steps"] >= (1 if s["name"] == "inverse_sqrt" else 0) and
         (s["name"] != "cosine" or s["warmup_steps"] < t["max_steps"]), "out of range for the schedule"),
        ("schedule.min_lr_ratio", 0 <= s["min_lr_ratio"] <= 1, "must be in [0, 1]"),
        ("schedule.step_size", s["step_size"] >= 1, "must be >= 1"),
        ("schedule.gamma", s["gamma"] > 0, "must be > 0"),
        ("train.max_steps", t["max_steps"] >= 1, "must be >= 1"),
        ("train.batch_tokens", t["batch_tokens"] >= 1, "must be >= 1"),
        ("train.batch_size", t["batch_size"] >= 1, "must be >= 1"),
        ("train.label_smoothing", 0 <= t["label_smoothing"] < 1, "must be in [0, 1)"),
        ("eval.beam", e["beam"] >= 1, "must be >= 1"),
        ("eval.max_len_b", e["max_len_b"] >= 1 or (e["max_len_b"] == 0 and e["max_len_a"] > 0), "allows no token"),
        ("eval.batch_size", e["batch_size"] >= 1, "must be >= 1"),
        ("eval.max_images", e["max_images"] >= 0, "must be >= 0"),
        ("log.every_steps", c["log"]["every_steps"] >= 1, "must be >= 1"),
    ]
    model = f"model.{kind}."
    checks += [
        (model + "num_heads", m["num_heads"] >= 1 and m["d_model"] % m["num_heads"] == 0,
         f"must divide {model}d_model"),
        (model + "activation", m["activation"] in ("relu", "gelu"), "must be relu or gelu"),
        (model + "dropout", 0 <= m["dropout"] < 1, "must be in [0, 1)"),
    ]
    if kind == "translator":
        checks += [
            (model + "attention_dropout", 0 <= m["attention_dropout"] < 1, "must be in [0, 1)"),
            (model + "max_positions", m["max_positions"] >= d["max_length"], "must be >= data.max_length"),
        ]
    else:
        checks += [
            (model + "backbone", m["backbone"] in ("resnet18", "resnet34", "resnet50"),
             "must be resnet18, resnet34 or resnet50"),
            (model + "backbone_width", m["backbone_width"] > 0, "must be > 0"),
            (model + "backbone_stages", 1 <= m["backbone_stages"] <= 4, "must be in [1, 4]"),
            (model + "backbone_lr", m["backbone_lr"] >= 0, "must be >= 0"),
            (model + "d_model", m["d_model"] >= 2 and m["d_model"] % 2 == 0, "must be even and >= 2"),
            (model + "encoder_layers", m["encoder_layers"] >= 0, "must be >= 0"),
            (model + "decoder_layers", m["decoder_layers"] >= 1, "must be >= 1"),
            (model + "d_ff", m["d_ff"] >= 1, "must be >= 1"),
            (model + "num_queries", m["num_queries"] >= 1, "must be >= 1"),
        ]
        checks += [(model + name, m[name] >= 0, "must be >= 0")
                   for name in ("cost_class", "cost_bbox", "cost_giou", "loss_ce", "loss_bbox", "loss_giou",
                                "eos_coef")]
    for field, ok, why in checks:
        if not ok:
            value = c
            for part in field.split("."):
                value = value[part]
            raise ConfigError(f"{field}: {why}, got {value!r}")


def _text_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def config_text(config, indent=""):
    """Nested dicts -> text format with every field explicit (what Parallax writes to <run_dir>/config.pbtxt); a
    repeated field is one line per element."""
    lines = []
    for name, value in config.items():
        if isinstance(value, dict):
            lines += [f"{indent}{name} {{", config_text(value, indent + "  "), f"{indent}}}"]
        elif isinstance(value, list):
            lines += [f"{indent}{name}: {_text_value(v)}" for v in value]
        else:
            lines.append(f"{indent}{name}: {_text_value(value)}")
    return "\n".join(lines)
