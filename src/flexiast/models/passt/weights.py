"""PaSST weights in: flexiast's own files, PaSST's released checkpoints, and ImageNet DeiT/ViT
(or an AST) to start from.

* ``flexiast``: a PaSST run's files (``arch: passt`` in their configuration);
* ``passt``: the layout of PaSST's releases (kkoutini/PaSST, ``passt-s-f128-p16-s10-ap.476-swa.pt``
  and the others, also what ``hear21passt``'s module holds): timm's ViT keys (``blocks.*``,
  ``norm``, ``cls_token``, ``dist_token``, ``patch_embed.proj`` with one input channel),
  ``new_pos_embed``, ``freq_new_pos_embed [1, D, gf, 1]``, ``time_new_pos_embed [1, D, 1, gt]``,
  the head ``head.0`` (LayerNorm) and ``head.1`` (Linear), and ``head_dist``, which PaSST's
  forward never reads and which is left out. The stride is not in the file: 10 x 10 (every
  release) unless ``source_stride`` says otherwise; the input is the one that explains the grid
  (128 bins x 998 frames for 12 x 99 at stride 10).

:func:`to_passt` writes a model back in that layout. Starting a recipe from an AST-family file
(an ImageNet DeiT or ViT, an AST) builds the AST at the target's geometry, then splits its grid
as PaSST does from DeiT: the frequency table is the grid's mean over time, the time table its
mean over frequency (PaSST's ``adapt_image_pos_embed_to_passt``, here after AST's bilinear move
of the grid where PaSST resizes bicubically).

Files are read by :mod:`flexiast.checkpoints` (never running their code).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...checkpoints import CheckpointError
from ..ast.weights import SOURCE_HINTS, _encoder_config, _encoder_weights, init_weights as ast_init_weights
from ..base import WeightsFile, get_family, load_model
from ..loading import InitFrom, fill
from .config import PaSSTConfig
from .model import PaSST

__all__ = ["detect", "LAYOUTS", "load", "to_passt", "init_weights", "init_from", "OFFICIAL_KEYS"]

LAYOUTS = "PaSST's releases (freq_new_pos_embed, time_new_pos_embed, head.0/head.1) or flexiast keys"
#: What a PaSST file holds besides a ViT's encoder.
OFFICIAL_KEYS = ("new_pos_embed", "freq_new_pos_embed", "time_new_pos_embed", "patch_embed.proj.weight",
                 "head.1.weight")
#: PaSST's LayerNorm epsilons: 1e-6 in the encoder (its ``norm_layer``), 1e-5 in the head.
NORM_EPS, HEAD_NORM_EPS = 1e-6, 1e-5


def detect(sd: dict, foreign_config: dict | None = None) -> str | None:
    if foreign_config is None and all(k in sd for k in OFFICIAL_KEYS):
        return "passt"
    return None


def _span(grid: int, patch: int, stride: int, preferred: int | None) -> int:
    """An input length whose ``(n - patch) // stride + 1`` is ``grid``: ``preferred`` if it is one."""
    lo = (grid - 1) * stride + patch
    return preferred if preferred is not None and lo <= preferred < lo + stride else lo


def _from_official(sd: dict, hints: dict, num_heads: int | None) -> tuple[dict, dict]:
    weight = sd["patch_embed.proj.weight"]
    patch = tuple(weight.shape[-2:])
    stride = hints.get("source_stride") or 10
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    gf, gt = sd["freq_new_pos_embed"].shape[2], sd["time_new_pos_embed"].shape[3]
    cfg = dict(_encoder_config(sd, "", num_heads), num_classes=sd["head.1.weight"].shape[0],
               input_fdim=_span(gf, patch[0], stride[0], hints.get("source_input_fdim") or 128),
               input_tdim=_span(gt, patch[1], stride[1], hints.get("source_input_tdim") or 998),
               patch_size=patch, stride=stride, prefix_tokens=sd["new_pos_embed"].shape[1],
               norm_eps=NORM_EPS, head_norm_eps=HEAD_NORM_EPS)
    out = _encoder_weights(sd, "")
    out.update({k: sd[k] for k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "new_pos_embed",
                                   "freq_new_pos_embed", "time_new_pos_embed")})
    out.update({"head.norm.weight": sd["head.0.weight"], "head.norm.bias": sd["head.0.bias"],
                "head.fc.weight": sd["head.1.weight"], "head.fc.bias": sd["head.1.bias"]})
    return cfg, out


