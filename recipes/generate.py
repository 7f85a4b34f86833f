"""Write every recipe in ``recipes/`` from the papers' settings, one table per dataset.

    python recipes/generate.py            # rewrite the YAML files
    python recipes/generate.py --check    # exit 1 if a committed recipe differs from this table

The recipes are plain, self-contained YAML files (users read, copy and edit them); this
script exists so that 114 files share one source of truth for the constants they
have in common, and ``tests/test_recipes.py`` checks the files against it and runs two
steps of each.

Where the numbers come from:

* AST (Gong et al., 2021) and ``../shared/reference/anchors.md``: the front end, dataset
  statistics and lengths, Adam (betas 0.95/0.999, weight decay 5e-7), warm-up, LR decay,
  SpecAugment widths, mixup, balanced sampling and weight averaging per dataset.
* FlexiAST (Interspeech 2023) Sec. 3: non-overlapping patches, no mixup, no weight
  averaging; standard ASTs B/8, B/16, B/32 from ImageNet ViT weights (ESC-50 and Speech
  Commands from AudioSet-trained ASTs); FlexiAST initialised from AST-B/8 (B/16 for
  VoxCeleb), supervised or distilled with KL from that same AST; P = {8, ..., 48};
  VoxCeleb resizes the time axis only (16 x p).
* Coarse-to-fine (ICASSP 2024) Sec. 3.1-3.4: baselines for 5 epochs (AudioSet) or 20
  (VGGSound, VoxCeleb, Kinetics-Sounds; no mixup, no weight averaging); non-overlapping
  patches; the coarse phase 25% of the baseline's epochs (1 on AudioSet, 5 elsewhere), the
  3-phase 4->2->1 variant 30% (3 epochs) split over its two coarse phases; the optimizer
  and schedule restart in every phase.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
P = [8, 10, 12, 16, 20, 24, 30, 32, 40, 48]


def adam(lr: float) -> dict:
    """AST's optimiser: Adam, weight decay 5e-7, betas (0.95, 0.999)."""
    return {"name": "adam", "lr": lr, "weight_decay": 5.0e-7, "betas": [0.95, 0.999]}
METHODS = {  # name in file -> (compression template, transfer)
    "fshift": ("fshift:{c}", None),
    "avgpool": ("avgpool:{c}", None),
    "maxpool": ("maxpool:{c}", None),
    "patchbl": ("patch:{c}", "bl"),
    "patchpi": ("patch:{c}", "pi"),
}
METHOD_NAMES = {"fshift": "Fshift", "avgpool": "avg pool", "maxpool": "max pool", "patchbl": "Patch-BL",
                "patchpi": "Patch-PI"}
SCHEDULES = {"2-1": [2], "4-1": [4], "4-2-1": [4, 2]}


def _phase(name: str, epochs: int, sampler: dict, compression: str = "none", transfer: str | None = None) -> dict:
    phase = {"name": name, "epochs": epochs}
    if compression != "none":
        phase["compression"] = compression
    if transfer:
        phase["transfer"] = transfer
    phase["patch"] = sampler
    return phase


def fixed(p: int) -> dict:
    return {"sampler": "fixed", "sizes": [p]}


def flexible(axes: str = "both") -> dict:
    out = {"sampler": "uniform", "sizes": list(P)}
    if axes != "both":
        out["axes"] = axes
    return out


def c2f_phases(method: str, schedule: str, coarse_epochs: list[int], fine_epochs: int, p: int = 16) -> list[dict]:
    """Coarse phases at compression C (one per entry of ``SCHEDULES[schedule]``), then full resolution."""
    template, transfer = METHODS[method]
    phases = [_phase(f"coarse{c}", e, fixed(p), template.format(c=c), transfer)
              for c, e in zip(SCHEDULES[schedule], coarse_epochs)]
    return phases + [_phase("fine", fine_epochs, fixed(p))]


