"""Checkpoints in object stores and model hubs, read through fsspec (the ``[remote]`` extra).

``initaudit s3://bucket/run/ckpt/``, ``hf://org/model``, ``https://host/model.safetensors``:

* **safetensors** (one file, or a folder of shards with or without
  ``model.safetensors.index.json``) is read with ranged requests: 8 bytes, then the N header
  bytes, then each tensor's byte range once, when the engine analyses it (the lazy ``Loader`` of
  :class:`initaudit.model.WeightTensor`). A full audit fetches each byte of the file exactly
  once. With ``--sample-only`` only a few blocks of whole rows per tensor are fetched (at most
  :data:`SAMPLE_ELEMENTS` elements) and the rules that need every element
  (``engine.FULL_PASS_RULES``) are reported as not applied.
* **torch zip** (``torch.save``): the end of the file (the zip central directory), each
  member's local header, the pickles (every one scanned, as for a local file), then each tensor's
  bytes when analysed -- the local reader (:class:`loaders._zip.SafeZip`) over a
  :class:`loaders._ranged.ByteSource`, no byte fetched twice.
* **GGUF**: the header, metadata and tensor infos by growing ranged reads, then each tensor's
  range when analysed (the local GGUF reader over the same source).
* **ONNX with external data**: the .onnx (the graph, protobuf, read whole) is downloaded to a
  private temporary folder; each external tensor is read by one ranged request when analysed
  (the loader's hook ``loaders.onnx.external.REMOTE_DATA``), so data bytes are fetched once.
* With ``--sample-only`` the tensors of all of those (ONNX: its external data) are sampled the
  same way (:func:`loaders._ranged.read_items`).
* **every other format** (TorchScript, .pt2, Keras, npz, legacy pickles...) is downloaded to a
  private temporary folder and read by the local loader; the report says so and counts the
  whole download as fetched.

The analysis is :func:`initaudit.engine.analyse`, as for a local file, so reports are the same;
``FileReport.remote`` adds the bytes fetched. Credentials come from the filesystem's usual
configuration (AWS env/profile, ``HF_TOKEN``...) and are never printed: errors are our own one
line (not found, access denied, timed out, truncated), never the library's message.

Timeouts and retries: ``INITAUDIT_REMOTE_TIMEOUT`` (seconds per request, default 60) and
``INITAUDIT_REMOTE_RETRIES`` (attempts for a timed-out or cut request, default 3).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .loaders._ranged import (
    SAMPLE_BLOCKS,
    SAMPLE_ELEMENTS,
    SMALL_TENSOR_BYTES,
    RangeIO,
    read_items,
    sample_ranges,
)
from .model import LoadedModel, LoadError, SkipReason, StoredTensor

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .engine import AuditConfig
    from .report import FileReport

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*)://")
# the formats read by ranged requests from a single file (beside safetensors and ONNX data)
RANGED_FORMATS = ("pytorch-zip", "gguf")
MAX_SIDE_FILE_BYTES = 16 * 2**20  # config.json / index json fetched whole: cap them
INDEX_NAME = "model.safetensors.index.json"
SIDE_FILES = ("config.json", "adapter_config.json", "quantize_config.json")
# extensions of checkpoint files when a remote folder is walked (remote listing has no content
# probe: one request per file would cost more than the audit of a small file)
CHECKPOINT_EXTENSIONS = (
    ".safetensors",
    ".onnx",
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".gguf",
    ".npz",
    ".keras",
    ".h5",
    ".tflite",
    ".pt2",
    ".msgpack",
    ".joblib",
)


def is_remote(path: str) -> bool:
    """A URL fsspec should open (anything ``scheme://`` but ``file://``)."""
    m = _SCHEME.match(path)
    return m is not None and m.group(1).lower() != "file"


@dataclass(frozen=True)
class RemoteSettings:
    timeout: float = 60.0
    retries: int = 3

    @classmethod
    def from_env(cls) -> RemoteSettings:
        def num(name: str, default: float) -> float:
            try:
                value = float(os.environ.get(name, default))
            except ValueError:
                return default
            return value if value > 0 else default

        return cls(
            timeout=num("INITAUDIT_REMOTE_TIMEOUT", 60.0),
            retries=int(num("INITAUDIT_REMOTE_RETRIES", 3)),
        )


class RemoteError(LoadError):
    """A request failed: the message is one line, without credentials or library noise."""


@dataclass
class Transfer:
    """Bytes fetched for one audited input (all its files), thread-safe: tensors load in threads."""

    size: int = 0  # bytes the audited files hold
    fetched: int = 0
    requests: int = 0
    mode: str = "ranged"  # ranged | download
    sample_only: bool = False
    # the first request that failed for good: the file is then unreadable (exit 2), not a
    # partial audit -- its bytes exist, the network did not deliver them
    failure: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.fetched += nbytes
            self.requests += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "bytes_fetched": self.fetched,
            "bytes_total": self.size,
            "requests": self.requests,
            "mode": self.mode,
            "sample_only": self.sample_only,
        }

    def note(self) -> str:
        share = f" ({self.fetched / self.size:.1%})" if self.size else ""
        how = (
            "ranged requests"
            if self.mode == "ranged"
            else "requests: downloaded whole to a temporary folder, this format is not read "
            "with ranged requests"
        )
        return (
            f"remote: fetched {self.fetched:,} of {self.size:,} bytes{share} in "
            f"{self.requests} {how}"
        )


