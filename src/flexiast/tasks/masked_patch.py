"""SSAST's masked-patch prediction (Gong et al., AAAI 2022, Sec. 2.3), the pretraining task.

Per optimizer step and clip, ``M`` of the ``N`` patches are hidden (:mod:`flexiast.masking`:
``M`` a count, or a fraction of ``N`` that scales with a coarse phase's shorter input) and
predicted by the SSAST's heads (:class:`flexiast.models.ssast.SSAST`):

* discriminative (``cpredlayer``): InfoNCE over the clip's masked positions. With
  predictions ``c_i`` and true patches ``x_j``, ``S_ji = <x_j, c_i>`` and
  ``NCE = -1/(B M) sum_{b, j} log softmax_i(S_j.)_j``; the accuracy is SSAST's
  ``argmax(softmax(S, dim=-1), dim=0) == i`` (the softmax over predictions, the argmax over
  true patches, as ``ast_models.py`` ``mpc`` computes it);
* generative (``gpredlayer``): ``MSE = mean (g_i - x_i)^2`` over every value of every masked patch;
* ``joint``: ``NCE + w MSE`` (``w = 10``), the two from separate passes with independent masks
  (``traintest_mask.py``), run here as one batch.

The masks of clip ``i`` at step ``s`` depend on ``(seed, s, i)`` only, so a resumed run
draws the same ones; validation uses one fixed draw per clip, the same every epoch.
"""

from __future__ import annotations

import torch

from .. import distributed, faults
from ..masking import draw_masks, mask_count
from .classify import Task
from .losses import masked_patch_losses

__all__ = ["MaskedPatchPrediction", "OBJECTIVES", "VALIDATION_STEP"]

#: What a pretraining step optimises: the heads each pass trains.
OBJECTIVES = {"joint": ("discriminative", "generative"), "discriminative": ("discriminative",),
              "generative": ("generative",)}
#: The step number validation masks are keyed by (a training run never reaches it).
VALIDATION_STEP = 2 ** 31 - 1


def _module(model):
    """The model behind a DDP or compiled wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


class MaskedPatchPrediction(Task):
    """``masked`` (count or fraction) patches hidden per clip, ``masking`` (``cluster``,
    ``uniform`` or ``auto``: cluster unless the patch spans every mel bin, SSAST's frame
    model), ``objective`` (``joint``, ``discriminative``, ``generative``) and the generative
    weight; ``seed`` keys the masks."""

    def __init__(self, masked: int | float, masking: str = "auto", objective: str = "joint",
                 generative_weight: float = 10.0, seed: int = 0):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
        self.masked, self.masking, self.objective = masked, masking, objective
        self.heads = OBJECTIVES[objective]
        self.generative_weight, self.seed = generative_weight, seed

    @property
    def unused_parameters(self) -> bool:
        """One objective alone leaves the other head without a gradient."""
        return len(self.heads) < 2

    @property
    def metric(self) -> str:
        """What picks the best epoch: SSAST's masked-patch accuracy, or -MSE without the discriminative head."""
        return "masked_acc" if "discriminative" in self.heads else "neg_mse"

    # -- masks -----------------------------------------------------------------------
    def count(self, grid: tuple[int, int]) -> int:
        """Masked patches per clip on a token ``grid``."""
        return mask_count(self.masked, grid[0] * grid[1])

    def cluster(self, config) -> bool:
        if self.masking == "auto":
            return config.patch_size[0] < config.input_fdim
        return self.masking == "cluster"

    def masks(self, model, spec: torch.Tensor, step: int, clips: torch.Tensor) -> torch.Tensor:
        """``[P, B, M]``: one independent draw per pass of the objective."""
        grid = model.grid_of(spec)
        count, cluster = self.count(grid), self.cluster(model.config)
        return torch.stack([draw_masks(grid, count, seed=self.seed, step=step, clips=clips.to(spec.device),
                                       stream=p, cluster=cluster) for p in range(len(self.heads))])

    # -- a step ----------------------------------------------------------------------
    def forward(self, model, spec: torch.Tensor, call: dict, keys: dict | None = None) -> dict:
        """Predictions and true values of the hidden patches, ``[P, B, M, pf * pt]`` each.
        ``keys``: the optimizer ``step`` and the clips' dataset ``index``."""
        inner = _module(model)
        if keys is None:
            raise ValueError("masked-patch prediction draws its masks from the step and the clips' indices")
        masked = self.masks(inner, spec, keys["step"], keys["index"])
        pred = model(spec, masked=masked, heads=self.heads, **call)
        true = inner.patches(spec)
        target = torch.stack([true.gather(1, m[..., None].expand(-1, -1, true.shape[-1])) for m in masked])
        return {"pred": pred, "target": target}

    def losses(self, outputs: dict) -> dict:
        """``loss`` and every head's numbers (:func:`masked_patch_losses`), float32."""
        return masked_patch_losses(outputs["pred"].float(), outputs["target"].float(), self.heads,
                                   self.generative_weight)

    def loss(self, outputs: dict, target=None) -> torch.Tensor:
        return self.losses(outputs)["loss"]

    def flop_call(self, config, input_shape) -> dict:
        """What :func:`flexiast.models.flops` needs beyond the input: the masked patches and passes."""
        grid = config.grid_at((input_shape[-1], input_shape[-2]), config.patch_size, config.stride)
        return {"masked": self.count(grid), "passes": len(self.heads)}

    # -- validation ------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, model, loader, patches=None, *, info=distributed.DistInfo(), autocast=None, **_) -> dict:
        """``{"stored": {"masked_acc", "nce", "mse", "neg_mse", "loss"}}`` (those its heads give)
        over the split at the stored patch (whatever ``patches`` the engine asks for: the heads
        predict that one), each the mean over clips (every clip's masks fixed:
        :data:`VALIDATION_STEP`), with ``_clips``,
        ``_skipped`` and ``_unreadable`` as :func:`flexiast.evaluate.evaluate_model` gives them."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        sums = torch.zeros(5, dtype=torch.float64)  # clips, acc, nce, mse, loss
        errors = []
        for batch in loader:
            errors += batch["errors"]
            if batch["spec"] is None:
                continue
            spec = batch["spec"].to(device)
            ctx = autocast() if autocast is not None else torch.autocast(device.type, enabled=False)
            with ctx:
                out = self.forward(model, spec, {}, {"step": VALIDATION_STEP, "index": batch["index"]})
            numbers = self.losses(out)
            n = len(spec)
            sums += torch.tensor([n] + [n * float(numbers.get(k, float("nan"))) for k in ("acc", "nce", "mse", "loss")],
                                 dtype=torch.float64)
            faults.point("validation")
        model.train(was_training)
        parts = distributed.gather_objects({"sums": sums, "errors": errors}, info)
        total = sum(p["sums"] for p in parts)
        errors = sorted(e for p in parts for e in p["errors"])
        if total[0] == 0:
            raise RuntimeError(f"validation saw no readable clips ({len(errors)} unreadable, e.g. {errors[:1]})")
        mean = (total[1:] / total[0]).tolist()
        metrics = {k: v for k, v in zip(("masked_acc", "nce", "mse", "loss"), mean) if v == v}  # NaN: no such head
        if "mse" in metrics:
            metrics["neg_mse"] = -metrics["mse"]
        return {"stored": metrics, "_clips": int(total[0]),
                "_skipped": len(errors), "_unreadable": errors}
