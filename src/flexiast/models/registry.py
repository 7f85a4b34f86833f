"""Building, loading and saving a model of any registered family by name, config or file.

``create_model("ast-tiny", num_classes=10)``, ``create_model(config)`` and
``create_model({"arch": "ast", ...})`` build one; ``load_model(path)`` reads a weights
file or directory and asks which family it belongs to: our files say so (``arch`` in
their configuration; files written before families had names are ASTs), a foreign state
dict is claimed by the one family whose ``detect`` recognises its layout.
``list_models()`` names every ``<arch>-<preset>``. Reading a file (``read_weights``,
``identify``, ``load_model``) is defined in :mod:`flexiast.models.base`, below the families'
model classes, whose ``from_pretrained`` calls it; this module names it with the rest.
"""

from __future__ import annotations

from ..constants import DEFAULT_ARCH
from .base import (FamilyError, FlexModel, ModelFamily, WeightsFile, families, get_family, identify, load_model,
                   read_weights)

__all__ = ["create_model", "create_config", "load_model", "list_models", "config_from_dict", "family_of",
           "identify", "read_weights", "WeightsFile", "flops"]


def config_from_dict(d: dict):
    """A family's configuration from its ``to_dict()`` form (``arch`` picks the family)."""
    return get_family(d.get("arch", DEFAULT_ARCH)).config_class.from_dict(d)


def family_of(model_or_config) -> ModelFamily:
    config = getattr(model_or_config, "config", model_or_config)
    if isinstance(config, dict):
        return get_family(config.get("arch", DEFAULT_ARCH))
    return get_family(config.arch)


def _split_name(name: str) -> tuple[ModelFamily, dict]:
    arch, _, preset = name.partition("-")
    family = get_family(arch)
    if not preset:
        return family, {}
    if preset not in family.presets:
        raise FamilyError(f"unknown {arch} size {preset!r}; choose from {', '.join(list_models(arch))}")
    return family, dict(family.presets[preset])


def create_config(name_or_config, **overrides):
    """The configuration :func:`create_model` builds, without building the model."""
    if isinstance(name_or_config, str):
        family, kwargs = _split_name(name_or_config)
        return family.config_class(**{**kwargs, **overrides})
    config = config_from_dict(name_or_config) if isinstance(name_or_config, dict) else name_or_config
    return config.replace(**overrides) if overrides else config


def create_model(name_or_config, **overrides) -> FlexModel:
    """A freshly initialised model: ``"ast"``, ``"ast-tiny"`` (see :func:`list_models`), a
    configuration object or its dict; ``overrides`` change any configuration field."""
    config = create_config(name_or_config, **overrides)
    return family_of(config).model_class(config=config)


def list_models(arch: str | None = None) -> list[str]:
    """Every ``<arch>-<preset>`` name :func:`create_model` takes (of one family with ``arch``)."""
    chosen = [get_family(arch)] if arch is not None else families().values()
    return sorted(f"{f.arch}-{p}" for f in chosen for p in f.presets)


def flops(model_or_config, input_shape, patch_size=None, **call):
    """Analytic FLOPs of ``model(spec, **call)`` for ``spec`` of ``input_shape`` (``(frames,
    mel_bins)`` or ``(batch, frames, mel_bins)``), counted as ``FlopCounterMode`` counts; the
    family's counter (:func:`flexiast.models.ast.flops.flops` for an AST)."""
    config = getattr(model_or_config, "config", model_or_config)
    if isinstance(config, dict):
        config = config_from_dict(config)
    if patch_size is not None:
        call["patch_size"] = patch_size
    return family_of(config).flops(config, input_shape, **call)