# --------------------------------------------------------------------------- filesystem access


def _storage_options(protocol: str, settings: RemoteSettings) -> dict[str, Any]:
    """Timeouts in each filesystem's own terms; credentials are left to its configuration."""
    if protocol in ("s3", "s3a"):
        options: dict[str, Any] = {
            "config_kwargs": {
                "connect_timeout": settings.timeout,
                "read_timeout": settings.timeout,
                "retries": {"max_attempts": 1},
            }
        }  # our retry loop counts
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            # part of fsspec's instance-cache key: a process whose endpoint changed (a test
            # server restarted, an API caller switching stores) gets a client for the new one
            options["endpoint_url"] = endpoint
        return options
    if protocol in ("http", "https"):
        import aiohttp

        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=settings.timeout)}}
    return {}


def open_fs(url: str, settings: RemoteSettings) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise LoadError(
            "remote paths need the [remote] extra (pip install 'initaudit[remote]')"
        ) from None
    protocol = _SCHEME.match(url).group(1).lower()  # type: ignore[union-attr]
    try:
        fs, path = fsspec.core.url_to_fs(url, **_storage_options(protocol, settings))
    except ImportError as exc:
        raise LoadError(
            f"the {protocol}:// filesystem is not installed ({_first_line(exc)})"
        ) from None
    except ValueError as exc:
        raise LoadError(f"cannot open {protocol}:// URLs ({_first_line(exc)})") from None
    try:
        # fsspec shares one filesystem object per process and caches listings in it: an object
        # written since an earlier audit listed its folder would be "not found"
        fs.invalidate_cache(path)
    except Exception:  # noqa: BLE001,S110 -- a filesystem without a listing cache
        pass
    if protocol in ("s3", "s3a") and hasattr(fs, "retries"):
        # s3fs retries a timed-out or cut request 5 times itself, with back-off: under our own
        # INITAUDIT_REMOTE_RETRIES that multiplied a stalled object's wait (3 x 5 x 60 s)
        fs.retries = 1
    return fs, path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def _is_timeout(exc: BaseException) -> bool:
    import asyncio

    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return True
    name = type(exc).__name__
    return "Timeout" in name or "timed out" in str(exc).lower()


def _is_cut(exc: BaseException) -> bool:
    name = type(exc).__name__
    return (
        name
        in (
            "ClientPayloadError",
            "ServerDisconnectedError",
            "IncompleteRead",
            "ResponseStreamingError",
            "ContentLengthError",
            "ClientConnectionError",
            "ConnectionResetError",
            "ReadTimeoutError",
        )
        or "payload" in str(exc).lower()
    )


def _unwrap(exc: BaseException) -> BaseException:
    """fsspec's HTTP filesystem turns every failure of ``info`` into FileNotFoundError, the real
    one (a 403, a timeout) chained as its cause."""
    cause = exc.__cause__
    if isinstance(exc, FileNotFoundError) and cause is not None:
        return cause
    return exc


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a failed request: aiohttp's ``status``, botocore's ClientError
    ``response`` (NoSuchBucket, AccessDenied... arrive as ClientError subclasses)."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        if code.startswith("NoSuch") or code == "404":
            return 404
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return 403
        http = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(http, int):
            return http
    return None


def _final(exc: BaseException) -> bool:
    """No point in asking again: not found, forbidden, a client error other than 429."""
    if isinstance(exc, (FileNotFoundError, PermissionError, RemoteError)):
        return True
    status = _status(exc)
    return isinstance(status, int) and status < 500 and status != 429


