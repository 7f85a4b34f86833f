"""Write every recipe in ``recipes/`` from the papers' settings, one table per dataset.

    python recipes/generate.py            # rewrite the YAML files
    python recipes/generate.py --check    # exit 1 if a committed recipe differs from this table

The recipes are plain, self-contained YAML files (users read, copy and edit them); this
script exists so that the files share one source of truth for what they have in common:
each paper setting and each rule (the coarse phase's share of the epochs, where a dataset's
AST settings come from, its evaluation protocol) is stated once below, and a comment is
composed from its parts, never patched afterwards. ``tests/test_recipes.py`` checks the files
against it and runs two steps of each.

Where the numbers come from:

* AST (Gong et al., 2021) and ``../shared/reference/anchors.md``: the front end, dataset
  statistics and lengths, Adam (betas 0.95/0.999, weight decay 5e-7), warm-up, LR decay,
  SpecAugment widths, mixup, balanced sampling and weight averaging per dataset.
* FlexiAST (Interspeech 2023) Sec. 3: non-overlapping patches, no mixup, no weight
  averaging; standard ASTs B/8, B/16, B/32 from ImageNet ViT-B/8, B/16, B/32 at 224 with
  their own kernels and one [CLS] token, as the authors' code (JiuFengSC/FlexiAST_INTERSPEECH23,
  src/models/ast_models.py) builds them (ESC-50 and Speech Commands from AudioSet-trained
  ASTs); FlexiAST initialised from AST-B/8 (B/16 for VoxCeleb), supervised or distilled
  with KL from that same AST; P = {8, ..., 48}; VoxCeleb resizes the time axis only
  (16 x p). Fig. 4's ablations: VoxCeleb on both axes and on frequency only, VGGSound with
  bilinear resizing (BL) and from ImageNet ViT.
* Coarse-to-fine (ICASSP 2024) Sec. 3.1-3.4: baselines for 5 epochs (AudioSet) or 20
  (VGGSound, VoxCeleb, Kinetics-Sounds; no mixup, no weight averaging); non-overlapping
  patches; the coarse phase 25% of the baseline's epochs (1 on AudioSet, 5 elsewhere), the
  3-phase 4->2->1 variant 30% (3 epochs) split over its two coarse phases; the optimizer
  and schedule restart in every phase.
* HTS-AT (Chen et al., 2022), read from RetroCirce/HTS-Audio-Transformer (config.py,
  esc_config.py, sed_model.py, main.py, data_generator.py, model/htsat.py), and the
  coarse-to-fine paper's Sec. 3.2 and 3.5 for its Table 6: HTS-AT baselines of 25 epochs
  (AudioSet-2M, top-15 average) and 50 (VGGSound), Fshift 4->1 with a first phase of about
  25%; HTS-AT's ESC-50 fine-tuning; HTS-AT-micro on FSDD for a CPU.
* CNN14 (PANNs, Kong et al., 2020), read from qiuqiangkong/audioset_tagging_cnn (pytorch/main.py,
  pytorch/models.py, scripts/4_train.sh), Liu et al.'s Pool2 front end (ICASSP 2023), and the
  coarse-to-fine paper's Table 1: CNN14, CNN14 Pool2 and AST Pool2 on AudioSet-2M, and the five
  rows on FSDD with CNN14-micro.
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


def arrows(sched: str) -> str:
    """A schedule as the paper writes it: ``4-2-1`` is 4->2->1."""
    return "->".join(sched.split("-"))


def coarse_epochs(epochs: int) -> dict[str, list[int]]:
    """Each schedule's coarse epochs for a baseline of ``epochs`` (c2f Sec. 3.1-3.4): the coarse phase is
    25% of the baseline's epochs; 4->2->1 spends 30% over its two coarse phases; rounded half to even,
    at least one."""
    quarter = max(1, round(epochs / 4))
    return {"2-1": [quarter], "4-1": [quarter], "4-2-1": [max(1, round(0.3 * epochs / 2))] * 2}


def _phase(name: str, epochs: int, sampler: dict | None = None, compression: str = "none",
           transfer: str | None = None) -> dict:
    """A phase in epochs; ``sampler``: its patch sampler (only for a family whose calls take a patch size)."""
    phase = {"name": name, "epochs": epochs}
    if compression != "none":
        phase["compression"] = compression
    if transfer:
        phase["transfer"] = transfer
    if sampler is not None:
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
           train: dict, phases: list[dict], init: str | None = None, loss: dict | None = None,
           pretrain: dict | None = None) -> dict:
    out = {"name": name, "seed": 0, "out": "runs/{name}", "model": model}
    if init:
        out["init"] = {"path": init}
    out.update(features=features, data=data, augment=augment)
    if loss:
        out["loss"] = loss
    if pretrain:
        out["pretrain"] = pretrain
    out.update(optimizer=optimizer, schedule=schedule, train=train, phases=phases)
    return copy.deepcopy(out)


# -- FSDD: the reproduction that runs on a 2-core CPU -----------------------------------
FSDD_MODEL = {"preset": None, "embed_dim": 128, "depth": 4, "num_heads": 4, "patch_size": 16}
FSDD_FEATURES = {"num_mel_bins": 128, "target_length": 64, "mean": -3.0856, "std": 5.309}
FSDD_EPOCHS = 24           # the baseline's length; it converges on this model (docs/RESULTS.md)
FSDD_COARSE = coarse_epochs(FSDD_EPOCHS)   # 6 of 24; 4->2->1: 4 + 4


def fsdd_layout(khz: int = 16) -> str:
    """Where the FSDD recipes read their clips, resampled to the front end's ``khz``."""
    return ("# Data: ../shared/data/fsdd/recordings/{digit}_{speaker}_{take}.wav (Free Spoken Digit Dataset,\n"
            f"# 8 kHz, resampled to {khz} kHz); takes 0-4 are test (300 clips), 10% of the rest (seeded) validation.")


def fsdd_data(task: str) -> dict:
    """The FSDD recipes' data section: the reader's own test split, 10% of the rest validates."""
    return {"format": "fsdd", "root": "../shared/data/fsdd", "options": {"task": task}, "train": {"split": "train"},
            "test": {"split": "test"}, "val_fraction": 0.1, "batch_size": 32}


def ast_train(eval_sizes: list[int], *, select="mean", eval_resize: str | None = None) -> dict:
    """An AST recipe's train section: its validation sizes, selecting on ``select`` where there are several."""
    train = {"precision": "auto", "eval_patch_sizes": eval_sizes}
    if eval_resize:
        train["eval_resize"] = eval_resize
    if len(eval_sizes) > 1:
        train["select"] = select
    return train


def fsdd(name: str, task: str, phases: list[dict], eval_sizes: list[int], *, patch: int = 16,
         init: str | None = None, loss: dict | None = None, select="mean", model: dict | None = None,
         test_every_epoch: bool = False) -> dict:
    """An FSDD AST recipe. ``test_every_epoch`` records the test split after every epoch, which
    coarse-to-fine Table 2's reading needs (``flexiast savings --reading paper``): the AST-16
    baseline, the coarse-to-fine runs and Table 1's Pool2 rows set it."""
    train = ast_train(eval_sizes, select=select)
    if test_every_epoch:
        train["test_every_epoch"] = True
    return recipe(
        name, model={**FSDD_MODEL, "patch_size": patch, **(model or {})}, init=init, loss=loss, features=FSDD_FEATURES,
        data=fsdd_data(task), augment={"freqm": 24, "timem": 12}, optimizer=adam(5.0e-4),
        schedule={"name": "cosine", "warmup_steps": 100}, train=train, phases=phases)


def fsdd_recipes() -> dict[str, tuple[str, dict]]:
    out = {}
    flexi_eval = [8, 16, 32, 48]
    for p in (8, 16, 32):
        out[f"fsdd/digits_ast{p}.yaml"] = (
            f"Standard AST at patch {p} on FSDD spoken digits (FlexiAST Table 1's AST-B/{p}), sized for a\n"
            f"# 2-core CPU: 128 wide, 4 blocks, 4 heads, 128 mel bins x 64 frames (0.64 s)."
            + ("\n# Also the coarse-to-fine baseline (the c2f recipes' reference for savings)." if p == 16 else ""),
            fsdd(f"fsdd-digits-ast{p}", "digits", [_phase("full", FSDD_EPOCHS, fixed(p))], [p], patch=p,
                 test_every_epoch=p == 16))
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
    out["fsdd/digits_flexiast_pad.yaml"] = (
        "digits_flexiast.yaml with partial last patches zero-padded (model.partial_patches: pad): the ceil\n"
        "# grid of FlexiAST Sec. 2.2 instead of the authors' floor, which at patch 48 never sees the top 32\n"
        "# of 128 mel bins nor the last 16 of 64 frames. AST-8 tiles 128 x 64 exactly, so both start from\n"
        "# the same run (docs/RESULTS.md compares the two at every patch size).",
        fsdd("fsdd-digits-flexiast-pad", "digits", [_phase("flexible", FSDD_EPOCHS, flexible())], flexi_eval,
             init=ast8, model={"partial_patches": "pad"}))
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
                f"Coarse-to-fine on FSDD digits: {METHOD_NAMES[method]} {arrows(sched)} "
                f"({' + '.join(map(str, coarse))} coarse epochs, then {FSDD_EPOCHS} at full resolution).\n"
                "# Baseline: recipes/fsdd/digits_ast16.yaml. Savings (Tables 2/4):\n"
                f"#   flexiast savings runs/fsdd-digits-c2f-{method}-{sched} --baseline runs/fsdd-digits-ast16",
                fsdd(f"fsdd-digits-c2f-{method}-{sched}", "digits", c2f_phases(method, sched, coarse, FSDD_EPOCHS),
                     [16], test_every_epoch=True))
    return {key: (comment + "\n" + fsdd_layout(), body) for key, (comment, body) in out.items()}


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
    loss: dict = field(default_factory=dict)
    sources: str = ""              # where the AST recipes' optimiser, schedule, batch, augmentation come from
    protocol: dict = field(default_factory=dict)   # data keys of the FlexiAST paper's evaluation protocol
    protocol_layout: str = ""      # the layout paragraph under that protocol

    def ast_comment(self, head: str, layout: str | None = None) -> str:
        """An AST recipe's comment on this dataset: ``head``, where its settings come from, the layout."""
        return head + self.sources + "\n" + (layout or self.layout)


#: AST's full-AudioSet schedule (YuanGongND/ast egs/audioset/run.sh: warmup=True, i.e. 1000 steps,
#: lrscheduler_start=2, lrscheduler_step=1, lrscheduler_decay=0.5): x0.5 per epoch from epoch 2.
AUDIOSET_SCHEDULE = {"name": "multistep", "warmup_steps": 1000, "decay_from": 2, "decay_every": 1, "gamma": 0.5}
#: Where VGGSound, VoxCeleb and Kinetics-Sounds take AudioSet's optimiser and schedule from.
AUDIOSET_SETUP = (
    "# Settings: AST's full-AudioSet setup (YuanGongND/ast egs/audioset/run.sh: Adam 1e-5, 1000-step warm-up,\n"
    "#   x0.5 per epoch from epoch 2, batch 12, SpecAugment 48/192), which c2f Sec. 3.2 says VGGSound, VoxCeleb\n"
    "#   and Kinetics-Sounds adopt (20 epochs, no mixup, no weight averaging); {script}.")


