"""The weights AST users already have, read into flexiast's AST, and written back out.

Layouts recognised by their keys (after stripping DataParallel's ``module.``):

* ``flexiast``: our own, ``config.json`` + ``model.safetensors``, a ``.safetensors`` file
  whose metadata holds the configuration, or a training checkpoint
  ``{"model": state_dict, "model_config": {...}}``.
* ``ast``: the official AST release (``v.*`` timm DeiT keys + ``mlp_head.{0,1}``).
  Hyper-parameters are inferred from tensor shapes; the number of heads assumes DeiT's
  64-wide heads, and the stride and input length are those that explain the positional
  grid (override them when the guess is wrong).
* ``flexiast-official``: the FlexiAST release, an AST whose separate ``patch_embed`` and
  ``pos_embed.pos_embed`` (one prefix token for the ViT-224 backbone) are the ones used.
* ``hf``: Hugging Face's ``ASTForAudioClassification`` (``audio_spectrogram_transformer.*``),
  a directory with ``config.json`` or a bare state dict.
* ``timm``: an ImageNet ViT/DeiT state dict; the RGB kernel is summed to one channel and
  the positional grid cut or interpolated per axis as AST does; the head is new. A ViT
  has one prefix token ([CLS]), a distilled DeiT two; the file's kernel is kept when the
  target's patch size is the file's (ViT-B/8, B/16, B/32 at 224: 28x28, 14x14, 7x7 grids).
* ``jax-npz``: Google's ``.npz`` of a JAX ViT (the original ViT and AugReg releases, and
  big_vision's layout with a [CLS] token), mapped to timm's names by :func:`npz_to_timm`
  and then read as ``timm``.

Files are read by :mod:`flexiast.checkpoints` (never running their code); this module
only maps keys and shapes. Writing Hugging Face's layout is :mod:`flexiast.models.ast.hf_out`.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import torch

from ...checkpoints import CheckpointError
from ...resize import ast_adapt_pos_grid, to_pair
from ..base import WeightsFile, load_model
from ..loading import InitFrom, fill
from .config import ASTConfig
from .model import AST, adapt_state_dict

__all__ = ["detect", "LAYOUTS", "npz_to_timm", "infer_grid", "convert_state_dict", "load", "init_weights", "init_from",
           "HF_PREFIX", "HF_MODEL_TYPE"]

log = logging.getLogger(__name__)

HF_PREFIX = "audio_spectrogram_transformer."
#: Hugging Face's ``model_type`` of an AST ``config.json``.
HF_MODEL_TYPE = "audio-spectrogram-transformer"
#: The layouts :func:`detect` recognises, in words (for the error when no family reads a file).
LAYOUTS = ("official AST (module.v.*), official FlexiAST (module.v.* + module.pos_embed.pos_embed), "
           "Hugging Face (audio_spectrogram_transformer.*), timm ViT/DeiT (blocks.*, patch_embed.*), "
           "Google's JAX ViT .npz (embedding/kernel, Transformer/encoderblock_*) or flexiast keys")


# -- recognising layouts ------------------------------------------------------------
def detect(sd: dict, foreign_config: dict | None = None) -> str | None:
    """The layout of a state dict (``module.`` already stripped) if it is an AST's, else None."""
    keys = set(sd)
    if any(k.startswith(HF_PREFIX) for k in keys):
        return "hf"
    if foreign_config is not None:  # another library's config.json: only Hugging Face's AST is ours
        return None
    if "v.cls_token" in keys and "v.blocks.0.attn.qkv.weight" in keys:
        if "mask_embed" in keys:  # an SSAST pretraining file: the ssast family's
            return None
        if "pos_embed.pos_embed" in keys and "patch_embed.proj.weight" in keys:
            return "flexiast-official"
        return "ast"
    if {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "cls_token", "pos_embed"} <= keys:
        return "flexiast" if "head.fc.weight" in keys else "timm"
    if _npz_prefix(keys) is not None:
        return "jax-npz"
    return None


# -- Google's JAX ViT (.npz) ----------------------------------------------------------
#: Where a JAX ViT's tensors sit in its .npz: none for the original ViT and AugReg releases,
#: ``opt/target/`` in older training checkpoints, ``params/`` (``params/img/``) in big_vision's.
NPZ_PREFIXES = ("", "opt/target/", "params/", "params/img/")


