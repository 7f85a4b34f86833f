"""Model families, and how to build, load and save any of them.

``create_model(name_or_config, **overrides)``, ``load_model(path)``, ``read_weights(path)`` (a
file read once, which ``load_model`` and a family's ``init_from`` take), ``list_models()``,
``flops(model_or_config, input_shape, **call)``. Each family is a sub-package that
registers a :class:`ModelFamily` on import (:mod:`flexiast.models.ast`).
"""

from .base import FamilyError, FlexModel, ModelFamily, TokenEmbedding, families, get_family, register
from .registry import (WeightsFile, config_from_dict, create_config, create_model, family_of, flops, list_models,
                       load_model, read_weights)
from . import ast  # noqa: E402,F401  (registers the AST family)
from . import htsat  # noqa: E402,F401  (registers the HTS-AT family)
from . import cnn14  # noqa: E402,F401  (registers the CNN14 family)
from . import ssast  # noqa: E402,F401  (registers the SSAST family)
from . import passt  # noqa: E402,F401  (registers the PaSST family)

__all__ = ["FlexModel", "ModelFamily", "TokenEmbedding", "FamilyError", "create_model", "create_config", "load_model",
           "list_models", "flops", "config_from_dict", "family_of", "get_family", "families", "register", "read_weights",
           "WeightsFile"]
