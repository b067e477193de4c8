"""Project configuration: ``[tool.initaudit]`` in ``pyproject.toml`` or an ``initaudit.toml``.

The file is found from the working directory upward: in each folder ``initaudit.toml`` is
looked at first, then ``pyproject.toml`` if it has a ``[tool.initaudit]`` table; the first hit
wins (ruff's rule). ``--config FILE`` names the file instead, and command-line options override
what the file says. Keys are kebab-case, like ruff's::

    [tool.initaudit]
    select = ["IA1", "constant-weights"]   # codes, names or code prefixes; empty = every rule
    extend-select = []                     # added to select
    ignore = ["IA301"]
    extend-ignore = []
    fail-on = "warning"                    # error | warning | info
    min-confidence = 0.5
    severity = { IA103 = "error", "nonzero-mean" = "info" }
    activation = { "encoder.*.fc1" = "gelu" }   # or ["encoder.*.fc1=gelu"]
    include = ["*.onnx", "*.safetensors"]  # directory discovery
    exclude = ["legacy/**"]
    jobs = 4
    format = "human"
    allow-partial = false                  # true: a partly audited file exits 0, not 3

    [[tool.initaudit.per-tensor-ignores]]
    pattern = "embed*"                     # glob over tensor or layer names
    rules = ["IA201"]                      # codes, names or prefixes; omitted = every rule
    reason = "embeddings are loaded from a pretrained table"   # required
    path = "models/legacy/*.onnx"          # optional glob over checkpoint paths

Every mistake (unknown key or rule, wrong type, missing reason) is a :class:`ConfigError` whose
message names the file, the key and the problem on one line: a typo must not silently turn a
check off. This module imports no numpy: ``initaudit config`` stays fast.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import Finding, Severity
from .settings import AuditConfig, TensorIgnore

if TYPE_CHECKING:  # pragma: no cover - the rules package is imported lazily
    from .rules.base import Rule

PYPROJECT = "pyproject.toml"
OWN_FILE = "initaudit.toml"
DEFAULT = "default"
COMMAND_LINE = "command line"

# key -> (description for `initaudit config` and errors)
KEYS: dict[str, str] = {
    "select": "rules to run (codes, names or prefixes); empty = every rule",
    "extend-select": "rules added to select",
    "ignore": "rules left out",
    "extend-ignore": "rules left out, added to ignore",
    "fail-on": "exit 1 at or above this severity",
    "min-confidence": "drop findings less certain than this",
    "severity": "per-rule severity overrides",
    "activation": "activation hints PATTERN=ACT for files without a graph",
    "per-tensor-ignores": "suppressions by tensor/layer glob, with a reason",
    "include": "globs a file found in a directory must match",
    "exclude": "globs of files and folders skipped in directories",
    "jobs": "parallel processes (0 = one per CPU)",
    "format": "output format",
    "allow-partial": "exit 0 (not 3) when a file was only partly audited",
}
_IGNORE_KEYS = ("pattern", "rules", "reason", "path")


class ConfigError(Exception):
    """A problem in a configuration file: one line naming the file, the key and the problem."""


# ------------------------------------------------------------------------------ resolved values


@dataclass(frozen=True)
class PathTensorIgnore(TensorIgnore):
    """A per-tensor ignore whose ``path`` glob is also tried relative to the config's folder.

    The engine sees file paths as typed on the command line (``models/a.onnx``,
    ``../a.onnx``, absolute...); a glob written in a config file means a path from the file's
    folder, so both are tried, plus the file name alone."""

    base_dir: str = ""

    def applies(self, finding: Finding, file_path: str) -> bool:
        if self.path is None:
            return super().applies(finding, file_path)
        if not any(
            fnmatch.fnmatch(candidate, self.path) for candidate in self._candidates(file_path)
        ):
            return False
        return TensorIgnore(self.pattern, self.rules, self.reason, None).applies(finding, file_path)

    def _candidates(self, file_path: str) -> list[str]:
        out = [file_path.replace(os.sep, "/"), os.path.basename(file_path)]
        if self.base_dir and not file_path.startswith("<"):
            try:
                rel = os.path.relpath(os.path.abspath(file_path), self.base_dir)
                out.append(rel.replace(os.sep, "/"))
            except ValueError:  # another drive on Windows
                pass
        return out


@dataclass
class Settings:
    """The effective configuration, and where each value came from."""

    select: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    extend_ignore: tuple[str, ...] = ()
    fail_on: Severity = Severity.ERROR
    min_confidence: float = 0.0
    severity: dict[str, Severity] = field(default_factory=dict)
    activation: tuple[str, ...] = ()
    per_tensor_ignores: tuple[TensorIgnore, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    jobs: int = 1
    format: str = "human"
    allow_partial: bool = False
    file: Path | None = None  # the config file read, if any
    sources: dict[str, str] = field(default_factory=dict)  # key -> default / FILE / command line

    def source(self, key: str) -> str:
        return self.sources.get(key, DEFAULT)

    def effective_select(self) -> tuple[str, ...]:
        # an empty select means every rule: extend-select adds nothing to "everything"
        if not self.select:
            return ()
        return tuple(dict.fromkeys((*self.select, *self.extend_select)))

    def effective_ignore(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.ignore, *self.extend_ignore)))

    def audit_config(self) -> AuditConfig:
        from .activations import ActivationHint

        return AuditConfig(
            select=self.effective_select(),
            ignore=self.effective_ignore(),
            fail_on=self.fail_on,
            min_confidence=self.min_confidence,
            hints=tuple(ActivationHint.parse(h) for h in self.activation),
            severity_overrides=dict(self.severity),
            tensor_ignores=self.per_tensor_ignores,
        )

    def to_dict(self) -> dict[str, Any]:
        """Every key with its value and source (``initaudit config --format json``)."""
        values: dict[str, Any] = {
            "select": list(self.select),
            "extend-select": list(self.extend_select),
            "ignore": list(self.ignore),
            "extend-ignore": list(self.extend_ignore),
            "fail-on": self.fail_on.value,
            "min-confidence": self.min_confidence,
            "severity": {k: v.value for k, v in self.severity.items()},
            "activation": list(self.activation),
            "per-tensor-ignores": [_ignore_dict(ig) for ig in self.per_tensor_ignores],
            "include": list(self.include),
            "exclude": list(self.exclude),
            "jobs": self.jobs,
            "format": self.format,
            "allow-partial": self.allow_partial,
        }
        return {
            "config_file": str(self.file) if self.file else None,
            "settings": {k: {"value": values[k], "source": self.source(k)} for k in KEYS},
        }


def _ignore_dict(ig: TensorIgnore) -> dict[str, Any]:
    return {"pattern": ig.pattern, "rules": list(ig.rules), "reason": ig.reason, "path": ig.path}


# ------------------------------------------------------------------------------------ finding


def find_config_file(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The first ``initaudit.toml``, or ``pyproject.toml`` with ``[tool.initaudit]``, from
    ``start`` (default: the working directory) up to the filesystem root."""
    folder = Path(start or os.getcwd()).resolve()
    for directory in (folder, *folder.parents):
        own = directory / OWN_FILE
        if own.is_file():
            return own
        pyproject = directory / PYPROJECT
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
    return None


