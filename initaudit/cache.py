"""Results cache for incremental fleets: a re-run audits only what changed (``--cache DIR``).

Key = sha256 of (initaudit version, the audit configuration, the file's content key):

* remote input: the object store's identity of the object (ETag + size; for a folder of shards
  the ETags of its files), no byte of the file fetched (:func:`initaudit.remote.fingerprint`);
* local safetensors: size + modification time + the header (names, dtypes, shapes, offsets);
* any other local file: size + modification time (and, for a folder, of each file in it).

A touched file is re-audited (safe direction); an unchanged one is answered from the cache. The
value is the engine's FileReport, written as tagged JSON and read back into the report classes
by a whitelist (never pickle: a cache folder someone else can write must not run code), then
the per-tensor ignores are applied as usual. Writes are atomic (temp file + rename), so workers
on many machines can share one folder (an NFS mount or a synced bucket prefix).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .engine import AuditConfig
    from .report import FileReport

# 2: state, signal and skipped entries are typed records (StateResult, SignalReport,
# SkippedTensor), no longer dicts; entries written by version 1 are simply not found
FORMAT_VERSION = 2


def _classes() -> dict[str, type]:
    from . import model, report
    from .analysis import results
    from .engine import TensorIgnore

    return {
        c.__name__: c
        for c in (
            report.FileReport,
            report.TensorReport,
            report.TensorStats,
            report.SchemeResult,
            report.Candidate,
            report.Finding,
            report.Coverage,
            report.Suppression,
            results.StateResult,
            results.SignalReport,
            results.LayerSignal,
            model.SkippedTensor,
            TensorIgnore,
        )
    }


def _enums() -> dict[str, type[enum.Enum]]:
    from .analysis.results import State
    from .model import SkipReason
    from .report import Severity, Status

    return {"Severity": Severity, "Status": Status, "State": State, "SkipReason": SkipReason}


def encode(obj: Any) -> Any:
    """Lossless JSON for the report classes (tuples, enums, NaN, numpy scalars kept)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            "__dc__": type(obj).__name__,
            **{f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)},
        }
    if isinstance(obj, enum.Enum):
        return {"__enum__": type(obj).__name__, "v": obj.value}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__f__": repr(obj)}
    if isinstance(obj, tuple):
        return {"__t__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {"__d__": [[encode(k), encode(v)] for k, v in obj.items()]}
    import numpy as np

    if isinstance(obj, np.generic):
        return encode(obj.item())
    if isinstance(obj, np.ndarray):
        return {"__nd__": encode(obj.tolist()), "dtype": str(obj.dtype)}
    raise TypeError(f"cannot cache a {type(obj).__name__}")


def decode(data: Any, classes: dict[str, type] | None = None) -> Any:
    classes = classes if classes is not None else _classes()
    if isinstance(data, list):
        return [decode(v, classes) for v in data]
    if not isinstance(data, dict):
        return data
    if "__dc__" in data:
        cls = classes[data["__dc__"]]  # KeyError for anything not whitelisted
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: decode(v, classes) for k, v in data.items() if k in names})
    if "__enum__" in data:
        return _enums()[data["__enum__"]](data["v"])
    if "__f__" in data:
        return float(data["__f__"])
    if "__t__" in data:
        return tuple(decode(v, classes) for v in data["__t__"])
    if "__d__" in data:
        return {decode(k, classes): decode(v, classes) for k, v in data["__d__"]}
    if "__nd__" in data:
        import numpy as np

        return np.asarray(decode(data["__nd__"], classes), dtype=np.dtype(data["dtype"]))
    raise ValueError("untagged object in a cache entry")


def content_key(path: str) -> str | None:
    """What identifies the content of ``path`` (see the module docstring); None: do not cache."""
    from .remote import fingerprint, is_remote

    if is_remote(path):
        fp = fingerprint(path)
        return None if fp is None else f"remote:{fp}"
    try:
        st = os.stat(path)
    except OSError:
        return None
    if os.path.isdir(path):
        parts = []
        for root, _dirs, files in sorted(os.walk(path)):
            for name in sorted(files):
                try:
                    s = os.stat(os.path.join(root, name))
                except OSError:
                    return None
                parts.append(
                    f"{os.path.relpath(os.path.join(root, name), path)}:{s.st_size}:{s.st_mtime_ns}"
                )
        return "dir:" + ";".join(parts)
    key = f"file:{st.st_size}:{st.st_mtime_ns}"
    if path.endswith(".safetensors") and st.st_size >= 8:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if 0 < n <= min(st.st_size - 8, 100 * 10**6):
                key += ":h=" + hashlib.sha256(fh.read(n)).hexdigest()
    return key


def _config_key(config: AuditConfig) -> str:
    # what changes the answer: everything but the progress callback and the cache itself
    bare = dataclasses.replace(config, progress=None, tensor_ignores=())
    return json.dumps(encode(_config_fields(bare)), sort_keys=True)


def _config_fields(config: AuditConfig) -> dict[str, Any]:
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in ("progress", "workers")
    }


class ResultCache:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def key(self, path: str, config: AuditConfig) -> str | None:
        from . import __version__

        content = content_key(path)
        if content is None:
            return None
        text = json.dumps([FORMAT_VERSION, __version__, path, _config_key(config), content])
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> FileReport | None:
        entry = self.directory / key[:2] / f"{key}.json"
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
            report: FileReport = decode(data)
            return report
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable entry: audit again

    def put(self, key: str, report: FileReport) -> None:
        from .report import Status

        if report.status is Status.ERROR:
            return  # a network error or a missing file must be retried next time
        folder = self.directory / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(encode(report), fh)
            os.replace(tmp, folder / f"{key}.json")
        except (OSError, TypeError):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def cached_audit(
    path: str, config: AuditConfig, audit: Callable[[str, AuditConfig], FileReport]
) -> FileReport:
    """``audit(path, config)`` through the cache of ``config.cache_dir`` (when set)."""
    if not config.cache_dir:
        return audit(path, config)
    cache = ResultCache(config.cache_dir)
    key = cache.key(path, dataclasses.replace(config, cache_dir=None))
    if key is not None:
        hit = cache.get(key)
        if hit is not None:
            # said, not hidden: the numbers are those of the run that wrote the entry
            hit.notes.append(
                "answered from the results cache: content key unchanged since the "
                "audit that wrote it"
            )
            return hit
    report = audit(path, config)
    if key is not None:
        cache.put(key, report)
    return report


__all__ = ["ResultCache", "cached_audit", "content_key", "decode", "encode"]
