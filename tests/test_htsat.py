"""HTS-AT (``flexiast.models.htsat``) against Hugging Face's CLAP audio tower, and its own rules.

``transformers.ClapAudioModel`` is HTS-AT's Swin encoder written independently: a small random
one, converted here by a key map written out in this file, must give our tokens and pooled
embedding at its own input size, and (called piece by piece, past its fixed-size checks) at
another length. The window rule, the masks, the fold, the head's outputs, ``adapt``, the FLOP
counter and the weight layouts (official Lightning, ImageNet Swin in Microsoft's and timm's
layouts) are checked on small models and state dicts built here; nothing is downloaded.
"""

from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F

from flexiast.checkpoints import CheckpointError
from flexiast.models import create_model, flops, load_model
from flexiast.models.htsat import HTSAT, HTSATConfig
from flexiast.models.htsat import model as htsat_model
from flexiast.models.htsat.model import MASKED, SwinBlock, fold, unfold, window_plan
from flexiast.models.htsat.weights import from_clap, init_from

from helpers import Exploit, measured_flops

#: A 3-stage HTS-AT on 16 mel bins, folded 4 times: HF's 64 x 64 image at 256 frames (no interpolation).
SMALL = dict(num_classes=5, input_fdim=16, input_tdim=256, embed_dim=16, depths=(2, 2, 2), num_heads=(2, 4, 8),
             window_size=4, freq_ratio=4, drop_path_rate=0.0)


def _randomise(module, seed=0, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) * 4 + 0.5)
    return module


def _spec(frames, bins=16, batch=2, seed=1):
    return torch.randn(batch, frames, bins, generator=torch.Generator().manual_seed(seed)) * 10 - 30


# -- parity with Hugging Face's CLAP audio encoder ----------------------------------------------
def _hf_model():
    import transformers
    cfg = transformers.ClapAudioConfig(spec_size=64, num_mel_bins=16, window_size=4, patch_size=4, patch_stride=4,
                                       depths=[2, 2, 2], num_attention_heads=[2, 4, 8], patch_embeds_hidden_size=16,
                                       hidden_size=64, enable_fusion=False, hidden_dropout_prob=0.0,
                                       drop_path_rate=0.0)
    torch.manual_seed(0)
    return _randomise(transformers.ClapAudioModel(cfg)).eval()


def hf_to_ours(hf_sd: dict) -> dict:
    """The key map from ``ClapAudioModel`` to our HTS-AT, written out here, independent of
    :func:`flexiast.models.htsat.weights.from_clap`."""
    out = {}
    names = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
             "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
             "attention.self.relative_position_bias_table": "attn.relative_position_bias_table"}
    for key, value in hf_sd.items():
        key = key.removeprefix("audio_encoder.")
        if key.endswith("relative_position_index") or ".attention.self.query." in key \
                or ".attention.self.key." in key or ".attention.self.value." in key:
            continue
        key = key.replace("batch_norm.", "bn0.")
        for old, new in names.items():
            key = key.replace(f".{old}", f".{new}")
        out[key] = value
    for key in hf_sd:
        if ".attention.self.query." in key:
            block, kind = key.removeprefix("audio_encoder.").split(".attention.self.query.")
            out[f"{block}.attn.qkv.{kind}"] = torch.cat(
                [hf_sd[key.replace(".query.", f".{n}.")] for n in ("query", "key", "value")])
    return out


def _ours_from_hf(hf, dtype=torch.float64):
    ours = HTSAT(config=HTSATConfig(**SMALL))
    missing, unexpected = ours.load_state_dict(hf_to_ours(hf.state_dict()), strict=False)
    assert set(missing) == {"tscam_conv.weight", "tscam_conv.bias"} and not unexpected
    return ours.to(dtype).eval()


