"""SSAST: masks, the masked-patch losses, the model, its weights, pretraining and fine-tuning.

The references are written out here: SSAST's per-clip loops for the InfoNCE and MSE
(YuanGongND/ssast ``src/models/ast_models.py``, ``mpc`` and ``mpg``), patches cut by slicing
the spectrogram, and an encoder in plain tensor operations (``reference_vit``) run on an
official-layout state dict the test builds (``module.v.*`` DeiT keys, the heads, the mask
embedding, the pretraining input size).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml

from flexiast import CheckpointError
from flexiast.config import ConfigError, load_config
from flexiast.engine import train
from flexiast.inference import load_inference_model
from flexiast.masking import draw_masks, mask_count
from flexiast.models import create_model, flops, get_family, load_model
from flexiast.models.ssast import SSAST, SSASTConfig
from flexiast.tasks import MaskedPatchPrediction, masked_patch_losses

from helpers import measured_flops, one_and_two_ranks, one_thread_env, read_csv, tiny_deit, tiny_recipe, train_cli

TINY = dict(input_fdim=32, input_tdim=64, embed_dim=32, depth=2, num_heads=2, patch_size=16)


# -- masks ----------------------------------------------------------------------------
def test_masks_depend_only_on_seed_step_and_clip():
    clips = torch.tensor([5, 17, 3, 99])
    a = draw_masks((8, 16), 40, seed=1, step=7, clips=clips)
    b = draw_masks((8, 16), 40, seed=1, step=7, clips=clips.flip(0))
    assert torch.equal(a, b.flip(0))  # the batch's order and company do not matter
    assert torch.equal(a[1:2], draw_masks((8, 16), 40, seed=1, step=7, clips=clips[1:2]))
    assert not torch.equal(a, draw_masks((8, 16), 40, seed=1, step=8, clips=clips))
    assert not torch.equal(a, draw_masks((8, 16), 40, seed=2, step=7, clips=clips))
    assert not torch.equal(a, draw_masks((8, 16), 40, seed=1, step=7, clips=clips, stream=1))
    for m in (a, draw_masks((8, 16), 40, seed=1, step=7, clips=clips, cluster=False)):
        assert m.shape == (4, 40)
        assert all(len(set(row.tolist())) == 40 for row in m)  # distinct positions
        assert int(m.min()) >= 0 and int(m.max()) < 128


@pytest.mark.parametrize("cluster", [True, False])
def test_every_position_is_masked_equally_often(cluster):
    """Over many clips each of the 8 x 16 positions is hidden with probability M / N = 0.25
    (a square may hang over any edge, so the edges are not masked less)."""
    m = draw_masks((8, 16), 32, seed=0, step=0, clips=torch.arange(4000), cluster=cluster)
    rate = torch.bincount(m.reshape(-1), minlength=128).double() / 4000
    assert rate.sub(0.25).abs().max() < 0.05, rate.reshape(8, 16)


def test_cluster_masks_are_squares_of_side_3_to_5():
    """With 9 masked patches, a square of side 3-5 that lies inside the grid holds them all: then
    they fit a 5 x 5 box (most clips; a square clipped by an edge holds fewer, and a second
    square adds the rest). Uniform masks almost never fit one; and cluster masks have far more
    masked neighbours than uniform ones."""
    def boxed(cluster):
        m = draw_masks((16, 64), 9, seed=0, step=0, clips=torch.arange(2000), cluster=cluster)
        f, t = m // 64, m % 64
        return float((((f.max(1).values - f.min(1).values) <= 4) & ((t.max(1).values - t.min(1).values) <= 4))
                     .double().mean())

    assert boxed(True) > 0.7 and boxed(False) < 0.01

    def neighbours(masks):
        grid = torch.zeros(len(masks), 16, 64)
        grid.view(len(masks), -1).scatter_(1, masks, 1.0)
        right = (grid[:, :, 1:] * grid[:, :, :-1]).sum()
        down = (grid[:, 1:] * grid[:, :-1]).sum()
        return float(right + down) / masks.numel()

    clustered = draw_masks((16, 64), 100, seed=0, step=0, clips=torch.arange(200))
    uniform = draw_masks((16, 64), 100, seed=0, step=0, clips=torch.arange(200), cluster=False)
    assert neighbours(clustered) > 1.0 > 0.3 > neighbours(uniform)


def test_mask_count_is_a_count_or_a_fraction_that_scales():
    assert mask_count(400, 512) == 400
    assert mask_count(400 / 512, 512) == 400
    assert mask_count(400 / 512, 128) == 100  # Fshift 4: a quarter of the patches, a quarter masked
    with pytest.raises(ValueError, match="pretrain.masked: 400 masked patches, but the input has 128"):
        mask_count(400, 128)
    with pytest.raises(ValueError, match="must lie in"):
        mask_count(1.5, 128)


# -- losses -----------------------------------------------------------------------------
def _ssast_mpc(encode_samples, pred):
    """SSAST's ``mpc`` loss and accuracy, its per-clip loop written out."""
    B, M, _ = pred.shape
    nce, correct = torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    for i in range(B):
        total = torch.mm(encode_samples[i], torch.transpose(pred[i], 0, 1))
        correct += torch.sum(torch.eq(torch.argmax(torch.softmax(total, dim=-1), dim=0), torch.arange(0, M)))
        nce += torch.sum(torch.diag(torch.log_softmax(total, dim=-1)))
    return nce / (-1.0 * B * M), correct / (B * M)


