"""The training engine: phases, per-step patch sizes, distillation, checkpoints, DDP.

A run is a list of phases (:class:`flexiast.config.PhaseConfig`). Entering phase ``i``
adapts the model to that phase's input (coarse-to-fine, Sec. 2.2): the positional grid
is resized bilinearly to the grid of the phase's input (``target_length / C`` frames
under fshift or pooling), and in a ``patch:C`` phase the stored kernel becomes
``p x Cp``, moved with PI-resize or bilinear interpolation (Patch-PI / Patch-BL, Sec. 2.3);
leaving it moves the kernel back the same way. The optimizer and the learning-rate
schedule restart with every phase. FlexiAST (Sec. 2.3) is a phase whose sampler draws
a patch size per optimizer step; the size of step ``s`` depends only on ``(seed, s)``,
and the stored kernel is resized to it with the phase's ``patch.resize`` (PI-resize, or
bilinear for FlexiAST's BL ablation, Sec. 3.4 item 2).

One optimizer step = ``accum_steps`` micro-batches of ``batch_size / (world * accum)``
clips on each rank. Training epochs drop the last incomplete batch, so every step has
the same shape and FLOP count. Validation runs at the end of every epoch on the
validation split at ``train.eval_patch_sizes``; ``best.safetensors`` is the final phase's best
epoch on validation (on test only where the recipe makes the validation split the test
split, as ``data.kfold_protocol: ast`` does; the summary's ``epoch_chosen_on`` says which); the
test split is evaluated at the end with the best (and, with weight averaging, the averaged)
weights, and after every epoch too with ``train.test_every_epoch`` (``history.json``'s ``test``
and ``test_select``, which ``flexiast savings`` reads for the coarse-to-fine paper's Table 2).

A model without a classifier (SSAST) pretrains on unlabeled clips with its task
(:class:`flexiast.tasks.MaskedPatchPrediction`), which validates with its own numbers
(masked-patch accuracy picks ``best.safetensors``).

Everything a step depends on is a function of saved state: data order of ``(seed,
epoch)``, augmentation of ``(seed, epoch, clip)``, patch size of ``(seed, step)``, SSAST's
masks of ``(seed, step, clip)``, the
learning rate of the phase's step and epoch, dropout of the saved torch RNG state. So
``flexiast train --resume RUN_DIR`` continues a killed run to the same numbers.
"""

from __future__ import annotations

import contextlib
import copy
import gc
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

from .. import distributed, faults
from ..atomic import write_text_atomic
from ..checkpoints import load_state_dict, save_safetensors
from ..config import ConfigError, RunConfig, build_config, config_to_dict
from ..constants import AUTO, SELECT_MEAN
from ..data import AudioDataset, ShardedSampler
from ..data.loader import EpochKeys, loader_workers, make_loader, resolve_cache
from ..data.samplers import BalancedSampler, manifest_weights
from ..evaluate import evaluate_model
from ..hardware import HardwareError, device_capability, resolve_precision
from ..models import create_model, family_of, flops, get_family, load_model, patch_call, read_weights
from ..resize import to_pair
from ..tasks import Classification, Distillation, MaskedPatchPrediction, Task
from .logs import RunLogs, format_seconds, unreadable_report
from .optim import build_optimizer, lr_factor
from .patch_sampler import PatchSampler
from .phases import PhasePlan
from .run_checkpoint import WEIGHT_FILES, load_latest, run_weights, save_run_checkpoint
from .splits import eval_loader, load_splits
from .state import Best, BestEpochs, PhaseAccount, Progress, WeightAverage

__all__ = ["Trainer", "run_training", "resume"]

log = logging.getLogger(__name__)

#: The folder of a run that holds the weights of the epochs ``train.average_best`` keeps.
BEST_EPOCHS_DIR = "best_epochs"


