"""The training engine: phases, per-step patch sizes, distillation, checkpoints, DDP.

A run is a list of phases (:class:`flexiast.config.PhaseConfig`). The model starts at phase
0's geometry, from the initial weights by the family's own rule (AST's cut or interpolation
of DeiT's grid). Entering a later phase ``i`` adapts the model to that phase's input
(coarse-to-fine, Sec. 2.2): the positional grid is resized bilinearly to the grid of the
phase's input (``target_length / C`` frames under fshift or pooling), and in a ``patch:C``
phase the stored kernel becomes ``p x Cp``, moved with PI-resize or bilinear interpolation (Patch-PI / Patch-BL, Sec. 2.3);
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
masks of ``(seed, step, clip)``, the learning rate of the phase's step and epoch, dropout of
the saved torch RNG state. So ``flexiast train --resume RUN_DIR`` continues a killed run to
the same numbers.

This module is the loop; its parts have modules of their own: what a phase is
(:mod:`.phases`) and what it holds while it runs (:mod:`.phase`), the weighting and
reductions of a step across micro-batches and ranks (:mod:`.step`), the task
(:mod:`.objective`), the weights kept (:mod:`.kept_weights`), the saved state
(:mod:`.state`, :mod:`.run_checkpoint`) and what a run writes as it goes (:mod:`.logs`).
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import os
import time
from pathlib import Path

import torch

from .. import distributed, faults
from ..atomic import write_text_atomic
from ..checkpoints import save_safetensors
from ..config import ConfigError, RunConfig, build_config, config_to_dict
from ..data import AudioDataset, clip_samples
from ..data.loader import loader_workers, resolve_cache
from ..evaluate import evaluate_model
from ..hardware import HardwareError, device_capability, resolve_precision
from ..models import create_model, get_family, read_weights
from .kept_weights import KeptWeights, chosen_on, selection_number, validates_on_test
from .logs import RunLogs, announce, epoch_line, epoch_record, patch_text, progress_bar, step_row, unreadable_report
from .objective import build_task, check_labels, load_teacher
from .phase import PhaseRuntime, build_phase, place_model
from .phases import PhasePlan
from .run_checkpoint import (WEIGHT_FILES, gather_rng_states, load_latest, restore_rng_state, save_run_checkpoint,
                             warn_if_precision_changed)
from .splits import eval_loader, load_splits
from .state import PhaseAccount, Progress
from .step import StepFlops, StepTotals, clips_kept, gradient_sync, reduce_totals, weigh_micro_batch

__all__ = ["Trainer", "run_training", "resume"]

log = logging.getLogger(__name__)


# -- the engine -----------------------------------------------------------------------
class Trainer:
    """Runs one :class:`RunConfig` in ``run_dir`` (``cfg.out_dir``), fresh or resumed.

    The loop (:meth:`fit`) reads top to bottom: for each phase, :meth:`_enter_phase`
    adapts the model (``model.adapt``) and builds the phase's runtime (:attr:`phase`, a
    :class:`~flexiast.engine.phase.PhaseRuntime`: optimizer, data, patch sampler);
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
        teacher = load_teacher(cfg)
        # read once: _initial_model builds from it (a resumed run's weights are in its checkpoint)
        self.init_weights = read_weights(cfg.init.path) if cfg.init.path is not None and resume_state is None else None
        self.splits, self.left_out, self.samples = self._load_splits()
        train = self.splits["train"]
        check_labels(cfg, train)
        self.multilabel = train.multilabel
        self.num_classes = len(train.classes)
        self.task = build_task(cfg, teacher, multilabel=self.multilabel, num_classes=self.num_classes,
                               mel_bins=self.features.num_mel_bins, device=self.info.device)
        self.metric = self.task.metric or ("mAP" if self.multilabel else "accuracy")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.info.world_size))
        self.workers = loader_workers(cfg.data.num_workers, device=self.info.device.type, local_world_size=local_world)
        self.cache, self.cache_note = resolve_cache(cfg.data.cache_dir,
                                                    estimate_bytes=self.plan.feature_bytes(self.splits))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.phase: PhaseRuntime | None = None  # the current phase's, from entering it or resuming in it
        self.step_flops = StepFlops(self.task, self.features.num_mel_bins)
        self.progress = Progress()
        self.accounting = [PhaseAccount() for _ in cfg.phases]
        self.history: list[dict] = []
        self.kept = KeptWeights(cfg, self.run_dir, self.info)  # best, averaged, the k best epochs
        self._sync_bn_noted = False
        self.logs = RunLogs(self.run_dir, rank=self.info.rank, is_main=self.info.is_main,
                            tensorboard=cfg.train.tensorboard)
        if resume_state is None:
            self.logs.trim(0, 0)  # rows of an earlier attempt killed before its first checkpoint
            torch.manual_seed(cfg.seed)
            self.model = self._initial_model()
            if self.info.enabled:  # own dropout / drop-path masks per rank (weights come from rank 0)
                torch.manual_seed(cfg.seed + 1_000_003 * self.info.rank)
        else:
            self.model = create_model(resume_state["model_config"])
            self._restore(resume_state)

    # -- setup ---------------------------------------------------------------------
    def _read_splits(self) -> tuple[dict, dict, dict]:
        """:func:`load_splits`, and under variable-length batches every clip's samples from
        its header (read once per run: the token sampler and the evaluation order need them)."""
        splits, left_out = load_splits(self.cfg)
        samples = {}
        if self.cfg.data.batching != "fixed":
            samples = {name: clip_samples(m, self.features.sample_rate) for name, m in splits.items()}
        return splits, left_out, samples

    def _load_splits(self) -> tuple[dict, dict, dict]:
        """:meth:`_read_splits` on rank 0, its result (or its error) broadcast to every rank:
        ranks that scanned on their own could disagree (a file that vanishes between two
        scans) and then shard different manifests."""
        if not self.info.enabled:
            return self._read_splits()
        result = None
        if self.info.is_main:
            try:
                result = ("ok", self._read_splits())
            except ValueError as e:  # ConfigError, DataError: every rank raises it
                result = ("error", e)
        kind, value = distributed.broadcast_object(result, self.info)
        if kind == "error":
            raise value
        return value

    def base_model_config(self):
        """The configuration the recipe's model starts from, for this data's classes and features."""
        return self.cfg.model_config(num_classes=self.num_classes, features=self.features,
                                     labels=tuple(self.splits["train"].classes))

    def _initial_model(self):
        """The model phase 0 trains, built at phase 0's geometry. A coarse first phase starts from
        the initial weights moved straight to its input by the family's own rule (AST: DeiT's grid
        cut or interpolated per axis to the phase's grid, Gong et al. 2021 Sec. 2.2, as the
        coarse-to-fine paper's AST starts every run), not from a full-resolution model resized
        down; the bilinear resize of Sec. 2.3 moves the grid between phases (:meth:`_enter_phase`)."""
        target = self.plan.model_config(0, self.base_model_config())
        init = self.cfg.init
        if init.path is None:
            return create_model(target)
        hints = {k: getattr(init, k) for k in ("source_stride", "source_input_tdim", "source_input_fdim")
                 if getattr(init, k) is not None}
        hints.update(self.cfg.points().init_hints(self.plan.transfer(0)))  # how a kernel of another size moves in
        weights, self.init_weights = self.init_weights, None  # its tensors are not kept through training
        return self.family.init_from(weights, target, **hints)

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
        """Place the model on the device and replace :attr:`phase` with phase ``i``'s runtime."""
        self.model, note = place_model(self.model, self.info)
        if note and self.info.is_main and not self._sync_bn_noted:
            print(f"{self.cfg.name}: {note}", flush=True)
            self._sync_bn_noted = True
        self.phase = build_phase(i, self.model, cfg=self.cfg, info=self.info, scaler_enabled=self.precision.scaler,
                                 unused_parameters=self.task.unused_parameters, splits=self.splits,
                                 features=self.features, cache=self.cache, micro_batch=self.micro_batch,
                                 workers=self.workers, samples=self.samples)

    # -- checkpoint state ----------------------------------------------------------
    def state(self, rng: list[dict] | None = None) -> dict:
        """The checkpoint (its entries: :mod:`flexiast.engine.run_checkpoint`); ``rng``: every rank's."""
        return {"format": "flexiast-run", "version": 1,
                "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                "model_config": self.model.config.to_dict(), "run_config": config_to_dict(self.cfg),
                "inference": self.inference_info(), "optimizer": self.phase.optimizer.state_dict(),
                "scaler": self.phase.scaler.state_dict(), "rng": rng or [], "progress": self.progress.to_dict(),
                "accounting": [a.to_dict() for a in self.accounting], "history": copy.deepcopy(self.history),
                **self.kept.to_dict(), "precision": self.precision.to_dict()}

    def inference_info(self) -> dict:
        """What inference needs beyond the weights: the features, the current phase's
        compression (a model trained last on fshift or pooled input takes that input), how
        scores are read, and how clips were batched (packed native-length clips are deployed
        packed: :func:`flexiast.deploy.files.training_batching`)."""
        compression = self.cfg.phase_compression(self.phase.index)
        d = self.cfg.data
        return {"features": self.features.to_dict(), "compression": str(compression), "multilabel": self.multilabel,
                "batching": d.batching, "row_tokens": d.row_tokens}

    def _restore(self, state: dict) -> None:
        """Continue from checkpoint ``state``: the model (built from its configuration) takes
        its weights, the phase it was in is rebuilt with its optimizer and scaler, and this
        rank's RNG and logs go back to where the checkpoint was written."""
        self.progress = Progress.from_dict(state["progress"])
        self.accounting = [PhaseAccount.from_dict(a) for a in state["accounting"]]
        self.history = state["history"]
        self.kept.restore(state)
        warn_if_precision_changed(state.get("precision"), self.precision)
        self.model.load_state_dict(state["model"])
        self._build_phase(self.progress.phase)
        self.phase.optimizer.load_state_dict(state["optimizer"])
        self.phase.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"], self.info)
        self.logs.trim(self.progress.step, len(self.history))

    def _save(self) -> None:
        rng = gather_rng_states(self.info)
        if self.info.is_main:
            save_run_checkpoint(self.state(rng), self.run_dir)
            self.kept.checkpointed()

    # -- one optimizer step --------------------------------------------------------
    def _loss(self, spec, target: torch.Tensor, call: dict, index: torch.Tensor) -> torch.Tensor:
        """The task's loss on one micro-batch (a tensor, or packed clips), the model called with
        ``call`` (an operating point's: a patch size resized with the phase's ``patch.resize``)
        under the run's autocast."""
        keys = {"step": self.progress.step, "index": index}  # what a task draws per clip (SSAST's masks)
        with self.precision.autocast():
            outputs = self.task.forward(self.phase.forward, spec, call, keys)
        return self.task.loss(outputs, target)

    def _optimizer_step(self, micro_batches: list[dict]) -> dict:
        """One optimizer step: set the learning rate; per micro-batch forward, loss, backward
        (each clip's loss weighted ``1 / K``, ``K`` the clips kept over all ranks:
        :mod:`flexiast.engine.step`); then clip and step. Returns the step's loss, clips,
        skipped reads and their files, learning rate, patch size and FLOPs, over all ranks."""
        cfg, p, ph, info = self.cfg, self.progress, self.phase, self.info
        point = ph.sampler(p.step)
        lr = ph.learning_rate(p)
        for group in ph.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        ph.optimizer.zero_grad(set_to_none=True)
        accum = len(micro_batches)
        kept = clips_kept(micro_batches, info, varies=cfg.data.on_error == "skip" or cfg.data.batching != "fixed")
        errors = [e for batch in micro_batches for e in batch["errors"]]
        totals = StepTotals(skipped=len(errors), errors=errors)  # this rank's, until reduce_totals
        stand_in = (ph.stand_in_frames(), self.features.num_mel_bins, self.num_classes,  # a placeholder clip
                    cfg.data.batching == "packed")
        for j, batch in enumerate(micro_batches):
            batch, weight = weigh_micro_batch(batch, kept, info, accum, stand_in)
            if batch is None:
                continue  # every clip of this micro-batch was unreadable (on_error: skip), in one process
            spec = batch["spec"].to(info.device, non_blocking=True)
            target = batch["target"].to(info.device, non_blocking=True)
            spec, call = ph.micro_call(spec, point, batch, p.step, info.device)
            with gradient_sync(ph.forward, last=j == accum - 1, info=info):
                loss = self._loss(spec, target, call, batch["index"])
                ph.scaler.scale(loss * weight / accum).backward()
            if weight:  # a placeholder counts nothing
                totals.add(float(loss.detach()), len(spec), self.step_flops(self.model, spec, call))
        faults.point("step")
        if kept:  # a step with no readable clip on any rank leaves the weights and moments alone
            if cfg.train.grad_clip is not None:
                ph.scaler.unscale_(ph.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
            ph.scaler.step(ph.optimizer)
            ph.scaler.update()
        totals = reduce_totals(totals, info)
        return {"loss": totals.loss, "clips": totals.clips, "skipped": totals.skipped,
                "errors": sorted(set(totals.errors)), "lr": lr, "patch": "per clip" if ph.draw_per_clip else point,
                "flops": totals.flops}

    # -- epochs --------------------------------------------------------------------
    def _train_loader(self):
        """This phase's training loader, set to the current epoch and to the first clip of the
        epoch's next step (a resumed run skips the steps done)."""
        p, ph = self.progress, self.phase
        ph.data_sampler.set_epoch(p.epoch, start=p.batch * ph.start_per_step)
        ph.train_set.set_epoch(p.epoch)
        return ph.train_loader

    def _train_epoch(self) -> dict:
        """The optimizer steps left in this epoch (each counted, logged, and checkpointed every
        ``train.checkpoint_every``); the epoch's mean training loss and last learning rate."""
        cfg, p, ph = self.cfg, self.progress, self.phase
        steps = ph.steps_left_in_epoch(p)
        bar = None
        if self.info.is_main and cfg.train.progress:
            bar = progress_bar(total=ph.steps_per_epoch, initial=p.batch,
                               desc=f"phase {ph.index} epoch {p.phase_epoch + 1}/{ph.epochs}")
        batches = iter(self._train_loader())
        start = time.perf_counter()
        for done in range(1, steps + 1):
            out = self._optimizer_step([next(batches) for _ in range(cfg.train.accum_steps)])
            self._count_step(out, time.perf_counter() - start, bar)
            if cfg.train.checkpoint_every and p.step % cfg.train.checkpoint_every == 0 and done < steps:
                self._save()  # the end of the epoch saves anyway
            start = time.perf_counter()
        if bar is not None:
            bar.close()
        return {"train_loss": p.end_epoch(), "lr": ph.optimizer.param_groups[0]["lr"]}

    def _count_step(self, out: dict, seconds: float, bar) -> None:
        """Advance the clocks by one step; add its cost to the phase's account, its loss and
        skipped reads to the epoch's; show and log it."""
        cfg, p = self.cfg, self.progress
        p.count_step(out["loss"], out["clips"], out["skipped"], out["errors"])
        self.accounting[self.phase.index].count_step(out["clips"], out["flops"], seconds)
        rate = out["clips"] / max(seconds, 1e-9)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{out['loss']:.4f}", lr=f"{out['lr']:.2e}", patch=patch_text(out["patch"]),
                            clips_s=f"{rate:.0f}")
        if p.step % cfg.train.log_every == 0:
            self.logs.step(step_row(p.step, self.phase.index, p.epoch, out, rate))

    def seconds_left(self) -> float:
        """The run's remaining wall time, estimated (:meth:`PhasePlan.seconds_left`)."""
        ph = self.phase
        return self.plan.seconds_left(self.progress, self.accounting, len(self.history), phase_total=ph.total_steps,
                                      phase_epochs=ph.epochs, steps_per_epoch=ph.steps_per_epoch,
                                      current=self.model.config, task=self.task)

    def _validate(self, model=None, split: str = "val") -> dict:
        ph = self.phase
        if split not in ph.eval_loaders:  # made once per phase, their workers kept
            dataset = ph.val_set if split == "val" else AudioDataset(
                self.splits[split], self.features, compression=self.cfg.phase_compression(ph.index),
                cache=self.cache, on_error=self.cfg.data.on_error, seed=self.cfg.seed, lengths=ph.val_set.lengths)
            bs = self.cfg.data.eval_batch_size or self.micro_batch
            ph.eval_loaders[split] = eval_loader(dataset, bs, self.info, self.workers, collate_fn=ph.collate,
                                                 frames=ph.eval_frames(self.samples.get(split), self.features))
        score = getattr(self.task, "validate", evaluate_model)  # a task's own numbers (SSAST's), or a classifier's
        return score(model or self.model, ph.eval_loaders[split], self.cfg.eval_points(ph.index, self.features),
                     multilabel=self.multilabel, info=self.info,
                     autocast=self.precision.autocast)

    def _end_epoch(self, train_out: dict) -> None:
        cfg, p, i = self.cfg, self.progress, self.phase.index
        acc = self.accounting[i]
        t0 = time.perf_counter()
        val = self._validate()
        test = None
        if validates_on_test(cfg):  # the same clips: the validation numbers are the test numbers
            test = val
        elif cfg.train.test_every_epoch and "test" in self.splits:
            test = self._validate(split="test")
        acc.val_seconds += time.perf_counter() - t0
        record = epoch_record(cfg, i, p, self.accounting, train_out, val,
                              selection_number(val, cfg.train.select, self.metric))
        if test is not None:
            record.update(test=test, test_select=selection_number(test, cfg.train.select, self.metric))
        p.skipped, p.unreadable = 0, []
        self.history.append(record)
        if record["final_phase"]:
            self.kept.offer(record["val_select"], record["epoch"], p.phase_epoch, self.model, self.inference_info())
        p.epoch += 1
        p.phase_epoch += 1
        p.batch = 0
        if self.info.is_main:
            self._report_epoch(record)
        self._save()

    def _report_epoch(self, record: dict) -> None:
        self.logs.epoch(record, self.history)
        left = self.seconds_left()
        print(epoch_line(record, self.phase.epochs, self.metric, left), flush=True)
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
            announce(self.run_dir, cfg, self.info, self.precision, self.workers, self.cache_note)
        while p.phase < len(cfg.phases):
            i = p.phase
            if p.entered != i:
                self._enter_phase(i)
                p.entered, p.phase_step, p.phase_epoch, p.batch = i, 0, 0, 0
            while p.phase_step < self.phase.total_steps:
                self._end_epoch(self._train_epoch())
            if i + 1 == len(cfg.phases):
                break
            p.phase = i + 1
            self._save()
        summary = self._finish()
        p.done = True
        self._save()
        return summary

    def _model_with(self, weights: dict):
        """A model of the current configuration on the device, holding ``weights``."""
        m = create_model(self.model.config).to(self.info.device)
        m.load_state_dict(weights)
        return m

    def close(self) -> None:
        """Leave the process group cleanly.

        Gloo's worker thread may still be releasing the tensors of the last collective, which
        needs the GIL; destroying the group from a DDP reducer's destructor at exit would
        then deadlock. So: a barrier (all work done), drop the phase (its DDP wrapper, and its
        loaders, whose workers end here), then destroy.
        """
        if self.info.enabled and torch.distributed.is_initialized():
            torch.distributed.barrier()
        self.phase = None
        gc.collect()
        distributed.teardown(self.info)

    def _finish(self) -> dict:
        cfg = self.cfg
        summary = {"name": cfg.name, "seed": cfg.seed, "metric": self.metric, "best_epoch": self.kept.best.epoch,
                   "best_val": self.kept.best.value, "epoch_chosen_on": chosen_on(cfg),
                   "world_size": self.info.world_size,
                   "phases": [{"name": ph.name or f"phase{i}", "compression": ph.compression, **a.to_dict()}
                              for i, (ph, a) in enumerate(zip(cfg.phases, self.accounting))],
                   "train_flops": sum(a.train_flops for a in self.accounting),
                   "train_seconds": sum(a.train_seconds for a in self.accounting),
                   "precision": self.precision.to_dict(), "machine": device_capability(self.info.device)}
        summary["final_val"] = self.history[-1]["val"] if self.history else None
        models = {}
        best = self.kept.best_weights()
        if best is not None:
            models["best"] = self._model_with(best)
        averaged = self.kept.averaged(self.model.state_dict())
        if self.kept.average.sum is None and self.kept.top.kept:  # train.average_best
            summary["averaged_epochs"] = [{"epoch": e, "val_select": v} for v, e in self.kept.top.kept]
        if averaged is not None:
            m = models["averaged"] = self._model_with(averaged)
            summary["averaged_val"] = self._validate(m)
            if self.info.is_main:
                save_safetensors(m, self.run_dir / WEIGHT_FILES["averaged"], inference=self.inference_info())
        if "test" in self.splits:
            summary["test"] = {name: self._validate(m, "test") for name, m in models.items()}
            summary["test_select"] = {name: selection_number(t, cfg.train.select, self.metric)
                                      for name, t in summary["test"].items()}
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

