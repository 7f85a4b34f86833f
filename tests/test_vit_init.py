"""ImageNet ViT weights for the standard ASTs (FlexiAST Sec. 3.2) and BL training (Sec. 3.4 item 2).

* Google's JAX ``.npz`` (the original ViT / AugReg release layout) loads into an AST whose
  encoder gives Hugging Face's ``ViTModel``'s output on the same input; the npz -> HF key map
  is written out here, independent of flexiast's npz -> timm -> flexiast path.
* A timm ViT-B/8-shaped file keeps its native 8x8 kernel and its one prefix token, and its
  28x28 grid is cut / interpolated per axis as AST's code does (written out with F.interpolate).
* A phase with ``patch.resize: bl`` trains with the bilinearly resized kernel (checked against
  a hand-built interpolation matrix), and ``transfer: bl`` on the first phase moves the initial
  weights' kernel bilinearly, as the official FlexiAST code's BL model does.
"""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
import yaml
from transformers import ViTConfig, ViTModel

from flexiast import AST
from flexiast.checkpoints import CheckpointError, load_state_dict
from flexiast.config import ConfigError, build_config
from flexiast.engine.trainer import Trainer
from flexiast.models.ast import model as ast_model
from flexiast.models.ast.config import ASTConfig
from flexiast.models.ast.weights import init_from
from flexiast.resize import pi_resize
from helpers import tiny_recipe, tiny_vit
from reference_vit import bilinear_axis_matrix

pytestmark = pytest.mark.filterwarnings("ignore:.*initialised at random")

D, HEADS, MLP, DEPTH, IMAGE, PATCH = 16, 2, 32, 2, 32, 8


