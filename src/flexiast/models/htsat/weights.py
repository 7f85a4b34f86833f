"""The weights HTS-AT users have, read into flexiast's HTS-AT.

Layouts recognised by their keys (after stripping DataParallel's ``module.``):

* ``flexiast``: our own files (configuration included); a bare state dict in our key layout
  is read as ``htsat`` below.
* ``htsat-lightning``: the official HTS-AT release (RetroCirce/HTS-Audio-Transformer), a
  PyTorch Lightning ``.ckpt`` whose ``state_dict`` keys start with ``sed_model.``. Our module
  names are HTS-AT's, so the map strips the prefix and drops what is not a learned weight of
  the network: the ``relative_position_index`` and ``attn_mask`` buffers (rebuilt for every
  grid), the front end's STFT and mel matrices (``spectrogram_extractor.*``,
  ``logmel_extractor.*``: flexiast computes the ``slaney_logmel`` features itself) and
  ``head.*``, a Linear(classes, classes) that HTS-AT's token-semantic forward never calls
  (its own fine-tuning code drops it too). ``htsat``: the same keys without ``sed_model.``.
* ``swin``: an ImageNet Swin Transformer (Microsoft's ``{"model": ...}``, e.g.
  ``swin_tiny_patch4_window7_224.pth``, or timm's layout, where each merging belongs to the
  next stage and the head is ``head.fc``): the RGB patch kernel is averaged over its
  channels (HTS-AT's ``swin_pretrain_path`` loader), the ImageNet head is dropped, and
  ``bn0`` and the token-semantic head start fresh. HTS-AT's config names a window-8 Swin-T
  (``swin_tiny_c24_patch4_window8_256``) and its loader requires equal shapes, so it never
  resizes a bias table; where the file's window differs from the target's (7 -> 8 for the
  common ImageNet Swin-T), each head's ``(2w-1) x (2w-1)`` table is resized bicubically, as
  Microsoft's Swin fine-tuning loader does for a window change.
* ``hf-clap``: a Hugging Face CLAP audio tower (``ClapAudioModel``: ``audio_encoder.*``, or
  ``ClapModel``: ``audio_model.audio_encoder.*``, e.g. ``laion/clap-htsat-unfused``): HTS-AT's
  Swin without the token-semantic head (a fresh one is made). Separate q, k, v projections
  are stacked into ``qkv``; the fusion branch of fused models (``mel_conv2d``,
  ``fusion_model``), used only for inputs longer than 10 s, and the projection are dropped.

Files are read by :mod:`flexiast.checkpoints` (safetensors or ``torch.load(weights_only=True)``,
never running their code); this module only maps keys and shapes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from ...checkpoints import CheckpointError
from ..base import WeightsFile
from ..loading import InitFrom, adapt_loaded, config_from_facts, fill, own_config
from .config import HTSATConfig
from .model import HTSAT

__all__ = ["detect", "LAYOUTS", "convert_state_dict", "load", "init_weights", "init_from", "read_lightning", "from_clap",
           "from_swin", "resize_bias_table"]

LIGHTNING_PREFIX = "sed_model."
CLAP_PREFIXES = ("audio_model.audio_encoder.", "audio_encoder.")
#: ``model_type`` of the Hugging Face CLAP configurations this family reads.
HF_MODEL_TYPES = ("clap_audio_model", "clap")
#: The layouts :func:`detect` recognises, in words (for the error when no family reads a file).
LAYOUTS = ("official HTS-AT Lightning (sed_model.*), HTS-AT keys (layers.*.blocks.*, tscam_conv.*), "
           "ImageNet Swin (layers.*.blocks.*, head.*; Microsoft or timm) or Hugging Face CLAP audio "
           "(audio_encoder.*)")

_SWIN_KEYS = {"patch_embed.proj.weight", "layers.0.blocks.0.attn.qkv.weight"}
#: Non-learned buffers of HTS-AT's and Swin's modules, rebuilt here for every grid.
_BUFFERS = ("relative_position_index", "attn_mask", "relative_coords_table")


def _clap_prefix(keys) -> str | None:
    for prefix in CLAP_PREFIXES:
        if f"{prefix}layers.0.blocks.0.attention.self.query.weight" in keys:
            return prefix
    return None


def detect(sd: dict, foreign_config: dict | None = None) -> str | None:
    """The layout of a state dict (``module.`` already stripped) if it is an HTS-AT's, else None."""
    keys = set(sd)
    if _clap_prefix(keys) is not None:
        if foreign_config is not None and foreign_config.get("model_type") not in HF_MODEL_TYPES:
            return None
        return "hf-clap"
    if foreign_config is not None:
        return None
    if any(k.startswith(LIGHTNING_PREFIX) for k in keys):
        return "htsat-lightning"
    if _SWIN_KEYS <= keys:
        if "tscam_conv.weight" in keys:
            return "htsat"
        if "head.weight" in keys or "head.fc.weight" in keys or "norm.weight" in keys:
            return "swin"
    return None