AUDIOSET = Dataset(
    "audioset", "AudioSet-2M (527 classes, multi-label, mAP)",
    "# Layout (AST's): ROOT/audioset_2m_train.json and ROOT/audioset_eval.json as\n"
    '#   {"data": [{"wav": "audio/xxxx.wav", "labels": "/m/09x0r,/m/05zppz"}, ...]} (paths relative to ROOT or\n'
    "#   absolute) and ROOT/class_labels_indices.csv (index,mid,display_name). 1% of the training clips\n"
    "#   (seeded) pick the best epoch; the eval set is the test split.",
    {"format": "ast_json", "root": "/data/audioset", "options": {"label_csv": "class_labels_indices.csv"},
     "train": {"datafile": "audioset_2m_train.json"}, "test": {"datafile": "audioset_eval.json"},
     "val_fraction": 0.01, "balanced": True, "num_workers": 8},
    {"dataset": "audioset"}, {"freqm": 48, "timem": 192}, 1e-5, 5, 12, AUDIOSET_SCHEDULE,
    "weights/deit_base_distilled_patch16_384.pth", loss={"name": "bce"},
    sources="# Settings: AST's egs/audioset/run.sh (full set): Adam 1e-5 (betas 0.95/0.999, wd 5e-7:\n"
    "#   src/traintest.py), 1000-step warm-up, x0.5 per epoch from epoch 2, batch 12, SpecAugment 48/192,\n"
    "#   BCE, balanced sampling; 5 epochs (c2f Sec. 3.2). Mixup 0.5 and weight averaging (run.sh) only in\n"
    "#   the c2f recipes: FlexiAST Sec. 3.2 leaves them out.")
VGGSOUND = Dataset(
    "vggsound", "VGGSound (309 classes, accuracy)",
    "# Layout: ROOT/vggsound.csv with columns path,labels,split (split train or test; path relative to ROOT),\n"
    "#   one row per 10 s clip extracted from the official vggsound.csv. 5% of the training clips (seeded)\n"
    "#   pick the best epoch.",
    {"format": "csv", "root": "/data/vggsound", "options": {"csv_path": "vggsound.csv"}, "train": {"split": "train"},
     "test": {"split": "test"}, "val_fraction": 0.05, "num_workers": 8},
    {"dataset": "vggsound"}, {"freqm": 48, "timem": 192}, 1e-5, 20, 12, AUDIOSET_SCHEDULE,
    "weights/deit_base_distilled_patch16_384.pth", loss={"name": "bce"},
    sources=AUDIOSET_SETUP.format(
        script="JiuFengSC/FlexiAST_INTERSPEECH23 egs/vggsound/run{8,16,32}.sh sets the same, with BCE"))
KINETICS = Dataset(
    "kinetics_sounds", "Kinetics-Sounds (32 classes, accuracy)",
    "# Layout: ROOT/kinetics_sounds.csv with columns path,labels,split (train or test; path relative to ROOT),\n"
    "#   the audio of each 10 s clip. AST has no statistics for it: replace mean/std with the output of\n"
    "#   flexiast stats --data csv:ROOT,csv_path=kinetics_sounds.csv,split=train",
    {"format": "csv", "root": "/data/kinetics_sounds", "options": {"csv_path": "kinetics_sounds.csv"},
     "train": {"split": "train"}, "test": {"split": "test"}, "val_fraction": 0.05, "num_workers": 8},
    {"target_length": 1024, "mean": -4.2677393, "std": 4.5689974}, {"freqm": 48, "timem": 192}, 1e-5, 20, 12,
    AUDIOSET_SCHEDULE, "weights/deit_base_distilled_patch16_384.pth", loss={"name": "bce"},
    sources=AUDIOSET_SETUP.format(script="BCE as AudioSet's (the authors published no Kinetics-Sounds script)"))
VOXCELEB = Dataset(
    "voxceleb", "VoxCeleb1 speaker identification (1251 speakers, accuracy)",
    "# Layout: ROOT/iden_split.txt ('<1|2|3> idXXXXX/video/00001.wav': 1 train, 2 validation, 3 test) and the\n"
    "#   audio under ROOT/wav/ (or ROOT/). Cut or padded to 1024 frames (10.24 s), as in the papers' AST pipeline.",
    {"format": "voxceleb1", "root": "/data/voxceleb1", "train": {"split": "train"}, "val": {"split": "validation"},
     "test": {"split": "test"}, "num_workers": 8},
    {"dataset": "voxceleb"}, {"freqm": 48, "timem": 192}, 1e-5, 20, 12, AUDIOSET_SCHEDULE,
    "weights/deit_base_distilled_patch16_384.pth", loss={"name": "ce"},
    sources=AUDIOSET_SETUP.format(
        script="JiuFengSC/FlexiAST_INTERSPEECH23 egs/voxceleb/vox_sup_from{8,16}.sh sets the same,\n#   with CE"))
#: ESC-50 as the FlexiAST (Sec. 3.2: AST's settings otherwise) and AST papers report it: AST's
#: egs/esc50/run_esc.sh trains fold k on the other four folds and validates on fold k's own eval file
#: (--data-val), the epoch picked there.
ESC50_AST_PROTOCOL = {"kfold_protocol": "ast"}
ESC50_AST_LAYOUT = (
    "# Layout (the ESC-50 repository): ROOT/meta/esc50.csv and ROOT/audio/*.wav (44.1 kHz, resampled to 16 kHz).\n"
    "#   AST's protocol (data.kfold_protocol: ast), as AST's egs/esc50/run_esc.sh runs it and FlexiAST keeps\n"
    "#   it (Sec. 3.2: 'the rest of the default settings of AST are adapted identically'): five runs, fold k\n"
    "#   trains on the other four folds and tests on fold k, which also picks the epoch (AST's traintest.py\n"
    "#   validates on it every epoch), so the numbers are optimistic; the mean over folds is reported.\n"
    "#   data.kfold_protocol=held_out picks the epoch on fold k+1 instead (training on three folds).\n"
    "#   Fold-averaged profile at every patch size (FlexiAST Table 1's ESC-50 row): flexiast evaluate RUN_DIR")


def esc50_layout(khz: int = 16) -> str:
    """The ESC-50 layout under the held-out protocol, resampled to the front end's ``khz``."""
    return (f"# Layout (the ESC-50 repository): ROOT/meta/esc50.csv and ROOT/audio/*.wav (44.1 kHz, resampled to {khz} kHz).\n"
            "#   Five runs: fold k tests, fold k+1 picks the epoch, the other three train; the mean over folds is\n"
            "#   reported (AST picks the epoch on the test fold, which is optimistic).")


ESC50 = Dataset(
    "esc50", "ESC-50 (50 classes, 5-fold accuracy)", esc50_layout(),
    {"format": "esc50", "root": "/data/ESC-50", "kfold": 5},
    {"dataset": "esc50"}, {"freqm": 24, "timem": 96}, 1e-5, 25, 48,
    {"name": "multistep", "decay_from": 5, "decay_every": 1, "gamma": 0.85},
    "runs/audioset-ast-b{p}/best.safetensors", loss={"name": "ce"},
    sources="# Settings: AST's egs/esc50/run_esc.sh: Adam 1e-5, x0.85 per epoch from epoch 5, batch 48, 25 epochs,\n"
    "#   SpecAugment 24/96, CE, 512 frames (5 s); mixup 0 as there.",
    protocol=ESC50_AST_PROTOCOL, protocol_layout=ESC50_AST_LAYOUT)
SPEECHCOMMANDS = Dataset(
    "speechcommands", "Speech Commands V2 (35 words, accuracy)",
    "# Layout (the release): ROOT/<word>/*.wav, ROOT/validation_list.txt, ROOT/testing_list.txt;\n"
    "#   _background_noise_ is not a class. 1 s clips, 128 frames.",
    {"format": "speechcommands", "root": "/data/speech_commands_v0.02", "train": {"split": "train"},
     "val": {"split": "validation"}, "test": {"split": "test"}, "num_workers": 8},
    {"dataset": "speechcommands"}, {"freqm": 48, "timem": 48, "noise": True}, 2.5e-4, 30, 128,
    {"name": "multistep", "decay_from": 5, "decay_every": 1, "gamma": 0.85},
    "runs/audioset-ast-b{p}/best.safetensors", loss={"name": "bce"},
    sources="# Settings: AST's egs/speechcommands/run_sc.sh: Adam 2.5e-4, x0.85 per epoch from epoch 5, batch 128,\n"
    "#   30 epochs, SpecAugment 48/48 with noise, BCE, 128 frames; its mixup 0.6 left out (FlexiAST Sec. 3.2).")

FLEXIAST_DATASETS = [AUDIOSET, VGGSOUND, ESC50, SPEECHCOMMANDS, VOXCELEB]
C2F_DATASETS = [AUDIOSET, VGGSOUND, VOXCELEB, KINETICS]
EVAL_FLEXIBLE = [8, 16, 32, 48]   # validated every epoch; `flexiast evaluate` covers all of P afterwards


def paper(ds: Dataset, name: str, *, patch: int, phases: list[dict], eval_sizes: list[int], init: str | None,
          mixup: float = 0.0, weight_averaging: bool = False, loss: dict | None = None,
          prefix_tokens: int | None = None, eval_resize: str | None = None, data: dict | None = None,
          test_every_epoch: bool = False) -> dict:
    train = ast_train(eval_sizes, eval_resize=eval_resize)
    if weight_averaging:
        train.update(weight_averaging=True, wa_start=1)
    if test_every_epoch:
        train["test_every_epoch"] = True
    augment = {**ds.augment, **({"mixup": mixup} if mixup else {})}
    schedule = {"name": "constant"} | ds.schedule
    model = {"preset": "base", "patch_size": patch, "stride": patch}
    if prefix_tokens is not None:
        model["prefix_tokens"] = prefix_tokens
    return recipe(name, model=model, init=init,
                  loss={**ds.loss, **(loss or {})}, features={"num_mel_bins": 128, **ds.features},
                  data={**ds.data, "batch_size": ds.batch_size, **(data or {})}, augment=augment,
                  optimizer=adam(ds.lr),
                  schedule=schedule, train=train, phases=phases)


#: FlexiAST Sec. 3.2: the standard ASTs are "initialized with ViT". The authors' code
#: (JiuFengSC/FlexiAST_INTERSPEECH23, src/models/ast_models.py, model_type "224" as every
#: egs/*/run{8,16,32}.sh and the voxceleb teachers' t_model_type use) builds AST-B/p from
#: timm.create_model('vit_base_patch{p}_224', pretrained=True): ImageNet ViT-B/p at 224 with its
#: own p x p kernel and one [CLS] token (pos_embed[:, 1:] is the 224/p square grid). timm's
#: weights for those names (its first tag for each, the one pretrained=True takes):
VIT_WEIGHTS = {8: "vit_base_patch8_224.augreg2_in21k_ft_in1k", 16: "vit_base_patch16_224.augreg2_in21k_ft_in1k",
               32: "vit_base_patch32_224.augreg_in21k_ft_in1k"}
#: One [CLS] token: ViT-224's, which the FlexiASTs initialised from these ASTs inherit
#: (flexi_ast.py: FlexiPosEmbed n_prefix_tokens=1 unless model_type is "origin", DeiT-384).
VIT_PREFIX_TOKENS = 1


def vit_weights(p: int) -> str:
    """The ImageNet ViT-B/p file the FlexiAST recipes' standard ASTs start from (timm's safetensors)."""
    return f"weights/{VIT_WEIGHTS[p]}.safetensors"


def flexiast_ast_init(ds: Dataset, p: int) -> tuple[str, str]:
    """``(path, where it comes from)`` for a FlexiAST recipe's AST-B/p: ImageNet ViT-B/p, or for
    ESC-50 and Speech Commands the AudioSet AST-B/p (FlexiAST Sec. 3.2)."""
    if ds.init.startswith("runs/"):
        return ds.init.format(p=p), (f"From the AudioSet AST-B/{p} (FlexiAST Sec. 3.2: ESC-50 and Speech Commands ASTs "
                                     "are initialised from\nAudioSet-trained ones), keeping its one [CLS] token")
    return vit_weights(p), (f"Initialised with ImageNet ViT-B/{p} at 224 (FlexiAST Sec. 3.2; the authors'\n"
                            f"src/models/ast_models.py builds it with timm's vit_base_patch{p}_224, model_type 224):\n"
                            f"timm's {VIT_WEIGHTS[p]}, its native {p}x{p} kernel (RGB summed) and one [CLS] token")


