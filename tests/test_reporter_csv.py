"""``--format csv``: one row per finding (and per unreadable file and skipped tensor), parsed
back with the csv module; names from a hostile file never become spreadsheet formulas."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from initaudit.api import audit
from initaudit.cli import main
from initaudit.engine import AuditConfig
from initaudit.model import SkippedTensor, SkipReason
from initaudit.report import FileReport, Finding, Report, Severity, Status
from initaudit.reporters import get_reporter
from initaudit.reporters.csv_reporter import COLUMNS

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _rows(report: Report) -> list[dict[str, str]]:
    out = io.StringIO()
    get_reporter("csv")(report, out, config=AuditConfig(), color=False)
    reader = csv.DictReader(io.StringIO(out.getvalue()))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def test_one_row_per_finding_in_report_order(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    part = tmp_path / "part.npz"
    np.savez(part, **{"fc.weight": np.zeros((8, 8), np.float32),
                      "labels": np.array(["a"], dtype=object)})
    paths = [str(p) for p in sorted(SAMPLES.glob("*.onnx"))] + [str(bad), str(part)]
    report = audit(paths, use_config=False)
    rows = _rows(report)
    findings = [r for r in rows if r["kind"] == "finding"]
    assert [(r["path"], r["code"], r["name"], r["severity"], r["tensor"], r["message"])
            for r in findings] == [
        (fr.path, f.code, f.name, f.severity.value, f.tensor or "", f.message)
        for fr in report.files for f in fr.findings]
    assert len(findings) > 10 and all(0 < float(r["confidence"]) <= 1 for r in findings)
    # a file not read, a tensor not analysed: rows of their own, never silently absent
    assert [r["message"] for r in rows if r["kind"] == "unreadable"] == [report.files[-2].error]
    assert [(r["path"], r["tensor"]) for r in rows if r["kind"] == "skipped"] == [
        (str(part), "labels")]


def test_names_from_the_file_never_become_formulas() -> None:
    hostile = "=HYPERLINK(\"http://x\",\"y\")"
    f = Finding("IA201", "constant-weights", Severity.ERROR, 1.0, "-1 is not a formula",
                tensor=hostile, layer="@layer")
    fr = FileReport("+m.npz", "npz", Status.PARTIAL, findings=[f],
                    skipped=[SkippedTensor("\tw", "why", SkipReason.OTHER)])
    finding, skipped = _rows(Report([fr]))
    assert finding["tensor"] == "'" + hostile and finding["layer"] == "'@layer"
    assert finding["path"] == "'+m.npz" and finding["message"] == "'-1 is not a formula"
    assert skipped["tensor"] == "'\tw"


def test_cli_format_csv_keeps_the_exit_codes(capsys) -> None:
    code = main([str(SAMPLES / "mlp_he_sigmoid.onnx"), "--format", "csv"])
    out = capsys.readouterr().out
    assert code == 1 and out.splitlines()[0] == ",".join(COLUMNS)
    assert main([str(SAMPLES / "mlp_relu_clean.onnx"), "-f", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [",".join(COLUMNS)]
