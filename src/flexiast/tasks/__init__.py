"""What a training step optimises, separate from the model that computes it.

A task turns a batch into a loss: :class:`Classification` (CE or BCE against the
labels) and :class:`Distillation` (the same mixed with a teacher's soft labels, FlexiAST
Sec. 3). The engine calls ``task.forward`` under the run's autocast and ``task.loss`` on
its outputs in float32, and ``task.validate`` on the validation split.
:class:`MaskedPatchPrediction` is SSAST's pretraining objective on unlabeled audio.
"""

from .classify import Classification, Distillation, Task
from .losses import distillation_loss, masked_patch_losses, supervised_loss
from .masked_patch import MaskedPatchPrediction

__all__ = ["Task", "Classification", "Distillation", "MaskedPatchPrediction", "supervised_loss", "distillation_loss",
           "masked_patch_losses"]
