"""Helpers shared by the tests: a tiny training recipe, the CLI in a subprocess, tiny ImageNet
DeiT and ViT weights, a pickle that would run code and FLOPs as torch counts them."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def tiny_recipe(root: Path, out: Path, **sections) -> dict:
    """A 2-block, 32-wide AST on 64 mel bins x 48 frames: fast enough for several runs per test.

    It trains in fp32: the tests that use it compare runs with each other and with
    computations written out in the test, which bf16 (``auto`` on some CPUs) would blur."""
    raw = {
        "name": "t", "seed": 0, "out": str(out),
        "model": {"preset": None, "embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 16},
        "features": {"num_mel_bins": 64, "target_length": 48, "mean": -3.0856, "std": 5.309},
        "data": {"format": "fsdd", "root": str(root), "options": {"task": "digits"}, "val_fraction": 0.2,
                 "batch_size": 8},
        "optimizer": {"lr": 1e-3},
        "train": {"precision": "fp32", "progress": False, "tensorboard": False, "log_every": 1},
        "phases": [{"epochs": 2}],
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def sine(rate: int, seconds: float, freq: float = 1000.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """A sine of ``freq`` Hz and peak ``amp``, ``[samples]`` or ``[samples, channels]``."""
    t = np.arange(int(rate * seconds)) / rate
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def train_cli(*args, env=None, **kw) -> subprocess.Popen:
    """``python -m flexiast train ARGS`` in a subprocess, stdout and stderr together."""
    return subprocess.Popen([sys.executable, "-m", "flexiast", "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, **kw)


def torchrun_cli(*args, nproc: int = 2, env=None, **kw) -> subprocess.Popen:
    """``torchrun --nproc-per-node N -m flexiast train ARGS`` on a free local port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                             "--master-addr", "127.0.0.1", "--master-port", str(port),
                             "-m", "flexiast", "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, **kw)


def one_and_two_ranks(raw: dict, tmp_path: Path) -> tuple[Path, Path]:
    """The recipe ``raw`` trained in one process (``tmp_path/one``) and on two ranks with torchrun
    (``tmp_path/two``), side by side, one thread each; the two run folders."""
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    env = one_thread_env()
    one = train_cli(recipe, f"out={tmp_path / 'one'}", env=env)
    two = torchrun_cli(recipe, f"out={tmp_path / 'two'}", env=env)
    assert one.wait(timeout=300) == 0, one.stdout.read().decode()
    assert two.wait(timeout=300) == 0, two.stdout.read().decode()
    return tmp_path / "one", tmp_path / "two"


def kill_at_step(n: int):
    """A stand-in for :func:`flexiast.faults.point` that interrupts the ``n``-th training step (a
    ``KeyboardInterrupt``, as a kill would end it in-process)."""
    seen = {"step": 0}

    def point(name: str) -> None:
        if name == "step":
            seen["step"] += 1
            if seen["step"] == n:
                raise KeyboardInterrupt("killed")
    return point


def killed_and_resumed_match(make_raw, tmp_path: Path, monkeypatch, step: int) -> None:
    """Train ``make_raw(out)``'s recipe whole, and again killed at training step ``step`` and
    resumed, in this process; assert the two end with the same weights and step losses."""
    import safetensors.torch

    from flexiast import faults
    from flexiast.config import build_config
    from flexiast.engine import resume, train

    threads = torch.get_num_threads()
    try:
        runs = {name: build_config(make_raw(tmp_path / name)) for name in ("whole", "killed")}
        train(runs["whole"])
        with monkeypatch.context() as m:
            m.setattr(faults, "point", kill_at_step(step))
            try:
                train(runs["killed"])
                raise AssertionError(f"the run was not killed at step {step}")
            except KeyboardInterrupt:
                pass
        resume(tmp_path / "killed")
    finally:
        torch.set_num_threads(threads)
    a, b = (safetensors.torch.load_file(tmp_path / n / "best.safetensors") for n in ("whole", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = ([r["loss"] for r in read_csv(tmp_path / n / "steps.csv")] for n in ("whole", "killed"))
    assert la == lb


def one_thread_env(**extra) -> dict:
    """The environment for subprocess runs that must agree bit for bit: one thread, fixed hashes."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONHASHSEED="0", **extra)
    return env


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Exploit:
    """Unpickling this runs ``touch marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def tiny_deit(width: int = 32, depth: int = 2, grid: int = 14, scale: float = 1.0) -> dict:
    """A DeiT state dict in timm's layout (RGB 16x16 kernel, ``grid`` x ``grid`` positions, cls and
    dist tokens, a 1000-class head), ``width`` wide and ``depth`` blocks deep, seeded."""
    from flexiast import AST

    g = torch.Generator().manual_seed(0)
    D = width
    sd = {"cls_token": torch.randn(1, 1, D, generator=g), "dist_token": torch.randn(1, 1, D, generator=g),
          "pos_embed": torch.randn(1, 2 + grid * grid, D, generator=g),
          "patch_embed.proj.weight": torch.randn(D, 3, 16, 16, generator=g), "patch_embed.proj.bias": torch.zeros(D),
          "norm.weight": torch.ones(D), "norm.bias": torch.zeros(D),
          "head.weight": torch.randn(1000, D, generator=g), "head.bias": torch.zeros(1000)}
    for k, v in AST(10, embed_dim=D, depth=depth, num_heads=2).state_dict().items():
        if k.startswith("blocks."):
            sd[k] = torch.randn(v.shape, generator=g) * scale
    return sd


def tiny_vit(patch: int = 16, width: int = 32, depth: int = 2, image: int = 224, scale: float = 1.0) -> dict:
    """An ImageNet ViT state dict in timm's layout (``vit_base_patch{patch}_224`` at ``width``): RGB
    ``patch`` x ``patch`` kernel, ``image / patch`` square grid, one prefix token ([CLS]), a
    1000-class head; ``depth`` blocks, seeded."""
    from flexiast import AST

    g = torch.Generator().manual_seed(1)
    D, grid = width, image // patch
    sd = {"cls_token": torch.randn(1, 1, D, generator=g), "pos_embed": torch.randn(1, 1 + grid * grid, D, generator=g),
          "patch_embed.proj.weight": torch.randn(D, 3, patch, patch, generator=g),
          "patch_embed.proj.bias": torch.randn(D, generator=g) * 0.1,
          "norm.weight": torch.ones(D), "norm.bias": torch.zeros(D),
          "head.weight": torch.randn(1000, D, generator=g), "head.bias": torch.zeros(1000)}
    for k, v in AST(10, embed_dim=D, depth=depth, num_heads=2).state_dict().items():
        if k.startswith("blocks."):
            sd[k] = torch.randn(v.shape, generator=g) * scale
    return sd


def measured_flops(model, spec: torch.Tensor, train: bool = False, **call) -> int:
    """FLOPs of ``model(spec, **call)`` (and, with ``train``, of the backward pass of
    ``output.sum()``) as torch's ``FlopCounterMode`` counts them.

    On CPU the fused attention kernel is not registered with FlopCounterMode (it counts 0),
    so this runs with the math SDPA backend, where attention is two counted bmm's."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = model(spec, **call)
        if train:
            out.sum().backward()
    return counter.get_total_flops()
