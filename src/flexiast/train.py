"""The training engine: phases, per-step patch sizes, distillation, checkpoints, DDP.

A run is a list of phases (:class:`flexiast.config.PhaseConfig`). Entering phase ``i``
adapts the model to that phase's input (coarse-to-fine, Sec. 2.2): the positional grid
is resized bilinearly to the grid of the phase's input (``target_length / C`` frames
under fshift or pooling), and in a ``patch:C`` phase the stored kernel becomes
``p x Cp``, moved with PI-resize or bilinear interpolation (Patch-PI / Patch-BL, Sec. 2.3);
leaving it moves the kernel back the same way. The optimizer and the learning-rate
schedule restart with every phase. FlexiAST (Sec. 2.3) is a phase whose sampler draws
a patch size per optimizer step; the size of step ``s`` depends only on ``(seed, s)``.

One optimizer step = ``accum_steps`` micro-batches of ``batch_size / (world * accum)``
clips on each rank. Training epochs drop the last incomplete batch, so every step has
the same shape and FLOP count. Validation runs at the end of every epoch on the
validation split at ``train.eval_patch_sizes``; ``best.safetensors`` is the final phase's best
epoch on validation (never on test); the test split is evaluated once, at the end, with
the best (and, with weight averaging, the averaged) weights.

Everything a step depends on is a function of saved state: data order of ``(seed,
epoch)``, augmentation of ``(seed, epoch, clip)``, patch size of ``(seed, step)``, the
learning rate of the phase's step and epoch, dropout of the saved torch RNG state. So
``flexiast train --resume RUN_DIR`` continues a killed run to the same numbers.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import gc
import io
import json
import logging
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from . import distributed, faults
from .atomic import write_text_atomic
from .checkpoints import _adapt, load_pretrained, load_state_dict, save_safetensors
from .config import ConfigError, RunConfig, build_config, config_to_dict
from .data import AudioDataset, ShardedSampler, read_manifest, scan
from .data.loader import AUTO, OFF, EpochKeys, loader_workers, make_loader, resolve_cache
from .data.readers import DataError, Manifest
from .data.samplers import BalancedSampler, ast_balanced_weights
from .evaluate import evaluate_model
from .flops import flops
from .hardware import HardwareError, device_capability, resolve_precision
from .losses import distillation_loss, supervised_loss
from .model import AST, ASTConfig
from .optim import build_optimizer, lr_factor
from .patch_sampler import PatchSampler
from .resize import to_pair
from .run_checkpoint import WEIGHT_FILES, load_latest, run_weights, save_run_checkpoint

__all__ = ["Trainer", "train", "resume"]

log = logging.getLogger(__name__)


# -- data -----------------------------------------------------------------------------
def _holdout(manifest: Manifest, fraction: float, seed: int) -> tuple[Manifest, Manifest]:
    """Split ``fraction`` of the clips off as validation, by a seeded permutation."""
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(len(manifest.items))
    n_val = max(1, int(round(fraction * len(order))))
    val_idx, train_idx = set(order[:n_val].tolist()), order[n_val:]
    train = Manifest([manifest.items[i] for i in sorted(train_idx)], manifest.classes, manifest.multilabel,
                     manifest.name)
    val = Manifest([manifest.items[i] for i in sorted(val_idx)], manifest.classes, manifest.multilabel,
                   manifest.name + "-val")
    return train, val


def load_splits(cfg: RunConfig) -> tuple[dict[str, Manifest], dict[str, list[str]]]:
    """The train, val and test manifests of a run, checked for matching classes and scanned,
    and per split the clips the scan left out under ``on_error: skip`` ("file: reason")."""
    d = cfg.data
    common = dict(d.options)
    if d.root is not None:
        common["root"] = d.root

    def read(name: str, options: dict) -> Manifest:
        try:
            return read_manifest(d.format, **{**common, **options})
        except DataError as e:  # a missing file or a wrong option: name the setting too
            raise ConfigError(f"data.{name}: {e}") from None

    splits = {"train": read("train", d.train)}
    if d.val is not None:
        splits["val"] = read("val", d.val)
    else:
        splits["train"], splits["val"] = _holdout(splits["train"], d.val_fraction, cfg.seed)
    if d.test is not None:
        splits["test"] = read("test", d.test)
    classes = splits["train"].classes
    for name, m in splits.items():
        if m.classes != classes:
            raise ConfigError(f"data.{name}: its classes differ from the training split's "
                              f"({len(m.classes)} against {len(classes)}); give the reader the same classes")
    left_out = {name: [] for name in splits}
    if d.scan:
        for name in splits:
            splits[name], report = scan(splits[name], on_error=d.on_error, max_bad_fraction=d.max_bad_fraction)
            left_out[name] = [f"{msg} (entry {entry})" for entry, msg in report.problems]
            if report.problems:
                log.warning("data.%s: left out %d unreadable clips, e.g. %s", name, len(report.problems),
                            report.problems[0][1])
    return splits, left_out


def _eval_loader(dataset, batch_size: int, info: distributed.DistInfo, workers: int):
    """This rank's share of an evaluation set, unpadded (indices rank, rank + W, ...)."""
    indices = list(range(info.rank, len(dataset), info.world_size))
    return make_loader(dataset, batch_size=batch_size, sampler=indices, workers=min(workers, len(indices)))


