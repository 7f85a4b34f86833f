"""How flexiast's modules may import each other, checked from the source without importing it.

Every module under ``src/flexiast`` is parsed with :mod:`ast`; every import of a flexiast
module counts, absolute or relative, at module level or inside a function (a lazy import
runs too, just later). Three rules:

* **No cycles.** Modules import each other as a directed acyclic graph; a cycle is
  reported as its path, ``a -> b -> a``. Imports inside one package count like any
  other: ``models/__init__`` imports ``models.ast``, whose ``weights`` imports
  ``models.base`` and ``models.loading``; that is not a cycle, because neither imports a
  family (the next rule), but ``models.base`` importing ``models.loading`` or
  ``models.registry`` (which import it) back would be.
* **Layers** (:data:`LAYERS`): a module imports from its own layer and the ones below.
  Modules of one layer may import each other (the ``models`` package is one layer: its
  families build on ``models.base`` and call ``models.registry``), acyclically. A
  module in no layer fails the test, so each new module is placed deliberately.
* **Family isolation.** A model family is a package under ``flexiast.models``. Outside
  ``flexiast.models`` (and the public ``flexiast/__init__``) no module imports one; they
  go through the registry, ``flexiast.models``. Inside, only ``models/__init__`` does (to
  register them): ``models.base`` and ``models.registry`` know no family. Families may
  build on one another. The engine, evaluation and deployment modules do not construct a
  family's model or configuration class (``AST(...)``, ``ASTConfig(...)``) either; names
  in docstrings and strings are fine.

The checker runs on a small package made in the test with one violation of each kind
(:func:`test_the_checker_reports_each_kind_of_violation`), so it cannot pass vacuously.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "flexiast"


@dataclass(frozen=True)
class Layer:
    holds: str
    modules: tuple[str, ...]


#: flexiast's layers, lowest first; a module imports from its own layer and those below.
#: An entry names a module or a package with everything under it, relative to
#: ``flexiast`` (``models`` is ``flexiast.models`` and ``flexiast.models.*``);
#: ``__init__`` is ``flexiast/__init__.py`` itself.
LAYERS: tuple[Layer, ...] = (
    Layer("every option set and shared constant: a leaf that imports nothing from flexiast",
          ("constants",)),
    Layer("foundations: caching, atomic writes and failpoints, hardware and processes, resizing "
          "(PI-resize, grids), the front ends (Kaldi fbank, Slaney log-mel), audio decoding, metrics, "
          "SSAST's masks, the recipe checks the model families' recipe keys share with config",
          ("_caching", "atomic", "faults", "hardware", "distributed", "resize", "fbank", "logmel", "audio",
           "metrics", "masking", "recipe_checks")),
    Layer("features with a kind (the front end as a model sees it) and safe checkpoint I/O",
          ("features", "checkpoints")),
    Layer("model families and their registry: build, load, save, adapt, count FLOPs",
          ("models",)),
    Layer("data (readers, datasets, augmentation, caches, samplers) and tasks (the objectives)",
          ("data", "tasks")),
    Layer("recipes: typed configuration checked before any data is read",
          ("config",)),
    Layer("evaluation: profiles over a model's operating points (and their files), compute accounting, reports",
          ("evaluate", "profiles", "accounting", "report")),
    Layer("the training engine: the trainer's loop, a phase's plan and runtime, the step's arithmetic, the task "
          "chosen, typed state, kept weights, logs, splits, optimizers, point sampler, run checkpoints, k-fold",
          ("engine",)),
    Layer("deployment (the deploy package: files, budgets, windows, events, predict, embed, batches of audio files, "
          "the HEAR API, profiling saved weights on data, export) and its older module names",
          ("deploy", "inference", "embeddings", "batch", "hear", "export")),
    Layer("entry points and the public API: the CLI, the demo, python -m flexiast, flexiast/__init__ "
          "(which may import anything)",
          ("cli", "demo", "__main__", "__init__")),
)

#: Modules that must not construct a family's classes: the engine, evaluation and deployment.
FAMILY_AGNOSTIC = ("engine", "evaluate", "profiles", "accounting", "report", "deploy", "inference", "embeddings",
                   "batch", "hear", "export", "cli", "demo")

@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


@dataclass(frozen=True)
class Violation:
    kind: str  # "cycle", "layer", "no layer", "family import", "family class"
    key: tuple[str, ...]  # what the violation is about: the modules (or module and class) involved
    message: str


def module_files(root: Path) -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package in ``root`` (a package's
    ``__init__.py`` is the package's name)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def collect_imports(root: Path) -> tuple[dict[str, list[Import]], dict[str, ast.Module]]:
    """Every import of a module of the package in ``root``, by importing module, and each
    module's syntax tree. ``from x import y`` imports the module ``x.y`` where there is one,
    else ``x``; relative imports resolve against the importing module's package."""
    files = module_files(root)
    package = root.name
    imports, trees = {}, {}
    for name, path in files.items():
        tree = trees[name] = ast.parse(path.read_text(), filename=str(path))
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = here.split(".")
                    if node.level > len(parts):
                        raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            found += [Import(name, t, node.lineno) for t in dict.fromkeys(targets)
                      if t == package or t.startswith(package + ".")]
        imports[name] = found
    return imports, trees


