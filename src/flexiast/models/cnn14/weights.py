"""The weights CNN14 users have, read into flexiast's CNN14.

Layouts recognised by their keys (after stripping DataParallel's ``module.``):

* ``flexiast``: our own files (configuration included).
* ``panns``: a PANNs checkpoint (qiuqiangkong/audioset_tagging_cnn, e.g. ``Cnn14_mAP=0.431.pth``:
  ``{"model": state dict, ...}``, which :func:`flexiast.checkpoints.load_state_dict` unwraps;
  pytorch/main.py saves ``{'iteration', 'model', 'sampler', 'optimizer'}``), its keys those of
  ``Cnn14`` in pytorch/models.py: ``spectrogram_extractor.stft.conv_{real,imag}.weight`` and
  ``logmel_extractor.melW`` (torchlibrosa's frozen STFT and mel matrices), ``bn0.*``,
  ``conv_block{1..6}.{conv1,conv2}.weight``, ``.bn{1,2}.*``, ``fc1.*``, ``fc_audioset.*``. Our module
  names are PANNs', so the map drops the front end (flexiast computes the ``slaney_logmel``
  features itself) after checking it is the one those features compute: ``melW`` must have
  ``bn0``'s number of mel bins, and where it has PANNs' 513 x 64 shape it must equal the Slaney
  filters of the family's default features (32 kHz, 1024-point FFT, 50-14,000 Hz:
  :data:`flexiast.features.HTSAT_FEATURES`), else the file was trained on another front end
  and loading it is refused, naming the difference. ``cnn14``: the same keys without the front end.

Files are read by :mod:`flexiast.checkpoints` (safetensors or ``torch.load(weights_only=True)``,
never running their code); this module only maps keys and checks shapes.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ...checkpoints import CheckpointError
from ...features import HTSAT_FEATURES
from ...logmel import slaney_mel_filterbank
from ..base import WeightsFile
from ..loading import InitFrom, adapt_loaded, config_from_facts, fill, own_config
from .config import CNN14Config
from .model import CNN14

__all__ = ["detect", "LAYOUTS", "convert_state_dict", "load", "init_weights", "init_from", "check_front_end"]

#: The layouts :func:`detect` recognises, in words (for the error when no family reads a file).
LAYOUTS = ("PANNs Cnn14 (conv_block1..6.*, fc1.*, fc_audioset.*, with or without "
           "spectrogram_extractor.* / logmel_extractor.*)")

_KEYS = {"bn0.weight", "conv_block1.conv1.weight", "fc1.weight"}
_FRONT_END = ("spectrogram_extractor.", "logmel_extractor.")


def detect(sd: dict, foreign_config: dict | None = None) -> str | None:
    """The layout of a state dict (``module.`` already stripped) if it is a CNN14's, else None."""
    if foreign_config is not None or not _KEYS <= set(sd):
        return None
    return "panns" if any(k.startswith(_FRONT_END) for k in sd) else "cnn14"


