"""Synthesise unlabeled English speech with eSpeak NG, for small self-supervised pretraining.

    python scripts/make_speech.py                          # 3000 clips into ../data/espeak (beside the repo)
    python scripts/make_speech.py --count 200 --out /tmp/speech --seed 1

Each clip is a phrase of 1-3 words (1, 2 or 3 with probability 0.5, 0.3, 0.2) drawn without
repetition from :data:`WORDS`, spoken by ``espeak-ng -w`` with a voice from :data:`VOICES`
plus an optional variant from :data:`VARIANTS` (``en-us+f2``), a speed ``-s`` uniform in
120..220 words per minute and a pitch ``-p`` uniform in 20..80 (integers, ends included).
The clips match the Free Spoken Digit Dataset's format (``shared/data/fsdd``: 8 kHz mono
16-bit PCM WAV, one short utterance each): eSpeak's 22050 Hz output is resampled to
8 kHz with :func:`flexiast.audio.resample` (soxr, high quality), scaled by :data:`GAIN`
(-1 dB, so that no sample clips) and its leading and trailing silence trimmed (:func:`trim`).

The word list holds no number words, so the data carries no digit labels: the ten words
FSDD's classes say (zero..nine) are absent, and so are their homophones (oh, won, to, too,
for, fore, ate) and every other number word (ten, hundred, ...).

Layout under ``--out`` (refused inside this repository; audio never belongs in git)::

    000/00000.wav ... 000/00499.wav, 001/00500.wav, ...   (folders of 500, named by index)
    manifest.csv    path,text,voice,speed,pitch           (path relative to --out)

Determinism: clip ``i``'s text, voice, speed and pitch come from
``numpy.random.default_rng([seed, i])`` alone, so they do not depend on ``--workers`` or on
the order the pool finishes in, and a run with a larger ``--count`` extends a smaller one.
eSpeak NG's synthesis is itself deterministic, so the same seed and eSpeak version give the
same files byte for byte.

Needs the ``espeak-ng`` binary (Debian package ``espeak-ng``, ``apt-get install -y
espeak-ng``); the MBROLA voices (``mb/...``) are not used, since they need the separate
``mbrola`` program. eSpeak NG falls back silently to its default voice for an unknown name
(1.51 speaks ``en-sc`` and ``en-n``, names of the older eSpeak, exactly like ``en-gb``), so
every voice and variant is checked against ``espeak-ng --voices`` before synthesis.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from flexiast.atomic import write_atomic, write_text_atomic  # noqa: E402
from flexiast.audio import resample  # noqa: E402

SAMPLE_RATE = 8000  # FSDD's rate
PER_FOLDER = 500
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "data" / "espeak"  # where recipes/fsdd/ssast_*.yaml look
PHRASE_LENGTHS = (1, 2, 3)
PHRASE_WEIGHTS = (0.5, 0.3, 0.2)
SPEED = (120, 220)  # espeak-ng -s, words per minute, both ends included
PITCH = (20, 80)  # espeak-ng -p, 0..99, both ends included
#: Fixed gain (-1 dB) on every clip: eSpeak's loudest clips peak at full scale and the
#: resampler's ringing overshoots that by up to ~1.5%, which 16-bit PCM would clip.
GAIN = 10 ** (-1 / 20)

#: eSpeak NG 1.51's English voices with their own rules (``gmw/...`` in ``espeak-ng
#: --voices=en``). ``en`` is not listed apart: it is the same voice as ``en-gb``.
VOICES = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
          "en-029", "en-us-nyc")
#: Voice variants (``espeak-ng-data/voices/!v``): "" is the voice unchanged, m1..m8 male and
#: f1..f5 female timbres.
VARIANTS = ("",) + tuple(f"m{k}" for k in range(1, 9)) + tuple(f"f{k}" for k in range(1, 6))

#: Common English words, none of them a number word or a digit's homophone (see above).
WORDS = tuple("""
apple baker basket beach bird blanket blue boat bottle bread bridge brother brown button
candle carpet castle cat chair cheese cherry city cloud coat coffee corner cotton country
cup dance desk doctor dog door dragon dream dress drum early earth engine evening face
farmer feather field finger fish flag flower forest friend garden giant glass gold green
guitar hammer happy harbor hat heavy hello hill horse house island jacket jelly journey
kettle kitchen ladder lamp lemon letter light lion little market meadow mirror monkey
morning mountain music nature needle orange ocean paper pencil pepper picture pillow planet
pocket purple quiet rabbit rain river road rocket salt sand silver simple sister sky small
snow soft spoon spring square station stone storm street sugar summer sun table teacher
thunder tiger tomato town train travel tree turtle umbrella valley village violin wagon
water window winter wolf wonder yellow yesterday
""".split())

#: Number words and digit homophones that must never be in :data:`WORDS`.
EXCLUDED = frozenset("""
zero one two three four five six seven eight nine oh won to too for fore ate ten eleven
twelve twenty hundred thousand million
""".split())
assert not EXCLUDED & set(WORDS) and len(set(WORDS)) == len(WORDS)


@dataclass(frozen=True)
class Clip:
    index: int
    text: str
    voice: str  # espeak-ng -v argument, e.g. "en-us+f2"
    speed: int
    pitch: int

    @property
    def path(self) -> str:
        """Relative path: folders of :data:`PER_FOLDER` clips, both named by index."""
        return f"{self.index // PER_FOLDER:03d}/{self.index:05d}.wav"


def draw(index: int, seed: int) -> Clip:
    """Clip ``index``'s phrase and voice settings, from its own generator ``[seed, index]``."""
    rng = np.random.default_rng([seed, index])
    n = int(rng.choice(PHRASE_LENGTHS, p=PHRASE_WEIGHTS))
    words = [WORDS[k] for k in rng.choice(len(WORDS), size=n, replace=False)]
    voice = VOICES[rng.integers(len(VOICES))]
    variant = VARIANTS[rng.integers(len(VARIANTS))]
    return Clip(index, " ".join(words), f"{voice}+{variant}" if variant else voice,
                int(rng.integers(SPEED[0], SPEED[1] + 1)), int(rng.integers(PITCH[0], PITCH[1] + 1)))