# -- the engine -----------------------------------------------------------------------
class Trainer:
    """Runs one :class:`RunConfig` in ``run_dir`` (``cfg.out_dir``), fresh or resumed."""

    def __init__(self, cfg: RunConfig, run_dir: Path | None = None, *, resume_state: dict | None = None,
                 on_epoch=None):
        self.cfg = cfg
        self.on_epoch = on_epoch  # called on rank 0 after each epoch with (record, seconds_left)
        self.run_dir = Path(run_dir or cfg.out_dir)
        try:  # the device and the precision on it, before any file is read
            self.info = distributed.setup(cfg.train.device)
            self.precision = resolve_precision(cfg.train.precision, self.info.device, setting="train.precision")
        except HardwareError as e:
            raise ConfigError(str(e)) from None
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        t = cfg.train
        world, accum = self.info.world_size, t.accum_steps
        if cfg.data.batch_size % (world * accum):
            raise ConfigError(f"data.batch_size: {cfg.data.batch_size} is not divisible by {world} ranks x "
                              f"{accum} accumulation steps")
        self.micro_batch = cfg.data.batch_size // (world * accum)
        self.features = cfg.feature_config()
        # Weight files first: an unreadable or untrusted file is refused before the data scan.
        teacher = load_pretrained(cfg.loss.teacher) if cfg.loss.teacher else None
        if cfg.init.path is not None and resume_state is None:
            load_state_dict(cfg.init.path)
        self.splits, self.left_out = self._load_splits()
        train = self.splits["train"]
        self.multilabel = train.multilabel
        self.loss_kind = cfg.loss.name if cfg.loss.name != "auto" else ("bce" if self.multilabel else "ce")
        self.metric = "mAP" if self.multilabel else "accuracy"
        self.num_classes = len(train.classes)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.info.world_size))
        self.workers = loader_workers(cfg.data.num_workers, device=self.info.device.type, local_world_size=local_world)
        self.cache, self.cache_note = resolve_cache(cfg.data.cache_dir, estimate_bytes=self._feature_bytes())
        self._loaders: dict = {}
        self.teacher = self._check_teacher(teacher)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = {"phase": 0, "step": 0, "phase_step": 0, "epoch": 0, "phase_epoch": 0, "batch": 0,
                         "done": False, "entered": -1,
                         "loss_sum": 0.0, "loss_clips": 0,  # this epoch's so far, for its mean loss
                         "skipped": 0, "unreadable": []}  # this epoch's unreadable clip reads (all ranks)
        self.accounting = [{"train_flops": 0, "train_seconds": 0.0, "val_seconds": 0.0, "steps": 0, "clips": 0}
                           for _ in cfg.phases]
        self.history: list[dict] = []
        self.best = {"value": -math.inf, "epoch": None}
        self.wa_sum, self.wa_count = None, 0
        self._flop_cache: dict = {}
        self._writer = None
        if resume_state is None:
            self._trim_logs()  # rows of an earlier attempt killed before its first checkpoint
            torch.manual_seed(cfg.seed)
            self.model = self._initial_model()
            if self.info.enabled:  # own dropout / drop-path masks per rank (weights come from rank 0)
                torch.manual_seed(cfg.seed + 1_000_003 * self.info.rank)
        else:
            self._restore(resume_state)

    # -- setup ---------------------------------------------------------------------
    def _load_splits(self) -> tuple[dict, dict]:
        """:func:`load_splits` on rank 0, its result (or its error) broadcast to every rank:
        ranks that scanned on their own could disagree (a file that vanishes between two
        scans) and then shard different manifests."""
        if not self.info.enabled:
            return load_splits(self.cfg)
        result = None
        if self.info.is_main:
            try:
                result = ("ok", load_splits(self.cfg))
            except ValueError as e:  # ConfigError, DataError: every rank raises it
                result = ("error", e)
        kind, value = distributed.broadcast_object(result, self.info)
        if kind == "error":
            raise value
        return value

    def _feature_bytes(self) -> int:
        """What caching this run's features takes: every clip of every split, once per input
        resolution the phases read (fshift changes it, pooling does not), float32."""
        f = self.features
        frames = {f.fbank_frames(self.cfg.phase_compression(i)) for i in range(len(self.cfg.phases))}
        clips = sum(len(m.items) for m in self.splits.values())
        return clips * sum(frames) * f.num_mel_bins * 4

    def base_model_config(self) -> ASTConfig:
        cfg, f = self.cfg, self.features
        return ASTConfig(num_classes=self.num_classes, input_fdim=f.num_mel_bins, input_tdim=f.target_length,
                         patch_size=cfg.base_patch(), stride=cfg.model.stride, prefix_tokens=cfg.model.prefix_tokens,
                         drop_rate=cfg.model.drop_rate, drop_path_rate=cfg.model.drop_path_rate,
                         labels=tuple(self.splits["train"].classes), **cfg.model_widths())

    def _initial_model(self) -> AST:
        target = self.base_model_config()
        init = self.cfg.init
        if init.path is None:
            return AST(config=target)
        hints = {k: getattr(init, k) for k in ("source_stride", "source_input_tdim", "source_input_fdim")
                 if getattr(init, k) is not None}
        overrides = dict(num_classes=target.num_classes, input_fdim=target.input_fdim, input_tdim=target.input_tdim,
                         patch_size=target.patch_size, stride=self.cfg.model.stride, drop_rate=target.drop_rate,
                         drop_path_rate=target.drop_path_rate, labels=target.labels, **hints)
        model = load_pretrained(init.path, **overrides)
        got = model.config
        if (got.embed_dim, got.depth) == (target.embed_dim, target.depth) and got.num_heads != target.num_heads:
            # Weights do not store the head count (ImageNet and AST files): the recipe's describes them.
            model = load_pretrained(init.path, num_heads=target.num_heads, **overrides)
            got = model.config
        differ = [f"{k}={getattr(got, k)} (recipe: {getattr(target, k)})"
                  for k in ("embed_dim", "depth", "num_heads", "mlp_ratio", "prefix_tokens")
                  if getattr(got, k) != getattr(target, k)]
        if differ:
            warnings.warn(f"init.path: {init.path} sets {', '.join(differ)}; the weights' shapes are used",
                          stacklevel=2)
        return model

    def _check_teacher(self, teacher: AST | None) -> AST | None:
        if teacher is None:
            return None
        path, tc = self.cfg.loss.teacher, teacher.config
        if tc.num_classes != self.num_classes or tc.input_fdim != self.features.num_mel_bins:
            raise ConfigError(f"loss.teacher: {path} predicts {tc.num_classes} classes from {tc.input_fdim} mel bins; "
                              f"the run has {self.num_classes} classes and {self.features.num_mel_bins} bins")
        self.teacher_patch = self.cfg.loss.teacher_patch_size or tc.patch_size
        return teacher.to(self.info.device).eval().requires_grad_(False)

    def phase_model_config(self, i: int, current: ASTConfig) -> ASTConfig:
        """The model configuration of phase ``i``: its input length and stored kernel."""
        frames = self.features.frames(self.cfg.phase_compression(i))
        kernel = self.cfg.phase_kernel(i)
        d = current.to_dict()
        d.update(input_tdim=frames, patch_size=list(kernel))
        # The recipe's stride applies to the stored base kernel; a widened p x Cp kernel does not overlap.
        base_stride = self.cfg.model.stride
        d["stride"] = list(to_pair(base_stride, "model.stride")) if base_stride and kernel == self.cfg.base_patch() else None
        return ASTConfig.from_dict(d)

    def _transfer_method(self, i: int) -> str:
        """How the kernel moves into phase ``i``: that phase's, or the patch phase it leaves."""
        phases = self.cfg.phases
        if self.cfg.phase_compression(i).method == "patch" or i == 0:
            return phases[i].transfer
        return phases[i - 1].transfer

    def _enter_phase(self, i: int) -> None:
        """Adapt the model to phase ``i`` and start a fresh optimizer (Sec. 2.2)."""
        target = self.phase_model_config(i, self.model.config)
        if target != self.model.config:
            sd = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            overrides = {k: v for k, v in target.to_dict().items() if v != self.model.config.to_dict()[k]}
            new_cfg, sd, _ = _adapt(self.model.config, sd, overrides, kernel_resize=self._transfer_method(i))
            model = AST(config=new_cfg)
            model.load_state_dict(sd)
            self.model = model
            log.info("phase %d: model adapted to %s", i, new_cfg)
        self._build_phase(i)

    def _build_phase(self, i: int) -> None:
        cfg, info = self.cfg, self.info
        self.phase = i
        self.model.to(info.device)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.phase_optimizer(i))
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.precision.scaler)
        self.forward = self.model
        if info.enabled:
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
        if cfg.train.compile:
            import torch._dynamo as dynamo

            sizes = max(len(cfg.phase_patch_sizes(i)), len(cfg.eval_sizes()))
            dynamo.config.cache_size_limit = max(dynamo.config.cache_size_limit, 2 * sizes + 8)
            backend = cfg.train.compile if isinstance(cfg.train.compile, str) else "inductor"
            self.forward = torch.compile(self.forward, backend=backend, dynamic=False)
        ph = cfg.phases[i]
        self.sampler = PatchSampler([cfg.patch_pair(s, i) for s in (ph.patch.sizes or [None])], ph.patch.sampler,
                                    ph.patch.weights, seed=cfg.seed)
        comp = cfg.phase_compression(i)
        self.train_set = AudioDataset(self.splits["train"], self.features, compression=comp, augment=cfg.augment,
                                      train=True, cache=self.cache, on_error=cfg.data.on_error, seed=cfg.seed)
        self.val_set = AudioDataset(self.splits["val"], self.features, compression=comp, cache=self.cache,
                                    on_error=cfg.data.on_error, seed=cfg.seed)
        self._loaders = {}  # the previous phase's (and their workers) go
        n = len(self.train_set)
        if cfg.data.balanced:
            weights = ast_balanced_weights([it.labels for it in self.splits["train"].items], self.num_classes)
            self.data_sampler = BalancedSampler(weights, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
        else:
            self.data_sampler = ShardedSampler(n, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
        per_rank = math.ceil(n / info.world_size)
        self.steps_per_epoch = per_rank // (self.micro_batch * cfg.train.accum_steps)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"data.batch_size: {cfg.data.batch_size} is more than the {n} training clips")
        self.phase_total = ph.steps if ph.steps is not None else ph.epochs * self.steps_per_epoch
        self.phase_epochs = ph.epochs if ph.epochs is not None else math.ceil(self.phase_total / self.steps_per_epoch)

    def _autocast(self):
        return self.precision.autocast()

    # -- checkpoint state ----------------------------------------------------------
    def _rng_states(self) -> list[dict]:
        """Every rank's RNG state (a collective: all ranks call it)."""
        rng = {"torch": torch.get_rng_state()}
        if self.info.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.info.device)
        return distributed.gather_objects(rng, self.info)

    def state(self, rng: list[dict] | None = None) -> dict:
        return {
            "format": "flexiast-run", "version": 1,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_config": self.model.config.to_dict(),
            "run_config": config_to_dict(self.cfg),
            "inference": self.inference_info(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng or [],
            "progress": dict(self.progress),
            "accounting": copy.deepcopy(self.accounting),
            "history": copy.deepcopy(self.history),
            "best": dict(self.best),
            "extra": {"wa_sum": self.wa_sum, "wa_count": self.wa_count},
            "precision": self.precision.to_dict(),
        }

    def inference_info(self) -> dict:
        """What inference needs beyond the weights: the features, the current phase's
        compression (a model trained last on fshift or pooled input takes that input) and
        how scores are read."""
        compression = self.cfg.phase_compression(getattr(self, "phase", 0))
        return {"features": self.features.to_dict(), "compression": str(compression), "multilabel": self.multilabel}

    def _restore(self, state: dict) -> None:
        self.progress.update(state["progress"])
        self.accounting = state["accounting"]
        self.history = state["history"]
        self.best = state["best"]
        self.wa_sum, self.wa_count = state["extra"]["wa_sum"], state["extra"]["wa_count"]
        before = state.get("precision")
        if before is not None and before["name"] != self.precision.name:
            warnings.warn(f"train.precision: the run trained in {before['name']} ({before['reason']}) and continues "
                          f"in {self.precision}: it continues, but not bit-identically", stacklevel=2)
        self.model = AST(config=ASTConfig.from_dict(state["model_config"]))
        self.model.load_state_dict(state["model"])
        self._build_phase(self.progress["phase"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        if len(rng) != self.info.world_size:
            warnings.warn(f"the checkpoint was written by {len(rng)} ranks and is resumed on {self.info.world_size}: "
                          "the run continues, but not bit-identically", stacklevel=2)
        mine = rng[self.info.rank % len(rng)]
        torch.set_rng_state(mine["torch"])
        if "cuda" in mine and self.info.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], self.info.device)
        self._trim_logs()

    def _save(self) -> None:
        rng = self._rng_states()
        if self.info.is_main:
            save_run_checkpoint(self.state(rng), self.run_dir)

    def _steps_log(self) -> Path:
        return self.run_dir / ("steps.csv" if self.info.is_main else f"steps.rank{self.info.rank}.csv")

    def _trim_logs(self) -> None:
        """Drop log rows written after the checkpoint being resumed (all of them for a fresh
        start), so none appears twice."""
        step, epoch = self.progress["step"], len(self.history)
        logs = [(self._steps_log(), "step", step)]
        if self.info.is_main:
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

    # -- one optimizer step --------------------------------------------------------
    def _step_flops(self, batch: int, frames: int, patch) -> int:
        key = (self.model.config, batch, frames, patch)
        if key not in self._flop_cache:
            n = flops(self.model.config, (batch, frames, self.features.num_mel_bins), patch).training
            if self.teacher is not None:
                n += flops(self.teacher.config, (batch, frames, self.features.num_mel_bins),
                           self.teacher_patch).forward
            self._flop_cache[key] = n
        return self._flop_cache[key]

    def _loss(self, spec: torch.Tensor, target: torch.Tensor, patch) -> torch.Tensor:
        cfg = self.cfg.loss
        with self._autocast():
            logits = self.forward(spec, patch_size=patch)
            teacher = self.teacher(spec, patch_size=self.teacher_patch) if self.teacher is not None else None
        loss = supervised_loss(self.loss_kind, logits.float(), target, cfg.label_smoothing)
        if teacher is not None:
            kd = distillation_loss(self.loss_kind, logits.float(), teacher.float(), cfg.temperature)
            loss = (1 - cfg.kd_weight) * loss + cfg.kd_weight * kd
        return loss

    def _optimizer_step(self, micro_batches: list[dict]) -> dict:
        cfg, p = self.cfg, self.progress
        patch = self.sampler(p["step"])
        sched = cfg.phase_schedule(self.phase)
        base_lr = cfg.phase_optimizer(self.phase).lr
        lr = base_lr * lr_factor(sched, base_lr, p["phase_step"], p["phase_epoch"], self.phase_total,
                                 self.phase_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, clips, step_flops = 0.0, 0, 0  # this rank's
        accum = len(micro_batches)
        errors = [e for batch in micro_batches for e in batch["errors"]]
        # Each clip's loss weighs 1 / (clips kept in the step over all ranks), as in one process
        # with the whole batch: micro-batch j's mean loss is scaled by weight / accum with
        # weight = n_j * world * accum / kept (DDP averages over ranks, hence world). Without
        # unreadable clips kept = world * accum * n_j, so weight is exactly 1.
        kept = sum(len(batch["spec"]) for batch in micro_batches if batch["spec"] is not None)
        global_kept = kept * self.info.world_size  # every rank's batch is whole unless clips can be skipped
        if self.info.enabled and cfg.data.on_error == "skip":
            t = torch.tensor([kept], dtype=torch.float64, device=self.info.device)
            torch.distributed.all_reduce(t)
            global_kept = int(t[0])
        for j, batch in enumerate(micro_batches):
            if batch["spec"] is not None:
                weight = len(batch["spec"]) * self.info.world_size * accum / global_kept
            elif not self.info.enabled:
                continue  # every clip of this micro-batch was unreadable (on_error: skip)
            else:  # all unreadable, and the other ranks wait in the gradient all-reduce: join with a zero weight
                batch = {"spec": torch.zeros(1, self.features.frames(self.cfg.phase_compression(self.phase)),
                                             self.features.num_mel_bins),
                         "target": torch.zeros(1, self.num_classes)}
                weight = 0.0
            spec = batch["spec"].to(self.info.device, non_blocking=True)
            target = batch["target"].to(self.info.device, non_blocking=True)
            sync = j == accum - 1 or not self.info.enabled
            ctx = self.forward.no_sync() if not sync and hasattr(self.forward, "no_sync") else contextlib.nullcontext()
            with ctx:
                loss = self._loss(spec, target, patch)
                self.scaler.scale(loss * weight / accum).backward()
            if weight:
                total += float(loss.detach()) * len(spec)
                clips += len(spec)
                step_flops += self._step_flops(len(spec), spec.shape[1], patch)
        faults.point("step")
        if global_kept:  # a step with no readable clip on any rank leaves the weights and moments alone
            if cfg.train.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        skipped = len(errors)
        if self.info.enabled:  # the step's loss, counts and FLOPs over all ranks
            t = torch.tensor([total, clips, skipped, step_flops], dtype=torch.float64, device=self.info.device)
            torch.distributed.all_reduce(t)
            total, clips, skipped, step_flops = float(t[0]), int(t[1]), int(t[2]), int(t[3])
            if skipped:  # every rank learns which clips (a collective only in steps that skipped some)
                errors = [e for part in distributed.gather_objects(errors, self.info) for e in part]
        return {"loss": total / max(clips, 1), "clips": clips, "skipped": skipped, "errors": sorted(set(errors)),
                "lr": lr, "patch": patch, "flops": step_flops}

    # -- epochs --------------------------------------------------------------------
    def _train_loader(self):
        """This phase's training loader (its workers persist), set to the current epoch and batch."""
        p, cfg = self.progress, self.cfg
        self.data_sampler.set_epoch(p["epoch"], start=p["batch"] * self.micro_batch * cfg.train.accum_steps)
        self.train_set.set_epoch(p["epoch"])
        if "train" not in self._loaders:
            self._loaders["train"] = make_loader(
                self.train_set, batch_size=self.micro_batch, sampler=EpochKeys(self.data_sampler),
                workers=self.workers, drop_last=True, seed=cfg.seed, pin_memory=self.info.device.type == "cuda")
        return self._loaders["train"]

    def _epoch_steps(self) -> int:
        """Optimizer steps left in this epoch (the phase may end first)."""
        p = self.progress
        return min(self.steps_per_epoch - p["batch"], self.phase_total - p["phase_step"])

    def _train_epoch(self) -> dict:
        cfg, p, acc = self.cfg, self.progress, self.accounting[self.phase]
        steps = self._epoch_steps()
        bar = None
        if self.info.is_main and cfg.train.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps_per_epoch, initial=p["batch"], leave=False, dynamic_ncols=True,
                       desc=f"phase {self.phase} epoch {p['phase_epoch'] + 1}/{self.phase_epochs}")
        micro = []
        it = iter(self._train_loader())
        start = time.perf_counter()
        done = 0
        while done < steps:
            micro.append(next(it))
            if len(micro) < cfg.train.accum_steps:
                continue
            out = self._optimizer_step(micro)
            micro, done = [], done + 1
            p["step"] += 1
            p["phase_step"] += 1
            p["batch"] += 1
            seconds = time.perf_counter() - start
            acc["steps"] += 1
            acc["clips"] += out["clips"]
            acc["train_flops"] += out["flops"]
            acc["train_seconds"] += seconds
            p["loss_sum"] += out["loss"] * out["clips"]
            p["loss_clips"] += out["clips"]
            if out["skipped"]:
                p["skipped"] += out["skipped"]
                p["unreadable"] = sorted(set(p["unreadable"]) | set(out["errors"]))
            rate = out["clips"] / max(seconds, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{out['loss']:.4f}", lr=f"{out['lr']:.2e}",
                                patch=f"{out['patch'][0]}x{out['patch'][1]}", clips_s=f"{rate:.0f}")
            if p["step"] % cfg.train.log_every == 0:
                self._log_step(out, rate)
            if cfg.train.checkpoint_every and p["step"] % cfg.train.checkpoint_every == 0 and done < steps:
                self._save()  # the end of the epoch saves anyway
            start = time.perf_counter()
        if bar is not None:
            bar.close()
        loss = p["loss_sum"] / max(p["loss_clips"], 1)
        p.update(loss_sum=0.0, loss_clips=0)
        return {"train_loss": loss, "lr": self.optimizer.param_groups[0]["lr"]}

    def _log_step(self, out: dict, rate: float) -> None:
        p = self.progress
        row = {"step": p["step"], "phase": self.phase, "epoch": p["epoch"], "loss": out["loss"], "lr": out["lr"],
               "patch": f"{out['patch'][0]}x{out['patch'][1]}", "clips_per_s": round(rate, 2),
               "skipped": out["skipped"], "unreadable": " | ".join(out["errors"])}
        # Every rank logs its own draws (steps.rank1.csv, ...), so agreement can be checked.
        _append_csv(self._steps_log(), row)
        if self._tb() is not None:
            self._tb().add_scalar("train/loss", out["loss"], p["step"])
            self._tb().add_scalar("train/lr", out["lr"], p["step"])

    def _tb(self):
        if self._writer is None and self.cfg.train.tensorboard and self.info.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._writer = False
            else:
                self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.progress["step"] + 1)
        return self._writer or None

    def eval_patches(self, phase: int) -> dict:
        return self.cfg.eval_patches(phase, self.features)

    def _select(self, metrics: dict) -> float:
        sel = self.cfg.train.select
        names = [k for k in metrics if not k.startswith("_")]
        if sel == "mean":
            return float(np.mean([metrics[k][self.metric] for k in names]))
        return float(metrics[str(sel)][self.metric])

    def _validate(self, model: AST | None = None, split: str = "val") -> dict:
        dataset = self.val_set if split == "val" else AudioDataset(
            self.splits[split], self.features, compression=self.cfg.phase_compression(self.phase),
            cache=self.cache, on_error=self.cfg.data.on_error, seed=self.cfg.seed)
        bs = self.cfg.data.eval_batch_size or self.micro_batch
        if split != "val":
            loader = _eval_loader(dataset, bs, self.info, self.workers)
        else:  # the phase's validation loader, its workers kept
            if "val" not in self._loaders:
                self._loaders["val"] = _eval_loader(dataset, bs, self.info, self.workers)
            loader = self._loaders["val"]
        return evaluate_model(model or self.model, loader, self.eval_patches(self.phase), multilabel=self.multilabel,
                              resize=self.cfg.train.eval_resize, info=self.info, autocast=self._autocast)

    def _end_epoch(self, train_out: dict) -> None:
        cfg, p, acc = self.cfg, self.progress, self.accounting[self.phase]
        t0 = time.perf_counter()
        val = self._validate()
        acc["val_seconds"] += time.perf_counter() - t0
        final = self.phase == len(cfg.phases) - 1
        record = {"phase": self.phase, "phase_name": cfg.phases[self.phase].name or f"phase{self.phase}",
                  "compression": cfg.phases[self.phase].compression, "epoch": p["epoch"] + 1,
                  "phase_epoch": p["phase_epoch"] + 1, "step": p["step"], "final_phase": final, **train_out,
                  "train_flops_cum": sum(a["train_flops"] for a in self.accounting),
                  "train_seconds_cum": sum(a["train_seconds"] for a in self.accounting),
                  "val": val, "val_select": self._select(val),
                  "unreadable": {"train_skipped": p["skipped"], "val_skipped": val["_skipped"],
                                 "files": sorted(set(p["unreadable"]) | set(val["_unreadable"]))}}
        p.update(skipped=0, unreadable=[])
        self.history.append(record)
        if final and record["val_select"] > self.best["value"]:
            self.best = {"value": record["val_select"], "epoch": record["epoch"]}
            if self.info.is_main:
                save_safetensors(self.model, self.run_dir / WEIGHT_FILES["best"], inference=self.inference_info())
        if final and cfg.train.weight_averaging:
            end = cfg.train.wa_end or cfg.phases[-1].epochs
            if cfg.train.wa_start <= p["phase_epoch"] + 1 <= end:
                sd = {k: v.detach().double().cpu() for k, v in self.model.state_dict().items()}
                self.wa_sum = sd if self.wa_sum is None else {k: self.wa_sum[k] + sd[k] for k in sd}
                self.wa_count += 1
        p["epoch"] += 1
        p["phase_epoch"] += 1
        p["batch"] = 0
        if self.info.is_main:
            self._write_epoch(record)
        self._save()

    def _write_epoch(self, record: dict) -> None:
        row = {k: v for k, v in record.items() if k != "val"}
        for name, metrics in record["val"].items():
            if name.startswith("_"):
                continue
            for m, v in metrics.items():
                row[f"val_{m}@{name}"] = v
        _append_csv(self.run_dir / "metrics.csv", row)
        write_text_atomic(self.run_dir / "history.json", json.dumps(self.history, indent=1))
        left = self.seconds_left()
        msg = (f"phase {record['phase']} epoch {record['phase_epoch']}/{self.phase_epochs} (global {record['epoch']}): "
               f"loss {record['train_loss']:.4f}, val {self.metric} {record['val_select']:.4f}, "
               f"{record['train_flops_cum'] / 1e12:.3f} TFLOPs, {record['train_seconds_cum']:.1f} s, "
               f"about {format_seconds(left)} left")
        print(msg, flush=True)
        if self.on_epoch is not None:
            self.on_epoch(record, left)
        if self._tb() is not None:
            self._tb().add_scalar(f"val/{self.metric}", record["val_select"], record["step"])

    def _phase_step_flops(self, i: int) -> float:
        """Expected training FLOPs of one optimizer step of phase ``i`` (all ranks): the mean
        over its sampler's sizes, weighted as drawn, at its input length and stored kernel."""
        cfg, ph = self.cfg, self.cfg.phases[i]
        model_cfg = self.phase_model_config(i, self.model.config)
        frames = self.features.frames(cfg.phase_compression(i))
        shape = (cfg.data.batch_size, frames, self.features.num_mel_bins)
        sizes = cfg.phase_patch_sizes(i)
        weights = ph.patch.weights if ph.patch.sampler == "weighted" else [1.0] * len(sizes)
        if ph.patch.sampler == "fixed":
            sizes, weights = sizes[:1], [1.0]
        total = sum(w * flops(model_cfg, shape, patch).training for patch, w in zip(sizes, weights))
        if self.teacher is not None:
            total += sum(weights) * flops(self.teacher.config, shape, self.teacher_patch).forward
        return total / sum(weights)

    def seconds_left(self) -> float:
        """An estimate of the run's remaining wall time: the FLOPs still to train (this
        phase's remaining steps and every later phase's, counted analytically) at the seconds
        per FLOP measured so far, plus the mean validation time per epoch for the epochs left."""
        p, cfg = self.progress, self.cfg
        done_flops = sum(a["train_flops"] for a in self.accounting)
        done_seconds = sum(a["train_seconds"] for a in self.accounting)
        epochs_done = max(len(self.history), 1)
        val_per_epoch = sum(a["val_seconds"] for a in self.accounting) / epochs_done
        left_flops = (self.phase_total - p["phase_step"]) * self._phase_step_flops(self.phase)
        left_epochs = self.phase_epochs - p["phase_epoch"]
        for j in range(self.phase + 1, len(cfg.phases)):
            ph = cfg.phases[j]
            steps = ph.steps if ph.steps is not None else ph.epochs * self.steps_per_epoch
            left_flops += steps * self._phase_step_flops(j)
            left_epochs += ph.epochs if ph.epochs is not None else math.ceil(steps / self.steps_per_epoch)
        rate = done_seconds / done_flops if done_flops else 0.0
        return left_flops * rate + left_epochs * val_per_epoch

    # -- the run -------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, p = self.cfg, self.progress
        if p["done"]:
            return json.loads((self.run_dir / "summary.json").read_text())
        if self.info.is_main:
            write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
            print(f"{cfg.name}: training on {self.info.device} x {self.info.world_size}, precision "
                  f"{self.precision}", flush=True)
            auto = " (auto)" if cfg.data.num_workers == AUTO else ""
            print(f"{cfg.name}: data: {self.workers} loader worker{'s' * (self.workers != 1)}{auto}, "
                  f"feature cache {self.cache_note}", flush=True)
        while p["phase"] < len(cfg.phases):
            i = p["phase"]
            if p["entered"] != i:
                self._enter_phase(i)
                p.update(entered=i, phase_step=0, phase_epoch=0, batch=0)
            while p["phase_step"] < self.phase_total:
                self._end_epoch(self._train_epoch())
            if i + 1 < len(cfg.phases):
                p["phase"] = i + 1
                self._save()
            else:
                break
        summary = self._finish()
        p["done"] = True
        self._save()
        return summary

    def close(self) -> None:
        """Leave the process group cleanly.

        Gloo's worker thread may still be releasing the tensors of the last collective, which
        needs the GIL; destroying the group from a DDP reducer's destructor at exit would
        then deadlock. So: a barrier (all work done), drop the DDP wrapper, then destroy.
        """
        if self.info.enabled and torch.distributed.is_initialized():
            torch.distributed.barrier()
        self.forward = self.model
        self._loaders = {}  # their workers end here
        gc.collect()
        distributed.teardown(self.info)

    def _finish(self) -> dict:
        cfg = self.cfg
        summary = {"name": cfg.name, "seed": cfg.seed, "metric": self.metric, "best_epoch": self.best["epoch"],
                   "best_val": self.best["value"], "world_size": self.info.world_size,
                   "phases": [{"name": ph.name or f"phase{i}", "compression": ph.compression, **a}
                              for i, (ph, a) in enumerate(zip(cfg.phases, self.accounting))],
                   "train_flops": sum(a["train_flops"] for a in self.accounting),
                   "train_seconds": sum(a["train_seconds"] for a in self.accounting),
                   "precision": self.precision.to_dict(), "machine": device_capability(self.info.device)}
        summary["final_val"] = self.history[-1]["val"] if self.history else None
        models = {}
        best_path = run_weights(self.run_dir, "best")
        best = load_state_dict(best_path)[0] if self.info.is_main and best_path is not None else None
        best = distributed.broadcast_object(best, self.info)
        if best is not None:
            m = AST(config=self.model.config).to(self.info.device)
            m.load_state_dict(best)
            models["best"] = m
        if self.wa_sum is not None:
            m = AST(config=self.model.config).to(self.info.device)
            m.load_state_dict({k: (v / self.wa_count).to(self.model.state_dict()[k].dtype) for k, v in self.wa_sum.items()})
            models["averaged"] = m
            summary["averaged_val"] = self._validate(m)
            if self.info.is_main:
                save_safetensors(m, self.run_dir / WEIGHT_FILES["averaged"], inference=self.inference_info())
        if "test" in self.splits:
            summary["test"] = {name: self._validate(m, "test") for name, m in models.items()}
        summary["unreadable"] = self._unreadable(summary)
        if self.info.is_main:
            write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=1))
            if self._writer:
                self._writer.close()
        return summary

    def _unreadable(self, summary: dict) -> dict:
        """The run's unreadable clips under ``on_error: skip``: those the scan left out, the
        reads skipped in training, validation and test (a clip read in 3 epochs counts 3
        times), and every file involved once, with its reason."""
        epochs = [h.get("unreadable", {"train_skipped": 0, "val_skipped": 0, "files": []}) for h in self.history]
        files = {m for msgs in self.left_out.values() for m in msgs}
        files |= {f for u in epochs for f in u["files"]}
        tests = list(summary.get("test", {}).values())[:1]  # the test split is read once per model; count once
        files |= {f for t in tests for f in t["_unreadable"]}
        train = sum(u["train_skipped"] for u in epochs)
        val = sum(u["val_skipped"] for u in epochs)
        test = sum(t["_skipped"] for t in tests)
        return {"left_out_at_scan": {k: len(v) for k, v in self.left_out.items()},
                "skipped_reads": train + val + test, "skipped_in_training": train, "skipped_in_validation": val,
                "skipped_in_test": test, "files": sorted(files)}


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


