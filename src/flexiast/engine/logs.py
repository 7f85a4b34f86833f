"""What a run writes as it goes: ``config.yaml`` and the lines printed when it starts,
``steps.csv`` (per logged step, per rank), ``metrics.csv`` and ``history.json`` (per epoch,
rank 0), TensorBoard scalars, and the epoch line printed.

On resume the rows written after the checkpoint being resumed are dropped first
(:meth:`RunLogs.trim`), so no step or epoch appears twice.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml

from ..atomic import write_text_atomic, writing
from ..config import config_to_dict
from ..constants import AUTO

__all__ = ["RunLogs", "announce", "format_seconds", "unreadable_report", "patch_text", "step_row", "epoch_record",
           "epoch_line", "progress_bar"]


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def announce(run_dir: Path, cfg, info, precision, workers: int, cache_note: str) -> None:
    """Write the resolved recipe to ``config.yaml`` and print what the run trains on: the
    device, ranks and precision, the loader workers and the feature cache (rank 0)."""
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    print(f"{cfg.name}: training on {info.device} x {info.world_size}, precision {precision}", flush=True)
    auto = " (auto)" if cfg.data.num_workers == AUTO else ""
    print(f"{cfg.name}: data: {workers} loader worker{'s' * (workers != 1)}{auto}, feature cache {cache_note}",
          flush=True)


def patch_text(point) -> str:
    """A step's patch, ``16x16``, ``-`` for a point without one (a family whose calls take no
    patch size), or the text that stands for it (``per clip``: each clip drew its own)."""
    if isinstance(point, str):
        return point
    return "-" if point.patch is None else f"{point.patch[0]}x{point.patch[1]}"


def step_row(step: int, phase: int, epoch: int, out: dict, clips_per_s: float) -> dict:
    """A row of ``steps.csv``: an optimizer step's result ``out`` (loss, lr, patch size,
    skipped reads and their files) where the run was."""
    return {"step": step, "phase": phase, "epoch": epoch, "loss": out["loss"], "lr": out["lr"],
            "patch": patch_text(out["patch"]), "clips_per_s": round(clips_per_s, 2), "skipped": out["skipped"],
            "unreadable": " | ".join(out["errors"])}


def epoch_record(cfg, phase: int, progress, accounting: list, train_out: dict, val: dict, val_select: float) -> dict:
    """An epoch's entry in ``history.json`` (its row in ``metrics.csv``): where the run is
    (``progress`` before the epoch is counted), the training loss and rate, the cost so far
    over all phases, validation and its selection number, and the epoch's unreadable reads
    in training and validation with their files."""
    p, ph = progress, cfg.phases[phase]
    return {"phase": phase, "phase_name": ph.name or f"phase{phase}", "compression": ph.compression,
            "epoch": p.epoch + 1, "phase_epoch": p.phase_epoch + 1, "step": p.step,
            "final_phase": phase == len(cfg.phases) - 1, **train_out,
            "train_flops_cum": sum(a.train_flops for a in accounting),
            "train_seconds_cum": sum(a.train_seconds for a in accounting),
            "val": val, "val_select": val_select,
            "unreadable": {"train_skipped": p.skipped, "val_skipped": val["_skipped"],
                           "files": sorted(set(p.unreadable) | set(val["_unreadable"]))}}


def epoch_line(record: dict, phase_epochs: int, metric: str, seconds_left: float) -> str:
    """The line printed after an epoch."""
    return (f"phase {record['phase']} epoch {record['phase_epoch']}/{phase_epochs} (global {record['epoch']}): "
            f"loss {record['train_loss']:.4f}, val {metric} {record['val_select']:.4f}, "
            f"{record['train_flops_cum'] / 1e12:.3f} TFLOPs, {record['train_seconds_cum']:.1f} s, "
            f"about {format_seconds(seconds_left)} left")


def progress_bar(*, total: int, initial: int, desc: str):
    """A tqdm bar over an epoch's steps (``train.progress``), started at ``initial`` steps."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, leave=False, dynamic_ncols=True, desc=desc)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with writing(path), open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