def recipe(name: str, *, model: dict, features: dict, data: dict, augment: dict, optimizer: dict, schedule: dict,
           train: dict, phases: list[dict], init: str | None = None, loss: dict | None = None) -> dict:
    out = {"name": name, "seed": 0, "out": "runs/{name}", "model": model}
    if init:
        out["init"] = {"path": init}
    out.update(features=features, data=data, augment=augment)
    if loss:
        out["loss"] = loss
    out.update(optimizer=optimizer, schedule=schedule, train=train, phases=phases)
    return copy.deepcopy(out)


# -- FSDD: the reproduction that runs on a 2-core CPU -----------------------------------
FSDD_MODEL = {"preset": None, "embed_dim": 128, "depth": 4, "num_heads": 4, "patch_size": 16}
FSDD_FEATURES = {"num_mel_bins": 128, "target_length": 64, "mean": -3.0856, "std": 5.309}
FSDD_EPOCHS = 24           # the baseline's length; it converges on this model (docs/RESULTS.md)
FSDD_COARSE = {"2-1": [6], "4-1": [6], "4-2-1": [4, 4]}   # 25% of 24; 4->2->1: about 30% over two phases
FSDD_LAYOUT = """\
# Data: ../shared/data/fsdd/recordings/{digit}_{speaker}_{take}.wav (Free Spoken Digit Dataset,
# 8 kHz, resampled to 16 kHz); takes 0-4 are test (300 clips), 10% of the rest (seeded) validation."""


def fsdd(name: str, task: str, phases: list[dict], eval_sizes: list[int], *, patch: int = 16,
         init: str | None = None, loss: dict | None = None, select="mean") -> dict:
    train = {"precision": "auto", "eval_patch_sizes": eval_sizes}
    if len(eval_sizes) > 1:
        train["select"] = select
    return recipe(
        name, model={**FSDD_MODEL, "patch_size": patch}, init=init, loss=loss, features=FSDD_FEATURES,
        data={"format": "fsdd", "root": "../shared/data/fsdd", "options": {"task": task}, "train": {"split": "train"},
              "test": {"split": "test"}, "val_fraction": 0.1, "batch_size": 32},
        augment={"freqm": 24, "timem": 12}, optimizer=adam(5.0e-4),
        schedule={"name": "cosine", "warmup_steps": 100}, train=train, phases=phases)