def test_losses_equal_ssast_computation():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 7, 12, generator=g, dtype=torch.float64)
    target = torch.randn(2, 3, 7, 12, generator=g, dtype=torch.float64)
    target[0, 1] = pred[0, 1] * 3  # a clip whose predictions pick their own patches
    out = masked_patch_losses(pred, target, ("discriminative", "generative"))
    nce, acc = _ssast_mpc(target[0], pred[0])
    mse = torch.mean((pred[1] - target[1]) ** 2)
    assert torch.allclose(out["nce"], nce) and torch.allclose(out["acc"].double(), acc)
    assert torch.allclose(out["mse"], mse)
    assert torch.allclose(out["loss"], nce + 10 * mse)
    assert 1 / 3 <= float(acc) < 1  # the second clip is right on all 7, the others by chance
    only = masked_patch_losses(pred[1:], target[1:], ("generative",), generative_weight=2.0)
    assert set(only) == {"mse", "loss"} and torch.allclose(only["loss"], 2 * mse)


# -- the model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("ssast", **TINY).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m


def test_patches_are_the_spectrogram_cut_frequency_major(model):
    spec = torch.randn(2, 64, 32)
    p = model.patches(spec)
    assert p.shape == (2, 2 * 4, 256)
    for n in (0, 5, 7):
        f, t = divmod(n, 4)
        block = spec[1, 16 * t: 16 * t + 16, 16 * f: 16 * f + 16]  # [frames, bins]
        assert torch.equal(p[1, n], block.T.reshape(-1))  # freq-major: bin by bin, frames within


def test_a_masked_patch_cannot_be_seen(model):
    """The predictions for the hidden patches do not change when those patches' values do."""
    spec = torch.randn(2, 64, 32)
    masked = torch.tensor([[[1, 6], [0, 3]], [[2, 5], [4, 7]]])  # [passes, B, M]
    other = spec.clone()
    for b, positions in enumerate(masked[0]):
        for n in positions.tolist():
            f, t = divmod(n, 4)
            other[b, 16 * t: 16 * t + 16, 16 * f: 16 * f + 16] = 9.0
    with torch.no_grad():
        a = model(spec, masked=masked[:1], heads=("discriminative",))
        b = model(other, masked=masked[:1], heads=("discriminative",))
        shown = model(other, masked=masked[1:], heads=("discriminative",))
        base = model(spec, masked=masked[1:], heads=("discriminative",))
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(shown, base, atol=1e-3)  # a visible change is seen


