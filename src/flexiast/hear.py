"""``flexiast.hear`` is :mod:`flexiast.deploy.hear` (the HEAR 2021 API), under the name the README,
the docs and existing code import.

The module itself is registered under both names, so ``flexiast.hear.X`` is
``flexiast.deploy.hear.X`` for every name, and patching one patches the other.
"""

import sys

from .deploy import hear as _module

sys.modules[__name__] = _module
