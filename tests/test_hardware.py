"""Precision chosen by the hardware: auto on each kind of CPU and GPU, refusals, the warning
for emulated bf16, device selection; the GPU paths by substituting the device's answers."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import warnings

import pytest
import torch

from flexiast import hardware
from flexiast.hardware import HardwareError, Precision, resolve_precision, select_device

# A process whose oneDNN and ATen kernels are capped at AVX2: a CPU without native bf16,
# whatever this machine's own CPU is (on an AVX2 machine the cap changes nothing).
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _in_process(code: str, env: dict) -> dict:
    import os

    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_auto_is_fp32_on_a_cpu_without_native_bf16_and_bf16_warns_with_the_slowdown():
    code = """
import json, warnings
import torch
from flexiast.hardware import resolve_precision, cpu_capability
auto = resolve_precision("auto", "cpu", setting="train.precision")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    explicit = resolve_precision("bf16", "cpu", setting="train.precision")
    again = resolve_precision("bf16", "cpu", setting="train.precision")
print(json.dumps({"oneDNN": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), "auto": auto.name,
                  "reason": auto.reason, "explicit": explicit.name, "cap": cpu_capability(),
                  "warnings": [str(w.message) for w in caught]}))
"""
    got = _in_process(code, AVX2)
    assert got["oneDNN"] is False and got["cap"]["native_bf16"] is False
    assert got["cap"]["isa"] == "AVX2"
    assert got["auto"] == "fp32"
    assert "bf16 emulated" in got["reason"] and "AVX2" in got["reason"]
    assert got["explicit"] == "bf16"  # an explicit bf16 still runs
    assert len(got["warnings"]) == 1  # once per process
    assert "train.precision" in got["warnings"][0] and "slower than fp32" in got["warnings"][0]


def test_auto_follows_onednn_on_this_cpu():
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    p = resolve_precision("auto", "cpu")
    assert p.name == ("bf16" if native else "fp32")
    assert p.requested == "auto" and p.device == "cpu"
    assert p.scaler is False


@pytest.mark.parametrize("native,name", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_by_native_bf16(monkeypatch, native, name):
    monkeypatch.setattr(hardware, "native_bf16", lambda device: native)
    p = resolve_precision("auto", "cpu")
    assert p.name == name
    assert p.dtype == (torch.bfloat16 if native else None)


def test_bf16_autocast_on_cpu_computes_in_bf16_and_fp32_does_not():
    x = torch.randn(4, 8)
    lin = torch.nn.Linear(8, 3)
    with Precision("bf16", "bf16", "cpu", "test").autocast():
        assert lin(x).dtype == torch.bfloat16
    with Precision("fp32", "fp32", "cpu", "test").autocast():
        assert lin(x).dtype == torch.float32


def test_fp16_on_a_cpu_and_unknown_values_are_refused_naming_the_setting():
    with pytest.raises(HardwareError, match=r"train\.precision: fp16 needs a GPU; the device is cpu"):
        resolve_precision("fp16", "cpu", setting="train.precision")
    with pytest.raises(HardwareError, match=r"--precision: 'fp64' is not one of auto, fp32, bf16, fp16"):
        resolve_precision("fp64", "cpu", setting="--precision")


@pytest.fixture
def fake_gpu(monkeypatch):
    """CUDA answers of a GPU with compute capability ``major``.0 (set ``fake_gpu.major``)."""
    state = types.SimpleNamespace(major=8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(
        name=f"Fake GPU sm_{state.major}0", major=state.major, minor=0, total_memory=16 * 2**30))
    return state


def test_auto_on_a_gpu_with_bf16_is_bf16(fake_gpu):
    p = resolve_precision("auto", "cuda:0")
    assert (p.name, p.dtype, p.scaler) == ("bf16", torch.bfloat16, False)
    assert "Fake GPU sm_80" in p.reason


def test_auto_on_a_gpu_without_bf16_is_fp16_with_a_scaler(fake_gpu):
    fake_gpu.major = 7
    p = resolve_precision("auto", "cuda:0")
    assert (p.name, p.dtype, p.scaler) == ("fp16", torch.float16, True)
    assert "loss scaling" in p.reason
    assert resolve_precision("fp16", "cuda:0").scaler is True
    assert resolve_precision("fp32", "cuda:0").dtype is None


def test_bf16_on_a_gpu_without_it_is_refused_naming_the_setting_and_device(fake_gpu):
    fake_gpu.major = 7
    with pytest.raises(HardwareError, match=r"train\.precision: bf16 is not supported natively by Fake GPU sm_70"):
        resolve_precision("bf16", "cuda:0", setting="train.precision")


def test_device_selection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(HardwareError, match="train.device: cuda requested but no GPU is visible"):
        select_device("cuda", setting="train.device")
    with pytest.raises(HardwareError, match="--device: 'tpu0' is not a device"):
        select_device("tpu0", setting="--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto", local_rank=3) == torch.device("cuda", 3)
    assert select_device("cuda", local_rank=2) == torch.device("cuda", 2)
    assert select_device("cuda:1", local_rank=2) == torch.device("cuda", 1)


def test_capability_line_names_isa_bf16_and_threads():
    cap = hardware.cpu_capability()
    line = hardware.describe_capability(cap)
    assert cap["isa"] in line and f"{cap['threads']} threads" in line
    assert ("bf16 emulated" in line) != cap["native_bf16"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # auto never warns
        resolve_precision("auto", "cpu")


# -- the trainer ---------------------------------------------------------------------
def test_fp16_on_a_cpu_is_refused_by_the_trainer_before_any_data_is_read(fsdd_small, tmp_path, monkeypatch):
    from flexiast.config import ConfigError, build_config
    from flexiast.engine import trainer as train_mod

    from helpers import tiny_recipe

    def no_data(cfg):
        raise AssertionError("the data was read")

    monkeypatch.setattr(train_mod, "load_splits", no_data)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = build_config(tiny_recipe(fsdd_small, tmp_path / "r", train={"precision": "fp16"}))  # device: auto
    with pytest.raises(ConfigError, match=r"train\.precision: fp16 needs a GPU; the device is cpu"):
        train_mod.Trainer(cfg, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_run_records_its_precision_and_a_resume_elsewhere_warns(fsdd_small, tmp_path, monkeypatch):
    """summary.json and the checkpoint keep the resolved precision; resuming where auto
    resolves to another one continues, with a warning that it is no longer bit-identical."""
    from flexiast.config import build_config
    from flexiast.engine import Trainer, train

    from helpers import tiny_recipe

    cfg = build_config(tiny_recipe(fsdd_small, tmp_path / "r", train={"precision": "auto"}, phases=[{"epochs": 1}]))
    summary = train(cfg)
    here = resolve_precision("auto", "cpu")
    assert summary["precision"] == here.to_dict()
    assert summary["machine"]["isa"] == torch.backends.cpu.get_cpu_capability()
    state = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert state["precision"] == here.to_dict()
    other = "fp32" if here.name == "bf16" else "bf16"
    state["precision"] = {**state["precision"], "name": other, "reason": "elsewhere"}
    with pytest.warns(UserWarning, match=f"trained in {other} \\(elsewhere\\) and continues in {here.name}"):
        Trainer(cfg, tmp_path / "r", resume_state=state)