# -- entry points -----------------------------------------------------------------------
def absolute_paths(cfg: RunConfig) -> RunConfig:
    """A copy with relative paths made absolute, so ``--resume`` works from any directory.

    Covers ``out``, ``data.root``, ``data.cache_dir``, ``init.path``, ``loss.teacher`` and
    reader options whose value names an existing file or folder.
    """
    cfg = copy.deepcopy(cfg)
    absolute = lambda p: str(Path(p).absolute()) if p is not None else None  # noqa: E731
    cfg.out = str(cfg.out_dir.absolute())
    cfg.data.root = absolute(cfg.data.root)
    if cfg.data.cache_dir not in (AUTO, OFF):
        cfg.data.cache_dir = absolute(cfg.data.cache_dir)
    cfg.init.path, cfg.loss.teacher = absolute(cfg.init.path), absolute(cfg.loss.teacher)
    for options in (cfg.data.options, cfg.data.train, cfg.data.val, cfg.data.test):
        for k, v in (options or {}).items():
            if isinstance(v, str) and v and not Path(v).is_absolute() and Path(v).exists():
                options[k] = absolute(v)
    return cfg


def train(cfg: RunConfig, run_dir: Path | None = None, *, on_epoch=None) -> dict:
    """Train ``cfg`` from the start (k folds if ``data.kfold``); returns the summary.
    ``on_epoch(record, seconds_left)`` is called after every epoch (on rank 0)."""
    if cfg.data.kfold:
        from .kfold import run_kfold

        return run_kfold(cfg, run_dir)
    cfg = absolute_paths(cfg)
    run_dir = Path(run_dir or cfg.out_dir)
    if (run_dir / "last.pt").exists() or (run_dir / "last.prev.pt").exists():
        raise ConfigError(f"out: {run_dir} already holds a run; resume it with --resume {run_dir} "
                          "or choose another out")
    trainer = Trainer(cfg, run_dir, on_epoch=on_epoch)
    try:
        return trainer.fit()
    finally:
        trainer.close()


def resume(run_dir: str | Path) -> dict:
    """Continue the run in ``run_dir`` from its newest readable checkpoint."""
    run_dir = Path(run_dir)
    state, path = load_latest(run_dir)
    # The recipe's files were checked when the run began; resuming needs only the data.
    cfg = build_config(state["run_config"], check_files=False)
    log.info("resuming %s from %s at step %d", run_dir, path, state["progress"]["step"])
    trainer = Trainer(cfg, run_dir, resume_state=state)
    try:
        return trainer.fit()
    finally:
        trainer.close()
