"""Dataclass configs with a YAML file and ``--set key=value`` overrides.

Precedence: dataclass defaults < ``--config FILE.yaml`` < direct flags (``--epochs 3``)
< ``--set a.b=value`` (dotted keys reach nested dataclasses).  The resolved config is
what a run writes beside its results.

Fields declared with :func:`option` carry their allowed values (``choices``) or bounds
(``minimum``/``maximum``); :func:`from_dict` rejects anything else with the list of
allowed values, so a typo never silently means a default.  Every float is finite (NaN and
infinity are refused), every seed is in ``0 .. 2**31 - 1`` (:func:`seed_option`), and YAML
is read by :func:`load_yaml`: UTF-8 only, no anchors or aliases (the "billion laughs"
expansion bomb cannot start).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any

import yaml


from tfxr.errors import ConfigError  # noqa: F401 - re-exported: configs raise it

#: the configs of every trainer live in :mod:`tfxr.configs` (TrainConfig, GanConfig, ...)

#: the largest seed: TensorFlow, NumPy and Python all take 0 .. 2**31 - 1 as a seed
SEED_MAX = 2**31 - 1


def option(default: Any, *, choices: tuple | None = None, minimum: float | None = None,
           maximum: float | None = None, required: bool = False, repeatable: bool = False,
           positional: str | None = None, help: str = ""):  # noqa: A002 - argparse's word
    """A dataclass field whose value is checked: one of ``choices``, or within bounds.

    How the command line shows it (:func:`build_arg_parser`): ``required`` - a run without a
    value (from a flag, ``--config`` or ``--set``) is refused naming the flag; ``repeatable``
    - a list whose flag may be given several times, one value each (``--labels a.csv
    --labels b.csv``; not split at commas, so a path may hold one); ``positional`` - an
    argument without a flag, with argparse's ``nargs`` (``"?"``, ``"*"``, ``"+"`` or ``""``
    for exactly one); ``help`` - the line ``--help`` prints.
    """
    meta = {"choices": tuple(choices) if choices else None, "minimum": minimum, "maximum": maximum,
            "required": required, "repeatable": repeatable, "positional": positional, "help": help}
    if isinstance(default, (list, dict)) or callable(default):
        return dataclasses.field(default_factory=default if callable(default) else lambda: default,
                                 metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def seed_option(default: int = 0):
    """A seed field: an int in ``0 .. SEED_MAX`` (what every random number generator takes)."""
    return option(default, minimum=0, maximum=SEED_MAX)


def check_value(f: dataclasses.Field, value: Any, key: str) -> None:
    """Raise ConfigError when ``value`` breaks the field's declared choices or bounds,
    or is a float that is not finite (NaN, +-inf)."""
    choices, lo, hi = (f.metadata.get(k) for k in ("choices", "minimum", "maximum"))
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v is None:        # Optional fields: None means "not set" (e.g. the builder's default)
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{key}: {v!r} is not a finite number")
        if choices and v not in choices:
            raise ConfigError(f"{key}: unknown value {v!r} (allowed: {', '.join(map(str, choices))})")
        if lo is not None and v < lo:
            raise ConfigError(f"{key}: {v!r} is below the minimum {lo}")
        if hi is not None and v > hi:
            raise ConfigError(f"{key}: {v!r} is above the maximum {hi}")


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors (``&a``) and aliases (``*a``).

    A few aliases of aliases expand into gigabytes ("billion laughs"); tfxr's configs never
    need them, so the first anchor or alias ends parsing at once, before any expansion.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise ConfigError(f"line {mark.line + 1}: YAML anchors and aliases (&name, *name) "
                              f"are not allowed in tfxr config files")
        return super().compose_node(parent, index)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text with :class:`_NoAliasLoader`; ConfigError naming ``source`` if bad."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({' '.join(str(e).split())})") from None


def load_yaml_file(path: str) -> Any:
    """A YAML file (UTF-8, an optional byte-order mark) read with :func:`load_yaml`."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
    return load_yaml(text, path)


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, typ: Any, key: str, names: dict[str, str] | None = None) -> Any:
    """``value`` as ``typ``; a ConfigError names ``names[key]`` (what the user typed) or ``key``."""
    label = (names or {}).get(key, key)
    origin = typing.get_origin(typ)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        typ = args[0]
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{label}: expected a mapping, got {value!r}")
        return from_dict(typ, value, prefix=key + ".", names=names)
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ is str and isinstance(value, bool):     # YAML's true/false for an auto|true|false option
            return "true" if value else "false"
        if typ in (int, float, str):
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return typ(value)
        if typing.get_origin(typ) in (list, tuple):
            if isinstance(value, str):
                value = [v for v in value.split(",") if v]
            (inner,) = typing.get_args(typ)[:1] or (str,)
            return typing.get_origin(typ)(_coerce(v, inner, key, names) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label}: cannot use {value!r} as {getattr(typ, '__name__', typ)}") from None
    return value