def test_passes_run_together_equal_passes_run_apart(model):
    spec = torch.randn(3, 64, 32)
    masked = torch.stack([draw_masks((2, 4), 5, seed=0, step=0, clips=torch.arange(3), stream=s) for s in (0, 1)])
    with torch.no_grad():
        both = model(spec, masked=masked)
        first = model(spec, masked=masked[:1], heads=("discriminative",))
        second = model(spec, masked=masked[1:], heads=("generative",))
    assert torch.allclose(both, torch.cat([first, second]), atol=1e-5)


@pytest.mark.parametrize("masked", [0, 5])
def test_flops_equal_the_flop_counter(model, masked):
    spec = torch.randn(3, 64, 32)
    call = {}
    if masked:
        call["masked"] = torch.stack([draw_masks((2, 4), masked, seed=0, step=0, clips=torch.arange(3), stream=s)
                                      for s in (0, 1)])
    got = flops(model, (3, 64, 32), masked=masked)
    assert got.forward == measured_flops(model, spec, **call)


def test_another_patch_size_is_refused(model):
    with pytest.raises(ValueError, match="heads predict"):
        model(torch.randn(1, 64, 32), patch_size=8)
    with pytest.raises(ValueError, match="keeps its"):
        model.adapt(patch_size=8)


# -- weights --------------------------------------------------------------------------
def _official(width=32, depth=2, fdim=32, tdim=64, patch=(16, 16)) -> dict:
    """An SSAST state dict in the official layout (DataParallel ``module.``): the patch model, or
    with ``patch=(fdim, 2)`` the frame model."""
    g = torch.Generator().manual_seed(3)
    deit = tiny_deit(width=width, depth=depth, grid=2, scale=0.1)
    sd = {f"module.v.{k}": v for k, v in deit.items() if not k.startswith(("patch_embed", "pos_embed"))}
    sd["module.v.head_dist.weight"], sd["module.v.head_dist.bias"] = torch.randn(1000, width), torch.zeros(1000)
    sd["module.v.patch_embed.proj.weight"] = torch.randn(width, 1, *patch, generator=g) * 0.05
    sd["module.v.patch_embed.proj.bias"] = torch.randn(width, generator=g) * 0.1
    sd["module.v.pos_embed"] = torch.randn(1, 2 + (fdim // patch[0]) * (tdim // patch[1]), width, generator=g) * 0.1
    sd["module.mask_embed"] = torch.randn(1, 1, width, generator=g)
    for head in ("cpredlayer", "gpredlayer"):
        sd[f"module.{head}.0.weight"] = torch.randn(width, width, generator=g) * 0.1
        sd[f"module.{head}.0.bias"] = torch.randn(width, generator=g) * 0.1
        sd[f"module.{head}.2.weight"] = torch.randn(patch[0] * patch[1], width, generator=g) * 0.1
        sd[f"module.{head}.2.bias"] = torch.randn(patch[0] * patch[1], generator=g) * 0.1
    sd["module.p_input_fdim"], sd["module.p_input_tdim"] = torch.tensor(fdim), torch.tensor(tdim)
    return sd


def _reference_mpc(sd: dict, spec: torch.Tensor, mask_index: torch.Tensor, heads: int = 2):
    """SSAST's ``mpc`` forward on the official state dict: unfold, conv patch embedding, the mask
    embedding swapped in, cls + dist tokens, positions, pre-norm blocks, norm, ``cpredlayer``."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    x = spec.unsqueeze(1).transpose(2, 3)
    inputs = F.unfold(x, kernel_size=(16, 16), stride=(16, 16)).transpose(1, 2)
    tokens = F.conv2d(x, sd["v.patch_embed.proj.weight"], sd["v.patch_embed.proj.bias"], stride=16)
    tokens = tokens.flatten(2).transpose(1, 2)
    B, N, D = tokens.shape
    dense = torch.ones(B, N, D)
    for i in range(B):
        dense[i, mask_index[i], :] = 0
    tokens = tokens * dense + (1 - dense) * sd["mask_embed"].expand(B, N, -1)
    h = torch.cat([sd["v.cls_token"].expand(B, -1, -1), sd["v.dist_token"].expand(B, -1, -1), tokens], 1)
    h = h + sd["v.pos_embed"]
    for b in range(1 + max(int(k.split(".")[2]) for k in sd if k.startswith("v.blocks."))):
        p = f"v.blocks.{b}."
        y = F.layer_norm(h, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], 1e-6)
        q, k, v = (y @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]).reshape(B, -1, 3, heads, D // heads) \
            .permute(2, 0, 3, 1, 4)
        a = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads), -1) @ v).transpose(1, 2).reshape(B, -1, D)
        h = h + a @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        y = F.layer_norm(h, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
        h = h + F.gelu(y @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"]) @ sd[p + "mlp.fc2.weight"].T \
            + sd[p + "mlp.fc2.bias"]
    h = F.layer_norm(h, (D,), sd["v.norm.weight"], sd["v.norm.bias"], 1e-6)
    pred = torch.stack([F.linear(F.relu(F.linear(h[i, mask_index[i] + 2], sd["cpredlayer.0.weight"],
                                                 sd["cpredlayer.0.bias"])),
                                 sd["cpredlayer.2.weight"], sd["cpredlayer.2.bias"]) for i in range(B)])
    encode_samples = torch.stack([inputs[i, mask_index[i]] for i in range(B)])
    return pred, encode_samples


def test_official_ssast_checkpoint_loads_and_predicts_as_ssast(tmp_path):
    sd = _official()
    path = tmp_path / "SSAST-Tiny-Patch-400.pth"
    torch.save(sd, path)
    model = load_model(path)
    assert isinstance(model, SSAST) and model.config.input_size == (32, 64) and model.config.prefix_tokens == 2
    spec = torch.randn(2, 64, 32, generator=torch.Generator().manual_seed(4))
    mask_index = torch.tensor([[0, 2, 5], [1, 3, 7]])
    with torch.no_grad():
        pred = model.eval()(spec, masked=mask_index[None], heads=("discriminative",))[0]
        target = model.patches(spec).gather(1, mask_index[..., None].expand(-1, -1, 256))
    ref_pred, ref_target = _reference_mpc(sd, spec, mask_index)
    assert torch.allclose(pred, ref_pred, atol=1e-4)
    assert torch.equal(target, ref_target)
    nce, acc = _ssast_mpc(target.double(), pred.double())
    out = masked_patch_losses(pred[None].double(), target[None].double(), ("discriminative",))
    assert torch.allclose(out["nce"], nce, atol=1e-6) and torch.allclose(out["acc"].double(), acc)


def test_official_frame_model_loads_with_uniform_masking(tmp_path):
    """SSAST-Frame: 128 x 2 patches spanning every mel bin; SSAST masks it uniformly."""
    torch.save(_official(fdim=128, tdim=64, patch=(128, 2)), tmp_path / "SSAST-Tiny-Frame-400.pth")
    model = load_model(tmp_path / "SSAST-Tiny-Frame-400.pth")
    assert model.config.patch_size == (128, 2) and model.config.grid == (1, 32)
    assert not MaskedPatchPrediction(400).cluster(model.config)
    assert MaskedPatchPrediction(400).cluster(create_model("ssast", **TINY).config)
    with torch.no_grad():
        out = model(torch.randn(2, 64, 128), masked=torch.tensor([[[0, 9, 31]] * 2] * 2))
    assert out.shape == (2, 2, 3, 256)


def test_fine_tuning_keeps_the_encoder_and_drops_the_heads(tmp_path):
    torch.save(_official(), tmp_path / "ssast.pth")
    pre = load_model(tmp_path / "ssast.pth")
    target = create_model("ast", num_classes=3, input_fdim=32, input_tdim=96, embed_dim=32, depth=2, num_heads=2,
                          patch_size=16, stride=8, pooling="mean").config
    with pytest.warns(UserWarning, match=r"sets num_heads=1 \(recipe: 2\)"):  # the file's 32 wide heads win
        ft = get_family("ast").init_from(tmp_path / "ssast.pth", target, source_input_tdim=1024)  # a hint it needs not
    assert ft.arch == "ast" and ft.config.pooling == "mean" and ft.config.stride == (8, 8)
    assert ft.config.grid == (3, 11) and ft.config.num_classes == 3
    sd, psd = ft.state_dict(), pre.state_dict()
    assert not any(k.startswith(("mask_embed", "cpredlayer", "gpredlayer")) for k in sd)
    for k in sd:
        if not k.startswith(("head.", "pos_embed")):
            assert torch.equal(sd[k], psd[k]), k
    assert torch.equal(sd["pos_embed"][:, :2], psd["pos_embed"][:, :2])
    spec = torch.randn(2, 96, 32)
    with torch.no_grad():
        tokens = ft.eval().embed(spec)
        assert torch.allclose(ft.head(tokens.tokens.mean(1)), ft(spec), atol=1e-5)  # ft_avgtok
    with torch.no_grad():  # a plain AST: FlexiAST's per-call patch size and a fixed copy work on it
        assert ft(spec, patch_size=8).shape == (2, 3)
        torch.testing.assert_close(ft.fixed(patch_size=24, input_tdim=96)(spec), ft(spec, patch_size=24))
    wrong = target.replace(patch_size=8)
    with pytest.raises(CheckpointError, match=r"pretrained with \(16, 16\) patches.*model.patch_size: \[16, 16\]"):
        get_family("ast").init_from(tmp_path / "ssast.pth", wrong)


def test_an_ssast_file_is_refused_where_a_classifier_is_expected_and_the_reverse(tmp_path):
    torch.save(_official(), tmp_path / "ssast.pth")
    with pytest.raises(CheckpointError, match="ssast family.*the ast family is expected"):
        load_model(tmp_path / "ssast.pth", arch="ast")
    with pytest.raises(CheckpointError, match="pretraining model.*fine-tune it first"):
        load_inference_model(tmp_path / "ssast.pth", features="esc50")
    ast = create_model("ast", num_classes=3, **TINY)
    ast.save_pretrained(tmp_path / "ast")
    with pytest.raises(CheckpointError, match="init.path: .*ast family.*continues from an SSAST file"):
        get_family("ssast").init_from(tmp_path / "ast", SSASTConfig(**TINY))


# -- pretraining and fine-tuning runs ----------------------------------------------------
def _pretrain_recipe(fsdd_small, out, **sections):
    raw = tiny_recipe(fsdd_small, out, **sections)
    raw["model"] = {**raw["model"], "arch": "ssast"}
    raw["data"] = {"format": "audio", "root": str(fsdd_small / "recordings"), "test": None, "val_fraction": 0.1,
                   "batch_size": 8}
    raw["features"] = {**raw["features"], "target_length": 64}  # 4 x 4 patches; 4 x 1 under Fshift 4
    raw["pretrain"] = {"masked": 0.5}
    raw["phases"] = [{"name": "coarse", "steps": 4, "compression": "fshift:4"}, {"name": "fine", "steps": 6}]
    return raw


def _cfg(raw, tmp_path, name="r.yaml", *overrides):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return load_config(path, list(overrides))


@pytest.mark.slow
def test_pretraining_runs_coarse_to_fine_resumes_identically_and_fine_tunes(fsdd_small, tmp_path):
    """Fshift 4 then full resolution; killed mid-step in the fine phase and resumed, the run ends
    with the weights of the run never stopped (both in one thread, as bit-identity needs); its
    best weights then start an AST's fine-tuning."""
    runs = {}
    for name, env in (("whole", {}), ("killed", {"FLEXIAST_FAILPOINT": "step:8"})):
        raw = _pretrain_recipe(fsdd_small, tmp_path / name, train={"checkpoint_every": 3, "threads": 1})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        proc = train_cli(path, env=one_thread_env(**env))
        output = proc.communicate()[0].decode()
        runs[name] = (proc.returncode, output)
    assert runs["whole"][0] == 0, runs["whole"][1]
    assert runs["killed"][0] != 0 and not (tmp_path / "killed" / "summary.json").exists()
    proc = subprocess.run([sys.executable, "-m", "flexiast", "train", "--resume", str(tmp_path / "killed")],
                          env=one_thread_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    a = load_model(tmp_path / "whole" / "best.safetensors")
    b = load_model(tmp_path / "killed" / "best.safetensors")
    assert a.arch == "ssast" and a.config.input_tdim == 64
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k

    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["metric"] == "masked_acc"
    history = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert {"masked_acc", "nce", "mse", "loss"} <= set(history[-1]["val"]["stored"])
    coarse, fine = summary["phases"]
    # Fshift 4: 16 frames, 4 x 1 patches, 2 of them masked; then 64 frames, 4 x 4, 8 masked; two passes each
    small = SSASTConfig(**{**TINY, "input_fdim": 64, "input_tdim": 16})
    assert coarse["train_flops"] == coarse["clips"] * flops(small, (1, 16, 64), masked=2).training
    full = SSASTConfig(**{**TINY, "input_fdim": 64, "input_tdim": 64})
    assert fine["train_flops"] == fine["clips"] * flops(full, (1, 64, 64), masked=8).training

    ft = tiny_recipe(fsdd_small, tmp_path / "ft", init={"path": str(tmp_path / "whole" / "best.safetensors")})
    ft["model"] = {**ft["model"], "pooling": "mean"}
    ft["phases"] = [{"steps": 2}]
    assert train(_cfg(ft, tmp_path, "ft.yaml"))["metric"] == "accuracy"
    tuned = load_model(tmp_path / "ft" / "best.safetensors")
    assert tuned.arch == "ast" and tuned.config.pooling == "mean"
    encoder = {k: v for k, v in a.state_dict().items() if k.startswith("blocks.")}
    start = get_family("ast").init_from(tmp_path / "whole" / "best.safetensors", tuned.config)
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in encoder.items())


def test_bad_pretraining_settings_are_refused_before_training(fsdd_small, tmp_path):
    raw = _pretrain_recipe(fsdd_small, tmp_path / "r")
    raw["pretrain"] = {"masked": 10}
    with pytest.raises(ConfigError, match=r"pretrain.masked: 10 masked patches, but the input has 4 per clip.*"
                                          r"phase 0, 16 frames, compression fshift:4"):
        _cfg(raw, tmp_path)
    raw = _pretrain_recipe(fsdd_small, tmp_path / "r")
    raw["phases"][1]["patch"] = {"sampler": "uniform", "sizes": [8, 16]}
    with pytest.raises(ConfigError, match=r"phases\[1\].patch.sizes: an SSAST's heads predict 16x16"):
        _cfg(raw, tmp_path)
    raw = _pretrain_recipe(fsdd_small, tmp_path / "r")
    raw["phases"][0]["compression"] = "patch:2"
    with pytest.raises(ConfigError, match=r"phases\[0\].compression: patch:C"):
        _cfg(raw, tmp_path)
    supervised = tiny_recipe(fsdd_small, tmp_path / "s", pretrain={"masked": 100})
    with pytest.raises(ConfigError, match="pretrain: masked-patch pretraining needs a model without a classifier"):
        _cfg(supervised, tmp_path)


def test_labelled_data_for_pretraining_and_unlabeled_data_for_a_classifier_are_refused(fsdd_small, tmp_path):
    raw = _pretrain_recipe(fsdd_small, tmp_path / "p")
    raw["data"] = {"format": "fsdd", "root": str(fsdd_small), "test": None, "batch_size": 8}
    with pytest.raises(ConfigError, match="data.format: fsdd gives labelled clips.*ignore_labels"):
        train(_cfg(raw, tmp_path))
    raw = tiny_recipe(fsdd_small, tmp_path / "c")
    raw["data"] = {"format": "audio", "root": str(fsdd_small / "recordings"), "test": None, "batch_size": 8}
    with pytest.raises(ConfigError, match="data.format: audio gives unlabeled clips, and a ast classifier"):
        train(_cfg(raw, tmp_path))
    raw = _pretrain_recipe(fsdd_small, tmp_path / "i")
    raw["data"] = {"format": "fsdd", "root": str(fsdd_small), "options": {"ignore_labels": True}, "test": None,
                   "batch_size": 8}
    raw["phases"] = [{"steps": 1}]
    assert train(_cfg(raw, tmp_path))["metric"] == "masked_acc"  # a labelled dataset's clips, labels ignored


def test_one_objective_alone_trains_and_picks_its_best_epoch_by_its_own_number(fsdd_small, tmp_path):
    """SSAST's pretrain_mpg: the generative head alone (one pass), the best epoch by -MSE."""
    raw = _pretrain_recipe(fsdd_small, tmp_path / "g")
    raw["pretrain"]["objective"] = "generative"
    raw["phases"] = [{"steps": 2}]
    summary = train(_cfg(raw, tmp_path))
    val = summary["final_val"]["stored"]
    assert summary["metric"] == "neg_mse" and "masked_acc" not in val and val["neg_mse"] == -val["mse"]
    assert val["loss"] == pytest.approx(10 * val["mse"])


def test_masked_patch_task_keys_its_masks_on_the_step_and_the_clips(model):
    task = MaskedPatchPrediction(0.5, seed=3)
    spec = torch.randn(2, 64, 32)
    a = task.forward(model, spec, {}, {"step": 4, "index": torch.tensor([10, 11])})
    b = task.forward(model, spec, {}, {"step": 4, "index": torch.tensor([10, 11])})
    c = task.forward(model, spec, {}, {"step": 5, "index": torch.tensor([10, 11])})
    assert torch.equal(a["target"], b["target"]) and not torch.equal(a["target"], c["target"])
    assert a["pred"].shape == (2, 2, 4, 256)  # two passes, 2 clips, half of 8 patches, 16 x 16 values


def _history(path, records, summary=None):
    path.mkdir()
    (path / "history.json").write_text(json.dumps(records))
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))