class _TomlError(ValueError):
    """tomllib's TOMLDecodeError, same message: the parser is imported on first use."""


def _load_toml(text: str) -> dict[str, Any]:
    # imported here: most audits find no config file and never parse TOML
    if sys.version_info >= (3, 11):  # pragma: no cover - version dependent
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _TomlError(str(exc)) from None


def _has_tool_table(path: Path) -> bool:
    # a broken pyproject.toml is only our business when it mentions us: checking the text
    # first keeps a half-written pyproject of another tool from failing every audit
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "tool.initaudit" not in text:
        return False
    try:
        data = _load_toml(text)
    except _TomlError:
        return True  # it mentions us: load_file reports the syntax error
    return isinstance(data.get("tool"), dict) and "initaudit" in data["tool"]


# ------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class FileConfig:
    """The validated keys of one config file (only those the file sets)."""

    path: Path
    values: dict[str, Any]


def display_path(path: Path) -> str:
    """The path as a user would type it from the working directory."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def load_file(path: str | os.PathLike[str]) -> FileConfig:
    """Read and validate one config file; ConfigError on any problem."""
    p = Path(path)
    shown = display_path(p)
    try:
        raw = _load_toml(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{shown}: cannot read the config file ({exc})") from None
    except _TomlError as exc:
        raise ConfigError(f"{shown}: invalid TOML: {exc}") from None
    if p.name == PYPROJECT:
        tool = raw.get("tool", {})
        table = tool.get("initaudit") if isinstance(tool, dict) else None
        prefix = f"{shown}: [tool.initaudit]"
        if table is None:
            table = {}  # an explicit --config pyproject.toml without our table: defaults
        elif not isinstance(table, dict):
            raise ConfigError(f"{prefix}: must be a table")
    else:
        table, prefix = raw, f"{shown}:"
    return FileConfig(
        path=p.resolve(), values=validate(table, prefix, base_dir=str(p.resolve().parent))
    )


def validate(table: Mapping[str, Any], prefix: str, *, base_dir: str = "") -> dict[str, Any]:
    """Check every key of a ``[tool.initaudit]`` table; return the normalised values."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KEYS:
            raise ConfigError(f"{prefix} {key}: unknown key{_suggest(key, KEYS)}")
        where = f"{prefix} {key}"
        out[key] = _VALIDATORS[key](value, where, base_dir)
    return out


