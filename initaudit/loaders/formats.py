"""Format detection: one :class:`FormatSpec` per checkpoint format, tried in a fixed order.

Each detector checks the format's full structural signature, not one magic byte
(checkpoint-formats.md), so that no valid file of one format is claimed by another and no text
file is taken for a checkpoint:

- zip containers (torch zip, TorchScript, .pt2, .keras, .npz): the zip central directory read,
  the member names decide;
- HDF5 (Keras .h5): the 8-byte superblock signature;
- safetensors: a little-endian u64 header length that fits in the file, followed by exactly that
  many bytes that parse as a JSON object (a header length whose low byte is 0x80 looks like a
  pickle's PROTO opcode: safetensors is therefore tried before pickle);
- pickle (legacy torch, plain pickles): PROTO 2..5, then an opcode stream that
  :mod:`pickletools` walks without error up to STOP or the probe's end;
- ONNX: a protobuf ``ModelProto`` whose top-level fields walk exactly to the end of the file,
  with an ``ir_version`` and a ``graph`` field (fields are skipped by length, never parsed).

A text file never qualifies (:func:`looks_like_text` runs first). Everything here reads at most
the zip directory, the safetensors header or the protobuf keys: cheap enough for discovery to
run on every file of a repository.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..model import LoadError, UnsupportedFormat

PROBE_BYTES = 4096
# safetensors refuses headers above 100 MB (safetensors/src/tensor.rs MAX_HEADER_SIZE)
MAX_SAFETENSORS_HEADER = 100_000_000
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass
class Probe:
    """What the detectors look at: the path, its size and its first bytes (read once)."""

    path: Path
    size: int
    head: bytes
    _zip_names: list[str] | None = None

    def zip_names(self) -> list[str]:
        if self._zip_names is None:
            import zipfile  # here: most files are not zips (zipfile, pickletools load on demand)

            try:
                with zipfile.ZipFile(self.path) as zf:
                    self._zip_names = zf.namelist()
            except (zipfile.BadZipFile, OSError) as exc:
                raise LoadError(f"looks like a zip archive but is corrupt ({exc})") from None
            except (ValueError, EOFError, NotImplementedError) as exc:  # undecodable names, version
                raise LoadError(
                    "looks like a zip archive but its central directory is unreadable "
                    f"({str(exc)[:80] or type(exc).__name__})"
                ) from None
        return self._zip_names


@dataclass(frozen=True)
class FormatSpec:
    """One format: its name (``LoadedModel.format``), the detector, the loader module inside
    :mod:`initaudit.loaders` and the file extensions it usually has (for discovery only: the
    content decides)."""

    name: str
    detect: Callable[[Probe], bool]
    loader: str
    extensions: tuple[str, ...]
    # a loose signature (the first bytes only), tried when no strict detector matched and the
    # file was named to be read: its loader then says precisely what is broken ("header is not
    # valid JSON", "truncated protobuf") instead of "not a recognised format". Discovery never
    # uses it: a near miss does not make a file in a folder a candidate.
    near_miss: Callable[[Probe], bool] | None = None


# ----------------------------------------------------------------------------------- zip kinds


def _is_zip(p: Probe) -> bool:
    return p.head.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def _zip_kind(p: Probe) -> str | None:
    names = p.zip_names()
    base = {n.split("/", 1)[-1] for n in names}
    torch_pickle = any(n.casefold().endswith("data.pkl") for n in names)
    if (
        not torch_pickle
        and "config.json" in names
        and any(n.startswith("model.weights") for n in names)
    ):
        return "keras"
    if any(n.endswith(".npy") for n in names) and not torch_pickle:
        return "npz"
    if any("/data/aotinductor/" in f"/{n}" for n in names):
        # torch._inductor.aoti_compile_and_package: compiled C++/.so plus weights; loading it
        # runs native code (reported as unsafe content by the AOTInductor reader)
        return "pt2-aoti"
    if (
        any(n.startswith("models/") and n.endswith(".json") for n in base)
        or "archive_format" in base
    ):
        return "pt2"
    if (
        any(n.endswith("/code/__torch__") or "/code/__torch__/" in n for n in names)
        or "constants.pkl" in base
    ):
        return "torchscript"
    if "data.pkl" in base:
        return "pytorch-zip"
    if any(n.casefold().endswith((".pkl", ".pickle")) for n in names) or _holds_pickle(p.path):
        # torch's reader finds ARCHIVE/DATA.PKL case-insensitively; any other pickle member is
        # scanned (and the archive then reported unreadable) by the torch loader
        return "pytorch-zip"
    return None


def _holds_pickle(path: Path) -> bool:
    """Does a member of an otherwise unknown zip start like a pickle? (first 64 members)"""
    import zipfile

    from ._scan import looks_like_pickle

    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist()[:64]:
                if info.flag_bits & 0x1 or info.file_size == 0:
                    continue
                with zf.open(info) as fh:
                    if looks_like_pickle(fh.read(4096)):
                        return True
    except Exception:  # noqa: BLE001 - unreadable members: not a pickle we can see
        return False
    return False


def _zip_detector(kind: str) -> Callable[[Probe], bool]:
    def detect(p: Probe) -> bool:
        return _is_zip(p) and _zip_kind(p) == kind

    detect.__name__ = f"is_{kind.replace('-', '_')}"
    return detect


# -------------------------------------------------------------------------------- safetensors


def is_safetensors(p: Probe) -> bool:
    if p.size < 10:
        return False
    n = int.from_bytes(p.head[:8], "little")
    if not 2 <= n <= min(p.size - 8, MAX_SAFETENSORS_HEADER):
        return False
    if p.head[8:9] != b"{":
        return False
    try:
        with open(p.path, "rb") as fh:
            fh.seek(8)
            header = fh.read(n)
        value = json.loads(header.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(value, dict)


# ------------------------------------------------------------------------------------- pickle


def is_pickle(p: Probe) -> bool:
    """PROTO 2..5 and an opcode stream pickletools can walk (to STOP, or to the probe's end)."""
    head = p.head
    if len(head) < 3 or head[0] != 0x80 or head[1] not in (2, 3, 4, 5):
        return False
    import pickletools

    ops = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(head)):
            ops += 1
            if opcode.name == "STOP":
                return ops >= 2
    except ValueError as exc:
        # the probe ends mid-stream in a file longer than the probe: fine; an unknown opcode or
        # a malformed argument is not a pickle
        cut = len(head) < p.size and any(
            w in str(exc) for w in ("remain", "exhausted", "not enough data")
        )
        return cut and ops >= 2
    return False


