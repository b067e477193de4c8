"""Loaders: one module per format, each ``load(path, options) -> LoadedModel``.

The format is detected from the file's content (the structural checks of :mod:`.formats`),
never from its extension (checkpoint-formats.md). Loader modules are imported lazily so ``initaudit --version`` stays fast.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..activations import ActivationHint
from ..model import (  # noqa: F401 (LoadError re-exported)
    LoadedModel,
    LoadError,
    UnsafeLoadError,
    UnsupportedFormat,
)
from .formats import BY_NAME, FORMATS, MODEL_EXTENSIONS, FormatSpec  # noqa: F401 (re-exported)

# format name -> module (inside initaudit.loaders) that reads it: from the FormatSpec table
_LOADERS: dict[str, str] = {name: spec.loader for name, spec in BY_NAME.items()}

MAX_FILE_BYTES_PROBE = 64


@dataclass(frozen=True)
class LoadOptions:
    hints: tuple[ActivationHint, ...] = ()
    # refuse single allocations above this many bytes (resource bombs)
    max_tensor_bytes: int = 64 * 2**30
    extra: dict[str, Any] = field(default_factory=dict)


def detect_format(path: str | os.PathLike[str], *, strict: bool = False) -> str:
    """Name the format of ``path`` from its content (:mod:`.formats`); raise UnsupportedFormat
    (or LoadError for a missing or non-regular file, which is never opened) otherwise.
    ``strict``: only a full structural match counts (discovery), no near-miss fallback."""
    from .formats import detect, probe

    p = Path(path)
    if p.is_dir():
        if (p / ".metadata").is_file() and any(p.glob("*.distcp")):  # torch.distributed.checkpoint
            return "torch-distcp"
        if (p / "model.safetensors.index.json").is_file() or any(p.glob("*.safetensors")):
            return "safetensors-sharded"
        from . import orbax_loader
        from .tensorflow import checkpoint as tf_checkpoint
        from .tensorflow import savedmodel as tf_savedmodel

        if orbax_loader.detect(p, b""):
            return "orbax"
        if tf_savedmodel.detect(p, b""):
            return "tf-savedmodel"
        if tf_checkpoint.detect(p, b""):
            return "tf-checkpoint"
        from . import keras_loader, keras_sharded

        if keras_sharded.detect(p, b""):
            return "keras-sharded"
        if keras_loader.is_keras_dir(p):
            return "keras-dir"
        raise UnsupportedFormat(
            "is a directory without safetensors weights (give a checkpoint file)"
        )
    if p.name.endswith(".distcp") and (p.parent / ".metadata").is_file():
        return "torch-distcp"  # one rank's file of a distributed checkpoint: read the folder
    return detect(probe(p), strict=strict).name


# directory formats that are ONE model (discovery must not audit their files one by one)
DIRECTORY_FORMATS = frozenset(
    {"orbax", "tf-savedmodel", "tf-checkpoint", "torch-distcp", "keras-sharded", "keras-dir"}
)


def is_model_directory(path: str | os.PathLike[str]) -> bool:
    """A folder that is one checkpoint in a directory format (SavedModel, orbax step, TF
    checkpoint folder); sharded safetensors folders are recognised by discovery itself."""
    p = Path(path)
    if not p.is_dir():
        return False
    try:
        return detect_format(p) in DIRECTORY_FORMATS
    except (LoadError, OSError):
        return False


def load(path: str | os.PathLike[str], options: LoadOptions | None = None) -> LoadedModel:
    """Read ``path`` into the neutral model. Raises LoadError with a one-line reason."""
    options = options or LoadOptions()
    try:
        fmt = detect_format(path)
    except UnsupportedFormat as exc:
        # a lone .npy is not a checkpoint format, but np.load(allow_pickle=True) unpickles an
        # object array's payload, and pickle.load imports a broken pickle's globals before it
        # fails: what they would run is reported with the refusal
        from ._scan import scan_unrecognised

        unsafe = scan_unrecognised(Path(path)) if Path(path).is_file() else []
        if unsafe:
            raise UnsafeLoadError(str(exc), unsafe) from None
        raise
    module = importlib.import_module(f"{__name__}.{_LOADERS[fmt]}")
    model: LoadedModel = module.load(Path(path), fmt, options)
    from ..activations import apply_hints

    apply_hints(model, list(options.hints))
    return model