def _jax_vit_npz(seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny ViT's arrays under the names and shapes of Google's ViT/AugReg ``.npz`` (Flax):
    HWIO conv kernel, dense kernels [in, out], attention kernels split per head."""
    rng = np.random.default_rng(seed)
    r = lambda *shape, s=0.2: (rng.standard_normal(shape) * s).astype(np.float32)  # noqa: E731
    hd = D // HEADS
    grid = IMAGE // PATCH
    w = {"embedding/kernel": r(PATCH, PATCH, 3, D), "embedding/bias": r(D), "cls": r(1, 1, D, s=1.0),
         "Transformer/posembed_input/pos_embedding": r(1, 1 + grid * grid, D, s=1.0),
         "Transformer/encoder_norm/scale": 1 + r(D), "Transformer/encoder_norm/bias": r(D),
         "head/kernel": r(D, 1000), "head/bias": r(1000)}
    for i in range(DEPTH):
        b = f"Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            w[f"{b}{ln}/scale"], w[f"{b}{ln}/bias"] = 1 + r(D), r(D)
        for n in ("query", "key", "value"):
            w[f"{b}MultiHeadDotProductAttention_1/{n}/kernel"] = r(D, HEADS, hd)
            w[f"{b}MultiHeadDotProductAttention_1/{n}/bias"] = r(HEADS, hd)
        w[f"{b}MultiHeadDotProductAttention_1/out/kernel"] = r(HEADS, hd, D)
        w[f"{b}MultiHeadDotProductAttention_1/out/bias"] = r(D)
        w[f"{b}MlpBlock_3/Dense_0/kernel"], w[f"{b}MlpBlock_3/Dense_0/bias"] = r(D, MLP), r(MLP)
        w[f"{b}MlpBlock_3/Dense_1/kernel"], w[f"{b}MlpBlock_3/Dense_1/bias"] = r(MLP, D), r(D)
    return w


def _hf_vit(w: dict[str, np.ndarray]) -> ViTModel:
    """Hugging Face's ViT with the npz's weights, mapped here by hand."""
    t = lambda name: torch.from_numpy(w[name])  # noqa: E731
    sd = {"embeddings.cls_token": t("cls"),
          "embeddings.position_embeddings": t("Transformer/posembed_input/pos_embedding"),
          "embeddings.patch_embeddings.projection.weight": t("embedding/kernel").permute(3, 2, 0, 1),
          "embeddings.patch_embeddings.projection.bias": t("embedding/bias"),
          "layernorm.weight": t("Transformer/encoder_norm/scale"), "layernorm.bias": t("Transformer/encoder_norm/bias")}
    for i in range(DEPTH):
        b, h = f"Transformer/encoderblock_{i}/", f"layers.{i}."
        for n, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
            sd[f"{h}attention.{proj}.weight"] = t(f"{b}MultiHeadDotProductAttention_1/{n}/kernel").reshape(D, D).T
            sd[f"{h}attention.{proj}.bias"] = t(f"{b}MultiHeadDotProductAttention_1/{n}/bias").reshape(D)
        sd[f"{h}attention.o_proj.weight"] = t(f"{b}MultiHeadDotProductAttention_1/out/kernel").reshape(D, D).T
        sd[f"{h}attention.o_proj.bias"] = t(f"{b}MultiHeadDotProductAttention_1/out/bias")
        for ln, ours in (("LayerNorm_0", "layernorm_before"), ("LayerNorm_2", "layernorm_after")):
            sd[f"{h}{ours}.weight"], sd[f"{h}{ours}.bias"] = t(f"{b}{ln}/scale"), t(f"{b}{ln}/bias")
        for r in (0, 1):
            sd[f"{h}mlp.fc{r + 1}.weight"] = t(f"{b}MlpBlock_3/Dense_{r}/kernel").T
            sd[f"{h}mlp.fc{r + 1}.bias"] = t(f"{b}MlpBlock_3/Dense_{r}/bias")
    cfg = ViTConfig(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=MLP,
                    image_size=IMAGE, patch_size=PATCH, num_channels=3, layer_norm_eps=1e-6, hidden_act="gelu",
                    qkv_bias=True)
    model = ViTModel(cfg, add_pooling_layer=False)
    model.load_state_dict({k: v.contiguous() for k, v in sd.items()}, strict=True)
    return model.eval()


def _as_layout(w: dict[str, np.ndarray], layout: str) -> dict[str, np.ndarray]:
    """The same arrays under another JAX ViT layout: an older training checkpoint's ``opt/target/``
    prefix, or big_vision's ``params/`` names (``MultiHeadDotProductAttention_0``, ``LayerNorm_1``,
    ``MlpBlock_0``, a top-level ``pos_embedding``) with the blocks scanned: stacked on a first axis
    under ``Transformer/encoderblock/``."""
    if layout == "augreg":
        return dict(w)
    if layout == "opt-target":
        return {"opt/target/" + k: v for k, v in w.items()}
    rename = {"MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0", "LayerNorm_2": "LayerNorm_1",
              "MlpBlock_3": "MlpBlock_0"}
    out, blocks = {}, {}
    for k, v in w.items():
        if k.startswith("Transformer/encoderblock_"):
            i, rest = k[len("Transformer/encoderblock_"):].split("/", 1)
            for old, new in rename.items():
                rest = rest.replace(old, new)
            blocks.setdefault(rest, {})[int(i)] = v
        elif k == "Transformer/posembed_input/pos_embedding":
            out["params/pos_embedding"] = v
        else:
            out["params/" + k] = v
    for rest, per in blocks.items():
        out["params/Transformer/encoderblock/" + rest] = np.stack([per[i] for i in range(DEPTH)])
    return out


@pytest.mark.parametrize("layout", ["augreg", "opt-target", "big_vision-scanned"])
def test_jax_npz_vit_encodes_as_hugging_face_vit(tmp_path, layout):
    """An image whose three channels are the spectrogram goes through HF's RGB kernel as through
    AST's channel-summed one; at the ViT's own 4x4 grid no positional embedding is cut, so the
    whole encoder ([CLS] and patch tokens after the final norm) must agree."""
    w = _jax_vit_npz()
    path = tmp_path / "ViT-B_8.npz"
    np.savez(path, **_as_layout(w, layout))
    sd, _, _ = load_state_dict(path)
    assert set(sd) == set(_as_layout(w, layout)) and all(isinstance(v, torch.Tensor) for v in sd.values())
    model = AST.from_pretrained(path, input_fdim=IMAGE, input_tdim=IMAGE).eval()
    cfg = model.config
    assert (cfg.prefix_tokens, cfg.patch_size, cfg.num_heads, cfg.depth, cfg.mlp_dim) == (1, (8, 8), HEADS, DEPTH, MLP)
    spec = torch.randn(3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))  # [batch, frames, mel]
    image = spec.transpose(1, 2)[:, None].expand(-1, 3, -1, -1)  # [batch, 3, mel (H), frames (W)]
    with torch.no_grad():
        ours = model.forward_features(spec)
        theirs = _hf_vit(w)(pixel_values=image).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"embedding/kernel": np.array([object()], dtype=object)})
    with pytest.raises(CheckpointError, match="evil.npz"):
        load_state_dict(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_timm_vit_b8_keeps_its_kernel_and_one_prefix_token(tmp_path, suffix):
    """vit_base_patch8_224's layout (tiny width): the 8x8 kernel is the file's (RGB summed, not
    resized); the 28x28 grid becomes AudioSet's 16x128 by AST's rule: time interpolated bilinearly
    to 128, then the centre 16 frequency rows (start 28 // 2 - 16 // 2 = 6)."""
    sd = tiny_vit(patch=8, width=16, depth=1)
    path = tmp_path / f"vit_base_patch8_224{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(sd, path)
    else:
        torch.save(sd, path)
    target = ASTConfig(num_classes=5, input_fdim=128, input_tdim=1024, embed_dim=16, depth=1, num_heads=2,
                       patch_size=8, prefix_tokens=1)
    model = init_from(path, target)
    assert model.config.prefix_tokens == 1 and model.dist_token is None and model.config.grid == (16, 128)
    assert torch.equal(model.patch_embed.proj.weight, sd["patch_embed.proj.weight"].sum(1, keepdim=True))
    grid = sd["pos_embed"][0, 1:].reshape(28, 28, 16).permute(2, 0, 1)[None]
    grid = F.interpolate(grid, size=(28, 128), mode="bilinear", align_corners=False)[:, :, 6:22]
    want = torch.cat([sd["pos_embed"][:, :1], grid.flatten(2).transpose(1, 2)], dim=1)
    torch.testing.assert_close(model.pos_embed, want)
    torch.testing.assert_close(model.cls_token, sd["cls_token"])


def test_deit_starts_an_overlapping_ast_at_its_stride(tmp_path):
    """AST's own setting, fstride = tstride = 10 from DeiT: the recipe's stride is kept (a patch
    size given again, unchanged, is no new patch size), and the grid is AST's for that stride:
    128 bins x 1024 frames at 16 / 10 give 12 x 101 tokens."""
    sd = tiny_vit(patch=16, width=16, depth=1)
    torch.save(sd, tmp_path / "vit.pth")
    target = ASTConfig(num_classes=5, input_fdim=128, input_tdim=1024, embed_dim=16, depth=1, num_heads=2,
                       patch_size=16, stride=10, prefix_tokens=1)
    model = init_from(tmp_path / "vit.pth", target)
    assert model.config.stride == (10, 10) and model.config.grid == (12, 101)
    assert model.config.replace(patch_size=16).stride == (10, 10)
    assert model.config.replace(patch_size=8).stride == (8, 8)


def test_patch_resize_is_validated():
    raw = tiny_recipe("/nonexistent", "/tmp/x", phases=[{"steps": 1, "patch": {"sizes": [16], "resize": "nearest"}}])
    with pytest.raises(ConfigError, match=r"phases\[0\]\.patch\.resize: 'nearest' is not one of pi, bl"):
        build_config(raw, check_files=False)


@pytest.fixture(scope="module")
def fsdd_ten(tmp_path_factory, fsdd_dir):
    """Ten FSDD clips in its layout: eight for training and validation, two for test (takes 0-4)."""
    root = tmp_path_factory.mktemp("fsdd_ten")
    rec = root / "recordings"
    rec.mkdir()
    for name in ["0_george_5", "1_george_6", "0_jackson_7", "1_jackson_8", "0_george_9", "1_george_7",
                 "0_jackson_9", "1_jackson_5", "0_george_0", "1_jackson_1"]:
        (rec / f"{name}.wav").symlink_to(fsdd_dir / f"{name}.wav")
    return root


def test_bl_training_uses_the_bilinear_kernel(fsdd_ten, tmp_path, monkeypatch):
    """FlexiAST's BL ablation: the ViT-B/8 file's kernel moves into the stored 16x16 bilinearly
    (first phase ``transfer: bl``), and every training step at patch 32 embeds its patches with
    the stored kernel upsampled bilinearly (``patch.resize: bl``). Both upsample, where antialiasing
    does nothing, so the reference is the half-pixel bilinear matrix A: ``A w A^T`` per channel."""
    vit = tiny_vit(patch=8, width=32, depth=2)
    torch.save(vit, tmp_path / "vit8.pth")
    raw = tiny_recipe(fsdd_ten, tmp_path / "run", init={"path": str(tmp_path / "vit8.pth")},
                      model={"prefix_tokens": 1}, data={"batch_size": 4},
                      phases=[{"steps": 1, "transfer": "bl", "patch": {"sizes": [32], "resize": "bl"}}],
                      train={"eval_patch_sizes": [16]})
    trainer = Trainer(build_config(raw), tmp_path / "run")
    a8 = torch.from_numpy(bilinear_axis_matrix(8, 16)).float()
    stored = a8 @ vit["patch_embed.proj.weight"].sum(1, keepdim=True) @ a8.T
    torch.testing.assert_close(trainer.model.patch_embed.proj.weight, stored)

    calls, forward = [], ast_model.PatchEmbed.forward

    def record(self, x, patch_size, stride, resize, grid):
        out = forward(self, x, patch_size, stride, resize, grid)
        if self.training:
            calls.append((x.detach().clone(), self.proj.weight.detach().clone(), self.proj.bias.detach().clone(),
                          tuple(patch_size), out[0].detach().clone()))
        return out

    monkeypatch.setattr(ast_model.PatchEmbed, "forward", record)
    trainer.fit()
    assert len(calls) == 1
    x, weight, bias, patch, tokens = calls[0]
    assert patch == (32, 32) and x.shape[-2:] == (64, 48)
    a = torch.from_numpy(bilinear_axis_matrix(16, 32)).float()
    patches = x[:, 0, :64, :32].reshape(len(x), 2, 32, 32)  # the 2 x 1 grid of 32x32 patches
    want = torch.einsum("bjft,dft->bjd", patches, a @ weight[:, 0] @ a.T) + bias
    torch.testing.assert_close(tokens, want, atol=1e-4, rtol=1e-4)
    pi = torch.einsum("bjft,dft->bjd", patches, pi_resize(weight, (32, 32))[:, 0]) + bias
    assert not torch.allclose(tokens, pi, atol=1e-2)  # PI-resize would give other tokens
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())  # what --resume reads
    assert saved["phases"][0]["patch"]["resize"] == "bl" and saved["phases"][0]["transfer"] == "bl"


