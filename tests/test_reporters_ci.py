"""The CI reporters (sarif, github, junit, markdown) on real sample models and hand-built reports.

SARIF is validated against the official SARIF 2.1.0 JSON schema (OASIS committee specification,
vendored in tests/data); GitHub annotations are checked line by line, escaping included; JUnit
XML is parsed back; Markdown tables are checked row by row.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from initaudit.engine import AuditConfig, audit_path
from initaudit.model import SkippedTensor, SkipReason
from initaudit.report import (
    FileReport,
    Finding,
    Report,
    SchemeResult,
    Severity,
    Status,
    TensorReport,
    TensorStats,
)
from initaudit.reporters import formats, get_reporter, github, markdown
from initaudit.rules import registry

REPO = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO / "tests" / "data" / "sarif-schema-2.1.0.json"
SAMPLES = sorted((REPO / "sample_models").glob("*.onnx"))
CI_FORMATS = ("sarif", "github", "junit", "markdown")
NASTY = "50% of units | dead, see: a,b\nsecond line\r\nthird"
NASTY_TENSOR = "enc:0,w%1"


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    # reporters write paths relative to the working directory, as CI systems expect
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="module")
def real_report() -> Report:
    """Every sample model, audited for real (relative paths, as a CI job passes them)."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return Report([audit_path(os.path.relpath(p, REPO)) for p in SAMPLES])
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def _stats(std: float) -> TensorStats:
    return TensorStats(n=100, size=100, mean=0.0, std=std, min=-3 * std, max=3 * std,
                       excess_kurtosis=float("nan"))


def hand_report() -> Report:
    """A partial file (skipped tensor, unsafe content, nasty text, an info), an unreadable one."""
    he = SchemeResult(rule="he", distribution="normal", mode="fan_in", gain=2 ** 0.5,
                      expected_std=0.08, confidence=0.97, label="He/Kaiming normal (fan_in)")
    tensors = [
        TensorReport("fc1.weight", "fc1", "Gemm", "kernel", (100, 300), "float32", 300, 100,
                     "sigmoid", "graph", _stats(0.08), he),
        TensorReport(NASTY_TENSOR, "enc", "MatMul", "kernel", (4, 4), "float32", 4, 4, None, None,
                     _stats(0.5), None),
        TensorReport("fc1.bias", "fc1", "Gemm", "bias", (100,), "float32", None, None, "sigmoid",
                     "graph", _stats(0.0), None),
        TensorReport("big.weight", "big", "MatMul", "kernel", (10, 10), "float16", 10, 10, None,
                     None, None, None, skipped="external data file missing"),
    ]
    findings = [
        Finding("IA101", "he-before-saturating", Severity.ERROR, 0.97, "He feeds a sigmoid",
                tensor="fc1.weight", layer="fc1", evidence={"ratio": float("nan"), "std": 0.08}),
        Finding("IA501", "unsafe-content", Severity.ERROR, 1.0,
                "pickle GLOBAL os.system: never executed", layer="archive/data.pkl"),
        Finding("IA202", "dead-units", Severity.WARNING, 0.8, NASTY, tensor=NASTY_TENSOR,
                layer="enc"),
        Finding("IA401", "unrecognized-init", Severity.INFO, 0.6, "no known scheme fits",
                tensor=NASTY_TENSOR, layer="enc"),
    ]
    partial = FileReport("models/sub dir/model.onnx", "onnx", Status.PARTIAL, None, tensors,
                         findings, [SkippedTensor("big.weight", "external data file missing", SkipReason.UNREADABLE)],
                         ["activation unknown for 1 layer(s) (enc)"], "pytorch")
    unreadable = FileReport("bad.onnx", None, Status.ERROR, "truncated protobuf (file cut short?)")
    return Report([partial, unreadable])


def render(fmt: str, result: Report, **kwargs: object) -> str:
    config = kwargs.pop("config", AuditConfig())
    out = io.StringIO()
    get_reporter(fmt)(result, out, config=config, color=False, **kwargs)
    return out.getvalue()


