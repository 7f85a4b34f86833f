"""The benchmark scripts run and compare like with like; their timings are never asserted.

``benchmarks/run.py --quick`` runs every section on tiny shapes. Along the way the
scripts themselves refuse to time contenders that compute different things: Hugging
Face's AST must give flexiast's logits from the same weights, kaldi-native-fbank and
Hugging Face's extractor flexiast's features, ONNX Runtime and the compiled model the
eager logits. A failure of any of those fails this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_run_writes_every_section(tmp_path, fsdd_dir):
    out = tmp_path / "PERFORMANCE.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
                           "--fsdd", str(fsdd_dir.parent)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for heading in ("## Targets", "## Matrix-multiply peak", "## Training step against Hugging Face's AST", "## Attention kernels on CPU",
                    "## Feature extraction", "## Scaling across patch sizes and compression", "## PI-resize cost",
                    "## Data loading", "## Inference latency"):
        assert heading in text, heading
    targets = text.split("## Targets", 1)[1].split("##", 1)[0]
    # header and rule, fp32 and bf16 steps, 2 fbank peers, resize (mean, worst) / patch 32 / C=4, loader
    assert targets.count("\n| ") == 2 + 2 + 2 + 4 + 1


def test_unknown_section_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "trian",
                           "--out", str(tmp_path / "x.md")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "trian" in proc.stderr
    assert not (tmp_path / "x.md").exists()
