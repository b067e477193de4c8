"""Turn command-line paths into the list of checkpoints to audit.

- A file named on the command line is audited as given (even an unsupported one: the engine
  says why it cannot be read, the run exits 2). A missing path without glob characters is kept
  too, for the same reason.
- A directory is walked recursively; checkpoints are recognised by CONTENT
  (:func:`initaudit.loaders.detect_format`), not by name. A file the detector rejects is skipped
  silently, unless its extension says it is a model file (``.onnx``, ``.pt``...): then it is
  kept, and reported as unreadable (a Git LFS pointer, a truncated download...) rather than
  silently passed over. A folder holding ``model.safetensors.index.json`` is ONE input (a
  sharded safetensors repository), its shards are not audited one by one. Hidden folders and
  the usual tool folders (``.git``, ``__pycache__``, ``node_modules``, virtualenvs) are skipped.
- A glob (``'models/**/*.onnx'``, quoted so that the shell leaves it alone) is expanded with
  ``glob.glob(recursive=True)``; matches are filtered like a directory's content.
- ``include`` / ``exclude`` globs filter what directories and globs produce (not files named
  explicitly). A pattern is tried on the path relative to the directory walked, on the path as
  typed and on the file name; ``exclude`` also prunes folders.

Order is deterministic: arguments in the order given, each one's expansion sorted, duplicates
dropped. An argument that yields nothing is a :class:`DiscoveryError` (exit 2): a CI job
pointed at the wrong folder must fail, not pass on zero files.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

MODEL_EXTENSIONS = frozenset({".onnx", ".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".keras",
                              ".h5", ".npz", ".pt2"})
SHARD_INDEX = "model.safetensors.index.json"
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv",
                          ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache"})


class DiscoveryError(Exception):
    """A path or pattern that yields no checkpoint: one line, exit 2."""


@dataclass(frozen=True)
class Input:
    """One thing to audit; ``problem`` says why an argument yielded nothing (the CLI reports
    it as an unreadable input, exit 2, like a missing file)."""

    path: str
    problem: str | None = None


@dataclass(frozen=True)
class Filters:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def keeps_file(self, candidates: list[str]) -> bool:
        if self.exclude and _any_match(candidates, self.exclude):
            return False
        return not self.include or _any_match(candidates, self.include)

    def prunes_dir(self, candidates: list[str]) -> bool:
        return bool(self.exclude) and _any_match(candidates, self.exclude)


def _any_match(candidates: list[str], patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.replace(os.sep, "/").removeprefix("./")
        for c in candidates:
            # "legacy/**" should also match the folder "legacy" itself
            if fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.removesuffix("/**")):
                return True
    return False


def _candidates(path: str, root: str | None) -> list[str]:
    out = [path.replace(os.sep, "/").removeprefix("./"), os.path.basename(path)]
    if root is not None:
        out.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return out


def is_sharded_repo(path: str) -> bool:
    if os.path.isfile(os.path.join(path, SHARD_INDEX)):
        return True
    # torch.distributed.checkpoint folder: .metadata + __<rank>_<n>.distcp files are ONE model
    # (each .distcp alone is several archives end to end, not a checkpoint of its own)
    return os.path.isfile(os.path.join(path, ".metadata")) and any(
        n.endswith(".distcp") for n in os.listdir(path))


def discover(args: Iterable[str], include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[str]:
    """The checkpoints to audit for the command-line ``args``; DiscoveryError for an argument
    that yields none."""
    out = []
    for item in discover_inputs(args, include, exclude):
        if item.problem is not None:
            raise DiscoveryError(f"{item.path}: {item.problem}")
        out.append(item.path)
    return out


def discover_inputs(args: Iterable[str], include: Iterable[str] = (),
                    exclude: Iterable[str] = ()) -> list[Input]:
    """Like :func:`discover`, but an argument that yields nothing becomes an Input with a
    ``problem`` instead of an exception (the other arguments are still audited)."""
    filters = Filters(tuple(include), tuple(exclude))
    seen: set[str] = set()
    out: list[Input] = []
    for arg in args:
        try:
            found = list(_expand(arg, filters))
        except DiscoveryError as exc:
            out.append(Input(arg, str(exc).removeprefix(f"{arg}: ")))
            continue
        for path in found:
            key = os.path.normcase(os.path.abspath(path))
            if key not in seen:
                seen.add(key)
                out.append(Input(path))
    return out


def _expand(arg: str, filters: Filters) -> Iterator[str]:
    if os.path.isdir(arg):
        found = _walk(arg, filters)
        if not found:
            raise DiscoveryError(f"{arg}: no checkpoint found in this directory"
                                 + (" (after --include/--exclude)" if filters.include or filters.exclude else ""))
        yield from found
    elif os.path.lexists(arg) or not glob.has_magic(arg):
        yield arg  # explicit file (or a missing one: the engine reports it)
    else:
        matches = sorted(glob.glob(arg, recursive=True))
        if not matches:
            raise DiscoveryError(f"{arg}: no file matches this pattern")
        found = []
        for m in matches:
            if os.path.isdir(m):
                # 'models/*' matching a folder walks it, like the shell's expansion would; with
                # '**' the pattern reaches the files itself (only a sharded repo is taken whole)
                if "**" not in arg or is_sharded_repo(m):
                    found.extend(_walk(m, filters))
                continue
            if filters.keeps_file(_candidates(m, None)) and (
                    _detects(m) or (has_model_extension(m) and not _is_onnx_external_data(m))):
                found.append(os.path.normpath(m))
        # a sharded repository found through a glob is one input; its shards are not repeated
        shard_dirs = {os.path.abspath(p) for p in found if os.path.isdir(p)}
        found = [p for p in found if os.path.isdir(p) or os.path.abspath(os.path.dirname(p)) not in shard_dirs]
        if not found:
            raise DiscoveryError(f"{arg}: no checkpoint among the {len(matches)} matching "
                                 f"path{'s' if len(matches) != 1 else ''}")
        yield from sorted(dict.fromkeys(found))


def _walk(root: str, filters: Filters) -> list[str]:
    if is_sharded_repo(root):
        return [root]
    found: list[str] = []
    rejected: list[str] = []
    for directory, dirs, files in os.walk(root):
        kept_dirs = []
        for d in sorted(dirs):
            full = os.path.join(directory, d)
            if d in SKIPPED_DIRS or d.startswith(".") or filters.prunes_dir(_candidates(full, root)):
                continue
            if is_sharded_repo(full):
                if filters.keeps_file(_candidates(full, root)):
                    found.append(full)
                continue  # one input: do not descend into the shards
            kept_dirs.append(d)
        dirs[:] = kept_dirs
        for name in sorted(files):
            full = os.path.join(directory, name)
            if name.startswith(".") or not filters.keeps_file(_candidates(full, root)):
                continue
            if _detects(full):
                found.append(full)
            elif has_model_extension(full):
                rejected.append(full)
    found.extend(p for p in rejected if not _is_onnx_external_data(p))
    return sorted(os.path.normpath(p) for p in found)  # "./models/a.onnx" -> "models/a.onnx"


def has_model_extension(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in MODEL_EXTENSIONS


def _detects(path: str) -> bool:
    """True if the content is a checkpoint format initaudit reads."""
    from .loaders import detect_format
    from .model import LoadError

    try:
        detect_format(path)
    except (LoadError, OSError):  # UnsupportedFormat is a LoadError
        return False
    return True


def _is_onnx_external_data(path: str) -> bool:
    """True if an ONNX model in the same folder keeps its weights in ``path`` (``weights.bin``
    is not a checkpoint of its own and must not be reported as an unreadable one)."""
    folder = os.path.dirname(path) or "."
    target = os.path.basename(path)
    for name in os.listdir(folder):
        if name.lower().endswith(".onnx") and target in _external_locations(os.path.join(folder, name)):
            return True
    return False


def _external_locations(onnx_path: str) -> set[str]:
    try:
        import onnx

        # the graph only: external tensors are not read (and never followed out of the folder)
        model = onnx.load(onnx_path, load_external_data=False)
    except Exception:  # not ours to judge here: the audit will say what is wrong with it
        return set()
    out: set[str] = set()
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                out.add(os.path.basename(entry.value))
    return out


__all__ = ["DiscoveryError", "Input", "discover_inputs", "MODEL_EXTENSIONS", "discover", "has_model_extension", "is_sharded_repo"]