# protocol 0/1 pickles have no PROTO header (torch.save(..., pickle_protocol=0/1), plain pickle
# files); torch.load executes them all the same, so they must reach the scanner. Their first
# opcode is one of these; the stream must then decode to a STOP at the file's last byte (or run
# on past a 4 KiB probe with many opcodes): text files never do.
_OLD_PICKLE_START = b"(cl]}).NIKJMGFSVXUTLBCdeg"


def is_old_pickle(p: Probe) -> bool:
    head = p.head
    if not head or head[:1] not in _OLD_PICKLE_START:
        return False
    import pickletools

    ops = 0
    names_code = False
    try:  # pickletools only decodes opcodes: it never resolves a GLOBAL or calls anything
        for opcode, _arg, pos in pickletools.genops(io.BytesIO(head)):
            ops += 1
            names_code = names_code or opcode.name in ("GLOBAL", "INST", "REDUCE", "OBJ", "BUILD")
            if opcode.name == "STOP":
                assert pos is not None  # a BytesIO always reports its position
                # pickle.load ignores what follows a STOP: a stream that names code is a pickle
                # whatever trails it (a newline, a second pickle)
                return ops >= 2 and (pos + 1 == p.size or names_code)
    except ValueError:
        return ops >= 16 and len(head) == PROBE_BYTES and p.size > PROBE_BYTES
    return False


# --------------------------------------------------------------------------------------- onnx

# ModelProto (onnx/onnx.proto): field number -> wire type (0 varint, 2 length-delimited)
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_MAX_TOP_FIELDS = 100_000


def _varint(fh: io.BufferedReader) -> int | None:
    shift = result = 0
    while shift < 64:
        b = fh.read(1)
        if not b:
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
    return None


