"""A raw recipe (YAML's dicts, lists and scalars) as the typed sections, and back.

``build(cls, raw, key, family)`` reads ``raw`` into dataclass ``cls``: each value converted to
its field's type (int, float, bool, str, ``list[X]``, dict, dataclass, unions), unknown keys
refused with the section's list. A section families extend (:mod:`flexiast.config.family_keys`)
also reads the keys the recipe's family takes, typed by that family's section; a key another
family declares is read too, for validation to refuse by name. :func:`to_dict` writes the keys
the recipe's family takes and nothing else, so a run's ``config.yaml`` builds back.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing

from ..models import ModelFamily
from ..recipe_checks import ConfigError
from .family_keys import FamilySettings, declared, key_type, taken
from .sections import ModelSection

__all__ = ["build", "to_dict"]


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


#: Scalar types: what a YAML value may be, and how the error names it (bools are not numbers).
_SCALARS = {bool: (bool, "true or false"), int: (int, "an integer"), float: ((int, float), "a number"),
            str: (str, "a string")}


def convert(value, tp, key: str, family: ModelFamily):
    """``value`` as type ``tp`` (int, float, bool, str, list[X], dict, dataclass, unions)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{key}: must be set (got null)")
        present = [o for o in options if o is not type(None)]
        if len(present) == 1:  # X | None: X's own message names the key inside it
            return convert(value, present[0], key, family)
        for option in present:
            try:
                return convert(value, option, key, family)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} is not {' or '.join(_type_name(o) for o in options if o is not type(None))}")
    if tp is ModelSection:
        return build(ModelSection.section_class(value, key), value, key, family)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, family)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [convert(v, item, f"{key}[{i}]", family) for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-4 as a string
        except ValueError:
            pass
    if tp in _SCALARS:
        accepted, what = _SCALARS[tp]
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, accepted):
            raise ConfigError(f"{key}: expected {what}, got {value!r}")
        return tp(value)
    raise TypeError(f"unsupported configuration type {tp} at {key}")


def _family_types(cls, family: ModelFamily) -> tuple[dict, dict]:
    """``({name: type}, {name: type})``: the keys ``family`` adds to section ``cls``, and those
    only other families declare there."""
    if not (isinstance(cls, type) and issubclass(cls, FamilySettings)):
        return {}, {}
    own = {n: key_type(keys, n) for keys in taken(family, cls.recipe_host)
           for n in keys.names()}
    foreign = {}
    for _, keys in declared(cls.recipe_host):
        for n in keys.names():
            if n not in own and n not in foreign:
                foreign[n] = key_type(keys, n)
    return own, foreign


def build(cls, raw, key: str, family: ModelFamily):
    """``raw`` as section ``cls`` of a recipe for ``family``; errors name ``key``."""
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{key or 'recipe'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    own, foreign = _family_types(cls, family)
    unknown = sorted(set(raw) - set(names) - set(own) - set(foreign))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; {cls.__name__} takes {', '.join([*names, *own])}")
    kwargs = {name: convert(raw[name], hints[name], f"{key}.{name}" if key else name, family)
              for name in names if name in raw}
    try:
        section = cls(**kwargs)
    except ValueError as e:  # dataclasses with their own checks (AugmentConfig)
        raise ConfigError(f"{key}: {e}") from None
    for name, tp in {**own, **foreign}.items():
        if name in raw:
            setattr(section, name, convert(raw[name], tp, f"{key}.{name}" if key else name, family))
    return section


def build_run(cls, raw) -> object:
    """A whole recipe as ``cls`` (:class:`flexiast.config.RunConfig`), for the family its
    ``model:`` section names."""
    model = raw.get("model") if isinstance(raw, dict) else None
    return build(cls, raw, "", ModelSection.family(model, "model"))


def to_dict(section, family: ModelFamily):
    """``section`` as plain dicts and lists: its fields, and the keys ``family`` (the recipe's)
    adds to the sections it extends."""
    if dataclasses.is_dataclass(section) and not isinstance(section, type):
        out = {f.name: to_dict(getattr(section, f.name), family) for f in dataclasses.fields(section)}
        if isinstance(section, FamilySettings):
            out.update((n, to_dict(v, family)) for n, v in section.family_items(family))
        return out
    if isinstance(section, (list, tuple)):
        return type(section)(to_dict(v, family) for v in section)
    if isinstance(section, dict):
        return {k: to_dict(v, family) for k, v in section.items()}
    return copy.deepcopy(section)
