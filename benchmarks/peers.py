"""The peer implementations the benchmarks compare against, set up fairly.

Hugging Face's ``ASTForAudioClassification`` gets flexiast's own weights (written with
``save_pretrained(format="hf")`` and read back with ``from_pretrained``), its fastest
attention on this machine (``attn_implementation="sdpa"``, PyTorch's fused
scaled-dot-product attention, the same kernel flexiast calls), the same thread count,
the same dtype (fp32, or bf16 autocast around the same forward) and the same optimizer
object type and settings. :func:`hf_model` checks that both give the same logits before
any timing, so the comparison is between two implementations of one function.
"""

from __future__ import annotations

import tempfile
import warnings

import torch

from flexiast import AST


def hf_model(model: AST, attn: str = "sdpa"):
    """Hugging Face's AST holding ``model``'s weights, in the same train/eval mode."""
    from transformers import ASTForAudioClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(tmp, format="hf")
        hf = ASTForAudioClassification.from_pretrained(tmp, attn_implementation=attn)
    hf.train(model.training)
    spec = torch.randn(2, model.config.input_tdim, model.config.input_fdim)
    with torch.no_grad():
        was = model.training, hf.training
        model.eval(), hf.eval()
        ours, theirs = model(spec), hf(input_values=spec).logits
        model.train(was[0]), hf.train(was[1])
    if not torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4):
        raise RuntimeError(f"Hugging Face's AST disagrees with flexiast by {(ours - theirs).abs().max():.2e}: "
                           "the comparison would not be between the same function")
    return hf


def hf_logits(hf, spec: torch.Tensor) -> torch.Tensor:
    return hf(input_values=spec).logits
