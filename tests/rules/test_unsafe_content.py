"""IA501 unsafe-content: references the file's framework would execute or follow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from initaudit.engine import AuditConfig, audit_path
from initaudit.model import LoadedModel, UnsafeContent
from initaudit.report import Severity, Status

from . import analyse_model, findings

CODE = "IA501"


def _model(*unsafe: UnsafeContent) -> LoadedModel:
    return LoadedModel(path="model.pt", format="pytorch-zip", unsafe=list(unsafe))


def test_each_unsafe_item_is_an_error() -> None:
    report = analyse_model(_model(UnsafeContent(what="pickle GLOBAL posix.system", location="data.pkl")))
    [f] = findings(report, CODE)
    assert (f.code, f.name, f.severity) == (CODE, "unsafe-content", Severity.ERROR)
    assert f.layer == "data.pkl" and f.tensor is None
    assert f.message.startswith("pickle GLOBAL posix.system: never executed or followed by initaudit")
    assert "sandbox" in f.message
    assert f.evidence == {"what": "pickle GLOBAL posix.system"}
    assert report.status is Status.PARTIAL


def test_one_finding_per_item() -> None:
    report = analyse_model(_model(UnsafeContent("Keras Lambda layer 'lambda'", "lambda"),
                                  UnsafeContent("HDF5 external link ../x.h5", None)))
    found = findings(report, CODE)
    assert len(found) == 2
    assert {f.layer for f in found} == {"lambda", None}


def test_a_clean_file_is_silent() -> None:
    report = analyse_model(_model())
    assert findings(report, CODE) == []
    assert report.status is Status.OK


def test_ignoring_the_rule_still_marks_the_file_partial() -> None:
    report = analyse_model(_model(UnsafeContent("pickle GLOBAL posix.system", "data.pkl")),
                           AuditConfig(ignore=(CODE,)))
    assert findings(report, CODE) == []
    assert report.status is Status.PARTIAL


@pytest.mark.frameworks
def test_torch_checkpoint_with_a_function_reference(tmp_path: Path) -> None:
    # torch.save pickles a function by reference (a GLOBAL opcode); initaudit parses the
    # pickle with an allow-list and reports the reference instead of importing it
    torch = pytest.importorskip("torch")
    path = tmp_path / "evil.pt"
    torch.save({"fc1.weight": torch.zeros(4, 4), "hook": os.getcwd}, path)
    report = audit_path(path)
    [f] = findings(report, CODE)
    assert "getcwd" in f.message
    assert report.status is Status.PARTIAL
    assert any(t.name == "fc1.weight" for t in report.tensors)  # the rest is still audited
