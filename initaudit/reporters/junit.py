"""JUnit XML reporter: what Jenkins, GitLab, Azure Pipelines and CircleCI render as tests. Sample::

    <?xml version="1.0" encoding="utf-8"?>
    <testsuites name="initaudit" tests="3" failures="1" errors="1" skipped="0">
      <testsuite name="sample_models/mlp_he_sigmoid.onnx" tests="2" failures="1" errors="0" skipped="0">
        <properties>
          <property name="format" value="onnx" />
          <property name="framework" value="pytorch" />
          <property name="status" value="ok" />
        </properties>
        <testcase classname="sample_models/mlp_he_sigmoid.onnx" name="fc1.weight">
          <failure type="IA101" message="IA101 he-before-saturating: He-scaled weights ...">error IA101 he-before-saturating (confidence 1.00)
    fc1.weight: He-scaled weights (std 0.08201 ...) feed a sigmoid; ...</failure>
        </testcase>
        <testcase classname="sample_models/mlp_he_sigmoid.onnx" name="fc2.weight" />
      </testsuite>
      <testsuite name="bad.onnx" tests="1" failures="0" errors="1" skipped="0">
        <testcase classname="bad.onnx" name="(file)">
          <error type="unreadable" message="could not be read: truncated protobuf (file cut short?)" />
        </testcase>
      </testsuite>
    </testsuites>

One ``<testsuite>`` per file, one ``<testcase>`` per analysed kernel (every analysed tensor with
``verbose``) and per tensor or layer a finding is about; findings about the whole file (unsafe
content) go to a ``(file)`` test case. A finding at or above ``--fail-on`` is a ``<failure>``
(type = rule code); findings below it do not fail their test case and are listed in its
``<system-out>``. An unreadable file is an ``<error>``; a tensor that was skipped is a
``<skipped>`` test case with the reason, so a partial analysis never looks like a full pass.
``failures``, ``errors`` and ``skipped`` count test cases, as JUnit tools do. Text is
sanitised for XML 1.0 (control characters a file name may hold become U+FFFD).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, TextIO

from ..model import SCHEMED_ROLE_NAMES as SCHEMED_ROLES
from ..report import FileReport, Finding, Report, Severity, Status
from ._ci import coverage_text, fails, one_line, repo_path, skipped_items, subject

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import AuditConfig

FILE_CASE = "(file)"
# characters XML 1.0 cannot carry at all, even escaped
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Write ``result`` as one JUnit XML document (``color`` and ``quiet`` do not apply)."""
    stream.write(dumps(result, fail_on=config.fail_on, verbose=verbose))
    stream.write("\n")


def dumps(result: Report, *, fail_on: Severity = Severity.ERROR, verbose: bool = False) -> str:
    root = build(result, fail_on=fail_on, verbose=verbose)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def build(
    result: Report, *, fail_on: Severity = Severity.ERROR, verbose: bool = False
) -> ET.Element:
    root = ET.Element("testsuites", {"name": "initaudit"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for fr in result.files:
        suite = _suite(fr, fail_on=fail_on, verbose=verbose)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    return root


def _suite(fr: FileReport, *, fail_on: Severity, verbose: bool) -> ET.Element:
    path = _clean(repo_path(fr.path))
    suite = ET.Element("testsuite", {"name": path})
    properties = ET.SubElement(suite, "properties")
    coverage = fr.coverage
    for name, value in (
        ("format", fr.format),
        ("framework", fr.framework),
        ("status", "partial" if fr.partial else fr.status.value),
        ("coverage", coverage_text(fr) if coverage is not None else None),
        (
            "suppressed",
            str(sum(1 for s in fr.suppressed if s.kind != "baseline")) if fr.suppressed else None,
        ),
        (
            "baselined",
            str(sum(1 for s in fr.suppressed if s.kind == "baseline")) if fr.suppressed else None,
        ),
    ):
        if value:
            ET.SubElement(properties, "property", {"name": name, "value": _clean(value)})
    cases: list[ET.Element] = []
    if fr.status is Status.ERROR:
        case = _case(path, FILE_CASE)
        ET.SubElement(
            case,
            "error",
            {
                "type": "unreadable",
                "message": _clean(f"could not be read: {one_line(fr.error or 'unknown reason')}"),
            },
        )
        cases.append(case)
    else:
        cases = _cases(fr, path, fail_on=fail_on, verbose=verbose)
    suite.extend(cases)
    suite.set("tests", str(len(cases)))
    for key, tag in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        suite.set(key, str(sum(1 for c in cases if c.find(tag) is not None)))
    # attribute order: name, tests, failures, errors, skipped (ElementTree keeps insertion order)
    ordered = {k: suite.attrib[k] for k in ("name", "tests", "failures", "errors", "skipped")}
    suite.attrib.clear()
    suite.attrib.update(ordered)
    return suite


def _cases(fr: FileReport, path: str, *, fail_on: Severity, verbose: bool) -> list[ET.Element]:
    """Test cases in a stable order: tensors as the file lists them, then layers and the file."""
    by_subject: dict[str, list[Finding]] = {}
    for f in fr.findings:
        by_subject.setdefault(subject(f) or FILE_CASE, []).append(f)
    cases: dict[str, ET.Element] = {}
    skipped = dict(skipped_items(fr))
    for t in fr.tensors:
        if t.name in cases:
            continue
        wanted = verbose or t.role in SCHEMED_ROLES or t.scheme is not None
        if t.skipped or t.name in skipped or wanted or t.name in by_subject:
            cases[t.name] = _case(path, t.name)
    for name in skipped:  # skipped by the loader before becoming a tensor report
        cases.setdefault(name, _case(path, name))
    for name in by_subject:
        cases.setdefault(name, _case(path, name))
    for name, case in cases.items():
        findings = by_subject.get(name, [])
        failing = [f for f in findings if fails(f, fail_on)]
        for f in failing:
            failure = ET.SubElement(
                case,
                "failure",
                {"type": f.code, "message": _clean(f"{f.code} {f.name}: {one_line(f.message)}")},
            )
            failure.text = _clean(_details(f))
        if name in skipped and not failing:
            ET.SubElement(case, "skipped", {"message": _clean(f"not analysed: {skipped[name]}")})
        below = [f for f in findings if not fails(f, fail_on)]
        if below:
            out = ET.SubElement(case, "system-out")
            out.text = _clean("\n".join(_details(f) for f in below))
    return list(cases.values())


def _case(path: str, name: str) -> ET.Element:
    return ET.Element("testcase", {"classname": path, "name": _clean(name)})


def _details(f: Finding) -> str:
    what = subject(f)
    head = f"{f.severity.value} {f.code} {f.name} (confidence {float(f.confidence):.2f})"
    return f"{head}\n{what + ': ' if what else ''}{f.message}"


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", str(text))
