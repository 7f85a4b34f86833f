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
    assert main(["flops", "--model", "ast-base", "--patch-sizes", "16,16x32", "--json"]) == 0
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
    out = subprocess.run([sys.executable, "-m", "flexiast", "flops", "--model", "ast-tiny", "--patch-sizes", "32"],
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


# -- the --data spec and --option: parsed by argparse -----------------------------------------------------
def _esc50_layout(root):
    """A tiny ESC-50 layout: 5 folds x 3 classes (dog and chainsaw in ESC-10), 0.2 s tones at 16 kHz."""
    import numpy as np
    import soundfile as sf

    rows = ["filename,fold,target,category,esc10,src_file,take"]
    (root / "audio").mkdir(parents=True)
    (root / "meta").mkdir()
    t = np.arange(3200) / 16000
    for fold in range(1, 6):
        for target, category, esc10 in ((0, "dog", "True"), (1, "rooster", "False"), (41, "chainsaw", "True")):
            name = f"{fold}-{target}-A-0.wav"
            sf.write(root / "audio" / name, 0.3 * np.sin(2 * np.pi * (200 + 50 * target) * t), 16000)
            rows.append(f"{name},{fold},{target},{category},{esc10},{target},A")
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return rows[1:]


def test_stats_reads_a_list_of_folds_and_esc10_from_data(tmp_path, capsys):
    rows = _esc50_layout(tmp_path / "esc")
    expected = sum(1 for r in rows if r.split(",")[4] == "True" and r.split(",")[1] in "2345")
    assert expected == 8
    assert main(["stats", "--data", f"esc50:{tmp_path / 'esc'},esc10=true,folds=[2,3,4,5]",
                 "--target-length", "32", "--batch-size", "4"]) == 0
    assert f"{expected} clips of esc50 (train)" in capsys.readouterr().out


def test_data_and_option_values_parse_as_json():
    from flexiast.cli import build_parser

    args = build_parser().parse_args(["stats", "--data", 'esc50:/d/ESC-50,esc10=true,test_fold=1,folds=[2,3],'
                                      'label_csv=labels.csv,name="a,b",extra={"k":[1,2]}',
                                      "--option", "folds=[2,3]", "--option", "task=speakers"])
    assert args.data.format == "esc50"
    assert args.data.options == {"root": "/d/ESC-50", "esc10": True, "test_fold": 1, "folds": [2, 3],
                                 "label_csv": "labels.csv", "name": "a,b", "extra": {"k": [1, 2]}}
    assert args.option == [("folds", [2, 3]), ("task", "speakers")]
    # Brackets and quotes inside a path are the path's: only a value's first character opens a group.
    args = build_parser().parse_args(["stats", "--data", "folder:/data/Bob's [old],split=train"])
    assert args.data.options == {"root": "/data/Bob's [old]", "split": "train"}


@pytest.mark.parametrize("argv, names", [
    (["--data", "nocolon"], ["--data", "'nocolon'", "FORMAT:ROOT"]),
    (["--data", "esc50:/x,oops"], ["--data", "'oops' is not KEY=VALUE"]),
    (["--data", "esc50:/x,folds=[1,2"], ["--data", "folds=[1,2", "unclosed"]),
    (["--data", "esc50:/x,folds=[1,2}"], ["--data", "closes no matching bracket"]),
    (["--data", "esc5:/x"], ["--data", "'esc5' is not a data format"]),
    (["--data", "esc50:/x,folds=[1,,2]"], ["--data", "not valid JSON"]),
    (["--option", "oops"], ["--option", "'oops' is not KEY=VALUE"]),
    (["--format", "esc50", "--option", "folds=[1"], ["--option", "folds=[1", "not valid JSON"]),
])
def test_a_bad_data_spec_is_an_argparse_error(argv, names, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["stats", *argv])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: flexiast stats") and "flexiast stats: error: argument " in err
    assert "Traceback" not in err and all(n in err for n in names), err


@pytest.mark.parametrize("argv, message", [
    (["stats"], "give the dataset with --data"),
    (["train", "--resume", "run", "recipe.yaml"], "--resume RUN_DIR continues a run"),
    (["train"], "give a recipe"),
    (["convert", "a.pth", "b.safetensors", "--format", "hf"], "a single .safetensors file"),
])
def test_command_lines_that_parse_but_make_no_sense_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: flexiast {argv[0]}") and f"flexiast {argv[0]}: error: {message}" in err, err
