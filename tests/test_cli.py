"""The flexiast command: flops, convert, and its errors (the demo: tests/test_demo.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from flexiast import AST
from flexiast.cli import main


def test_flops_json_by_hand(capsys):
    assert main(["flops", "--preset", "base", "--patch-sizes", "16,16x32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["tokens"] for r in rows] == [514, 258]
    assert abs(rows[0]["components_gflops"]["patch_embed"] - 2 * 512 * 256 * 768 / 1e9) < 1e-9


def test_convert_to_safetensors_and_hf(tmp_path, capsys):
    model = AST(num_classes=3, embed_dim=64, depth=1, num_heads=1, input_tdim=64, norm_eps=1e-6,
                head_norm_eps=1e-6).eval()
    torch.save({"module." + k.replace("head.norm", "mlp_head.0").replace("head.fc", "mlp_head.1")
                if k.startswith("head.") else "module.v." + k: v for k, v in model.state_dict().items()},
               tmp_path / "ast.pth")
    spec = torch.randn(1, 64, 128)
    assert main(["convert", str(tmp_path / "ast.pth"), str(tmp_path / "out.safetensors")]) == 0
    with pytest.warns(UserWarning, match="one layer_norm_eps"):  # AST's head LayerNorm used 1e-5
        assert main(["convert", str(tmp_path / "out.safetensors"), str(tmp_path / "hf"), "--format", "hf"]) == 0
    with torch.no_grad():
        for path in (tmp_path / "out.safetensors", tmp_path / "hf"):
            torch.testing.assert_close(AST.from_pretrained(path).eval()(spec), model(spec), atol=1e-5, rtol=0)


def test_errors_name_the_file_and_exit_2(tmp_path, capsys):
    torch.save({"x": torch.zeros(1)}, tmp_path / "odd.pt")
    assert main(["convert", str(tmp_path / "odd.pt"), str(tmp_path / "o.safetensors")]) == 2
    assert "odd.pt" in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "flexiast", "flops", "--preset", "tiny", "--patch-sizes", "32"],
                         capture_output=True, text=True, check=True).stdout
    assert "32x32" in out


def test_stats_prints_and_writes_a_recipe_snippet(tmp_path, fsdd_dir, capsys):
    out = tmp_path / "stats.yaml"
    assert main(["stats", "--data", f"fsdd:{fsdd_dir.parent},split=test",
                 "--target-length", "64", "--batch-size", "100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "300 clips of fsdd (test)" in printed
    snippet = out.read_text()
    mean = float(snippet.split("mean: ")[1].split()[0])
    assert -12 < mean < 0 and "target_length: 64" in snippet  # log-mel energies of speech plus zero padding


def test_stats_names_a_missing_dataset(tmp_path, capsys):
    assert main(["stats", "--format", "esc50", "--root", str(tmp_path), "--option", "test_fold=1"]) == 2
    assert "esc50.csv" in capsys.readouterr().err
