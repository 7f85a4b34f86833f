"""The benchmark scripts run and compare like with like; their timings are never asserted.

``benchmarks/run.py --quick`` runs every section on tiny shapes. Along the way the
scripts themselves refuse to time contenders that compute different things: Hugging
Face's AST must give flexiast's logits from the same weights, kaldi-native-fbank and
Hugging Face's extractor flexiast's features, ONNX Runtime and the compiled model the
eager logits, a packed batch each clip run alone. A failure of any of those fails this test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 45 s: every benchmark section end to end; the sections' own tests below run by default
def test_quick_benchmark_run_writes_every_section(tmp_path, fsdd_dir):
    out = tmp_path / "PERFORMANCE.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
                           "--fsdd", str(fsdd_dir.parent)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for heading in ("## Targets", "## Matrix-multiply peak", "## Training step against Hugging Face's AST", "## Attention kernels on CPU",
                    "## Feature extraction", "## Scaling across patch sizes and compression", "## PI-resize cost",
                    "## Data loading", "## Coarse epochs against full epochs", "## torch.compile for training",
                    "## Inference latency", "## Batch labelling, embeddings and the waveform graph",
                    "## Packed variable-length batches"):
        assert heading in text, heading
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert f"<!-- machine kind: {'cpu-native-bf16' if native else 'cpu-no-bf16'} -->" in text
    targets = text.split("## Targets", 1)[1].split("##", 1)[0]
    # header and rule, the fp32 step (and bf16 where native), 2 fbank peers, resize (mean, worst) /
    # patch 32 / C=4, loader, coarse epoch against full epoch, packed against padded (two length distributions)
    assert targets.count("\n| ") == 2 + (2 if native else 1) + 2 + 4 + 1 + 1 + 2


def test_packing_benchmark_runs_quick_and_checks_its_contenders(fsdd_dir, capsys):
    """``bench_packing.py --quick`` in this process (a few seconds; one thread, as a busy machine
    slows two-thread steps of a tiny model most): it checks every packed contender's logits
    against each clip alone before timing, and reports the target for both length
    distributions."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_packing

    threads = torch.get_num_threads()
    try:
        bench_packing.main(["--quick", "--threads", "1", "--fsdd", str(fsdd_dir.parent)])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    target = out.split("### Against the target", 1)[1].split("\n### ", 1)[0]
    assert "FSDD" in target and "synthetic" in target
    for heading in ("FSDD lengths", "synthetic, 32-320 frames lengths"):
        assert heading in out
    assert "| padded to longest |" in out and "| packed, R=128 (headline) |" in out
    assert "| packed, R=192, first-fit decreasing |" in out


def test_a_cpu_without_native_bf16_gets_its_own_section_without_bf16_contenders(tmp_path):
    """Under oneDNN and ATen capped at AVX2 (a CPU without native bf16), the run writes the
    cpu-no-bf16 section, times bf16 once as emulated, and keeps the other kinds' sections."""
    out = tmp_path / "PERFORMANCE.md"
    other = "<!-- machine kind: cpu-native-bf16 -->\n## CPU with native bf16\nMachine: elsewhere.\n\nkept\n" \
            "<!-- end of machine kind -->"
    out.write_text(f"# Performance\n\n{other}\n")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "peak,attention",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert other in text
    mine = text.split("<!-- machine kind: cpu-no-bf16 -->", 1)[1].split("<!-- end of machine kind -->", 1)[0]
    assert "ISA AVX2, bf16 emulated (no native bf16)" in mine
    assert "| bf16 (emulated) |" in mine and "| fp32 |" in mine
    attention = mine.split("## Attention kernels on CPU", 1)[1]
    assert "| fp32 |" in attention and "| bf16 |" not in attention


def test_unknown_section_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "trian",
                           "--out", str(tmp_path / "x.md")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "trian" in proc.stderr
    assert not (tmp_path / "x.md").exists()


def test_a_partial_run_replaces_only_its_sections():
    """``run.py --only X`` on a kind that already has a section: X's sub-section is replaced
    (or added at the end), the rest kept as measured, and the update noted."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run import END, update_sections

    old = "\n".join(["<!-- machine kind: k -->", "## Kind", "Run of then.", "", "### A", "old a", "",
                     "### B", "old b", END])
    new = update_sections(old, ["### A\nnew a", "### C\nnew c"], "A, C updated now.")
    assert new.splitlines() == ["<!-- machine kind: k -->", "## Kind", "Run of then.", "", "A, C updated now.", "",
                                "### A", "new a", "", "### B", "old b", "", "### C", "new c", "", END]
