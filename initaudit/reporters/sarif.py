"""SARIF 2.1.0 reporter: the log GitHub code scanning (and other SARIF viewers) ingest.

One run. ``tool.driver.rules`` describes every rule of the catalogue (id = code, name, short and
full description, the rule's documentation page as ``help``, the default level); each finding is
a ``result`` with a physical location (the checkpoint, relative to the working directory, with
``uriBaseId`` ``%SRCROOT%``) and a logical location (the tensor, or the layer). Files that could
not be read and tensors that were skipped are tool-execution notifications, so that a partial
analysis never looks like a clean one; ``executionSuccessful`` is false when a file could not be
read. ``partialFingerprints`` use the baseline's fingerprint (rule code, path, tensor, layer; no
volatile numbers) so alerts keep their identity across re-exports. Output is deterministic.
Sample (abridged)::

    {
      "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
      "version": "2.1.0",
      "runs": [{
        "tool": {"driver": {"name": "initaudit", "version": "0.1.0", "semanticVersion": "0.1.0",
                 "informationUri": "https://github.com/initaudit/initaudit",
                 "rules": [{"id": "IA101", "name": "he-before-saturating",
                            "shortDescription": {"text": "He/Kaiming-scaled kernel feeds ..."},
                            "fullDescription": {"text": "A kernel initialised with ..."},
                            "help": {"text": "# he-before-saturating (IA101) ...",
                                     "markdown": "# he-before-saturating (IA101) ..."},
                            "defaultConfiguration": {"level": "error"},
                            "properties": {"precision": "high", "problem.severity": "error",
                                           "tags": ["initaudit", "weight-initialization",
                                                    "activation-pairing"]}}, ...]}},
        "invocations": [{"executionSuccessful": true, "toolExecutionNotifications": []}],
        "results": [{
          "ruleId": "IA101", "ruleIndex": 2, "level": "error",
          "message": {"text": "fc1.weight: He-scaled weights (std 0.08201 ...) feed a sigmoid; ..."},
          "locations": [{
            "physicalLocation": {"artifactLocation": {"uri": "sample_models/mlp_he_sigmoid.onnx",
                                                      "uriBaseId": "%SRCROOT%"}},
            "logicalLocations": [{"name": "fc1.weight", "fullyQualifiedName": "fc1/fc1.weight",
                                  "kind": "member"}]}],
          "partialFingerprints": {"initauditFingerprint/v1": "6f1c0e4b8a2d9f13"},
          "properties": {"confidence": 1.0, "severity": "error", "tensor": "fc1.weight",
                         "layer": "fc1", "evidence": {"observed_std": 0.082, ...}}
        }]
      }]
    }

Severity maps to level (error -> error, warning -> warning, info -> note); confidence is the
result's ``properties.confidence`` (bandit maps it to precision; at rule level precision is
"high": initaudit's rules stay silent when unsure). ``color``, ``verbose`` and ``quiet`` do not
apply: a machine reads this.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from .. import __version__
from ..analysis.results import _jsonable
from ..report import FileReport, Finding, Report, Severity, Status, Suppression
from ._ci import is_absolute, join_limited, one_line, repo_path, skipped_items, subject
from ._text import json_fallback as _fallback

if TYPE_CHECKING:  # pragma: no cover
    from ..rules.base import Rule
    from ..settings import AuditConfig

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/initaudit/initaudit"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "initauditFingerprint/v1"
MAX_NAMES = 50  # skipped tensors named in one notification; the rest are counted

LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Write ``result`` as one SARIF 2.1.0 log."""
    stream.write(dumps(result, config))
    stream.write("\n")


def dumps(result: Report, config: AuditConfig | None = None) -> str:
    # allow_nan=False: SARIF is JSON, which has no NaN; evidence goes through _jsonable first
    return json.dumps(
        build(result, config), indent=2, ensure_ascii=False, allow_nan=False, default=_fallback
    )


