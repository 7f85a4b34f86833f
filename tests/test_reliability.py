"""Faults survived, damaged checkpoints recovered from, untrusted files inert.

Every case here is a row of docs/RELIABILITY.md. Runs that are killed are real
subprocesses killed with SIGKILL, either from outside at a moment the test picks or from
inside at a named failpoint (:mod:`flexiast.faults`): mid-step, mid-validation, mid-write.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from flexiast import AST, CheckpointError
from flexiast.cli import main
from flexiast.engine.run_checkpoint import load_run_checkpoint

from helpers import Exploit, one_thread_env, read_csv, tiny_recipe, torchrun_cli, train_cli

# A run in which every source of randomness matters: dropout and drop-path (torch RNG),
# SpecAugment, mixup and noise (per-clip seeds), a cosine schedule, a compressed first
# phase and a FlexiAST phase drawing patch sizes. 6 epochs of 10 steps; a checkpoint
# every 3 steps and at every epoch's end. The 2 best epochs of the final phase are kept
# (files beside the checkpoints, replaced as better epochs come) and averaged at the end.
EPOCHS, STEPS = 6, 60
CRASH_RECIPE = dict(
    model={"drop_path_rate": 0.1, "drop_rate": 0.1},
    augment={"freqm": 8, "timem": 8, "mixup": 0.5, "noise": True},
    schedule={"name": "cosine", "warmup_steps": 5},
    train={"checkpoint_every": 3, "threads": 1, "average_best": 2},
    phases=[{"epochs": 2, "compression": "avgpool:2", "patch": {"sizes": [8]}},
            {"epochs": 4, "patch": {"sampler": "uniform", "sizes": [8, 12, 16]}}])


@pytest.fixture(scope="module")
def crash_recipe(fsdd_small, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(fsdd_small, path.parent / "unused", **CRASH_RECIPE)))
    return path


@pytest.fixture(scope="module")
def uninterrupted(crash_recipe) -> Path:
    out = crash_recipe.parent / "full"
    proc = train_cli(crash_recipe, f"out={out}", env=one_thread_env())
    assert proc.wait(timeout=300) == 0, proc.stdout.read().decode()
    return out


def resume_cli(run: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flexiast", "train", "--resume", str(run)],
                          capture_output=True, env=one_thread_env(**env), timeout=300)


def assert_same_run(a: Path, b: Path) -> None:
    """Run ``b`` ended where the uninterrupted run ``a`` did: metrics, losses, weights, logs."""
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    for key in ("best_val", "best_epoch", "test", "final_val"):
        assert sa[key] == sb[key], key
    assert [p["train_flops"] for p in sa["phases"]] == [p["train_flops"] for p in sb["phases"]]
    ha, hb = (json.loads((r / "history.json").read_text()) for r in (a, b))
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert [h["val"] for h in ha] == [h["val"] for h in hb]
    wa, wb = (load_run_checkpoint(r / "last.pt")["model"] for r in (a, b))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # train.average_best: the same epochs kept, the same average bit for bit, no stray file.
    assert sa["averaged_epochs"] == sb["averaged_epochs"] and sa["averaged_val"] == sb["averaged_val"]
    va, vb = (safetensors.torch.load_file(r / "averaged.safetensors") for r in (a, b))
    assert list(va) == list(vb) and all(torch.equal(va[k], vb[k]) for k in va)
    kept = sorted(f"epoch{e['epoch']:04d}.safetensors" for e in sa["averaged_epochs"])
    assert sorted(p.name for p in (b / "best_epochs").iterdir()) == kept
    # The logs carry each step and epoch once, with the same values.
    rows = [[(r["step"], r["loss"], r["patch"]) for r in read_csv(run / "steps.csv")] for run in (a, b)]
    assert rows[0] == rows[1]
    assert [r["epoch"] for r in read_csv(b / "metrics.csv")] == [str(e) for e in range(1, EPOCHS + 1)]


def assert_checkpoints_whole(run: Path) -> None:
    """Every checkpoint on disk loads and passes its CRC check; only ``*.tmp`` may be partial."""
    for path in run.glob("*.pt"):
        load_run_checkpoint(path)
    for path in run.glob("*.safetensors"):
        AST.from_pretrained(path)


# -- crashes --------------------------------------------------------------------------------------
def test_sigkill_at_a_moment_chosen_from_outside_then_resume(crash_recipe, uninterrupted, tmp_path):
    run = tmp_path / "killed"
    killed = train_cli(crash_recipe, f"out={run}", env=one_thread_env())
    steps = run / "steps.csv"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill in the middle of the second phase's first epoch
        if steps.exists() and sum(1 for _ in open(steps)) > 26:
            break
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (run / "summary.json").exists(), "the run finished before it was killed"
    assert 0 < load_run_checkpoint(run / "last.pt")["progress"]["step"] < STEPS
    resumed = resume_cli(run)
    assert resumed.returncode == 0, resumed.stdout.decode() + resumed.stderr.decode()
    assert_same_run(uninterrupted, run)


#: How far into a process each failpoint may fire (a step kill within 12 steps, a validation
#: kill within 4 batches, at most the second epoch's validation, a write kill within 6
#: checkpoint writes), so that six kills in a row end well inside the run.
FAILPOINT_RANGE = {"step": 12, "validation": 4, "checkpoint-write": 6}


@pytest.mark.slow  # about 35 s; the single SIGKILL tests below run by default
def test_seven_sigkills_mid_step_mid_validation_mid_write_then_the_same_run(crash_recipe, uninterrupted, tmp_path):
    rng = random.Random(20261122)
    points = list(FAILPOINT_RANGE) * 2
    rng.shuffle(points)
    trials = [("step", 2)] + [(name, rng.randint(1, FAILPOINT_RANGE[name])) for name in points]
    run = tmp_path / "killed"
    steps_done, trace = [], []
    for trial, (name, n) in enumerate(trials):
        # Killed before its first checkpoint, a run is started again; otherwise resumed.
        args = ("--resume", run) if (run / "last.pt").exists() else (crash_recipe, f"out={run}")
        proc = train_cli(*args, env=one_thread_env(FLEXIAST_FAILPOINT=f"{name}:{n}"))
        out = proc.communicate(timeout=300)[0].decode()
        trace.append(f"{name}:{n}")
        assert proc.returncode == -signal.SIGKILL, f"trial {trial} ({trace}) was not killed:\n{out}"
        assert not (run / "summary.json").exists()
        assert_checkpoints_whole(run)
        if name == "checkpoint-write":  # the kill cut a write short: the partial file is a .tmp
            partial = list(run.glob("*.tmp"))
            assert partial, "no write was in progress"
            for path in partial:
                with pytest.raises(CheckpointError):
                    load_run_checkpoint(path)
        if trial == 0:  # killed before the first checkpoint (step 3), with a logged step to clear
            assert not (run / "last.pt").exists() and len(read_csv(run / "steps.csv")) == 1
        else:
            steps_done.append(load_run_checkpoint(run / "last.pt")["progress"]["step"])
    assert steps_done == sorted(steps_done) and 0 < steps_done[-1] < STEPS, (trace, steps_done)
    resumed = resume_cli(run)
    assert resumed.returncode == 0, resumed.stdout.decode() + resumed.stderr.decode()
    assert not list(run.glob("*.tmp"))
    assert_same_run(uninterrupted, run)


# -- a full disk ----------------------------------------------------------------------------------
#: The write a full disk cuts short (``FLEXIAST_FAILPOINT=checkpoint-write:N:enospc``: 4 KiB of
#: the file reach the disk, then ENOSPC). The crash recipe's second write is a ``last.pt`` of
#: its first phase, which keeps no weights; its 13th is the final phase's ``best.safetensors``
#: (12 checkpoints, then best, best_epochs/, 4 checkpoints, best_epochs/ of an epoch that is not
#: the best, ...). The count follows the run's trajectory: a change that moves it (issue 30's
#: first phase built at its own input did) moves the writes; counting ``faults.write_point``'s
#: calls of an in-process run of the recipe gives the new order.
FULL_DISK = {"last.pt": 2, "best.safetensors": 13}


@pytest.mark.parametrize("file", [pytest.param(f, marks=pytest.mark.slow) if f == "best.safetensors" else f
                                  for f in FULL_DISK])  # a best.safetensors write: in the slow run
def test_a_full_disk_names_the_file_and_the_run_and_resuming_ends_the_same(file, crash_recipe, uninterrupted,
                                                                           tmp_path):
    run = tmp_path / "full-disk"
    failpoint = f"checkpoint-write:{FULL_DISK[file]}:enospc"
    proc = train_cli(crash_recipe, f"out={run}", env=one_thread_env(FLEXIAST_FAILPOINT=failpoint))
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 2 and "Traceback" not in out, out
    assert f"flexiast train: error: cannot write {run / file}: No space left on device; the run in {run} " in out
    assert f"free space on its disk, then continue it with flexiast train --resume {run}\n" in out, out
    # The write replaced nothing: every file on disk is whole, and the partial one is gone.
    assert_checkpoints_whole(run)
    assert not list(run.rglob("*.tmp")) and not (run / "summary.json").exists()
    assert 0 < load_run_checkpoint(run / "last.pt")["progress"]["step"] < STEPS
    resumed = resume_cli(run)
    assert resumed.returncode == 0, resumed.stdout.decode() + resumed.stderr.decode()
    assert not list(run.rglob("*.tmp"))
    assert_same_run(uninterrupted, run)
    wa, wb = (safetensors.torch.load_file(r / "best.safetensors") for r in (uninterrupted, run))
    assert list(wa) == list(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)


class _DiskFillsAfter:
    """A file whose disk is full after ``room`` bytes: the rest of the write fails with ENOSPC."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        data = bytes(data)
        self.file.write(data[: self.room])
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return len(data)

    def flush(self) -> None:
        self.file.flush()