def _suggest(key: str, known: Iterable[str]) -> str:
    known = list(known)
    normalised = key.replace("_", "-").lower()
    if normalised in known:
        return f" (did you mean '{normalised}'?)"
    import difflib  # only for a typo in a config file

    close = difflib.get_close_matches(normalised, known, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(known)})"


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected an array of strings, got {_type_name(value)}")
    return value


def _rules_list(value: Any, where: str, _base: str = "") -> tuple[str, ...]:
    from .selector import SelectorError, parse

    try:
        return parse(_string_list(value, where), what=where)
    except SelectorError as exc:
        raise ConfigError(str(exc)) from None


def _globs(value: Any, where: str, _base: str = "") -> tuple[str, ...]:
    items = _string_list(value, where)
    if any(not v.strip() for v in items):
        raise ConfigError(f"{where}: empty pattern")
    return tuple(items)


def _severity(value: Any, where: str, _base: str = "") -> Severity:
    if not isinstance(value, str):
        raise ConfigError(
            f"{where}: expected a string (error, warning or info), got {_type_name(value)}"
        )
    try:
        return Severity.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _confidence(value: Any, where: str, _base: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number between 0 and 1, got {_type_name(value)}")
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{where}: must be between 0 and 1, not {value}")
    return float(value)


def _severity_table(value: Any, where: str, _base: str = "") -> dict[str, Severity]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table of rule = severity, got {_type_name(value)}")
    out: dict[str, Severity] = {}
    for key, sev in value.items():
        rule = _find_rule(key)
        if rule is None:
            raise ConfigError(f"{where}: unknown rule {key!r} (run `initaudit rules` to list them)")
        out[rule.code] = _severity(sev, f"{where}.{key}")
    return out


def _activation(value: Any, where: str, _base: str = "") -> tuple[str, ...]:
    from .activations import ActivationHint

    if isinstance(value, dict):
        texts = []
        for pattern, act in value.items():
            if not isinstance(act, str):
                raise ConfigError(
                    f"{where}.{pattern}: expected an activation name, got {_type_name(act)}"
                )
            texts.append(f"{pattern}={act}")
    elif isinstance(value, list):
        texts = _string_list(value, where)
    else:
        raise ConfigError(
            f"{where}: expected a table of pattern = activation or an array of "
            f"'PATTERN=ACT' strings, got {_type_name(value)}"
        )
    for text in texts:
        try:
            ActivationHint.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(texts)


def _tensor_ignores(value: Any, where: str, base_dir: str = "") -> tuple[TensorIgnore, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected an array of tables, got {_type_name(value)}")
    out = []
    for index, entry in enumerate(value):
        here = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{here}: expected a table with pattern, rules and reason, got {_type_name(entry)}"
            )
        for key in entry:
            if key not in _IGNORE_KEYS:
                raise ConfigError(f"{here}: unknown key {key!r}{_suggest(key, _IGNORE_KEYS)}")
        for key in ("pattern", "reason"):
            if key not in entry:
                raise ConfigError(f"{here}: {key!r} is required")
            if not isinstance(entry[key], str):
                raise ConfigError(f"{here}: {key!r} must be a string, got {_type_name(entry[key])}")
            if not entry[key].strip():
                raise ConfigError(f"{here}: {key!r} must not be empty")
        rules: tuple[str, ...] = ()
        if "rules" in entry:
            raw = entry["rules"]
            selectors = _rules_list([raw] if isinstance(raw, str) else raw, f"{here}.rules")
            if not selectors:
                raise ConfigError(f"{here}: 'rules' is empty (omit it to silence every rule)")
            rules = expand_selectors(selectors)
        path = entry.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise ConfigError(f"{here}: 'path' must be a non-empty string")
        out.append(
            PathTensorIgnore(
                pattern=entry["pattern"],
                rules=rules,
                reason=entry["reason"].strip(),
                path=path,
                base_dir=base_dir,
            )
        )
    return tuple(out)


def _jobs(value: Any, where: str, _base: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{where}: expected an integer (0 = one per CPU), got {_type_name(value)}"
        )
    if value < 0:
        raise ConfigError(f"{where}: must be 0 or more, not {value}")
    return value


def _format(value: Any, where: str, _base: str = "") -> str:
    from .reporters import formats

    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {_type_name(value)}")
    name = value.strip().lower()
    if name not in formats():
        raise ConfigError(f"{where}: unknown format {value!r} (use one of: {', '.join(formats())})")
    return name


def _bool(value: Any, where: str, _base: str = "") -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {_type_name(value)}")
    return value


_VALIDATORS: dict[str, Callable[[Any, str, str], Any]] = {
    "select": _rules_list,
    "extend-select": _rules_list,
    "ignore": _rules_list,
    "extend-ignore": _rules_list,
    "fail-on": _severity,
    "min-confidence": _confidence,
    "severity": _severity_table,
    "activation": _activation,
    "per-tensor-ignores": _tensor_ignores,
    "include": _globs,
    "exclude": _globs,
    "jobs": _jobs,
    "format": _format,
    "allow-partial": _bool,
}


# ------------------------------------------------------------------------------------- rules


def _find_rule(text: str) -> Rule | None:
    from .rules import find_rule

    return find_rule(text)


def resolve_selector(item: str) -> str | None:
    """A rule code, code prefix (``IA1``) or name, normalised; None if it names no rule
    (:func:`initaudit.selector.resolve`)."""
    from .selector import resolve

    return resolve(item)


def expand_selectors(selectors: Iterable[str]) -> tuple[str, ...]:
    """Codes for selectors (prefixes expand to every matching code): the engine's per-tensor
    ignores compare exact codes and names (:func:`initaudit.selector.expand`)."""
    from .selector import expand

    return expand(selectors)


# ------------------------------------------------------------------------------------ merging

_ATTR = {key: key.replace("-", "_") for key in KEYS}
_MERGED = frozenset({"activation"})


def resolve(file_config: FileConfig | None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Defaults < the config file < ``overrides`` (command-line values, already validated,
    keyed like the file: ``fail-on``...; None values are left out)."""
    settings = Settings(file=file_config.path if file_config else None)
    if file_config is not None:
        source = display_path(file_config.path)
        for key, value in file_config.values.items():
            setattr(settings, _ATTR[key], value)
            settings.sources[key] = source
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in KEYS:
            raise KeyError(key)
        if key in _MERGED and key in settings.sources:
            # hints add up: the file's first, the command line's after (the last match wins)
            value = (*getattr(settings, _ATTR[key]), *value)
            settings.sources[key] = f"{settings.sources[key]} + {COMMAND_LINE}"
        else:
            settings.sources[key] = COMMAND_LINE
        setattr(settings, _ATTR[key], value)
    return settings


def nearest_config_file(path: str | os.PathLike[str] | None) -> Path | None:
    """The config that applies to ``path`` (ruff's rule): the nearest ``initaudit.toml`` /
    ``pyproject.toml`` with ``[tool.initaudit]`` in the path's folder or above it; the one found
    from the working directory when there is none (or for ``None``: an in-memory model)."""
    if path is not None:
        p = Path(path)
        start = p if p.is_dir() else p.parent
        found = find_config_file(start if str(start) else ".")
        if found is not None:
            return found
    return find_config_file(None)


# (path, mtime, size) -> validated file: read once per run, re-read when edited
_FILE_CACHE: dict[tuple[Path, int, int], FileConfig] = {}


def settings_for(
    path: str | os.PathLike[str] | None,
    *,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """The effective settings for auditing ``path``: ``config_file`` if given, else the nearest
    config (:func:`nearest_config_file`), then ``overrides``. Each file is read once."""
    found = Path(config_file) if config_file else nearest_config_file(path)
    if found is None:
        return resolve(None, overrides)
    try:
        st = found.stat()
        key = (found.resolve(), st.st_mtime_ns, st.st_size)
    except OSError:
        return resolve(load_file(found), overrides)  # load_file says what is wrong
    if key not in _FILE_CACHE:
        _FILE_CACHE[key] = load_file(found)
    return resolve(_FILE_CACHE[key], overrides)


def load_settings(
    config_path: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    start: str | None = None,
) -> Settings:
    """Find (or take) the config file, read it and apply ``overrides``."""
    path = Path(config_path) if config_path else find_config_file(start)
    return resolve(load_file(path) if path is not None else None, overrides)


__all__ = [
    "ConfigError",
    "Settings",
    "FileConfig",
    "PathTensorIgnore",
    "find_config_file",
    "nearest_config_file",
    "settings_for",
    "load_file",
    "load_settings",
    "resolve",
    "resolve_selector",
    "expand_selectors",
    "KEYS",
]
