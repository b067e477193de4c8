"""The JSON Schema of the report describes exactly what ``Report.to_dict()`` produces."""

from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for test_reporters, any import mode

from test_reporters import sample_report  # noqa: E402

from initaudit.engine import AuditConfig  # noqa: E402
from initaudit.report import FileReport, Report, Severity, Status  # noqa: E402
from initaudit.reporters import get_reporter  # noqa: E402

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "initaudit" / "schema" / "report.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


def json_output(result: Report) -> dict:
    stream = io.StringIO()
    get_reporter("json")(result, stream, config=AuditConfig(), color=False)
    return json.loads(stream.getvalue())


def test_schema_is_valid_draft_2020_12(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_sample_report_validates(validator):
    data = json_output(sample_report())
    validator.validate(data)
    validator.validate(sample_report().to_dict())  # without the reporter's config block too


def test_empty_report_validates(validator):
    validator.validate(json_output(Report()))


def test_enums_match_the_code(schema):
    defs = schema["$defs"]
    assert set(defs["severity"]["enum"]) == {s.value for s in Severity}
    assert set(defs["file"]["properties"]["status"]["enum"]) == {s.value for s in Status}


def test_required_fields_are_every_field_to_dict_writes(schema):
    data = sample_report().to_dict()
    defs = schema["$defs"]
    assert set(schema["required"]) == set(data)
    fr = data["files"][0]
    assert set(defs["file"]["required"]) == set(fr)
    tensor = fr["tensors"][0]
    assert set(defs["tensor"]["required"]) == set(tensor)
    assert set(defs["stats"]["required"]) == set(tensor["stats"])
    assert set(defs["scheme"]["required"]) == set(tensor["scheme"])
    assert set(defs["candidate"]["required"]) == set(fr["tensors"][1]["scheme"]["alternatives"][0])
    assert set(defs["finding"]["required"]) == set(fr["findings"][0])
    assert set(schema["properties"]["summary"]["required"]) == set(data["summary"])


@pytest.mark.parametrize("mutate", [
    lambda d: d["files"][0].__setitem__("status", "fine"),
    lambda d: d["files"][0]["findings"][0].__setitem__("severity", "fatal"),
    lambda d: d["files"][0]["findings"][0].pop("code"),
    lambda d: d["files"][0]["tensors"][0]["scheme"].__setitem__("rule", "kaiming"),
    lambda d: d["files"][0]["tensors"][0]["stats"].__setitem__("std", "NaN"),
    lambda d: d["files"][0]["tensors"][0].pop("activation"),
    lambda d: d["files"][1].__setitem__("error", None),  # status error needs a reason
    lambda d: d["summary"].__setitem__("errors", -1),
    lambda d: d.pop("tool"),
], ids=["status", "severity", "code", "rule", "nan-spelling", "activation", "error-reason",
        "count", "tool"])
def test_schema_rejects_broken_reports(validator, mutate):
    data = copy.deepcopy(json_output(sample_report()))
    mutate(data)
    assert not validator.is_valid(data)


def test_schema_allows_extensions(validator):
    data = json_output(sample_report())
    data["files"][0]["tensors"][0]["new_field"] = 1
    data["files"][0]["findings"][0]["fingerprint"] = "abc"
    data["extra"] = {}
    validator.validate(data)


def test_unknown_activation_is_null_and_allowed(validator):
    data = json_output(Report([FileReport("a.npz", "npz", Status.OK)]))
    validator.validate(data)
    data = json_output(sample_report())
    assert data["files"][0]["tensors"][1]["activation"] is None
    validator.validate(data)


def test_schema_ships_with_the_package():
    import tomllib

    pyproject = tomllib.loads((SCHEMA_PATH.parents[2] / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    assert "initaudit.schema" in setuptools["packages"]
    assert "*.json" in setuptools["package-data"]["initaudit.schema"]