def _hf_pieces(hf, spec):
    """HF's encoder on ``spec`` of any length: its own modules, called past its fixed-size checks."""
    enc = hf.audio_encoder
    x = enc.batch_norm(spec[:, None].transpose(1, 3)).transpose(1, 3)  # [B, 1, T, F]
    b, _, t, f = x.shape
    fr = enc.freq_ratio
    img = x.reshape(b, fr, t // fr, f).permute(0, 1, 3, 2).reshape(b, 1, f * fr, t // fr)  # reshape_mel2img's fold
    h = enc.patch_embed.norm(enc.patch_embed.proj(img).flatten(2).transpose(1, 2))
    dims = (img.shape[2] // 4, img.shape[3] // 4)
    for stage in enc.layers:
        h, _, out_dims = stage(h, dims)[:3]
        dims = out_dims[-2:]
    h = enc.norm(h)
    c = h.shape[-1]
    grid = h.transpose(1, 2).reshape(b, c, *dims)
    cfb = dims[0] // fr
    grid = grid.reshape(b, c, fr, cfb, dims[1]).permute(0, 1, 3, 2, 4).reshape(b, c, cfb, -1)
    return grid, grid.flatten(2).mean(-1)


def test_tokens_and_embedding_equal_hugging_face_clap_audio():
    """At HF's own size (256 frames x 16 bins, a 64 x 64 image: no interpolation)."""
    hf = _hf_model().double()
    ours = _ours_from_hf(hf)
    spec = _spec(256).double()
    with torch.no_grad():
        ref = hf(input_features=spec[:, None])
        emb = ours.embed(spec)
        sed = ours.sed(spec)
    b, c, cfb, t = ref.last_hidden_state.shape
    assert emb.grid == (cfb, t)
    tokens = ref.last_hidden_state.flatten(2).transpose(1, 2)
    token_diff = (emb.tokens - tokens).abs().max().item()
    pooled_diff = (sed.embedding - ref.pooler_output).abs().max().item()
    assert token_diff < 1e-10 and pooled_diff < 1e-10, (token_diff, pooled_diff)
    torch.testing.assert_close(emb.pooled(), ref.pooler_output, rtol=0, atol=1e-10)

    hf32, ours32 = _hf_model(), _ours_from_hf(_hf_model(), torch.float32)
    with torch.no_grad():
        diff = (ours32.embed(spec.float()).tokens
                - hf32(input_features=spec.float()[:, None]).last_hidden_state.flatten(2).transpose(1, 2))
    assert diff.abs().max().item() < 1e-4


@pytest.mark.parametrize("frames", [256, 512, 1024])
def test_hugging_face_pieces_agree_at_other_lengths(frames):
    """512 frames: grids (16, 32), (8, 16), (4, 8); 1024: (16, 64), (8, 32), (4, 16). HF takes
    ``min(grid)`` square windows where ours keeps ``min(w, axis)`` per axis; at these grids the
    two rules give the same windows and no grid needs padding (HF pads without masking, and
    cannot index its bias table for a window smaller than its own: 128 frames fail there)."""
    hf = _hf_model().double()
    ours = _ours_from_hf(hf)
    spec = _spec(frames).double()
    with torch.no_grad():
        grid, pooled = _hf_pieces(hf, spec)
        emb = ours.embed(spec)
    assert emb.grid == tuple(grid.shape[2:])
    torch.testing.assert_close(emb.tokens, grid.flatten(2).transpose(1, 2), rtol=0, atol=1e-10)
    torch.testing.assert_close(ours.sed(spec).embedding, pooled, rtol=0, atol=1e-10)


def test_the_library_clap_converter_matches_the_written_map(tmp_path):
    hf = _hf_model()
    assert from_clap(hf.state_dict()).keys() == hf_to_ours(hf.state_dict()).keys()
    for k, v in from_clap(hf.state_dict()).items():
        assert torch.equal(v, hf_to_ours(hf.state_dict())[k]), k
    hf.save_pretrained(tmp_path / "clap")  # config.json (clap_audio_model) + model.safetensors
    with pytest.warns(UserWarning, match="initialised at random"):
        loaded = load_model(tmp_path / "clap", num_classes=3).eval()
    assert loaded.config.arch == "htsat" and loaded.config.freq_ratio == 4 and loaded.config.num_classes == 3
    spec = _spec(256)
    with torch.no_grad():
        ref = hf(input_features=spec[:, None]).pooler_output
        assert (loaded.sed(spec).embedding - ref).abs().max() < 1e-4


# -- the window rule and the masks ---------------------------------------------------------------
def test_window_rule():
    p = window_plan((16, 4), 8, shifted=True)  # min(grid) <= w: no shift, per-axis min
    assert (p.window, p.shift, p.padded) == ((8, 4), (0, 0), (16, 4))
    p = window_plan((6, 30), 8, shifted=True)
    assert (p.window, p.shift, p.padded) == ((6, 8), (0, 0), (6, 32))
    p = window_plan((8, 8), 8, shifted=True)
    assert (p.window, p.shift, p.padded) == ((8, 8), (0, 0), (8, 8))
    p = window_plan((12, 20), 8, shifted=True)  # larger: w x w, shifted by w // 2, padded to whole windows
    assert (p.window, p.shift, p.padded) == ((8, 8), (4, 4), (16, 24))
    p = window_plan((12, 20), 8, shifted=False)
    assert (p.window, p.shift, p.padded) == ((8, 8), (0, 0), (16, 24))
    assert window_plan((64, 64), 8, True).shift == (4, 4) and window_plan((64, 64), 8, True).padded == (64, 64)


def _block(shifted, dim=8, heads=2, window=4, seed=0):
    cfg = HTSATConfig(num_classes=2, input_fdim=16, embed_dim=dim, depths=(2, 2), num_heads=(heads, 2 * heads),
                      window_size=window, freq_ratio=2, drop_path_rate=0.0)
    torch.manual_seed(seed)
    return _randomise(SwinBlock(dim, heads, cfg, shifted=shifted, drop_path=0.0), seed, 0.5).eval()


@pytest.mark.parametrize("shifted", [False, True])
def test_padded_keys_are_masked(monkeypatch, shifted):
    """A 6 x 10 grid in 4 x 4 windows is padded to 8 x 12: the real tokens' outputs do not depend
    on what the padding holds (here: zeros, or large random values)."""
    block = _block(shifted)
    x = torch.randn(2, 6, 10, 8, generator=torch.Generator().manual_seed(3))
    assert block.plan((6, 10)).padded == (8, 12)
    with torch.no_grad():
        zeros = block(x)

        def noisy_pad(t, pad, *args, **kwargs):
            out = F.pad(t, pad, *args, **kwargs)
            keep = F.pad(torch.ones_like(t), pad).bool()
            return torch.where(keep, out, torch.randn_like(out) * 100)

        monkeypatch.setattr(htsat_model, "F", types.SimpleNamespace(pad=noisy_pad, gelu=F.gelu))
        noisy = block(x)
    assert zeros.shape == x.shape
    torch.testing.assert_close(noisy, zeros, rtol=0, atol=1e-5)


def test_shifted_window_masks_keep_regions_apart():
    """Shifted by 2 on an 8 x 8 grid: within a window, two tokens attend to each other only if
    both or neither wrapped around each axis; so the bottom-right token does not see the
    top-left one (wrapped into its window), while the top-left corner's neighbours do."""
    block = _block(shifted=True)
    plan = block.plan((8, 8))
    assert plan.shift == (2, 2)
    mask = block.mask(plan, torch.device("cpu"))
    wrapped = (torch.arange(8) + 2 >= 8)  # in the shifted frame, position r came from (r + 2) mod 8
    for n in range(4):
        r0, c0 = 4 * (n // 2), 4 * (n % 2)
        rows, cols = torch.meshgrid(torch.arange(r0, r0 + 4), torch.arange(c0, c0 + 4), indexing="ij")
        wr, wc = wrapped[rows.flatten()], wrapped[cols.flatten()]
        apart = (wr[:, None] != wr[None, :]) | (wc[:, None] != wc[None, :])
        assert torch.equal(mask[n] == MASKED, apart), n

    x = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[0, 0, 0] += 5
    with torch.no_grad():
        a, b = block(x), block(y)
    assert torch.equal(a[0, 7, 7], b[0, 7, 7])  # bottom-right never sees top-left
    assert not torch.equal(a[0, 1, 1], b[0, 1, 1])  # a neighbour in the same window does


# -- fold, outputs, adapt ---------------------------------------------------------------
def test_fold_and_unfold_keep_time_order():
    f, t, fr = 3, 24, 4
    x = torch.arange(t).float().expand(1, f, t).clone() + 100 * torch.arange(f)[None, :, None]
    image = fold(x, fr)
    assert image.shape == (1, 1, fr * f, t // fr)
    for k in range(fr):  # rows k F .. (k+1) F - 1 hold chunk k
        assert torch.equal(image[0, 0, k * f:(k + 1) * f], x[0, :, k * t // fr:(k + 1) * t // fr])
    back = unfold(image.permute(0, 2, 3, 1), fr)  # [1, F, T, 1]
    assert torch.equal(back[..., 0], x)


def test_tokens_run_in_time_order():
    """Changing frame 37 changes only layer 0's time column 9 (4 frames each), in every frequency row."""
    model = _randomise(create_model("htsat", **SMALL)).eval()
    assert model.token_frames(0) == 4 and model.token_frames() == 16 and model.token_frames(3) == 8
    spec = _spec(256)
    bumped = spec.clone()
    bumped[:, 37] += 10
    with torch.no_grad():
        a, b = model.embed(spec, layer=0), model.embed(bumped, layer=0)
    gf, gt = a.grid
    changed = (a.tokens - b.tokens).abs().sum(-1).reshape(2, gf, gt).amax(0) > 0
    expected = torch.zeros(gf, gt, dtype=torch.bool)
    expected[:, 37 // 4] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize("frames", [256, 300, 100, 16])
def test_framewise_and_clip_outputs(frames):
    model = _randomise(create_model("htsat", **SMALL)).eval()
    spec = _spec(frames)
    with torch.no_grad():
        out = model.sed(spec)
        logits = model(spec)
    fpp = model.config.frames_per_position
    assert out.framewise.shape == (2, frames, 5) and out.clip.shape == (2, 5) and out.embedding.shape == (2, 64)
    positions = out.framewise[:, ::fpp]  # one frame per time position: its logits repeat over its frames
    assert positions.shape[1] == math.ceil(frames / fpp)
    torch.testing.assert_close(out.clip, positions.mean(dim=1), rtol=0, atol=1e-6)
    assert torch.equal(logits, out.clip)
    for j in range(positions.shape[1]):
        assert torch.equal(out.framewise[:, j * fpp:(j + 1) * fpp],
                           positions[:, j:j + 1].expand(-1, min(fpp, frames - j * fpp), -1))


def test_adapt_keeps_weights_and_refuses_patch_settings():
    model = _randomise(create_model("htsat", **SMALL)).eval()
    short = model.adapt(input_tdim=64)
    assert short.config.input_tdim == 64
    assert all(torch.equal(v, short.state_dict()[k]) for k, v in model.state_dict().items())
    head = model.adapt(num_classes=3)
    assert head.tscam_conv.weight.shape[0] == 3
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in model.state_dict().items()
               if not k.startswith("tscam_conv."))
    for bad in ({"patch_size": 8}, {"stride": 2}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))}.*no patch-size call"):
            model.adapt(**bad)
    with pytest.raises(ValueError, match="window_size.*the weights fix it"):
        model.adapt(window_size=8)
    with pytest.raises(ValueError, match="patch_size.*no patch-size call"):
        model(_spec(64), patch_size=8)
    with pytest.raises(ValueError, match="fixed: unexpected resize"):
        model.fixed(input_tdim=64, resize="bl")


def test_wrong_mel_bins_are_named():
    model = create_model("htsat", **SMALL)
    with pytest.raises(ValueError, match=r"20 mel bins.*input_fdim=16"):
        model(torch.randn(1, 64, 20))


# -- FLOPs ------------------------------------------------------------------------------
def test_a_quarter_of_the_input_costs_about_a_quarter():
    cfg = HTSATConfig(num_classes=4)  # Swin-T, 64 mel bins
    full, quarter = flops(cfg, (1024, 64)).forward, flops(cfg, (256, 64)).forward
    assert 0.24 < quarter / full < 0.26, quarter / full


@pytest.mark.parametrize("train", [False, True], ids=["forward", "training"])
def test_flops_with_padded_and_shifted_windows(train):
    """Window 3 on 8 x 12 and 4 x 6 grids: both padded to whole windows, shifted in odd blocks;
    a 90-frame input is padded to 96 frames."""
    model = _randomise(HTSAT(3, input_fdim=16, input_tdim=96, embed_dim=8, depths=(2, 2), num_heads=(2, 2),
                             window_size=3, freq_ratio=2, drop_path_rate=0.0))
    plans = [window_plan((8, 12), 3, True), window_plan((4, 6), 3, False)]
    assert [p.padded for p in plans] == [(9, 12), (6, 6)] and plans[0].shift == (1, 1)
    spec = _spec(90, batch=2)
    with torch.set_grad_enabled(train):
        measured = measured_flops(model, spec, train)
    count = flops(model, (2, 90, 16))
    assert (count.training if train else count.forward) == measured


# -- weights ------------------------------------------------------------------------------
def _official(model) -> dict:
    """A Lightning ``state_dict`` as HTS-AT's training writes it: ``sed_model.`` keys, the
    buffers it registers, the unused head Linear(classes, classes) and torchlibrosa's front end."""
    sd = {}
    for k, v in model.state_dict().items():
        sd[f"sed_model.{k}"] = v.clone()
        if k.endswith("attn.relative_position_bias_table"):
            block = k.rpartition(".attn.")[0]
            sd[f"sed_model.{block}.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
            sd[f"sed_model.{block}.attn_mask"] = torch.zeros(4, 16, 16)
    c = model.config.num_classes
    sd.update({"sed_model.head.weight": torch.randn(c, c), "sed_model.head.bias": torch.zeros(c),
               "sed_model.spectrogram_extractor.stft.conv_real.weight": torch.randn(513, 1, 1024),
               "sed_model.logmel_extractor.melW": torch.randn(513, 16)})
    return sd


def test_official_lightning_checkpoint_loads(tmp_path):
    model = _randomise(create_model("htsat", **SMALL)).eval()
    path = tmp_path / "HTSAT_AudioSet_Saved_1.ckpt"
    torch.save({"epoch": 3, "global_step": 10, "pytorch-lightning_version": "1.5.9",
                "state_dict": _official(model), "optimizer_states": []}, path)
    loaded = load_model(path, freq_ratio=4).eval()
    assert isinstance(loaded, HTSAT) and loaded.config.num_classes == 5 and loaded.config.depths == (2, 2, 2)
    spec = _spec(256)
    with torch.no_grad():
        assert torch.equal(loaded(spec), model(spec))
    assert HTSAT.from_pretrained(path, freq_ratio=4, num_classes=2).config.num_classes == 2


def test_a_lightning_file_of_another_model_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"epoch": 1, "pytorch-lightning_version": "2.0", "state_dict": {
        "model.encoder.weight": torch.randn(4, 4), "model.head.bias": torch.zeros(4)}}, path)
    with pytest.raises(CheckpointError, match=rf"{path.name}: not an HTS-AT checkpoint: no sed_model"):
        HTSAT.from_pretrained(path)
    with pytest.raises(CheckpointError, match=path.name):
        load_model(path)


def test_a_pickled_file_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"sed_model.bn0.weight": torch.ones(16)}, "hyper_parameters": Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match=rf"{path.name}: refused to load.*weights_only=True"):
        HTSAT.from_pretrained(path)
    assert not marker.exists()


def _swin(model, timm: bool) -> dict:
    """An ImageNet Swin state dict shaped like ``model``'s encoder: RGB kernel, window-7 bias tables,
    a 1000-class head; timm's layout moves each merging to the next stage and names the head ``head.fc``."""
    g = torch.Generator().manual_seed(5)
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith(("bn0.", "tscam_conv.")):
            continue
        if k == "patch_embed.proj.weight":
            v = torch.randn(v.shape[0], 3, *v.shape[2:], generator=g)
        elif k.endswith("relative_position_bias_table"):
            v = torch.randn(13 * 13, v.shape[1], generator=g)
        else:
            v = torch.randn(v.shape, generator=g)
        if timm and ".downsample." in k:
            i = int(k.split(".")[1])
            k = k.replace(f"layers.{i}.", f"layers.{i + 1}.", 1)
        sd[k] = v
        if k.endswith("relative_position_bias_table"):
            sd[k.replace("relative_position_bias_table", "relative_position_index")] = torch.zeros(49, 49).long()
    head = "head.fc" if timm else "head"
    sd.update({f"{head}.weight": torch.randn(1000, model.config.num_features), f"{head}.bias": torch.zeros(1000)})
    return sd


@pytest.mark.parametrize("timm", [False, True], ids=["microsoft", "timm"])
def test_imagenet_swin_initialises_an_htsat(tmp_path, timm):
    target = HTSATConfig(num_classes=7, input_fdim=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                         window_size=8)
    swin = _swin(HTSAT(config=target), timm)
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": swin} if not timm else swin, path)
    with pytest.warns(UserWarning, match="tscam_conv.*initialised at random"):
        model = init_from(path, target)
    sd = model.state_dict()
    assert model.config == target
    torch.testing.assert_close(sd["patch_embed.proj.weight"], swin["patch_embed.proj.weight"].mean(1, keepdim=True))
    table = sd["layers.1.blocks.1.attn.relative_position_bias_table"]
    assert table.shape == (15 * 15, 2)
    src = swin["layers.1.blocks.1.attn.relative_position_bias_table"].T.reshape(2, 13, 13)
    torch.testing.assert_close(table.T.reshape(2, 15, 15)[:, 7, 7], src[:, 6, 6], rtol=0, atol=0.5)  # centre offset
    merge = "layers.1.downsample.reduction.weight" if timm else "layers.0.downsample.reduction.weight"
    assert torch.equal(sd["layers.0.downsample.reduction.weight"], swin[merge])
    assert torch.equal(sd["layers.2.blocks.0.mlp.fc1.weight"], swin["layers.2.blocks.0.mlp.fc1.weight"])
    assert sd["tscam_conv.weight"].shape[0] == 7
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(1, 200, 64))).all()