class RunLogs:
    """The log files of one rank of a run in ``run_dir``."""

    def __init__(self, run_dir: Path, *, rank: int, is_main: bool, tensorboard: bool):
        self.run_dir, self.rank, self.is_main = run_dir, rank, is_main
        self.tensorboard = tensorboard and is_main
        self._writer = None
        self._purge_step = 1

    @property
    def steps_path(self) -> Path:
        """Every rank logs its own draws (``steps.rank1.csv``, ...), so agreement can be checked."""
        return self.run_dir / ("steps.csv" if self.is_main else f"steps.rank{self.rank}.csv")

    def trim(self, step: int, epoch: int) -> None:
        """Drop rows after ``step`` (steps) and ``epoch`` (epochs): those of an attempt killed
        after the checkpoint being resumed (all rows for a fresh start at 0). TensorBoard
        events from ``step + 1`` on are purged likewise when its writer opens."""
        self._purge_step = step + 1
        logs = [(self.steps_path, "step", step)]
        if self.is_main:
            logs.append((self.run_dir / "metrics.csv", "epoch", epoch))
        for path, key, last in logs:
            if path.exists():
                rows = [r for r in _read_csv(path) if int(r[key]) <= last]
                if not rows:
                    path.unlink()
                    continue
                buf = io.StringIO(newline="")
                w = csv.DictWriter(buf, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
                write_text_atomic(path, buf.getvalue())

    def step(self, row: dict) -> None:
        _append_csv(self.steps_path, row)
        self.scalar("train/loss", row["loss"], row["step"])
        self.scalar("train/lr", row["lr"], row["step"])

    def epoch(self, record: dict, history: list[dict]) -> None:
        """``record``'s row in ``metrics.csv`` (validation flattened as ``val_<metric>@<size>``, the
        per-epoch test of ``train.test_every_epoch`` as ``test_<metric>@<size>``) and the whole
        ``history.json``; rank 0 only."""
        row = {k: v for k, v in record.items() if k not in ("val", "test")}
        for split in ("val", "test"):
            for name, metrics in record.get(split, {}).items():
                if name.startswith("_"):
                    continue
                for m, v in metrics.items():
                    row[f"{split}_{m}@{name}"] = v
        _append_csv(self.run_dir / "metrics.csv", row)
        write_text_atomic(self.run_dir / "history.json", json.dumps(history, indent=1))

    def scalar(self, tag: str, value: float, step: int) -> None:
        writer = self._tb()
        if writer is not None:
            writer.add_scalar(tag, value, step)

    def _tb(self):
        if self._writer is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._writer = False
            else:
                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self._purge_step)
        return self._writer or None

    def close(self) -> None:
        if self._writer:
            self._writer.close()


def unreadable_report(history: list[dict], left_out: dict[str, list[str]], summary: dict) -> dict:
    """A run's unreadable clips under ``on_error: skip``: those the scan left out (per split),
    the reads skipped in training, validation and test (a clip read in 3 epochs counts 3
    times), and every file involved once, with its reason."""
    epochs = [h.get("unreadable", {"train_skipped": 0, "val_skipped": 0, "files": []}) for h in history]
    files = {m for msgs in left_out.values() for m in msgs}
    files |= {f for u in epochs for f in u["files"]}
    tests = list(summary.get("test", {}).values())[:1]  # the test split is read once per model; count once
    files |= {f for t in tests for f in t["_unreadable"]}
    train = sum(u["train_skipped"] for u in epochs)
    val = sum(u["val_skipped"] for u in epochs)
    test = sum(t["_skipped"] for t in tests)
    return {"left_out_at_scan": {k: len(v) for k, v in left_out.items()},
            "skipped_reads": train + val + test, "skipped_in_training": train, "skipped_in_validation": val,
            "skipped_in_test": test, "files": sorted(files)}