def describe(exc: BaseException, settings: RemoteSettings) -> str:
    """One line for a failed request. Never the exception text of an auth failure: it may quote
    request headers."""
    if isinstance(exc, RemoteError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "not found (404)"
    if isinstance(exc, PermissionError):
        return "access denied (403): check the credentials for this bucket or repository"
    status = _status(exc)
    if isinstance(status, int):
        if status == 403:
            return "access denied (403): check the credentials for this bucket or repository"
        if status == 404:
            return "not found (404)"
        if status == 416:
            return "server refused the byte range (416)"
        return f"request failed with HTTP {status}"
    if _is_timeout(exc):
        return f"timed out after {settings.timeout:g} s (INITAUDIT_REMOTE_TIMEOUT)"
    if _is_cut(exc):
        return "truncated response: the connection closed before the bytes asked for arrived"
    if isinstance(exc, OSError) and exc.strerror:
        return f"request failed ({exc.strerror})"
    text = _redacted(exc)
    return f"request failed ({type(exc).__name__}{': ' + text if text else ''})"


_SECRETS = re.compile(
    r"(?i)\b(token|key|secret|signature|authorization|credential|password)"
    r"(\S*?)([=:]\s*)\S+"
)


def _redacted(exc: BaseException) -> str:
    """The first line of a network error's text (a DNS failure, a refused connection...), with
    anything credential-like masked: user:password@ in URLs, token=..., key: ..."""
    lines = str(exc).strip().splitlines()
    if not lines:
        return ""
    line = re.sub(r"://[^/@\s]+@", "://***@", lines[0])
    cut = line.lower().find("authorization")
    if cut >= 0:  # a header dump: nothing after it is safe to show
        line = line[:cut] + "authorization ***"
    return _SECRETS.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}***", line)[:120]


class RemoteFile:
    """One remote file (a :class:`loaders._ranged.ByteSource`): exact ranged reads with
    retries, every byte received counted. Regions read with ``keep=True`` (the head, a zip's
    central directory, a GGUF header) stay in memory and later reads take them from there, so
    no byte of the file is fetched twice."""

    def __init__(
        self,
        fs: Any,
        path: str,
        size: int,
        transfer: Transfer,
        settings: RemoteSettings,
        *,
        name: str = "",
        sample_seed: int | None = None,
    ) -> None:
        self.fs, self.path, self.size = fs, path, size
        self.transfer, self.settings = transfer, settings
        self.name, self.sample_seed = name or path, sample_seed
        self._kept: list[tuple[int, bytes]] = []  # sorted, disjoint
        self._lock = threading.Lock()

    def read(self, offset: int, length: int) -> bytes:
        return self.pread(offset, length)

    def pread(self, offset: int, length: int, *, keep: bool = False) -> bytes:
        if length <= 0:
            return b""
        if offset < 0 or offset + length > self.size:
            raise self._fail(
                RemoteError(f"range {offset}+{length} lies outside the file ({self.size} bytes)")
            )
        end, pos, parts = offset + length, offset, []
        with self._lock:
            kept = list(self._kept)
        for start, data in kept:
            stop = start + len(data)
            if stop <= pos or start >= end:
                continue
            if start > pos:  # a gap before this kept region
                parts.append(self._fetch(pos, start - pos, keep))
                pos = start
            upto = min(end, stop)
            parts.append(data[pos - start : upto - start])
            pos = upto
            if pos >= end:
                break
        if pos < end:
            parts.append(self._fetch(pos, end - pos, keep))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _fetch(self, offset: int, length: int, keep: bool) -> bytes:
        try:
            data = self._read(offset, length)
        except RemoteError as exc:
            raise self._fail(exc) from None
        if keep:
            with self._lock:
                self._kept.append((offset, data))
                self._kept.sort(key=lambda item: item[0])
        return data

    def _fail(self, exc: RemoteError) -> RemoteError:
        if self.transfer.failure is None:
            self.transfer.failure = str(exc)
        return exc

    def _read(self, offset: int, length: int) -> bytes:
        last: BaseException | None = None
        for attempt in range(max(1, self.settings.retries)):
            try:
                data = self.fs.cat_file(self.path, start=offset, end=offset + length)
            except Exception as exc:  # noqa: BLE001 -- network: retried when it may be transient
                real = _unwrap(exc)
                if _final(real):
                    raise RemoteError(describe(real, self.settings)) from None
                last = real
                time.sleep(min(2.0, 0.1 * 2**attempt))
                continue
            self.transfer.add(len(data))
            if len(data) != length:
                if len(data) > length:  # the server ignored Range and sent more
                    raise RemoteError(
                        f"server ignored the byte range (sent {len(data)} bytes for "
                        f"a range of {length}): ranged reads are required"
                    )
                last = RemoteError(
                    f"truncated response: got {len(data)} of {length} bytes at offset {offset}"
                )
                continue
            return bytes(data)
        assert last is not None
        raise RemoteError(
            describe(last, self.settings)
            + (f" (after {self.settings.retries} attempts)" if self.settings.retries > 1 else "")
        ) from None


