"""Sections a model family extends: the keys only some families take, asked of the registry.

A family declares its own keys (:class:`flexiast.recipe_checks.FamilyKeys`, registered as
``ModelFamily.recipe_keys``): an AST's ``phases[].patch``, ``init.source_*`` and
``loss.teacher_patch_size``, an SSAST's ``pretrain``. The shared sections that hold them derive
from :class:`FamilySettings`; they keep the same attributes for every family
(``cfg.phases[0].patch.sizes``, ``cfg.init.source_stride``), so the engine reads one surface.
A family that does not take a key reads the default of the family that declares it; a
recipe that sets it to anything else for that family is refused, naming the key and the family
(at its default it is accepted: older runs' ``config.yaml`` wrote every key for every family).
Nothing here names a family.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar

from ..models import ModelFamily, families
from ..recipe_checks import ConfigError, FamilyKeys

__all__ = ["FamilySettings", "declared", "taken", "default_of", "key_type", "refuse_foreign", "family_sections"]


def declared(host: str) -> list[tuple[ModelFamily, FamilyKeys]]:
    """Every registered family's keys on ``host``, in registration order."""
    return [(family, keys) for family in families().values() for keys in family.recipe_keys if keys.host == host]


def taken(family: ModelFamily, host: str) -> list[FamilyKeys]:
    """The keys ``family`` adds to ``host``."""
    return [keys for keys in family.recipe_keys if keys.host == host]


def _declaring(host: str, name: str) -> list[tuple[ModelFamily, FamilyKeys]]:
    return [(family, keys) for family, keys in declared(host) if name in keys.names()]


def default_of(host: str, name: str):
    """What ``host.name`` is when a recipe leaves it out: the first declaring family's default."""
    found = _declaring(host, name)
    if not found:
        raise AttributeError(name)
    keys = found[0][1]
    if keys.key is not None:
        return keys.section()
    spec = keys.section.__dataclass_fields__[name]
    return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default


def key_type(keys: FamilyKeys, name: str) -> Any:
    """The type a recipe value of ``name`` (one of ``keys``) is read as."""
    return keys.section if keys.key is not None else typing.get_type_hints(keys.section)[name]


class FamilySettings:
    """A shared section that families extend (``recipe_host`` names it). The keys families add
    are held apart from the dataclass fields and read as attributes; ``==`` compares both."""

    recipe_host: ClassVar[str]

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        store = self.__dict__.setdefault("_family_keys", {})
        if name not in store:
            store[name] = default_of(self.recipe_host, name)
        return store[name]

    def __setattr__(self, name: str, value) -> None:
        if any(name in keys.names() for _, keys in declared(self.recipe_host)):
            self.__dict__.setdefault("_family_keys", {})[name] = value
        else:
            object.__setattr__(self, name, value)

    def __eq__(self, other) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        names = [f.name for f in dataclasses.fields(self)]
        names += sorted({n for _, keys in declared(self.recipe_host) for n in keys.names()})
        return all(getattr(self, n) == getattr(other, n) for n in names)

    __hash__ = None

    def family_items(self, family: ModelFamily) -> list[tuple[str, Any]]:
        """``(name, value)`` of every key ``family`` adds here (defaults included)."""
        return [(n, getattr(self, n)) for keys in taken(family, self.recipe_host) for n in keys.names()]


def refuse_foreign(host: FamilySettings, where: str, family: ModelFamily) -> None:
    """Refuse a key set on ``host`` (recipe key ``where``) that ``family`` does not take."""
    own = {n for keys in taken(family, host.recipe_host) for n in keys.names()}
    for name, value in host.__dict__.get("_family_keys", {}).items():
        if name in own or value == default_of(host.recipe_host, name):
            continue
        owners = _declaring(host.recipe_host, name)
        key = f"{where}.{name}" if where else name
        why = owners[0][1].refusal.format(arch=family.arch) if owners[0][1].refusal else \
            f"a {family.arch} model takes no {name}"
        takers = ", ".join(sorted({f.arch for f, _ in owners}))
        raise ConfigError(f"{key}: {why} (a setting of {takers} recipes)")


def family_sections(host: FamilySettings, where: str, family: ModelFamily):
    """``(key, section)`` for each of ``family``'s sections on ``host``, to check: a keyed
    section as it is, the fields added to the host itself gathered into one section."""
    for keys in taken(family, host.recipe_host):
        if keys.key is not None:
            section = getattr(host, keys.key)
            if type(section) is not keys.section:  # another family's default, as this family's section
                section = keys.section(**{f.name: getattr(section, f.name) for f in dataclasses.fields(section)})
                setattr(host, keys.key, section)
            yield (f"{where}.{keys.key}" if where else keys.key), section
        else:
            yield where, keys.section(**{n: getattr(host, n) for n in keys.names()})
