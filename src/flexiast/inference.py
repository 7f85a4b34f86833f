"""``flexiast.inference`` is the deployment package :mod:`flexiast.deploy` under the name the
README, the docs and existing code import: ``load_inference_model``, ``InferenceModel``, ...

The package is registered under both names, so ``flexiast.inference.X`` is ``flexiast.deploy.X``.
"""

import sys

from . import deploy as _module

sys.modules[__name__] = _module
