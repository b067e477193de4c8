"""The rule catalogue is complete and one-to-one (ESLint style): every registered rule has one
module with a docstring, one page ``rules/<name>.md`` with the required sections, one test file
``tests/rules/test_<name>.py``, and one row in ``rules/README.md``; nothing exists without a rule.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from initaudit.report import Severity
from initaudit.rules import find_rule, registry
from initaudit.rules.base import Rule
from initaudit.rules.docs import page_path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "rules"
RULE_TESTS = ROOT / "tests" / "rules"
RULE_MODULES = ROOT / "initaudit" / "rules"
NOT_RULE_MODULES = {"__init__", "base", "_common", "docs"}

SECTIONS = ("## What it detects", "## Why it matters", "## Example that triggers it",
            "## How to fix it", "## When it stays silent", "## Options")
CLI_FLAGS = ("--select", "--ignore", "--fail-on", "--min-confidence", "--activation")

RULES: list[Rule] = list(registry().values())
IDS = [r.name for r in RULES]


def _module_name(rule: Rule) -> str:
    return rule.name.replace("-", "_")


def _page(rule: Rule) -> str:
    return (PAGES / f"{rule.name}.md").read_text(encoding="utf-8")


def _sections(text: str) -> dict[str, str]:
    """Level-2 heading -> its body (fenced code blocks may contain '#' lines: skip them)."""
    out: dict[str, str] = {}
    current: str | None = None
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            current = line.strip()
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def test_there_are_rules() -> None:
    assert len(RULES) >= 10


def test_codes_and_names_are_unique_and_well_formed() -> None:
    codes = [r.code for r in RULES]
    names = [r.name for r in RULES]
    assert len(set(codes)) == len(codes)
    assert len(set(names)) == len(names)
    for r in RULES:
        assert re.fullmatch(r"IA\d{3}", r.code), r.code
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.name), r.name
        assert r.scope in ("tensor", "model"), r.scope
        assert isinstance(r.severity, Severity)
        assert r.summary.strip() and "\n" not in r.summary


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_find_rule_by_code_and_name(rule: Rule) -> None:
    assert find_rule(rule.code) is rule
    assert find_rule(rule.name) is rule
    assert find_rule(rule.code.lower()) is rule


# ---- one module per rule, with a docstring ------------------------------------------------

@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_rule_module_has_a_docstring_naming_the_rule(rule: Rule) -> None:
    module = importlib.import_module(f"initaudit.rules.{_module_name(rule)}")
    doc = (module.__doc__ or "").strip()
    assert doc, f"initaudit/rules/{_module_name(rule)}.py has no module docstring"
    assert doc.startswith(f"{rule.code} {rule.name}"), doc.splitlines()[0]


def test_every_rule_module_registers_exactly_one_rule() -> None:
    modules = sorted(p.stem for p in RULE_MODULES.glob("*.py") if p.stem not in NOT_RULE_MODULES)
    assert modules == sorted(_module_name(r) for r in RULES)
    for stem in modules:
        module = importlib.import_module(f"initaudit.rules.{stem}")
        declared = [v for v in vars(module).values() if isinstance(v, Rule)]
        assert len(declared) == 1, f"{stem}: {len(declared)} rules"
        assert declared[0].name.replace("-", "_") == stem


# ---- one page per rule ----------------------------------------------------------------------

def test_pages_and_rules_are_one_to_one() -> None:
    pages = {p.stem for p in PAGES.glob("*.md") if p.name != "README.md"}
    assert pages == {r.name for r in RULES}, (
        f"missing pages: {sorted({r.name for r in RULES} - pages)}; "
        f"orphan pages: {sorted(pages - {r.name for r in RULES})}")


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_page_title_and_metadata_match_the_rule(rule: Rule) -> None:
    lines = [line for line in _page(rule).splitlines() if line.strip()]
    assert lines[0] == f"# {rule.name} ({rule.code})"
    assert lines[1] == f"Default severity: **{rule.severity.value}** · Scope: {rule.scope}"


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_page_has_the_required_sections_in_order(rule: Rule) -> None:
    headings = list(_sections(_page(rule)))
    assert headings == list(SECTIONS)
    for heading, body in _sections(_page(rule)).items():
        assert body.strip(), f"{rule.name}: empty section {heading}"


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_page_example_shows_the_rule_firing(rule: Rule) -> None:
    example = _sections(_page(rule))["## Example that triggers it"]
    assert "```python" in example and "import torch" in example
    assert f"{rule.code} {rule.name}" in example  # the output line the snippet produces


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_page_fix_covers_the_three_frameworks(rule: Rule) -> None:
    fix = _sections(_page(rule))["## How to fix it"]
    for framework in ("PyTorch", "Keras", "JAX"):
        assert f"**{framework}" in fix, f"{rule.name}: no {framework} fix"


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_page_options_name_the_rule_and_real_flags_only(rule: Rule) -> None:
    options = _sections(_page(rule))["## Options"]
    assert f"--ignore {rule.code}" in options
    assert "--fail-on" in options
    for flag in re.findall(r"--[a-z][a-z-]+", options):
        assert flag in CLI_FLAGS, f"{rule.name}: unknown flag {flag}"


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_page_length_stays_focused(rule: Rule) -> None:
    assert 50 <= len(_page(rule).splitlines()) <= 130


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_explain_finds_the_page(rule: Rule) -> None:
    path = page_path(rule)
    assert path is not None and path.name == f"{rule.name}.md"


def test_index_lists_every_rule_once() -> None:
    text = (PAGES / "README.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"\| IA\d{3} \|", line)]
    by_code = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        by_code[cells[0]] = cells
    assert len(rows) == len(by_code) == len(RULES)
    for r in RULES:
        code, link, severity, scope, summary = by_code[r.code]
        assert link == f"[{r.name}]({r.name}.md)"
        assert (severity, scope, summary) == (r.severity.value, r.scope, r.summary)


# ---- one test file per rule -------------------------------------------------------------------

def test_test_files_and_rules_are_one_to_one() -> None:
    files = {p.stem.removeprefix("test_") for p in RULE_TESTS.glob("test_*.py")}
    expected = {_module_name(r) for r in RULES}
    assert files == expected, (f"missing test files: {sorted(expected - files)}; "
                               f"orphan test files: {sorted(files - expected)}")


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_rule_test_file_targets_its_rule(rule: Rule) -> None:
    text = (RULE_TESTS / f"test_{_module_name(rule)}.py").read_text(encoding="utf-8")
    assert f'CODE = "{rule.code}"' in text
    assert re.search(r"def test_\w+", text)
