"""Training losses: cross-entropy, binary cross-entropy, and knowledge distillation.

* ``ce``: ``-sum_k y_k log softmax(z)_k`` with soft targets ``y`` (mixup mixes them);
* ``bce``: ``mean_k BCE(sigmoid(z_k), y_k)`` for multi-label tasks (AudioSet);
* distillation (Hinton et al. 2015; FlexiAST Sec. 3, the teacher being the AST it was
  initialised from): ``(1 - w) * loss + w * T^2 * D`` with
  ``D = KL(softmax(t / T) || softmax(z / T))`` (batch mean) for ``ce``, and for ``bce``
  the per-class binary KL's cross-entropy part ``BCE(sigmoid(z / T), sigmoid(t / T))``.
  The ``T^2`` keeps the gradient scale independent of ``T``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["supervised_loss", "distillation_loss", "masked_patch_losses"]


def supervised_loss(kind: str, logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    if kind == "ce":
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    if kind == "bce":
        if label_smoothing:
            target = target * (1 - label_smoothing) + 0.5 * label_smoothing
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"loss {kind!r} is not ce or bce")


def distillation_loss(kind: str, logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    if kind == "ce":
        kl = F.kl_div(F.log_softmax(logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                      log_target=True, reduction="batchmean")
        return kl * t * t
    return F.binary_cross_entropy_with_logits(logits / t, torch.sigmoid(teacher_logits / t)) * t * t


def masked_patch_losses(pred: torch.Tensor, target: torch.Tensor, heads: tuple[str, ...],
                        generative_weight: float = 10.0) -> dict:
    """SSAST's losses (:mod:`flexiast.tasks.masked_patch`) of ``pred`` and ``target``, each
    ``[P, B, M, K]``, pass ``p`` read by ``heads[p]``: ``discriminative`` gives ``nce`` and ``acc``,
    ``generative`` gives ``mse``; ``loss = nce + generative_weight * mse`` over those present."""
    out, loss = {}, pred.new_zeros(())
    for p, head in enumerate(heads):
        c, x = pred[p], target[p]
        if head == "discriminative":
            s = torch.bmm(x, c.transpose(1, 2))  # S[b, j, i] = <x_j, c_i>
            out["nce"] = -torch.diagonal(F.log_softmax(s, dim=-1), dim1=1, dim2=2).mean()
            chosen = F.softmax(s, dim=-1).argmax(dim=1)  # per prediction i, the true patch j picked
            out["acc"] = (chosen == torch.arange(s.shape[-1], device=s.device)).float().mean().detach()
            loss = loss + out["nce"]
        elif head == "generative":
            out["mse"] = F.mse_loss(c, x)
            loss = loss + generative_weight * out["mse"]
        else:
            raise ValueError(f"head {head!r} is not discriminative or generative")
    out["loss"] = loss
    return out
