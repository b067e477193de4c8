"""Each vocabulary lives in one table in the code; every place that repeats it for users (the
JSON schema, the README's tables, the pre-commit hook's file pattern) is checked against that
table here, so a new entry cannot be added in one place and forgotten in another.

The README is compared, never generated: a failure names the row to add or fix.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from initaudit.analysis.results import SCHEME_DISTRIBUTIONS, SCHEME_RULES, State
from initaudit.analysis.schemes import VARIANCE_RULES
from initaudit.loaders.formats import MODEL_EXTENSIONS
from initaudit.model import SkipReason
from initaudit.rules import registry

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "initaudit" / "schema" / "report.schema.json").read_text("utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _table(text: str, header: str) -> list[list[str]]:
    """The rows (cells stripped) of the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


# ---- the JSON schema --------------------------------------------------------------------------

def test_schema_skip_categories_are_the_skip_reasons() -> None:
    skipped = SCHEMA["$defs"]["file"]["properties"]["skipped"]["items"]["properties"]
    assert skipped["category"]["enum"] == [r.value for r in SkipReason]


def test_schema_scheme_names_are_the_scheme_vocabulary() -> None:
    assert SCHEMA["$defs"]["rule"]["enum"] == list(SCHEME_RULES)
    assert SCHEMA["$defs"]["distribution"]["enum"] == list(SCHEME_DISTRIBUTIONS)


def test_schema_states_are_the_state_enum() -> None:
    tensor = SCHEMA["$defs"]["state"]["properties"]["state"]
    assert tensor["enum"] == [s.value for s in State]


def test_every_scheme_the_analysis_can_name_is_in_the_vocabulary() -> None:
    """The table rows and every ``rule=``/``distribution=`` literal in the analysis."""
    assert {vr.rule for vr in VARIANCE_RULES} <= set(SCHEME_RULES)
    named: dict[str, set[str]] = {"rule": set(), "distribution": set()}
    for path in (ROOT / "initaudit" / "analysis").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg in named:
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    named[node.arg].add(node.value.value)
    assert named["rule"] and named["rule"] <= set(SCHEME_RULES), named["rule"]
    assert named["distribution"] <= set(SCHEME_DISTRIBUTIONS), named["distribution"]


# ---- the README ---------------------------------------------------------------------------------

def test_readme_skip_category_table_is_the_skip_reasons() -> None:
    rows = _table(README, "category")
    assert [r[0].strip("`") for r in rows] == [r.value for r in SkipReason]


def test_readme_rule_table_rows_match_the_rules() -> None:
    rules = registry()
    for code, link, severity, _what in _table(README, "code")[: len(rules) + 1]:
        if not code.startswith("IA"):
            break
        rule = rules[code]
        assert link == f"[{rule.name}](rules/{rule.name}.md)", code
        assert severity == rule.severity.value, code


def test_readme_rule_table_lists_every_rule() -> None:
    codes = [r[0] for r in _table(README, "code") if r[0].startswith("IA")]
    assert codes == sorted(registry())


# ---- the pre-commit hook ------------------------------------------------------------------------

def test_pre_commit_hook_matches_every_model_extension() -> None:
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    pattern = re.search(r"^\s*files:\s*(\S+)\s*$", hooks, re.MULTILINE)
    assert pattern, "no files: pattern in .pre-commit-hooks.yaml"
    alternatives = re.fullmatch(r"\\\.\((.*)\)\$", pattern.group(1))
    assert alternatives, pattern.group(1)
    assert {f".{e}" for e in alternatives.group(1).split("|")} == set(MODEL_EXTENSIONS)
    for ext in MODEL_EXTENSIONS:
        assert re.search(pattern.group(1), f"models/x{ext}")


# ---- the rule families ----------------------------------------------------------------------------

def test_sarif_tags_every_rule_with_its_family() -> None:
    """SARIF reads the family from the rule (rules.base.Family), IA6xx included."""
    from initaudit.api import audit
    from initaudit.reporters.sarif import dumps

    samples = ROOT / "sample_models"
    log = json.loads(dumps(audit([str(p) for p in sorted(samples.glob("*.onnx"))],
                                 use_config=False)))
    rules = {r["id"]: r for run in log["runs"] for r in run["tool"]["driver"]["rules"]}
    assert "IA601" in rules  # deep_glorot_relu.onnx
    for code, descriptor in rules.items():
        assert registry()[code].family.value in descriptor["properties"]["tags"], code
