"""The AST and its weight import/export, against Hugging Face's AST and an independent forward."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

import reference_vit
from flexiast import AST, PATCH_SIZES, CheckpointError, grid_shape
from flexiast.models.ast.weights import infer_grid

D, HEADS, DEPTH = 128, 2, 2  # 64-wide heads, so official-AST shape inference applies


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = 1.0 if ("layernorm" in name or "norm" in name) and name.endswith("weight") else 0.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))


def _hf_model(stride: int, max_length: int = 100, eps: float = 1e-12, labels: int = 5, seed: int = 0):
    from transformers import ASTConfig, ASTForAudioClassification

    cfg = ASTConfig(hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=4 * D,
                    patch_size=16, frequency_stride=stride, time_stride=stride, max_length=max_length,
                    num_mel_bins=128, num_labels=labels, layer_norm_eps=eps, attn_implementation="eager")
    model = ASTForAudioClassification(cfg).eval()
    _randomise(model, seed)
    return model


def _hf_logits(hf, spec):
    with torch.no_grad():
        return hf(input_values=spec).logits


def _spec(frames: int = 100, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, 128, generator=torch.Generator().manual_seed(seed))


def _official_ast_state_dict(hf) -> dict:
    """What the AST release holds: DataParallel keys, timm DeiT names, fused qkv."""
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    p = "audio_spectrogram_transformer."
    out = {
        "module.v.cls_token": sd[p + "embeddings.cls_token"],
        "module.v.dist_token": sd[p + "embeddings.distillation_token"],
        "module.v.pos_embed": sd[p + "embeddings.position_embeddings"],
        "module.v.patch_embed.proj.weight": sd[p + "embeddings.patch_embeddings.projection.weight"],
        "module.v.patch_embed.proj.bias": sd[p + "embeddings.patch_embeddings.projection.bias"],
        "module.v.norm.weight": sd[p + "layernorm.weight"], "module.v.norm.bias": sd[p + "layernorm.bias"],
        "module.v.head.weight": torch.randn(1000, D), "module.v.head.bias": torch.randn(1000),
        "module.v.head_dist.weight": torch.randn(1000, D), "module.v.head_dist.bias": torch.randn(1000),
        "module.mlp_head.0.weight": sd["classifier.layernorm.weight"],
        "module.mlp_head.0.bias": sd["classifier.layernorm.bias"],
        "module.mlp_head.1.weight": sd["classifier.dense.weight"],
        "module.mlp_head.1.bias": sd["classifier.dense.bias"],
    }
    for i in range(DEPTH):
        h, o = f"{p}layers.{i}.", f"module.v.blocks.{i}."
        for kind in ("weight", "bias"):
            out[o + f"attn.qkv.{kind}"] = torch.cat([sd[h + f"attention.{n}_proj.{kind}"] for n in "qkv"])
            out[o + f"attn.proj.{kind}"] = sd[h + f"attention.o_proj.{kind}"]
            out[o + f"norm1.{kind}"] = sd[h + f"layernorm_before.{kind}"]
            out[o + f"norm2.{kind}"] = sd[h + f"layernorm_after.{kind}"]
            out[o + f"mlp.fc1.{kind}"] = sd[h + f"mlp.fc1.{kind}"]
            out[o + f"mlp.fc2.{kind}"] = sd[h + f"mlp.fc2.{kind}"]
    return out


# -- Hugging Face ------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [10, 16])
def test_hugging_face_directory_gives_the_same_logits(tmp_path, stride):
    hf = _hf_model(stride)
    hf.save_pretrained(tmp_path)
    model = AST.from_pretrained(tmp_path).eval()
    assert model.config.stride == (stride, stride) and model.config.input_tdim == 100
    spec = _spec()
    with torch.no_grad():
        torch.testing.assert_close(model(spec), _hf_logits(hf, spec), atol=1e-4, rtol=0)


def test_hugging_face_bare_state_dict_in_memory_names(tmp_path):
    hf = _hf_model(10)
    torch.save(hf.state_dict(), tmp_path / "hf.bin")
    model = AST.from_pretrained(tmp_path / "hf.bin", input_tdim=100).eval()
    spec = _spec()
    with torch.no_grad():
        torch.testing.assert_close(model(spec), _hf_logits(hf, spec), atol=1e-4, rtol=0)


def test_save_pretrained_hf_round_trips_through_transformers(tmp_path):
    from transformers import ASTForAudioClassification

    torch.manual_seed(0)
    model = AST(num_classes=4, embed_dim=D, depth=DEPTH, num_heads=HEADS, input_tdim=120, stride=10,
                norm_eps=1e-6, head_norm_eps=1e-6, labels=("a", "b", "c", "d")).eval()
    _randomise(model, 3)
    model.save_pretrained(tmp_path / "hf", format="hf")
    hf = ASTForAudioClassification.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    assert hf.config.id2label[2] == "c"
    spec = _spec(120)
    with torch.no_grad():
        ours = model(spec)
        torch.testing.assert_close(_hf_logits(hf, spec), ours, atol=1e-4, rtol=0)
        back = AST.from_pretrained(tmp_path / "hf").eval()
        torch.testing.assert_close(back(spec), ours, atol=1e-5, rtol=0)
    assert back.config.labels == ("a", "b", "c", "d")


def test_hf_export_refuses_what_hf_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="square patch"):
        AST(num_classes=2, embed_dim=64, depth=1, num_heads=1, patch_size=(16, 32)).save_pretrained(tmp_path, format="hf")
    with pytest.raises(ValueError, match="one prefix token"):
        AST(num_classes=2, embed_dim=64, depth=1, num_heads=1, prefix_tokens=1).save_pretrained(tmp_path, format="hf")


# -- official AST and FlexiAST releases --------------------------------------------------
def test_official_ast_layout_matches_hugging_face_model_converted_from_it(tmp_path):
    hf = _hf_model(10, max_length=128, eps=1e-6, labels=7)
    torch.save(_official_ast_state_dict(hf), tmp_path / "audioset_10_10.pth")
    with pytest.warns(UserWarning, match=r"fit stride 10x10 \(128 frames\) and also stride 16x16 \(288 frames\)"):
        model = AST.from_pretrained(tmp_path / "audioset_10_10.pth").eval()
    assert AST.from_pretrained(tmp_path / "audioset_10_10.pth", source_stride=10).config.grid == (12, 12)
    cfg = model.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.num_classes) == (D, DEPTH, HEADS, 7)
    assert (cfg.stride, cfg.input_tdim, cfg.prefix_tokens) == ((10, 10), 128, 2)
    spec = _spec(128)
    with torch.no_grad():
        torch.testing.assert_close(model(spec), _hf_logits(hf, spec), atol=1e-4, rtol=0)


def _official_flexiast_state_dict(seed: int = 0, prefix: int = 1) -> dict:
    """FlexiAST release: AST keys plus the patch_embed / pos_embed it actually uses.

    One prefix token for its usual ViT-224 backbone, two for the DeiT-384 ("origin") one."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: 0.2 * torch.randn(*s, generator=g)  # noqa: E731
    sd = {"v.cls_token": r(1, 1, D), "v.pos_embed": r(1, prefix + 12 * 101, D),
          "v.patch_embed.proj.weight": r(D, 1, 16, 16), "v.patch_embed.proj.bias": r(D),
          "v.norm.weight": 1 + r(D), "v.norm.bias": r(D),
          "patch_embed.proj.weight": r(D, 1, 16, 16), "patch_embed.proj.bias": r(D),
          "pos_embed.pos_embed": r(1, prefix + 8 * 64, D),
          "mlp_head.0.weight": 1 + r(D), "mlp_head.0.bias": r(D), "mlp_head.1.weight": r(6, D), "mlp_head.1.bias": r(6)}
    if prefix == 2:
        sd["v.dist_token"] = r(1, 1, D)
    for i in range(DEPTH):
        p = f"v.blocks.{i}."
        sd.update({p + "norm1.weight": 1 + r(D), p + "norm1.bias": r(D), p + "norm2.weight": 1 + r(D),
                   p + "norm2.bias": r(D), p + "attn.qkv.weight": r(3 * D, D), p + "attn.qkv.bias": r(3 * D),
                   p + "attn.proj.weight": r(D, D), p + "attn.proj.bias": r(D), p + "mlp.fc1.weight": r(4 * D, D),
                   p + "mlp.fc1.bias": r(4 * D), p + "mlp.fc2.weight": r(D, 4 * D), p + "mlp.fc2.bias": r(D)})
    return sd


