"""``flexiast demo``: both ideas of FlexiAST end to end on a built-in dataset, in minutes on a CPU.

1. **Data.** :func:`make_dataset` writes a procedural set of eight spectro-temporal sound
   classes as WAV files (``OUT/data/{train,test}/<class>/*.wav``), deterministic in the
   seed. The classes differ in spectral shape (tone, harmonic stack, band of noise), in
   time (rising against falling sweeps) and in modulation rate (tone pulses at 4-8 Hz
   against tremolo at 12-20 Hz), so a patch that is too coarse in time or frequency
   loses information and accuracy depends on the patch size, as it does on real audio.
   Each clip has a random pitch, onset, length, level and background noise (10-30 dB SNR).
2. **Training.** A standard AST at patch 16 and a FlexiAST (patch size drawn per step from
   P = {8, ..., 48}, FlexiAST Sec. 2.3) with the same network, data, optimiser and number
   of steps, through the normal recipe path (the recipes are written to ``OUT/recipes``).
   As the paper starts FlexiAST from a trained standard AST, both models continue one
   shared run at patch 16 (the first half of their budget): AST-16 stays at 16, FlexiAST
   draws its sizes (:func:`demo_recipes`). Each epoch prints a line with the time left.
3. **Evaluation.** Both at every size in P with PI-resize and with bilinear resizing of
   the kernel (FlexiAST Table 1 and Fig. 5), written as profiles, a Markdown report
   (``OUT/report.md``) and a figure (``OUT/patch_sizes.png``).

The generator is written here rather than taken from a library because no audio data set
package is small, offline and procedural; it needs only NumPy.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from .constants import PATCH_SIZES

__all__ = ["CLASSES", "synth_clip", "make_dataset", "demo_recipes", "run_demo"]

SAMPLE_RATE = 16000
SECONDS = 0.96                         # 96 frames at AST's 10 ms shift
FRAMES = 96
BATCH = 32                             # clips per step
WARMUP = 50                            # steps of linear learning-rate warm-up
CLASSES = ("rising_sweep", "falling_sweep", "harmonic_stack", "tone_pulses", "tremolo_tone", "vibrato_tone",
           "noise_band", "noise_bursts")


def _envelope(n: int, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Active between a random onset and offset (0.45-0.75 s long) with 10 ms raised-cosine ramps."""
    length = int(rng.uniform(0.45, 0.75) * SAMPLE_RATE)
    start = int(rng.uniform(0, n - length))
    env = np.zeros(n)
    ramp = int(0.01 * SAMPLE_RATE)
    seg = np.ones(length)
    seg[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    seg[-ramp:] = seg[:ramp][::-1]
    env[start:start + length] = seg
    return env, start, length


def _sweep(t: np.ndarray, start: int, length: int, f_from: float, f_to: float) -> np.ndarray:
    """Exponential sweep from ``f_from`` to ``f_to`` Hz over the active segment (phase = 2 pi cumsum f / sr)."""
    tau = np.clip((np.arange(t.size) - start) / length, 0.0, 1.0)
    freq = f_from * (f_to / f_from) ** tau
    return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)


def _band_noise(n: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spectrum, n)
    return out / (np.abs(out).max() + 1e-9)