def flexiast_recipes() -> dict[str, tuple[str, dict]]:
    """FlexiAST Table 1 / Fig. 3-4: standard AST-B/8, B/16, B/32 and FlexiAST (supervised, distilled)."""
    out = {}
    for ds in FLEXIAST_DATASETS:
        time_only = ds is VOXCELEB
        layout = ds.protocol_layout or ds.layout  # the paper's ESC-50 protocol is AST's
        for p in (8, 16, 32):
            init, source = flexiast_ast_init(ds, p)
            out[f"{ds.key}/ast_b{p}.yaml"] = (ds.ast_comment(
                f"Standard AST-B/{p} on {ds.title}: FlexiAST Table 1's baseline, evaluated afterwards at every\n"
                f"size with `flexiast evaluate runs/{ds.key}-ast-b{p} --resize pi` (and --resize bl).\n"
                "Non-overlapping patches, no mixup, no weight averaging (FlexiAST Sec. 3).\n"
                f"{source} (prefix_tokens: 1):\n{init}\n", layout),
                paper(ds, f"{ds.key}-ast-b{p}", patch=p, init=init, prefix_tokens=VIT_PREFIX_TOKENS,
                      phases=[_phase("full", ds.epochs, fixed(p))], eval_sizes=[p], data=ds.protocol))
        source = 16 if time_only else 8
        fold = "fold{fold}/" if ds.data.get("kfold") else ""  # each fold from the same fold's AST
        teacher = f"runs/{ds.key}-ast-b{source}/{fold}best.safetensors"
        axes = "time" if time_only else "both"
        sizes = "16 x p, time axis only (FlexiAST Sec. 3.3, VoxCeleb)" if time_only else "p x p"
        for kd, suffix, run in ((False, "", ""), (True, "_kd", "-kd")):
            out[f"{ds.key}/flexiast{suffix}.yaml"] = (ds.ast_comment(
                f"FlexiAST on {ds.title}, {'distilled with KL from' if kd else 'supervised, initialised from'} "
                f"AST-B/{source}\n({'and initialised from it; ' if kd else ''}run recipes/{ds.key}/ast_b{source}.yaml "
                f"first). Patch size drawn per step from P, {sizes};\n"
                f"the stored 16x16 kernel is PI-resized; one [CLS] token, AST-B/{source}'s (prefix_tokens: 1).\n"
                f"Then: flexiast evaluate runs/{ds.key}-flexiast{run}"
                f"{' --axes time' if time_only else ''}\n", layout),
                paper(ds, f"{ds.key}-flexiast{run}", patch=16, init=teacher,
                      prefix_tokens=VIT_PREFIX_TOKENS,
                      phases=[_phase("flexible", ds.epochs, flexible(axes))], eval_sizes=EVAL_FLEXIBLE,
                      loss={"teacher": teacher, "kd_weight": 1.0, "temperature": 1.0} if kd else None,
                      data=ds.protocol))
    out.update(flexiast_ablation_recipes())
    return out


def flexiast_ablation_recipes() -> dict[str, tuple[str, dict]]:
    """FlexiAST Fig. 4: (a) VoxCeleb FlexiASTs resizing both axes or frequency only, next to the
    time-only voxceleb/flexiast.yaml; (b) VGGSound FlexiASTs with bilinear resizing (BL) and
    initialised from ImageNet ViT instead of AST-B/8."""
    out = {}
    vox_init = "runs/voxceleb-ast-b16/best.safetensors"
    for axes, what, flag in (("both", "both axes (p x p)", "neither --only_time nor --only_freq"),
                             ("freq", "the frequency axis only (p x 16)", "--only_freq True: patch sizes (p, 16)")):
        out[f"voxceleb/flexiast_{axes}.yaml"] = (VOXCELEB.ast_comment(
            f"FlexiAST on {VOXCELEB.title} resizing\n{what}: FlexiAST Fig. 4a, the ablation against"
            " voxceleb/flexiast.yaml's time axis only\n(Sec. 3.3: resizing the frequency axis harms speaker"
            f" identification). The authors' src/run.py:\n{flag} (egs/voxceleb/vox_sup_from16.sh sets"
            " --only_time True).\nSupervised, initialised from AST-B/16 (run recipes/voxceleb/ast_b16.yaml first),"
            " its kernel\nPI-resized into the stored 16x16, one [CLS] token; patch size drawn per step from P.\n"
            f"Then: flexiast evaluate runs/voxceleb-flexiast-{axes} --axes {axes}\n"),
            paper(VOXCELEB, f"voxceleb-flexiast-{axes}", patch=16, init=vox_init, prefix_tokens=VIT_PREFIX_TOKENS,
                  phases=[_phase("flexible", VOXCELEB.epochs, flexible(axes))], eval_sizes=EVAL_FLEXIBLE))
    ast8 = "runs/vggsound-ast-b8/best.safetensors"
    out["vggsound/flexiast_bl.yaml"] = (VGGSOUND.ast_comment(
        f"FlexiAST on {VGGSOUND.title} with bilinear resizing (BL) instead of PI-resize: FlexiAST\n"
        "Sec. 3.4 item 2, Fig. 4b ('bilinear interpolation (BL) fails to provide the desired flexibility').\n"
        "As vggsound/flexiast.yaml, supervised from AST-B/8 (run recipes/vggsound/ast_b8.yaml first), except\n"
        "the kernel: the authors' src/run.py --resize_methods BL gives FlexiPatchEmbed\n"
        "vanilla_resample_patch_embed (F.interpolate, bilinear, antialiased; src/utilities/resizing_helper.py),\n"
        "which moves AST-B/8's 8x8 kernel into the stored 16x16 (transfer: bl) and resizes the stored kernel\n"
        "at every step (patch.resize: bl); validation resizes it the same way (train.eval_resize: bl).\n"
        "Then: flexiast evaluate runs/vggsound-flexiast-bl --resize bl\n"),
        paper(VGGSOUND, "vggsound-flexiast-bl", patch=16, init=ast8, prefix_tokens=VIT_PREFIX_TOKENS,
              phases=[_phase("flexible", VGGSOUND.epochs, {**flexible(), "resize": "bl"}, transfer="bl")],
              eval_sizes=EVAL_FLEXIBLE, eval_resize="bl"))
    vit16 = vit_weights(16)
    out["vggsound/flexiast_vit.yaml"] = (VGGSOUND.ast_comment(
        f"FlexiAST on {VGGSOUND.title} initialised from ImageNet ViT instead of AST-B/8: FlexiAST\n"
        "Sec. 3.4 item 4, Fig. 4b ('even with the ViT initialization, our proposed method can still flexify').\n"
        "The authors' src/models/flexi_ast.py load_from_imagenet_pretrain: the ViT's kernel summed over RGB,\n"
        "its grid cut or interpolated per axis as AST does, one [CLS] token; its example builds it from\n"
        "vit_base_patch16_224, whose 16x16 kernel is the stored one (nothing resized):\n"
        f"timm's {VIT_WEIGHTS[16]}.\n"
        "Otherwise as vggsound/flexiast.yaml: supervised, PI-resize, patch size drawn per step from P.\n"
        "Then: flexiast evaluate runs/vggsound-flexiast-vit\n"),
        paper(VGGSOUND, "vggsound-flexiast-vit", patch=16, init=vit16, prefix_tokens=VIT_PREFIX_TOKENS,
              phases=[_phase("flexible", VGGSOUND.epochs, flexible())], eval_sizes=EVAL_FLEXIBLE))
    return out


#: Table 2's reading decides on the per-epoch test metric (c2f Sec. 3.3), so the c2f runs record it.
C2F_TEST_EVERY_EPOCH = {"test_every_epoch": True}
C2F_READINGS = (
    "Both readings of Table 2 (c2f Sec. 3.3: the first fine epoch that surpasses the baseline's best): the\n"
    "validation-decided one and the paper's, on the test metric recorded every epoch (train.test_every_epoch).")
#: AudioSet's Table 2 row is a fixed budget: 1 coarse + 3 fine epochs against the 5-epoch baseline
#: (35.32% of FLOPs saved for Fshift 4->1 is 1 - (c + 3) / 5, c the coarse epoch's relative cost).
AUDIOSET_FINE_EPOCHS = 3


def audioset_budget(name: str) -> str:
    """The note on AudioSet's 2-phase Table 2 rows: a fixed budget, and the savings command for it."""
    return ("Table 2's AudioSet row is a fixed budget (c2f Sec. 3.2-3.3): 1 coarse and 3 fine epochs against the\n"
            "5-epoch baseline's whole run (its weight average over all 5 epochs is AST's result), with a small mAP\n"
            f"drop: flexiast savings runs/{name} --baseline runs/audioset-c2f-baseline "
            f"--fine-epochs {AUDIOSET_FINE_EPOCHS}\n"
            "(per-epoch weights of both runs; phases.1.epochs=3 trains only those 3 fine epochs and averages them).\n")


def c2f_recipes() -> dict[str, tuple[str, dict]]:
    """Coarse-to-fine Tables 2-5: the AST-B/16 baseline and every method as 2->1, 4->1 and 4->2->1."""
    out = {}
    for ds in C2F_DATASETS:
        audioset = ds is AUDIOSET
        extras = {"mixup": 0.5, "weight_averaging": True} if audioset else {}
        init = ds.init.format(p=16)
        out[f"{ds.key}/c2f_baseline.yaml"] = (ds.ast_comment(
            f"Coarse-to-fine baseline on {ds.title}: AST-B/16, non-overlapping patches, {ds.epochs} epochs\n"
            f"({'the official AST configuration: mixup and weight averaging' if audioset else 'no mixup, no weight averaging'}"
            ", c2f Sec. 3.1).\n"),
            paper(ds, f"{ds.key}-c2f-baseline", patch=16, init=init, phases=[_phase("full", ds.epochs, fixed(16))],
                  eval_sizes=[16], test_every_epoch=True, **extras))
        for method in METHODS:
            for sched, epochs in coarse_epochs(ds.epochs).items():
                name = f"{ds.key}-c2f-{method}-{sched}"
                budget = audioset_budget(name) if audioset and len(epochs) == 1 else ""
                out[f"{ds.key}/c2f_{method}_{sched}.yaml"] = (ds.ast_comment(
                    f"Coarse-to-fine on {ds.title}: {METHOD_NAMES[method]} {arrows(sched)}, "
                    f"{' + '.join(map(str, epochs))} coarse epoch(s), then {ds.epochs} at full resolution;\n"
                    "optimizer and schedule restart each phase, positional embeddings resized bilinearly.\n"
                    f"Savings against recipes/{ds.key}/c2f_baseline.yaml: "
                    f"flexiast savings runs/{name} --baseline runs/{ds.key}-c2f-baseline\n"
                    f"{C2F_READINGS}\n{budget}"),
                    paper(ds, name, patch=16, init=init, phases=c2f_phases(method, sched, epochs, ds.epochs),
                          eval_sizes=[16], test_every_epoch=True, **extras))
    return out


# -- HTS-AT (Chen et al., ICASSP 2022) and the coarse-to-fine paper's Table 6 ------------
# Read from RetroCirce/HTS-Audio-Transformer at 2e29471 (config.py, esc_config.py, sed_model.py,
# main.py, data_generator.py, model/htsat.py); the file and setting are named where used.