def is_onnx(p: Probe) -> bool:
    """The top-level fields of a ModelProto, skipped by their lengths, end exactly at the end of
    the file; ir_version and graph are present. Nothing is parsed, nothing is allocated."""
    if not p.head or p.head[0] not in (0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42):
        return False
    seen: set[int] = set()
    try:
        with open(p.path, "rb") as fh:
            for _ in range(_MAX_TOP_FIELDS):
                if fh.tell() == p.size:
                    break
                key = _varint(fh)
                if key is None:
                    return False
                number, wire = key >> 3, key & 7
                if _MODEL_FIELDS.get(number) != wire:
                    return False
                value = _varint(fh)
                if value is None:
                    return False
                if wire == 2:
                    if fh.tell() + value > p.size:
                        return False
                    fh.seek(value, os.SEEK_CUR)
                seen.add(number)
            else:
                return False
    except OSError:
        return False
    return 1 in seen and 7 in seen


# ------------------------------------------------- formats beyond torch/Keras (their own modules)
# Each module keeps its own `detect(path, head)`; imported only when the cheaper checks before
# it did not match, so auditing a safetensors file never imports the GGUF or TF readers.


def _is_gguf(p: Probe) -> bool:
    return p.head.startswith(b"GGUF")


def _is_flax_msgpack(p: Probe) -> bool:
    from . import flax_loader

    return flax_loader.detect(p.path, p.head)


def _is_tf_savedmodel(p: Probe) -> bool:
    from .tensorflow import savedmodel

    return savedmodel.detect(p.path, p.head)


def _is_tflite(p: Probe) -> bool:
    return len(p.head) >= 8 and p.head[4:8] == b"TFL3"  # the flatbuffer file identifier


def _is_keras_sharded(p: Probe) -> bool:
    from . import keras_sharded

    return keras_sharded.detect(p.path, p.head)


def _is_joblib(p: Probe) -> bool:
    from . import joblib_loader

    # joblib writes raw array bytes between pickle opcodes, so the opcode walk of `is_pickle`
    # may stop inside them: a PROTO header and joblib's wrapper class name decide
    return p.head[:1] == b"\x80" and joblib_loader.detect(p.path, p.head)


def _is_tf_checkpoint(p: Probe) -> bool:
    from .tensorflow import checkpoint

    return checkpoint.detect(p.path, p.head)


# ------------------------------------------------------------------------------------- table


def _is_hdf5(p: Probe) -> bool:
    return p.head.startswith(HDF5_MAGIC)


# Order matters: containers with a fixed signature first, then safetensors (its header length
# may begin with 0x80), then pickle, then ONNX (whose first byte is any protobuf key).
FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec("keras", _zip_detector("keras"), "keras_loader", (".keras",)),
    FormatSpec("npz", _zip_detector("npz"), "npz_loader", (".npz",)),
    FormatSpec("pt2-aoti", _zip_detector("pt2-aoti"), "aoti_loader", ()),
    FormatSpec("pt2", _zip_detector("pt2"), "torch_loader", (".pt2",)),
    FormatSpec("torchscript", _zip_detector("torchscript"), "torch_loader", (".pt", ".pth")),
    FormatSpec(
        "pytorch-zip",
        _zip_detector("pytorch-zip"),
        "torch_loader",
        (".pt", ".pth", ".bin", ".ckpt"),
    ),
    FormatSpec("keras-h5", _is_hdf5, "keras_loader", (".h5", ".hdf5")),
    FormatSpec("gguf", _is_gguf, "gguf_loader", (".gguf",)),
    FormatSpec(
        "safetensors",
        is_safetensors,
        "safetensors_loader",
        (".safetensors",),
        near_miss=lambda p: (
            p.size >= 10
            and p.head[8:9] == b"{"
            and 2 <= int.from_bytes(p.head[:8], "little") <= p.size - 8
        ),
    ),
    # after safetensors (the common case never imports their readers), before pickle and ONNX:
    # a tf.train data shard is raw bytes, saved_model.pb is protobuf
    FormatSpec("keras-sharded", _is_keras_sharded, "keras_sharded", ()),
    FormatSpec("tf-savedmodel", _is_tf_savedmodel, "tensorflow.savedmodel", ()),
    FormatSpec("tf-checkpoint", _is_tf_checkpoint, "tensorflow.checkpoint", ()),
    # joblib files are pickles naming joblib's array wrapper: before the generic pickle row
    FormatSpec("joblib", _is_joblib, "joblib_loader", (".joblib",)),
    FormatSpec(
        "pytorch-legacy",
        is_pickle,
        "torch_loader",
        (".pt", ".pth", ".bin", ".ckpt", ".pkl"),
        near_miss=lambda p: (
            p.head[:1] == b"\x80" and p.head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
        ),
    ),
    # after the pickle rows: a pickle may carry "TFL3" at bytes 4..8 (and would then be read as
    # a flatbuffer and never scanned)
    FormatSpec("tflite", _is_tflite, "tensorflow.tflite", (".tflite",)),
    # a msgpack map's first byte is 0x80-0x8f/0xde/0xdf: after safetensors and pickle
    FormatSpec("flax-msgpack", _is_flax_msgpack, "flax_loader", (".msgpack",)),
    FormatSpec(
        "onnx",
        is_onnx,
        "onnx",
        (".onnx",),
        near_miss=lambda p: len(p.head) > 2 and p.head[0] in (0x08, 0x12, 0x1A),
    ),
)
SHARDED = FormatSpec("safetensors-sharded", lambda p: False, "safetensors_loader", ())
# folders that are one checkpoint (detected by `loaders.detect_format` on the directory)
DIRECTORY_SPECS: tuple[FormatSpec, ...] = (
    SHARDED,
    FormatSpec("orbax", lambda p: False, "orbax_loader", ()),
    FormatSpec("torch-distcp", lambda p: False, "torch_distcp", ()),
    FormatSpec("keras-dir", lambda p: False, "keras_loader", ()),
)
BY_NAME: dict[str, FormatSpec] = {f.name: f for f in (*FORMATS, *DIRECTORY_SPECS)}
MODEL_EXTENSIONS: frozenset[str] = frozenset(e for f in FORMATS for e in f.extensions) - {
    ".pkl",
    ".hdf5",
}


