"""Where a rule's documentation page lives: ``rules/<name>.md`` at the repository top level,
installed into the package as ``initaudit/rule_docs/<name>.md``."""

from __future__ import annotations

from pathlib import Path

from .base import Rule

_PACKAGE_DOCS = Path(__file__).resolve().parent.parent / "rule_docs"
_SOURCE_DOCS = Path(__file__).resolve().parent.parent.parent / "rules"


def page_path(rule: Rule) -> Path | None:
    for folder in (_PACKAGE_DOCS, _SOURCE_DOCS):
        candidate = folder / f"{rule.name}.md"
        if candidate.is_file():
            return candidate
    return None


def read_page(rule: Rule) -> str | None:
    path = page_path(rule)
    return path.read_text(encoding="utf-8") if path else None
