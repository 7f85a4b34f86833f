"""An AST written in Hugging Face's ``ASTForAudioClassification`` layout (a directory that
``transformers`` loads, with its feature extractor's ``preprocessor_config.json``): the
family's ``hf`` writer. Reading that layout is :mod:`flexiast.models.ast.weights`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ...atomic import write_text_atomic
from ...checkpoints import save_directory
from ...resize import grid_shape
from .model import AST
from .weights import HF_MODEL_TYPE, HF_PREFIX

__all__ = ["to_hf", "write_hf", "hf_preprocessor_config"]


def to_hf(model: AST) -> tuple[dict, dict]:
    """``(config.json contents, state dict)`` in Hugging Face's AST layout."""
    cfg = model.config
    if cfg.patch_size[0] != cfg.patch_size[1]:
        raise ValueError(f"Hugging Face's AST needs a square patch; this model stores {cfg.patch_size}")
    if cfg.prefix_tokens != 2:
        raise ValueError("Hugging Face's AST has cls and distillation tokens; this model has one prefix token")
    if cfg.pooling != "prefix":
        raise ValueError("Hugging Face's AST pools its cls and distillation tokens; this model pools its patch "
                         f"tokens (pooling={cfg.pooling!r})")
    if cfg.qkv_bias is False:
        raise ValueError("export with qkv_bias=False is not supported")
    if cfg.grid != grid_shape(cfg.input_size, cfg.patch_size, cfg.stride):
        raise ValueError(f"Hugging Face's AST drops partial patches; this model pads them (partial_patches='pad', "
                         f"grid {cfg.grid} on {cfg.input_size})")
    if cfg.head_norm_eps != cfg.norm_eps:
        warnings.warn(f"Hugging Face's AST has one layer_norm_eps; writing {cfg.norm_eps} (the classifier "
                      f"used {cfg.head_norm_eps}), which changes logits by a few 1e-6", stacklevel=3)
    labels = cfg.labels or tuple(f"LABEL_{i}" for i in range(cfg.num_classes))
    hf_cfg = {
        "architectures": ["ASTForAudioClassification"], "model_type": HF_MODEL_TYPE,
        "hidden_size": cfg.embed_dim, "num_hidden_layers": cfg.depth, "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.mlp_dim, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02, "layer_norm_eps": cfg.norm_eps,
        "patch_size": cfg.patch_size[0], "qkv_bias": True, "frequency_stride": cfg.stride[0],
        "time_stride": cfg.stride[1], "max_length": cfg.input_tdim, "num_mel_bins": cfg.input_fdim,
        "id2label": {str(i): x for i, x in enumerate(labels)}, "label2id": {x: i for i, x in enumerate(labels)},
    }
    p, e = HF_PREFIX, HF_PREFIX + "embeddings."
    sd = model.state_dict()
    out = {e + "cls_token": sd["cls_token"], e + "distillation_token": sd["dist_token"],
           e + "position_embeddings": sd["pos_embed"],
           e + "patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
           e + "patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
           p + "layernorm.weight": sd["norm.weight"], p + "layernorm.bias": sd["norm.bias"],
           "classifier.layernorm.weight": sd["head.norm.weight"], "classifier.layernorm.bias": sd["head.norm.bias"],
           "classifier.dense.weight": sd["head.fc.weight"], "classifier.dense.bias": sd["head.fc.bias"]}
    names = {"attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense",
             "mlp.fc2": "output.dense", "norm1": "layernorm_before", "norm2": "layernorm_after"}
    for i in range(cfg.depth):
        layer, b = f"{p}encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            q, k, v = sd[f"{b}attn.qkv.{kind}"].chunk(3, dim=0)
            for name, t in (("query", q), ("key", k), ("value", v)):
                out[f"{layer}attention.attention.{name}.{kind}"] = t
            for ours, theirs in names.items():
                out[f"{layer}{theirs}.{kind}"] = sd[f"{b}{ours}.{kind}"]
    return hf_cfg, out


def hf_preprocessor_config(features: dict) -> dict:
    """``preprocessor_config.json`` of Hugging Face's ``ASTFeatureExtractor`` for our features."""
    return {"feature_extractor_type": "ASTFeatureExtractor", "feature_size": 1,
            "num_mel_bins": features["num_mel_bins"], "max_length": features["target_length"],
            "mean": features["mean"], "std": features["std"], "do_normalize": True, "padding_value": 0.0,
            "return_attention_mask": False, "sampling_rate": features["sample_rate"]}


def write_hf(model: AST, directory: Path, inference: dict | None = None) -> Path:
    """``directory`` in Hugging Face's layout: ``config.json`` and ``model.safetensors`` that
    ``ASTForAudioClassification.from_pretrained`` reads, and with ``inference`` (features and
    multi-label flag) ``preprocessor_config.json`` and ``problem_type``, so Hugging Face's
    feature extractor and pipeline use the same features."""
    config, sd = to_hf(model)
    if inference is not None and "multilabel" in inference:
        config["problem_type"] = ("multi_label_classification" if inference["multilabel"]
                                  else "single_label_classification")
    save_directory(directory, sd, config, {"format": "pt"})
    if inference is not None and "features" in inference:
        write_text_atomic(directory / "preprocessor_config.json",
                          json.dumps(hf_preprocessor_config(inference["features"]), indent=2) + "\n")
    return directory