def test_the_recipe_section_refuses_patch_settings():
    from flexiast.config import ConfigError, build_config

    with pytest.raises(ConfigError, match="unknown key model.patch_size; HTSATSection takes"):
        build_config({"name": "t", "model": {"arch": "htsat", "patch_size": 8}}, check_files=False)


def _htsat_module_tree(depths=(2, 2, 2), dim=16, heads=(2, 4, 8), window=4, mel_bins=16, classes=5, c_freq_bin=1):
    """The learned tensors of HTS-AT's ``sed_model`` with their shapes, written from the names in
    its ``model/htsat.py`` and ``model/layers.py`` (RetroCirce/HTS-Audio-Transformer @ 2e29471:
    ``bn0``, ``patch_embed.{proj,norm}``, ``layers.i.blocks.j.{norm1, attn.{relative_position_bias_table,
    qkv, proj}, norm2, mlp.{fc1, fc2}}``, ``layers.i.downsample.{reduction, norm}``, ``norm``,
    ``tscam_conv``), not from flexiast's module."""
    tree = {"bn0.weight": (mel_bins,), "bn0.bias": (mel_bins,), "bn0.running_mean": (mel_bins,),
            "bn0.running_var": (mel_bins,), "bn0.num_batches_tracked": (),
            "patch_embed.proj.weight": (dim, 1, 4, 4), "patch_embed.proj.bias": (dim,),
            "patch_embed.norm.weight": (dim,), "patch_embed.norm.bias": (dim,)}
    d = dim
    for i, (depth, h) in enumerate(zip(depths, heads)):
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}."
            tree.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,),
                         b + "attn.relative_position_bias_table": ((2 * window - 1) ** 2, h),
                         b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
                         b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                         b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                         b + "mlp.fc1.weight": (4 * d, d), b + "mlp.fc1.bias": (4 * d,),
                         b + "mlp.fc2.weight": (d, 4 * d), b + "mlp.fc2.bias": (d,)})
        if i < len(depths) - 1:
            tree.update({f"layers.{i}.downsample.reduction.weight": (2 * d, 4 * d),
                         f"layers.{i}.downsample.norm.weight": (4 * d,), f"layers.{i}.downsample.norm.bias": (4 * d,)})
            d *= 2
    tree.update({"norm.weight": (d,), "norm.bias": (d,), "tscam_conv.weight": (classes, d, c_freq_bin, 3),
                 "tscam_conv.bias": (classes,)})
    return tree