#: sed_model.py configure_optimizers: AdamW, betas (0.9, 0.999), eps 1e-8, weight decay 0.05;
#: config.py / esc_config.py learning_rate = 1e-3.
HTSAT_OPTIMIZER = {"name": "adamw", "lr": 1.0e-3, "weight_decay": 0.05, "betas": [0.9, 0.999], "eps": 1.0e-8}
#: sed_model.py lr_foo (a LambdaLR stepped per epoch) with config.py lr_rate and lr_scheduler_epoch.
HTSAT_SCHEDULE = {"name": "htsat", "epoch_rates": [0.02, 0.05, 0.1], "epoch_bounds": [10, 20, 30]}
#: model/htsat.py: SpecAugmentation(time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
#: freq_stripes_num=2) in every training forward. Our SpecAugment draws one mask per axis of
#: width U(0, max): twice HTS-AT's stripe width gives the same expected masked width (2 x 32
#: frames, 2 x 4 bins) and the same most (128 frames, 16 bins).
HTSAT_SPECAUGMENT = {"freqm": 16, "timem": 128}
HTSAT_TRAIN = {"precision": "auto", "grad_clip": 1.0}   # main.py: Trainer(gradient_clip_val=1.0)
HTSAT_SOURCES = (
    "HTS-AT's settings, from RetroCirce/HTS-Audio-Transformer (2e29471): AdamW lr 1e-3, betas\n"
    "0.9/0.999, weight decay 0.05 (config.py learning_rate; sed_model.py configure_optimizers); the\n"
    "per-epoch LR factors 0.02, 0.05, 0.1, then 0.1 to epoch 10, 0.05 to 20, 0.02 to 30, so a peak\n"
    "rate of 1e-4 (config.py lr_rate, lr_scheduler_epoch; sed_model.py lr_foo); gradient clip 1.0\n"
    "(main.py gradient_clip_val); Swin-T, window 8 (config.py htsat_*: preset tiny), drop path 0.1\n"
    "(model/htsat.py); the 32 kHz 64-bin log-mel, 50-14000 Hz (config.py; features kind\n"
    "slaney_logmel, HTS-AT's front end by default); SpecAugment 2 x 64 frames, 2 x 8 bins\n"
    "(model/htsat.py), here one mask of up to 128 frames and one of up to 16 bins, the same\n"
    "expected width.")
HTSAT_C2F_EPOCHS = {"audioset": 25, "vggsound": 50}      # c2f Sec. 3.2 (HTS-AT baselines)


def htsat_recipe(name: str, ds: Dataset, *, epochs: int, batch: int, phases: list[dict] | None = None,
                 augment: dict | None = None, train: dict | None = None, init: str | None = None,
                 target_length: int = 1024, balanced: bool = False) -> dict:
    """An HTS-AT-Tiny recipe on one of the papers' datasets, with HTS-AT's optimiser and schedule."""
    data = {k: v for k, v in ds.data.items() if k != "balanced"} | ({"balanced": True} if balanced else {})
    loss = {"name": "bce" if ds is AUDIOSET else "ce"}  # config.py loss_type clip_bce; esc_config.py clip_ce
    return recipe(name, model={"arch": "htsat", "preset": "tiny"}, init=init, loss=loss,
                  features={"kind": "slaney_logmel", "target_length": target_length},
                  data={**data, "batch_size": batch}, augment={**HTSAT_SPECAUGMENT, **(augment or {})},
                  optimizer=HTSAT_OPTIMIZER, schedule=HTSAT_SCHEDULE, train={**HTSAT_TRAIN, **(train or {})},
                  phases=phases or [_phase("full", epochs)])


def htsat_c2f_phases(epochs: int, method: str = "fshift", c: int = 4) -> list[dict]:
    """The coarse phase at C for about 25% of the baseline's epochs (rounded as the AST c2f
    recipes round, half to even), then the baseline's full length at full resolution."""
    return [_phase(f"coarse{c}", coarse_epochs(epochs)[f"{c}-1"][0], compression=f"{method}:{c}"),
            _phase("fine", epochs)]


def htsat_recipes() -> dict[str, tuple[str, dict]]:
    """Coarse-to-fine Table 6's HTS-AT rows (AudioSet-2M, VGGSound), HTS-AT's ESC-50 fine-tuning."""
    out = {}
    # AudioSet-2M. config.py: balanced_data = True; batch_size = 32 x 4 = 128 (one global batch here);
    # loss clip_bce; sed_model.py training_step: every AudioSet clip mixed after the SpecAugment,
    # lambda ~ Beta(0.5, 0.5), on the spectrogram (model/htsat.py forward).
    audioset = dict(epochs=HTSAT_C2F_EPOCHS["audioset"], batch=128,
                    augment={"mixup": 1.0, "mixup_alpha": 0.5, "mixup_on": "spectrogram"},
                    train={"average_best": 15, **C2F_TEST_EVERY_EPOCH}, balanced=True)
    as_common = (
        "Class-balanced sampling (config.py balanced_data), spectrogram mixup with lambda ~ Beta(0.5, 0.5)\n"
        "on every clip (sed_model.py training_step, model/htsat.py; the targets are mixed too, which\n"
        "HTS-AT's code leaves out: docs/TRAINING.md), BCE (config.py loss_type clip_bce), batch 128\n"
        "(config.py: 32 per GPU x 4). 25 epochs and the uniform average of the 15 best epochs'\n"
        "weights (c2f Sec. 3.2: 'train for 25 epochs and report the weighted averaging result of the top\n"
        "15 checkpoints'; HTS-AT's main.py weight_average is a plain mean). HTS-AT keeps its best\n"
        "checkpoints by mAP on the eval set, 10 validations per epoch (main.py); here one per epoch, on\n"
        "1% of the training clips, so the test set never picks a checkpoint. From scratch, as config.py\n"
        "(swin_pretrain_path = None); init.path=<an ImageNet Swin-T> starts from ImageNet instead.\n"
        + C2F_READINGS + "\n")
    out["audioset/htsat.yaml"] = (
        "HTS-AT baseline on AudioSet-2M (527 classes, mAP): coarse-to-fine Table 6, 'Baseline HTS-AT'\n"
        "(46.92 mAP in the paper).\n" + as_common + HTSAT_SOURCES + "\n" + AUDIOSET.layout,
        htsat_recipe("audioset-htsat", AUDIOSET, **audioset))
    out["audioset/htsat_c2f_fshift_4-1.yaml"] = (
        "Coarse-to-fine HTS-AT on AudioSet-2M: coarse-to-fine Table 6, 'HTS-AT Fshift 4->1' (46.75 mAP,\n"
        "21.13% of the FLOPs and 10.50% of the time saved in the paper). Fshift 4 (frames of 40 ms, 256\n"
        "per clip: a quarter of the time tokens) for 6 epochs, about 25% of the baseline's 25 (c2f Sec.\n"
        "3.5: 'approximately 25% of the total number of training epochs in the HTS-AT baseline\n"
        "settings'), then the baseline's 25 epochs at full resolution, as the AST c2f recipes do: the\n"
        "savings are read at the first full-resolution epoch that reaches the baseline's best (Sec. 3.5:\n"
        "'the final fine-tuning phase is terminated when it surpasses the baseline performance'), so\n"
        "the fine phase needs at most the baseline's length. Optimizer and schedule (warm-up included)\n"
        "restart in each phase; the top-15 average is taken over the fine phase's epochs.\n"
        "Savings against recipes/audioset/htsat.yaml:\n"
        "  flexiast savings runs/audioset-htsat-c2f-fshift-4-1 --baseline runs/audioset-htsat\n"
        + as_common + HTSAT_SOURCES + "\n" + AUDIOSET.layout,
        htsat_recipe("audioset-htsat-c2f-fshift-4-1", AUDIOSET, **audioset,
                     phases=htsat_c2f_phases(HTSAT_C2F_EPOCHS["audioset"])))
    # VGGSound: HTS-AT has no VGGSound configuration; its AudioSet one without what is AudioSet's.
    vgg_common = (
        "HTS-AT's AudioSet settings (batch 128) with what its code keeps to AudioSet left out: mixup\n"
        "(sed_model.py training_step mixes only when dataset_type is audioset) and class-balanced\n"
        "sampling (config.py: balanced_data 'only works for audioset'); CE for the single label, as\n"
        "esc_config.py (clip_ce); 50 epochs, no weight averaging (c2f Sec. 3.2). The best epoch by\n"
        "accuracy on 5% of the training clips, as the AST VGGSound recipes.\n"
        + C2F_READINGS + "\n")
    vgg = dict(epochs=HTSAT_C2F_EPOCHS["vggsound"], batch=128, train=dict(C2F_TEST_EVERY_EPOCH))
    out["vggsound/htsat.yaml"] = (
        "HTS-AT baseline on VGGSound (309 classes, accuracy): coarse-to-fine Table 6, 'Baseline HTS-AT'\n"
        "(52.82% in the paper).\n" + vgg_common + HTSAT_SOURCES + "\n" + VGGSOUND.layout,
        htsat_recipe("vggsound-htsat", VGGSOUND, **vgg))
    out["vggsound/htsat_c2f_fshift_4-1.yaml"] = (
        "Coarse-to-fine HTS-AT on VGGSound: coarse-to-fine Table 6, 'HTS-AT Fshift 4->1' (52.98%, 14.32%\n"
        "of the time saved in the paper). Fshift 4 for 12 epochs, about 25% of the baseline's 50 (c2f\n"
        "Sec. 3.5; 12.5 rounded half to even, as the AST c2f recipes round), then the baseline's 50 at\n"
        "full resolution, read at the first epoch that reaches the baseline (Sec. 3.5). Optimizer and\n"
        "schedule restart in each phase. Savings against recipes/vggsound/htsat.yaml:\n"
        "  flexiast savings runs/vggsound-htsat-c2f-fshift-4-1 --baseline runs/vggsound-htsat\n"
        + vgg_common + HTSAT_SOURCES + "\n" + VGGSOUND.layout,
        htsat_recipe("vggsound-htsat-c2f-fshift-4-1", VGGSOUND, **vgg,
                     phases=htsat_c2f_phases(HTSAT_C2F_EPOCHS["vggsound"])))
    # ESC-50: esc_config.py, fine-tuned from the AudioSet model (main.py drops its head).
    out["esc50/htsat.yaml"] = (
        "HTS-AT fine-tuned on ESC-50 (50 classes, 5-fold accuracy) from the AudioSet HTS-AT (run\n"
        "recipes/audioset/htsat.yaml first; its averaged weights, the model it reports). esc_config.py:\n"
        "resume_checkpoint = the AudioSet checkpoint (its token-semantic head re-initialised, main.py),\n"
        "batch 64, lr 1e-3, max_epoch 100, loss clip_ce, the same schedule; no mixup and no balanced\n"
        "sampling (AudioSet only). HTS-AT repeats each 5 s clip to 10 s (data_generator.py\n"
        "ESC_Dataset); flexiast cannot repeat a clip, so it takes the clip as it is, 512 frames\n"
        "(5.12 s: four 128-frame units of the model): the token-semantic head averages over time, so\n"
        "the repetition adds no content. HTS-AT picks the epoch on the test fold; here fold k+1 does.\n"
        "The official AudioSet checkpoint (a Lightning .ckpt) also loads: init.path=HTSAT_AudioSet_Saved_1.ckpt\n"
        + HTSAT_SOURCES + "\n" + esc50_layout(32),
        htsat_recipe("esc50-htsat", ESC50, epochs=100, batch=64, init="runs/audioset-htsat/averaged.safetensors",
                     target_length=512))
    return out