# -- reading an HTS-AT state dict ------------------------------------------------------
def _count(sd: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _window_of(table: torch.Tensor) -> int:
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0] or side % 2 == 0:
        raise CheckpointError(f"relative_position_bias_table of {table.shape[0]} rows is not a (2w-1)^2 table")
    return (side + 1) // 2


def _shape_config(sd: dict) -> dict:
    """The configuration fields a state dict in our key layout fixes."""
    stages = _count(sd, r"layers\.(\d+)\.blocks\.")
    if not stages:
        raise CheckpointError("no Swin stages found (keys layers.<i>.blocks.<j>.*)")
    proj = sd["patch_embed.proj.weight"]
    if proj.shape[-1] != proj.shape[-2]:
        raise CheckpointError(f"patch_embed.proj.weight {tuple(proj.shape)}: a square patch is expected")
    fields = dict(
        embed_dim=proj.shape[0], patch_size=proj.shape[-1],
        depths=tuple(_count(sd, rf"layers\.{i}\.blocks\.(\d+)\.") for i in range(stages)),
        num_heads=tuple(sd[f"layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1] for i in range(stages)),
        window_size=_window_of(sd["layers.0.blocks.0.attn.relative_position_bias_table"]),
        mlp_ratio=sd["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / proj.shape[0],
        qkv_bias="layers.0.blocks.0.attn.qkv.bias" in sd, patch_norm="patch_embed.norm.weight" in sd,
    )
    if "bn0.weight" in sd:
        fields["input_fdim"] = sd["bn0.weight"].shape[0]
    if "tscam_conv.weight" in sd:
        fields["num_classes"] = sd["tscam_conv.weight"].shape[0]
    return fields


def _drop_buffers(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if k.rpartition(".")[2] not in _BUFFERS}


def read_lightning(sd: dict, path="checkpoint") -> dict:
    """An official HTS-AT Lightning ``state_dict`` in our key layout (see the module docstring)."""
    inner = {k[len(LIGHTNING_PREFIX):]: v for k, v in sd.items() if k.startswith(LIGHTNING_PREFIX)}
    if not inner:
        sample = ", ".join(sorted(sd)[:4])
        raise CheckpointError(f"{path}: a Lightning checkpoint, but not HTS-AT's: no sed_model.* keys (found {sample})")
    if "tscam_conv.weight" not in inner:
        raise CheckpointError(f"{path}: an HTS-AT checkpoint without the token-semantic head (tscam_conv); "
                              "flexiast reads HTS-AT with enable_tscam=True only")
    dropped = ("spectrogram_extractor.", "logmel_extractor.", "head.")
    return _drop_buffers({k: v for k, v in inner.items() if not k.startswith(dropped)})


def resize_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """A ``(2w-1)^2 x heads`` relative-bias table resized bicubically to ``window``."""
    old = _window_of(table)
    if old == window:
        return table
    side, new_side, heads = 2 * old - 1, 2 * window - 1, table.shape[1]
    grid = table.T.reshape(1, heads, side, side).float()
    out = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return out.reshape(heads, new_side * new_side).T.to(table.dtype).contiguous()


def from_swin(sd: dict, window_size: int | None = None) -> dict:
    """An ImageNet Swin state dict (Microsoft's or timm's) as an HTS-AT encoder (no ``bn0``, no head)."""
    sd = _drop_buffers(sd)
    if "layers.0.downsample.reduction.weight" not in sd and "layers.1.downsample.reduction.weight" in sd:
        # timm >= 0.9: the merging opens the next stage; HTS-AT's (Microsoft's) closes the previous one
        sd = {re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k): v
              for k, v in sd.items()}
    out = {k: v for k, v in sd.items() if not k.startswith("head.") and k != "absolute_pos_embed"}
    w = out["patch_embed.proj.weight"]
    if w.shape[1] != 1:
        out["patch_embed.proj.weight"] = w.mean(dim=1, keepdim=True)  # HTS-AT: RGB averaged
    if window_size is not None:
        for k in [k for k in out if k.endswith("relative_position_bias_table")]:
            out[k] = resize_bias_table(out[k], window_size)
    return out


def from_clap(sd: dict) -> dict:
    """A Hugging Face CLAP audio tower as an HTS-AT encoder (no token-semantic head)."""
    prefix = _clap_prefix(set(sd))
    sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if sd["patch_embed.proj.weight"].shape[1] != 1:
        raise CheckpointError("a CLAP audio tower with channel-map fusion (4 input channels) is not supported")
    out = {}
    for k, v in sd.items():
        if k.startswith(("patch_embed.mel_conv2d.", "patch_embed.fusion_model.")) or k.endswith(
                "relative_position_index"):
            continue
        k = k.replace("batch_norm.", "bn0.")
        m = re.match(r"(layers\.\d+\.blocks\.\d+\.)(.*)", k)
        if m:
            block, rest = m.groups()
            if rest.startswith("attention.self.") and rest.split(".")[2] in ("query", "key", "value"):
                continue  # stacked below
            rest = _clap_rest(rest)
            k = block + rest
        out[k] = v
    for block in {m.group(1) for k in sd if (m := re.match(r"(layers\.\d+\.blocks\.\d+\.)attention\.self\.query", k))}:
        for kind in ("weight", "bias"):
            parts = [sd.get(f"{block}attention.self.{n}.{kind}") for n in ("query", "key", "value")]
            if all(p is not None for p in parts):
                out[f"{block}attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    return out


def _clap_rest(rest: str) -> str:
    names = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
             "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
             "attention.self.relative_position_bias_table": "attn.relative_position_bias_table"}
    for old, new in names.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    raise CheckpointError(f"unexpected Hugging Face CLAP audio key ...{rest}")


# -- building the model -----------------------------------------------------------------
def convert_state_dict(sd: dict, layout: str, *, flexiast_config: dict | None = None,
                       foreign_config: dict | None = None, facts: dict | None = None,
                       path="checkpoint") -> tuple[HTSATConfig, dict, bool]:
    """``(config, state dict in our layout, new head?)``. ``facts`` give what the file does not
    say (``freq_ratio``, ``input_tdim``, ``num_classes`` for a file without a head,
    ``input_fdim`` for an ImageNet Swin, the target ``window_size`` a Swin's tables move to);
    where the file fixes a field, its value is used (and :meth:`HTSAT.adapt` later refuses
    a different one)."""
    if layout == "flexiast":
        return own_config(HTSATConfig, flexiast_config), dict(sd), False
    facts = dict(facts or {})
    try:
        if layout == "htsat-lightning":
            sd = read_lightning(sd, path)
        elif layout == "htsat":
            sd = _drop_buffers({k: v for k, v in sd.items() if not k.startswith(("head.", "spectrogram_extractor.",
                                                                                  "logmel_extractor."))})
        elif layout == "hf-clap":
            sd = from_clap(sd)
            if foreign_config is not None:
                audio = foreign_config.get("audio_config", foreign_config)
                if "spec_size" in audio and "num_mel_bins" in audio:
                    facts.setdefault("freq_ratio", audio["spec_size"] // audio["num_mel_bins"])
        elif layout == "swin":
            sd = from_swin(sd, facts.get("window_size"))
        else:
            raise CheckpointError(f"unknown HTS-AT layout {layout!r}")
        fields = _shape_config(sd)
    except KeyError as e:
        raise CheckpointError(f"{path}: {layout} checkpoint is missing the tensor {e.args[0]!r}") from None
    return config_from_facts(HTSATConfig, fields, facts, path, layout), sd, "tscam_conv.weight" not in sd


def _build(config: HTSATConfig, sd: dict, new_head: bool, path, layout: str) -> HTSAT:
    return fill(HTSAT(config=config), sd, path, layout, ("bn0.",) if layout == "swin" else (),
                new_head="token-semantic head (tscam_conv)" if new_head else "")


def load(sd: dict, layout: str, flexiast_config: dict | None, foreign_config: dict | None, *,
         path: Path, **overrides) -> HTSAT:
    """An HTS-AT from a state dict of ``layout`` (:func:`flexiast.models.load_model`), adapted by
    ``overrides`` (``num_classes``, ``input_tdim``, ``labels``, drop rates; ``freq_ratio``,
    ``input_fdim`` and ``window_size`` where the file does not fix them)."""
    config, sd, new_head = convert_state_dict(sd, layout, flexiast_config=flexiast_config,
                                              foreign_config=foreign_config, facts=overrides, path=path)
    return adapt_loaded(_build(config, sd, new_head, path, layout), overrides, path, layout)


def init_weights(weights: WeightsFile, target: HTSATConfig) -> HTSAT:
    """The HTS-AT in a recipe's ``init.path``, with what the file does not fix taken from the
    ``target`` (classes where it has no head, and for an ImageNet Swin the mel bins and the window
    its bias tables are resized to): the hook of :data:`init_from`."""
    facts = {k: getattr(target, k) for k in ("num_classes", "input_fdim", "input_tdim", "freq_ratio", "window_size",
                                             "labels", "drop_rate", "drop_path_rate")}
    config, sd, new_head = convert_state_dict(weights.sd, weights.layout, flexiast_config=weights.flexiast_config,
                                              foreign_config=weights.foreign_config, facts=facts, path=weights.path)
    return _build(config, sd, new_head, weights.path, weights.layout)


#: A recipe's initial weights for an HTS-AT (``ModelFamily.init_from``), shaped to its target:
#: classes (a new head where they differ), input length and dropout; widths the file fixes and
#: the recipe states otherwise are taken from the file, with a warning.
init_from = InitFrom(HTSATConfig.arch, init_weights,
                     fixed=("embed_dim", "depths", "num_heads", "window_size", "patch_size", "mlp_ratio", "freq_ratio"),
                     follows=("num_classes", "input_tdim", "labels", "drop_rate", "drop_path_rate"))
