"""Command lines the ``flexiast`` command must refuse as argparse usage errors (exit code 2,
the usage, a line naming what is wrong, never a traceback), and command lines whose options
and positional lists (overrides, audio files, inputs) come in any order."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from flexiast.cli import build_parser, main

from helpers import tiny_recipe


def _subcommands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)


#: Every subcommand: a command line that parses, an option with a bad value to add to it, and
#: what the error names. The valid part gives what the command requires, so the bad value (or
#: an unknown option added instead) is the only mistake.
BAD_VALUES = {
    "demo": (["demo"], ["--epochs", "0"], "argument --epochs: 0 must be positive"),
    "flops": (["flops"], ["--model", "ast-huge"], "argument --model: invalid choice: 'ast-huge'"),
    "convert": (["convert", "a.pth", "b"], ["--format", "onnx"], "argument --format: invalid choice: 'onnx'"),
    "stats": (["stats"], ["--target-length", "long"], "argument --target-length: invalid int value: 'long'"),
    "train": (["train", "r.yaml"], ["--resume"], "argument --resume: expected one argument"),
    "savings": (["savings", "run", "--baseline", "base"], ["--reading", "test"],
                "argument --reading: invalid choice: 'test'"),
    "evaluate": (["evaluate", "run"], ["--patch-sizes", "16,big"], "argument --patch-sizes: 'big' is not a patch size"),
    "predict": (["predict", "run", "a.wav"], ["--top-k", "0"], "argument --top-k: 0 must be positive"),
    "embed": (["embed", "run", "a.wav", "--out", "e.safetensors"], ["--layer", "last"],
              "argument --layer: invalid int value: 'last'"),
    "export": (["export", "run", "m.onnx"], ["--patch-size", "8,16"], "argument --patch-size: '8,16': give one"),
    "report": (["report", "a.json", "--out", "f.png"], ["--metric"], "argument --metric: expected one argument"),
}


def _usage_error(argv: list[str], capsys) -> str:
    """``flexiast ARGV``'s stderr, after checking that argparse refused it with exit code 2."""
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "usage: flexiast" in err and "Traceback" not in err, err
    return err


def test_every_subcommand_is_tried():
    assert set(BAD_VALUES) == _subcommands()


@pytest.mark.parametrize("command", sorted(BAD_VALUES))
def test_a_bad_value_is_an_argparse_error_naming_the_option(command, capsys):
    valid, bad, message = BAD_VALUES[command]
    assert build_parser().parse_args(valid).command == command
    err = _usage_error([*valid, *bad], capsys)
    assert f"flexiast {command}: error: {message}" in err, err


@pytest.mark.parametrize("command", sorted(BAD_VALUES))
def test_an_unknown_option_is_an_argparse_error_naming_it(command, capsys):
    valid, _, _ = BAD_VALUES[command]
    err = _usage_error([*valid, "--no-such-option", "3"], capsys)
    assert "error: unrecognized arguments: --no-such-option" in err, err


def test_the_installed_command_reports_usage_errors_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "flexiast", "evaluate", "run", "--resize", "nearest"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: flexiast evaluate") and "Traceback" not in proc.stderr
    assert "argument --resize: invalid choice: 'nearest'" in proc.stderr


# -- predict without audio --------------------------------------------------------------------------
def test_predict_without_audio_files_is_a_usage_error_naming_what_to_give(tmp_path):
    """``flexiast predict RUN --json`` used to end in an IndexError traceback."""
    proc = subprocess.run([sys.executable, "-m", "flexiast", "predict", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("usage: flexiast predict") and "Traceback" not in proc.stderr
    assert "flexiast predict: error: give audio files" in proc.stderr
    assert proc.stdout == ""


# -- options and positional lists in any order ------------------------------------------------------
#: Each command that takes a list of positionals, as two command lines that differ only in
#: where the options stand.
ORDERS = [
    (["train", "r.yaml", "--check", "data.root=/x", "optimizer.lr=1e-3"],
     ["train", "r.yaml", "data.root=/x", "optimizer.lr=1e-3", "--check"]),
    (["predict", "run", "a.wav", "--json", "--top-k", "3", "b.wav"],
     ["predict", "--json", "run", "a.wav", "b.wav", "--top-k", "3"]),
    (["embed", "run", "a.wav", "--out", "e.npz", "b/", "--frames"],
     ["embed", "--frames", "--out", "e.npz", "run", "a.wav", "b/"]),
    (["report", "a.json", "--out", "f.png", "b.json", "--labels", "A,B"],
     ["report", "--labels", "A,B", "a.json", "b.json", "--out", "f.png"]),
]


@pytest.mark.parametrize("first, second", ORDERS, ids=[o[0][0] for o in ORDERS])
def test_options_and_positional_lists_mix_in_any_order(first, second):
    parser = build_parser()
    a, b = (vars(parser.parse_args(argv)) for argv in (first, second))
    assert a == b
    positional = {"train": ("overrides", ["data.root=/x", "optimizer.lr=1e-3"]),
                  "predict": ("audio", ["a.wav", "b.wav"]), "embed": ("audio", ["a.wav", "b/"]),
                  "report": ("inputs", ["a.json", "b.json"])}[first[0]]
    assert a[positional[0]] == positional[1]


def test_train_check_takes_overrides_after_it(fsdd_dir, tmp_path, capsys):
    """``flexiast train R --check data.root=...`` was refused ("unrecognized arguments"); now it
    checks the recipe with the overrides, as the overrides before ``--check`` do."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tmp_path / "no-such-data", tmp_path / "unused")))
    overrides = [f"data.root={fsdd_dir.parent}", f"out={tmp_path / 'chosen'}"]
    printed = []
    for argv in (["train", str(recipe), "--check", *overrides], ["train", str(recipe), *overrides, "--check"]):
        assert main(argv) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1]
    assert printed[0].startswith(f"{recipe}: valid;") and f"output {tmp_path / 'chosen'};" in printed[0]
    assert not (tmp_path / "chosen").exists()