def trim(audio: np.ndarray, rate: int, *, floor_db: float = -40.0, frame_s: float = 0.01,
         pad_s: float = 0.02) -> np.ndarray:
    """Cut leading and trailing silence.

    The signal is cut into frames of ``frame_s``; a frame is active when its RMS is within
    ``floor_db`` of the loudest frame's, i.e. ``rms >= max_rms * 10**(floor_db/20)``. The
    span from the first active frame to the end of the last one is kept, widened by
    ``pad_s`` on each side (within the signal) so that soft onsets and releases survive.
    Silence inside the phrase (pauses between words) is kept.
    """
    frame = max(1, round(frame_s * rate))
    n = math.ceil(len(audio) / frame)
    padded = np.zeros(n * frame, dtype=np.float64)
    padded[:len(audio)] = audio
    rms = np.sqrt((padded.reshape(n, frame) ** 2).mean(axis=1))
    if rms.max() == 0:
        return audio[:0]
    active = np.flatnonzero(rms >= rms.max() * 10 ** (floor_db / 20))
    pad = round(pad_s * rate)
    start = max(0, active[0] * frame - pad)
    stop = min(len(audio), (active[-1] + 1) * frame + pad)
    return audio[start:stop]


def synthesise(clip: Clip, out: Path) -> float:
    """Speak ``clip`` into ``out/clip.path``; returns its duration in seconds."""
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        raw = Path(tmp) / "raw.wav"
        cmd = ["espeak-ng", "-v", clip.voice, "-s", str(clip.speed), "-p", str(clip.pitch),
               "-w", str(raw), clip.text]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not raw.exists():
            raise RuntimeError(f"clip {clip.index}: {' '.join(cmd)} failed "
                               f"(exit {done.returncode}): {done.stderr.strip()}")
        audio, rate = sf.read(raw, dtype="float32", always_2d=True)
    audio = GAIN * resample(np.ascontiguousarray(audio.mean(axis=1)), rate, SAMPLE_RATE)
    audio = trim(audio, SAMPLE_RATE)
    if len(audio) == 0 or np.sqrt(np.mean(audio.astype(np.float64) ** 2)) < 1e-3:
        raise RuntimeError(f"clip {clip.index} ({clip.voice}, {clip.text!r}): silent after trimming")
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    target = out / clip.path
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, lambda f: f.write(buf.getvalue()), fsync=False)
    return len(pcm) / SAMPLE_RATE


