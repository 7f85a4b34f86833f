"""Supervised classification, with or without a distillation teacher (FlexiAST Sec. 3)."""

from __future__ import annotations

import torch

from ..models import flops
from .losses import distillation_loss, supervised_loss

__all__ = ["Task", "Classification", "Distillation"]


class Task:
    """A training objective. ``forward(model, spec, call, keys)`` runs the networks (the engine
    wraps it in autocast; ``keys`` holds the optimizer ``step`` and the clips' dataset
    ``index``, for what a task draws per clip) and returns their outputs; ``loss(outputs,
    target)`` is the scalar to minimise, in float32; a task with its own ``validate(model,
    loader, ...)`` scores a split with it, ``{name: {metric: value}}`` with ``metric`` the number
    that picks the best epoch (higher is better), and the engine scores every other task's model
    as a classifier (:func:`flexiast.evaluate.evaluate_model`); ``flop_call(config, input_shape)`` adds the task's options to the FLOP
    count of the trained model's call, and ``extra_flops(input_shape)`` counts forward work
    beyond it (a teacher)."""

    #: Whether a step leaves some of the model's parameters without a gradient (DDP must then
    #: look for them: ``find_unused_parameters``).
    unused_parameters: bool = False
    #: The validation number that picks the best epoch; None: the data's (accuracy or mAP).
    #: A task that sets it has its own ``validate``.
    metric: str | None = None

    def forward(self, model, spec: torch.Tensor, call: dict, keys: dict | None = None) -> dict:
        raise NotImplementedError

    def loss(self, outputs: dict, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def flop_call(self, config, input_shape) -> dict:
        return {}

    def extra_flops(self, input_shape) -> int:
        return 0


class Classification(Task):
    """``ce`` (single-label, soft targets allowed: mixup) or ``bce`` (multi-label) on the logits
    of ``model(spec, **call)``, with optional label smoothing (:func:`supervised_loss`)."""

    def __init__(self, kind: str, label_smoothing: float = 0.0):
        if kind not in ("ce", "bce"):
            raise ValueError(f"loss {kind!r} is not ce or bce")
        self.kind, self.label_smoothing = kind, label_smoothing

    def forward(self, model, spec: torch.Tensor, call: dict, keys: dict | None = None) -> dict:
        return {"logits": model(spec, **call)}

    def loss(self, outputs: dict, target: torch.Tensor) -> torch.Tensor:
        return supervised_loss(self.kind, outputs["logits"].float(), target, self.label_smoothing)


class Distillation(Classification):
    """``(1 - w) * supervised + w * distillation`` against a frozen ``teacher`` run with its own
    call options (``teacher_call``, e.g. its patch size) on the same input
    (:func:`distillation_loss`)."""

    def __init__(self, kind: str, teacher, *, teacher_call: dict, weight: float, temperature: float,
                 label_smoothing: float = 0.0):
        super().__init__(kind, label_smoothing)
        self.teacher = teacher.eval().requires_grad_(False)
        self.teacher_call, self.weight, self.temperature = dict(teacher_call), weight, temperature

    def forward(self, model, spec: torch.Tensor, call: dict, keys: dict | None = None) -> dict:
        return {"logits": model(spec, **call), "teacher": self.teacher(spec, **self.teacher_call)}

    def loss(self, outputs: dict, target: torch.Tensor) -> torch.Tensor:
        loss = super().loss(outputs, target)
        kd = distillation_loss(self.kind, outputs["logits"].float(), outputs["teacher"].float(), self.temperature)
        return (1 - self.weight) * loss + self.weight * kd

    def extra_flops(self, input_shape) -> int:
        """The teacher's forward FLOPs on ``input_shape``."""
        return flops(self.teacher, input_shape, **self.teacher_call).forward