def test_a_checkpoint_in_htsat_module_tree_loads_strictly(tmp_path):
    """A Lightning file built from HTS-AT's own module names and shapes (with the buffers and
    front end it also saves) loads, every learned tensor in its place."""
    tree = _htsat_module_tree()
    g = torch.Generator().manual_seed(1)
    sd = {f"sed_model.{k}": (torch.randn(shape, generator=g) if shape else torch.tensor(7)) for k, shape in tree.items()}
    sd["sed_model.bn0.running_var"] = sd["sed_model.bn0.running_var"].abs() + 0.5
    for i, depth in enumerate((2, 2, 2)):
        for j in range(depth):
            sd[f"sed_model.layers.{i}.blocks.{j}.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    sd.update({"sed_model.head.weight": torch.randn(5, 5), "sed_model.head.bias": torch.zeros(5),
               "sed_model.spectrogram_extractor.stft.conv_real.weight": torch.randn(513, 1, 1024),
               "sed_model.logmel_extractor.melW": torch.randn(513, 16)})
    path = tmp_path / "htsat_tree.ckpt"
    torch.save({"state_dict": sd, "pytorch-lightning_version": "1.5.9"}, path)
    model = load_model(path, freq_ratio=4)
    mine = model.state_dict()
    assert set(mine) == set(tree)
    for k, shape in tree.items():
        assert tuple(mine[k].shape) == shape, k
        assert torch.equal(mine[k], sd[f"sed_model.{k}"]), k
