"""What a training step optimises, separate from the model that computes it.

A task turns a batch into a loss: :class:`Classification` (CE or BCE against the
labels) and :class:`Distillation` (the same mixed with a teacher's soft labels, FlexiAST
Sec. 3). The engine calls ``task.forward`` under the run's autocast and ``task.loss`` on
its outputs in float32; a masked-patch objective (SSAST) or frame-level targets are
further tasks with the same two methods.
"""

from .classify import Classification, Distillation, Task
from .losses import distillation_loss, supervised_loss

__all__ = ["Task", "Classification", "Distillation", "supervised_loss", "distillation_loss"]