def _no_nan(text: str) -> object:
    def reject(name: str) -> object:
        raise AssertionError(f"non-JSON constant {name} in output")
    return json.loads(text, parse_constant=reject)


# ------------------------------------------------------------------------------ registration


def test_ci_formats_are_registered_with_the_shared_signature() -> None:
    reference = inspect.signature(get_reporter("human"))
    for fmt in CI_FORMATS:
        assert fmt in formats()
        fn = get_reporter(fmt)
        assert list(inspect.signature(fn).parameters) == list(reference.parameters)
        module = sys.modules[fn.__module__]
        assert "Sample" in (module.__doc__ or ""), f"{fmt}: docstring must show a sample"


# -------------------------------------------------------------------------------------- sarif


def test_vendored_schema_is_the_official_sarif_2_1_0_schema() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"].endswith("/sarif-schema-2.1.0.json")
    assert schema["properties"]["version"]["enum"] == ["2.1.0"]


def test_sarif_of_real_models_validates_against_the_official_schema(
        real_report: Report, validator: jsonschema.Draft7Validator) -> None:
    log = _no_nan(render("sarif", real_report))
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    run = log["runs"][0]
    assert len(run["results"]) == len(real_report.findings) > 0
    assert run["invocations"][0]["executionSuccessful"] is True


def test_sarif_of_hand_built_report_validates(validator: jsonschema.Draft7Validator) -> None:
    log = _no_nan(render("sarif", hand_report()))
    errors = list(validator.iter_errors(log))
    assert not errors, [e.message for e in errors[:10]]


def test_sarif_rules_describe_the_whole_catalogue_with_help_pages(real_report: Report) -> None:
    driver = _no_nan(render("sarif", real_report))["runs"][0]["tool"]["driver"]
    assert driver["name"] == "initaudit" and driver["version"] and driver["semanticVersion"]
    rules = {r["id"]: r for r in driver["rules"]}
    levels = {"error": "error", "warning": "warning", "info": "note"}
    for code, rule in registry().items():
        d = rules[code]
        assert d["name"] == rule.name
        assert d["shortDescription"]["text"] == rule.summary
        assert d["fullDescription"]["text"]
        assert d["defaultConfiguration"]["level"] == levels[rule.severity.value]
        assert d["properties"]["precision"] == "high"
        page = REPO / "rules" / f"{rule.name}.md"
        if page.is_file():
            assert d["help"]["markdown"] == page.read_text(encoding="utf-8")
            assert d["help"]["text"]


def test_sarif_results_point_at_the_file_and_the_tensor(real_report: Report) -> None:
    log = _no_nan(render("sarif", real_report))
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    by_path = {fr.path: fr for fr in real_report.files}
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        loc = res["locations"][0]
        artifact = loc["physicalLocation"]["artifactLocation"]
        assert artifact["uriBaseId"] == "%SRCROOT%"
        assert artifact["uri"].startswith("sample_models/") and "\\" not in artifact["uri"]
        fr = by_path[artifact["uri"]]
        assert any(f.code == res["ruleId"] for f in fr.findings)
        logical = loc.get("logicalLocations", [])
        if res["properties"].get("tensor"):
            assert logical[0]["name"] == res["properties"]["tensor"]
            assert logical[0]["kind"] == "member"
            assert res["message"]["text"].startswith(res["properties"]["tensor"] + ": ")