def fsdd_recipes() -> dict[str, tuple[str, dict]]:
    out = {}
    flexi_eval = [8, 16, 32, 48]
    for p in (8, 16, 32):
        out[f"fsdd/digits_ast{p}.yaml"] = (
            f"Standard AST at patch {p} on FSDD spoken digits (FlexiAST Table 1's AST-B/{p}), sized for a\n"
            f"# 2-core CPU: 128 wide, 4 blocks, 4 heads, 128 mel bins x 64 frames (0.64 s)."
            + ("\n# Also the coarse-to-fine baseline (the c2f recipes' reference for savings)." if p == 16 else ""),
            fsdd(f"fsdd-digits-ast{p}", "digits", [_phase("full", FSDD_EPOCHS, fixed(p))], [p], patch=p))
    ast8 = "runs/fsdd-digits-ast8/best.safetensors"
    out["fsdd/digits_flexiast.yaml"] = (
        "FlexiAST on FSDD digits as the paper trains it (Sec. 3): initialised from the standard AST-8\n"
        "# (run recipes/fsdd/digits_ast8.yaml first; its 8x8 kernel is PI-resized into the stored 16x16),\n"
        "# then a patch size drawn per step from P, supervised.",
        fsdd("fsdd-digits-flexiast", "digits", [_phase("flexible", FSDD_EPOCHS, flexible())], flexi_eval, init=ast8))
    out["fsdd/digits_flexiast_kd.yaml"] = (
        "FlexiAST on FSDD digits, distilled (FlexiAST Table 1, 'Knowledge Distillation'): initialised from\n"
        "# the standard AST-8 and trained with KL to it alone (kd_weight 1); the teacher runs at its patch 8.",
        fsdd("fsdd-digits-flexiast-kd", "digits", [_phase("flexible", FSDD_EPOCHS, flexible())], flexi_eval,
             init=ast8, loss={"teacher": ast8, "kd_weight": 1.0, "temperature": 1.0}))
    out["fsdd/digits_flexiast_scratch.yaml"] = (
        "FlexiAST on FSDD digits from random weights (the paper's Fig. 4b asks what initialisation buys).",
        fsdd("fsdd-digits-flexiast-scratch", "digits", [_phase("flexible", FSDD_EPOCHS, flexible())], flexi_eval))
    out["fsdd/speakers_ast16.yaml"] = (
        "Standard AST-16 for speaker identification on FSDD (6 speakers), the FlexiAST VoxCeleb setting's\n"
        "# initialisation (AST-B/16).",
        fsdd("fsdd-speakers-ast16", "speakers", [_phase("full", 16, fixed(16))], [16]))
    for axes, what in (("both", "both axes (p x p)"), ("time", "the time axis only (16 x p, the paper's VoxCeleb\n"
                                                             "# setting)"), ("freq", "the frequency axis only (p x 16)")):
        out[f"fsdd/speakers_flexiast_{axes}.yaml"] = (
            f"FlexiAST for FSDD speaker identification resizing {what}; FlexiAST Fig. 4a.\n"
            "# Initialised from recipes/fsdd/speakers_ast16.yaml's run; evaluate with --axes " + axes + ".",
            fsdd(f"fsdd-speakers-flexiast-{axes}", "speakers", [_phase("flexible", 16, flexible(axes))], flexi_eval,
                 init="runs/fsdd-speakers-ast16/best.safetensors"))
    for method in METHODS:
        for sched in SCHEDULES:
            coarse = FSDD_COARSE[sched]
            out[f"fsdd/digits_c2f_{method}_{sched}.yaml"] = (
                f"Coarse-to-fine on FSDD digits: {METHOD_NAMES[method]} {sched.replace('-', '->')} "
                f"({' + '.join(map(str, coarse))} coarse epochs, then {FSDD_EPOCHS} at full resolution).\n"
                "# Baseline: recipes/fsdd/digits_ast16.yaml. Savings (Tables 2/4):\n"
                f"#   flexiast savings runs/fsdd-digits-c2f-{method}-{sched} --baseline runs/fsdd-digits-ast16",
                fsdd(f"fsdd-digits-c2f-{method}-{sched}", "digits", c2f_phases(method, sched, coarse, FSDD_EPOCHS),
                     [16]))
    for key, (comment, body) in out.items():
        out[key] = (comment + "\n" + FSDD_LAYOUT, body)
    return out


# -- the papers' datasets ---------------------------------------------------------------
@dataclass
class Dataset:
    """One dataset's data section, features, augmentation, optimiser and schedule (AST's recipe)."""

    key: str
    title: str
    layout: str                    # the files the recipe expects under data.root
    data: dict
    features: dict
    augment: dict
    lr: float
    epochs: int
    batch_size: int
    schedule: dict
    init: str                      # what the standard ASTs start from (per patch size: {p})
    train: dict = field(default_factory=dict)
    loss: dict = field(default_factory=dict)


#: AST's balanced-AudioSet schedule, which the c2f paper's 20-epoch datasets adopt: x0.5 every 5 epochs from 10.
BALANCED_SCHEDULE = {"name": "multistep", "decay_from": 10, "decay_every": 5, "gamma": 0.5}


