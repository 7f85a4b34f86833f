"""``flexiast.batch`` is :mod:`flexiast.deploy.batch` (many audio files through one model), under the name the README,
the docs and existing code import.

The module itself is registered under both names, so ``flexiast.batch.X`` is
``flexiast.deploy.batch.X`` for every name, and patching one patches the other.
"""

import sys

from .deploy import batch as _module

sys.modules[__name__] = _module
