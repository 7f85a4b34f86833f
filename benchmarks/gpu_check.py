"""The GPU path in one short script: ``python benchmarks/gpu_check.py --out DIR``.

Run it when a GPU is lent (a few minutes on one GPU); it writes ``DIR/gpu.md`` for the
GPU section of docs/PERFORMANCE.md and exits non-zero if a check fails. In order:

1. the device and what ``precision: auto`` resolves to on it (bf16 where the GPU computes
   bf16 natively, else fp16 with a scaler);
2. a training run through the recipe path on FSDD (``recipes/fsdd/digits_ast16.yaml``,
   two epochs, ``precision: auto``, ``train.device: cuda``): its summary must record the
   resolved precision, and the loss must fall;
3. fused attention: ``scaled_dot_product_attention`` against the explicit product, values
   compared, and which kernels the backends allow;
4. the training step against Hugging Face's ``ASTForAudioClassification`` (same weights,
   batch, optimizer; its faster attention), eager and compiled flexiast, in the auto
   precision, AST-base at 1024 frames;
5. DDP over NCCL through torchrun, where two or more GPUs are visible (one GPU cannot
   hold two NCCL ranks): two ranks train the same recipe for one epoch;
6. packed clips (ElasticAST, ``flexiast.models.packing``): a packed forward of clips of mixed
   lengths and patch sizes against each clip alone on the GPU (SDPA with the block-diagonal
   mask), then a packed training step against the same clips padded to their longest.

``--device cpu --quick`` runs the same code on the CPU with tiny shapes, to check the
script itself where no GPU is.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common import ratio_spread, spread, table, train_step  # noqa: E402
from flexiast import AST  # noqa: E402
from flexiast.hardware import describe_capability, device_capability, resolve_precision  # noqa: E402
from peers import hf_logits, hf_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_rounds(fns: dict, device: torch.device, repeats: int) -> dict[str, list[float]]:
    for fn in fns.values():
        fn()
    out = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            out[k].append(time.perf_counter() - start)
    return out


def check_training(device: torch.device, fsdd: Path, quick: bool, out: Path) -> dict:
    from flexiast.config import load_config
    from flexiast.engine import train

    overrides = [f"data.root={fsdd}", f"out={out / 'run'}", "phases.0.epochs=2", f"train.device={device.type}",
                 "train.precision=auto", "train.progress=false", "train.tensorboard=false"]
    if quick:
        overrides += ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "features.target_length=32"]
    cfg = load_config(ROOT / "recipes" / "fsdd" / "digits_ast16.yaml", overrides)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        summary = train(cfg)
    history = json.loads((out / "run" / "history.json").read_text())
    return {"seconds": time.perf_counter() - start, "precision": summary["precision"],
            "loss": [h["train_loss"] for h in history], "val": summary["best_val"],
            "ok": summary["precision"]["requested"] == "auto" and history[-1]["train_loss"] < history[0]["train_loss"]}


def check_attention(device: torch.device, precision) -> dict:
    q, k, v = (torch.randn(8, 12, 514, 64, device=device) for _ in range(3))
    with precision.autocast():
        fused = F.scaled_dot_product_attention(q, k, v)
        explicit = torch.softmax((q @ k.transpose(-1, -2)).float() / 8.0, -1).to(v.dtype) @ v
    diff = float((fused.float() - explicit.float()).abs().max())
    backends = {}
    if device.type == "cuda":
        backends = {"flash": torch.backends.cuda.flash_sdp_enabled(),
                    "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
                    "math": torch.backends.cuda.math_sdp_enabled()}
    return {"max_diff": diff, "backends": backends, "ok": diff < 5e-2}


def check_step(device: torch.device, precision, quick: bool) -> dict:
    frames, batch = (64, 2) if quick else (1024, 8)
    dims = dict(embed_dim=64, depth=2, num_heads=2) if quick else {}
    torch.manual_seed(0)
    model = AST(num_classes=527, input_tdim=frames, **dims)
    spec = torch.randn(batch, frames, 128, device=device)
    target = torch.randint(0, 527, (batch,), device=device)
    fns = {}
    for attn in ("sdpa", "eager"):
        hf = hf_model(model, attn).to(device)
        fns[f"HF {attn}"] = train_step(hf, lambda x, hf=hf: hf_logits(hf, x), spec, target, precision.name)
    model = model.to(device)
    fns["flexiast"] = train_step(model, model, spec, target, precision.name)
    twin = AST(num_classes=527, input_tdim=frames, **dims).to(device)
    twin.load_state_dict(model.state_dict())
    compiled = torch.compile(twin, dynamic=False)
    fns["flexiast compiled"] = train_step(twin, compiled, spec, target, precision.name)
    start = time.perf_counter()
    fns["flexiast compiled"]()
    sync(device)
    compile_s = time.perf_counter() - start
    times = timed_rounds(fns, device, 2 if quick else 10)
    peer = min(("HF sdpa", "HF eager"), key=lambda k: spread(times[k])[0])
    return {"frames": frames, "batch": batch, "times": times, "peer": peer, "compile_s": compile_s}


def check_packed(device: torch.device, precision, quick: bool) -> dict:
    from flexiast.models.packing import Clips

    g = torch.Generator().manual_seed(0)
    lengths = [int(x) for x in torch.randint(15, 230, (8 if quick else 64,), generator=g)]  # FSDD's spread
    dims = dict(embed_dim=64, depth=2, num_heads=2) if quick else dict(embed_dim=128, depth=4, num_heads=4)
    torch.manual_seed(0)
    model = AST(num_classes=10, input_tdim=64, partial_patches="pad", **dims).to(device).eval()
    specs = [torch.randn(n, 128, generator=g).to(device) for n in lengths]
    patches = [(16, 16) if i % 2 else (8, 8) for i in range(len(specs))]
    with torch.no_grad(), precision.autocast():
        packed = model(Clips(specs, patches, row_tokens=512)).float()
        alone = torch.cat([model(s[None], patch_size=p) for s, p in zip(specs, patches)]).float()
    diff = float((packed - alone).abs().max())
    model.train()
    target = torch.randint(0, 10, (len(specs),), device=device)
    clips = Clips(specs, row_tokens=512)
    padded, _ = clips.padded()
    fns = {"packed": train_step(model, lambda x: model(clips), padded, target, precision.name),
           "padded": train_step(model, model, padded, target, precision.name)}
    times = timed_rounds(fns, device, 2 if quick else 10)
    real = sum(lengths) / (len(lengths) * max(lengths))
    return {"max_diff": diff, "times": times, "real_fraction": real, "ok": diff < (1e-4 if precision.name == "fp32"
                                                                                   else 5e-2)}


def check_ddp(device: torch.device, fsdd: Path, out: Path) -> dict:
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        return {"ok": True, "skipped": f"{torch.cuda.device_count() if device.type == 'cuda' else 0} GPU(s): "
                                       "NCCL needs one GPU per rank"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "flexiast", "train",
           str(ROOT / "recipes" / "fsdd" / "digits_ast16.yaml"), f"data.root={fsdd}", f"out={out / 'ddp'}",
           "phases.0.epochs=1", "train.device=cuda", "train.progress=false", "train.tensorboard=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    summary = json.loads((out / "ddp" / "summary.json").read_text()) if proc.returncode == 0 else {}
    return {"ok": proc.returncode == 0 and summary.get("world_size") == 2, "returncode": proc.returncode,
            "tail": proc.stdout[-2000:] + proc.stderr[-2000:], "world_size": summary.get("world_size")}


def report(device, precision, results: dict) -> str:
    cap = describe_capability(device_capability(device))
    lines = ["<!-- machine kind: cuda -->", "## GPU", f"Machine: {cap}, torch {torch.__version__}.", "",
             f"`python benchmarks/gpu_check.py`, {time.strftime('%Y-%m-%d')}. `precision: auto` here: {precision}.", ""]
    t = results["training"]
    lines += [f"- Training (FSDD digits, AST-16 recipe, 2 epochs): {t['seconds']:.0f} s, precision "
              f"{t['precision']['name']}, losses {', '.join(f'{x:.3f}' for x in t['loss'])}, best validation "
              f"{t['val']:.3f}: {'ok' if t['ok'] else 'FAILED'}."]
    a = results["attention"]
    lines += [f"- Fused attention against the explicit product: max |difference| {a['max_diff']:.2e}; "
              f"backends allowed {a['backends']}: {'ok' if a['ok'] else 'FAILED'}."]
    p = results["packed"]
    med, lo, hi = ratio_spread(p["times"]["padded"], p["times"]["packed"])
    lines += [f"- Packed clips against each clip alone: max |difference| {p['max_diff']:.2e}: "
              f"{'ok' if p['ok'] else 'FAILED'}. Packed training step against padded to the longest "
              f"({p['real_fraction']:.0%} of the padded frames are real): {med:.2f}x ({lo:.2f}-{hi:.2f})."]
    d = results["ddp"]
    lines += [f"- DDP over NCCL, 2 ranks: " + (d["skipped"] if "skipped" in d else
                                               ("ok" if d["ok"] else f"FAILED (exit {d['returncode']})")) + "."]
    s = results["step"]
    rows = []
    for k, v in s["times"].items():
        med, lo, hi = spread(v)
        rows.append([k, f"{med * 1e3:.1f}", f"{lo * 1e3:.1f}-{hi * 1e3:.1f}", f"{s['batch'] / med:,.1f}"])
    lines += ["", f"Training step, AST at {s['frames']} frames, batch {s['batch']}, {precision.name} "
              f"(compile {s['compile_s']:.0f} s):", ""]
    lines += table(["implementation", "ms/step", "min-max", "clips/s"], rows)
    for k in ("flexiast", "flexiast compiled"):
        med, lo, hi = ratio_spread(s["times"][s["peer"]], s["times"][k])
        lines.append(f"\n{k} against {s['peer']}: {med:.2f}x ({lo:.2f}-{hi:.2f}).")
    return "\n".join(lines + ["<!-- end of machine kind -->"]) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".", help="folder for gpu.md and the runs")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fsdd", default=str(ROOT.parent / "shared" / "data" / "fsdd"))
    parser.add_argument("--quick", action="store_true", help="tiny shapes: checks the script")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    precision = resolve_precision("auto", device)
    print(f"{describe_capability(device_capability(device))}: auto -> {precision}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {"training": check_training(device, Path(args.fsdd), args.quick, tmp),
                   "attention": check_attention(device, precision),
                   "step": check_step(device, precision, args.quick),
                   "packed": check_packed(device, precision, args.quick),
                   "ddp": check_ddp(device, Path(args.fsdd), tmp)}
    text = report(device, precision, results)
    (out / "gpu.md").write_text(text)
    (out / "gpu.json").write_text(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "times"}
                                              for k, v in results.items()}, indent=1, default=str))
    print(text)
    failed = [k for k in ("training", "attention", "packed", "ddp") if not results[k]["ok"]]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
