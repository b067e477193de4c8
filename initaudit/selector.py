"""Rule selectors, parsed once: the one place that knows what ``--select IA1,constant-weights``
means. Used by the CLI options, the config file, the Python API, the pytest helper and the
engine (ruff's model: codes, code prefixes that select a family, or rule names).

- :func:`parse` splits comma-separated values, normalises each item (codes and prefixes upper
  case, names lower case) and raises :class:`SelectorError` for an item that matches no rule:
  ``select=["IA9"]`` or a misspelt name must never silently check nothing.
- :class:`RuleSelector` holds the parsed ``select`` and ``ignore`` and answers
  :meth:`RuleSelector.enabled` for a rule.
- :func:`expand` turns selectors into the exact codes they cover (per-tensor ignores store codes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .rules.base import Rule


class SelectorError(ValueError):
    """A selector that names no rule: one line, exit 2 on the command line."""


def _rules() -> list[Rule]:  # the registry imports numpy-free modules only
    from .rules import registry

    return list(registry().values())


def resolve(item: str) -> str | None:
    """The normalised selector for ``item`` (a code, a code prefix or a rule name), or None if
    it matches no rule."""
    text = item.strip()
    upper = text.upper()
    rules = _rules()
    if upper.startswith("IA") and any(r.code.startswith(upper) for r in rules):
        return upper
    lower = text.lower()
    return lower if any(r.name == lower for r in rules) else None


def parse(values: str | Iterable[str] | None, *, what: str = "select") -> tuple[str, ...]:
    """Split, normalise and check selectors; SelectorError naming ``what`` for an unknown one."""
    if values is None:
        return ()
    if isinstance(values, str):  # select="IA1" is one selector, not three letters
        values = [values]
    out: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise SelectorError(
                f"{what}: expected rule codes or names as strings, got {type(value).__name__}"
            )
        for item in (i.strip() for i in value.split(",")):
            if not item:
                continue
            resolved = resolve(item)
            if resolved is None:
                # "unknown" covers a prefix that matches no code (IA9) as well as a typo
                raise SelectorError(
                    f"{what}: unknown rule {item!r} (run `initaudit rules` to list them)"
                )
            out.append(resolved)
    return tuple(dict.fromkeys(out))


def matches(code: str, name: str, selector: str) -> bool:
    """True when ``selector`` (normalised or not) covers the rule ``code`` / ``name``."""
    upper = selector.upper()
    if upper.startswith("IA") and code.startswith(upper):
        return True
    return name == selector.lower() or code == upper


def expand(selectors: Iterable[str]) -> tuple[str, ...]:
    """The codes the selectors cover, in catalogue order."""
    selectors = tuple(selectors)
    return tuple(r.code for r in _rules() if any(matches(r.code, r.name, s) for s in selectors))


@dataclass(frozen=True)
class RuleSelector:
    """``select`` (empty = every rule) minus ``ignore``."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls, select: str | Iterable[str] | None = (), ignore: str | Iterable[str] | None = ()
    ) -> RuleSelector:
        return cls(parse(select, what="select"), parse(ignore, what="ignore"))

    def enabled(self, code: str, name: str) -> bool:
        if self.select and not any(matches(code, name, s) for s in self.select):
            return False
        return not any(matches(code, name, s) for s in self.ignore)

    def codes(self) -> tuple[str, ...]:
        """The codes of the rules that run."""
        return tuple(r.code for r in _rules() if self.enabled(r.code, r.name))


__all__ = ["RuleSelector", "SelectorError", "expand", "matches", "parse", "resolve"]
