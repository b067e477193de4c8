"""Loaders: one module per format, each ``load(path, options) -> LoadedModel``.

The format is detected from the file's content (magic bytes), never from its extension
(checkpoint-formats.md). Loader modules are imported lazily so ``initaudit --version`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..activations import ActivationHint
from ..model import LoadedModel, LoadError, UnsupportedFormat

# format name -> module (inside initaudit.loaders) that reads it
_LOADERS: dict[str, str] = {
    "onnx": "onnx_loader",
    "pytorch-zip": "torch_loader",
    "torchscript": "torch_loader",
    "pt2": "torch_loader",
    "pytorch-legacy": "torch_loader",
    "safetensors": "safetensors_loader",
    "safetensors-sharded": "safetensors_loader",
    "keras": "keras_loader",
    "keras-h5": "keras_loader",
    "npz": "npz_loader",
}

MAX_FILE_BYTES_PROBE = 64


@dataclass(frozen=True)
class LoadOptions:
    hints: tuple[ActivationHint, ...] = ()
    # refuse single allocations above this many bytes (resource bombs)
    max_tensor_bytes: int = 64 * 2**30
    extra: dict = field(default_factory=dict)


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name the format of ``path`` from its content; raise UnsupportedFormat otherwise."""
    p = Path(path)
    if p.is_dir():
        if (p / "model.safetensors.index.json").is_file() or any(p.glob("*.safetensors")):
            return "safetensors-sharded"
        raise UnsupportedFormat("is a directory without safetensors weights (give a checkpoint file)")
    if not p.exists():
        raise LoadError("no such file")
    if not p.is_file():
        raise LoadError("not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise UnsupportedFormat("is empty (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(MAX_FILE_BYTES_PROBE)
    if head.startswith(b"version https://git-lfs"):
        raise UnsupportedFormat("is a Git LFS pointer file, not the model: run `git lfs pull` first")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(p)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras-h5"
    if head[:1] == b"\x80":
        return "pytorch-legacy"
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if _looks_like_old_pickle(p, head):
        return "pytorch-legacy"
    if _looks_like_onnx(p, head):
        return "onnx"
    raise UnsupportedFormat(_describe_unknown(head))


def _looks_like_old_pickle(p: Path, head: bytes) -> bool:
    # protocol 0/1 pickles have no \x80 header: torch.save(..., pickle_protocol=0/1) and plain
    # pickle files; torch.load executes them all the same, so they must reach the scanner
    from ._scan import looks_like_pickle

    if not head or head[:1] not in b"(cl]}).NIKJMGFSVXUTLBCdeg":
        return False
    with open(p, "rb") as fh:
        return looks_like_pickle(fh.read(4096))


def _zip_kind(p: Path) -> str:
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise LoadError(f"looks like a zip archive but is corrupt ({exc})") from None
    except (ValueError, EOFError, NotImplementedError) as exc:  # undecodable names, zip version
        raise LoadError(f"looks like a zip archive but its central directory is unreadable "
                        f"({str(exc)[:80] or type(exc).__name__})") from None
    base = {n.split("/", 1)[-1] for n in names}
    if "config.json" in names and any(n.startswith("model.weights") for n in names):
        return "keras"
    if any(n.endswith(".npy") for n in names) and not any(n.endswith("data.pkl") for n in names):
        return "npz"
    if any(n.startswith("models/") and n.endswith(".json") for n in base) or "archive_format" in base:
        return "pt2"
    if any(n.endswith("/code/__torch__") or "/code/__torch__/" in n for n in names) or "constants.pkl" in base:
        return "torchscript"
    if "data.pkl" in base:
        return "pytorch-zip"
    if any(n.casefold().endswith((".pkl", ".pickle")) for n in names) or _holds_pickle(p):
        # torch's reader finds ARCHIVE/DATA.PKL case-insensitively; any other pickle member is
        # scanned (and the archive then reported unreadable) by the torch loader (issue 11)
        return "pytorch-zip"
    raise UnsupportedFormat("is a zip archive that is neither a torch, Keras, .pt2 nor .npz checkpoint")


def _holds_pickle(p: Path) -> bool:
    """Does a member of an otherwise unknown zip start like a pickle? (first 64 members)"""
    from ._scan import looks_like_pickle

    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist()[:64]:
                if info.flag_bits & 0x1 or info.file_size == 0:
                    continue
                with zf.open(info) as fh:
                    if looks_like_pickle(fh.read(4096)):
                        return True
    except Exception:  # noqa: BLE001 - unreadable members: not a pickle we can see
        return False
    return False


def _looks_like_onnx(p: Path, head: bytes) -> bool:
    # An ONNX ModelProto starts with a protobuf field key; ir_version (1, varint) comes first in
    # every exporter we know. The real check is the parse itself, in the ONNX loader.
    return len(head) > 2 and head[0] in (0x08, 0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42)


def _describe_unknown(head: bytes) -> str:
    text = head.lstrip()
    if text.startswith((b"{", b"[")):
        return "is a JSON file, not a checkpoint"
    if text[:5].lower() in (b"<!doc", b"<html"):
        return "is an HTML page, not a checkpoint (a failed download?)"
    if head.startswith(b"\x93NUMPY"):
        return "is a single .npy array (use .npz for named arrays)"
    if head.startswith(b"\x1f\x8b"):
        return "is gzip-compressed: decompress it first"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "is a text file, not a checkpoint"
    return "is not a recognised checkpoint format (ONNX, PyTorch, safetensors, Keras, .npz)"


def load(path: str | os.PathLike[str], options: LoadOptions | None = None) -> LoadedModel:
    """Read ``path`` into the neutral model. Raises LoadError with a one-line reason."""
    options = options or LoadOptions()
    fmt = detect_format(path)
    module = importlib.import_module(f"{__name__}.{_LOADERS[fmt]}")
    model = module.load(Path(path), fmt, options)
    from ..activations import apply_hints

    apply_hints(model, list(options.hints))
    return model
