"""``flexiast.embeddings`` is :mod:`flexiast.deploy.embed` (clip and per-time-step embeddings), under the name the README,
the docs and existing code import.

The module itself is registered under both names, so ``flexiast.embeddings.X`` is
``flexiast.deploy.embed.X`` for every name, and patching one patches the other.
"""

import sys

from .deploy import embed as _module

sys.modules[__name__] = _module
