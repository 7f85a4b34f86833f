"""``flexiast.export`` is :mod:`flexiast.deploy.export` (ONNX, Hugging Face and torch.export at one operating point), under the name the README,
the docs and existing code import.

The module itself is registered under both names, so ``flexiast.export.X`` is
``flexiast.deploy.export.X`` for every name, and patching one patches the other.
"""

import sys

from .deploy import export as _module

sys.modules[__name__] = _module