# -- HTS-AT on FSDD: Table 6's experiment at a size a 2-core CPU trains in minutes ----------
#: HTS-AT's micro preset (three stages, 32 wide) with freq_ratio 2: its unit is 2 x 16 = 32 frames,
#: so 128 frames fold into 2 chunks of 64 and Fshift 4's 32 frames are exactly one unit, a quarter
#: of the tokens (a coarse phase that pads back to a whole unit would save less).
FSDD_HTSAT_MODEL = {"arch": "htsat", "preset": "micro", "freq_ratio": 2}
FSDD_HTSAT_FEATURES = {"kind": "slaney_logmel", "target_length": 128}
FSDD_HTSAT_SCHEDULE = {"name": "cosine", "warmup_steps": 100}
FSDD_HTSAT_LR = 5.0e-4                                      # tuned on this CPU: see FSDD_HTSAT_HEAD
FSDD_HTSAT_METHODS = ("fshift", "avgpool", "maxpool")      # patch:C needs a patch size; HTS-AT's calls take none
FSDD_HTSAT_HEAD = (
    "HTS-AT-micro on FSDD digits, sized for a 2-core CPU: three Swin stages (32 wide, depths 1/1/2), 4x4\n"
    "patches, window 8, freq_ratio 2; HTS-AT's own front end (the 32 kHz 64-bin Slaney log-mel of\n"
    "config.py, clips resampled from 8 kHz) cut or padded to 128 frames (1.28 s). HTS-AT's AdamW\n"
    "(betas 0.9/0.999, weight decay 0.05: sed_model.py configure_optimizers), gradient clip 1.0\n"
    "(main.py) and SpecAugment widths (freqm 16: its 2 x 8 bins; timem 16: its 2 x 64 frames of a\n"
    "1024-frame clip, scaled to 128). Learning rate and schedule are ours, tuned on this CPU\n"
    "(docs/RECIPES.md, 'HTS-AT: coarse-to-fine Table 6'): 5e-4 with 100 warm-up steps (1.3 epochs)\n"
    "and a half cosine. HTS-AT's per-epoch table is tuned for AudioSet's 2M clips per epoch (its\n"
    "README says to adjust the warm-up to the dataset): its factors never pass 0.1, so a 24-epoch\n"
    "run at its 1e-3 trains at 1e-4 or less and reached 0.89 validation accuracy; a cosine at 1e-3\n"
    "stalled near chance in one seed of two, at 2e-3 in the only one; at 5e-4 both seeds learned\n"
    "(0.985 and 0.907), the second after 8 epochs near chance.\n"
    "No mixup and no balanced sampling (HTS-AT's code keeps both to AudioSet).")


def fsdd_htsat(name: str, phases: list[dict]) -> dict:
    return recipe(
        name, model=FSDD_HTSAT_MODEL, features=FSDD_HTSAT_FEATURES,
        data=fsdd_data("digits"), augment={"freqm": 16, "timem": 16}, optimizer={**HTSAT_OPTIMIZER, "lr": FSDD_HTSAT_LR},
        schedule=FSDD_HTSAT_SCHEDULE,
        train=dict(HTSAT_TRAIN), phases=phases)


def fsdd_htsat_recipes() -> dict[str, tuple[str, dict]]:
    out = {"fsdd/digits_htsat.yaml": (
        f"HTS-AT baseline on FSDD digits, {FSDD_EPOCHS} epochs (the AST FSDD recipes' length): the small-scale\n"
        "# counterpart of coarse-to-fine Table 6's 'Baseline HTS-AT'.\n" + FSDD_HTSAT_HEAD,
        fsdd_htsat("fsdd-digits-htsat", [_phase("full", FSDD_EPOCHS)]))}
    coarse = FSDD_COARSE["4-1"][0]
    for method in FSDD_HTSAT_METHODS:
        name = f"fsdd-digits-htsat-c2f-{method}-4-1"
        out[f"fsdd/digits_htsat_c2f_{method}_4-1.yaml"] = (
            f"Coarse-to-fine HTS-AT on FSDD digits: {METHOD_NAMES[method]} 4->1 ({coarse} coarse epochs on 32 frames,\n"
            f"# 25% of the baseline's {FSDD_EPOCHS}, then {FSDD_EPOCHS} at full resolution; optimizer and schedule\n"
            "# restart in each phase), coarse-to-fine Table 6's 'HTS-AT Fshift 4->1'"
            + (" at small scale." if method == "fshift" else f" with {METHOD_NAMES[method]}\n# (Sec. 2.3) instead.")
            + "\n# Baseline: recipes/fsdd/digits_htsat.yaml. Savings:\n"
            f"#   flexiast savings runs/{name} --baseline runs/fsdd-digits-htsat\n" + FSDD_HTSAT_HEAD,
            fsdd_htsat(name, [_phase("coarse4", coarse, compression=f"{method}:4"), _phase("fine", FSDD_EPOCHS)]))
    return {key: (comment + "\n" + fsdd_layout(32), body) for key, (comment, body) in out.items()}

# -- CNN14 (PANNs) and the coarse-to-fine paper's Table 1 ---------------------------------
# PANNs (Kong et al., TASLP 2020), read from qiuqiangkong/audioset_tagging_cnn at d2f4b8c
# (pytorch/main.py, pytorch/models.py, scripts/4_train.sh); simple pooling front ends (Liu et al.,
# ICASSP 2023): "Pool2", the spectrogram pooled 2x over time before the CNN; the
# coarse-to-fine paper's Table 1 and Sec. 1-2: CNN14, CNN14 Pool2, AST, AST Pool2, AST Pool2->1.
#
# Table 1's Pool2 is max pooling. Its AST Pool2->1 (44.35 mAP) is Table 3's AudioSet "Max Pool 2->1"
# to the digit (its "Avg Pool 2->1" is 44.22), so the authors' Table 1 runs are their max-pool runs,
# and AST Pool2 alone (42.79, in no other table) is read the same way. The CNN14 Pool2 value (42.60)
# is quoted from Liu et al. [13], whose text offers max, average and other poolings; the coarse-to-
# fine paper does not say which of them it quotes, so it is read as the same max pooling. The
# average-pooled variants stay as *_avgpool2 recipes on FSDD (docs/RECIPES.md, "Every table").
TABLE1_POOL = "maxpool:2"

#: pytorch/main.py: optim.Adam(lr=learning_rate, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.,
#: amsgrad=True); scripts/4_train.sh: --learning_rate=1e-3, no scheduler.
PANNS_OPTIMIZER = {"name": "adam", "lr": 1.0e-3, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1.0e-8,
                   "amsgrad": True}
PANNS_SCHEDULE = {"name": "constant"}
#: pytorch/models.py Cnn14: SpecAugmentation(time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
#: freq_stripes_num=2), the same as HTS-AT's: one mask per axis of twice the stripe width.
PANNS_SPECAUGMENT = dict(HTSAT_SPECAUGMENT)
#: scripts/4_train.sh --augmentation=mixup; pytorch/main.py Mixup(mixup_alpha=1.); Cnn14.forward mixes the
#: log-mel after bn0 (do_mixup).
PANNS_MIXUP = {"mixup": 1.0, "mixup_alpha": 1.0, "mixup_on": "spectrogram"}
#: README.md's log stops at 600,000 iterations of batch 32: 19.2M clips, 9.8 passes over AudioSet-2M's
#: 1,953,082 (AST's count), so 10 epochs.
PANNS_EPOCHS = 10
PANNS_SOURCES = (
    "PANNs' settings, from qiuqiangkong/audioset_tagging_cnn (d2f4b8c): CNN14 (pytorch/models.py Cnn14:\n"
    "preset base, dropout 0.2 / 0.5), the 32 kHz 64-bin log-mel, window 1024, hop 320, 50-14000 Hz\n"
    "(scripts/4_train.sh; features kind slaney_logmel), 1001 frames (10 s, centred STFT); Adam lr 1e-3,\n"
    "betas 0.9/0.999, eps 1e-8, no weight decay, amsgrad, constant rate (pytorch/main.py); batch 32,\n"
    "class-balanced sampling, mixup alpha 1.0 on the log-mel after bn0, BCE (scripts/4_train.sh\n"
    "--batch_size=32 --balanced=balanced --augmentation=mixup --loss_type=clip_bce; Cnn14.forward);\n"
    "SpecAugment 2 x 64 frames, 2 x 8 bins (Cnn14), here one mask of up to 128 frames and one of up\n"
    "to 16 bins, the same expected width.\n"
    "What differs: PANNs counts iterations (600k in its README's log, about 9.8 epochs of AudioSet-2M)\n"
    "and validates every 2000; here 10 epochs, validated once per epoch on 1% of the training clips.\n"
    "PANNs' balanced sampler draws batches of 64 and mixes them in pairs into 32 clips (targets mixed\n"
    "too); here each clip of a batch of 32 is mixed with another training clip drawn at random. PANNs'\n"
    "SpecAugment fills masks with 0 after bn0; here they are filled before it, with the front end's floor.\n")
TABLE1_ROWS = ("CNN14 (43.20 mAP), CNN14 Pool2 (42.60), AST (44.30), AST Pool2 (42.79), AST Pool2->1 (44.35)")


def panns_recipe(name: str, ds: Dataset, *, phases: list[dict]) -> dict:
    """PANNs' CNN14 training on AudioSet-2M as far as a recipe expresses it (``PANNS_SOURCES``)."""
    data = {**ds.data, "balanced": True, "batch_size": 32}
    return recipe(name, model={"arch": "cnn14", "preset": "base"}, loss=dict(ds.loss),
                  features={"kind": "slaney_logmel", "target_length": 1001}, data=data,
                  augment={**PANNS_SPECAUGMENT, **PANNS_MIXUP}, optimizer=PANNS_OPTIMIZER, schedule=PANNS_SCHEDULE,
                  train={"precision": "auto"}, phases=phases)


def table1_recipes() -> dict[str, tuple[str, dict]]:
    """Coarse-to-fine Table 1 on AudioSet-2M: CNN14, CNN14 Pool2 and AST Pool2 (the AST and AST
    Pool2->1 rows are c2f_baseline.yaml and c2f_maxpool_2-1.yaml)."""
    rows = ("Coarse-to-fine Table 1's rows: " + TABLE1_ROWS + ": recipes/audioset/cnn14.yaml,\n"
            "cnn14_pool2.yaml, c2f_baseline.yaml (AST), ast_pool2.yaml and c2f_maxpool_2-1.yaml (AST Pool2->1);\n"
            "Pool2 is max pooling (Table 1's Pool2->1 is Table 3's Max Pool 2->1; recipes/generate.py says why).\n")
    out = {"audioset/cnn14.yaml": (
        "CNN14 (PANNs, Kong et al. 2020) on AudioSet-2M (527 classes, mAP): coarse-to-fine Table 1,\n"
        "'Baseline - CNN14' (43.20 mAP; PANNs reports 43.1).\n" + rows + PANNS_SOURCES + AUDIOSET.layout,
        panns_recipe("audioset-cnn14", AUDIOSET, phases=[_phase("full", PANNS_EPOCHS)]))}
    out["audioset/cnn14_pool2.yaml"] = (
        "CNN14 on the log-mel max-pooled 2x over time (Liu et al., ICASSP 2023, 'Simple pooling\n"
        "front-ends for efficient audio classification': kernel and stride 2 over time before the CNN):\n"
        "coarse-to-fine Table 1, 'Pool2 - CNN' (42.60 mAP), one phase at maxpool:2 (1001 frames -> 500),\n"
        "trained and tested at that resolution; otherwise recipes/audioset/cnn14.yaml.\n"
        "Savings against it: flexiast savings runs/audioset-cnn14-pool2 --baseline runs/audioset-cnn14\n"
        + rows + PANNS_SOURCES + AUDIOSET.layout,
        panns_recipe("audioset-cnn14-pool2", AUDIOSET,
                     phases=[_phase("pool2", PANNS_EPOCHS, compression=TABLE1_POOL)]))
    init = AUDIOSET.init.format(p=16)
    out["audioset/ast_pool2.yaml"] = (AUDIOSET.ast_comment(
        "AST-B/16 trained only on the log-mel max-pooled 2x over time: coarse-to-fine Table 1,\n"
        "'Pool2, Transformer, no multi-phase' (42.79 mAP), trained and tested at maxpool:2 (512 frames).\n"
        "Otherwise the c2f baseline's settings (recipes/audioset/c2f_baseline.yaml: AST-B/16 from DeiT,\n"
        "non-overlapping patches, 5 epochs, mixup and weight averaging, c2f Sec. 3.1); Pool2->1 is\n"
        "recipes/audioset/c2f_maxpool_2-1.yaml.\n" + rows),
        paper(AUDIOSET, "audioset-ast-pool2", patch=16, init=init, eval_sizes=[16], mixup=0.5,
              weight_averaging=True, phases=[_phase("pool2", AUDIOSET.epochs, fixed(16), TABLE1_POOL)],
              test_every_epoch=True))  # as the c2f baseline records
    return out