def load(sd: dict, layout: str, flexiast_config: dict | None, foreign_config: dict | None, *,
         path: Path, **overrides) -> PaSST:
    """A PaSST from a state dict of ``layout``, adapted by ``overrides`` (an AST's: ``num_classes``,
    ``input_tdim``, ``patch_size`` with ``kernel_resize``, ``stride``...). ``source_*`` hints
    describe a release whose stride or input differ from PaSST-S's."""
    hints = {k: overrides.pop(k) for k in SOURCE_HINTS if k in overrides}
    kernel_resize = overrides.pop("kernel_resize", "pi")
    try:
        if layout == "flexiast":
            cfg = PaSSTConfig.from_dict(flexiast_config or {})
        else:
            raw, sd = _from_official(sd, hints, overrides.pop("num_heads", None))
            cfg = PaSSTConfig(**raw)
    except KeyError as e:
        raise CheckpointError(f"{path} ({layout}): missing the tensor {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} ({layout}): {e}") from None
    model = fill(PaSST(config=cfg), sd, path, layout)
    rest = {k: v for k, v in overrides.items() if getattr(model.config, k, object()) != v}
    try:
        return model.adapt(kernel_resize=kernel_resize, **rest)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


def to_passt(model: PaSST) -> dict:
    """``model``'s state dict in the layout of PaSST's releases (what ``hear21passt``'s module
    loads with ``strict=True``; its unused ``head_dist`` is zero)."""
    cfg = model.config
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    head = model.state_dict()
    sd.update({"head.0.weight": head["head.norm.weight"].clone(), "head.0.bias": head["head.norm.bias"].clone(),
               "head.1.weight": head["head.fc.weight"].clone(), "head.1.bias": head["head.fc.bias"].clone()})
    if cfg.prefix_tokens == 2:
        sd["head_dist.weight"] = torch.zeros(cfg.num_classes, cfg.embed_dim, dtype=head["head.fc.weight"].dtype)
        sd["head_dist.bias"] = torch.zeros(cfg.num_classes, dtype=head["head.fc.bias"].dtype)
    return sd


def _split_grid(model, target: PaSSTConfig) -> PaSST:
    """An AST-family ``model`` (at ``target``'s geometry) as a PaSST: its grid split into a
    frequency table (the mean over time) and a time table (the mean over frequency), as PaSST
    starts from DeiT."""
    cfg = model.config
    p, (gf, gt) = cfg.prefix_tokens, cfg.grid
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grid = sd.pop("pos_embed")
    body = grid[0, p:].reshape(gf, gt, -1).permute(2, 0, 1)  # [D, gf, gt]
    sd["new_pos_embed"] = grid[:, :p].clone()
    sd["freq_new_pos_embed"] = body.mean(dim=2)[None, :, :, None]
    sd["time_new_pos_embed"] = body.mean(dim=1)[None, :, None, :]
    config = PaSSTConfig.from_dict({**cfg.to_dict(), "arch": PaSSTConfig.arch})
    out = PaSST(config=config)
    out.load_state_dict(sd)
    return out


def init_weights(weights: WeightsFile, target: PaSSTConfig, *, kernel_resize: str = "pi", **hints) -> PaSST:
    """The PaSST of a recipe's ``init.path``, shaped to its ``target``: a PaSST file moved to the
    target's classes and kernel, and to a shorter input by keeping the first columns of its time
    table (as PaSST fine-tunes its AudioSet model on ESC-50's 5 s clips; any other input change is
    a resize); an AST-family file (ImageNet DeiT or ViT, an AST) built as the target's AST
    (:func:`flexiast.models.ast.weights.init_weights`), then split."""
    overrides = dict(num_classes=target.num_classes, input_fdim=target.input_fdim, input_tdim=target.input_tdim,
                     patch_size=target.patch_size, drop_rate=target.drop_rate, drop_path_rate=target.drop_path_rate,
                     partial_patches=target.partial_patches, pooling=target.pooling, labels=target.labels)
    if weights.family.arch == PaSSTConfig.arch:
        model = load_model(weights, **hints)
        got = model.config
        if (weights.layout != "flexiast" and (got.embed_dim, got.depth) == (target.embed_dim, target.depth)
                and got.num_heads != target.num_heads):
            model = load_model(weights, num_heads=target.num_heads, **hints)  # a release stores no head count
        if target.input_tdim < got.input_tdim and target.input_fdim == got.input_fdim:
            model = model.at_patch_size(input_tdim=target.input_tdim)  # PaSST's cut: the first time columns
        overrides["stride"] = None if target.stride == target.patch_size else target.stride
        rest = {k: v for k, v in overrides.items() if getattr(model.config, k, object()) != v}
        return model.adapt(kernel_resize=kernel_resize, **rest)
    ast_config = get_family("ast").config_class
    ast_target = ast_config.from_dict({**target.to_dict(), "arch": ast_config.arch})
    return _split_grid(ast_init_weights(weights, ast_target, kernel_resize=kernel_resize, **hints), target)


#: A recipe's initial weights for a PaSST (``ModelFamily.init_from``): a PaSST file, or an
#: AST-family file (ImageNet DeiT, as PaSST starts) split into PaSST's tables.
init_from = InitFrom(PaSSTConfig.arch, init_weights, hints=("kernel_resize", *SOURCE_HINTS),
                     fixed=("embed_dim", "depth", "num_heads", "mlp_ratio", "prefix_tokens"), accepts=("ast",))
