"""What users do with a trained model, timed: batch labelling, embeddings, the waveform graph.

Files: FSDD recordings as they ship (8 kHz WAV, resampled to 16 kHz on reading; about
0.4 s each, one window). Model: the FSDD recipes' AST (128 wide, 4 layers, 4 heads, 128
mel bins x 64 frames, patch 16), random weights (throughput does not depend on them), in
the precision ``auto`` picks (bf16 on a CPU with native bf16, fp32 otherwise) in the
loops and the batch functions alike; the waveform graph and its eager peer in fp32.

* **Batch labelling**: "loop over predict" is what a user writes today,
  ``for f in files: im.predict(f)``; "predict_files" is :func:`flexiast.batch.predict_files`
  (2 loader workers decode and window the files, windows of many files batched, 64 at a
  time). Both give each file's top-5 labels; the rows are checked equal before timing.
* **Embeddings**: "loop over embed_audio" against :func:`flexiast.batch.embed_files`,
  clip embeddings and per-time-step frames, checked equal before timing.
* **Waveform graph**: the ONNX graph ``flexiast export --input waveform`` writes (Kaldi
  fbank, normalisation and the model in one graph) in ONNX Runtime, against eager PyTorch
  computing the same (``flexiast.features`` + the model fixed at patch 16), per call at
  batch 1 and 16 of 0.64 s clips; the logits are checked within 1e-3 before timing.

Each contender runs in turn, round after round (:func:`common.interleaved`); clips per
second and milliseconds per call are medians with their minimum and maximum.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from common import interleaved, ms, run_script, spread, summary, table
from flexiast import AST
from flexiast.batch import embed_files, predict_files
from flexiast.embeddings import embed_audio
from flexiast.export import export_onnx
from flexiast.features import FeatureConfig, finish_input, log_mel
from flexiast.inference import load_inference_model

FEATURES = FeatureConfig(num_mel_bins=128, target_length=64, mean=-3.0856, std=5.309)


def model_dir(directory: Path) -> Path:
    torch.manual_seed(0)
    model = AST(10, input_fdim=128, input_tdim=64, embed_dim=128, depth=4, num_heads=4).eval()
    return model.save_pretrained(directory / "model", inference={"features": FEATURES.to_dict(), "multilabel": False})


def files(fsdd: str, count: int) -> list[str]:
    return [str(p) for p in sorted(Path(fsdd, "recordings").glob("*.wav"))[:count]]


def measure(quick: bool, fsdd: str) -> dict:
    count, repeats = (8, 2) if quick else (300, 5)
    paths = files(fsdd, count)
    with tempfile.TemporaryDirectory() as tmp:
        im = load_inference_model(model_dir(Path(tmp)), device="cpu")
        loop_rows = [im.predict(p)["top"] for p in paths]
        batch_rows = [r["top"] for r in predict_files(im, paths, workers=2, batch_size=64)]
        assert [[x["label"] for x in r] for r in loop_rows] == [[x["label"] for x in r] for r in batch_rows]
        loop_clips = torch.stack([embed_audio(im, p, frames=True)["clip"] for p in paths])
        batch_clips = torch.as_tensor(embed_files(im, paths, workers=2, batch_size=64, frames=True)["clip"])
        torch.testing.assert_close(batch_clips, loop_clips, rtol=1e-4, atol=1e-5)
        files_timed = interleaved({
            "loop over predict": lambda: [im.predict(p) for p in paths],
            "predict_files, 2 workers": lambda: predict_files(im, paths, workers=2, batch_size=64),
            "loop over embed_audio": lambda: [embed_audio(im, p, frames=True) for p in paths],
            "embed_files, 2 workers": lambda: embed_files(im, paths, workers=2, batch_size=64, frames=True),
        }, repeats)
        graph = waveform_graph(im, Path(tmp), repeats)
    return {"files": count, "timed": files_timed, "graph": graph}


def waveform_graph(im, directory: Path, repeats: int) -> dict:
    import onnxruntime as ort

    path = export_onnx(im.model, directory / "wave.onnx", input="waveform", inference=im.inference_info())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    fixed = im.at(im.points.stored(im.model.config))  # the stored operating point, fixed
    samples = FEATURES.clip_samples()
    out = {}
    for batch in (1, 16):
        waves = torch.from_numpy(np.random.default_rng(batch).normal(0, 0.1, (batch, samples)).astype(np.float32))

        def eager():
            with torch.inference_mode():
                return fixed(finish_input(log_mel(waves, FEATURES), FEATURES))

        def onnx():
            return session.run(None, {session.get_inputs()[0].name: waves.numpy()})[0]

        diff = float((eager() - torch.from_numpy(onnx())).abs().max())
        assert diff <= 1e-3, f"ONNX Runtime and eager differ by {diff:.2e}"
        out[batch] = {"diff": diff, **interleaved({"eager PyTorch": eager, "ONNX Runtime": onnx}, 10 * repeats, 3)}
    return out


def section(res: dict) -> str:
    n = res["files"]
    timed = res["timed"]
    rows = []
    for plain, batched in (("loop over predict", "predict_files, 2 workers"),
                           ("loop over embed_audio", "embed_files, 2 workers")):
        base = spread(timed[plain])[0]
        for name in (plain, batched):
            med, lo, hi = summary(timed[name], n)
            rows.append([name, f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})", f"{base / spread(timed[name])[0]:.2f}x"])
    graph = []
    for batch, r in res["graph"].items():
        for name in ("eager PyTorch", "ONNX Runtime"):
            med, lo, hi = spread(r[name])
            graph.append([f"batch {batch}", name, f"{ms(med)} ({ms(lo)}-{ms(hi)})",
                          f"{spread(r['eager PyTorch'])[0] / spread(r[name])[0]:.2f}x", f"{r['diff']:.1e}"])
    return "\n".join(
        ["## Batch labelling, embeddings and the waveform graph", "",
         "`python benchmarks/bench_embed.py`. " + " ".join(__doc__.split("\n\n")[1].split()), "",
         f"{n} FSDD files, clips per second (median, min-max), and the speed-up over the plain loop:", ""]
        + table(["contender", "clips/s", "vs loop"], rows)
        + ["", "The waveform graph (fbank inside) against eager PyTorch, ms per call (median, min-max), "
               "speed-up over eager, and max |logit difference|:", ""]
        + table(["input", "path", "ms", "vs eager", "max diff"], graph)) + "\n"


if __name__ == "__main__":
    run_script(__doc__, measure, section, fsdd=True)