def test_sarif_levels_locations_and_notifications_of_hand_built_report() -> None:
    run = _no_nan(render("sarif", hand_report()))["runs"][0]
    results = {(r["ruleId"], r["properties"].get("tensor")): r for r in run["results"]}
    assert results[("IA101", "fc1.weight")]["level"] == "error"
    assert results[("IA202", NASTY_TENSOR)]["level"] == "warning"
    assert results[("IA401", NASTY_TENSOR)]["level"] == "note"
    assert results[("IA202", NASTY_TENSOR)]["message"]["text"] == f"{NASTY_TENSOR}: {NASTY}"
    # a code the catalogue does not know still gets a descriptor its ruleIndex points at
    rules = run["tool"]["driver"]["rules"]
    assert rules[results[("IA202", NASTY_TENSOR)]["ruleIndex"]]["id"] == "IA202"
    fc1 = results[("IA101", "fc1.weight")]["locations"][0]
    assert fc1["physicalLocation"]["artifactLocation"]["uri"] == "models/sub%20dir/model.onnx"
    assert fc1["logicalLocations"] == [{"name": "fc1.weight", "fullyQualifiedName": "fc1/fc1.weight",
                                        "kind": "member"}]
    assert results[("IA101", "fc1.weight")]["properties"]["evidence"]["ratio"] == "nan"
    unsafe = results[("IA501", None)]["locations"][0]["logicalLocations"][0]
    assert unsafe == {"name": "archive/data.pkl", "fullyQualifiedName": "archive/data.pkl",
                      "kind": "module"}

    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    notes = invocation["toolExecutionNotifications"]
    errors = [n for n in notes if n["level"] == "error"]
    assert len(errors) == 1 and "bad.onnx" in errors[0]["message"]["text"]
    assert "truncated protobuf" in errors[0]["message"]["text"]
    assert errors[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "bad.onnx"
    skipped = [n for n in notes if n["level"] == "warning"]
    assert len(skipped) == 1 and "big.weight (external data file missing)" in skipped[0]["message"]["text"]
    assert any(n["level"] == "note" and "activation unknown" in n["message"]["text"] for n in notes)


def test_sarif_fingerprints_ignore_volatile_numbers() -> None:
    base = hand_report()
    changed = hand_report()
    f = changed.files[0].findings[0]
    changed.files[0].findings[0] = Finding(f.code, f.name, f.severity, 0.51, "std 0.0999 now",
                                           tensor=f.tensor, layer=f.layer)

    def prints(r: Report) -> list[str]:
        run = _no_nan(render("sarif", r))["runs"][0]
        return [res["partialFingerprints"]["initauditFingerprint/v1"] for res in run["results"]]

    assert prints(base) == prints(changed)
    assert len(set(prints(base))) == len(prints(base))  # different tensors/rules differ


def test_sarif_output_is_deterministic(real_report: Report) -> None:
    assert render("sarif", real_report) == render("sarif", real_report)


def test_sarif_severity_overrides_become_configuration_overrides(
        validator: jsonschema.Draft7Validator) -> None:
    config = AuditConfig(severity_overrides={"he-before-saturating": Severity.WARNING})
    log = _no_nan(render("sarif", hand_report(), config=config))
    assert not list(validator.iter_errors(log))
    overrides = log["runs"][0]["invocations"][0]["ruleConfigurationOverrides"]
    assert overrides == [{"descriptor": {"id": "IA101", "index": overrides[0]["descriptor"]["index"]},
                          "configuration": {"level": "warning"}}]


def test_sarif_path_outside_working_directory_is_a_file_uri(
        tmp_path: Path, validator: jsonschema.Draft7Validator) -> None:
    outside = tmp_path / "a b.onnx"
    log = _no_nan(render("sarif", Report([FileReport(str(outside), "onnx", Status.OK)])))
    assert not list(validator.iter_errors(log))
    uri = log["runs"][0]["artifacts"][0]["location"]["uri"]
    assert uri.startswith("file:///") and uri.endswith("/a%20b.onnx")


# ------------------------------------------------------------------------------------- github


def _unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _unescape_property(text: str) -> str:
    return _unescape_data(text.replace("%3A", ":").replace("%2C", ","))


_COMMAND = re.compile(r"^::(error|warning|notice)(?: ([^:]*))?::(.*)$")


def _parse(line: str) -> tuple[str, dict[str, str], str]:
    m = _COMMAND.match(line)
    assert m, f"not a workflow command: {line!r}"
    props = {}
    for part in (m.group(2) or "").split(",") if m.group(2) else []:
        key, _, value = part.partition("=")
        props[key] = _unescape_property(value)
    return m.group(1), props, _unescape_data(m.group(3))


def test_github_escaping_follows_the_runner_rules() -> None:
    assert github.escape_data("100%\r\nx") == "100%25%0D%0Ax"
    assert github.escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert github.escape_data("%0A") == "%250A"  # an escape-looking text survives a round trip


def test_github_annotations_line_by_line() -> None:
    text = render("github", hand_report())
    assert "\x1b[" not in text
    lines = text.splitlines()
    # the summary first: GitHub drops annotations past 10 per level, a last line goes first
    assert lines == [
        "::notice title=initaudit::2 files, 2 errors, 1 warning, 1 info, 1 unreadable file; "
        "3 tensors analysed, 1 skipped; 1 partial file",
        "::error file=models/sub dir/model.onnx,title=IA101 he-before-saturating::"
        "fc1.weight: He feeds a sigmoid",
        "::error file=models/sub dir/model.onnx,title=IA501 unsafe-content::"
        "archive/data.pkl: pickle GLOBAL os.system: never executed",
        "::warning file=models/sub dir/model.onnx,title=IA202 dead-units::"
        "enc:0,w%251: 50%25 of units | dead, see: a,b%0Asecond line%0D%0Athird",
        "::notice file=models/sub dir/model.onnx,title=IA401 unrecognized-init::"
        "enc:0,w%251: no known scheme fits",
        "::warning file=models/sub dir/model.onnx,title=initaudit skipped tensors::"
        "1 tensor not analysed: big.weight (external data file missing)",
        "::notice file=models/sub dir/model.onnx,title=initaudit note::"
        "activation unknown for 1 layer(s) (enc)",
        "::error file=bad.onnx,title=initaudit::could not be read: truncated protobuf (file cut short?)",
    ]
    kind, props, message = _parse(lines[3])
    assert (kind, props["title"], message) == ("warning", "IA202 dead-units", f"{NASTY_TENSOR}: {NASTY}")


def test_github_property_escaping_of_paths_and_titles() -> None:
    fr = FileReport("odd,name:1%.onnx", "onnx", Status.OK, findings=[
        Finding("IA301", "exploding-init", Severity.WARNING, 0.9, "too big", tensor="w")])
    line = render("github", Report([fr]), quiet=True).splitlines()[1]
    assert line.startswith("::warning file=odd%2Cname%3A1%25.onnx,title=IA301 exploding-init::")
    assert _parse(line)[1]["file"] == "odd,name:1%.onnx"


def test_github_real_models_one_annotation_per_finding(real_report: Report) -> None:
    lines = render("github", real_report, quiet=True).splitlines()
    parsed = [_parse(line) for line in lines]
    commands = {"error": Severity.ERROR, "warning": Severity.WARNING, "notice": Severity.INFO}
    expected = [(repo, f) for repo in real_report.files for f in repo.findings]
    finding_lines = [p for p in parsed if p[1].get("title", "").startswith("IA")]
    assert len(finding_lines) == len(expected) > 0
    for (kind, props, message), (fr, f) in zip(finding_lines, expected):
        assert commands[kind] is f.severity
        assert props == {"file": fr.path, "title": f"{f.code} {f.name}"}
        assert message.endswith(f.message)


def test_github_quiet_keeps_findings_unreadable_and_skipped_only() -> None:
    lines = render("github", hand_report(), quiet=True).splitlines()
    assert len(lines) == 7 and lines[0].startswith("::notice title=initaudit::2 files")
    assert not any("title=initaudit note" in line for line in lines)


# -------------------------------------------------------------------------------------- junit


def _junit(result: Report, **kwargs: object) -> ET.Element:
    text = render("junit", result, **kwargs)
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(text)


def test_junit_parses_back_with_counts_matching_the_findings(real_report: Report) -> None:
    root = _junit(real_report)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [fr.path for fr in real_report.files]
    for suite, fr in zip(suites, real_report.files):
        failures = suite.findall("testcase/failure")
        assert len(failures) == sum(1 for f in fr.findings if f.severity is Severity.ERROR)
        assert sorted(x.get("type") for x in failures) == sorted(
            f.code for f in fr.findings if f.severity is Severity.ERROR)
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert all(c.get("classname") == fr.path for c in cases)
        kernels = {t.name for t in fr.tensors if t.role in ("kernel", "recurrent", "embedding")}
        assert kernels <= {c.get("name") for c in cases}
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)
    assert int(root.get("failures")) == sum(int(s.get("failures")) for s in suites)


