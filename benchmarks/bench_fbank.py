"""Feature extraction: ``flexiast.fbank`` against kaldi-native-fbank and Hugging Face's extractor.

A batch of 10 s clips of noise at 16 kHz (features do not depend on content). Against
kaldi-native-fbank (C++, one clip per call, one thread): Kaldi's defaults with 80 bins
(Povey window, no dither), the same options for ``flexiast.fbank``. Against Hugging
Face's ``ASTFeatureExtractor`` (NumPy, the path it takes without torchaudio): AST's 128
bins and Hanning window, its fbank step (``_extract_fbank_features``) without padding or
normalisation. ``flexiast.fbank`` takes the whole batch in one call. Both peers run on
one thread, so the like-for-like ratio is flexiast on one thread; flexiast on every
thread is reported beside it.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch

from common import interleaved, machine, ratio_spread, spread, table
from flexiast import fbank
from flexiast.fbank import num_frames


def knf_fbank(wave: np.ndarray) -> np.ndarray:
    import kaldi_native_fbank as knf

    o = knf.FbankOptions()
    o.frame_opts.dither = 0.0
    o.frame_opts.samp_freq = 16000
    o.mel_opts.num_bins = 80
    computer = knf.OnlineFbank(o)
    computer.accept_waveform(16000, wave)
    computer.input_finished()
    return np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)])


def hf_extractor():
    from transformers import ASTFeatureExtractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ASTFeatureExtractor(num_mel_bins=128, do_normalize=False)


def with_threads(n: int, fn):
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            fn()
        finally:
            torch.set_num_threads(before)
    return run


def measure(clips: int, seconds: float, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    waves = (0.1 * rng.standard_normal((clips, int(16000 * seconds)))).astype(np.float32)
    batch = torch.from_numpy(waves)
    threads = torch.get_num_threads()
    frames = num_frames(waves.shape[1])
    extractor = hf_extractor()
    out = []
    # Same numbers first: the comparison is between two implementations of one function.
    np.testing.assert_allclose(fbank(batch[:1], num_mel_bins=80, window="povey")[0].numpy(), knf_fbank(waves[0]),
                               atol=2e-3, rtol=0)
    np.testing.assert_allclose(fbank(batch[:1])[0].numpy(),
                               extractor._extract_fbank_features(waves[0], max_length=frames), atol=2e-3, rtol=0)
    peers = {"kaldi-native-fbank, 80 bins": (lambda: [knf_fbank(w) for w in waves],
                                             dict(num_mel_bins=80, window="povey")),
             "HF ASTFeatureExtractor, 128 bins": (lambda: [extractor._extract_fbank_features(w, max_length=frames)
                                                           for w in waves], dict())}
    for name, (peer, opts) in peers.items():
        fns = {"peer": peer,
               "flexiast, 1 thread": with_threads(1, lambda opts=opts: fbank(batch, **opts)),
               f"flexiast, {threads} threads": with_threads(threads, lambda opts=opts: fbank(batch, **opts))}
        times = interleaved(fns, repeats=repeats, warmup=1)
        out.append(dict(name=name, times=times, clips=clips))
    return out


def section(results: list[dict], clips: int, seconds: float) -> str:
    lines = ["## Feature extraction", "", "`python benchmarks/bench_fbank.py`. " +
             __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() +
             f" Batch: {clips} clips of {seconds:g} s.", ""]
    rows = []
    for r in results:
        t = r["times"]
        for k, v in t.items():
            med, lo, hi = spread(v)
            label = r["name"] if k == "peer" else k
            ratio = "1x" if k == "peer" else "{:.1f}x ({:.1f}-{:.1f})".format(*ratio_spread(t["peer"], v))
            rows.append([r["name"], label, f"{r['clips'] / med:,.1f}", f"{r['clips'] / hi:,.1f}-{r['clips'] / lo:,.1f}",
                         ratio])
    lines += table(["comparison", "implementation", "clips/s (median)", "min-max", "speed-up over the peer"], rows)
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args, _ = parser.parse_known_args(argv)
    clips, seconds, repeats = (2, 1.0, 2) if args.quick else (32, 10.0, 7)
    return section(measure(clips, seconds, repeats), clips, seconds)


if __name__ == "__main__":
    print(f"Machine: {machine()}\n")
    print(main())