AUDIOSET = Dataset(
    "audioset", "AudioSet-2M (527 classes, multi-label, mAP)",
    "# Layout (AST's): ROOT/audioset_2m_train.json and ROOT/audioset_eval.json as\n"
    '#   {"data": [{"wav": "audio/xxxx.wav", "labels": "/m/09x0r,/m/05zppz"}, ...]} (paths relative to ROOT or\n'
    "#   absolute) and ROOT/class_labels_indices.csv (index,mid,display_name). 1% of the training clips\n"
    "#   (seeded) pick the best epoch; the eval set is the test split.",
    {"format": "ast_json", "root": "/data/audioset", "options": {"label_csv": "class_labels_indices.csv"},
     "train": {"datafile": "audioset_2m_train.json"}, "test": {"datafile": "audioset_eval.json"},
     "val_fraction": 0.01, "balanced": True, "num_workers": 8},
    {"dataset": "audioset"}, {"freqm": 48, "timem": 192}, 1e-5, 5, 12,
    {"name": "multistep", "warmup_steps": 1000, "decay_from": 2, "decay_every": 1, "gamma": 0.5},
    "weights/deit_base_distilled_patch16_384.pth", loss={"name": "bce"})
VGGSOUND = Dataset(
    "vggsound", "VGGSound (309 classes, accuracy)",
    "# Layout: ROOT/vggsound.csv with columns path,labels,split (split train or test; path relative to ROOT),\n"
    "#   one row per 10 s clip extracted from the official vggsound.csv. 5% of the training clips (seeded)\n"
    "#   pick the best epoch.",
    {"format": "csv", "root": "/data/vggsound", "options": {"csv_path": "vggsound.csv"}, "train": {"split": "train"},
     "test": {"split": "test"}, "val_fraction": 0.05, "num_workers": 8},
    {"dataset": "vggsound"}, {"freqm": 48, "timem": 192}, 5e-5, 20, 12, BALANCED_SCHEDULE,
    "weights/deit_base_distilled_patch16_384.pth", loss={"name": "ce"})
KINETICS = Dataset(
    "kinetics_sounds", "Kinetics-Sounds (32 classes, accuracy)",
    "# Layout: ROOT/kinetics_sounds.csv with columns path,labels,split (train or test; path relative to ROOT),\n"
    "#   the audio of each 10 s clip. AST has no statistics for it: replace mean/std with the output of\n"
    "#   flexiast stats --data csv:ROOT,csv_path=kinetics_sounds.csv,split=train",
    {"format": "csv", "root": "/data/kinetics_sounds", "options": {"csv_path": "kinetics_sounds.csv"},
     "train": {"split": "train"}, "test": {"split": "test"}, "val_fraction": 0.05, "num_workers": 8},
    {"target_length": 1024, "mean": -4.2677393, "std": 4.5689974}, {"freqm": 48, "timem": 192}, 5e-5, 20, 12,
    BALANCED_SCHEDULE, "weights/deit_base_distilled_patch16_384.pth", loss={"name": "ce"})
VOXCELEB = Dataset(
    "voxceleb", "VoxCeleb1 speaker identification (1251 speakers, accuracy)",
    "# Layout: ROOT/iden_split.txt ('<1|2|3> idXXXXX/video/00001.wav': 1 train, 2 validation, 3 test) and the\n"
    "#   audio under ROOT/wav/ (or ROOT/). Cut or padded to 1024 frames (10.24 s), as in the papers' AST pipeline.",
    {"format": "voxceleb1", "root": "/data/voxceleb1", "train": {"split": "train"}, "val": {"split": "validation"},
     "test": {"split": "test"}, "num_workers": 8},
    {"dataset": "voxceleb"}, {"freqm": 48, "timem": 192}, 5e-5, 20, 12, BALANCED_SCHEDULE,
    "weights/deit_base_distilled_patch16_384.pth", loss={"name": "ce"})
ESC50 = Dataset(
    "esc50", "ESC-50 (50 classes, 5-fold accuracy)",
    "# Layout (the ESC-50 repository): ROOT/meta/esc50.csv and ROOT/audio/*.wav (44.1 kHz, resampled to 16 kHz).\n"
    "#   Five runs: fold k tests, fold k+1 picks the epoch, the other three train; the mean over folds is\n"
    "#   reported (AST picks the epoch on the test fold, which is optimistic).",
    {"format": "esc50", "root": "/data/ESC-50", "kfold": 5},
    {"dataset": "esc50"}, {"freqm": 24, "timem": 96}, 1e-5, 25, 48,
    {"name": "multistep", "decay_from": 5, "decay_every": 1, "gamma": 0.85},
    "runs/audioset-ast-b{p}/best.safetensors", loss={"name": "ce"})