# -- the engine -----------------------------------------------------------------------
class Trainer:
    """Runs one :class:`RunConfig` in ``run_dir`` (``cfg.out_dir``), fresh or resumed.

    The loop (:meth:`fit`) reads top to bottom: for each phase, :meth:`_enter_phase`
    adapts the model (``model.adapt``) and builds the optimizer, data and patch sampler;
    :meth:`_train_epoch` runs its optimizer steps (:meth:`_optimizer_step`: the task's
    loss over ``accum_steps`` micro-batches, one update); :meth:`_end_epoch` validates,
    keeps the best weights and checkpoints. The model's family is never named: its
    configuration comes from the recipe's ``model:`` section
    (:meth:`RunConfig.model_config`), its geometry changes through ``adapt`` and its cost
    through :func:`flexiast.models.flops`.
    """

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
        self.plan = PhasePlan(cfg, self.features)
        self.family = get_family(cfg.model.arch)
        # Weight files first: an unreadable or untrusted file is refused before the data scan.
        teacher = load_model(cfg.loss.teacher) if cfg.loss.teacher else None
        if teacher is not None and not family_of(teacher).classifier:
            raise ConfigError(f"loss.teacher: {cfg.loss.teacher} holds a {teacher.arch} pretraining model, not a "
                              "classifier to distil from")
        if cfg.init.path is not None and resume_state is None:
            self.init_weights = read_weights(cfg.init.path)  # read once: _initial_model builds from it
        self.splits, self.left_out = self._load_splits()
        train = self.splits["train"]
        self._check_labels(train)
        self.multilabel = train.multilabel
        self.num_classes = len(train.classes)
        self.task = self._task(teacher)
        self.metric = self.task.metric or ("mAP" if self.multilabel else "accuracy")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.info.world_size))
        self.workers = loader_workers(cfg.data.num_workers, device=self.info.device.type, local_world_size=local_world)
        self.cache, self.cache_note = resolve_cache(cfg.data.cache_dir, estimate_bytes=self._feature_bytes())
        self._loaders: dict = {}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = Progress()
        self.accounting = [PhaseAccount() for _ in cfg.phases]
        self.history: list[dict] = []
        self.best = Best()
        self.average = WeightAverage()
        self.top = BestEpochs()  # train.average_best
        self._top_previous: set[int] = set()  # the kept epochs of the previous checkpoint (last.prev.pt)
        self._sync_bn_noted = False
        self._flop_cache: dict = {}
        self.logs = RunLogs(self.run_dir, rank=self.info.rank, is_main=self.info.is_main,
                            tensorboard=cfg.train.tensorboard)
        if resume_state is None:
            self.logs.trim(0, 0)  # rows of an earlier attempt killed before its first checkpoint
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

    def base_model_config(self):
        """The configuration the recipe's model starts from, for this data's classes and features."""
        return self.cfg.model_config(num_classes=self.num_classes, features=self.features,
                                     labels=tuple(self.splits["train"].classes))

    def _initial_model(self):
        target = self.base_model_config()
        init = self.cfg.init
        if init.path is None:
            return create_model(target)
        hints = {k: getattr(init, k) for k in ("source_stride", "source_input_tdim", "source_input_fdim")
                 if getattr(init, k) is not None}
        if self.cfg.patch_calls:  # the first phase's transfer moves a kernel of another size in
            hints["kernel_resize"] = self.plan.transfer(0)
        weights, self.init_weights = self.init_weights, None  # its tensors are not kept through training
        return self.family.init_from(weights, target, **hints)

    def _check_labels(self, train) -> None:
        """A classifier trains on labelled clips, a pretraining model on unlabeled ones."""
        fmt, arch = self.cfg.data.format, self.cfg.model.arch
        if self.cfg.pretraining and train.labelled:
            raise ConfigError(f"data.format: {fmt} gives labelled clips ({len(train.classes)} classes), and a {arch} "
                              "model pretrains on unlabeled audio: read it with format audio, librispeech, ast_json "
                              "without label_csv, or a mixture of those; or set data.options.ignore_labels: true "
                              "to pretrain on its clips")
        if not self.cfg.pretraining and not train.labelled:
            raise ConfigError(f"data.format: {fmt} gives unlabeled clips, and a {arch} classifier trains on labels: "
                              "give a labelled reader, or pretrain (model.arch: ssast)")

    def _task(self, teacher) -> Task:
        """What the steps optimise: SSAST's masked-patch prediction for a pretraining model;
        else classification on the data's labels (CE or BCE, ``auto`` from the data),
        distilled from ``loss.teacher`` when one is given."""
        if self.cfg.pretraining:
            p = self.cfg.pretrain
            return MaskedPatchPrediction(p.masked, p.masking, p.objective, p.generative_weight, seed=self.cfg.seed)
        cfg = self.cfg.loss
        kind = cfg.name if cfg.name != AUTO else ("bce" if self.multilabel else "ce")
        if teacher is None:
            return Classification(kind, cfg.label_smoothing)
        tc = teacher.config
        if tc.num_classes != self.num_classes or tc.input_fdim != self.features.num_mel_bins:
            raise ConfigError(f"loss.teacher: {cfg.teacher} predicts {tc.num_classes} classes from {tc.input_fdim} "
                              f"mel bins; the run has {self.num_classes} classes and "
                              f"{self.features.num_mel_bins} bins")
        patch = to_pair(cfg.teacher_patch_size, "loss.teacher_patch_size") if cfg.teacher_patch_size else \
            getattr(tc, "patch_size", None)
        return Distillation(kind, teacher.to(self.info.device), teacher_call=patch_call(patch),
                            weight=cfg.kd_weight, temperature=cfg.temperature, label_smoothing=cfg.label_smoothing)

    def _enter_phase(self, i: int) -> None:
        """Adapt the model to phase ``i`` and start a fresh optimizer (Sec. 2.2)."""
        current = self.model.config
        target = self.plan.model_config(i, current)
        if target != current:
            before = current.to_dict()
            changes = {k: v for k, v in target.to_dict().items() if v != before[k]}
            self.model = self.model.adapt(kernel_resize=self.plan.transfer(i), **changes)
            log.info("phase %d: model adapted to %s", i, self.model.config)
        self._build_phase(i)

    def _build_phase(self, i: int) -> None:
        cfg, info = self.cfg, self.info
        self.phase = i
        self.model.to(info.device)
        if info.enabled:
            self.model, note = distributed.sync_batchnorm(self.model, info.device)
            if note and info.is_main and not self._sync_bn_noted:
                print(f"{cfg.name}: {note}", flush=True)
                self._sync_bn_noted = True
        self.optimizer = build_optimizer(self.model.parameters(), cfg.phase_optimizer(i))
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.precision.scaler)
        self.forward = self.model
        if info.enabled:
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
                find_unused_parameters=self.task.unused_parameters)
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
        weights = manifest_weights(self.splits["train"], balanced=cfg.data.balanced)  # a mixture's, or AST's balance
        if weights is not None:
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
            "progress": self.progress.to_dict(),
            "accounting": [a.to_dict() for a in self.accounting],
            "history": copy.deepcopy(self.history),
            "best": self.best.to_dict(),
            "extra": self.average.to_dict(),
            "average_best": self.top.to_dict(),
            "precision": self.precision.to_dict(),
        }

    def inference_info(self) -> dict:
        """What inference needs beyond the weights: the features, the current phase's
        compression (a model trained last on fshift or pooled input takes that input) and
        how scores are read."""
        compression = self.cfg.phase_compression(getattr(self, "phase", 0))
        return {"features": self.features.to_dict(), "compression": str(compression), "multilabel": self.multilabel}

    def _restore(self, state: dict) -> None:
        self.progress = Progress.from_dict(state["progress"])
        self.accounting = [PhaseAccount.from_dict(a) for a in state["accounting"]]
        self.history = state["history"]
        self.best = Best.from_dict(state["best"])
        self.average = WeightAverage.from_dict(state["extra"])
        self.top = BestEpochs.from_dict(state.get("average_best", {}))  # absent in older checkpoints
        self._top_previous = set(self.top.epochs())
        before = state.get("precision")
        if before is not None and before["name"] != self.precision.name:
            warnings.warn(f"train.precision: the run trained in {before['name']} ({before['reason']}) and continues "
                          f"in {self.precision}: it continues, but not bit-identically", stacklevel=2)
        self.model = create_model(state["model_config"])
        self.model.load_state_dict(state["model"])
        self._build_phase(self.progress.phase)
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
        self.logs.trim(self.progress.step, len(self.history))

    def _save(self) -> None:
        rng = self._rng_states()
        if self.info.is_main:
            save_run_checkpoint(self.state(rng), self.run_dir)
            if self.cfg.train.average_best:
                self._prune_best_epochs()

    # -- train.average_best ----------------------------------------------------------
    def _best_epoch_file(self, epoch: int) -> Path:
        return self.run_dir / BEST_EPOCHS_DIR / f"epoch{epoch:04d}.safetensors"

    def _prune_best_epochs(self) -> None:
        """Delete the epoch weights no checkpoint needs. Those kept by ``last.pt`` (just
        written) and by ``last.prev.pt`` (the previous save, which a resume falls back to
        when ``last.pt`` is damaged) stay; every other file in the folder goes, partial
        writes of a killed run included."""
        keep = {self._best_epoch_file(e).name for e in set(self.top.epochs()) | self._top_previous}
        folder = self.run_dir / BEST_EPOCHS_DIR
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.name not in keep:
                path.unlink(missing_ok=True)
        self._top_previous = set(self.top.epochs())

    def _best_epochs_average(self) -> dict:
        """The uniform average of the kept epochs' weights (read one file at a time, summed in
        float64 in epoch order); integer tensors (BatchNorm's ``num_batches_tracked``) are
        the best epoch's."""
        like = self.model.state_dict()
        total, ints = None, load_state_dict(self._best_epoch_file(self.top.kept[0][1]))[0]
        for epoch in self.top.epochs():
            sd = load_state_dict(self._best_epoch_file(epoch))[0]
            if total is None:
                total = {k: v.double() for k, v in sd.items() if v.is_floating_point()}
            else:
                for k in total:
                    total[k] += sd[k].double()
        n = len(self.top.kept)
        return {k: (total[k] / n).to(v.dtype) if k in total else ints[k].clone() for k, v in like.items()}

    # -- one optimizer step --------------------------------------------------------
    def _step_flops(self, batch: int, frames: int, patch) -> int:
        key = (self.model.config, batch, frames, patch)
        if key not in self._flop_cache:
            shape = (batch, frames, self.features.num_mel_bins)
            extra = self.task.flop_call(self.model.config, shape)
            self._flop_cache[key] = flops(self.model, shape, patch, **extra).training + self.task.extra_flops(shape)
        return self._flop_cache[key]

    def _loss(self, spec: torch.Tensor, target: torch.Tensor, patch, index: torch.Tensor) -> torch.Tensor:
        resize = self.cfg.phases[self.phase].patch.resize if self.cfg.patch_calls else None
        keys = {"step": self.progress.step, "index": index}  # what a task draws per clip (SSAST's masks)
        with self._autocast():
            outputs = self.task.forward(self.forward, spec, patch_call(patch, resize), keys)
        return self.task.loss(outputs, target)

    def _optimizer_step(self, micro_batches: list[dict]) -> dict:
        cfg, p = self.cfg, self.progress
        patch = self.sampler(p.step)
        sched = cfg.phase_schedule(self.phase)
        base_lr = cfg.phase_optimizer(self.phase).lr
        lr = base_lr * lr_factor(sched, base_lr, p.phase_step, p.phase_epoch, self.phase_total, self.phase_epochs)
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
                         "target": torch.zeros(1, self.num_classes), "index": torch.zeros(1, dtype=torch.long)}
                weight = 0.0
            spec = batch["spec"].to(self.info.device, non_blocking=True)
            target = batch["target"].to(self.info.device, non_blocking=True)
            sync = j == accum - 1 or not self.info.enabled
            ctx = self.forward.no_sync() if not sync and hasattr(self.forward, "no_sync") else contextlib.nullcontext()
            with ctx:
                loss = self._loss(spec, target, patch, batch["index"])
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
        self.data_sampler.set_epoch(p.epoch, start=p.batch * self.micro_batch * cfg.train.accum_steps)
        self.train_set.set_epoch(p.epoch)
        if "train" not in self._loaders:
            self._loaders["train"] = make_loader(
                self.train_set, batch_size=self.micro_batch, sampler=EpochKeys(self.data_sampler),
                workers=self.workers, drop_last=True, seed=cfg.seed, pin_memory=self.info.device.type == "cuda")
        return self._loaders["train"]

    def _epoch_steps(self) -> int:
        """Optimizer steps left in this epoch (the phase may end first)."""
        p = self.progress
        return min(self.steps_per_epoch - p.batch, self.phase_total - p.phase_step)

    def _train_epoch(self) -> dict:
        cfg, p, acc = self.cfg, self.progress, self.accounting[self.phase]
        steps = self._epoch_steps()
        bar = None
        if self.info.is_main and cfg.train.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.steps_per_epoch, initial=p.batch, leave=False, dynamic_ncols=True,
                       desc=f"phase {self.phase} epoch {p.phase_epoch + 1}/{self.phase_epochs}")
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
            p.step += 1
            p.phase_step += 1
            p.batch += 1
            seconds = time.perf_counter() - start
            acc.steps += 1
            acc.clips += out["clips"]
            acc.train_flops += out["flops"]
            acc.train_seconds += seconds
            p.loss_sum += out["loss"] * out["clips"]
            p.loss_clips += out["clips"]
            if out["skipped"]:
                p.skipped += out["skipped"]
                p.unreadable = sorted(set(p.unreadable) | set(out["errors"]))
            rate = out["clips"] / max(seconds, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{out['loss']:.4f}", lr=f"{out['lr']:.2e}",
                                patch=_patch_text(out["patch"]), clips_s=f"{rate:.0f}")
            if p.step % cfg.train.log_every == 0:
                self.logs.step({"step": p.step, "phase": self.phase, "epoch": p.epoch, "loss": out["loss"],
                                "lr": out["lr"], "patch": _patch_text(out["patch"]),
                                "clips_per_s": round(rate, 2), "skipped": out["skipped"],
                                "unreadable": " | ".join(out["errors"])})
            if cfg.train.checkpoint_every and p.step % cfg.train.checkpoint_every == 0 and done < steps:
                self._save()  # the end of the epoch saves anyway
            start = time.perf_counter()
        if bar is not None:
            bar.close()
        return {"train_loss": p.end_epoch(), "lr": self.optimizer.param_groups[0]["lr"]}

    def seconds_left(self) -> float:
        """The run's remaining wall time, estimated (:meth:`PhasePlan.seconds_left`)."""
        return self.plan.seconds_left(self.progress, self.accounting, len(self.history), phase_total=self.phase_total,
                                      phase_epochs=self.phase_epochs, steps_per_epoch=self.steps_per_epoch,
                                      current=self.model.config, task=self.task)

    @property
    def val_is_test(self) -> bool:
        """Whether the recipe validates on the test split itself (``data.val == data.test``, as
        ``data.kfold_protocol: ast`` makes each fold's): the best epoch is then chosen on test."""
        d = self.cfg.data
        return d.val is not None and d.test is not None and d.val == d.test

    def chosen_on(self) -> str:
        """What picked ``best.safetensors``, in words, for the summary."""
        if self.val_is_test:
            return ("test: the validation split is the test split (data.val == data.test, as data.kfold_protocol: "
                    "ast makes it), so the best epoch and its number are optimistic")
        return "validation"

    def _select(self, metrics: dict) -> float:
        sel = self.cfg.train.select
        names = [k for k in metrics if not k.startswith("_")]
        if sel == SELECT_MEAN:
            return float(np.mean([metrics[k][self.metric] for k in names]))
        return float(metrics[str(sel)][self.metric])

    def _validate(self, model=None, split: str = "val") -> dict:
        if split not in self._loaders:  # the phase's evaluation loaders, their workers kept
            dataset = self.val_set if split == "val" else AudioDataset(
                self.splits[split], self.features, compression=self.cfg.phase_compression(self.phase),
                cache=self.cache, on_error=self.cfg.data.on_error, seed=self.cfg.seed)
            bs = self.cfg.data.eval_batch_size or self.micro_batch
            self._loaders[split] = eval_loader(dataset, bs, self.info, self.workers)
        loader = self._loaders[split]
        score = getattr(self.task, "validate", evaluate_model)  # a task's own numbers (SSAST's), or a classifier's
        return score(model or self.model, loader, self.cfg.eval_patches(self.phase, self.features),
                     multilabel=self.multilabel, resize=self.cfg.train.eval_resize, info=self.info,
                     autocast=self._autocast)

    def _end_epoch(self, train_out: dict) -> None:
        cfg, p, acc = self.cfg, self.progress, self.accounting[self.phase]
        t0 = time.perf_counter()
        val = self._validate()
        test = None
        if self.val_is_test:  # the same clips: the validation numbers are the test numbers
            test = val
        elif cfg.train.test_every_epoch and "test" in self.splits:
            test = self._validate(split="test")
        acc.val_seconds += time.perf_counter() - t0
        final = self.phase == len(cfg.phases) - 1
        record = {"phase": self.phase, "phase_name": cfg.phases[self.phase].name or f"phase{self.phase}",
                  "compression": cfg.phases[self.phase].compression, "epoch": p.epoch + 1,
                  "phase_epoch": p.phase_epoch + 1, "step": p.step, "final_phase": final, **train_out,
                  "train_flops_cum": sum(a.train_flops for a in self.accounting),
                  "train_seconds_cum": sum(a.train_seconds for a in self.accounting),
                  "val": val, "val_select": self._select(val),
                  "unreadable": {"train_skipped": p.skipped, "val_skipped": val["_skipped"],
                                 "files": sorted(set(p.unreadable) | set(val["_unreadable"]))}}
        if test is not None:
            record.update(test=test, test_select=self._select(test))
        p.skipped, p.unreadable = 0, []
        self.history.append(record)
        if final and record["val_select"] > self.best.value:
            self.best = Best(record["val_select"], record["epoch"])
            if self.info.is_main:
                save_safetensors(self.model, self.run_dir / WEIGHT_FILES["best"], inference=self.inference_info())
        if final and cfg.train.average_best and self.top.offer(record["val_select"], record["epoch"],
                                                                cfg.train.average_best):
            if self.info.is_main:  # written before the checkpoint that keeps it
                save_safetensors(self.model, self._best_epoch_file(record["epoch"]), inference=self.inference_info())
        if final and cfg.train.weight_averaging:
            end = cfg.train.wa_end or cfg.phases[-1].epochs
            if cfg.train.wa_start <= p.phase_epoch + 1 <= end:
                self.average.add(self.model.state_dict())
        p.epoch += 1
        p.phase_epoch += 1
        p.batch = 0
        if self.info.is_main:
            self._report_epoch(record)
        self._save()

    def _report_epoch(self, record: dict) -> None:
        self.logs.epoch(record, self.history)
        left = self.seconds_left()
        print(f"phase {record['phase']} epoch {record['phase_epoch']}/{self.phase_epochs} (global {record['epoch']}): "
              f"loss {record['train_loss']:.4f}, val {self.metric} {record['val_select']:.4f}, "
              f"{record['train_flops_cum'] / 1e12:.3f} TFLOPs, {record['train_seconds_cum']:.1f} s, "
              f"about {format_seconds(left)} left", flush=True)
        if self.on_epoch is not None:
            self.on_epoch(record, left)
        self.logs.scalar(f"val/{self.metric}", record["val_select"], record["step"])

    # -- the run -------------------------------------------------------------------
    def fit(self) -> dict:
        """Every phase, each epoch of it, each step of those; then the summary."""
        cfg, p = self.cfg, self.progress
        if p.done:
            return json.loads((self.run_dir / "summary.json").read_text())
        if self.info.is_main:
            self._announce()
        while p.phase < len(cfg.phases):
            i = p.phase
            if p.entered != i:
                self._enter_phase(i)
                p.entered, p.phase_step, p.phase_epoch, p.batch = i, 0, 0, 0
            while p.phase_step < self.phase_total:
                self._end_epoch(self._train_epoch())
            if i + 1 == len(cfg.phases):
                break
            p.phase = i + 1
            self._save()
        summary = self._finish()
        p.done = True
        self._save()
        return summary

    def _announce(self) -> None:
        cfg = self.cfg
        write_text_atomic(self.run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        print(f"{cfg.name}: training on {self.info.device} x {self.info.world_size}, precision "
              f"{self.precision}", flush=True)
        auto = " (auto)" if cfg.data.num_workers == AUTO else ""
        print(f"{cfg.name}: data: {self.workers} loader worker{'s' * (self.workers != 1)}{auto}, "
              f"feature cache {self.cache_note}", flush=True)

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
        summary = {"name": cfg.name, "seed": cfg.seed, "metric": self.metric, "best_epoch": self.best.epoch,
                   "best_val": self.best.value, "epoch_chosen_on": self.chosen_on(),
                   "world_size": self.info.world_size,
                   "phases": [{"name": ph.name or f"phase{i}", "compression": ph.compression, **a.to_dict()}
                              for i, (ph, a) in enumerate(zip(cfg.phases, self.accounting))],
                   "train_flops": sum(a.train_flops for a in self.accounting),
                   "train_seconds": sum(a.train_seconds for a in self.accounting),
                   "precision": self.precision.to_dict(), "machine": device_capability(self.info.device)}
        summary["final_val"] = self.history[-1]["val"] if self.history else None
        models = {}
        best_path = run_weights(self.run_dir, "best")
        best = load_state_dict(best_path)[0] if self.info.is_main and best_path is not None else None
        best = distributed.broadcast_object(best, self.info)
        if best is not None:
            m = create_model(self.model.config).to(self.info.device)
            m.load_state_dict(best)
            models["best"] = m
        averaged = None
        if self.average.sum is not None:
            averaged = self.average.mean(self.model.state_dict())
        elif cfg.train.average_best and self.top.kept:
            averaged = distributed.broadcast_object(self._best_epochs_average() if self.info.is_main else None,
                                                    self.info)
            summary["averaged_epochs"] = [{"epoch": e, "val_select": v} for v, e in self.top.kept]
        if averaged is not None:
            m = create_model(self.model.config).to(self.info.device)
            m.load_state_dict(averaged)
            models["averaged"] = m
            summary["averaged_val"] = self._validate(m)
            if self.info.is_main:
                save_safetensors(m, self.run_dir / WEIGHT_FILES["averaged"], inference=self.inference_info())
        if "test" in self.splits:
            summary["test"] = {name: self._validate(m, "test") for name, m in models.items()}
        summary["unreadable"] = unreadable_report(self.history, self.left_out, summary)
        if self.info.is_main:
            write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=1))
            self.logs.close()
        return summary


# -- entry points -----------------------------------------------------------------------
def run_training(cfg: RunConfig, run_dir: Path, *, resume_state: dict | None = None, on_epoch=None) -> dict:
    """One run (fresh, or from ``resume_state``) to its end; returns the summary."""
    trainer = Trainer(cfg, run_dir, resume_state=resume_state, on_epoch=on_epoch)
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
    return run_training(cfg, run_dir, resume_state=state)


def _patch_text(patch) -> str:
    """``16x16``, or ``-`` for a family whose calls take no patch size."""
    return "-" if patch is None else f"{patch[0]}x{patch[1]}"