def check_front_end(sd: dict, path="checkpoint") -> None:
    """Refuse a PANNs file whose front end is not the ``slaney_logmel`` one flexiast computes
    (see the module docstring); the check costs one 513 x 64 filter bank."""
    mel = sd.get("logmel_extractor.melW")
    if mel is None:
        return
    bins = sd["bn0.weight"].shape[0]
    if mel.dim() != 2 or mel.shape[1] != bins:
        raise CheckpointError(f"{path}: logmel_extractor.melW {tuple(mel.shape)} does not give bn0's {bins} mel bins")
    f = HTSAT_FEATURES
    n_fft = round(f["sample_rate"] * f["frame_length_ms"] / 1000)
    if tuple(mel.shape) == (n_fft // 2 + 1, f["num_mel_bins"]):
        want = slaney_mel_filterbank(f["sample_rate"], n_fft, f["num_mel_bins"], f["fmin"], f["fmax"])
        if not torch.allclose(mel.double(), want, rtol=1e-4, atol=1e-7):
            raise CheckpointError(f"{path}: logmel_extractor.melW is not the Slaney mel filter bank of "
                                  f"{f['sample_rate']} Hz, {n_fft}-point FFT, {f['fmin']:g}-{f['fmax']:g} Hz that "
                                  "flexiast's slaney_logmel features compute; the weights were trained on another "
                                  "front end")
    else:
        warnings.warn(f"{path}: a PANNs front end of {mel.shape[0]} FFT bins and {mel.shape[1]} mel bins, not "
                      f"{n_fft // 2 + 1} x {f['num_mel_bins']}: set the features (sample_rate, frame_length_ms, "
                      "num_mel_bins, fmin, fmax) to the ones it was trained on", stacklevel=4)


def _shape_config(sd: dict) -> dict:
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"conv_block(\d+)\.conv1\.weight$", k))}
    if not blocks or blocks != set(range(1, max(blocks) + 1)):
        raise CheckpointError(f"conv blocks {sorted(blocks)}: expected conv_block1 .. conv_blockN")
    fields = dict(channels=tuple(sd[f"conv_block{k}.conv1.weight"].shape[0] for k in sorted(blocks)),
                  input_fdim=sd["bn0.weight"].shape[0])
    if "fc_audioset.weight" in sd:
        fields["num_classes"] = sd["fc_audioset.weight"].shape[0]
    return fields


def convert_state_dict(sd: dict, layout: str, *, flexiast_config: dict | None = None, facts: dict | None = None,
                       path="checkpoint") -> tuple[CNN14Config, dict, bool]:
    """``(config, state dict in our layout, new head?)``. ``facts`` give what the file does not
    say (``input_tdim``, ``num_classes`` for a file without ``fc_audioset``); the widths and mel
    bins are the file's."""
    if layout == "flexiast":
        return own_config(CNN14Config, flexiast_config), dict(sd), False
    facts = dict(facts or {})
    try:
        if layout == "panns":
            check_front_end(sd, path)
        elif layout != "cnn14":
            raise CheckpointError(f"unknown CNN14 layout {layout!r}")
        sd = {k: v for k, v in sd.items() if not k.startswith(_FRONT_END)}
        fields = _shape_config(sd)
    except KeyError as e:
        raise CheckpointError(f"{path}: {layout} checkpoint is missing the tensor {e.args[0]!r}") from None
    return config_from_facts(CNN14Config, fields, facts, path, layout), sd, "fc_audioset.weight" not in sd


def _build(config: CNN14Config, sd: dict, new_head: bool, path, layout: str) -> CNN14:
    return fill(CNN14(config=config), sd, path, layout, new_head="classifier (fc_audioset)" if new_head else "")


def load(sd: dict, layout: str, flexiast_config: dict | None, foreign_config: dict | None, *,
         path: Path, **overrides) -> CNN14:
    """A CNN14 from a state dict of ``layout`` (:func:`flexiast.models.load_model`), adapted by
    ``overrides`` (``num_classes``, ``input_tdim``, ``labels``, dropout)."""
    config, sd, new_head = convert_state_dict(sd, layout, flexiast_config=flexiast_config, facts=overrides,
                                              path=path)
    return adapt_loaded(_build(config, sd, new_head, path, layout), overrides, path, layout)


def init_weights(weights: WeightsFile, target: CNN14Config) -> CNN14:
    """The CNN14 in a recipe's ``init.path``, with the classes taken from the ``target`` where the
    file has no ``fc_audioset``: the hook of :data:`init_from`."""
    facts = {k: getattr(target, k) for k in ("num_classes", "input_tdim", "labels", "conv_dropout", "fc_dropout")}
    config, sd, new_head = convert_state_dict(weights.sd, weights.layout, flexiast_config=weights.flexiast_config,
                                              facts=facts, path=weights.path)
    return _build(config, sd, new_head, weights.path, weights.layout)


#: A recipe's initial weights for a CNN14 (``ModelFamily.init_from``), shaped to its target:
#: classes (a new head where they differ), input length and dropout; channels the file fixes
#: and the recipe states otherwise are taken from the file, with a warning.
init_from = InitFrom(CNN14Config.arch, init_weights, fixed=("channels",),
                     follows=("num_classes", "input_tdim", "labels", "conv_dropout", "fc_dropout"))