def _epoch(epoch, final, loss, flops_cum, seconds_cum):
    return {"epoch": epoch, "final_phase": final, "train_flops_cum": flops_cum, "train_seconds_cum": seconds_cum,
            "val": {"stored": {"masked_acc": 0.5, "loss": loss}, "_skipped": 0}, "val_select": 0.5}


def test_pretraining_savings_by_hand(tmp_path):
    """Table 6's reading of two pretraining runs: the whole runs' cost, the cost until the run's
    validation loss first reaches the baseline's final one, and the fine-tuned test numbers."""
    from flexiast.accounting import pretraining_savings

    _history(tmp_path / "base", [_epoch(1, True, 3.0, 100, 10), _epoch(2, True, 2.0, 200, 20),
                                 _epoch(3, True, 1.5, 300, 30), _epoch(4, True, 1.2, 400, 40)])
    _history(tmp_path / "c2f", [_epoch(1, False, 4.0, 25, 4), _epoch(2, True, 1.6, 125, 14),
                                _epoch(3, True, 1.1, 225, 24), _epoch(4, True, 1.0, 325, 34)])
    _history(tmp_path / "ft_base", [], {"metric": "accuracy", "test": {"best": {"16": {"accuracy": 0.80}}}})
    _history(tmp_path / "ft_c2f", [], {"metric": "accuracy", "test": {"best": {"16": {"accuracy": 0.83}}}})
    s = pretraining_savings(tmp_path / "c2f", tmp_path / "base", (tmp_path / "ft_c2f", tmp_path / "ft_base"))
    assert s["whole"]["flops_saved"] == pytest.approx(1 - 325 / 400)
    assert s["whole"]["time_saved"] == pytest.approx(1 - 34 / 40)
    assert s["to_loss"]["run_epoch"] == 3  # 1.1 <= 1.2, the baseline's final loss
    assert s["to_loss"]["flops_saved"] == pytest.approx(1 - 225 / 400)
    assert s["downstream"]["difference"] == pytest.approx(0.03)
    with pytest.raises(ValueError, match="not a pretraining run"):
        pretraining_savings(tmp_path / "c2f", tmp_path / "ft_base")


