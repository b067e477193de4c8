"""Baselines: stable fingerprints, counted matching, clear errors."""

from __future__ import annotations

import json

import pytest

from initaudit import baseline
from initaudit.report import FileReport, Finding, Report, Severity, Status


def finding(code="IA201", tensor="fc1.weight", message="std 0.05") -> Finding:
    return Finding(code=code, name="constant-weights", severity=Severity.ERROR, confidence=0.9,
                   message=message, tensor=tensor, layer=tensor.split(".")[0])


def report(path: str, *findings: Finding) -> Report:
    return Report(files=[FileReport(path=path, format="onnx", status=Status.OK, findings=list(findings))])


def test_round_trip_ignores_volatile_numbers_and_working_directory(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "baseline.json"
    assert baseline.write(report("models/a.onnx", finding()), target) == 1
    data = json.loads(target.read_text())
    assert data["initaudit_baseline"] == 1
    assert data["findings"][0]["path"] == "models/a.onnx" and data["findings"][0]["tensor"] == "fc1.weight"
    monkeypatch.chdir(tmp_path / "models")  # same file, typed from elsewhere, other numbers
    result = baseline.apply(report("a.onnx", finding(message="std 0.07")), baseline.read(target))
    assert result.findings == [] and result.baselined == 1
    assert result.counts()["baselined"] == 1


def test_new_findings_survive_and_duplicates_are_counted(tmp_path):
    target = tmp_path / "b.json"
    baseline.write(report(str(tmp_path / "a.onnx"), finding()), target)
    again = report(str(tmp_path / "a.onnx"), finding(), finding(), finding(tensor="fc2.weight"))
    result = baseline.apply(again, baseline.read(target))
    assert [f.tensor for f in result.findings] == ["fc1.weight", "fc2.weight"]
    assert result.baselined == 1


@pytest.mark.parametrize("content, message", [
    (None, "no such baseline file"),
    ("{", "not a baseline: invalid JSON"),
    ('{"findings": []}', "not an initaudit baseline"),
    ('{"initaudit_baseline": 9, "findings": []}', "baseline version 9 is not supported"),
    ('{"initaudit_baseline": 1, "findings": [{"code": 1}]}', "findings[0]: needs at least"),
])
def test_bad_baseline_files(tmp_path, content, message):
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(baseline.BaselineError) as info:
        baseline.read(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_fingerprint_depends_on_rule_path_and_tensor_only():
    fp = baseline.fingerprint("IA201", "m/a.onnx", "fc1.weight", "fc1")
    assert fp == baseline.fingerprint("IA201", "m/a.onnx", "fc1.weight", "fc1")
    assert len({fp, baseline.fingerprint("IA202", "m/a.onnx", "fc1.weight", "fc1"),
                baseline.fingerprint("IA201", "m/b.onnx", "fc1.weight", "fc1"),
                baseline.fingerprint("IA201", "m/a.onnx", "fc2.weight", "fc1")}) == 4
