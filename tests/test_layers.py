"""The layer contract (docs/architecture.md): every module imports only its own layer and the
layers below it, counting imports inside functions too. A lower layer that needs something from
a higher one means the thing is in the wrong place: move it down, do not import up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "initaudit"

# lowest first; a module belongs to the first entry whose prefix matches its dotted name
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vocabulary", ("initaudit.model", "initaudit.analysis.results", "initaudit.report",
                    "initaudit.settings", "initaudit.activations",
                    "initaudit.accounting")),
    ("analysis", ("initaudit.analysis",)),
    ("loaders", ("initaudit.loaders",)),
    ("rules", ("initaudit.rules", "initaudit.selector")),
    ("engine", ("initaudit.engine", "initaudit.forkpool", "initaudit.probe", "initaudit.baseline",
                "initaudit.discover", "initaudit.diff", "initaudit.remote", "initaudit.cache")),
    ("reporters", ("initaudit.reporters",)),
    ("api", ("initaudit.api", "initaudit.runner", "initaudit.testing", "initaudit.config",
             "initaudit.distributed")),
    ("cli", ("initaudit.cli", "initaudit.__main__")),
)


def _layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer index): longest prefix wins
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), index)
    return None if best is None else best[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("initaudit"):
                # `from . import x` imports the submodule x when there is one
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if _is_module(sub) else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("initaudit"))
    return found


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_module_imports_only_its_layer_and_below(path: Path) -> None:
    module = _module_name(path)
    if module == "initaudit":  # the package root re-exports the public API lazily
        return
    own = _layer_of(module)
    assert own is not None, f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)"
    upward = sorted(
        f"{target} ({LAYERS[layer][0]})"
        for target in _imports(path)
        if (layer := _layer_of(target)) is not None and layer > own
    )
    assert not upward, f"{module} ({LAYERS[own][0]}) imports a higher layer: {', '.join(upward)}"


def test_analysis_does_not_import_the_report() -> None:
    """The analysis produces typed results (analysis/results.py); the report is assembled from
    them by the engine. An analysis module importing report.py is a type in the wrong place."""
    offenders = sorted(
        _module_name(p) for p in (PACKAGE / "analysis").rglob("*.py")
        if any(t == "initaudit.report" or t.startswith("initaudit.report.") for t in _imports(p)))
    assert offenders == []