def synth_clip(label: int, rng: np.random.Generator) -> np.ndarray:
    """One 0.96 s clip of class ``CLASSES[label]`` at 16 kHz, float32 in [-1, 1]."""
    n = int(SECONDS * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    env, start, length = _envelope(n, rng)
    name = CLASSES[label]
    if name in ("rising_sweep", "falling_sweep"):
        low, ratio = rng.uniform(250, 900), rng.uniform(2.5, 5.0)
        x = _sweep(t, start, length, low, low * ratio) if name == "rising_sweep" else \
            _sweep(t, start, length, low * ratio, low)
    elif name == "harmonic_stack":
        f0 = rng.uniform(150, 450)
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 7))
    elif name == "tone_pulses":
        f, rate = rng.uniform(500, 3000), rng.uniform(4, 8)
        x = np.sin(2 * np.pi * f * t) * (((t * rate + rng.uniform()) % 1.0) < 0.35)
    elif name == "tremolo_tone":
        f, rate = rng.uniform(500, 3000), rng.uniform(12, 20)
        x = np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
    elif name == "vibrato_tone":
        fc, depth, rate = rng.uniform(500, 2500), rng.uniform(0.04, 0.08), rng.uniform(5, 8)
        freq = fc * (1 + depth * np.sin(2 * np.pi * rate * t))
        x = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)
    elif name == "noise_band":
        fc = rng.uniform(800, 5000)
        x = _band_noise(n, fc / 1.3, fc * 1.3, rng)
    else:  # noise_bursts: 3-5 bursts of 30-60 ms inside the active segment
        x = np.zeros(n)
        for _ in range(int(rng.integers(3, 6))):
            width = int(rng.uniform(0.03, 0.06) * SAMPLE_RATE)
            at = start + int(rng.uniform(0, max(1, length - width)))
            x[at:at + width] = rng.standard_normal(min(width, n - at))
    x = x * env
    x = x / (np.abs(x).max() + 1e-9)
    snr_db = rng.uniform(10, 30)
    noise = rng.standard_normal(n)
    noise *= np.sqrt(np.mean(x[env > 0] ** 2) / 10 ** (snr_db / 10)) / noise.std()
    y = (x + noise) * 10 ** (rng.uniform(-10, 0) / 20)
    return (0.9 * y / max(1.0, np.abs(y).max())).astype(np.float32)


def make_dataset(root: str | Path, *, train_per_class: int = 150, test_per_class: int = 25, seed: int = 0) -> dict:
    """Write the dataset as ``root/{train,test}/<class>/NNNN.wav`` (16-bit PCM); returns the counts.

    Clip ``i`` of class ``c`` in split ``s`` is drawn from ``default_rng([seed, s, c, i])``:
    the same arguments always give the same files.
    """
    root = Path(root)
    counts = {}
    for split_id, (split, per_class) in enumerate((("train", train_per_class), ("test", test_per_class))):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                rng = np.random.default_rng([seed, split_id, label, i])
                sf.write(folder / f"{i:04d}.wav", synth_clip(label, rng), SAMPLE_RATE, subtype="PCM_16")
        counts[split] = per_class * len(CLASSES)
    return counts


def demo_recipes(data: Path, out: Path, *, epochs: int, mean: float, std: float, seed: int = 0) -> dict[str, dict]:
    """Three recipes: one shared start, then the two models, on the same network, data,
    optimiser and number of steps.

    ``shared`` trains a standard AST at patch 16 for the first ``epochs // 2`` epochs. Both
    models continue from its last weights for the remaining epochs with a fresh optimiser
    and schedule: ``ast16`` at patch 16, ``flexiast`` drawing its patch size per step from
    P. FlexiAST Sec. 3 initialises FlexiAST from a trained standard AST; sharing the start
    makes the comparison exact (the two differ in the patch sizes of the second half only)
    and saves training that start twice.
    """
    first = epochs // 2
    shared = out / "runs" / "shared"

    def one(name: str, phase: dict, eval_sizes: list[int], init: bool) -> dict:
        train = {"precision": "auto", "eval_patch_sizes": eval_sizes, "progress": False, "tensorboard": False}
        if len(eval_sizes) > 1:
            train["select"] = "mean"
        raw = {"name": name, "seed": seed, "out": str(out / "runs" / name),
               "model": {"preset": None, "embed_dim": 128, "depth": 4, "num_heads": 4, "patch_size": 16},
               "features": {"num_mel_bins": 128, "target_length": FRAMES, "mean": round(mean, 4),
                            "std": round(std, 4)},
               "data": {"format": "folder", "root": str(data), "train": {"split": "train"},
                        "test": {"split": "test"}, "val_fraction": 0.1, "batch_size": BATCH},
               "augment": {"freqm": 24, "timem": 16},
               "optimizer": {"name": "adam", "lr": 1.0e-3, "weight_decay": 5.0e-7, "betas": [0.95, 0.999]},
               "schedule": {"name": "cosine", "warmup_steps": WARMUP},
               "train": train, "phases": [phase]}
        if init:
            raw["init"] = {"path": str(shared / "last.pt")}
        return raw

    fixed = {"sampler": "fixed", "sizes": [16]}
    return {"shared": one("shared", {"name": "standard", "epochs": first, "patch": fixed}, [16], False),
            "ast16": one("ast16", {"name": "standard", "epochs": epochs - first, "patch": fixed}, [16], True),
            "flexiast": one("flexiast", {"name": "flexible", "epochs": epochs - first,
                                         "patch": {"sampler": "uniform", "sizes": list(PATCH_SIZES)}},
                            [8, 16, 32, 48], True)}


