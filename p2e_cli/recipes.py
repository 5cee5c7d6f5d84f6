"""YAML recipes -> typed dataclass trees, with every mistake reported at once by its key path.

A recipe file names its schema with `kind:` (see `schemas.RECIPE_KINDS`). Unknown keys, wrong
types, missing values and out-of-range numbers are collected, not raised one by one:
`optim.lr: expected float, got 'fast'`. `--set optim.lr=1e-4` overrides a key before validation.
Only `yaml.safe_load` is used, so tags such as `!!python/object` are refused.
"""

from __future__ import annotations

import dataclasses
import re
import reprlib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import P2EError
from .schemas import RECIPE_KINDS, RETIRED_WHY, split_retired

MISSING = dataclasses.MISSING
FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def shipped_recipes() -> dict[str, Path]:
    """The recipes installed with p2e (the repository's `recipes/` folder), by name."""
    folder = resources.files("p2e_cli.recipe_files")
    return {p.name.removesuffix(".yaml"): Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def recipe_path(source: str | Path) -> Path:
    """A recipe file: an existing path, or the name of a shipped recipe (`lora` or `lora.yaml`)."""
    path = Path(source)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    name = path.name.removesuffix(".yaml")
    if name in shipped and (path.parent == Path(".") or not path.exists()):
        return shipped[name]
    if path.is_dir():
        raise P2EError(f"recipe {source} is a directory", hint="give a .yaml file")
    raise P2EError(f"no recipe file or shipped recipe named {str(source)!r}",
                   hint=f"shipped recipes: {', '.join(sorted(shipped))}; see p2e recipe ls")


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise P2EError(f"recipe {path} is not UTF-8 text") from e
    except yaml.constructor.ConstructorError as e:
        raise P2EError(f"recipe {path} uses a YAML tag p2e does not load: {e.problem}",
                       hint="recipes are plain YAML; remove tags such as !!python/object") from e
    except yaml.YAMLError as e:
        raise P2EError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from e


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (value parsed as YAML) to a raw recipe dict."""
    raw = dict(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise P2EError(f"bad --set {item!r}", hint="use --set key.path=value, e.g. --set optim.lr=1e-4")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise P2EError(f"bad value in --set {item!r}: {str(e).splitlines()[0]}") from e
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = value
    return raw


def _bounded_repr() -> reprlib.Repr:
    limits = reprlib.Repr()
    limits.maxlevel, limits.maxlist, limits.maxdict, limits.maxstring, limits.maxother = 2, 4, 4, 40, 40
    return limits


_REPR = _bounded_repr()


def _describe(value: Any) -> str:
    """A short repr of a recipe value; bounded, since YAML aliases can nest a billion strings in a few lines."""
    text = _REPR.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str, errors: list[str], meta: dict[str, Any] | None = None) -> Any:
    """Check `value` against type `tp`; return the typed value, appending problems to `errors`."""
    origin = typing.get_origin(tp)
    bad = f"{path}: expected {_type_name(tp)}, got {_describe(value)}"
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {_describe(value)}")
            return None
        return _build(tp, value, path, errors)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            trial: list[str] = []
            converted = _convert(option, value, path, trial, meta)
            if not trial:
                return converted
        errors.append(bad)
        return None
    if origin is Literal:
        if value not in typing.get_args(tp):
            errors.append(bad)
        return value
    if origin is list:
        if not isinstance(value, list):
            errors.append(bad)
            return None
        return [_convert(typing.get_args(tp)[0], v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(bad)
            return None
        return {str(k): _convert(typing.get_args(tp)[1], v, f"{path}.{k}", errors) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            errors.append(bad)
        return value
    if tp is float and isinstance(value, str) and FLOAT_RE.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string; users mean a number
    if tp in (int, float):
        ok = isinstance(value, int) and not isinstance(value, bool) or (tp is float and isinstance(value, float))
        if not ok:
            errors.append(bad)
            return None
        value = tp(value)
        if tp is float and value != value or value in (float("inf"), float("-inf")):
            errors.append(f"{path}: expected a finite number, got {value}")
        meta = meta or {}
        if "min" in meta and value < meta["min"]:
            errors.append(f"{path}: must be >= {meta['min']}, got {value}")
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: must be <= {meta['max']}, got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            errors.append(bad)
        return value
    raise TypeError(f"unsupported recipe field type {tp!r} at {path}")


def _build(cls: type, raw: dict[str, Any], prefix: str, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    join = (lambda key: f"{prefix}.{key}") if prefix else (lambda key: str(key))
    raw, turned_on = split_retired(cls, raw)
    errors.extend(f"{join(key)}: {RETIRED_WHY}; remove the key" for key in turned_on)
    for key in raw:
        if key not in fields:
            errors.append(f"{join(key)}: unknown key (known: {', '.join(fields)})")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _convert(hints[name], raw[name], join(name), errors, dict(f.metadata))
        elif f.default is MISSING and f.default_factory is MISSING:
            errors.append(f"{join(name)}: missing (expected {_type_name(hints[name])})")
    if errors:
        return None
    return cls(**values)


def parse_recipe(raw: Any, origin: str = "recipe") -> Any:
    """Validate a raw recipe mapping into its schema's dataclass, or raise one error listing all problems."""
    if not isinstance(raw, dict):
        raise P2EError(f"{origin}: expected a mapping of keys at the top level, got {_describe(raw)}")
    kind = raw.get("kind")
    if kind not in RECIPE_KINDS:
        raise P2EError(f"{origin}: kind: expected one of {', '.join(RECIPE_KINDS)}, got {_describe(kind)}",
                       hint="every recipe starts with a kind: line naming what it configures")
    errors: list[str] = []
    config = _build(RECIPE_KINDS[kind], raw, "", errors)
    if errors:
        listing = "\n  ".join(errors)
        raise P2EError(f"{origin} has {len(errors)} error(s):\n  {listing}",
                       hint="fix the keys above; p2e recipe show NAME prints a valid recipe with all defaults")
    return config


def load_recipe(source: str | Path, overrides: list[str] = (), kind: str | None = None) -> Any:
    """Read, override and validate a recipe file or shipped recipe name."""
    path = recipe_path(source)
    raw = apply_overrides(read_yaml(path) or {}, list(overrides)) if overrides else read_yaml(path)
    config = parse_recipe(raw, origin=f"recipe {path}")
    if kind is not None and config.kind != kind:
        raise P2EError(f"recipe {path} is a {config.kind!r} recipe, this command needs a {kind!r} recipe",
                       hint=f"see p2e recipe ls for {kind} recipes")
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """A validated recipe as plain data (what gets stored as provenance)."""
    return dataclasses.asdict(config)
