"""SSAST weights in: flexiast's own files and the official SSAST release.

* ``flexiast``: a pretraining run's files (``arch: ssast`` in their configuration);
* ``ssast-official``: ``SSAST-{Base,Small,Tiny}-{Patch,Frame}-400.pth`` (YuanGongND/ssast),
  a DataParallel state dict: the timm DeiT encoder under ``module.v.`` (its unused
  ``head`` and ``head_dist`` left out), ``module.mask_embed``, the heads
  ``module.cpredlayer.{0,2}`` and ``module.gpredlayer.{0,2}``, and the pretraining input size
  as 0-d tensors ``module.p_input_fdim`` / ``module.p_input_tdim``. The patch shape is the
  kernel's, the stride the patch (SSAST pretrains without overlap), the head count 64-wide
  heads (DeiT's), and the number of prefix tokens 2 (SSAST always adds ``dist_token``).

Read by :mod:`flexiast.checkpoints` (never running code from the file).
"""

from __future__ import annotations

from pathlib import Path

from ...checkpoints import CheckpointError
from ..ast.weights import SOURCE_HINTS, _encoder_config, _encoder_weights
from ..base import WeightsFile, load_model
from ..loading import InitFrom, adapt_loaded, fill
from .config import SSASTConfig
from .model import SSAST

__all__ = ["detect", "LAYOUTS", "load", "init_weights", "init_from", "OFFICIAL_KEYS"]

LAYOUTS = "official SSAST (module.v.* + module.mask_embed + module.cpredlayer.*) or flexiast keys"
#: What only an official SSAST file holds, beside the encoder.
OFFICIAL_KEYS = ("mask_embed", "cpredlayer.0.weight", "gpredlayer.0.weight", "p_input_fdim", "p_input_tdim")


def detect(sd: dict, foreign_config: dict | None = None) -> str | None:
    if foreign_config is None and "v.cls_token" in sd and all(k in sd for k in OFFICIAL_KEYS):
        return "ssast-official"
    return None


def _from_official(sd: dict, num_heads: int | None) -> tuple[dict, dict]:
    weight = sd["v.patch_embed.proj.weight"]
    patch = tuple(weight.shape[-2:])
    cfg = dict(_encoder_config(sd, "v.", num_heads), input_fdim=int(sd["p_input_fdim"]),
               input_tdim=int(sd["p_input_tdim"]), patch_size=patch, stride=patch,
               prefix_tokens=2 if "v.dist_token" in sd else 1, norm_eps=1e-6)
    out = _encoder_weights(sd, "v.")
    out.update({"patch_embed.proj.weight": weight, "patch_embed.proj.bias": sd["v.patch_embed.proj.bias"],
                "pos_embed": sd["v.pos_embed"], "mask_embed": sd["mask_embed"]})
    out.update({k: v for k, v in sd.items() if k.startswith(("cpredlayer.", "gpredlayer."))})
    return cfg, out


def load(sd: dict, layout: str, flexiast_config: dict | None, foreign_config: dict | None, *,
         path: Path, **overrides) -> SSAST:
    """An SSAST from a state dict of ``layout``, adapted by ``overrides`` (``input_tdim``,
    ``input_fdim``, ``stride``, dropout rates: the positional grid follows; the patch stays).
    ``source_*`` hints are not needed: an SSAST file states its pretraining input size."""
    overrides.pop("kernel_resize", None)
    for hint in SOURCE_HINTS:  # the file states its input size
        overrides.pop(hint, None)
    try:
        if layout == "flexiast":
            cfg = SSASTConfig.from_dict(flexiast_config or {})
        else:
            raw, sd = _from_official(sd, overrides.pop("num_heads", None))
            cfg = SSASTConfig(**raw)
    except KeyError as e:
        raise CheckpointError(f"{path} ({layout}): missing the tensor {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} ({layout}): {e}") from None
    return adapt_loaded(fill(SSAST(config=cfg), sd, path, layout), overrides, path, layout)


def init_weights(weights: WeightsFile, target: SSASTConfig, **hints) -> SSAST:
    """The SSAST in a pretraining recipe's ``init.path``, as the file holds it: the hook of
    :data:`init_from`, which then moves it to the recipe's input size, stride and dropout."""
    return load_model(weights)


#: Continued pretraining (``ModelFamily.init_from``): an SSAST file shaped to the recipe's
#: ``target`` (input size, stride, dropout); its widths and patch must be the recipe's. A file
#: of any other family (an AST classifier, an ImageNet ViT) is refused, naming it.
init_from = InitFrom(SSASTConfig.arch, init_weights, hints=("kernel_resize", *SOURCE_HINTS),
                     fixed=("embed_dim", "depth", "num_heads", "mlp_ratio", "prefix_tokens", "patch_size"),
                     follows=("input_fdim", "input_tdim", "stride", "drop_rate", "drop_path_rate", "partial_patches"),
                     exact=True, refusal="; a pretraining recipe continues from an SSAST file (flexiast's, or the "
                                         "official SSAST-*.pth)")
