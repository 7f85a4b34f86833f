"""Weight files, read without running their code and written so that damage is noticed.

Family-agnostic I/O under every model family (:mod:`flexiast.models`): which layout a
state dict has, and what it means, is the family's business; here a file becomes a state
dict and, where we wrote it, the configuration that says which family it belongs to.

Every file is read with safetensors, ``torch.load(weights_only=True)`` or, for the ``.npz``
archives of Google's JAX ViTs, ``np.load(allow_pickle=False)``: a pickle that would
construct arbitrary objects is refused before anything in it runs. A damaged file
is refused too: torch zip files are checked against their records' CRC-32s
(:func:`verify_zip`), our safetensors against the CRC-32 in their metadata.
"""

from __future__ import annotations

import json
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .atomic import write_atomic, write_text_atomic

__all__ = ["CheckpointError", "load_state_dict", "save_safetensors", "save_pretrained", "save_directory",
           "strip_module", "torch_load_safe", "verify_zip", "tensor_crc32", "FORMAT_VERSION"]

#: Version of our ``config.json`` layout.
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose layout is not recognised."""


# -- reading ------------------------------------------------------------------------
def verify_zip(path: Path) -> None:
    """Check every record of a zip-format ``torch.save`` file against its stored CRC-32.

    ``torch.load`` does not: a flipped byte in tensor data loads as a wrong weight, and
    only a cut through the zip directory is noticed. This reads the file once more,
    through zlib's CRC. Records whose CRC field is 0 (written with
    ``torch.serialization.set_crc32_options(False)``) carry no checksum and are not checked.
    """
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.CRC == 0 and info.file_size:
                    continue
                with z.open(info) as f:
                    while f.read(1 << 24):
                        pass
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path}: damaged: {e} (the file was corrupted or cut short after it was written)") from None
    except Exception as e:  # noqa: BLE001 (a damaged directory fails in many ways)
        raise CheckpointError(f"{path}: damaged: unreadable zip directory ({type(e).__name__}: {e})") from None


def torch_load_safe(path: Path):
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code.

    A zip-format file (everything ``torch.save`` wrote since torch 1.6) is first checked
    against its CRC-32s (:func:`verify_zip`), so a corrupted file is refused, not loaded.
    """
    if zipfile.is_zipfile(path):
        verify_zip(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than tensors "
            f"and plain containers, which could run code when unpickled (loaded with "
            f"weights_only=True). Convert it where you trust it, e.g. to safetensors. ({e})"
        ) from None
    except Exception as e:  # zip errors, truncated files, not a checkpoint at all
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None


#: Metadata key of the CRC-32 of a safetensors file's tensors, which we write and check.
CRC_KEY = "flexiast_crc32"