def flag_aliases(cls) -> dict[str, str]:
    """Top-level flags of ``cls`` that set a nested field (``FLAG_ALIASES`` class attribute).

    e.g. ``{"batch_size": "pipeline.batch_size"}``: ``--batch-size 16`` sets
    ``pipeline.batch_size``, so a nested config keeps its short, familiar flags.
    """
    return dict(getattr(cls, "FLAG_ALIASES", {}))


def renamed_keys(cls) -> dict[str, str]:
    """Former field names of ``cls`` (``RENAMED_KEYS`` class attribute: old -> new), still read
    from YAML, ``--set`` and the ``config.yaml`` of older runs."""
    return dict(getattr(cls, "RENAMED_KEYS", {}))


def renamed_paths(cls, prefix: str = "") -> dict[str, str]:
    """Every former dotted key of ``cls`` and its nested configs -> today's key."""
    out = {prefix + old: prefix + new for old, new in renamed_keys(cls).items()}
    for name, typ in _field_types(cls).items():
        if dataclasses.is_dataclass(typ):
            out.update(renamed_paths(typ, f"{prefix}{name}."))
    return out


def _known_keys(cls, data: dict, prefix: str = "") -> dict:
    """``data`` with former field names replaced by today's; ConfigError for a key ``cls``
    does not have, or for one setting given under both its names."""
    renamed = renamed_keys(cls)
    if any(k in renamed for k in data):
        for old, new in renamed.items():
            if old in data and new in data:
                raise ConfigError(f"{prefix}{old} and {prefix}{new}: the same setting given twice "
                                  f"({old} is the former name of {new})")
        data = {renamed.get(k, k): v for k, v in data.items()}
    types = _field_types(cls)
    unknown = set(data) - set(types)
    if unknown:
        aliases = flag_aliases(cls)
        moved = [f"{prefix}{k} is now {prefix}{aliases[k]}" for k in sorted(unknown) if k in aliases]
        hint = f" ({'; '.join(moved)})" if moved else ""
        raise ConfigError(f"unknown config key(s) {sorted(prefix + k for k in unknown)}{hint}; "
                          f"known: {sorted(prefix + k for k in types)}")
    return data


def check_keys(cls, data: dict, prefix: str = "") -> None:
    """ConfigError for a key of ``data`` (nested mappings too) that ``cls`` does not have: the
    keys of a config file, checked before its values (which flags and ``--set`` may replace)."""
    types = _field_types(cls)
    for name, value in _known_keys(cls, data, prefix).items():
        if dataclasses.is_dataclass(types[name]) and isinstance(value, dict):
            check_keys(types[name], value, f"{prefix}{name}.")


def _leaf_keys(data: dict, prefix: str = "") -> list[str]:
    """The dotted keys of a nested mapping's values (``{"a": {"b": 1}}`` -> ``["a.b"]``)."""
    out = []
    for k, v in data.items():
        out += _leaf_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return out


