"""What the families' weight readers share: a recipe's initial weights (:class:`InitFrom`, the
one ``init_from`` every family registers) and the steps of building a model from a converted
state dict (:func:`own_config`, :func:`config_from_facts`, :func:`fill`, :func:`adapt_loaded`).

A family's ``weights`` module maps a foreign layout's keys and shapes to its own; these
functions do what is the same for every family around that map: the file read once
(:func:`flexiast.models.base.read_weights`), the family checked once, errors that name the
file, a model that holds exactly the file's tensors (or a named head left fresh), and the
move to the configuration a caller asked for.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..checkpoints import CheckpointError
from .base import FlexModel, WeightsFile, read_weights

__all__ = ["InitFrom", "own_config", "config_from_facts", "fill", "adapt_loaded"]

log = logging.getLogger(__name__)


def own_config(config_class: type, flexiast_config: dict | None):
    """The configuration a flexiast file of this family states (its ``model_config``)."""
    if not flexiast_config:
        raise CheckpointError("flexiast state dict without its model configuration")
    return config_class.from_dict(flexiast_config)


def config_from_facts(config_class: type, fields: dict, facts: dict, path, layout: str):
    """A configuration from the ``fields`` a file's shapes fix and, for what it does not say, the
    caller's ``facts`` (fields of ``config_class`` only; a fact the file contradicts is left to
    ``adapt``, which refuses it naming the field). Invalid values are named with the file."""
    known = {f for f in config_class.__dataclass_fields__}
    cfg = {**{k: v for k, v in facts.items() if k in known and k not in fields}, **fields}
    try:
        return config_class(**cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {layout} checkpoint: {e}") from None


def fill(model: FlexModel, sd: dict, path, layout: str, fresh: tuple[str, ...] = (), new_head: str = "") -> FlexModel:
    """``model`` with the tensors of ``sd``: every parameter and buffer must come from the file
    except those under the ``fresh`` prefixes, and the file may hold nothing else; otherwise a
    :class:`CheckpointError` names the file, its layout and the first differences. With
    ``new_head`` (the head in words), the head (:attr:`FlexModel.head_prefix`) is fresh too,
    with a warning that says so."""
    fresh = (*fresh, model.head_prefix) if new_head else fresh
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith(fresh)] if fresh else missing
    if missing or unexpected:
        raise CheckpointError(f"{path} ({layout}): missing tensors {missing[:5]}, unexpected {unexpected[:5]}")
    if new_head:
        warnings.warn(f"{path}: {new_head} initialised at random ({model.config.num_classes} classes)", stacklevel=5)
    return model


def adapt_loaded(model: FlexModel, overrides: dict, path, layout: str) -> FlexModel:
    """A loaded ``model`` moved to the ``overrides`` that differ from its configuration
    (:meth:`FlexModel.adapt`); a change the weights cannot take is refused naming the file."""
    rest = {k: v for k, v in overrides.items() if getattr(model.config, k, object()) != v}
    try:
        model = model.adapt(**rest)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    log.info("loaded %s checkpoint %s: %s", layout, path, model.config)
    return model


@dataclass(frozen=True)
class InitFrom:
    """A family's ``init_from(source, target, **hints)``: a recipe's ``init.path`` made into a
    model of the ``target`` configuration. ``source`` is a path or a :class:`WeightsFile`
    already read (the trainer reads the file once, before the data, and passes it).

    The steps, the same for every family:

    1. read the file once; refuse ``hints`` the family does not take (``hints``: an AST's
       ``kernel_resize`` and ``source_*``, which describe an AST file);
    2. refuse a file of another family, naming the file, both families and the layout (and
       ``refusal``, what the family starts from instead); with ``from_pretraining``, a
       pretraining family's file (an SSAST) is taken, and ``weights`` makes it a classifier;
       the families in ``accepts`` are taken too (a PaSST starts from DeiT, an AST-family file);
    3. ``weights(file, target, **hints)``, the family's hook: the model the file holds, its
       tensors moved to the target where the family can (a new head, another grid, a resized
       kernel); what the file fixes is the file's;
    4. compare the fields the weights fix (``fixed``) with the target's: a difference is
       refused with ``exact``, else warned about (the weights' shapes are used);
    5. move the model to the target's ``follows`` fields (:meth:`FlexModel.adapt`);
    6. refuse weights for another number of mel bins than the recipe's features give.
    """

    arch: str
    weights: Callable[..., Any]
    hints: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    follows: tuple[str, ...] = ()
    exact: bool = False
    from_pretraining: bool = False
    refusal: str = ""
    accepts: tuple[str, ...] = ()

    def __call__(self, source: str | Path | WeightsFile, target, **hints) -> FlexModel:
        file = source if isinstance(source, WeightsFile) else read_weights(source)
        path = file.path
        given = sorted(k for k, v in hints.items() if v is not None and k not in self.hints)
        if given:
            raise ValueError(f"init: {', '.join(given)} describe an AST file; weights of the {self.arch} family "
                             "need none")
        family = file.family
        if family.arch not in (self.arch, *self.accepts) and not (self.from_pretraining and not family.classifier):
            raise CheckpointError(f"init.path: {path}: holds a model of the {family.arch} family ({file.layout} "
                                  f"layout), where one of the {self.arch} family is expected{self.refusal}")
        model = self.weights(file, target, **{k: v for k, v in hints.items() if k in self.hints})
        got = model.config
        differ = [f"{k}={_shown(getattr(got, k))} (recipe: {_shown(getattr(target, k))})" for k in self.fixed
                  if getattr(got, k) != getattr(target, k)]
        if differ and self.exact:
            raise CheckpointError(f"init.path: {path} has {', '.join(differ)}; set the recipe's model section to "
                                  "match")
        if differ:
            warnings.warn(f"init.path: {path} sets {', '.join(differ)}; the weights' shapes are used", stacklevel=2)
        model = model.adapt(**{k: getattr(target, k) for k in self.follows if getattr(got, k) != getattr(target, k)})
        if model.config.input_fdim != target.input_fdim:
            raise CheckpointError(f"{path}: weights for input_fdim={model.config.input_fdim} mel bins, the recipe's "
                                  f"features give {target.input_fdim}")
        return model


def _shown(value):
    """A field as a recipe writes it: tuples as lists."""
    return list(value) if isinstance(value, tuple) else value
