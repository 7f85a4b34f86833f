"""What a recipe's sections share below the model families: the error, the value checks, and
how a family declares the recipe keys only it takes.

:mod:`flexiast.config` builds and checks recipes; the model families (:mod:`flexiast.models`,
a lower layer) own the sections only they take (an AST's ``phases[].patch``, an SSAST's
``pretrain``), whose ``check`` methods raise the same :class:`ConfigError` with the same
wording, so they live here, where both reach them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["ConfigError", "FamilyKeys", "choice", "positive"]


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the key."""


def choice(value, options, key: str) -> None:
    """Refuse ``value`` unless it is one of ``options``."""
    if value not in options:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, options))}")


def positive(value, key: str, strict: bool = True) -> None:
    """Refuse a number that is not positive (``strict``) or negative; None passes."""
    if value is None:
        return
    if (value <= 0) if strict else (value < 0):
        raise ConfigError(f"{key}: {value} must be {'positive' if strict else 'non-negative'}")


@dataclass(frozen=True)
class FamilyKeys:
    """Recipe keys that only the families registering them take (``ModelFamily.recipe_keys``).

    ``section`` is a dataclass whose fields are the keys and whose defaults are what every
    other family reads; its ``check(ctx)`` method refuses what cannot run (``ctx``: the
    recipe ``cfg``, its ``features``, the ``family``, the section's ``key``, the ``phase``
    index under ``phases``, ``check_files``). ``host`` is the section it extends: ``""`` (the
    recipe's top level), ``init``, ``loss`` or ``phases`` (every phase). With ``key`` the
    section is one key of the host (``phases[i].patch``); without, its fields are keys of
    the host itself (``init.source_stride``). ``refusal`` says why another family's recipe may
    not set them (``{arch}``: that family); left empty, the refusal just names key and family.
    """

    host: str
    section: type
    key: str | None = None
    refusal: str = ""

    def names(self) -> tuple[str, ...]:
        """The keys this adds to its host."""
        if self.key is not None:
            return (self.key,)
        return tuple(f.name for f in fields(self.section))