def _info(fs: Any, path: str, settings: RemoteSettings) -> dict[str, Any]:
    last: BaseException | None = None
    for attempt in range(max(1, settings.retries)):
        try:
            return dict(fs.info(path))
        except Exception as exc:  # noqa: BLE001 -- any library error becomes our one line
            real = _unwrap(exc)
            if _final(real):
                raise RemoteError(describe(real, settings)) from None
            last = real
            time.sleep(min(2.0, 0.1 * 2**attempt))
    assert last is not None
    raise RemoteError(describe(last, settings)) from None


def _listdir(fs: Any, path: str, settings: RemoteSettings) -> dict[str, dict[str, Any]]:
    """name -> info of the files directly in ``path`` (empty when it is not a folder)."""
    try:
        entries = fs.ls(path, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except Exception as exc:  # noqa: BLE001 -- any library error becomes our one line
        raise RemoteError(describe(exc, settings)) from None
    out = {}
    for e in entries:
        if e.get("type") == "file":
            out[PurePosixPath(e["name"]).name] = dict(e)
    return out


def _side_files(fs: Any, parent: str, settings: RemoteSettings) -> dict[str, dict[str, Any]]:
    """The small files beside a model (config.json...): listed where the store lists, asked
    for one by one over plain HTTP (a web server has no listing to trust)."""
    if "http" not in {p.lower() for p in _protocols(fs)}:
        return _listdir(fs, parent, settings)
    out = {}
    for name in SIDE_FILES:
        try:
            out[name] = _info(fs, f"{parent}/{name}", settings)
        except RemoteError:
            continue
    return out


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


def fingerprint(url: str) -> str | None:
    """The object store's identity of ``url``'s content (ETag, else size + mtime) for the
    results cache; None when the store gives nothing usable."""
    settings = RemoteSettings.from_env()
    try:
        fs, path = open_fs(url, settings)
        info = _info(fs, path, settings)
        if info.get("type") == "directory":
            files = _listdir(fs, path, settings)
            parts = [f"{n}:{_etag(i)}" for n, i in sorted(files.items())]
            return "dir:" + ";".join(parts) if parts else None
        return _etag(info)
    except LoadError:
        return None


def _etag(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "e_tag", "blob_id", "lfs", "md5Hash", "crc32c"):
        value = info.get(key)
        if value:
            return f"{key}={value}:{info.get('size')}"
    return f"size={info.get('size')}:mtime={info.get('LastModified') or info.get('mtime')}"


# --------------------------------------------------------------------------- safetensors, ranged


def _full_loader(rf: RemoteFile, data_start: int, entry: Any) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import numpy as np

        dtype = entry.dtype.np_dtype
        n = entry.end - entry.begin
        if n == 0:
            return np.zeros(entry.shape, dtype=dtype)
        raw = rf.read(data_start + entry.begin, n)
        return np.frombuffer(raw, dtype=dtype).reshape(entry.shape)

    return load


def _sample_loader(rf: RemoteFile, data_start: int, entry: Any) -> Callable[[], np.ndarray]:
    if entry.end - entry.begin <= SMALL_TENSOR_BYTES:
        return _full_loader(rf, data_start, entry)

    def load() -> np.ndarray:
        import numpy as np

        dtype = entry.dtype.np_dtype
        raw, shape = read_items(rf, data_start + entry.begin, tuple(entry.shape), dtype.itemsize)
        return np.frombuffer(raw, dtype=dtype).reshape(shape)

    return load


def _safe_name(name: str) -> bool:
    """A shard name from an index must stay inside the model folder."""
    return (
        bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and "://" not in name
        and all(p not in ("..", "") for p in name.split("/"))
    )


def _fetch_small(
    fs: Any,
    path: str,
    info: dict[str, Any],
    transfer: Transfer,
    settings: RemoteSettings,
    what: str,
) -> bytes:
    size = int(info.get("size") or 0)
    if size > MAX_SIDE_FILE_BYTES:
        raise RemoteError(f"{what} is larger than {MAX_SIDE_FILE_BYTES} bytes")
    transfer.size += size
    return RemoteFile(fs, path, size, transfer, settings).read(0, size)


def load_safetensors(
    url: str,
    fs: Any,
    path: str,
    info: dict[str, Any],
    config: AuditConfig,
    transfer: Transfer,
    settings: RemoteSettings,
    side_dir: Path,
) -> LoadedModel:
    """A remote safetensors file or folder of shards, as the local loader reads it."""
    from .loaders import LoadOptions
    from .loaders import safetensors_loader as st

    options = LoadOptions(hints=config.hints)
    is_dir = info.get("type") == "directory"
    model = LoadedModel(
        path=url,
        format="safetensors-sharded" if is_dir else "safetensors",
        framework="pytorch",
        has_graph=False,
        inventory=[],
    )
    if config.sample_only:
        model.metadata["sampled_only"] = True

    def make(rf: RemoteFile) -> Callable[[int, Any], Callable[[], Any]]:
        if config.sample_only:
            return lambda start, e: _sample_loader(rf, start, e)
        return lambda start, e: _full_loader(rf, start, e)

    def open_file(file_path: str, file_info: dict[str, Any]) -> tuple[RemoteFile, Any]:
        size = int(file_info.get("size") or 0)
        transfer.size += size
        seed = config.seed if config.sample_only else None
        rf = RemoteFile(fs, file_path, size, transfer, settings, sample_seed=seed)
        return rf, st.parse_header(rf.read, size)

    flat: list[Any] = []
    if not is_dir:
        rf, header = open_file(path, info)
        flat = st._flat_tensors(Path(path), header, options, model, make_loader=make(rf))
        if header.metadata:
            model.metadata["safetensors_metadata"] = header.metadata
        side_parent = path.rsplit("/", 1)[0]  # not PurePosixPath: it folds "http://" to "http:/"
        files = _side_files(fs, side_parent, settings)
    else:
        side_parent = path.rstrip("/")
        files = _listdir(fs, path, settings)
        by_shard: dict[str, set[str]] = {}
        if INDEX_NAME in files:
            raw = _fetch_small(
                fs,
                f"{path.rstrip('/')}/{INDEX_NAME}",
                files[INDEX_NAME],
                transfer,
                settings,
                INDEX_NAME,
            )
            (side_dir / INDEX_NAME).write_bytes(raw)
            weight_map = st._read_index(side_dir / INDEX_NAME)
            model.metadata["safetensors_index"] = INDEX_NAME
            for tensor, shard in weight_map.items():
                by_shard.setdefault(shard, set()).add(tensor)
            shards = list(dict.fromkeys(weight_map.values()))
        else:
            shards = sorted(n for n in files if n.endswith(".safetensors"))
        if not shards:
            raise LoadError("remote folder holds no safetensors shards")
        seen: set[str] = set()
        for shard in shards:
            if not _safe_name(shard):
                from .model import UnsafeContent

                model.unsafe.append(
                    UnsafeContent(
                        what=f"safetensors shard path {shard!r} leaves the model folder (not read)",
                        location=INDEX_NAME,
                    )
                )
                for tensor in sorted(by_shard.get(shard, ())):
                    assert (
                        model.inventory is not None
                    )  # the model is created with an inventory above
                    model.inventory.append(
                        StoredTensor(
                            tensor,
                            (),
                            "unknown",
                            0,
                            True,
                            SkipReason.UNSAFE,
                        )
                    )
                    model.skip(
                        tensor, f"shard {shard!r} is outside the model folder", SkipReason.UNSAFE
                    )
                continue
            shard_path = f"{path.rstrip('/')}/{shard}"
            shard_info = files.get(shard) if "/" not in shard else None
            if shard_info is None:
                try:
                    shard_info = _info(fs, shard_path, settings)
                except RemoteError as exc:
                    raise LoadError(f"shard {shard!r} listed in {INDEX_NAME}: {exc}") from None
            try:
                rf, header = open_file(shard_path, shard_info)
            except LoadError as exc:
                raise LoadError(f"shard {shard}: {exc}") from None
            listed = by_shard.get(shard)
            if listed is not None:
                present = {e.name for e in header.entries}
                for missing in sorted(listed - present):
                    assert (
                        model.inventory is not None
                    )  # the model is created with an inventory above
                    model.inventory.append(
                        StoredTensor(
                            missing,
                            (),
                            "unknown",
                            0,
                            True,
                            SkipReason.UNREADABLE,
                        )
                    )
                    model.skip(
                        missing,
                        f"listed in {INDEX_NAME} but absent from {shard}",
                        SkipReason.UNREADABLE,
                    )
            for ft in st._flat_tensors(Path(shard), header, options, model, make_loader=make(rf)):
                if ft.name in seen:
                    model.skip(
                        ft.name, f"appears again in {shard}; first copy audited", SkipReason.OTHER
                    )
                    continue
                seen.add(ft.name)
                flat.append(ft)
    _fetch_side_files(fs, side_parent, side_dir, transfer, settings, files)
    st.finish(model, flat, side_dir)
    from .activations import apply_hints

    apply_hints(model, list(config.hints))
    return model


# --------------------------------------------------------------------------- torch zip, GGUF


def _fetch_side_files(
    fs: Any,
    parent: str,
    side_dir: Path,
    transfer: Transfer,
    settings: RemoteSettings,
    files: dict[str, dict[str, Any]] | None = None,
) -> None:
    """The HF config (activations) and adapter configs beside a model: small, fetched whole
    into ``side_dir``, where the loader looks for them."""
    files = _side_files(fs, parent, settings) if files is None else files
    for name in SIDE_FILES:
        if name in files:
            raw = _fetch_small(fs, f"{parent}/{name}", files[name], transfer, settings, name)
            (side_dir / name).write_bytes(raw)


def _ranged_format(rf: RemoteFile) -> str | None:
    """The format of a remote file when it is one read by ranged requests (RANGED_FORMATS):
    its head (and for a zip its central directory) fetched and kept -- the loader reads them
    from there, so detection costs no byte twice. None: download it."""
    from .loaders import formats

    head = rf.pread(0, min(rf.size, formats.PROBE_BYTES), keep=True)
    if head.startswith(b"GGUF"):
        return "gguf"
    if not head.startswith(b"PK\x03\x04"):
        return None
    import zipfile

    from .loaders._zip import REMOTE_TAIL

    tail = min(rf.size, REMOTE_TAIL)
    rf.pread(rf.size - tail, tail, keep=True)
    try:
        with zipfile.ZipFile(RangeIO(rf, keep=True)) as zf:
            names = zf.namelist()
        probe = formats.Probe(path=Path(rf.name), size=rf.size, head=head, _zip_names=names)
        kind = formats.detect(probe).name
    except RemoteError:
        raise
    except Exception:  # noqa: BLE001 -- a broken zip: the download path reports it as locally
        return None
    return kind if kind in RANGED_FORMATS else None


def load_ranged(
    url: str,
    fmt: str,
    rf: RemoteFile,
    config: AuditConfig,
    transfer: Transfer,
    settings: RemoteSettings,
    side_dir: Path,
) -> LoadedModel:
    """A remote torch zip or GGUF file read by its own loader over ranged requests."""
    import importlib

    from .loaders import LoadOptions
    from .loaders._ranged import SOURCE_KEY
    from .loaders.formats import BY_NAME

    if fmt == "pytorch-zip":  # a Hugging Face config.json beside it names the activations
        _fetch_side_files(rf.fs, rf.path.rsplit("/", 1)[0], side_dir, transfer, settings)
    name = PurePosixPath(rf.path).name or "checkpoint"
    options = LoadOptions(hints=config.hints, extra={SOURCE_KEY: rf})
    module = importlib.import_module(f"initaudit.loaders.{BY_NAME[fmt].loader}")
    model: LoadedModel = module.load(side_dir / name, fmt, options)
    model.path = url
    if config.sample_only:
        model.metadata["sampled_only"] = True
    from .activations import apply_hints

    apply_hints(model, list(config.hints))
    return model


# --------------------------------------------------------------------------- download fallback


def _download(
    fs: Any,
    path: str,
    info: dict[str, Any],
    dest: Path,
    transfer: Transfer,
    settings: RemoteSettings,
    rf: RemoteFile | None = None,
) -> Path:
    """The file (or folder, recursively) copied into ``dest``, counted; names checked.
    ``rf``: the file already opened (its kept head is not fetched again)."""
    transfer.mode = "download"
    if info.get("type") == "directory":
        root = path.rstrip("/")
        target = dest / PurePosixPath(root).name
        target.mkdir(parents=True, exist_ok=True)
        try:
            found = fs.find(root, detail=True)
        except Exception as exc:  # noqa: BLE001 -- any library error becomes our one line
            raise RemoteError(describe(exc, settings)) from None
        for name, finfo in sorted(found.items()):
            rel = (
                name[len(root) :].lstrip("/") if name.startswith(root) else PurePosixPath(name).name
            )
            if not _safe_name(rel):
                continue
            _copy(fs, name, int(finfo.get("size") or 0), target / rel, transfer, settings)
        return target
    target = dest / (PurePosixPath(path).name or "checkpoint")
    _copy(fs, path, int(info.get("size") or 0), target, transfer, settings, rf=rf)
    return target


def _register_onnx_data(
    fs: Any,
    path: str,
    model_dir: Path,
    transfer: Transfer,
    settings: RemoteSettings,
    sample_seed: int | None,
) -> dict[str, RemoteFile]:
    """ONNX external data read by ranged requests: the loader's external-data hook
    (loaders.onnx.external.REMOTE_DATA) opens the files beside the remote model. Returns the
    table of data files opened (filled as the loader asks)."""
    from .loaders.onnx.decode import _Unreadable
    from .loaders.onnx.external import REMOTE_DATA, RemoteData

    parent = path.rsplit("/", 1)[0]
    files: dict[str, RemoteFile] = {}
    lock = threading.Lock()

    def open_data(location: str) -> RemoteFile:
        with lock:
            rf = files.get(location)
            if rf is None:
                try:
                    info = _info(fs, f"{parent}/{location}", settings)
                except RemoteError as exc:
                    if str(exc).startswith("not found"):
                        raise _Unreadable(
                            f"external data file {location!r} does not exist"
                        ) from None
                    raise
                rf = files[location] = RemoteFile(
                    fs,
                    f"{parent}/{location}",
                    int(info.get("size") or 0),
                    transfer,
                    settings,
                    sample_seed=sample_seed,
                )
                transfer.size += rf.size
            return rf

    REMOTE_DATA[str(model_dir)] = RemoteData(open=open_data)
    return files


def _max_download() -> int:
    """INITAUDIT_REMOTE_MAX_DOWNLOAD (bytes, default 64 GiB): a download fallback larger than
    this is refused in one line instead of filling the temp folder."""
    try:
        return int(os.environ.get("INITAUDIT_REMOTE_MAX_DOWNLOAD") or 64 * 2**30)
    except ValueError:
        return 64 * 2**30


def _copy(
    fs: Any,
    path: str,
    size: int,
    target: Path,
    transfer: Transfer,
    settings: RemoteSettings,
    chunk: int = 8 * 2**20,
    rf: RemoteFile | None = None,
) -> None:
    limit = _max_download()
    counted = transfer.size if rf is None else transfer.size - rf.size
    if counted + size > limit:
        raise RemoteError(
            f"this format is downloaded whole and {counted + size} bytes "
            f"exceed INITAUDIT_REMOTE_MAX_DOWNLOAD ({limit})"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if rf is None:
        transfer.size += size
        rf = RemoteFile(fs, path, size, transfer, settings)
    with open(target, "wb") as out:
        out.writelines(
            rf.pread(offset, min(chunk, size - offset)) for offset in range(0, size, chunk)
        )


# --------------------------------------------------------------------------- entry points


def _is_safetensors(name: str, files: dict[str, dict[str, Any]] | None = None) -> bool:
    if files is not None:
        return INDEX_NAME in files or any(n.endswith(".safetensors") for n in files)
    return name.endswith(".safetensors")


def audit_remote(url: str, config: AuditConfig) -> FileReport:
    """Audit one remote input through the same engine as a local file."""
    from .engine import audit_loaded
    from .report import FileReport, Status

    settings = RemoteSettings.from_env()
    transfer = Transfer(sample_only=config.sample_only)
    tmp = Path(tempfile.mkdtemp(prefix="initaudit-remote-"))
    sampled = False  # --sample-only honoured for this file (its format is read by ranges)
    try:
        try:
            fs, path = open_fs(url, settings)
            info = _info(fs, path, settings)
        except LoadError as exc:
            return FileReport(path=url, format=None, status=Status.ERROR, error=str(exc))
        is_dir = info.get("type") == "directory"
        files = _listdir(fs, path, settings) if is_dir else None
        seed = config.seed if config.sample_only else None

        def load() -> LoadedModel:
            nonlocal sampled
            if _is_safetensors(path, files):
                sampled = config.sample_only
                return load_safetensors(url, fs, path, info, config, transfer, settings, tmp)
            from .loaders import LoadOptions
            from .loaders import load as load_local

            rf: RemoteFile | None = None
            if not is_dir and not path.endswith(".onnx"):
                size = int(info.get("size") or 0)
                transfer.size += size
                rf = RemoteFile(fs, path, size, transfer, settings, name=url, sample_seed=seed)
                fmt = _ranged_format(rf)
                if fmt is not None:
                    sampled = config.sample_only
                    return load_ranged(url, fmt, rf, config, transfer, settings, tmp)
            local = _download(fs, path, info, tmp / "data", transfer, settings, rf=rf)
            data_files: dict[str, RemoteFile] = {}
            if local.suffix == ".onnx" and not is_dir:
                # the graph is read whole (protobuf), its external data by ranged requests
                transfer.mode = "ranged"
                data_files = _register_onnx_data(fs, path, local.parent, transfer, settings, seed)
            model = load_local(local, LoadOptions(hints=config.hints))
            model.path = url
            if config.sample_only and data_files:
                # external tensors are sampled; embedded ones (inside the .onnx) were read whole
                sampled = True
                model.metadata["sampled_only"] = True
            return model

        report = audit_loaded(url, load, config)
        report.path = url
        if transfer.failure is not None and report.status is not Status.ERROR:
            report = FileReport(
                path=url,
                format=report.format,
                status=Status.ERROR,
                error=transfer.failure,
                remote=transfer.to_dict(),
            )
            return report
        report.notes = [_public(n, tmp / "data", url) for n in report.notes]
        if report.error:
            report.error = _public(report.error, tmp / "data", url)
        if config.sample_only and not sampled and report.status is not Status.ERROR:
            report.notes.append(
                "--sample-only applies to safetensors, torch zip, GGUF and ONNX external data "
                "read by ranged requests: every tensor of this file was read whole, every "
                "rule applied"
            )
            transfer.sample_only = False
        report.notes.append(transfer.note())
        report.remote = transfer.to_dict()
        return report
    finally:
        external = sys.modules.get("initaudit.loaders.onnx.external")
        if external is not None:
            external.REMOTE_DATA.pop(str(tmp / "data"), None)
        shutil.rmtree(tmp, ignore_errors=True)


def _public(text: str, local_root: Path, url: str) -> str:
    """Messages name the URL, never the private temp folder the loader saw."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    text = text.replace(str(local_root / name), url.rstrip("/"))
    return text.replace(str(local_root), url.rstrip("/").rsplit("/", 1)[0])


def expand(url: str) -> list[str]:
    """The inputs a remote argument stands for: a file is itself; a folder holding safetensors
    (an index or shards) is one model; any other folder is walked, each checkpoint file (by
    extension) one input and each folder of shards one model. Errors: LoadError, one line."""
    settings = RemoteSettings.from_env()
    fs, path = open_fs(url, settings)
    info = _info(fs, path, settings)
    if info.get("type") != "directory":
        return [url]
    if _is_safetensors(path, _listdir(fs, path, settings)):
        return [url]
    try:
        found = fs.find(path.rstrip("/"), detail=False)
    except Exception as exc:  # noqa: BLE001 -- any library error becomes our one line
        raise RemoteError(describe(exc, settings)) from None
    proto = url.split("://", 1)[0] + "://"
    shard_dirs: set[str] = set()
    singles: list[str] = []
    for name in sorted(found):
        base = PurePosixPath(name).name
        parent = str(PurePosixPath(name).parent)
        if base == INDEX_NAME or (base.endswith(".safetensors") and _shards_in(found, parent) > 1):
            shard_dirs.add(parent)
        elif base.lower().endswith(CHECKPOINT_EXTENSIONS):
            singles.append(name)
    out = [n for n in singles if str(PurePosixPath(n).parent) not in shard_dirs]
    out += sorted(shard_dirs)
    out.sort()
    return [_unstrip(fs, proto, n) for n in out]


def _shards_in(found: list[str], parent: str) -> int:
    return sum(
        1 for n in found if str(PurePosixPath(n).parent) == parent and n.endswith(".safetensors")
    )


def _unstrip(fs: Any, proto: str, path: str) -> str:
    unstrip = getattr(fs, "unstrip_protocol", None)
    if unstrip is not None:
        return str(unstrip(path))
    return proto + path


__all__ = [
    "SAMPLE_BLOCKS",
    "SAMPLE_ELEMENTS",
    "SMALL_TENSOR_BYTES",
    "Transfer",
    "audit_remote",
    "expand",
    "fingerprint",
    "is_remote",
    "sample_ranges",
]