def test_junit_threshold_errors_skipped_and_infos() -> None:
    root = _junit(hand_report())
    partial, unreadable = root.findall("testsuite")
    cases = {c.get("name"): c for c in partial.findall("testcase")}
    assert set(cases) == {"fc1.weight", NASTY_TENSOR, "big.weight", "archive/data.pkl"}
    assert cases["fc1.weight"].find("failure").get("type") == "IA101"
    assert cases["archive/data.pkl"].find("failure").get("type") == "IA501"
    # below --fail-on error: the warning and the info do not fail their test case
    nasty = cases[NASTY_TENSOR]
    assert nasty.find("failure") is None
    out = nasty.find("system-out").text
    assert NASTY.replace("\r\n", "\n") in out.replace("\r\n", "\n") and "IA401" in out
    assert cases["big.weight"].find("skipped").get("message") == \
        "not analysed: external data file missing"
    assert (partial.get("tests"), partial.get("failures"), partial.get("errors"),
            partial.get("skipped")) == ("4", "2", "0", "1")
    error = unreadable.find("testcase/error")
    assert "truncated protobuf" in error.get("message")
    assert unreadable.get("errors") == "1"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == \
        ("5", "2", "1", "1")

    # --fail-on warning: the warning fails too, the info still does not
    stricter = _junit(hand_report(), config=AuditConfig(fail_on=Severity.WARNING))
    nasty = {c.get("name"): c for c in stricter.iter("testcase")}[NASTY_TENSOR]
    assert [f.get("type") for f in nasty.findall("failure")] == ["IA202"]
    assert "IA401" in nasty.find("system-out").text
    # attribute values keep |, %, newlines exactly (XML escaping round-trips)
    assert nasty.find("failure").get("message") == "IA202 dead-units: " + " ".join(NASTY.split())


