"""``scripts/check_unchanged.py``: the code compared with itself is unchanged, and a copy whose
softmax was altered is reported, naming the outputs that differ (slow: each trains two runs
and runs every deployment command twice)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_unchanged.py"
OUTPUTS = ("evaluate-ast", "evaluate-htsat", "predict-ast", "predict-ast-budget", "predict-htsat",
           "predict-htsat-budget", "embed-ast", "embed-htsat")


def check(fsdd_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--fsdd", str(fsdd_dir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # about a minute on two cores
def test_the_code_compared_with_itself_is_unchanged(fsdd_dir):
    proc = check(fsdd_dir, "--before", "HEAD")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "(" in line]
    assert [row.split()[1] for row in rows] == list(OUTPUTS)
    assert all(row.endswith("| same |") and int(row.split("|")[2]) > 0 for row in rows), rows
    assert proc.stdout.rstrip().endswith("unchanged")


@pytest.mark.slow  # about a minute on two cores
def test_a_changed_softmax_is_reported_naming_the_outputs(fsdd_dir, tmp_path):
    changed = tmp_path / "changed"
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(changed)
    with open(changed / "src" / "flexiast" / "__init__.py", "a") as f:  # a softmax at temperature 1/1.01
        f.write("\nimport torch as _torch\n_softmax = _torch.softmax\n"
                "_torch.softmax = lambda x, dim=None, **kw: _softmax(x * 1.01, dim, **kw)\n")
    proc = check(fsdd_dir, "--before", "HEAD", "--after", str(changed))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = {line.split()[1]: line for line in proc.stdout.splitlines() if line.startswith("| ") and "(" in line}
    for name in ("predict-ast", "predict-htsat"):
        assert "difference(s) |" in rows[name], rows[name]
        assert f"DIFFERENT {name}[0].top[0].score: " in proc.stdout
    assert "difference(s)" in proc.stdout.splitlines()[-1]
