"""Run every benchmark and write docs/PERFORMANCE.md: ``python benchmarks/run.py``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

import bench_data  # noqa: E402
from common import machine  # noqa: E402

HEADER = """# Performance

Written by `python benchmarks/run.py` (each section also runs alone). Rates are medians of
several runs with their minimum and maximum; comparisons are measured side by side in
the same run. Timings are never asserted in the test suite.

Machine: {machine}.

"""


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    sections = [bench_data.main()]
    out = Path(__file__).resolve().parents[1] / "docs" / "PERFORMANCE.md"
    out.write_text(HEADER.format(machine=machine()) + "\n".join(sections))
    print(out.read_text())


if __name__ == "__main__":
    main()