def test_flops_command_counts_an_ssast_at_its_patch(capsys):
    from flexiast.cli import main

    assert main(["flops", "--model", "ssast-tiny", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    expected = flops(create_model("ssast-tiny").config, (1024, 128))  # 8 x 64 patches, both heads on each
    assert row["patch_size"] == [16, 16] and row["forward_gflops"] == pytest.approx(expected.forward / 1e9)
    with pytest.raises(SystemExit) as exited:
        main(["flops", "--model", "ssast-tiny", "--patch-sizes", "8"])
    assert exited.value.code == 2 and "stored 16x16 patch only" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["joint", "discriminative"])
def test_two_ranks_pretrain_as_one_process(fsdd_small, tmp_path, objective):
    """Under DDP each rank draws its clips' masks from (seed, step, clip), so two ranks splitting
    each batch compute the one process's steps on the same masks: the same loss at the first step,
    and then the same up to rounding (different masks would give other losses at once). One objective alone leaves a head without
    gradients, which DDP is told of."""
    raw = _pretrain_recipe(fsdd_small, tmp_path / "unused", train={"threads": 1})
    raw["pretrain"]["objective"] = objective
    one_and_two_ranks(raw, tmp_path)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2
    # The first step starts from the same weights: its loss, over the same clips and masks, is the
    # same; later steps drift apart by rounding (the ranks sum gradients in another order).
    single, ranked = (read_csv(tmp_path / run / "steps.csv") for run in ("one", "two"))
    assert [r["phase"] for r in single] == [r["phase"] for r in ranked] == ["0"] * 4 + ["1"] * 6
    for i, (x, y) in enumerate(zip(single, ranked)):
        assert float(y["loss"]) == pytest.approx(float(x["loss"]), rel=1e-5 if i == 0 else 1e-2), i
    for x, y in zip(*(json.loads((tmp_path / run / "history.json").read_text()) for run in ("one", "two"))):
        for k, v in x["val"]["stored"].items():
            if k == "masked_acc":  # a count of argmax decisions: near ties may flip a few
                predictions = x["val"]["_clips"] * (2 if x["phase"] == 0 else 8)  # 4 x 1 or 4 x 4 patches, half
                assert abs(y["val"]["stored"][k] - v) * predictions <= 3 + 1e-9
            else:
                assert y["val"]["stored"][k] == pytest.approx(v, rel=1e-2), k


def test_embeddings_of_a_pretrained_ssast_are_its_encoders(fsdd_dir, tmp_path):
    """``flexiast embed`` and HEAR take a pretraining model (predicting is refused): its clip
    embedding is the one the AST fine-tuning starts from gives, the same encoder on the same
    input, read through the other family."""
    from flexiast.checkpoints import save_safetensors
    from flexiast.embeddings import embed_audio
    from flexiast.features import FeatureConfig
    from flexiast.hear import get_scene_embeddings, load_model as hear_model

    torch.manual_seed(0)
    pre = create_model("ssast", input_fdim=128, input_tdim=64, embed_dim=32, depth=2, num_heads=2).eval()
    features = FeatureConfig(num_mel_bins=128, target_length=64, mean=-3.0856, std=5.309)
    info = {"features": features.to_dict(), "compression": "none", "multilabel": False}
    save_safetensors(pre, tmp_path / "ssast.safetensors", inference=info)
    ast = pre.as_classifier(create_model("ast", num_classes=3, input_fdim=128, input_tdim=64, embed_dim=32, depth=2,
                                         num_heads=2, pooling="mean").config)
    save_safetensors(ast, tmp_path / "ast.safetensors", inference=info)
    clip = fsdd_dir / "3_theo_7.wav"
    got = {name: embed_audio(load_inference_model(tmp_path / f"{name}.safetensors", classifier=False), clip,
                             pooling="mean")["clip"] for name in ("ssast", "ast")}
    torch.testing.assert_close(got["ssast"], got["ast"])
    hear = hear_model(str(tmp_path / "ssast.safetensors"), pooling="mean")
    assert get_scene_embeddings(torch.zeros(2, 16000), hear).shape == (2, 32)
    with pytest.raises(ValueError, match="no classifier to predict with"):
        load_inference_model(tmp_path / "ssast.safetensors", classifier=False).predict(clip)