@pytest.mark.parametrize("patch,prefix", [(16, 1), (32, 1), (8, 1), (24, 2)])
def test_official_flexiast_layout_matches_an_independent_forward(tmp_path, patch, prefix):
    sd = _official_flexiast_state_dict(prefix=prefix)
    torch.save({"module." + k: v for k, v in sd.items()}, tmp_path / "flexiast.pth")
    model = AST.from_pretrained(tmp_path / "flexiast.pth").eval()
    assert (model.config.prefix_tokens, model.config.input_tdim, model.config.grid) == (prefix, 1024, (8, 64))
    spec = _spec(1024, batch=1)
    grid = ((128 - patch) // patch + 1, (1024 - patch) // patch + 1)
    pos = sd["pos_embed.pos_embed"]
    body = pos[:, prefix:].reshape(1, 8, 64, D).permute(0, 3, 1, 2)
    body = F.interpolate(body, size=grid, mode="bilinear", antialias=True).permute(0, 2, 3, 1).reshape(1, -1, D)
    weight = sd["patch_embed.proj.weight"] if patch == 16 else reference_vit.pinv_resize(sd["patch_embed.proj.weight"], (patch, patch))
    expected = reference_vit.forward(sd, spec, heads=HEADS, prefix=prefix, patch=patch, stride=patch,
                                     pos_embed=torch.cat([pos[:, :prefix], body], 1), patch_weight=weight,
                                     patch_bias=sd["patch_embed.proj.bias"])
    with torch.no_grad():
        torch.testing.assert_close(model(spec, patch_size=patch), expected, atol=1e-4, rtol=0)


def test_official_ast_loaded_for_another_length_and_stride(tmp_path):
    """AudioSet AST (12 x 101 grid) fine-tuned on ESC-50 (512 frames): the grid is resized, not misread."""
    hf = _hf_model(10, max_length=1024, eps=1e-6)
    sd = _official_ast_state_dict(hf)
    torch.save(sd, tmp_path / "audioset.pth")
    source = sd["module.v.pos_embed"][:, 2:].reshape(1, 12, 101, D).permute(0, 3, 1, 2)
    for overrides, grid in (({"input_tdim": 512}, (12, 50)), ({"stride": 16}, (8, 64)),
                            ({"input_tdim": 512, "stride": 16}, (8, 32))):
        model = AST.from_pretrained(tmp_path / "audioset.pth", **overrides)
        assert model.config.grid == grid
        expected = F.interpolate(source, size=grid, mode="bilinear", antialias=True).flatten(2).transpose(1, 2)
        torch.testing.assert_close(model.pos_embed[:, 2:], expected)
        assert model(_spec(model.config.input_tdim)).shape == (2, 5)


@pytest.mark.parametrize("stride", [10, 16])
def test_grid_inference_finds_the_true_geometry_or_says_it_is_ambiguous(stride):
    wrong = []
    for frames in range(64, 2049, 5):
        true = grid_shape((128, frames), 16, stride)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s, t = infer_grid(true[0] * true[1], (16, 16))
        if grid_shape((128, t), 16, s) != true and not caught:
            wrong.append(frames)
    assert not wrong, wrong[:10]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert infer_grid(1212, (16, 16)) == ((10, 10), 1024)  # AST's AudioSet release: unambiguous
    with pytest.warns(UserWarning, match="source_stride"):
        assert infer_grid(600, (16, 16)) == ((10, 10), 512)  # ESC-50 release; also stride 16 at 1200
    with pytest.warns(UserWarning, match="source_stride"):
        assert infer_grid(144, (16, 16)) == ((10, 10), 128)  # Speech Commands; also stride 16 at 288


def test_from_standard_ast_b8_into_a_16x16_kernel_with_pi_resize(tmp_path):
    """FlexiAST initialises from AST-B/8; its weights move into the stored 16x16 kernel."""
    hf = _hf_model(16, max_length=128, eps=1e-6)
    sd = _official_ast_state_dict(hf)
    w8 = torch.randn(D, 1, 8, 8)
    sd["module.v.patch_embed.proj.weight"] = w8
    sd["module.v.pos_embed"] = torch.randn(1, 2 + 16 * 16, D)
    torch.save(sd, tmp_path / "b8.pth")
    b8 = AST.from_pretrained(tmp_path / "b8.pth")
    assert b8.config.patch_size == (8, 8) and b8.config.grid == (16, 16)
    moved = AST.from_pretrained(tmp_path / "b8.pth", patch_size=16)
    assert moved.config.patch_size == (16, 16) and moved.config.grid == (8, 8)
    torch.testing.assert_close(moved.patch_embed.proj.weight, reference_vit.pinv_resize(w8, (16, 16)),
                               atol=1e-5, rtol=1e-5)
    grid = sd["module.v.pos_embed"][:, 2:].reshape(1, 16, 16, D).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(8, 8), mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    torch.testing.assert_close(moved.pos_embed[:, 2:], expected.reshape(1, 64, D))
    torch.testing.assert_close(moved.pos_embed[:, :2], sd["module.v.pos_embed"][:, :2])


def test_timm_deit_imagenet_weights(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {"cls_token": torch.randn(1, 1, D, generator=g), "dist_token": torch.randn(1, 1, D, generator=g),
          "pos_embed": torch.randn(1, 2 + 24 * 24, D, generator=g),
          "patch_embed.proj.weight": torch.randn(D, 3, 16, 16, generator=g), "patch_embed.proj.bias": torch.randn(D),
          "norm.weight": torch.ones(D), "norm.bias": torch.zeros(D),
          "head.weight": torch.randn(1000, D), "head.bias": torch.zeros(1000),
          "head_dist.weight": torch.randn(1000, D), "head_dist.bias": torch.zeros(1000)}
    for k, v in _official_flexiast_state_dict().items():
        if k.startswith("v.blocks."):
            sd[k[2:]] = v
    torch.save({"model": sd}, tmp_path / "deit.pth")
    with pytest.warns(UserWarning, match="head initialised at random"):
        model = AST.from_pretrained(tmp_path / "deit.pth", num_classes=3, input_tdim=100)
    assert model.config.grid == (8, 6) and model.config.num_classes == 3
    torch.testing.assert_close(model.patch_embed.proj.weight, sd["patch_embed.proj.weight"].sum(1, keepdim=True))
    grid = sd["pos_embed"][0, 2:].reshape(24, 24, D)
    torch.testing.assert_close(model.pos_embed[0, 2:].reshape(8, 6, D), grid[8:16, 9:15])  # AST's centre cut
    assert model(_spec(100)).shape == (2, 3)


# -- our own format --------------------------------------------------------------------
def test_flexiast_formats_round_trip(tmp_path):
    from flexiast.checkpoints import save_safetensors

    model = AST.preset("tiny", num_classes=3, depth=2, input_tdim=200, patch_size=(16, 32)).eval()
    spec = _spec(200)
    with torch.no_grad():
        ref = model(spec, patch_size=24)
    model.save_pretrained(tmp_path / "dir")
    save_safetensors(model, tmp_path / "one.safetensors")
    torch.save({"model": model.state_dict(), "model_config": model.config.to_dict()}, tmp_path / "train.pt")
    assert json.loads((tmp_path / "dir" / "config.json").read_text())["format"] == "flexiast"
    for path in (tmp_path / "dir", tmp_path / "one.safetensors", tmp_path / "train.pt"):
        loaded = AST.from_pretrained(path).eval()
        assert loaded.config == model.config
        with torch.no_grad():
            torch.testing.assert_close(loaded(spec, patch_size=24), ref, atol=0, rtol=0)


# -- forward at any size -------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return AST(num_classes=5, embed_dim=64, depth=2, num_heads=2, input_tdim=480).eval()


@pytest.mark.parametrize("resize", ["pi", "bl"])
def test_every_flexiast_patch_size_runs(small, resize):
    spec = _spec(480)
    with torch.no_grad():
        for p in PATCH_SIZES:
            out = small(spec, patch_size=p, resize=resize)
            assert out.shape == (2, 5) and torch.isfinite(out).all()
        assert small(spec, patch_size=(16, 48)).shape == (2, 5)  # time-only resize (speaker ID)
        assert small(spec, patch_size=(8, 16)).shape == (2, 5)  # frequency-only


def test_gradients_reach_the_stored_kernel_and_grid(small):
    small.zero_grad()
    small(_spec(480), patch_size=24).sum().backward()
    assert small.patch_embed.proj.weight.grad.abs().sum() > 0
    assert small.pos_embed.grad[0, 2:].abs().sum() > 0


def test_overlapping_stride_applies_at_the_stored_size_only():
    model = AST(num_classes=2, embed_dim=64, depth=1, num_heads=1, stride=10, input_tdim=128)
    assert model.config.grid == (12, 12)
    assert model.forward_features(_spec(128), patch_size=16).shape[1] == 2 + 144
    assert model.forward_features(_spec(128), patch_size=32).shape[1] == 2 + 16  # no overlap at 32
    assert model.forward_features(_spec(128), patch_size=32, stride=16).shape[1] == 2 + 49


def _as_official(model: AST) -> dict:
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("head."):
            out[k.replace("head.norm", "mlp_head.0").replace("head.fc", "mlp_head.1")] = v
        else:
            out["v." + k] = v
    return out


@pytest.mark.parametrize("frames,patch", [(40, 16), (200, 24), (480, (16, 40)), (1500, 16), (1500, 20)])
def test_other_input_lengths_against_an_independent_forward(small, frames, patch):
    """Shorter inputs keep the leading time positions; longer ones stretch the time axis bilinearly."""
    cfg = small.config
    p = (patch, patch) if isinstance(patch, int) else patch
    ref_grid = grid_shape(cfg.input_size, p)
    grid = grid_shape((128, frames), p)
    body = small.pos_embed[:, 2:].detach().reshape(1, *cfg.grid, -1).permute(0, 3, 1, 2)
    body = F.interpolate(body, size=ref_grid, mode="bilinear", antialias=True)
    if grid[1] <= ref_grid[1]:
        body = body[..., : grid[1]]
    else:
        body = F.interpolate(body, size=grid, mode="bilinear", align_corners=False)
    pos = torch.cat([small.pos_embed[:, :2].detach(), body.flatten(2).transpose(1, 2)], 1)
    sd = _as_official(small)
    weight = reference_vit.pinv_resize(sd["v.patch_embed.proj.weight"], p) if p != (16, 16) else sd["v.patch_embed.proj.weight"]
    spec = _spec(frames)
    expected = reference_vit.forward(sd, spec, heads=2, prefix=2, patch=p, stride=p, pos_embed=pos, patch_weight=weight,
                                     patch_bias=sd["v.patch_embed.proj.bias"])
    with torch.no_grad():
        torch.testing.assert_close(small(spec, patch_size=patch), expected, atol=1e-4, rtol=0)


def test_numpy_and_torch_integers_are_patch_sizes(small):
    import numpy as np

    spec = _spec(480)
    with torch.no_grad():
        ref = small(spec, patch_size=24)
        torch.testing.assert_close(small(spec, patch_size=np.int64(24)), ref)
        torch.testing.assert_close(small(spec, patch_size=(torch.tensor(24), 24)), ref)


def test_bf16_autocast_agrees_with_fp32(small):
    spec = _spec(480)
    with torch.no_grad():
        ref = small(spec, patch_size=20)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = small(spec, patch_size=20)
    assert F.cosine_similarity(low.float(), ref, dim=-1).min() > 0.99


# -- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("call,message", [
    (lambda m: m(_spec(480), patch_size=129), r"patch size \(129, 129\).*larger than the input"),
    (lambda m: m(_spec(20), patch_size=24), r"larger than the input \(128 mel bins, 20 frames\)"),
    (lambda m: m(_spec(480), patch_size=0), "positive integers"),
    (lambda m: m(_spec(480), patch_size=(16, -2)), "positive integers"),
    (lambda m: m(_spec(480)[0]), r"\[batch, frames, mel_bins\] \(3 dims\)"),
    (lambda m: m(torch.randn(2, 480, 64)), "64 mel bins, the model expects 128"),
    (lambda m: m(_spec(480), resize="bicubic"), "resize='bicubic'"),
])
def test_bad_calls_say_what_was_expected(small, call, message):
    with pytest.raises(ValueError, match=message):
        call(small)