def build(result: Report, config: AuditConfig | None = None) -> dict[str, Any]:
    """The SARIF log as a dict (what :func:`dumps` serialises)."""
    rules, index = _rule_descriptors(result)
    # with a baseline every result says whether it is new (SARIF 3.27.24 baselineState)
    baselined_run = getattr(result, "baseline_path", None) is not None
    results = []
    for fr in result.files:
        results += [
            _result(f, fr, index, baseline_state="new" if baselined_run else None)
            for f in fr.findings
        ]
        results += [
            _result(
                s.finding,
                fr,
                index,
                suppression=s,
                baseline_state=("unchanged" if s.kind == "baseline" else "new")
                if baselined_run
                else None,
            )
            for s in fr.suppressed
        ]
    properties: dict[str, Any] = {"summary": result.counts()}
    coverage = {
        repo_path(fr.path): c.to_dict()
        for fr in result.files
        if (c := getattr(fr, "coverage", None)) is not None
    }
    if coverage:
        properties["coverage"] = coverage
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "initaudit",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "invocations": [_invocation(result, config, index)],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": properties,
    }
    artifacts = _artifacts(result)
    if artifacts:
        run["artifacts"] = artifacts
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


# ------------------------------------------------------------------------------------- rules


def _rule_descriptors(result: Report) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every rule of the catalogue, plus any code a finding carries that the catalogue lacks
    (a result's ruleIndex must point at a descriptor)."""
    from ..rules import registry

    descriptors = [_descriptor(r) for r in registry().values()]
    index = {d["id"]: i for i, d in enumerate(descriptors)}
    for f in result.findings:
        if f.code not in index:
            index[f.code] = len(descriptors)
            descriptors.append(
                {
                    "id": f.code,
                    "name": f.name,
                    "shortDescription": {"text": f.name},
                    "defaultConfiguration": {"level": LEVELS[f.severity]},
                    "properties": {"tags": ["initaudit"]},
                }
            )
    return descriptors, index


def _descriptor(rule: Rule) -> dict[str, Any]:
    from ..rules.docs import read_page

    page = read_page(rule)
    out: dict[str, Any] = {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": _lead(page) or rule.summary},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {
            "precision": "high",
            "problem.severity": LEVELS[rule.severity],
            "tags": _tags(rule.code),
        },
    }
    if page:
        out["help"] = {"text": page, "markdown": page}
    return out


def _lead(page: str | None) -> str | None:
    """The page's first prose paragraph: what the rule detects, in one or two sentences."""
    if not page:
        return None
    for paragraph in re.split(r"\n\s*\n", page):
        text = paragraph.strip()
        if not text or text.startswith(("#", "```", "|", "-", "*")):
            continue
        if text.lower().startswith("default severity"):
            continue
        return one_line(text)
    return None


def _tags(code: str) -> list[str]:
    """The tool's tags and the rule's family (rules.base.Family: its value is the tag), so
    viewers can filter by family."""
    from ..rules.base import Family

    tags = ["initaudit", "weight-initialization"]
    try:
        tags.append(Family.of_code(code).value)
    except ValueError:  # a code outside the families (none today): no family tag
        pass
    return tags


# ------------------------------------------------------------------------------- invocation


def _invocation(
    result: Report, config: AuditConfig | None, index: dict[str, int]
) -> dict[str, Any]:
    notifications: list[dict[str, Any]] = []
    for fr in result.files:
        location = [_location(fr.path)]
        if fr.status is Status.ERROR:
            notifications.append(
                {
                    "level": "error",
                    "locations": location,
                    "message": {
                        "text": f"{fr.path}: could not be read: {one_line(fr.error or 'unknown reason')}"
                    },
                }
            )
            continue
        skipped = skipped_items(fr)
        if skipped:
            # a warning, not a note: these tensors were not checked at all
            names = join_limited(
                (f"{name} ({one_line(reason)})" for name, reason in skipped), MAX_NAMES, sep="; "
            )
            notifications.append(
                {
                    "level": "warning",
                    "locations": location,
                    "message": {
                        "text": f"{fr.path}: {len(skipped)} tensor(s) not analysed: {names}"
                    },
                }
            )
        elif fr.partial:
            notifications.append(
                {
                    "level": "warning",
                    "locations": location,
                    "message": {
                        "text": f"{fr.path}: audit incomplete: part of the file was not analysed"
                        + (f" ({_coverage_text(fr)})" if fr.coverage is not None else "")
                    },
                }
            )
        for note in fr.notes:
            notifications.append(
                {
                    "level": "note",
                    "locations": location,
                    "message": {"text": f"{fr.path}: {one_line(note)}"},
                }
            )
    invocation: dict[str, Any] = {
        # an unreadable or partly audited file: the tool did not do all it was asked to
        "executionSuccessful": not any(
            fr.status is Status.ERROR or fr.partial for fr in result.files
        ),
        "toolExecutionNotifications": notifications,
    }
    overrides = _overrides(config, index)
    if overrides:
        invocation["ruleConfigurationOverrides"] = overrides
    return invocation