def within(module: str, entries: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``entries`` (names relative to the package, ``__init__``
    for the package itself) or under one of them."""
    relative = module.partition(".")[2] or "__init__"
    return any(relative == e or relative.startswith(e + ".") for e in entries)


def layer_of(module: str, layers: tuple[Layer, ...]) -> int | None:
    return next((number for number, layer in enumerate(layers) if within(module, layer.modules)), None)


def called_name(node: ast.Call) -> str | None:
    """``f`` of ``f(...)`` and of ``x.f(...)``."""
    return getattr(node.func, "id", getattr(node.func, "attr", None))


def find_cycles(imports: dict[str, list[Import]]) -> list[list[str]]:
    """One cycle, as a path ``[a, b, ..., a]``, through each strongly connected group of modules."""
    graph = {m: sorted({i.target for i in found if i.target in imports}) for m, found in imports.items()}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def connect(v):  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while v not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for group in groups:
        start = min(group)
        if len(group) == 1 and start not in graph[start]:
            continue
        previous, queue = {}, deque([start])  # shortest way back to start inside the group
        while queue:
            v = queue.popleft()
            if start in graph[v]:
                path = [v]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                cycles.append([*reversed(path), start])
                break
            for w in graph[v]:
                if w in group and w not in previous and w != start:
                    previous[w] = v
                    queue.append(w)
    return cycles


def family_classes(root: Path, trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    """``{family package: names of its model and config classes}``, read from the
    ``ModelFamily(..., config_class=X, model_class=Y)`` call that registers it. A package under
    ``models`` that registers no family (``models.points``, shared by all) is not one."""
    models = f"{root.name}.models"
    found = {}
    for name, tree in trees.items():
        if name.rpartition(".")[0] != models or not (root / "models" / name.rpartition(".")[2]).is_dir():
            continue
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and called_name(node) == "ModelFamily"]
        if calls:
            found[name] = {kw.value.id for node in calls for kw in node.keywords
                           if kw.arg in ("config_class", "model_class") and isinstance(kw.value, ast.Name)}
    return found


def check(root: Path, layers: tuple[Layer, ...] = LAYERS) -> list[Violation]:
    """Every violation of the three rules in the package in ``root``."""
    imports, trees = collect_imports(root)
    package, models = root.name, f"{root.name}.models"
    families = family_classes(root, trees)
    violations = [Violation("cycle", tuple(sorted(set(c))), "import cycle: " + " -> ".join(c))
                  for c in find_cycles(imports)]

    def in_family(module):
        return next((f for f in families if module == f or module.startswith(f + ".")), None)

    for module in sorted(imports):
        own = layer_of(module, layers)
        if own is None:
            violations.append(Violation("no layer", (module,), f"{module} is in no layer: add it to a layer"))
        for i in imports[module]:
            target_layer = layer_of(i.target, layers)
            if own is not None and target_layer is not None and target_layer > own:
                violations.append(Violation("layer", (module, i.target),
                                            f"{module} (layer {own}) imports {i.target} (layer {target_layer}) "
                                            f"at line {i.line}"))
            if in_family(i.target) and module not in (package, models) and not in_family(module):
                advice = (f"only {models} imports a family, to register it" if module.startswith(models + ".")
                          else f"use {models} (the registry)")
                violations.append(Violation("family import", (module, i.target),
                                            f"{module} imports the family {i.target} at line {i.line}: {advice}"))
    names = set().union(*families.values())
    for module in sorted(m for m in trees if within(m, FAMILY_AGNOSTIC)):
        for node in ast.walk(trees[module]):
            if isinstance(node, ast.Call) and called_name(node) in names:
                violations.append(Violation("family class", (module, called_name(node)),
                                            f"{module} calls {called_name(node)}(...) at line {node.lineno}: "
                                            f"build models with {models}.create_model or load_model"))
    return violations


@pytest.fixture(scope="module")
def violations() -> list[Violation]:
    return check(SRC)


@pytest.mark.parametrize("kind", ["cycle", "layer", "no layer", "family import", "family class"])
def test_no_violations(violations, kind):
    found = [v.message for v in violations if v.kind == kind]
    assert not found, "\n".join(found)


def test_the_real_tree_is_seen():
    """The checker finds flexiast's imports and the AST family's classes, so the rules bite."""
    imports, trees = collect_imports(SRC)
    assert "flexiast.models.ast" in {i.target for i in imports["flexiast.models"]}
    assert "flexiast.models.loading" in {i.target for i in imports["flexiast.models.ast.weights"]}
    assert family_classes(SRC, trees)["flexiast.models.ast"] == {"AST", "ASTConfig"}
    assert "flexiast.models.points" not in family_classes(SRC, trees)  # shared by every family, registers none


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_reports_each_kind_of_violation(tmp_path):
    root = _write(tmp_path / "pkg", {
        "__init__.py": "from .models import create\nfrom .models.fam import Net\n",
        "constants.py": "X = 1\n",
        "low.py": "from .constants import X\n\ndef later():\n    from . import high\n",
        "high.py": "import pkg.low\nfrom .models import fam\n",
        "models/__init__.py": "from .registry import create\nfrom . import fam\n",
        "models/registry.py": "def create():\n    from .fam.net import Net\n    return Net()\n",
        "models/fam/__init__.py": "from .net import Net, NetConfig\nFAMILY = ModelFamily(config_class=NetConfig, "
                                  "model_class=Net)\n",
        "models/fam/net.py": "from ...constants import X\nclass Net: ...\nclass NetConfig: ...\n",
        "engine/__init__.py": "from ..models.fam import Net\n",
        "engine/loop.py": '"""Net(...) in a docstring is fine."""\nfrom pkg.models import create\n'
                          "def run(cls):\n    return cls.Net(), 'NetConfig()'\n",
        "stray.py": "",
    })
    layers = (Layer("constants", ("constants",)), Layer("low", ("low",)), Layer("models", ("models",)),
              Layer("high", ("high",)), Layer("engine", ("engine",)), Layer("top", ("__init__",)))
    found = {(v.kind, v.key): v.message for v in check(root, layers)}
    assert found == {
        ("cycle", ("pkg.high", "pkg.low")): "import cycle: pkg.high -> pkg.low -> pkg.high",
        ("layer", ("pkg.low", "pkg.high")): "pkg.low (layer 1) imports pkg.high (layer 3) at line 4",
        ("no layer", ("pkg.stray",)): "pkg.stray is in no layer: add it to a layer",
        ("family import", ("pkg.high", "pkg.models.fam")):
            "pkg.high imports the family pkg.models.fam at line 2: use pkg.models (the registry)",
        ("family import", ("pkg.models.registry", "pkg.models.fam.net")):
            "pkg.models.registry imports the family pkg.models.fam.net at line 2: only pkg.models imports a family, "
            "to register it",
        ("family import", ("pkg.engine", "pkg.models.fam")):
            "pkg.engine imports the family pkg.models.fam at line 1: use pkg.models (the registry)",
        ("family class", ("pkg.engine.loop", "Net")):
            "pkg.engine.loop calls Net(...) at line 4: build models with pkg.models.create_model or load_model",
    }