# -- Table 1 on FSDD: the five rows at a size a 2-core CPU trains in minutes ----------------
#: CNN14 with every width / 8 (8 .. 256 channels) on HTS-AT's FSDD input (FSDD_HTSAT_FEATURES).
FSDD_CNN14_MODEL = {"arch": "cnn14", "preset": "micro"}
FSDD_CNN14_HEAD = (
    "CNN14-micro on FSDD digits, sized for a 2-core CPU: PANNs' CNN14 (pytorch/models.py Cnn14) with\n"
    "every width divided by 8 (8 .. 256 channels, 1.25M parameters); PANNs' front end (the 32 kHz\n"
    "64-bin Slaney log-mel, clips resampled from 8 kHz) cut or padded to 128 frames (1.28 s), as\n"
    "recipes/fsdd/digits_htsat.yaml. PANNs' optimiser unchanged (pytorch/main.py: Adam lr 1e-3, betas\n"
    "0.9/0.999, no weight decay, amsgrad; constant rate) and SpecAugment widths (freqm 16: its 2 x 8\n"
    "bins; timem 16: its 2 x 64 frames of a 1001-frame clip, scaled to 128). No mixup and no balanced\n"
    "sampling, like the other FSDD rows of Table 1; 24 epochs, the AST FSDD recipes' length.\n"
    "Table 1 on FSDD: digits_cnn14, digits_cnn14_pool2, digits_ast16 (AST), digits_ast16_pool2 and\n"
    "digits_c2f_maxpool_2-1 (AST Pool2->1), Pool2 being max pooling as in the paper's Table 1; the\n"
    "average-pooled rows are digits_cnn14_avgpool2, digits_ast16_avgpool2 and digits_c2f_avgpool_2-1.\n"
    "scripts/reproduce_fsdd.py --only table1 trains them.")


def fsdd_cnn14(name: str, phases: list[dict]) -> dict:
    return recipe(
        name, model=FSDD_CNN14_MODEL, features=FSDD_HTSAT_FEATURES,
        data=fsdd_data("digits"), augment={"freqm": 16, "timem": 16}, optimizer=PANNS_OPTIMIZER, schedule=PANNS_SCHEDULE,
        train={"precision": "auto"}, phases=phases)


def fsdd_table1_recipes() -> dict[str, tuple[str, dict]]:
    layout = fsdd_layout(32)
    out = {"fsdd/digits_cnn14.yaml": (
        f"CNN14 on FSDD digits, {FSDD_EPOCHS} epochs: the small-scale counterpart of coarse-to-fine Table 1's\n"
        "# 'Baseline - CNN14'.\n" + FSDD_CNN14_HEAD + "\n" + layout,
        fsdd_cnn14("fsdd-digits-cnn14", [_phase("full", FSDD_EPOCHS)]))}
    for pool, how in (("max", TABLE1_POOL), ("avg", "avgpool:2")):
        key = "pool2" if how == TABLE1_POOL else "avgpool2"
        paper_row = (" (the paper's Pool2 is max pooling)" if how == TABLE1_POOL
                     else "; the paper's row is max pooling (digits_cnn14_pool2.yaml), this is the average-pooled variant")
        out[f"fsdd/digits_cnn14_{key}.yaml"] = (
            f"CNN14 on FSDD digits trained and tested on the log-mel {pool}-pooled 2x over time (64 frames;\n"
            "# Liu et al., ICASSP 2023): the small-scale counterpart of coarse-to-fine Table 1's 'Pool2 - CNN'"
            f"{paper_row}.\n"
            f"# Savings: flexiast savings runs/fsdd-digits-cnn14-{key} --baseline runs/fsdd-digits-cnn14\n"
            + FSDD_CNN14_HEAD + "\n" + layout,
            fsdd_cnn14(f"fsdd-digits-cnn14-{key}", [_phase("pool2", FSDD_EPOCHS, compression=how)]))
        out[f"fsdd/digits_ast16_{key}.yaml"] = (
            f"Standard AST-16 on FSDD digits trained and tested only on the fbank {pool}-pooled 2x over time\n"
            "# (32 frames): the small-scale counterpart of coarse-to-fine Table 1's 'Pool2, Transformer, no\n"
            f"# multi-phase'{paper_row}; otherwise recipes/fsdd/digits_ast16.yaml (Table 1's AST row),\n"
            f"# and Pool2->1 is recipes/fsdd/digits_c2f_{pool}pool_2-1.yaml.\n" + fsdd_layout(),
            fsdd(f"fsdd-digits-ast16-{key}", "digits", [_phase("pool2", FSDD_EPOCHS, fixed(16), how)], [16],
                 test_every_epoch=True))
    return out


# -- SSAST: self-supervised pretraining (coarse-to-fine Table 6's SSAST rows) ------------------
#: SSAST's masking: 400 of the 512 patches of a 1024-frame input; as a fraction it scales with a
#: coarse phase's 4x fewer patches, where 400 would not fit (YuanGongND/ssast src/pretrain/run_mask_patch.sh).
SSAST_MASKED = 400 / 512
SSAST_STEPS = 8000          # the FSDD baseline's pretraining steps (the paper's 800k, scaled)
FSDD_SPEECH = """\
# Unlabeled speech: FSDD's training takes (labels ignored; takes 0-4, the test clips, are left out) and
# 3,000 espeak-ng utterances of 1-3 English words without digits, made by
#   python scripts/make_speech.py --out ../data/espeak      (Debian's espeak-ng; about 40 s)
# drawn half and half (data.format: mixture). 5% of the clips (seeded) validate."""


def fsdd_ssast_pretrain(name: str, phases: list[dict]) -> dict:
    """SSAST pretraining at the FSDD scale: the FSDD recipes' model and features, SSAST's joint
    objective and mask ratio, no augmentation (SSAST pretrains with freqm = timem = 0)."""
    sources = [{"format": "fsdd", "root": "../shared/data/fsdd", "ignore_labels": True},
               {"format": "audio", "root": "../data/espeak"}]
    return recipe(
        name, model={"arch": "ssast", **FSDD_MODEL}, features=FSDD_FEATURES,
        data={"format": "mixture", "options": {"sources": sources}, "train": {"split": "train"}, "test": None,
              "val_fraction": 0.05, "batch_size": 32},
        augment={}, optimizer=adam(5.0e-4), schedule={"name": "cosine", "warmup_steps": 100},
        train={"precision": "auto"}, phases=phases, pretrain={"masked": SSAST_MASKED})