def _work(job: tuple[Clip, Path]) -> tuple[int, float]:
    clip, out = job
    return clip.index, synthesise(clip, out)


def check_espeak() -> None:
    """Fail, naming the apt package, without the binary; fail on any voice or variant it lacks."""
    if shutil.which("espeak-ng") is None:
        sys.exit("make_speech: espeak-ng not found on PATH; install Debian's package: "
                 "apt-get install -y espeak-ng")

    def listed(spec: str) -> tuple[set[str], set[str]]:
        rows = subprocess.run(["espeak-ng", f"--voices={spec}"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[1:]
        cols = [r.split() for r in rows if len(r.split()) >= 5]
        return {c[1] for c in cols}, {c[4] for c in cols}

    languages, _ = listed("en")
    _, variant_files = listed("variant")
    missing = [v for v in VOICES if v not in languages]
    missing += [f"+{v}" for v in VARIANTS if v and f"!v/{v}" not in variant_files]
    if missing:
        sys.exit(f"make_speech: espeak-ng lacks voices {missing} (see espeak-ng --voices=en and "
                 "--voices=variant); eSpeak NG would silently speak its default voice instead")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"output folder, outside the repository (default {DEFAULT_OUT})")
    ap.add_argument("--count", type=int, default=3000, help="number of clips (default 3000)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every clip's settings (default 0)")
    ap.add_argument("--workers", type=int, default=2,
                    help="synthesis processes (default 2; the shared machine has 2 cores)")
    ap.add_argument("--overwrite", action="store_true",
                    help="write into a non-empty --out (same-named files are replaced, others kept)")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    if out == ROOT or ROOT in out.parents:
        ap.error(f"--out {out} is inside the repository {ROOT}; write audio elsewhere")
    if args.count < 1 or args.workers < 1:
        ap.error("--count and --workers must be at least 1")
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        ap.error(f"--out {out} is not empty; pass --overwrite to write into it")
    check_espeak()
    out.mkdir(parents=True, exist_ok=True)

    clips = [draw(i, args.seed) for i in range(args.count)]
    durations = [0.0] * args.count
    start = time.perf_counter()
    with Pool(min(args.workers, args.count)) as pool:
        for done, (index, seconds) in enumerate(
                pool.imap_unordered(_work, [(c, out) for c in clips], chunksize=8), start=1):
            durations[index] = seconds
            if done % 500 == 0 or done == args.count:
                print(f"{done}/{args.count} clips, {time.perf_counter() - start:.1f} s", flush=True)
    elapsed = time.perf_counter() - start

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "text", "voice", "speed", "pitch"])
    writer.writerows([c.path, c.text, c.voice, c.speed, c.pitch] for c in clips)
    write_text_atomic(out / "manifest.csv", text.getvalue())

    q = statistics.quantiles(durations, n=20)
    print(f"wrote {args.count} clips to {out} in {elapsed:.1f} s with {args.workers} workers; "
          f"audio {sum(durations) / 60:.1f} min, clip seconds min {min(durations):.2f} "
          f"p5 {q[0]:.2f} median {statistics.median(durations):.2f} p95 {q[-1]:.2f} "
          f"max {max(durations):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