def from_dict(cls, data: dict, prefix: str = "", names: dict[str, str] | None = None):
    """``cls`` from a mapping of (possibly nested) values, each coerced and checked.

    ``names``: dotted key -> what the user typed for it (``--batch-size``, ``--set seed``,
    ``run.yaml: epochs``), so that an error names that rather than the field
    (:func:`parse_config` fills it in).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    data = _known_keys(cls, data, prefix)
    types = _field_types(cls)
    base = cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, typ in types.items():
        if name in data:
            key = prefix + name
            kwargs[name] = _coerce(data[name], typ, key, names)
            check_value(fields[name], kwargs[name], (names or {}).get(key, key))
        else:
            kwargs[name] = getattr(base, name)
    return cls(**kwargs)


def validate(cfg, prefix: str = "") -> None:
    """Check every declared choice/bound of a config built in Python (``TrainConfig(...)``),
    the same checks ``from_dict`` applies to YAML, flags and ``--set``."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, prefix + f.name + ".")
        else:
            check_value(f, value, prefix + f.name)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def apply_override(data: dict, cls, assignment: str) -> str:
    """Set ``--set KEY=VALUE`` (VALUE read as YAML) into ``data``; returns the dotted key it set
    (flag aliases and former names resolved: ``batch_size`` -> ``pipeline.batch_size``)."""
    if "=" not in assignment:
        raise ConfigError(f"--set takes key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    key = flag_aliases(cls).get(key, key)          # --set batch_size=8 == --set pipeline.batch_size=8
    parts = key.split(".")
    node, typ_cls = data, cls
    for i, p in enumerate(parts):
        types = _field_types(typ_cls)
        p = parts[i] = renamed_keys(typ_cls).get(p, p)
        if p not in types:
            raise ConfigError(f"--set {key}: unknown key {'.'.join(parts[:i + 1])!r}; "
                              f"known: {sorted(types)}")
        if i == len(parts) - 1:
            node[p] = load_yaml(raw, f"--set {key}") if raw.strip() else raw
        else:
            typ_cls = types[p]
            if not dataclasses.is_dataclass(typ_cls):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])!r} has no sub-keys")
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is {child!r}, not a mapping")
            node = child
    return ".".join(parts)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage mistake (an unknown flag, a flag without its value, a missing
    argument) raised as a ConfigError: one ``tfxr: error:`` line and exit 2 (``tfxr.cli``),
    like every other bad value, instead of argparse's usage block."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_arg_parser(cls, prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """Parser with --config, --set, --print-config and a flag per scalar top-level field
    (positional arguments for the fields declared ``option(positional=...)``)."""
    p = ArgumentParser(prog=prog, description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with config values")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, dotted keys for nested ones (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    for name, (field, typ, default) in _flag_fields(cls).items():
        meta = field.metadata
        choices = meta.get("choices")
        allowed = f"{'|'.join(map(str, choices))}; " if choices else ""
        text = f"{meta['help']} " if meta.get("help") else ""
        if meta.get("positional") is not None:
            nargs = meta["positional"] or None
            p.add_argument(name, nargs=nargs, default=None, metavar=name.upper(), help=text.strip() or None)
        elif typ is bool:
            p.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{text}(default {default})")
        elif choices and {"true", "false"} <= set(choices):   # auto|true|false: --cache, --cache auto, --no-cache
            p.add_argument(_flag(name), dest=name, nargs="?", const="true", default=None, metavar=name.upper(),
                           help=f"{text}({allowed}default {default!r}; bare {_flag(name)} means true)")
            p.add_argument("--no-" + _flag(name)[2:], dest=name, action="store_const", const="false",
                           help=f"same as {_flag(name)} false")
        else:
            p.add_argument(_flag(name), dest=name, default=None, metavar=name.upper(),
                           action="append" if meta.get("repeatable") else "store",
                           help=f"{text}({allowed}{'repeatable; ' if meta.get('repeatable') else ''}"
                                f"default {default!r})")
    return p


def _flag_fields(cls) -> dict[str, tuple[dataclasses.Field, Any, Any]]:
    """flag name -> (field, type, default) for every scalar top-level field and alias."""
    out = {}
    defaults = cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, typ in _field_types(cls).items():
        if not dataclasses.is_dataclass(typ):
            out[name] = (fields[name], typ, getattr(defaults, name))
    for name, dotted in flag_aliases(cls).items():
        owner, value = cls, defaults
        parts = dotted.split(".")
        for part in parts[:-1]:
            owner, value = _field_types(owner)[part], getattr(value, part)
        field = {f.name: f for f in dataclasses.fields(owner)}[parts[-1]]
        out[name] = (field, _field_types(owner)[parts[-1]], getattr(value, parts[-1]))
    return out


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{part}: expected a mapping, got {child!r}")
        node = child
    node[last] = value


def check_required(cfg, prefix: str = "") -> None:
    """ConfigError naming the first field declared ``option(required=True)`` left empty."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_required(value, prefix + f.name + ".")
        elif f.metadata.get("required") and value in (None, "", [], ()):
            if f.metadata.get("positional") is not None:
                raise ConfigError(f"{f.name.upper()} is required")
            raise ConfigError(f"{_flag(prefix + f.name) if not prefix else prefix + f.name} is required")


def parse_config(cls, argv: list[str] | None, prog: str, description: str = "", epilog: str | None = None):
    """Resolve a config from defaults, YAML, flags and --set; returns (config, args).

    Every mistake is a ConfigError (one line, exit 2 under :func:`tfxr.cli.run_main`):
    an unknown flag, a value out of bounds, a required value missing.  It names what the
    user typed: the flag (``--batch-size: 0 is below the minimum 1``), the ``--set`` key,
    or the config file and its key (``run.yaml: pipeline.batch_size: ...``)."""
    p = build_arg_parser(cls, prog, description, epilog)
    positional = any(f.metadata.get("positional") is not None for f, _, _ in _flag_fields(cls).values())
    # positional arguments may come between the flags (``verify --quiet DIR``, ``predict IMG --out X``)
    args = p.parse_intermixed_args(argv) if positional else p.parse_args(argv)
    data: dict = {}
    names: dict[str, str] = {}     # dotted key -> what the user typed for it, for the error lines
    if args.config:
        loaded = load_yaml_file(args.config) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{args.config}: expected a mapping at the top level")
        try:
            check_keys(cls, loaded)
        except ConfigError as e:
            raise ConfigError(f"{args.config}: {e}") from None
        renamed = renamed_paths(cls)
        names.update({renamed.get(k, k): f"{args.config}: {k}" for k in _leaf_keys(loaded)})
        data.update(loaded)
    aliases = flag_aliases(cls)
    for name, (field, _, _) in _flag_fields(cls).items():
        v = getattr(args, name, None)
        argument = field.metadata.get("positional") is not None     # a positional argument
        if v is not None and not (argument and v == []):
            _set_dotted(data, aliases.get(name, name), v)
            names[aliases.get(name, name)] = name.upper() if argument else _flag(name)
    for s in args.set:
        names[apply_override(data, cls, s)] = "--set " + s.split("=", 1)[0].strip()
    cfg = from_dict(cls, data, names=names)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        raise SystemExit(0)
    check_required(cfg)
    return cfg, args