def _ast_rule(pos: torch.Tensor, side: int, grid: tuple[int, int], prefix: int) -> torch.Tensor:
    """AST's move of ImageNet DeiT's ``side x side`` grid to its input's ``grid`` (Gong et al. 2021,
    Sec. 2.2; ``ASTModel.__init__``), written out: time axis first, keep the centre columns where the
    new axis is shorter, else bilinear interpolation (no antialiasing); then the frequency axis alike."""
    d = pos.shape[-1]
    g = pos[:, prefix:].transpose(1, 2).reshape(1, d, side, side)
    f, t = grid
    if t <= side:
        g = g[:, :, :, side // 2 - t // 2: side // 2 - t // 2 + t]
    else:
        g = F.interpolate(g, size=(side, t), mode="bilinear")
    if f <= side:
        g = g[:, :, side // 2 - f // 2: side // 2 - f // 2 + f, :]
    else:
        g = F.interpolate(g, size=(f, t), mode="bilinear")
    return torch.cat([pos[:, :prefix], g.reshape(1, d, f * t).transpose(1, 2)], dim=1)


@pytest.mark.parametrize("frames, compression, grid", [(128, "fshift:4", (4, 2)), (512, "fshift:2", (4, 16)),
                                                        (256, "avgpool:2", (4, 8))])
def test_a_coarse_first_phase_starts_from_deit_by_asts_rule(fsdd_ten, tmp_path, frames, compression, grid):
    """Coarse-to-fine's AST starts every run from ImageNet DeiT at its input, so a coarse first
    phase builds its model from the file at that phase's grid by AST's own rule (cut the centre,
    or interpolate where the phase's axis is longer), not at full resolution resized down with
    antialiasing. 14x14 DeiT grid; 64 bins give 4 rows; fshift:4 at 128 frames gives 2 columns
    (cut), fshift:2 at 512 gives 16 (interpolated), avgpool:2 at 256 gives 8 (cut)."""
    from helpers import tiny_deit

    sd = tiny_deit(width=32, depth=2, grid=14)
    torch.save({"model": sd}, tmp_path / "deit.pth")
    raw = tiny_recipe(fsdd_ten, tmp_path / "run", init={"path": str(tmp_path / "deit.pth")},
                      features={"target_length": frames},
                      phases=[{"steps": 1, "compression": compression}, {"steps": 1}])
    t = Trainer(build_config(raw), tmp_path / "run")
    assert t.model.config.grid == grid
    torch.testing.assert_close(t.model.pos_embed, _ast_rule(sd["pos_embed"], 14, grid, prefix=2), rtol=0, atol=0)
    full = Trainer(build_config({**raw, "phases": [{"steps": 1}]}), tmp_path / "full")
    assert full.model.config.grid == (4, frames // 16)  # a full-resolution first phase: the recipe's input
    torch.testing.assert_close(full.model.pos_embed, _ast_rule(sd["pos_embed"], 14, (4, frames // 16), prefix=2),
                               rtol=0, atol=0)


def test_a_coarse_first_phase_from_random_weights_is_built_at_its_geometry(fsdd_ten, tmp_path):
    """Without initial weights the first phase's model is created at its own input (an AST at 32
    frames under fshift:4 of 128), and the next phase moves it to full resolution bilinearly."""
    from flexiast.resize import resize_pos_grid

    raw = tiny_recipe(fsdd_ten, tmp_path / "run", features={"target_length": 128}, data={"batch_size": 4},
                      phases=[{"steps": 1, "compression": "fshift:4"}, {"steps": 1}])
    t = Trainer(build_config(raw), tmp_path / "run")
    assert (t.model.config.input_tdim, t.model.config.grid) == (32, (4, 2))
    before = t.model.pos_embed.detach().clone()
    t._enter_phase(1)
    assert (t.model.config.input_tdim, t.model.config.grid) == (128, (4, 8))
    torch.testing.assert_close(t.model.pos_embed, resize_pos_grid(before, (4, 2), (4, 8), num_prefix_tokens=2))