SPEECHCOMMANDS = Dataset(
    "speechcommands", "Speech Commands V2 (35 words, accuracy)",
    "# Layout (the release): ROOT/<word>/*.wav, ROOT/validation_list.txt, ROOT/testing_list.txt;\n"
    "#   _background_noise_ is not a class. 1 s clips, 128 frames.",
    {"format": "speechcommands", "root": "/data/speech_commands_v0.02", "train": {"split": "train"},
     "val": {"split": "validation"}, "test": {"split": "test"}, "num_workers": 8},
    {"dataset": "speechcommands"}, {"freqm": 48, "timem": 48, "noise": True}, 2.5e-4, 30, 128,
    {"name": "multistep", "decay_from": 5, "decay_every": 1, "gamma": 0.85},
    "runs/audioset-ast-b{p}/best.safetensors", loss={"name": "bce"})

FLEXIAST_DATASETS = [AUDIOSET, VGGSOUND, ESC50, SPEECHCOMMANDS, VOXCELEB]
C2F_DATASETS = [AUDIOSET, VGGSOUND, VOXCELEB, KINETICS]
EVAL_FLEXIBLE = [8, 16, 32, 48]   # validated every epoch; `flexiast evaluate` covers all of P afterwards


def paper(ds: Dataset, name: str, *, patch: int, phases: list[dict], eval_sizes: list[int], init: str | None,
          mixup: float = 0.0, weight_averaging: bool = False, loss: dict | None = None) -> dict:
    train = {"precision": "auto", "eval_patch_sizes": eval_sizes}
    if len(eval_sizes) > 1:
        train["select"] = "mean"
    if weight_averaging:
        train.update(weight_averaging=True, wa_start=1)
    augment = {**ds.augment, **({"mixup": mixup} if mixup else {})}
    schedule = {"name": "constant"} | ds.schedule
    return recipe(name, model={"preset": "base", "patch_size": patch, "stride": patch}, init=init,
                  loss={**ds.loss, **(loss or {})}, features={"num_mel_bins": 128, **ds.features},
                  data={**ds.data, "batch_size": ds.batch_size}, augment=augment,
                  optimizer=adam(ds.lr),
                  schedule=schedule, train=train, phases=phases)


def flexiast_recipes() -> dict[str, tuple[str, dict]]:
    """FlexiAST Table 1 / Fig. 3-4: standard AST-B/8, B/16, B/32 and FlexiAST (supervised, distilled)."""
    out = {}
    for ds in FLEXIAST_DATASETS:
        time_only = ds is VOXCELEB
        for p in (8, 16, 32):
            init = ds.init.format(p=p)
            out[f"{ds.key}/ast_b{p}.yaml"] = (
                f"Standard AST-B/{p} on {ds.title}: FlexiAST Table 1's baseline, evaluated afterwards at every\n"
                f"size with `flexiast evaluate runs/{ds.key}-ast-b{p} --resize pi` (and --resize bl).\n"
                f"Non-overlapping patches, no mixup, no weight averaging (FlexiAST Sec. 3); from {init}.\n" + ds.layout,
                paper(ds, f"{ds.key}-ast-b{p}", patch=p, init=init,
                      phases=[_phase("full", ds.epochs, fixed(p))], eval_sizes=[p]))
        source = 16 if time_only else 8
        fold = "fold{fold}/" if ds.data.get("kfold") else ""  # each fold from the same fold's AST
        teacher = f"runs/{ds.key}-ast-b{source}/{fold}best.safetensors"
        axes = "time" if time_only else "both"
        sizes = "16 x p, time axis only (FlexiAST Sec. 4, VoxCeleb)" if time_only else "p x p"
        for kd in (False, True):
            suffix = "_kd" if kd else ""
            out[f"{ds.key}/flexiast{suffix}.yaml"] = (
                f"FlexiAST on {ds.title}, {'distilled with KL from' if kd else 'supervised, initialised from'} "
                f"AST-B/{source}\n({'and initialised from it; ' if kd else ''}run recipes/{ds.key}/ast_b{source}.yaml "
                f"first). Patch size drawn per step from P, {sizes};\n"
                f"the stored 16x16 kernel is PI-resized. Then: flexiast evaluate runs/{ds.key}-flexiast{suffix.replace('_', '-')}"
                f"{' --axes time' if time_only else ''}\n" + ds.layout,
                paper(ds, f"{ds.key}-flexiast{suffix.replace('_', '-')}", patch=16, init=teacher,
                      phases=[_phase("flexible", ds.epochs, flexible(axes))], eval_sizes=EVAL_FLEXIBLE,
                      loss={"teacher": teacher, "kd_weight": 1.0, "temperature": 1.0} if kd else None))
    return out


