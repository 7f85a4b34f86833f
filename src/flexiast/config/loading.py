"""Reading a recipe: the YAML file, dotted ``key.path=value`` overrides, the typed build and
its validation, and the dict a run stores (``config.yaml``) that builds back.

``load_config("recipe.yaml", ["optimizer.lr=1e-4", "phases.0.epochs=3"])`` reads the file,
applies each override (values parsed as YAML, so ``[8,16]`` is a list), builds the typed
configuration and validates it; a refusal names the file.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..recipe_checks import ConfigError
from .run import RunConfig, validate
from .typed import build_run, to_dict

__all__ = ["apply_overrides", "load_config", "build_config", "config_to_dict"]


def _parse_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` (``phases.0.epochs=3``) to a nested dict/list, in order."""
    raw = _copy(raw)
    for text in overrides:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {text!r} is not key.path=value")
        parts = key.split(".")
        node = raw
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]), create=True)
        last = parts[-1]
        if isinstance(node, list):
            _index(node, last, key)
            node[int(last)] = _parse_value(value)
        elif isinstance(node, dict):
            node[last] = _parse_value(value)
        else:
            raise ConfigError(f"override {key}: {'.'.join(parts[:-1])} is not a section")
    return raw


def _copy(x):
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_copy(v) for v in x]
    return x


def _index(node: list, part: str, key: str) -> int:
    if not part.lstrip("-").isdigit() or not 0 <= int(part) < len(node):
        raise ConfigError(f"override {key}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _child(node, part: str, key: str, create: bool):
    if isinstance(node, list):
        return node[_index(node, part, key)]
    if not isinstance(node, dict):
        raise ConfigError(f"override {key}: not a section")
    if node.get(part) is None and create:
        node[part] = {}
    return node[part]


def load_config(path: str | Path | None, overrides: list[str] = (), *, check_files: bool = True) -> RunConfig:
    """Read a recipe (or nothing: the defaults), apply overrides, build and validate."""
    raw = {}
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"recipe {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"recipe {path}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"recipe {path}: expected a mapping of sections, got {type(raw).__name__}")
    raw = apply_overrides(raw, list(overrides))
    try:
        return build_config(raw, check_files=check_files)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def build_config(raw: dict, *, check_files: bool = True) -> RunConfig:
    """A recipe's raw mapping as a validated :class:`RunConfig`."""
    cfg = build_run(RunConfig, raw)
    validate(cfg, check_files=check_files)
    return cfg


def config_to_dict(cfg: RunConfig) -> dict:
    """``cfg`` as the mapping a recipe gives (``build_config`` reads it back to an equal config)."""
    return to_dict(cfg, cfg.family())