@pytest.mark.parametrize("writer", ["bytes", "torch.save"])
def test_a_write_that_fills_the_disk_keeps_the_old_file_and_names_the_new_one(tmp_path, writer):
    """``torch.save`` reports its file's failed write as a RuntimeError: it is named all the same."""
    from flexiast.atomic import WriteError, write_atomic

    path = tmp_path / "last.pt"
    torch.save({"old": torch.zeros(3)}, path)
    write = {"bytes": lambda f: _DiskFillsAfter(f, 100).write(bytes(10_000)),
             "torch.save": lambda f: torch.save({"new": torch.ones(100_000)}, _DiskFillsAfter(f, 1000))}[writer]
    with pytest.raises(WriteError) as error:
        write_atomic(path, write)
    assert error.value.errno == errno.ENOSPC and error.value.path == path
    assert str(error.value) == f"cannot write {path}: No space left on device"
    assert torch.equal(torch.load(path, weights_only=True)["old"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.slow  # two processes, about 25 s
def test_a_two_process_run_killed_mid_step_resumes_to_the_same_run(fsdd_small, tmp_path):
    """torchrun, both ranks killed at their 13th step (after the checkpoint at step 12), then
    ``torchrun ... --resume``: every rank restores its own RNG state and trims its own step
    log, and the run ends bit-identical to an uninterrupted two-process run, with HTS-AT's
    spectrogram mixup and the average of the 2 best epochs (rank 0 keeps and averages them)."""
    raw = tiny_recipe(fsdd_small, tmp_path / "unused", model={"drop_path_rate": 0.1, "drop_rate": 0.1},
                      augment={"freqm": 8, "timem": 8, "mixup": 1.0, "mixup_alpha": 0.5, "mixup_on": "spectrogram"},
                      train={"checkpoint_every": 3, "threads": 1, "average_best": 2},
                      phases=[{"epochs": 3, "patch": {"sampler": "uniform", "sizes": [8, 12, 16]}}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    full = torchrun_cli(recipe, f"out={tmp_path / 'full'}", env=one_thread_env())
    assert full.wait(timeout=300) == 0, full.stdout.read().decode()
    run = tmp_path / "killed"
    killed = torchrun_cli(recipe, f"out={run}", env=one_thread_env(FLEXIAST_FAILPOINT="step:13"))
    out = killed.communicate(timeout=300)[0].decode()
    assert killed.returncode != 0 and not (run / "summary.json").exists(), out
    assert load_run_checkpoint(run / "last.pt")["progress"]["step"] == 12
    resumed = torchrun_cli("--resume", run, env=one_thread_env())
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read().decode()
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (tmp_path / "full", run))
    for key in ("best_val", "best_epoch", "test", "final_val", "train_flops", "world_size", "averaged_epochs",
                "averaged_val"):
        assert sa[key] == sb[key], key
    assert set(sa["test"]) == {"best", "averaged"}
    va, vb = (safetensors.torch.load_file(r / "averaged.safetensors") for r in (tmp_path / "full", run))
    assert list(va) == list(vb) and all(torch.equal(va[k], vb[k]) for k in va)
    wa, wb = (load_run_checkpoint(r / "last.pt")["model"] for r in (tmp_path / "full", run))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for log in ("steps.csv", "steps.rank1.csv"):
        rows = [[(r["step"], r["loss"], r["patch"]) for r in read_csv(d / log)] for d in (tmp_path / "full", run)]
        assert rows[0] == rows[1], log


# -- damaged checkpoints --------------------------------------------------------------------------
def _flip_a_byte_in_the_weights(path: Path) -> None:
    """Flip one byte inside tensor data, where torch.load alone would not notice: in a torch
    zip file, the middle of its largest record's data (after that record's local header,
    whose alignment padding carries no data); in a safetensors file, the middle of the file."""
    data = bytearray(path.read_bytes())
    where = len(data) // 2
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            record = max(z.infolist(), key=lambda info: info.file_size)
        name, extra = struct.unpack("<HH", data[record.header_offset + 26: record.header_offset + 30])
        where = record.header_offset + 30 + name + extra + record.file_size // 2
    data[where] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "one flipped byte": _flip_a_byte_in_the_weights,
    "empty": lambda p: p.write_bytes(b""),
    "not a checkpoint": lambda p: p.write_text("<html>503 Service Unavailable</html>"),
}


@pytest.fixture(scope="module")
def killed_run(crash_recipe) -> Path:
    """The crash recipe killed in its third epoch, after several checkpoints."""
    run = crash_recipe.parent / "killed-once"
    proc = train_cli(crash_recipe, f"out={run}", env=one_thread_env(FLEXIAST_FAILPOINT="step:24"))
    assert proc.wait(timeout=300) == -signal.SIGKILL
    assert (run / "last.prev.pt").exists()
    return run


@pytest.mark.parametrize("damage", [d if d == "truncated" else pytest.param(d, marks=pytest.mark.slow)
                                    for d in DAMAGE])  # one damage in the default run, every one in CI's slow run
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(killed_run, uninterrupted, tmp_path, damage):
    """The fallback warns naming the file and moves it aside; the resumed run is killed again
    in its first write (which must not rotate the damaged file over the good one), and the
    next resume still ends where the uninterrupted run did."""
    run = tmp_path / "run"
    shutil.copytree(killed_run, run)
    DAMAGE[damage](run / "last.pt")
    resumed = resume_cli(run, PYTHONWARNINGS="default", FLEXIAST_FAILPOINT="checkpoint-write:1")
    err = resumed.stderr.decode()
    assert resumed.returncode == -signal.SIGKILL, resumed.stdout.decode() + err
    assert f"resuming from {run / 'last.prev.pt'}: the newer checkpoint is unreadable ({run / 'last.pt'}" in err
    assert f"it was moved to {run / 'last.pt.damaged'}" in err and (run / "last.pt.damaged").exists()
    load_run_checkpoint(run / "last.prev.pt")
    again = resume_cli(run)
    assert again.returncode == 0, again.stdout.decode() + again.stderr.decode()
    assert_same_run(uninterrupted, run)


def test_both_checkpoints_damaged_is_refused_naming_both(killed_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(killed_run, run)
    DAMAGE["one flipped byte"](run / "last.pt")
    DAMAGE["truncated"](run / "last.prev.pt")
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint to resume from" in err and f"{run / 'last.pt'}: damaged" in err
    assert f"{run / 'last.prev.pt'}: not a readable PyTorch checkpoint" in err


@pytest.mark.parametrize("write", ["save_safetensors", "save_pretrained"])
def test_a_flipped_byte_in_our_safetensors_is_refused(tmp_path, write):
    """Safetensors checks its header, not its data: our files carry a CRC-32 of the tensors."""
    from flexiast.checkpoints import save_pretrained, save_safetensors

    model = AST(10, embed_dim=32, depth=1, num_heads=2, input_tdim=64)
    path = save_safetensors(model, tmp_path / "w.safetensors") if write == "save_safetensors" else \
        save_pretrained(model, tmp_path / "dir") / "model.safetensors"
    AST.from_pretrained(path.parent if write == "save_pretrained" else path)  # whole: loads
    _flip_a_byte_in_the_weights(path)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: damaged: the tensors' CRC-32"):
        AST.from_pretrained(path.parent if write == "save_pretrained" else path)


# -- untrusted files --------------------------------------------------------------------------------
@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """A checkpoint in our training layout whose unpickling would ``touch`` a marker file."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"cls_token": torch.zeros(1)}, "model_config": {}, "run_config": {}, "optimizer": {},
                "progress": {}, "payload": Exploit(marker)}, path)
    return path, marker


def test_the_exploit_runs_code_when_unpickled_without_weights_only(evil):
    """The file really is malicious: the refusals below are not vacuous."""
    path, marker = evil
    torch.load(path, weights_only=False)
    assert marker.exists()


def _hf_dir(evil_path: Path) -> Path:
    """A Hugging Face model directory whose ``pytorch_model.bin`` is the exploit."""
    d = evil_path.parent / "hf"
    d.mkdir()
    shutil.copy(evil_path, d / "pytorch_model.bin")
    (d / "config.json").write_text(json.dumps({"model_type": "audio-spectrogram-transformer"}))
    return d


def _run_dir(evil_path: Path) -> Path:
    d = evil_path.parent / "victim"
    d.mkdir()
    shutil.copy(evil_path, d / "last.pt")
    return d


LOADERS = {
    "from_pretrained": lambda e, r, c, o: AST.from_pretrained(e),
    "from_pretrained (HF directory)": lambda e, r, c, o: AST.from_pretrained(_hf_dir(e)),
    "train init.path": lambda e, r, c, o: main(["train", str(r), f"init.path={e}", f"out={o}"]),
    "train loss.teacher": lambda e, r, c, o: main(["train", str(r), f"loss.teacher={e}", f"out={o}"]),
    "train --resume": lambda e, r, c, o: main(["train", "--resume", str(_run_dir(e))]),
    "evaluate": lambda e, r, c, o: main(["evaluate", str(e), "--data", "fsdd:x"]),
    "predict": lambda e, r, c, o: main(["predict", str(e), c]),
    "export": lambda e, r, c, o: main(["export", str(e), str(o / "x.onnx")]),
    "convert": lambda e, r, c, o: main(["convert", str(e), str(o / "x.safetensors")]),
}


@pytest.mark.parametrize("loader", LOADERS)
def test_a_pickle_that_would_run_code_is_refused_by_every_loading_path(evil, loader, fsdd_small, fsdd_dir, capsys):
    path, marker = evil
    recipe = path.parent / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(fsdd_small, path.parent / "out")))
    try:
        code = LOADERS[loader](path, recipe, str(fsdd_dir / "0_theo_0.wav"), path.parent / "out")
    except CheckpointError as e:
        assert "refused to load" in str(e)
    else:
        assert code == 2
        err = capsys.readouterr().err
        assert "refused to load" in err and str(path.parent) in err
    assert not marker.exists()
    assert not (path.parent / "out" / "summary.json").exists()


# -- bad settings -----------------------------------------------------------------------------------
def _blocked(tmp: Path) -> str:
    """An output path under a regular file: unwritable even for root (CI runs as root)."""
    (tmp / "a_file").write_text("x")
    return f"out={tmp / 'a_file' / 'run'}"


BAD_SETTINGS = {
    "data root that does not exist": (lambda t: ["data.root=/nonexistent/fsdd"], "data.root: data folder"),
    "data file that does not exist": (lambda t: ["data.format=ast_json", f"data.train={{datafile: {t}/no.json}}",
                                                 f"data.options={{label_csv: {t}/labels.csv}}", "data.root=null"],
                                      r"data.train: {t}/no.json: AST datafile not found"),
    "unwritable output directory": (lambda t: [_blocked(t)], "out: cannot write the output directory"),
    "patch larger than the compressed input": (lambda t: ["phases.0.compression=fshift:2", "phases.0.patch.sizes=[32]"],
                                               r"phases\[0\].patch.sizes: patch 32x32 .* 24 frames"),
    "negative learning rate": (lambda t: ["optimizer.lr=-1"], "optimizer.lr: -1.0 must be non-negative"),
    "unknown key": (lambda t: ["train.epohcs=3"], "train.epohcs"),
    "teacher that does not exist": (lambda t: [f"loss.teacher={t}/teacher.safetensors"],
                                    "loss.teacher: teacher checkpoint .* does not exist"),
}


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_a_bad_setting_fails_before_training_naming_it(case, fsdd_small, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(fsdd_small, tmp_path / "run")))
    overrides, message = BAD_SETTINGS[case]
    assert main(["train", str(recipe), *overrides(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.search(message.replace("{t}", re.escape(str(tmp_path))), err), err
    outs = [o[len("out="):] for o in overrides(tmp_path) if o.startswith("out=")] or [tmp_path / "run"]
    assert not Path(outs[0]).exists()  # nothing started


def test_runs_written_before_safetensors_still_resolve_to_their_best_pt(tmp_path):
    """Run directories from before the weights were safetensors hold ``best.pt``."""
    from flexiast.inference import resolve_weights

    model = AST(10, embed_dim=32, depth=1, num_heads=2, input_tdim=64)
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, tmp_path / "best.pt")
    assert resolve_weights(tmp_path) == tmp_path / "best.pt"
    loaded = AST.from_pretrained(resolve_weights(tmp_path))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with pytest.raises(CheckpointError, match=r"has no averaged.safetensors \(it has best\)"):
        resolve_weights(tmp_path, "averaged")
