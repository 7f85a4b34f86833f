"""Building, loading and saving a model of any registered family by name, config or file.

``create_model("ast-tiny", num_classes=10)``, ``create_model(config)`` and
``create_model({"arch": "ast", ...})`` build one; ``load_model(path)`` reads a weights
file or directory and asks which family it belongs to: our files say so (``arch`` in
their configuration; files written before families had names are ASTs), a foreign state
dict is claimed by the one family whose ``detect`` recognises its layout.
``list_models()`` names every ``<arch>-<preset>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import CheckpointError, load_state_dict, strip_module
from ..constants import DEFAULT_ARCH
from .base import FamilyError, FlexModel, ModelFamily, families, get_family

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


def identify(sd: dict, flexiast_config: dict | None, foreign_config: dict | None) -> tuple[ModelFamily, str]:
    """``(family, layout)`` of a state dict: ours (``"flexiast"``) or a layout one family reads."""
    if flexiast_config is not None:
        return get_family(flexiast_config.get("arch", DEFAULT_ARCH)), "flexiast"
    sd = strip_module(sd)
    claims = [(f, layout) for f in families().values() if (layout := f.detect(sd, foreign_config)) is not None]
    if len(claims) == 1:
        return claims[0]
    if claims:
        raise CheckpointError("checkpoint layout claimed by several families: "
                              + ", ".join(f"{f.arch} ({layout})" for f, layout in claims))
    sample = ", ".join(sorted(sd)[:6])
    readable = "; ".join(f"{f.arch}: {f.layouts}" for f in families().values())
    raise CheckpointError(f"unrecognised checkpoint layout: expected one of {readable}; found {len(sd)} keys "
                          f"such as {sample}")


@dataclass(frozen=True)
class WeightsFile:
    """A weights file read once (:func:`read_weights`): its state dict (``module.`` stripped),
    our configuration or a foreign one where it has them, and the family and layout that
    :func:`identify` gives. :func:`load_model` builds from it as from its path, as often as
    needed (the state dict is not changed by building)."""

    path: Path
    sd: dict
    flexiast_config: dict | None
    foreign_config: dict | None
    family: ModelFamily
    layout: str


def read_weights(path: str | Path) -> WeightsFile:
    """``path`` read (never executing code from it) and identified, naming the file in errors."""
    sd, flexiast_config, foreign_config = load_state_dict(path)
    try:
        family, layout = identify(sd, flexiast_config, foreign_config)
    except (CheckpointError, FamilyError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    return WeightsFile(Path(path), strip_module(sd), flexiast_config, foreign_config, family, layout)


def load_model(path: str | Path | WeightsFile, *, arch: str | None = None, **overrides) -> FlexModel:
    """The model in ``path`` (a file or a directory, or a :class:`WeightsFile` already read),
    adapted by ``overrides``.

    ``arch`` refuses a file of another family, naming both. ``overrides`` are the
    family's (an AST takes ``num_classes``, ``patch_size``, ``input_tdim``, ``stride``, and
    ``source_*`` hints that describe an ambiguous file; :meth:`flexiast.AST.from_pretrained`).
    Never executes code from the file (safetensors or ``torch.load(weights_only=True)``).
    """
    w = path if isinstance(path, WeightsFile) else read_weights(path)
    if arch is not None and w.family.arch != arch:
        raise CheckpointError(f"{w.path}: holds a model of the {w.family.arch} family ({w.layout} layout), where one "
                              f"of the {arch} family is expected")
    return w.family.load(w.sd, w.layout, w.flexiast_config, w.foreign_config, path=w.path, **overrides)


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