def tensor_crc32(sd: dict) -> str:
    """CRC-32 of the tensors' bytes in key order (zlib's, as a zip record's).

    Safetensors checks that its header and offsets are consistent, not the data: a flipped
    byte would load as a wrong weight. Our files carry this in their metadata."""
    crc = 0
    for k in sorted(sd):
        crc = zlib.crc32(sd[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy(), crc)
    return f"{crc:08x}"


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        sd = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    if CRC_KEY in meta and tensor_crc32(sd) != meta[CRC_KEY]:
        raise CheckpointError(f"{path}: damaged: the tensors' CRC-32 does not match the one stored when it was "
                              "written (the file was corrupted after it was written)")
    return sd, meta


def _read_npz(path: Path) -> dict:
    """The arrays of a NumPy ``.npz`` archive as tensors, keyed by their names (a JAX ViT's
    ``Transformer/encoderblock_0/...``). ``allow_pickle=False``: an object array is refused."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except ValueError as e:  # object arrays need pickle
        raise CheckpointError(f"{path}: refused to load: {e} (an .npz of weights holds numeric arrays only)") from None
    except Exception as e:  # not a zip, truncated, damaged member
        raise CheckpointError(f"{path}: not a readable .npz archive ({type(e).__name__}: {e})") from None
    bad = sorted(k for k, a in arrays.items() if a.dtype.kind not in "fiub")
    if bad:
        raise CheckpointError(f"{path}: array {bad[0]!r} of dtype {arrays[bad[0]].dtype} is not numeric")
    return {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in arrays.items()}


def _json(text: str, where) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: expected a JSON object")
    return value


def load_state_dict(path: str | Path) -> tuple[dict, dict | None, dict | None]:
    """``(state_dict, flexiast_config or None, foreign_config or None)`` from a file or directory.

    ``flexiast_config`` is the model configuration our files carry (its ``arch`` names the
    family); ``foreign_config`` is the ``config.json`` of a directory written by another
    library (Hugging Face's), left for the family that reads that layout to interpret.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        config_path = path / "config.json"
        config = _json(config_path.read_text(), config_path) if config_path.exists() else None
        for name in ("model.safetensors", "pytorch_model.bin", "model.pt"):
            if (path / name).exists():
                sd, flexi_cfg, hf_cfg = load_state_dict(path / name)
                break
        else:
            raise CheckpointError(f"{path}: directory holds no model.safetensors or pytorch_model.bin")
        if config is None:
            return sd, flexi_cfg, hf_cfg
        if config.get("format") == "flexiast" and isinstance(config.get("model_config"), dict):
            return sd, config["model_config"], None
        return sd, None, config  # another library's configuration: the family that reads it decides
    if path.suffix == ".npz":
        return _read_npz(path), None, None
    if path.suffix == ".safetensors":
        sd, meta = _read_safetensors(path)
        cfg = _json(meta["flexiast_config"], f"{path} metadata") if "flexiast_config" in meta else None
        return sd, cfg, None
    obj = torch_load_safe(path)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj["model"], obj.get("model_config"), None
    for key in ("state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key], None, None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors, found {type(obj).__name__}")
    return obj, None, None


# -- writing ------------------------------------------------------------------------
def _contiguous(sd: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def save_safetensors(model, path: str | Path, inference: dict | None = None) -> Path:
    """One ``.safetensors`` file with the configuration (its ``arch`` names the family, so
    loading never guesses), ``inference`` and the tensors' CRC-32 (:func:`tensor_crc32`) in
    its metadata, written atomically (:func:`flexiast.atomic.write_atomic`).

    ``inference`` is ``{"features": FeatureConfig.to_dict(), "multilabel": bool}``: what
    :func:`flexiast.inference.load_inference_model` needs besides the weights.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "flexiast", "flexiast_config": json.dumps(model.config.to_dict())}
    if inference is not None:
        metadata["flexiast_inference"] = json.dumps(inference)
    _write_safetensors(model.state_dict(), path, metadata)
    return path


def save_pretrained(model, directory: str | Path, format: str = "flexiast", inference: dict | None = None) -> Path:
    """``model.save_pretrained(directory, format, inference)`` (:meth:`flexiast.models.FlexModel.save_pretrained`):
    ``config.json`` + ``model.safetensors`` in flexiast's layout, or a family's foreign one."""
    return model.save_pretrained(directory, format=format, inference=inference)


def _write_safetensors(sd: dict, path: Path, metadata: dict) -> None:
    """``sd`` as safetensors with ``metadata`` and the tensors' CRC-32, written atomically."""
    sd = _contiguous(sd)
    data = safetensors_bytes(sd, metadata={**metadata, CRC_KEY: tensor_crc32(sd)})
    write_atomic(path, lambda f: f.write(data), failpoint="checkpoint-write")


def strip_module(sd: dict) -> dict:
    """A state dict without DataParallel's ``module.`` prefix (on every key, or none)."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def save_directory(directory: str | Path, sd: dict, config: dict, metadata: dict) -> Path:
    """``directory/model.safetensors`` (``sd``, with ``metadata`` and the CRC-32) and
    ``directory/config.json`` (``config``), each written atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_safetensors(sd, directory / "model.safetensors", metadata)
    write_text_atomic(directory / "config.json", json.dumps(config, indent=2) + "\n")
    return directory