def c2f_recipes() -> dict[str, tuple[str, dict]]:
    """Coarse-to-fine Tables 2-5: the AST-B/16 baseline and every method as 2->1, 4->1 and 4->2->1."""
    out = {}
    for ds in C2F_DATASETS:
        audioset = ds is AUDIOSET
        extras = {"mixup": 0.5, "weight_averaging": True} if audioset else {}
        init = ds.init.format(p=16)
        out[f"{ds.key}/c2f_baseline.yaml"] = (
            f"Coarse-to-fine baseline on {ds.title}: AST-B/16, non-overlapping patches, {ds.epochs} epochs\n"
            f"({'the official AST configuration: mixup and weight averaging' if audioset else 'no mixup, no weight averaging'}"
            ", c2f Sec. 3.1).\n" + ds.layout,
            paper(ds, f"{ds.key}-c2f-baseline", patch=16, init=init, phases=[_phase("full", ds.epochs, fixed(16))],
                  eval_sizes=[16], **extras))
        quarter = max(1, round(ds.epochs / 4))
        coarse = {"2-1": [quarter], "4-1": [quarter], "4-2-1": [max(1, round(0.3 * ds.epochs / 2))] * 2}
        for method in METHODS:
            for sched, epochs in coarse.items():
                name = f"{ds.key}-c2f-{method}-{sched}"
                out[f"{ds.key}/c2f_{method}_{sched}.yaml"] = (
                    f"Coarse-to-fine on {ds.title}: {METHOD_NAMES[method]} {sched.replace('-', '->')}, "
                    f"{' + '.join(map(str, epochs))} coarse epoch(s), then {ds.epochs} at full resolution;\n"
                    "optimizer and schedule restart each phase, positional embeddings resized bilinearly.\n"
                    f"Savings against recipes/{ds.key}/c2f_baseline.yaml: "
                    f"flexiast savings runs/{name} --baseline runs/{ds.key}-c2f-baseline\n" + ds.layout,
                    paper(ds, name, patch=16, init=init, phases=c2f_phases(method, sched, epochs, ds.epochs),
                          eval_sizes=[16], **extras))
    return out


def all_recipes() -> dict[str, tuple[str, dict]]:
    return {**fsdd_recipes(), **flexiast_recipes(), **c2f_recipes()}


def render(comment: str, body: dict, path: str) -> str:
    head = "\n".join(("# " + line if not line.startswith("#") else line) if line else "#"
                     for line in comment.splitlines())
    cmd = f"# flexiast train recipes/{path}"
    return f"{head}\n{cmd}\n" + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=100)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare the files with this table, write nothing")
    args = ap.parse_args(argv)
    stale = []
    for path, (comment, body) in all_recipes().items():
        text = render(comment, body, path)
        target = HERE / path
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if stale:
        print("out of date (run python recipes/generate.py):\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