def _overrides(config: AuditConfig | None, index: dict[str, int]) -> list[dict[str, Any]]:
    """Per-rule severity overrides from the configuration, as SARIF configuration overrides."""
    if config is None or not getattr(config, "severity_overrides", None):
        return []
    from ..rules import find_rule

    out: dict[str, dict[str, Any]] = {}
    for key, severity in config.severity_overrides.items():
        rule = find_rule(key)
        if rule is None or rule.code not in index:
            continue
        out[rule.code] = {
            "descriptor": {"id": rule.code, "index": index[rule.code]},
            "configuration": {"level": LEVELS[Severity(severity)]},
        }
    return [out[code] for code in sorted(out)]


# ---------------------------------------------------------------------------------- results


def _coverage_text(fr: FileReport) -> str:
    c = fr.coverage
    assert c is not None
    return f"coverage {c.weights_analysed}/{c.weights_present} weights ({c.fraction:.1%} of bytes)"


def _result(
    f: Finding,
    fr: FileReport,
    index: dict[str, int],
    *,
    suppression: Suppression | None = None,
    baseline_state: str | None = None,
) -> dict[str, Any]:
    from ..baseline import fingerprint

    what = subject(f)
    location = _location(fr.path)
    logical = _logical_location(f)
    if logical is not None:
        location["logicalLocations"] = [logical]
    properties: dict[str, Any] = {
        "confidence": round(float(f.confidence), 4),
        "severity": f.severity.value,
        "name": f.name,
    }
    if f.tensor:
        properties["tensor"] = f.tensor
    if f.layer:
        properties["layer"] = f.layer
    if f.evidence:
        properties["evidence"] = {str(k): _jsonable(v) for k, v in f.evidence.items()}
    out: dict[str, Any] = {
        "ruleId": f.code,
        "ruleIndex": index[f.code],
        "level": LEVELS[f.severity],
        "message": {"text": f"{what}: {f.message}" if what else f.message},
        "locations": [location],
        # the same key as baselines: rule, file, tensor, layer; never the message's numbers
        "partialFingerprints": {
            FINGERPRINT_KEY: fingerprint(f.code, repo_path(fr.path), f.tensor, f.layer)
        },
        "properties": properties,
    }
    if baseline_state is not None:
        out["baselineState"] = baseline_state
    if suppression is not None:
        # SARIF 3.35: kept and marked, never dropped. Both kinds live outside the checkpoint
        # (a config file, a baseline file): "external"; checkpoints carry no comments, so no
        # suppression is ever "inSource".
        # (no "status": absent means accepted, and the schema in tests/data predates it)
        out["suppressions"] = [{"kind": "external", "justification": suppression.justification}]
    return out


def _logical_location(f: Finding) -> dict[str, Any] | None:
    if f.tensor:
        qualified = f"{f.layer}/{f.tensor}" if f.layer and f.layer != f.tensor else f.tensor
        return {"name": f.tensor, "fullyQualifiedName": qualified, "kind": "member"}
    if f.layer:
        return {"name": f.layer, "fullyQualifiedName": f.layer, "kind": "module"}
    return None


def _location(path: str) -> dict[str, Any]:
    return {"physicalLocation": {"artifactLocation": artifact_location(path)}}


def artifact_location(path: str) -> dict[str, Any]:
    """A SARIF artifactLocation for a checkpoint path: a relative URI against ``%SRCROOT%``
    (the working directory) when the file lies inside it, a ``file://`` URI otherwise."""
    p = repo_path(path)
    if is_absolute(p):
        prefix = "file://" if p.startswith("/") else "file:///"
        return {"uri": prefix + quote(p, safe="/:")}
    # percent-encode what a URI reference cannot hold (spaces, '#', '?', '<'...)
    return {"uri": quote(p, safe="/"), "uriBaseId": SRCROOT}


def _artifacts(result: Report) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for fr in result.files:
        location = artifact_location(fr.path)
        seen.setdefault(location["uri"], {"location": location, "roles": ["analysisTarget"]})
    return list(seen.values())
