"""The training configuration: a YAML recipe, dotted overrides, and validation before any data.

A recipe is a YAML mapping whose sections are dataclasses; ``phases`` is a list.
``load_config("recipe.yaml", ["train.lr=1e-4", "phases.0.epochs=3"])`` reads the file,
applies each ``key.path=value`` (values parsed as YAML, so ``[8,16]`` is a list), builds the
typed configuration and validates it. Every refusal is a :class:`ConfigError` that names the
key (``phases[1].patch.sizes``) and, where there is one, the file, so a wrong setting stops
the run before a clip is read:

* unknown keys and wrong types, and keys the recipe's model family does not take;
* impossible values: negative rates, a patch larger than the phase's (compressed) input,
  a compression that leaves no frames, sampler weights that do not match the sizes;
* missing files: the data root, the initial weights, the distillation teacher; an output
  directory that cannot be written.

The modules: ``sections`` (the shared sections and their checks), ``phases`` (phases,
optimizer, schedule), ``family_keys`` (sections a model family extends with keys only it
takes, declared in ``models/<family>/recipe.py``), ``typed`` (raw mappings to sections and
back), ``run`` (:class:`RunConfig`, its operating-point helpers, :func:`validate`) and
``loading`` (files and overrides). Semantics of the sections are in their docstrings and in
``docs/TRAINING.md``.
"""

from ..recipe_checks import ConfigError
from .loading import apply_overrides, build_config, config_to_dict, load_config
from .phases import OptimizerConfig, PhaseConfig, ScheduleConfig
from .run import RunConfig, validate
from .sections import (KFOLD_FORMATS, DataSection, FeaturesSection, InitSection, LossSection, ModelSection,
                       TrainSection, fold_paths)

__all__ = ["ConfigError", "RunConfig", "PhaseConfig", "OptimizerConfig", "ScheduleConfig", "ModelSection",
           "InitSection", "FeaturesSection", "DataSection", "LossSection", "TrainSection", "KFOLD_FORMATS",
           "load_config", "apply_overrides", "build_config", "config_to_dict", "validate", "fold_paths"]