def test_unrecognised_checkpoint_is_named(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt.*unrecognised checkpoint layout.*encoder\.weight"):
        AST.from_pretrained(tmp_path / "other.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        AST.from_pretrained(tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError, match="no such file"):
        AST.from_pretrained(tmp_path / "missing.pth")


def test_invalid_configuration_is_named():
    with pytest.raises(ValueError, match="num_heads"):
        AST(num_classes=2, embed_dim=100, num_heads=3)
    with pytest.raises(ValueError, match="prefix_tokens"):
        AST(num_classes=2, prefix_tokens=3)
    with pytest.raises(ValueError, match="larger than the input"):
        AST(num_classes=2, input_tdim=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AST.preset("tiny", num_classes=2, depth=1)


def test_malformed_configuration_names_the_file(tmp_path):
    model = AST(num_classes=2, embed_dim=64, depth=1, num_heads=1)
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        AST.from_pretrained(tmp_path / "m")


def test_forward_runs_the_last_layer_for_the_prefix_only_and_gives_the_full_models_logits():
    """``forward`` skips the last layer's work for patch tokens; the head sees the same numbers."""
    torch.manual_seed(0)
    model = AST(num_classes=5, input_tdim=100, embed_dim=64, depth=3, num_heads=4, drop_path_rate=0.0).eval()
    spec = _spec(100)
    with torch.no_grad():
        full = model.forward_features(spec, patch_size=(8, 20))
        trimmed = model.forward_features(spec, patch_size=(8, 20), prefix_only=True)
        logits = model(spec, patch_size=(8, 20))
    assert full.shape[1] == 2 + 16 * 5 and trimmed.shape[1] == 2
    torch.testing.assert_close(trimmed, full[:, :2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, model.head(full[:, :2].mean(1)), rtol=1e-5, atol=1e-5)


def test_bf16_attention_on_cpu_matches_float32_attention():
    """The explicit bf16 path (CPU) against PyTorch's float64 attention, values and gradients."""
    from flexiast.models.ast.attention import attend

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 66, 64, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    ref.square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    out = attend(*(t.to(torch.bfloat16) for t in (q, k, v)))
    assert out.dtype == torch.bfloat16
    out.double().square().sum().backward()
    torch.testing.assert_close(out.double(), ref, rtol=0.03, atol=0.03)
    for got, want in zip((q.grad, k.grad, v.grad), grads):
        assert float((got - want).norm() / want.norm()) < 0.03


def test_fp32_attention_on_cpu_matches_float64_attention_on_both_paths():
    """The explicit fp32 path (small score matrices) and the fused one (large) against
    PyTorch's float64 attention, values and gradients, to float32 round-off."""
    from flexiast.models.ast.attention import EXPLICIT_ATTENTION_MAX_SCORES, attend

    torch.manual_seed(0)
    for shape in ((2, 3, 66, 64), (1, 1, 2900, 8)):  # 26 k scores: explicit; 8.4 M: fused
        assert (shape[0] * shape[1] * shape[2] ** 2 > EXPLICIT_ATTENTION_MAX_SCORES) == (shape[2] == 2900)
        q, k, v = (torch.randn(*shape, dtype=torch.float64, requires_grad=True) for _ in range(3))
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        ref.square().sum().backward()
        grads = [t.grad.clone() for t in (q, k, v)]
        for t in (q, k, v):
            t.grad = None
        out = attend(*(t.float() for t in (q, k, v)))
        assert out.dtype == torch.float32
        out.double().square().sum().backward()
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
        for got, want in zip((q.grad, k.grad, v.grad), grads):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_logits_follow_float32():
    torch.manual_seed(0)
    model = AST(num_classes=5, input_tdim=128, embed_dim=64, depth=2, num_heads=2).eval()
    spec = _spec(128)
    with torch.no_grad():
        ref = model(spec, patch_size=16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(spec, patch_size=16)
    assert float((low.float() - ref).norm() / ref.norm()) < 0.05
