"""Does a coarse epoch save wall time in proportion to the FLOPs it saves, out of the box?

Coarse-to-fine training (Feng et al., ICASSP 2024, Sec. 2.2) claims its FLOP savings as
time savings. That holds only if the input pipeline costs little next to the step. Here
one epoch is trained at full resolution and one under Fshift C = 4, through the normal
recipe path with the loader settings left at their defaults (``data.num_workers: auto``,
``data.cache_dir: auto``, in a fresh temporary cache), on clips in ESC-50's format: 5 s
WAV files at 44.1 kHz (procedural: two of the demo's classes, repeated to 5 s), resampled to
16 kHz on load, 512 frames. Two models: the FSDD recipes' AST (128 wide, 4 blocks) and
AST-base (on fewer clips, and with the default loader only, to keep the run short);
and the FSDD recipe itself on FSDD (8 kHz clips under 1 s, 64 frames) at C = 2 and 4.
Each resolution trains two epochs: the first reads the audio and fills the
cache ("cold"), the second reads the cache ("warm"). The same runs with the cache off and
no worker are the old defaults.

Reported per model: the FLOP ratio of a coarse to a full epoch (``flexiast.flops``) and
the wall-time ratio of the training epochs, cold and warm.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from common import run_script, table

ROOT = Path(__file__).resolve().parents[1]
RATE = 44100
SECONDS = 5.0
MODELS = {"FSDD recipe AST (128 wide, 4 blocks)": dict(embed_dim=128, depth=4, num_heads=4, clips=272, batch=16,
                                                      old=True),
          "AST-base": dict(embed_dim=768, depth=12, num_heads=12, clips=40, batch=4, old=False)}
QUICK = {"2-block 32-wide": dict(embed_dim=32, depth=2, num_heads=2, clips=16, batch=4, old=True)}


def write_clips(root: Path, count: int, seconds: float = SECONDS) -> None:
    """``count`` 5 s clips at 44.1 kHz in the folder layout, two classes, 16-bit PCM."""
    from flexiast.demo import CLASSES, synth_clip

    for i in range(count):
        label = i % 2
        repeated = np.tile(synth_clip(label, np.random.default_rng([11, i])), int(np.ceil(seconds / 0.96)))
        wave = np.interp(np.arange(int(seconds * RATE)) / RATE, np.arange(repeated.size) / 16000, repeated)
        folder = root / "train" / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{i:04d}.wav", wave.astype(np.float32), RATE, subtype="PCM_16")


def recipe(data: Path, out: Path, model: dict, compression: str, defaults: bool) -> dict:
    data_section = {"format": "folder", "root": str(data), "train": {"split": "train"}, "test": None,
                    "val_fraction": 0.1, "batch_size": model["batch"]}
    if not defaults:
        data_section.update(num_workers=0, cache_dir="off")
    return {"name": "epochs", "out": str(out),
            "model": {"preset": None, "embed_dim": model["embed_dim"], "depth": model["depth"],
                      "num_heads": model["num_heads"], "patch_size": 16},
            "features": {"num_mel_bins": 128, "target_length": 512, "mean": -4.0, "std": 4.0},
            "data": data_section, "augment": {"freqm": 24, "timem": 96},
            "train": {"precision": "auto", "progress": False, "tensorboard": False, "eval_patch_sizes": [16]},
            "phases": [{"epochs": 2, "compression": compression}]}


def fsdd_recipe(fsdd: Path, out: Path, compression: str, defaults: bool) -> dict:
    """``recipes/fsdd/digits_ast16.yaml`` as shipped (FSDD, 64 frames, batch 32), two epochs."""
    import yaml

    raw = yaml.safe_load((ROOT / "recipes" / "fsdd" / "digits_ast16.yaml").read_text())
    raw["out"], raw["data"]["root"], raw["data"]["test"] = str(out), str(fsdd), None
    raw["train"].update(progress=False, tensorboard=False)
    raw["phases"] = [{"epochs": 2, "compression": compression}]
    if not defaults:
        raw["data"].update(num_workers=0, cache_dir="off")
    return raw


def epoch_seconds(raw: dict) -> tuple[list[float], float]:
    """Training seconds of each epoch, and the FLOPs of one epoch."""
    from flexiast.config import build_config
    from flexiast.engine import train

    with contextlib.redirect_stdout(io.StringIO()):
        summary = train(build_config(raw))
    history = json.loads((Path(raw["out"]) / "history.json").read_text())
    cum = [h["train_seconds_cum"] for h in history]
    return [cum[0], cum[1] - cum[0]], summary["train_flops"] / len(history)


def measure(quick: bool = False, fsdd: str | None = None) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="flexiast-epochs-"))
    old = os.environ.get("FLEXIAST_CACHE_DIR")
    cases = []
    for name, model in (QUICK if quick else MODELS).items():
        data = tmp / f"data-{model['clips']}"
        cases.append((name, model, ["fshift:4"], lambda out, comp, d, m=model, data=data: recipe(data, out, m, comp, d)))
    if fsdd and not quick:
        cases.append(("FSDD recipe AST on FSDD (digits_ast16.yaml, 64 frames)",
                      dict(clips=2430, batch=32, old=True), ["fshift:2", "fshift:4"],
                      lambda out, comp, d: fsdd_recipe(Path(fsdd), out, comp, d)))
    rows = []
    try:
        for name, model, coarse, build in cases:
            data = tmp / f"data-{model['clips']}"
            if "embed_dim" in model and not data.exists():
                write_clips(data, model["clips"], 1.0 if quick else SECONDS)
            row = {"model": name, "clips": model["clips"], "batch": model["batch"], "coarse": coarse}
            for defaults in (True, False) if model["old"] else (True,):
                os.environ["FLEXIAST_CACHE_DIR"] = str(tmp / f"cache-{name}")
                shutil.rmtree(tmp / f"cache-{name}", ignore_errors=True)
                for comp in ["none"] + coarse:
                    out = tmp / "run"
                    shutil.rmtree(out, ignore_errors=True)
                    secs, fl = epoch_seconds(build(out, comp, defaults))
                    row[(defaults, comp)] = {"seconds": secs, "flops": fl}
            rows.append(row)
    finally:
        if old is None:
            os.environ.pop("FLEXIAST_CACHE_DIR", None)
        else:
            os.environ["FLEXIAST_CACHE_DIR"] = old
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def ratios(row: dict, defaults: bool, comp: str) -> tuple[float, float, float]:
    """FLOP ratio, cold and warm time ratios of a ``comp`` epoch over a full one."""
    full, coarse = row[(defaults, "none")], row[(defaults, comp)]
    return (coarse["flops"] / full["flops"], coarse["seconds"][0] / full["seconds"][0],
            coarse["seconds"][1] / full["seconds"][1])


def section(rows: list[dict]) -> str:
    from flexiast.data.loader import loader_workers

    lines = ["## Coarse epochs against full epochs, out of the box", "",
             "`python benchmarks/bench_epochs.py`. " + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(), "",
             f"Defaults on this machine: {loader_workers('auto')} loader workers, the feature cache on.", ""]
    body = []
    for r in rows:
        for defaults in (True, False) if (False, "none") in r else (True,):
            for comp in r["coarse"]:
                flop, cold, warm = ratios(r, defaults, comp)
                full, coarse = r[(defaults, "none")]["seconds"], r[(defaults, comp)]["seconds"]
                body.append([r["model"], "defaults" if defaults else "no cache, no worker",
                             f"{r['clips']} / {r['batch']}", comp, f"{full[0]:.1f} / {full[1]:.1f}",
                             f"{coarse[0]:.1f} / {coarse[1]:.1f}", f"{flop:.0%}", f"{cold:.0%}", f"{warm:.0%}",
                             f"{100 * (warm - flop):+.0f}"])
    lines += table(["model", "loader", "clips / batch", "coarse", "full epoch s, cold / warm",
                    "coarse epoch s, cold / warm", "FLOP ratio", "time ratio, cold", "time ratio, warm",
                    "warm - FLOP, points"], body)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    run_script(__doc__, measure, section, fsdd=True)
