"""Turn command-line paths into the list of checkpoints to audit.

- A file named on the command line is audited as given (even an unsupported one: the engine
  says why it cannot be read, the run exits 2). A missing path without glob characters is kept
  too, for the same reason.
- A directory is walked recursively; a file is a candidate when its CONTENT proves a supported
  format (the structural checks of :mod:`initaudit.loaders.formats`; a text file never does)
  or its extension is a model extension (``.onnx``, ``.pt``...: then it is kept even when the
  content is wrong, and reported as unreadable: a Git LFS pointer, a truncated download).
  Every other file is passed over silently and counted (:class:`DiscoveryStats`). A folder
  holding ``model.safetensors.index.json`` is ONE input (a sharded safetensors repository).
- What git ignores is not walked: ``.gitignore`` files (from the repository root down, and
  ``.git/info/exclude``), matched with ``pathspec``'s gitwildmatch rules; also, always, hidden
  folders, ``__pycache__``, ``node_modules``, virtualenvs (any folder with ``pyvenv.cfg``) and
  build output (``build``, ``dist``, ``*.egg-info``). ``respect_ignore=False`` (``--no-ignore``)
  walks everything but ``.git``. Explicit arguments are never filtered.
- FIFOs, sockets and devices are never opened: they are listed in ``DiscoveryStats.not_regular``
  and skipped (an explicit one is an unreadable input).
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
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .loaders.formats import MODEL_EXTENSIONS

if TYPE_CHECKING:  # pragma: no cover - pathspec is imported lazily, only when a .gitignore exists
    from pathspec import GitIgnoreSpec

SHARD_INDEX = "model.safetensors.index.json"
# folders never walked (unless --no-ignore, which still skips the VCS folders): tool caches,
# dependencies, virtualenvs and build output (`pip install .` leaves a copy of the repository
# in build/)
SKIPPED_DIRS = frozenset(
    {
        "__pycache__",
        "node_modules",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "build",
        "dist",
        "site-packages",
    }
)
VCS_DIRS = frozenset({".git", ".hg", ".svn"})


@dataclass
class DiscoveryStats:
    """What a directory walk looked at: every regular file seen, the models kept, the folders
    and files left out by ignore rules, and the non-regular files passed over."""

    looked_at: int = 0
    models: int = 0
    ignored: int = 0
    not_regular: list[tuple[str, str]] = field(default_factory=list)  # (path, kind)
    walked: bool = False  # a directory or glob was expanded (otherwise: explicit files only)

    def line(self) -> str:
        files = "file" if self.looked_at == 1 else "files"
        models = "model" if self.models == 1 else "models"
        text = f"{self.looked_at} {files} looked at, {self.models} {models}"
        if self.ignored:
            text += f" ({self.ignored} ignored path{'s' if self.ignored != 1 else ''} not walked)"
        return text


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
    from .loaders import is_model_directory  # SavedModel / orbax / TF checkpoint folders

    return is_model_directory(path)


def discover(
    args: Iterable[str],
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    *,
    respect_ignore: bool = True,
    stats: DiscoveryStats | None = None,
) -> list[str]:
    """The checkpoints to audit for the command-line ``args``; DiscoveryError for an argument
    that yields none."""
    out = []
    for item in discover_inputs(args, include, exclude, respect_ignore=respect_ignore, stats=stats):
        if item.problem is not None:
            raise DiscoveryError(f"{item.path}: {item.problem}")
        out.append(item.path)
    return out


def discover_inputs(
    args: Iterable[str],
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    *,
    respect_ignore: bool = True,
    stats: DiscoveryStats | None = None,
) -> list[Input]:
    """Like :func:`discover`, but an argument that yields nothing becomes an Input with a
    ``problem`` instead of an exception (the other arguments are still audited). ``stats``,
    when given, is filled with what the walk looked at."""
    walker = _Walker(
        Filters(tuple(include), tuple(exclude)),
        respect_ignore,
        stats if stats is not None else DiscoveryStats(),
    )
    seen: set[str] = set()
    out: list[Input] = []
    for arg in args:
        try:
            found = list(walker.expand(arg))
        except DiscoveryError as exc:
            out.append(Input(arg, str(exc).removeprefix(f"{arg}: ")))
            continue
        for path in found:
            key = os.path.normcase(os.path.abspath(path))
            if key not in seen:
                seen.add(key)
                out.append(Input(path))
    return out


class _Walker:
    """One discovery run: the filters, the ignore rules, the stats and the per-run caches (each
    file is probed once; each folder's ONNX external-data names are read once)."""

    def __init__(self, filters: Filters, respect_ignore: bool, stats: DiscoveryStats) -> None:
        self.filters = filters
        self.respect_ignore = respect_ignore
        self.stats = stats
        self._external: dict[str, set[str]] = {}
        self._ignores: dict[str, _IgnoreFile | None] = {}
        self._chains: dict[str, list[_IgnoreFile]] = {}

    # --------------------------------------------------------------------------- arguments

    def expand(self, arg: str) -> Iterator[str]:
        filters = self.filters
        if os.path.isdir(arg):
            self.stats.walked = True
            found = self.walk(arg)
            if not found:
                raise DiscoveryError(
                    f"{arg}: no checkpoint found in this directory"
                    + (" (after --include/--exclude)" if filters.include or filters.exclude else "")
                )
            yield from found
        elif os.path.lexists(arg):
            yield arg  # explicit file
        else:
            import glob  # a missing path or a pattern only (start-up: auditing files needs none)

            if not glob.has_magic(arg):
                yield arg  # a missing file: the engine reports it
                return
            self.stats.walked = True
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                raise DiscoveryError(f"{arg}: no file matches this pattern")
            found = []
            for m in matches:
                if os.path.isdir(m):
                    # 'models/*' matching a folder walks it, like the shell's expansion would; with
                    # '**' the pattern reaches the files itself (only a sharded repo is taken whole)
                    if "**" not in arg or is_sharded_repo(m):
                        found.extend(self.walk(m))
                    continue
                if filters.keeps_file(_candidates(m, None)) and self.is_candidate(m):
                    found.append(os.path.normpath(m))
            # a sharded repository found through a glob is one input; its shards are not repeated
            shard_dirs = {os.path.abspath(p) for p in found if os.path.isdir(p)}
            found = [
                p
                for p in found
                if os.path.isdir(p) or os.path.abspath(os.path.dirname(p)) not in shard_dirs
            ]
            if not found:
                raise DiscoveryError(
                    f"{arg}: no checkpoint among the {len(matches)} matching "
                    f"path{'s' if len(matches) != 1 else ''}"
                )
            yield from sorted(dict.fromkeys(found))

    # ------------------------------------------------------------------------------ walking

    def walk(self, root: str) -> list[str]:
        if is_sharded_repo(root):
            self.stats.models += 1
            return [root]
        filters = self.filters
        found: list[str] = []
        for directory, dirs, files in os.walk(root):
            kept_dirs = []
            for d in sorted(dirs):
                full = os.path.join(directory, d)
                if d in VCS_DIRS or filters.prunes_dir(_candidates(full, root)):
                    continue
                if self.respect_ignore and (
                    self._default_skip(d, full) or self.ignored(full, is_dir=True)
                ):
                    self.stats.ignored += 1
                    continue
                if is_sharded_repo(full):
                    if filters.keeps_file(_candidates(full, root)):
                        found.append(full)
                        self.stats.models += 1
                    continue  # one input: do not descend into the shards
                kept_dirs.append(d)
            dirs[:] = kept_dirs
            for name in sorted(files):
                full = os.path.join(directory, name)
                if not filters.keeps_file(_candidates(full, root)):
                    continue
                if self.respect_ignore and (
                    name.startswith(".") or self.ignored(full, is_dir=False)
                ):
                    self.stats.ignored += 1
                    continue
                if self.is_candidate(full):
                    found.append(full)
        return sorted(os.path.normpath(p) for p in found)  # "./models/a.onnx" -> "models/a.onnx"

    def is_candidate(self, path: str) -> bool:
        """A regular file whose content proves a format, or one named like a model file (kept
        to be reported as unreadable), except an ONNX model's external-data file."""
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        if not stat.S_ISREG(mode):
            from .loaders.formats import file_kind

            self.stats.not_regular.append((path, file_kind(mode)))
            return False
        self.stats.looked_at += 1
        keep = _detects(path) or (has_model_extension(path) and not self._is_external_data(path))
        self.stats.models += keep
        return keep

    @staticmethod
    def _default_skip(name: str, full: str) -> bool:
        return (
            name.startswith(".")
            or name in SKIPPED_DIRS
            or name.endswith(".egg-info")
            or os.path.isfile(os.path.join(full, "pyvenv.cfg"))
        )

    # ------------------------------------------------------------------------- ignore files

    def ignored(self, path: str, *, is_dir: bool) -> bool:
        """True when a ``.gitignore`` between the repository root and ``path`` ignores it (the
        deepest file that says something decides, as in git)."""
        absolute = os.path.abspath(path)
        verdict: bool | None = None
        for rules in self._rules_for(os.path.dirname(absolute)):
            rel = os.path.relpath(absolute, rules.base).replace(os.sep, "/")
            decided = rules.check(rel + ("/" if is_dir else ""))
            if decided is not None:
                verdict = decided
        return bool(verdict)

    def _rules_for(self, folder: str) -> list[_IgnoreFile]:
        if folder not in self._chains:  # one walk up per folder, not per file
            self._chains[folder] = self._chain(folder)
        return self._chains[folder]

    def _chain(self, folder: str) -> list[_IgnoreFile]:
        chain: list[_IgnoreFile] = []
        current = Path(folder)
        for directory in (current, *current.parents):
            rules = self._load(str(directory))
            if rules is not None:
                chain.append(rules)
            if (directory / ".git").exists():
                exclude = self._load(
                    str(directory / ".git" / "info"), base=str(directory), name="exclude"
                )
                if exclude is not None:
                    chain.append(exclude)
                break  # the repository root: .gitignore files above it do not apply
        return list(reversed(chain))  # shallowest first: deeper files override

    def _load(
        self, directory: str, *, base: str | None = None, name: str = ".gitignore"
    ) -> _IgnoreFile | None:
        key = os.path.join(directory, name)
        if key not in self._ignores:
            self._ignores[key] = _IgnoreFile.read(key, base or directory)
        return self._ignores[key]

    # ------------------------------------------------------------------ onnx external data

    def _is_external_data(self, path: str) -> bool:
        """True if an ONNX model in the same folder keeps its weights in ``path`` (``weights.bin``
        is not a checkpoint of its own and must not be reported as an unreadable one)."""
        folder = os.path.dirname(path) or "."
        key = os.path.abspath(folder)
        if key not in self._external:  # every .onnx of a folder read once per run
            names: set[str] = set()
            for name in sorted(os.listdir(folder)):
                full = os.path.join(folder, name)
                if name.lower().endswith(".onnx") and os.path.isfile(full):
                    names |= _external_locations(full)
            self._external[key] = names
        return os.path.basename(path) in self._external[key]


@dataclass(frozen=True)
class _IgnoreFile:
    """One ``.gitignore`` (or ``.git/info/exclude``), matched with pathspec's git rules."""

    base: str
    spec: GitIgnoreSpec

    @classmethod
    def read(cls, path: str, base: str) -> _IgnoreFile | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            return None
        import pathspec

        return cls(base=base, spec=pathspec.GitIgnoreSpec.from_lines(lines))

    def check(self, rel: str) -> bool | None:
        if rel.startswith(".."):
            return None
        return self.spec.check_file(rel).include


def has_model_extension(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in MODEL_EXTENSIONS


def _detects(path: str) -> bool:
    """True if the content is a checkpoint format initaudit reads."""
    from .loaders import detect_format
    from .model import LoadError

    try:
        detect_format(path, strict=True)
    except (LoadError, OSError):  # UnsupportedFormat is a LoadError
        return False
    return True


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


__all__ = [
    "MODEL_EXTENSIONS",
    "DiscoveryError",
    "DiscoveryStats",
    "Input",
    "discover",
    "discover_inputs",
    "has_model_extension",
    "is_sharded_repo",
]