def _npz_prefix(keys) -> str | None:
    for prefix in NPZ_PREFIXES:
        if prefix + "embedding/kernel" in keys and (prefix + "Transformer/encoder_norm/scale") in keys:
            return prefix
    return None


def npz_to_timm(sd: dict) -> tuple[dict, int]:
    """A JAX ViT's arrays (Flax names, ``.npz``) as ``(timm ViT state dict, number of heads)``.

    Flax stores a convolution kernel HWIO (``embedding/kernel``: ``[ph, pw, 3, D]``, torch's
    ``[D, 3, ph, pw]`` is its ``(3, 2, 0, 1)`` transpose) and a dense kernel ``[in, out]``
    (torch's ``[out, in]``). Attention keeps heads apart: ``query/kernel`` is ``[D, heads,
    d_head]`` (flattened to ``[D, D]`` and transposed; q, k and v stacked into timm's fused
    ``qkv``), its bias ``[heads, d_head]``; ``out/kernel`` is ``[heads, d_head, D]``. So the
    file fixes the head count. Per block, ``LayerNorm_0`` precedes attention
    (``MultiHeadDotProductAttention_1``) and ``LayerNorm_2`` the ``MlpBlock_3`` (big_vision:
    ``MultiHeadDotProductAttention_0``, ``LayerNorm_1``, ``MlpBlock_0``; its scanned layout
    stacks every block's arrays along a first axis under ``encoderblock/``). ``scale`` is a
    LayerNorm's weight. The positional embedding (``Transformer/posembed_input/pos_embedding``,
    big_vision's ``pos_embedding``) and the [CLS] token (``cls``) keep their shapes. The
    classifier (``head``, ``pre_logits``) is left out: an AST's head is new. The names are
    those timm's ``_load_weights`` reads (``vision_transformer.py``).
    """
    keys = set(sd)
    prefix = _npz_prefix(keys)
    if prefix is None:
        raise CheckpointError("not a JAX ViT .npz (no embedding/kernel and Transformer/encoder_norm/scale)")
    if prefix + "cls" not in keys:
        raise CheckpointError("the JAX ViT has no [CLS] token (cls): an AST reads its prediction from one; "
                              "a global-average-pooled ViT cannot initialise it")

    def t(name: str) -> torch.Tensor:
        return sd[prefix + name].float()

    scanned = prefix + "Transformer/encoderblock/LayerNorm_0/scale" in keys
    first = "Transformer/encoderblock/" if scanned else "Transformer/encoderblock_0/"
    big_vision = prefix + first + "MultiHeadDotProductAttention_0/query/kernel" in keys
    attn, ln2, mlp = ("MultiHeadDotProductAttention_0/", "LayerNorm_1", "MlpBlock_0/") if big_vision else \
        ("MultiHeadDotProductAttention_1/", "LayerNorm_2", "MlpBlock_3/")
    depth = (sd[prefix + first + "LayerNorm_0/scale"].shape[0] if scanned
             else _depth(sd, re.escape(prefix) + r"Transformer/encoderblock_(\d+)/"))

    def block(i: int, name: str) -> torch.Tensor:
        return t("Transformer/encoderblock/" + name)[i] if scanned else t(f"Transformer/encoderblock_{i}/{name}")

    pos = "pos_embedding" if prefix + "pos_embedding" in keys else "Transformer/posembed_input/pos_embedding"
    out = {"patch_embed.proj.weight": t("embedding/kernel").permute(3, 2, 0, 1).contiguous(),
           "patch_embed.proj.bias": t("embedding/bias"), "cls_token": t("cls").reshape(1, 1, -1),
           "pos_embed": t(pos), "norm.weight": t("Transformer/encoder_norm/scale"),
           "norm.bias": t("Transformer/encoder_norm/bias")}
    qkv = ("query", "key", "value")
    for i in range(depth):
        b = f"blocks.{i}."
        out[b + "attn.qkv.weight"] = torch.cat([block(i, f"{attn}{n}/kernel").flatten(1).T for n in qkv])
        out[b + "attn.qkv.bias"] = torch.cat([block(i, f"{attn}{n}/bias").reshape(-1) for n in qkv])
        out[b + "attn.proj.weight"] = block(i, f"{attn}out/kernel").flatten(0, 1).T.contiguous()
        out[b + "attn.proj.bias"] = block(i, f"{attn}out/bias")
        for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", ln2)):
            out[f"{b}{ours}.weight"], out[f"{b}{ours}.bias"] = block(i, f"{theirs}/scale"), block(i, f"{theirs}/bias")
        for r in (0, 1):
            out[f"{b}mlp.fc{r + 1}.weight"] = block(i, f"{mlp}Dense_{r}/kernel").T.contiguous()
            out[f"{b}mlp.fc{r + 1}.bias"] = block(i, f"{mlp}Dense_{r}/bias")
    return out, block(0, f"{attn}query/kernel").shape[-2]