def _table(profiles: dict[str, dict]) -> str:
    cols = list(profiles)
    first = profiles[cols[0]]["rows"]
    lines = ["| patch | tokens | GFLOPs/clip | " + " | ".join(cols) + " |", "|---|---:|---:|" + "---:|" * len(cols)]
    for i, row in enumerate(first):
        lines.append(f"| {row['size']}x{row['size']} | {row['tokens']} | {row['gflops']:.3f} | "
                     + " | ".join(f"{profiles[c]['rows'][i]['accuracy']:.3f}" for c in cols) + " |")
    lines.append("| mean | | | " + " | ".join(
        f"{statistics.mean(r['accuracy'] for r in profiles[c]['rows']):.3f}" for c in cols) + " |")
    return "\n".join(lines)


def run_demo(out: str | Path = "flexiast-demo", *, epochs: int = 30, seed: int = 0, train_per_class: int = 150,
             test_per_class: int = 25, say=print) -> dict:
    """Generate, train the shared start and both models, evaluate at every size with PI and BL, report.
    Returns the paths and profiles."""
    from .config import build_config
    from .data import dataset_stats, read_manifest
    from .deploy.profiling import evaluate_checkpoint
    from .features import FeatureConfig
    from .hardware import resolve_precision, select_device
    from .report import plot_profiles
    from .engine import train
    from .engine.logs import format_seconds

    if epochs < 2:
        raise ValueError(f"epochs={epochs}: the demo needs at least 2 (half shared, half per model)")
    out = Path(out).absolute()
    if (out / "runs").exists():
        raise FileExistsError(f"{out} already holds a demo; remove it or pass --out DIR")
    start = time.perf_counter()
    data = out / "data"
    counts = make_dataset(data, train_per_class=train_per_class, test_per_class=test_per_class, seed=seed)
    stats = dataset_stats(read_manifest("folder", root=data, split="train"),
                          FeatureConfig(num_mel_bins=128, target_length=FRAMES))
    say(f"[1/3] data: {counts['train']} training and {counts['test']} test clips of {len(CLASSES)} procedural "
        f"sound classes in {data} ({time.perf_counter() - start:.0f} s)")
    recipes = demo_recipes(data, out, epochs=epochs, mean=stats["mean"], std=stats["std"], seed=seed)
    device = select_device("auto")
    say(f"      training on {device} in {resolve_precision('auto', device)}")
    (out / "recipes").mkdir(parents=True, exist_ok=True)
    summaries = {}
    first = epochs // 2
    what = {"shared": f"the shared start (a standard AST at patch 16) for {first} epochs",
            "ast16": f"AST-16 from the shared start for {epochs - first} more epochs at patch 16",
            "flexiast": f"FlexiAST from the shared start for {epochs - first} more epochs, patch size drawn from P"}
    for key, raw in recipes.items():
        (out / "recipes" / f"{key}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        t0 = time.perf_counter()
        say(f"[2/3] training {what[key]} (recipe {out / 'recipes' / f'{key}.yaml'})")
        log, console = io.StringIO(), sys.stdout

        def progress(record: dict, left: float, total: int = raw["phases"][0]["epochs"]) -> None:
            with contextlib.redirect_stdout(console):
                say(f"      epoch {record['epoch']:>2}/{total}: loss {record['train_loss']:.3f}, validation accuracy "
                    f"{record['val_select']:.3f}, {time.perf_counter() - t0:.0f} s, "
                    f"about {format_seconds(left)} left in this training")

        with contextlib.redirect_stdout(log):
            summaries[key] = train(build_config(raw), on_epoch=progress)
        (out / "runs" / f"{key}.log").write_text(log.getvalue())
        s = summaries[key]
        say(f"      best validation accuracy {s['best_val']:.3f} at epoch {s['best_epoch']}, "
            f"{s['train_flops'] / 1e12:.2f} training TFLOPs, {time.perf_counter() - t0:.0f} s")
    say("[3/3] evaluating both at every patch size, PI and BL")
    profiles = {}
    for key, label in (("flexiast", "FlexiAST"), ("ast16", "AST-16")):
        for resize in ("pi", "bl"):
            files = evaluate_checkpoint(out / "runs" / key, resize=resize, out=out / "eval" / f"{key}-{resize}",
                                        store=False, latency_runs=5, label=f"{label} ({resize.upper()})")["files"]
            profiles[f"{label} {resize.upper()}"] = json.loads(files["json"].read_text())
    figure = plot_profiles(list(profiles.values()), out / "patch_sizes.png", labels=list(profiles),
                           title="flexiast demo: test accuracy at every patch size")
    table = _table(profiles)
    chance = 1 / len(CLASSES)
    report = out / "report.md"
    report.write_text("\n".join([
        "# flexiast demo", "",
        f"Procedural data: {len(CLASSES)} classes ({', '.join(CLASSES)}), {counts['train']} training clips "
        f"(10% held out for validation) and {counts['test']} test clips of {SECONDS} s, seed {seed}.",
        f"Both models: 128 wide, 4 blocks, 4 heads, stored patch 16, 128 mel bins x {FRAMES} frames, "
        f"{epochs} epochs of the same steps. Both start from one standard AST trained at patch 16 for "
        f"{epochs // 2} epochs (`runs/shared`; the paper initialises FlexiAST from a trained standard AST); "
        f"then AST-16 trains {epochs - epochs // 2} more epochs at 16 and FlexiAST as many with its patch size "
        f"drawn per step from P = {list(PATCH_SIZES)}, each with a fresh optimiser and schedule. "
        f"Training precision: {summaries['ast16']['precision']['name']} "
        f"({summaries['ast16']['precision']['reason']}). Recipes: `recipes/`; runs: `runs/`; profiles: `eval/`.",
        "",
        f"Test accuracy (chance {chance:.3f}); PI = PI-resize of the patch embedding, BL = bilinear:", "",
        table, "", "![accuracy against patch size and GFLOPs](patch_sizes.png)", "",
        "What to look for (FlexiAST, Interspeech 2023, Table 1 and Fig. 5): the standard AST is accurate only "
        "near its own patch size 16; the FlexiAST holds up at every size, so one model serves every "
        "compute budget (GFLOPs fall from 8x8 to 48x48 by two orders of magnitude); "
        "bilinear resizing breaks the FlexiAST, which was trained with PI-resize.",
        "", f"Total time {time.perf_counter() - start:.0f} s."]) + "\n")
    say("\n" + table + "\n")
    say(f"report: {report}\nfigure: {figure}\nruns and recipes: {out / 'runs'}, {out / 'recipes'} "
        f"(total {time.perf_counter() - start:.0f} s)")
    return {"report": report, "figure": figure, "profiles": profiles, "summaries": summaries}