def ssast_recipes() -> dict[str, tuple[str, dict]]:
    out = {"fsdd/ssast_pretrain.yaml": (
        f"SSAST pretraining at full resolution on unlabeled speech, {SSAST_STEPS} steps: the small-scale\n"
        "# counterpart of coarse-to-fine Table 6's 'SSAST' baseline (800k iterations on AudioSet + LibriSpeech).\n"
        "# Fine-tune: recipes/fsdd/digits_ssast.yaml, recipes/fsdd/speakers_ssast.yaml.\n" + FSDD_SPEECH,
        fsdd_ssast_pretrain("fsdd-ssast-pretrain", [{"name": "full", "steps": SSAST_STEPS}]))}
    out["fsdd/ssast_pretrain_c2f.yaml"] = (
        f"SSAST pretraining coarse-to-fine: {SSAST_STEPS // 8} steps at Fshift 4, then {SSAST_STEPS * 5 // 8} at "
        "full resolution\n# (Table 6: 100k + 500k against 800k); the masked fraction scales with the coarse "
        "phase's 4x fewer\n# patches. Savings: flexiast savings runs/fsdd-ssast-pretrain-c2f "
        "--baseline runs/fsdd-ssast-pretrain\n" + FSDD_SPEECH,
        fsdd_ssast_pretrain("fsdd-ssast-pretrain-c2f", [
            {"name": "coarse4", "steps": SSAST_STEPS // 8, "compression": "fshift:4"},
            {"name": "fine", "steps": SSAST_STEPS * 5 // 8}]))
    for task, epochs in (("digits", FSDD_EPOCHS), ("speakers", 16)):
        out[f"fsdd/{task}_ssast.yaml"] = (
            f"AST-16 fine-tuned on FSDD {task} from the SSAST of recipes/fsdd/ssast_pretrain.yaml (run it first):\n"
            "# the encoder kept, the prediction heads dropped, a new head on the mean of the patch tokens\n"
            "# (SSAST's ft_avgtok). From the coarse-to-fine SSAST: init.path=runs/fsdd-ssast-pretrain-c2f/best.safetensors;\n"
            "# from random weights (the comparison): init.path=null.\n" + fsdd_layout(),
            fsdd(f"fsdd-{task}-ssast", task, [_phase("full", epochs, fixed(16))], [16],
                 init="runs/fsdd-ssast-pretrain/best.safetensors", model={"pooling": "mean"}))
    return out


#: SSAST's pretraining data (src/pretrain/run_mask_patch.sh): AudioSet-2M and LibriSpeech 960 h in one list,
#: so each clip is drawn alike: weights = clip counts (1,953,082 AudioSet-2M clips; 281,241 LibriSpeech utterances).
SSAST_SOURCES = [
    {"format": "ast_json", "root": "audioset", "datafile": "audioset_2m_train.json", "weight": 1953082},
    {"format": "librispeech", "root": "librispeech", "split": ["train-clean-100", "train-clean-360", "train-other-500"],
     "weight": 281241}]
SSAST_LAYOUT = (
    "# Layout: ROOT/audioset/audioset_2m_train.json and audioset_eval.json (AST's datafiles; labels unused, no\n"
    "#   label CSV) and ROOT/librispeech/<split>/<speaker>/<chapter>/*.flac (LibriSpeech 960 h). AudioSet's eval\n"
    "#   clips validate (masked-patch accuracy and loss on fixed masks), as SSAST's validatemask does.")
SSAST_SETTINGS = (
    "# Settings: SSAST (YuanGongND/ssast src/pretrain/run_mask_patch.sh, traintest_mask.py): base model,\n"
    "#   {patch} patches, 400 masked of 512 ({masking} masking), NCE + 10 MSE, batch 24, Adam 1e-4 (betas 0.95/0.999,\n"
    "#   wd 5e-7), 1000-step warm-up, no augmentation, 1024 frames with AudioSet's statistics; SSAST halves the rate\n"
    "#   on a plateau of masked accuracy (patience 2 x 4000 steps), which flexiast lacks: the rate stays constant.")


def ssast_pretrain(name: str, phases: list[dict], *, patch, masked, masking: str = "auto") -> dict:
    return recipe(
        name, model={"arch": "ssast", "preset": "base", "patch_size": patch}, features={"dataset": "audioset"},
        data={"format": "mixture", "root": "/data", "options": {"sources": SSAST_SOURCES},
              "train": {"split": "train"},
              "val": {"sources": [{"format": "ast_json", "root": "audioset", "datafile": "audioset_eval.json"}]},
              "test": None, "batch_size": 24, "num_workers": 8},
        augment={}, optimizer=adam(1e-4), schedule={"name": "constant", "warmup_steps": 1000},
        train={"precision": "auto", "checkpoint_every": 4000}, phases=phases,
        pretrain={"masked": masked, "masking": masking})


def ssast_finetune(ds: Dataset, name: str, init: str, *, patch=16, stride=10, lr: float, epochs: int, batch: int,
                   augment: dict, schedule: dict, features: dict | None = None, data: dict | None = None,
                   loss: dict | None = None, weight_averaging: tuple[int, int] | None = None) -> dict:
    train = {"precision": "auto"}
    if weight_averaging:
        train.update(weight_averaging=True, wa_start=weight_averaging[0], wa_end=weight_averaging[1])
    return recipe(
        name, model={"preset": "base", "patch_size": patch, "stride": stride, "pooling": "mean"}, init=init,
        features=features or ds.features, data={**ds.data, "batch_size": batch, **(data or {})}, augment=augment,
        loss=loss or ds.loss, optimizer=adam(lr), schedule=schedule, train=train,
        phases=[{"name": "full", "epochs": epochs}])


def ssast_paper_recipes() -> dict[str, tuple[str, dict]]:
    """Coarse-to-fine Table 6's SSAST rows and SSAST's own fine-tuning recipes."""
    base, c2f, frame = ("runs/audioset-ssast-pretrain/best.safetensors",
                        "runs/audioset-ssast-pretrain-c2f/best.safetensors",
                        "runs/audioset-ssast-pretrain-frame/best.safetensors")
    patch_settings = SSAST_SETTINGS.format(patch="16 x 16", masking="cluster")
    out = {"audioset/ssast_pretrain.yaml": (
        "SSAST-Base-Patch-400 pretraining, 800k steps at full resolution: coarse-to-fine Table 6's 'SSAST'\n"
        "# baseline (FLOPs saved 34.58%, time 31.73% by the coarse-to-fine run).\n" + patch_settings + "\n"
        + SSAST_LAYOUT,
        ssast_pretrain("audioset-ssast-pretrain", [{"name": "full", "steps": 800000}], patch=16, masked=400))}
    out["audioset/ssast_pretrain_c2f.yaml"] = (
        "SSAST pretraining coarse-to-fine (Table 6): 100k steps at Fshift 4, then 500k at full resolution; 400 of\n"
        "# 512 masked becomes a fraction (0.78125), 100 of the coarse phase's 128 patches. Savings:\n"
        "#   flexiast savings runs/audioset-ssast-pretrain-c2f --baseline runs/audioset-ssast-pretrain \\\n"
        "#     --downstream runs/audioset-ssast-ft-20k-c2f runs/audioset-ssast-ft-20k\n" + patch_settings + "\n"
        + SSAST_LAYOUT,
        ssast_pretrain("audioset-ssast-pretrain-c2f", [
            {"name": "coarse4", "steps": 100000, "compression": "fshift:4"}, {"name": "fine", "steps": 500000}],
            patch=16, masked=SSAST_MASKED))
    out["audioset/ssast_pretrain_frame.yaml"] = (
        "SSAST-Base-Frame-400 pretraining (SSAST's frame model, 128 x 2 patches, for speech; src/pretrain/\n"
        "# run_mask_frame.sh), 800k steps; recipes/speechcommands/ssast_ft_frame.yaml fine-tunes it.\n"
        + SSAST_SETTINGS.format(patch="128 x 2", masking="uniform") + "\n" + SSAST_LAYOUT,
        ssast_pretrain("audioset-ssast-pretrain-frame", [{"name": "full", "steps": 800000}], patch=[128, 2],
                       masked=400))
    balanced = {"format": "ast_json", "train": {"datafile": "audioset_20k_train.json"}, "val_fraction": 0.05,
                "balanced": False}
    as20k = dict(lr=5e-5, epochs=25, batch=12, augment={"freqm": 48, "timem": 192, "mixup": 0.5},
                 schedule={"name": "multistep", "decay_from": 10, "decay_every": 5, "gamma": 0.5},
                 data=balanced, weight_averaging=(6, 25))
    as20k_note = ("# Settings: SSAST's src/finetune/audioset/run_as.sh (balanced set): patch 16, stride 10, mean of the\n"
                  "#   patch tokens (ft_avgtok), Adam 5e-5, 25 epochs, x0.5 every 5 epochs from 10, batch 12, SpecAugment\n"
                  "#   48/192, mixup 0.5, weight averaging of epochs 6-25, BCE.\n"
                  "# Layout: AST's datafiles ROOT/audioset_20k_train.json (the balanced set) and audioset_eval.json,\n"
                  "#   and ROOT/class_labels_indices.csv; 5% of the training clips (seeded) pick the best epoch.")
    for suffix, run, init, which in (("", "", base, "the 800k-step baseline"),
                                     ("_c2f", "-c2f", c2f, "the coarse-to-fine run")):
        out[f"audioset/ssast_ft_20k{suffix}.yaml"] = (
            f"SSAST fine-tuned on AudioSet-20K from {which} (coarse-to-fine Table 6: 29.42 mAP from the\n"
            "# baseline, 30.28 from coarse-to-fine).\n" + as20k_note,
            ssast_finetune(AUDIOSET, f"audioset-ssast-ft-20k{run}", init, **as20k))
        out[f"vggsound/ssast_ft{suffix}.yaml"] = (
            f"SSAST fine-tuned on VGGSound from {which} (coarse-to-fine Table 6: 45.46 accuracy from the baseline,\n"
            "# 47.78 from coarse-to-fine). Neither paper gives SSAST's VGGSound settings: these are the AST recipes'\n"
            "# (c2f Sec. 3.2) with SSAST's patch, stride 10 and mean pooling.\n" + VGGSOUND.layout,
            ssast_finetune(VGGSOUND, f"vggsound-ssast-ft{run}", init, lr=VGGSOUND.lr,
                           epochs=VGGSOUND.epochs, batch=VGGSOUND.batch_size, augment=VGGSOUND.augment,
                           schedule=VGGSOUND.schedule))
    out["audioset/ssast_ft_full.yaml"] = (
        "SSAST fine-tuned on the full AudioSet-2M (SSAST's run_as.sh, full set): Adam 1e-5, 5 epochs, x0.5 per\n"
        "# epoch from 2, balanced sampling, batch 12, SpecAugment 48/192, mixup 0.5, weight averaging of all 5.\n"
        + AUDIOSET.layout,
        ssast_finetune(AUDIOSET, "audioset-ssast-ft-full", base, lr=1e-5, epochs=5, batch=12,
                       augment={"freqm": 48, "timem": 192, "mixup": 0.5},
                       schedule={"name": "multistep", "decay_from": 2, "decay_every": 1, "gamma": 0.5},
                       weight_averaging=(1, 5)))
    out["esc50/ssast_ft.yaml"] = (
        "SSAST-Patch fine-tuned on ESC-50 (SSAST's src/finetune/esc50/run_esc_patch.sh): stride 10, 512 frames,\n"
        "# Adam 1e-4, 50 epochs, x0.85 per epoch from 6, batch 48, SpecAugment 24/96 with noise, no mixup, CE.\n"
        + ESC50_AST_LAYOUT,
        ssast_finetune(ESC50, "esc50-ssast-ft", base, lr=1e-4, epochs=50, batch=48,
                       augment={"freqm": 24, "timem": 96, "noise": True},
                       schedule={"name": "multistep", "decay_from": 6, "decay_every": 1, "gamma": 0.85},
                       data=ESC50_AST_PROTOCOL))
    out["speechcommands/ssast_ft_frame.yaml"] = (
        "SSAST-Frame fine-tuned on Speech Commands V2 (SSAST's src/finetune/speechcommands_v2/run_sc.sh): 128 x 2\n"
        "# patches, stride 128 x 1, Adam 2.5e-4 with 1000-step warm-up, 30 epochs, x0.85 per epoch from 5, batch\n"
        "# 128, SpecAugment 48/48 with noise, mixup 0.6, BCE.\n" + SPEECHCOMMANDS.layout,
        ssast_finetune(SPEECHCOMMANDS, "speechcommands-ssast-ft-frame", frame, patch=[128, 2], stride=[128, 1],
                       lr=2.5e-4, epochs=30, batch=128, augment={"freqm": 48, "timem": 48, "noise": True, "mixup": 0.6},
                       schedule={"name": "multistep", "warmup_steps": 1000, "decay_from": 5, "decay_every": 1,
                                 "gamma": 0.85}))
    return out


# -- packed native-length training (ElasticAST, issue 29) ------------------------------------
#: FSDD's clips are 0.14-2.28 s: 2.56 s keeps every one whole.
FSDD_MAX_LENGTH = 256
#: Tokens per step: 724 was meant as 32 clips at FSDD's mean native length but took the mean
#: before flooring each clip to whole patch columns (22.6 tokens at patch 16); the true mean is
#: about 19, so a step holds about 38 clips and an epoch takes 64 steps against the fixed
#: recipe's 75 (docs/RESULTS.md reports both). Kept so that the recorded runs regenerate.
FSDD_BATCH_TOKENS = 724


def packed(row_tokens: int, batch_tokens: int | None) -> dict:
    out = {"batching": "packed", "row_tokens": row_tokens}
    if batch_tokens is not None:
        out["batch_tokens"] = batch_tokens
    return out


def fsdd_native(name: str, task: str, epochs: int, sampler: dict, eval_sizes: list[int], row_tokens: int) -> dict:
    """An FSDD recipe at native length: packed rows of ``row_tokens``, clips up to 2.56 s whole."""
    body = fsdd(name, task, [_phase("full", epochs, sampler)], eval_sizes)
    body["features"] = {**body["features"], "max_length": FSDD_MAX_LENGTH}
    body["data"] = {**body["data"], **packed(row_tokens, FSDD_BATCH_TOKENS)}
    return body


def packing_recipes() -> dict[str, tuple[str, dict]]:
    native = ("at native length (ElasticAST, Feng et al., Interspeech 2024): every clip whole (up to\n"
              "# features.max_length, 2.56 s), packed into rows of data.row_tokens tokens with attention\n"
              "# restricted to each clip, 724 tokens per step (about 38 clips, 64 steps an epoch); prefix pooling as\n"
              "# the fixed recipe, so only the input length differs.")
    per_clip = dict(flexible(), draw="clip")
    out = {
        "fsdd/digits_ast16_native.yaml": (
            "AST-16 on FSDD digits " + native + "\n# Against recipes/fsdd/digits_ast16.yaml (64 frames): "
            "python scripts/study_packing.py",
            fsdd_native("fsdd-digits-ast16-native", "digits", FSDD_EPOCHS, fixed(16), [16], 128)),
        "fsdd/digits_flexiast_native.yaml": (
            "FlexiAST from random weights on FSDD digits " + native + "\n# The patch size is drawn per step "
            "(FlexiAST's rule); rows of 512 tokens hold FSDD's longest clip at patch 8.",
            fsdd_native("fsdd-digits-flexiast-native", "digits", FSDD_EPOCHS, flexible(), [8, 16, 32, 48], 512)),
        "fsdd/digits_flexiast_native_clip.yaml": (
            "digits_flexiast_native.yaml with the patch size drawn per clip inside each packed batch\n"
            "# (phases[].patch.draw: clip), from (seed, step, clip).",
            fsdd_native("fsdd-digits-flexiast-native-clip", "digits", FSDD_EPOCHS, per_clip, [8, 16, 32, 48], 512)),
        "fsdd/speakers_ast16_native.yaml": (
            "AST-16 for FSDD speaker identification " + native,
            fsdd_native("fsdd-speakers-ast16-native", "speakers", 16, fixed(16), [16], 128)),
    }
    out = {key: (comment + "\n" + fsdd_layout(), body) for key, (comment, body) in out.items()}
    vox = paper(VOXCELEB, "voxceleb-elasticast", patch=16, phases=[_phase("full", 40, fixed(16))], eval_sizes=[16],
                init=VOXCELEB.init, data=packed(2048, None))
    vox["model"]["pooling"] = "attention"
    vox["features"]["max_length"] = 3072
    vox["schedule"] = {"name": "multistep", "warmup_steps": 1000, "decay_from": 5, "decay_every": 1, "gamma": 0.75}
    out["voxceleb/elasticast.yaml"] = (
        "ElasticAST on VoxCeleb1 speaker identification: every utterance at its native length, up to 3,072\n"
        "# frames (30.72 s), packed into rows of 2,048 tokens (L'), ElasticAST's masked attention pooling\n"
        "# (model.pooling: attention). Settings from JiuFengSC/ElasticAST's VoxCeleb script (facts in\n"
        "# ../shared/reference/elasticast_passt.md): Adam 1e-5 (betas 0.95/0.999, wd 5e-7), 1000-step warm-up,\n"
        "# 40 epochs, x0.75 per epoch from epoch 5, CE, SpecAugment 48/192. Differences: initialised from\n"
        "# DeiT-B 384 as the AST recipes (ElasticAST starts VoxCeleb from SSAST), AST's two prefix tokens kept\n"
        "# beside the pooling query, each step 12 x a 1024-frame clip's tokens (ElasticAST: 12 clips), the\n"
        "# time mask not scaled with the clip's length, no 10% token dropout, AST's normalisation statistics.\n"
        + VOXCELEB.layout.replace("Cut or padded to 1024 frames (10.24 s), as in the papers' AST pipeline.",
                                  "Native length, cut (seeded) beyond 3,072 frames."),
        vox)
    return out


# -- Patchout (PaSST: Koutini et al., Interspeech 2022) against and with coarse-to-fine --------
#: PaSST-S's AudioSet patchout (kkoutini/PaSST README: its AudioSet model "was trained with
#: s_patchout_t=40, s_patchout_f=4", on a 12 x 99 grid) as fractions, so that it follows any grid: 40/99 of the time columns and 4/12
#: of the frequency rows, floored (on AST-B/16's 8 x 64 grid: 25 columns and 2 rows dropped).
PASST_AUDIOSET_PATCHOUT = {"time": 0.4, "freq": 0.33}
#: The FSDD study's two structured rates: a quarter and a half of the columns and of the rows. On
#: the 8 x 4 grid of 128 bins x 64 frames at 16: 6 x 3 = 18 and 4 x 2 = 8 of the 32 tokens kept.
FSDD_PATCHOUT = {"25": 0.25, "50": 0.5}


def with_patchout(phases: list[dict], patchout: dict) -> list[dict]:
    """``phases`` with ``patchout`` in every one (a fraction follows each phase's grid)."""
    return [{**ph, "patchout": dict(patchout)} for ph in phases]


def patchout_recipes() -> dict[str, tuple[str, dict]]:
    """Patchout on AST: AudioSet at PaSST's proportions, alone and with Fshift 4->1; the FSDD study
    (docs/RESULTS.md): structured patchout at two rates, and Fshift 4->1 with the lower one."""
    out = {}
    ds, po = AUDIOSET, PASST_AUDIOSET_PATCHOUT
    extras = {"mixup": 0.5, "weight_averaging": True}
    source = ("PaSST-S's AudioSet patchout\n(Koutini et al., Interspeech 2022; kkoutini/PaSST README: "
              "s_patchout_t=40 of 99 time columns,\ns_patchout_f=4 of 12 frequency rows) as fractions of "
              "this grid, time 0.4 and freq 0.33.\n")
    out["audioset/ast_patchout.yaml"] = (ds.ast_comment(
        "AST-B/16 on AudioSet trained with structured patchout: the coarse-to-fine baseline's recipe\n"
        "(recipes/audioset/c2f_baseline.yaml) with " + source
        + "Savings: flexiast savings runs/audioset-ast-patchout --baseline runs/audioset-c2f-baseline\n"),
        paper(ds, "audioset-ast-patchout", patch=16, init=ds.init.format(p=16), eval_sizes=[16], test_every_epoch=True,
              phases=with_patchout([_phase("full", ds.epochs, fixed(16))], po), **extras))
    epochs = coarse_epochs(ds.epochs)["4-1"]
    out["audioset/c2f_fshift_4-1_patchout.yaml"] = (ds.ast_comment(
        "Coarse-to-fine Fshift 4->1 on AudioSet with structured patchout in both phases (not in either\n"
        "paper: flexiast's combination): recipes/audioset/c2f_fshift_4-1.yaml with " + source
        + "Savings: flexiast savings runs/audioset-c2f-fshift-4-1-patchout --baseline runs/audioset-c2f-baseline\n"),
        paper(ds, "audioset-c2f-fshift-4-1-patchout", patch=16, init=ds.init.format(p=16), eval_sizes=[16],
              test_every_epoch=True, phases=with_patchout(c2f_phases("fshift", "4-1", epochs, ds.epochs), po),
              **extras))
    for rate, frac in FSDD_PATCHOUT.items():
        out[f"fsdd/digits_patchout_{rate}.yaml"] = (
            f"Structured patchout on FSDD digits (PaSST): the AST-16 baseline (digits_ast16) trained on\n"
            f"{rate}% fewer time columns and frequency rows per step ({round((1 - frac) ** 2 * 32)} of 32 tokens), "
            "validated on all.\n# Savings: flexiast savings runs/fsdd-digits-patchout-" + rate
            + " --baseline runs/fsdd-digits-ast16",
            fsdd(f"fsdd-digits-patchout-{rate}", "digits",
                 with_patchout([_phase("full", FSDD_EPOCHS, fixed(16))], {"time": frac, "freq": frac}), [16],
                 test_every_epoch=True))
    out["fsdd/digits_c2f_fshift_4-1_patchout_25.yaml"] = (
        "Coarse-to-fine Fshift 4->1 with structured patchout (a quarter of the columns and rows) in both\n"
        "phases: digits_c2f_fshift_4-1 and digits_patchout_25 together. The coarse phase's 8 x 1 grid\n"
        "keeps its one column (a quarter of 1 is none) and 6 of 8 rows.\n"
        "# Savings: flexiast savings runs/fsdd-digits-c2f-fshift-4-1-patchout-25 --baseline runs/fsdd-digits-ast16",
        fsdd("fsdd-digits-c2f-fshift-4-1-patchout-25", "digits",
             with_patchout(c2f_phases("fshift", "4-1", FSDD_COARSE["4-1"], FSDD_EPOCHS), {"time": 0.25, "freq": 0.25}),
             [16], test_every_epoch=True))
    for path in [p for p in out if p.startswith("fsdd/")]:
        comment, body = out[path]
        out[path] = (comment + "\n" + fsdd_layout(), body)
    return out


#: PaSST's front end as Kaldi fbank settings (kkoutini/PaSST models/preprocess.py AugmentMelSTFT, as
#: ex_audioset.py and ex_esc50.py configure it): 32 kHz, 800-sample (25 ms) Hann window, 320-sample
#: (10 ms) hop, 1024-point FFT, pre-emphasis 0.97, 128 Kaldi mel bands from 0 Hz to 16000 - 2000 / 2 =
#: 15000 Hz, log, then (x + 4.5) / 5 (mean -4.5, std 5). Kaldi's fbank differs in three details:
#: it removes each frame's DC offset, floors the power at float epsilon where PaSST adds 1e-5, and
#: starts frames at sample 0 where PaSST's STFT centres them (998 frames for 10 s, PaSST's 1000).
PASST_FEATURES = {"kind": "kaldi_fbank", "sample_rate": 32000, "num_mel_bins": 128, "frame_length_ms": 25.0,
                  "frame_shift_ms": 10.0, "fmin": 0.0, "fmax": 15000.0, "mean": -4.5, "std": 5.0}
PASST_MODEL = {"arch": "passt", "preset": "base", "patch_size": 16, "stride": 10}
PASST_SOURCES = (
    "# Settings: kkoutini/PaSST ex_audioset.py (and its README) unless named: PaSST-S (ViT-B from DeiT-B\n"
    "#   distilled 384, 16 x 16 patches at stride 10), structured patchout of 40 of 99 time columns and 4 of 12\n"
    "#   frequency rows, AdamW lr 2e-5 weight decay 1e-4, batch 12, SpecAugment 48 / 192, mixup alpha 0.3,\n"
    "#   BCE, 130 epochs of 100,000 weighted samples (13M clips: 7 passes over AudioSet-2M here, AST's\n"
    "#   balanced sampling), SWA from epoch 50 of 130 (weight averaging from pass 3 of 7). Not PaSST's:\n"
    "#   its schedule (exponential warm-up over 5 epochs, flat to 50, linear to 0.01x at 100) is a linear\n"
    "#   warm-up over the same 41,667 steps then a cosine to 0.01x; its front end is Kaldi's fbank with its\n"
    "#   settings (recipes/generate.py PASST_FEATURES says where they differ); its waveform mixing and\n"
    "#   random rolls are left out.")


def passt_recipes() -> dict[str, tuple[str, dict]]:
    """PaSST-S on AudioSet and its ESC-50 fine-tuning (Koutini et al., Interspeech 2022)."""
    out = {}
    ds = AUDIOSET
    out["audioset/passt.yaml"] = (
        "PaSST-S on AudioSet-2M (Koutini et al., Interspeech 2022; released as passt-s-f128-p16-s10-ap.476-swa.pt).\n"
        + PASST_SOURCES + "\n" + ds.layout,
        recipe("audioset-passt", model=PASST_MODEL, init="weights/deit_base_distilled_patch16_384.pth",
               features={**PASST_FEATURES, "target_length": 998}, loss={"name": "bce"},
               data={**ds.data, "batch_size": 12}, augment={"freqm": 48, "timem": 192, "mixup": 0.3},
               optimizer={"name": "adamw", "lr": 2.0e-5, "weight_decay": 1.0e-4, "betas": [0.9, 0.999]},
               schedule={"name": "cosine", "warmup_steps": 41667, "min_lr": 2.0e-7},
               train={**ast_train([16]), "weight_averaging": True, "wa_start": 3},
               phases=with_patchout([_phase("full", 7, fixed(16))], {"time": 40, "freq": 4})))
    out["esc50/passt.yaml"] = (
        "PaSST fine-tuned on ESC-50 (kkoutini/PaSST ex_esc50.py): from the AudioSet PaSST above (or the\n"
        "# release: init.path=weights/passt-s-f128-p16-s10-ap.476-swa.pt), its time table cut to the first\n"
        "# 49 columns of a 5 s clip; structured patchout of 10 time columns and 3 frequency rows, AdamW lr 1e-5\n"
        "# weight decay 1e-4, batch 12, SpecAugment 48 / 80, mixup alpha 0.3, CE, 10 epochs, SWA from epoch 2\n"
        "# (weight averaging from 2). Not PaSST's: its exponential warm-up over 5 epochs is linear over the\n"
        "# same steps (5 x 1,200 training clips / 12); the front end as recipes/audioset/passt.yaml's.\n"
        + esc50_layout(32),
        recipe("esc50-passt", model={**PASST_MODEL, "preset": "base"}, init="runs/audioset-passt/averaged.safetensors",
               features={**PASST_FEATURES, "target_length": 498}, loss={"name": "ce"},
               data={"format": "esc50", "root": "/data/ESC-50", "kfold": 5, "batch_size": 12},
               augment={"freqm": 48, "timem": 80, "mixup": 0.3},
               optimizer={"name": "adamw", "lr": 1.0e-5, "weight_decay": 1.0e-4, "betas": [0.9, 0.999]},
               schedule={"name": "constant", "warmup_steps": 500},
               train={**ast_train([16]), "weight_averaging": True, "wa_start": 2},
               phases=with_patchout([_phase("full", 10, fixed(16))], {"time": 10, "freq": 3})))
    return out


def all_recipes() -> dict[str, tuple[str, dict]]:
    return {**fsdd_recipes(), **flexiast_recipes(), **c2f_recipes(), **htsat_recipes(), **fsdd_htsat_recipes(),
            **table1_recipes(), **fsdd_table1_recipes(), **ssast_recipes(), **ssast_paper_recipes(),
            **packing_recipes(), **patchout_recipes(), **passt_recipes()}


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
