"""Platform limits (GitHub comment size, annotations per level), SARIF suppressions and
baseline states against the SARIF 2.1.0 schema, GitLab Code Quality."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

import initaudit
from initaudit.baseline import apply, read, write
from initaudit.engine import AuditConfig, TensorIgnore
from initaudit.report import Report
from initaudit.reporters import get_reporter, github, gitlab, markdown

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
SARIF_SCHEMA = ROOT / "tests" / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def forty_files() -> Report:
    """40 real file reports (each of the samples audited once, repeated under new names, their
    tensor lists tripled to the size of deeper models)."""
    base = initaudit.audit([str(p) for p in sorted(SAMPLES.glob("*.onnx"))], use_config=False)
    files = [replace(fr, path=f"models/m{i:02d}.onnx", tensors=fr.tensors * 3)
             for i, fr in enumerate(base.files[i % len(base.files)] for i in range(40))]
    return Report(files=files)


def _render(name: str, report: Report, **kw: object) -> str:
    out = io.StringIO()
    get_reporter(name)(report, out, config=AuditConfig(), color=False, **kw)
    return out.getvalue()


def test_markdown_of_40_files_fits_a_github_comment(forty_files: Report) -> None:
    full = markdown.render(forty_files, verbose=True, limit=None)
    assert len(full) > markdown.MAX_CHARS  # the case that broke GitHub
    text = _render("markdown", forty_files, verbose=True)
    assert len(text) <= markdown.MAX_CHARS
    assert text.startswith("## ❌ initaudit: failed")
    assert "this report is cut to fit the 65,536 characters" in text.splitlines()[-1]
    # failing files come before the clean ones that were left out
    failing = [fr for fr in forty_files.files if any(f.severity.value == "error" for f in fr.findings)]
    assert all(f"### {markdown.cell(fr.path)}" in text for fr in failing[:5])


def test_github_annotations_stay_within_ten_per_level(forty_files: Report, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    lines = _render("github", forty_files).splitlines()
    commands = [line for line in lines if line.startswith("::")]
    assert commands[0].startswith("::notice title=initaudit::40 files")
    for level in ("error", "warning", "notice"):
        n = sum(1 for line in commands if line.startswith(f"::{level} "))
        assert n <= github.MAX_PER_LEVEL, level
    errors = sum(len([f for f in fr.findings if f.severity.value == "error"]) for fr in forty_files.files)
    assert errors > 10
    assert any(f"{errors - 9} more error annotations not shown" in line for line in commands)
    # nothing is lost: the rest is in the log, and the job summary holds the Markdown report
    assert sum(1 for line in lines if line.startswith("initaudit: error ")) == errors - 9
    assert summary.read_text(encoding="utf-8").startswith("## ❌ initaudit: failed")
    assert len(summary.read_text(encoding="utf-8")) <= markdown.MAX_CHARS + 1


def test_sarif_marks_suppressed_and_baselined_results(tmp_path: Path) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SARIF_SCHEMA.read_text(encoding="utf-8")))
    ignore = TensorIgnore(pattern="fc1*", rules=("IA101",), reason="kept for the ablation study")
    paths = [str(SAMPLES / "mlp_he_sigmoid.onnx"), str(SAMPLES / "constant_weights.onnx")]
    first = initaudit.audit(paths, config=AuditConfig(tensor_ignores=(ignore,)))
    assert first.counts()["suppressed"] == 1 and not any(f.code == "IA101" for f in first.findings)
    baseline = tmp_path / "baseline.json"
    assert write(first, baseline) == len(first.findings) > 0
    result = apply(initaudit.audit(paths, config=AuditConfig(tensor_ignores=(ignore,))), read(baseline))
    sarif = json.loads(_render("sarif", result))
    validator.validate(sarif)
    results = sarif["runs"][0]["results"]
    suppressed = [r for r in results if r.get("suppressions")]
    # every result of a baselined run has a state: the baseline's findings "unchanged", the one
    # the per-tensor ignore hides (never written to the baseline) "new", but suppressed
    states = [(r["ruleId"], r["properties"].get("tensor"), r["baselineState"]) for r in results]
    assert [s for s in states if s[2] == "new"] == [("IA101", "fc1.weight", "new")]
    assert len(states) == len(first.findings) + 1
    justifications = {r["suppressions"][0]["justification"] for r in suppressed}
    assert "kept for the ablation study" in justifications
    assert any("baseline" in j for j in justifications)
    assert all(r["suppressions"][0]["kind"] == "external" for r in suppressed)
    summary = sarif["runs"][0]["properties"]["summary"]
    assert summary["suppressed"] == 1 and summary["baselined"] == len(first.findings)
    for fmt in ("human", "markdown", "github"):
        text = _render(fmt, result)
        assert "1 suppressed" in text and f"{len(first.findings)} baselined" in text, fmt


def test_sarif_partial_audit_is_not_a_successful_execution() -> None:
    report = initaudit.audit(str(SAMPLES / "mlp_relu_clean.onnx"), max_seconds=1e-9, use_config=False)
    sarif = json.loads(_render("sarif", report))
    invocation = sarif["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert any(n["level"] == "warning" for n in invocation["toolExecutionNotifications"])


def test_gitlab_code_quality(forty_files: Report) -> None:
    issues = json.loads(_render("gitlab", forty_files))
    n = sum(len(fr.findings) for fr in forty_files.files)
    assert len([i for i in issues if i["check_name"].startswith("IA")]) == n
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    assert {i["severity"] for i in issues} <= {"info", "minor", "major", "critical", "blocker"}
    assert all(i["location"]["lines"]["begin"] == 1 for i in issues)
    assert gitlab.build(Report()) == []


def test_coverage_is_rendered_in_every_format_and_none_is_fine() -> None:
    from initaudit.model import SkippedTensor, SkipReason
    from initaudit.report import Coverage, FileReport, Status

    partial = FileReport("models/big.safetensors", "safetensors", Status.PARTIAL,
                         skipped=[SkippedTensor("h.11.mlp.c_fc.weight", "time budget exhausted",
                                                SkipReason.TIME_BUDGET)],
                         coverage=Coverage(weights_present=148, weights_analysed=146,
                                           bytes_present=1000, bytes_analysed=987))
    unknown = FileReport("models/old.onnx", "onnx", Status.OK, coverage=None)
    report = Report([partial, unknown])
    line = "coverage 146/148 weights (98.7% of bytes)"
    assert line in _render("human", report)
    assert line in _render("markdown", report)
    assert line in _render("junit", report)
    sarif = json.loads(_render("sarif", report))
    run = sarif["runs"][0]
    assert run["properties"]["coverage"]["models/big.safetensors"]["weights_analysed"] == 146
    assert run["invocations"][0]["executionSuccessful"] is False
    assert report.exit_code() == 3 and report.counts()["partial_files"] == 1