def _depth(sd: dict, pattern: str) -> int:
    idx = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    if not idx:
        raise CheckpointError(f"no transformer layers found (keys matching {pattern!r})")
    return max(idx) + 1


#: Input lengths of AST's released models: AudioSet/VGGSound/VoxCeleb, ESC-50, Speech Commands.
AST_LENGTHS = (1024, 512, 128)


def infer_grid(num_tokens: int, patch: tuple[int, int], input_fdim: int = 128,
               stride=None, input_tdim: int | None = None) -> tuple[tuple[int, int], int]:
    """``(stride, input_tdim)`` that explain a positional grid of ``num_tokens`` tokens.

    A checkpoint's shapes do not record its stride or input length, so they are inferred:
    the given ``stride`` if any; else the patch size (no overlap) or AST's released
    stride 10, whichever divides the tokens into a frequency and a time axis; only when
    neither fits, any other stride. Among fitting candidates the preferred length is one
    of AST's released lengths (1024, 512, 128), then a multiple of 64, of 16, then the
    shortest; any length in a candidate's range gives the same grid. Shapes alone can be
    ambiguous (a stride-10 grid for 128 frames has the tokens of a stride-16 grid for
    288): then a warning names the choice and how to pin it.
    """
    def fits(strides):
        out = []
        for sf, st in strides:
            if input_fdim < patch[0]:
                break
            gf = (input_fdim - patch[0]) // sf + 1
            if num_tokens % gf == 0:
                lo = (num_tokens // gf - 1) * st + patch[1]
                span = range(lo, lo + st)
                if input_tdim is None or input_tdim in span:
                    out.append(((sf, st), span if input_tdim is None else range(input_tdim, input_tdim + 1)))
        return out

    if stride is not None:
        candidates = fits([to_pair(stride, "stride")])
    else:
        candidates = fits(list(dict.fromkeys([patch, (10, 10)])))
        if not candidates:
            candidates = fits([(s, s) for s in range(max(patch), 0, -1) if (s, s) not in (patch, (10, 10))])
    for rule in (lambda t: t in AST_LENGTHS, lambda t: t % 64 == 0, lambda t: t % 16 == 0, lambda t: True):
        for s, span in candidates:
            nice = [t for t in span if rule(t)]
            if nice:
                if len(candidates) > 1:
                    others = ", ".join(f"stride {c[0]}x{c[1]} ({span.start} frames)"
                                       for c, span in candidates if c != s)
                    warnings.warn(f"{num_tokens} positional tokens fit stride {s[0]}x{s[1]} ({nice[0]} frames) "
                                  f"and also {others}; assuming the first. Pass source_stride= and "
                                  "source_input_tdim= to say which", stacklevel=4)
                return s, nice[0]
    raise CheckpointError(
        f"cannot explain {num_tokens} positional tokens with patch {patch}, {input_fdim} mel bins"
        + (f", stride {stride}" if stride is not None else "")
        + (f", {input_tdim} frames" if input_tdim is not None else "")
        + "; describe the checkpoint with source_input_fdim=, source_input_tdim= and source_stride="
    )


def _encoder_config(sd: dict, prefix: str, num_heads: int | None) -> dict:
    """Width, depth, heads and MLP ratio of a timm-layout encoder under ``prefix``."""
    dim = sd[prefix + "cls_token"].shape[-1]
    fc1 = sd[prefix + "blocks.0.mlp.fc1.weight"]
    return dict(embed_dim=dim, depth=_depth(sd, re.escape(prefix) + r"blocks\.(\d+)\."),
                num_heads=num_heads or max(dim // 64, 1), mlp_ratio=fc1.shape[0] / dim,
                qkv_bias=prefix + "blocks.0.attn.qkv.bias" in sd)


def _encoder_weights(sd: dict, prefix: str) -> dict:
    out = {}
    for k, v in sd.items():
        if not k.startswith(prefix):
            continue
        name = k[len(prefix):]
        if name.startswith(("blocks.", "norm.")) or name in ("cls_token", "dist_token"):
            out[name] = v
    return out


def _from_ast(sd: dict, ov: dict, official_flexiast: bool) -> tuple[dict, dict]:
    prefix_tokens = 2 if "v.dist_token" in sd else 1
    if official_flexiast:
        weight, bias, pos = sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], sd["pos_embed.pos_embed"]
    else:
        weight, bias, pos = sd["v.patch_embed.proj.weight"], sd["v.patch_embed.proj.bias"], sd["v.pos_embed"]
    patch = tuple(weight.shape[-2:])
    fdim = ov.get("source_input_fdim", 128)
    stride = patch if official_flexiast else ov.get("source_stride")
    stride, tdim = infer_grid(pos.shape[1] - prefix_tokens, patch, fdim, stride, ov.get("source_input_tdim"))
    cfg = dict(_encoder_config(sd, "v.", ov.get("num_heads")), num_classes=sd["mlp_head.1.weight"].shape[0],
               input_fdim=fdim, input_tdim=tdim, patch_size=patch, stride=stride,
               prefix_tokens=prefix_tokens, norm_eps=1e-6, head_norm_eps=1e-5)
    out = _encoder_weights(sd, "v.")
    out.update({"patch_embed.proj.weight": weight, "patch_embed.proj.bias": bias, "pos_embed": pos,
                "head.norm.weight": sd["mlp_head.0.weight"], "head.norm.bias": sd["mlp_head.0.bias"],
                "head.fc.weight": sd["mlp_head.1.weight"], "head.fc.bias": sd["mlp_head.1.bias"]})
    return cfg, out


_HF_LAYER = {
    "attention.attention.query": "q", "attention.attention.key": "k", "attention.attention.value": "v",
    "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v",
    "attention.output.dense": "attn.proj", "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1", "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2", "mlp.fc2": "mlp.fc2",
    "layernorm_before": "norm1", "layernorm_after": "norm2",
}


def _from_hf(sd: dict, hf_cfg: dict | None, ov: dict) -> tuple[dict, dict]:
    p = HF_PREFIX
    emb = p + "embeddings."
    out, qkv = {}, {}
    for k, v in sd.items():
        m = re.match(re.escape(p) + r"(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$", k)
        if m:
            i, name, kind = int(m.group(1)), m.group(2), m.group(3)
            if name not in _HF_LAYER:
                raise CheckpointError(f"unexpected Hugging Face AST key {k}")
            target = _HF_LAYER[name]
            if target in ("q", "k", "v"):
                qkv[(i, kind, target)] = v
            else:
                out[f"blocks.{i}.{target}.{kind}"] = v
    depth = 1 + max(i for i, _, _ in qkv) if qkv else 0
    for i in range(depth):
        for kind in ("weight", "bias"):
            parts = [qkv.get((i, kind, t)) for t in "qkv"]
            if all(x is not None for x in parts):
                out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    out.update({
        "cls_token": sd[emb + "cls_token"], "dist_token": sd[emb + "distillation_token"],
        "pos_embed": sd[emb + "position_embeddings"],
        "patch_embed.proj.weight": sd[emb + "patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": sd[emb + "patch_embeddings.projection.bias"],
        "norm.weight": sd[p + "layernorm.weight"], "norm.bias": sd[p + "layernorm.bias"],
    })
    has_head = "classifier.dense.weight" in sd
    if has_head:
        out.update({"head.norm.weight": sd["classifier.layernorm.weight"],
                    "head.norm.bias": sd["classifier.layernorm.bias"],
                    "head.fc.weight": sd["classifier.dense.weight"], "head.fc.bias": sd["classifier.dense.bias"]})
    dim = out["cls_token"].shape[-1]
    patch = tuple(out["patch_embed.proj.weight"].shape[-2:])
    if hf_cfg is not None:
        eps = float(hf_cfg.get("layer_norm_eps", 1e-12))
        labels = hf_cfg.get("id2label")
        num_classes = len(labels) if labels else out.get("head.fc.weight", torch.empty(527)).shape[0]
        cfg = dict(embed_dim=hf_cfg["hidden_size"], depth=hf_cfg["num_hidden_layers"],
                   num_heads=hf_cfg["num_attention_heads"], mlp_ratio=hf_cfg["intermediate_size"] / hf_cfg["hidden_size"],
                   input_fdim=hf_cfg["num_mel_bins"], input_tdim=hf_cfg["max_length"], patch_size=patch,
                   stride=(hf_cfg["frequency_stride"], hf_cfg["time_stride"]), qkv_bias=hf_cfg.get("qkv_bias", True),
                   num_classes=num_classes, norm_eps=eps, head_norm_eps=eps)
        if labels:
            cfg["labels"] = tuple(labels[str(i)] if str(i) in labels else labels[i] for i in range(len(labels)))
    else:
        fdim = ov.get("source_input_fdim", 128)
        stride, tdim = infer_grid(out["pos_embed"].shape[1] - 2, patch, fdim, ov.get("source_stride"),
                                  ov.get("source_input_tdim"))
        cfg = dict(embed_dim=dim, depth=_depth(out, r"blocks\.(\d+)\."), num_heads=ov.get("num_heads") or dim // 64,
                   mlp_ratio=out["blocks.0.mlp.fc1.weight"].shape[0] / dim, input_fdim=fdim,
                   input_tdim=tdim, patch_size=patch, stride=stride, norm_eps=1e-12, head_norm_eps=1e-12,
                   num_classes=out["head.fc.weight"].shape[0] if has_head else 527)
    cfg["prefix_tokens"] = 2
    return cfg, out


def _from_timm(sd: dict, ov: dict) -> tuple[dict, dict]:
    prefix_tokens = 2 if "dist_token" in sd else 1
    weight = sd["patch_embed.proj.weight"].sum(dim=1, keepdim=True)
    cfg = dict(_encoder_config(sd, "", ov.get("num_heads")), patch_size=tuple(weight.shape[-2:]),
               prefix_tokens=prefix_tokens, norm_eps=1e-6, head_norm_eps=1e-5)
    cfg.update({k: v for k, v in ov.items() if k in ("num_classes", "input_fdim", "input_tdim", "stride")})
    old = sd["pos_embed"].shape[1] - prefix_tokens
    side = int(round(old ** 0.5))
    if side * side != old:
        raise CheckpointError(f"timm positional embedding of {old} tokens is not a square grid")
    target = ASTConfig(**{k: v for k, v in cfg.items() if k in ASTConfig.__dataclass_fields__})
    out = _encoder_weights(sd, "")
    out["patch_embed.proj.weight"] = weight
    out["patch_embed.proj.bias"] = sd["patch_embed.proj.bias"]
    out["pos_embed"] = ast_adapt_pos_grid(sd["pos_embed"], (side, side), target.grid,
                                          num_prefix_tokens=prefix_tokens)
    return cfg, out


def convert_state_dict(sd: dict, layout: str, *, flexiast_config: dict | None = None,
                       hf_config: dict | None = None, **overrides) -> tuple[ASTConfig, dict]:
    """``(config, state dict in flexiast layout)`` of a state dict of ``layout``, before overrides.

    ``overrides`` may hold ``source_*`` hints and ``num_heads`` (facts about the file);
    the timm path also builds its new grid for ``input_fdim``, ``input_tdim``, ``stride``.
    """
    try:
        if layout == "flexiast":
            cfg = dict(flexiast_config or {})
            if not cfg:
                raise CheckpointError("flexiast state dict without its model configuration")
        elif layout in ("ast", "flexiast-official"):
            cfg, sd = _from_ast(sd, overrides, layout == "flexiast-official")
        elif layout == "jax-npz":
            timm_sd, heads = npz_to_timm(sd)  # the file fixes the head count
            cfg, sd = _from_timm(timm_sd, {**overrides, "num_heads": heads})
        elif layout == "hf":
            if hf_config is not None and hf_config.get("model_type") != HF_MODEL_TYPE:
                raise CheckpointError(f"config.json: model_type {hf_config.get('model_type')!r}, not {HF_MODEL_TYPE!r}")
            cfg, sd = _from_hf(sd, hf_config, overrides)
        else:
            cfg, sd = _from_timm(sd, overrides)
    except KeyError as e:
        raise CheckpointError(f"{layout} checkpoint is missing the tensor {e.args[0]!r}") from None
    try:
        config = ASTConfig.from_dict(cfg) if layout == "flexiast" else ASTConfig(**cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{layout} checkpoint: {e}") from None
    return config, dict(sd)


#: Keywords of :func:`load` that describe an ambiguous file rather than a target.
SOURCE_HINTS = ("source_stride", "source_input_tdim", "source_input_fdim")


def load(sd: dict, layout: str, flexiast_config: dict | None, foreign_config: dict | None, *,
         path: Path, **overrides) -> AST:
    """An AST from a state dict of ``layout`` (:func:`flexiast.models.load_model`), adapted by
    ``overrides`` (:meth:`AST.from_pretrained`).

    ``source_stride``, ``source_input_tdim`` and ``source_input_fdim`` describe the file
    where its shapes leave them ambiguous (official AST releases, bare HF state dicts);
    every other keyword is a target the loaded weights are adapted to; ``kernel_resize``
    (``"pi"``, the default, or ``"bl"``) says how the file's kernel moves to another
    ``patch_size``.
    """
    hints = {k: overrides.pop(k) for k in SOURCE_HINTS if k in overrides}
    kernel_resize = overrides.pop("kernel_resize", "pi")
    try:
        cfg, sd = convert_state_dict(sd, layout, flexiast_config=flexiast_config, hf_config=foreign_config,
                                     **hints, **overrides)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if layout in ("timm", "jax-npz"):
        overrides = {k: v for k, v in overrides.items()
                     if k not in ("num_classes", "input_fdim", "input_tdim", "stride")}
    cfg, sd, new_head = adapt_state_dict(cfg, sd, overrides, kernel_resize)
    model = fill(AST(config=cfg), sd, path, layout, fresh=("pool.",) if new_head else (),
                 new_head="classifier head" if new_head else "")
    log.info("loaded %s checkpoint %s: %s", layout, path, cfg)
    return model


def init_weights(weights: WeightsFile, target: ASTConfig, *, kernel_resize: str = "pi", **hints) -> AST:
    """The AST of a recipe's initial weights (``init.path``), shaped to its ``target``: the
    hook of :data:`init_from` (:class:`flexiast.models.loading.InitFrom`).

    Input size, classes (a new head), stored kernel and stride come from the target. A
    kernel of another size is moved with ``kernel_resize``: PI-resize (FlexiAST Sec. 3.2:
    "we adjust the patch embedding weights ... with PI-resize") or bilinear, as the
    official code does for its BL FlexiAST (``flexi_ast.py``: ``FlexiPatchEmbed`` resizes
    the loaded kernel with the same ``resize_func`` it trains with).

    Most weights do not store the head count (ImageNet and AST files assume 64-wide heads):
    the target's is used where width and depth agree. A JAX ``.npz`` stores it (its
    attention kernels are per head) and keeps it.

    A pretraining model's file (an SSAST, flexiast's or the official release) starts
    fine-tuning from its encoder (:meth:`flexiast.models.ssast.SSAST.as_classifier`): a new
    head, the target's pooling, input length and stride; its patch shape must be the target's.
    Its ``source_*`` hints are not needed: such a file states its input size.
    """
    if not weights.family.classifier:
        try:
            return load_model(weights).as_classifier(target, kernel_resize)
        except ValueError as e:
            raise CheckpointError(f"init.path: {weights.path}: {e}") from None
    stride = None if target.stride == target.patch_size else target.stride  # None: no overlap, at any kernel
    overrides = dict(num_classes=target.num_classes, input_fdim=target.input_fdim, input_tdim=target.input_tdim,
                     patch_size=target.patch_size, stride=stride, drop_rate=target.drop_rate,
                     drop_path_rate=target.drop_path_rate, partial_patches=target.partial_patches,
                     pooling=target.pooling, labels=target.labels, kernel_resize=kernel_resize, **hints)
    model = load_model(weights, **overrides)
    got = model.config
    if (got.embed_dim, got.depth) == (target.embed_dim, target.depth) and got.num_heads != target.num_heads:
        model = load_model(weights, num_heads=target.num_heads, **overrides)
    return model


#: A recipe's initial weights for an AST (``ModelFamily.init_from``): any file :func:`load`
#: reads, or a pretraining model's (an SSAST's encoder); widths the file fixes and the recipe
#: states otherwise are taken from the file, with a warning.
init_from = InitFrom(ASTConfig.arch, init_weights, hints=("kernel_resize", *SOURCE_HINTS),
                     fixed=("embed_dim", "depth", "num_heads", "mlp_ratio", "prefix_tokens"), from_pretraining=True)