def looks_like_text(head: bytes) -> bool:
    """True for UTF-8 text without control characters (source, Markdown, CSV, JSON...). No
    checkpoint format starts that way: each begins with a NUL, a control byte or 0x80+."""
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the probe's end is still text; a short file is not cut
        if len(head) < PROBE_BYTES or exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return bool(text) and all(c >= " " or c in "\t\n\r\f" for c in text)


def probe(path: str | os.PathLike[str]) -> Probe:
    """Stat and read the head of ``path`` without opening anything but a regular file."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise LoadError("no such file") from None
    except OSError as exc:
        raise LoadError(f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise LoadError(f"not a regular file ({file_kind(st.st_mode)})")
    if st.st_size == 0:
        raise UnsupportedFormat("is empty (0 bytes)")
    try:
        with open(p, "rb") as fh:
            head = fh.read(PROBE_BYTES)
    except OSError as exc:
        raise LoadError(f"cannot be read ({exc.strerror or exc})") from None
    return Probe(path=p, size=st.st_size, head=head)


def file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def detect(p: Probe, *, strict: bool = False) -> FormatSpec:
    """The format of the probed file; UnsupportedFormat (one line) otherwise. ``strict``
    (discovery) leaves out the near-miss fallbacks."""
    head = p.head
    if head.startswith(b"version https://git-lfs"):
        raise UnsupportedFormat(
            "is a Git LFS pointer file, not the model: run `git lfs pull` first"
        )
    if is_old_pickle(p):  # before the text check: a protocol-0 pickle is ASCII
        return BY_NAME["pytorch-legacy"]
    if p.head.lstrip()[:1] == b"{" and _is_keras_sharded(p):  # its index is a JSON file
        return BY_NAME["keras-sharded"]
    if looks_like_text(head):
        raise UnsupportedFormat(describe_unknown(head))
    for spec in FORMATS:
        if spec.detect(p):
            return spec
    if _is_zip(p):
        raise UnsupportedFormat(
            "is a zip archive that is neither a torch, Keras, .pt2 nor .npz checkpoint"
        )
    named = recognised_unsupported(p)
    if named is not None:  # before the near misses: a renamed saved_model.pb is not bad ONNX
        raise UnsupportedFormat(named)
    if not strict:
        for spec in FORMATS:
            if spec.near_miss is not None and spec.near_miss(p):
                return spec
    raise UnsupportedFormat(describe_unknown(head))


def _is_savedmodel_proto(p: Probe) -> bool:
    """SavedModel{saved_model_schema_version 1 = 1, meta_graphs 2 (repeated)}: the top-level
    fields, skipped by length, end exactly at the end of the file."""
    if not p.head.startswith(b"\x08\x01\x12"):
        return False
    try:
        with open(p.path, "rb") as fh:
            fh.seek(2)
            for _ in range(_MAX_TOP_FIELDS):
                if fh.tell() == p.size:
                    return True
                if _varint(fh) != 0x12:
                    return False
                n = _varint(fh)
                if n is None or fh.tell() + n > p.size:
                    return False
                fh.seek(n, os.SEEK_CUR)
    except OSError:
        return False
    return False


def _is_graphdef(head: bytes) -> bool:
    """GraphDef{node 1 = NodeDef{name 1, op 2, ...}}: a frozen TensorFlow graph (.pb)."""
    if len(head) < 8 or head[0] != 0x0A:
        return False
    pos, value = 1, 0
    for shift in range(0, 35, 7):  # the NodeDef's length
        if pos >= len(head):
            return False
        value |= (head[pos] & 0x7F) << shift
        pos += 1
        if not head[pos - 1] & 0x80:
            break
    if pos >= len(head) or head[pos] != 0x0A or pos + 1 >= len(head):
        return False
    name_len = head[pos + 1]
    op_at = pos + 2 + name_len
    if name_len >= 0x80 or op_at + 2 >= len(head) or head[op_at] != 0x12:
        return False
    op = head[op_at + 2 : op_at + 2 + head[op_at + 1]]
    return 0 < len(op) == head[op_at + 1] and op.isascii() and op.decode().isidentifier()


def recognised_unsupported(p: Probe) -> str | None:
    """Formats initaudit recognises but does not read: the refusal names them (issue 15)."""
    head = p.head
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg"):  # 'ggml'/'ggmf'/'ggjt' as little-endian u32
        return (
            "is a legacy GGML/GGMF/GGJT file (llama.cpp before GGUF): not supported; "
            "convert it to GGUF (llama.cpp's convert scripts)"
        )
    if _is_savedmodel_proto(p):
        return (
            "is a TensorFlow SavedModel graph (saved_model.pb) outside its folder: audit the "
            "SavedModel folder, whose variables/ holds the weights"
        )
    from .tensorflow.checkpoint import _tail_is_table

    if _tail_is_table(p.path):
        return (
            "is a TensorFlow checkpoint index (a tensor_bundle table) under another name: "
            "audit it as <prefix>.index beside its <prefix>.data-* shards"
        )
    if _is_graphdef(head):
        return (
            "is a TensorFlow GraphDef (a frozen .pb graph, weights folded into constants): not "
            "supported; audit the SavedModel or checkpoint it was frozen from"
        )
    return None


def describe_unknown(head: bytes) -> str:
    text = head.lstrip()
    if text.startswith(b"{") and (b'"weightsManifest"' in text or b'"modelTopology"' in text):
        return (
            "is a TensorFlow.js model.json: not supported (its weights are the binary shards "
            "its weightsManifest lists)"
        )
    if text.startswith(b"<?xml") and b"<net " in text:
        return "is an OpenVINO IR model (.xml + .bin): not supported"
    if text.startswith((b"{", b"[")):
        return "is a JSON file, not a checkpoint"
    if text[:5].lower() in (b"<!doc", b"<html"):
        return "is an HTML page, not a checkpoint (a failed download?)"
    if head.startswith(b"\x93NUMPY"):
        return "is a single .npy array (use .npz for named arrays)"
    if head.startswith(b"\x1f\x8b"):
        return "is gzip-compressed: decompress it first"
    if looks_like_text(head[:64]):
        return "is a text file, not a checkpoint"
    if head[:1] == b"\x80":
        return "is not a recognised checkpoint (starts like a pickle, but its opcodes do not parse)"
    return (
        "is not a recognised checkpoint format (ONNX, PyTorch, safetensors, Keras, .npz, "
        "GGUF, Flax msgpack, orbax, TensorFlow checkpoint/SavedModel, TFLite, joblib)"
    )


__all__ = [
    "BY_NAME",
    "FORMATS",
    "MODEL_EXTENSIONS",
    "FormatSpec",
    "Probe",
    "detect",
    "is_onnx",
    "is_pickle",
    "is_safetensors",
    "looks_like_text",
    "probe",
]