def test_junit_survives_characters_xml_cannot_hold() -> None:
    fr = FileReport("x.npz", "npz", Status.OK, findings=[
        Finding("IA201", "constant-weights", Severity.ERROR, 1.0, "bad\x00bytes <&>\x1b",
                tensor="w\x01")])
    root = _junit(Report([fr]))
    failure = root.find("testsuite/testcase/failure")
    assert failure.get("message") == "IA201 constant-weights: bad\ufffdbytes <&>\ufffd"
    assert root.find("testsuite/testcase").get("name") == "w\ufffd"


# ----------------------------------------------------------------------------------- markdown


def _rows(text: str) -> list[list[str]]:
    """Table rows split on unescaped pipes."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_markdown_pull_request_comment_of_hand_built_report() -> None:
    text = render("markdown", hand_report())
    assert text.splitlines()[0].startswith("## ❌ initaudit: failed")
    rows = _rows(text)
    assert ["models/sub dir/model.onnx", "⚠️ partial", "2", "1", "1", "3 analysed, 1 skipped"] in rows
    assert ["bad.onnx", "❌ unreadable", "–", "–", "–", "–"] in rows
    nasty = next(r for r in rows if "IA202" in r)
    assert len(nasty) == 5  # the | in the message did not split the cell
    assert nasty[3] == r"enc:0,w%1"
    assert nasty[4] == r"50% of units \| dead, see: a,b<br>second line<br>third"
    assert "❌ could not be read: truncated protobuf (file cut short?)" in text
    assert "big.weight: external data file missing" in text
    assert "activation unknown for 1 layer(s) (enc)" in text
    assert "<details><summary>" in text and "</details>" in text
    scheme_rows = [r for r in rows if len(r) == 7]
    assert [r[0] for r in scheme_rows][1:] == ["fc1.weight", NASTY_TENSOR.replace("%", "%"),
                                               "big.weight"]
    assert "skipped: external data file missing" in scheme_rows[-1][4]


def test_markdown_never_calls_a_partial_file_clean() -> None:
    fr = FileReport("part.npz", "npz", Status.PARTIAL, tensors=[],
                    skipped=[SkippedTensor("x", "object array", SkipReason.UNSAFE)])
    text = render("markdown", Report([fr]))
    assert text.splitlines()[0].startswith("## ⚠️ initaudit: passed, but 1 file not fully analysed")
    assert "not everything was analysed" in text
    assert "✅" not in text


def test_markdown_real_models(real_report: Report) -> None:
    text = render("markdown", real_report)
    rows = _rows(text)
    summary = [r for r in rows if len(r) == 6 and r[0] != "file"]
    assert len(summary) == len(real_report.files)
    for fr in real_report.files:
        assert f"### {markdown.cell(fr.path)}" in text
        for f in fr.findings:
            assert any(r[1:3] == [f.code, markdown.cell(f.name)] for r in rows if len(r) == 5)
    clean = next(fr for fr in real_report.files if fr.path.endswith("mlp_relu_clean.onnx"))
    if not clean.findings:
        assert "✅ No findings" in text


def test_markdown_quiet_leaves_out_scheme_tables() -> None:
    text = render("markdown", hand_report(), quiet=True)
    assert "<details>" not in text and "IA202" in text


def test_markdown_cell_escaping() -> None:
    assert markdown.cell("a|b") == r"a\|b"
    assert markdown.cell("<script>&") == r"\<script\>&amp;"
    assert markdown.cell("x\ny\r\nz") == "x<br>y<br>z"
    assert markdown.cell("*bold* `code` [link](u)") == r"\*bold\* \`code\` \[link\](u)"


# ---------------------------------------------------------------------------- command line


@pytest.mark.parametrize("fmt", CI_FORMATS)
def test_cli_writes_each_ci_format(fmt: str, validator: jsonschema.Draft7Validator) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "initaudit", "--format", fmt, "sample_models/mlp_he_sigmoid.onnx"],
        cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"})
    assert proc.returncode == 1, proc.stderr  # the sample has an error finding
    out = proc.stdout
    assert "\x1b[" not in out
    if fmt == "sarif":
        log = _no_nan(out)
        assert not list(validator.iter_errors(log))
        assert [r["ruleId"] for r in log["runs"][0]["results"]] == ["IA101"]
    elif fmt == "github":
        lines = out.splitlines()
        assert all(line.startswith("::") for line in lines)
        assert lines[1].startswith("::error file=sample_models/mlp_he_sigmoid.onnx,"
                                   "title=IA101 he-before-saturating::fc1.weight: ")
    elif fmt == "junit":
        root = ET.fromstring(out)
        assert [f.get("type") for f in root.iter("failure")] == ["IA101"]
    else:
        assert out.startswith("## ❌ initaudit: failed")
        assert "| ❌ error | IA101 | he-before-saturating | fc1.weight |" in out


def test_cli_unreadable_file_keeps_machine_output_clean(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "initaudit", "--format", "github", str(bad)],
        cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("::error file=") and ",title=initaudit::could not be read: " in lines[1]
    assert all(line.startswith("::") for line in lines)
