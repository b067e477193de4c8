"""GitHub Actions reporter: workflow-command annotations, one line each. Sample::

    ::error file=sample_models/mlp_he_sigmoid.onnx,title=IA101 he-before-saturating::fc1.weight: He-scaled weights (std 0.08201 ≈ sqrt(2/300) = 0.08165) feed a sigmoid; ...
    ::error file=bad.onnx,title=initaudit::could not be read: truncated protobuf (file cut short?)
    ::warning file=part.npz,title=initaudit skipped tensors::1 tensor not analysed: x (object array)
    ::notice file=models/mlp.onnx,title=initaudit note::activation unknown for 1 layer(s) (fc2): ...
    ::notice title=initaudit::2 files, 1 error, 0 warnings, 0 infos, 1 unreadable file; 4 tensors analysed, 1 skipped

The summary comes FIRST (GitHub keeps the first 10 annotations of each level per step and drops
the rest, so a summary printed last is the first to go); each level then gets at most 10
annotations, its last slot saying how many more there are, and the rest is printed as plain log
lines. With ``$GITHUB_STEP_SUMMARY`` set, the Markdown report (within 65,536 characters) is
appended to the job summary. Severity maps to the command (error -> ``::error``, warning ->
``::warning``, info -> ``::notice``). Values are escaped as the runner expects: in the message ``%`` -> ``%25``,
``\\r`` -> ``%0D``, ``\\n`` -> ``%0A``; in properties also ``:`` -> ``%3A`` and ``,`` -> ``%2C``.
A file with skipped tensors gets a warning saying so (never silently clean); notes (unknown
activations...) become notices unless ``quiet``. No
colour and nothing else on the stream, so the step log stays machine-readable.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TextIO

from ..report import Finding, Report, Severity, Status
from ._ci import accepted_parts, analysed, join_limited, plural, repo_path, skipped_items, subject

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import AuditConfig

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
TOOL = "initaudit"
MAX_NAMES = 50  # skipped tensors named in one annotation; the rest are counted


# GitHub shows at most 10 annotations of each level (error, warning, notice) per step and drops
# the rest (docs.github.com: "Workflow commands for GitHub Actions" / annotation limits); the
# remainder goes to the log as plain lines and to $GITHUB_STEP_SUMMARY.
MAX_PER_LEVEL = 10
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Write the summary notice, then at most 10 annotations per level, then the rest as plain
    log lines; append the Markdown report to ``$GITHUB_STEP_SUMMARY`` when it is set."""
    for line in lines(result, quiet=quiet):
        stream.write(line + "\n")
    stream.flush()
    write_step_summary(result, config)


def write_step_summary(result: Report, config: AuditConfig | None) -> bool:
    """Append the Markdown report (within GitHub's limits) to the job summary file, if any."""
    target = os.environ.get(STEP_SUMMARY_ENV)
    if not target:
        return False
    from ..report import Severity as _Severity
    from .markdown import render

    fail_on = getattr(config, "fail_on", _Severity.ERROR)
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(render(result, fail_on=fail_on, quiet=True) + "\n")
    except OSError:
        return False  # the job summary is a courtesy: never fail the audit for it
    return True


def lines(result: Report, *, quiet: bool = False, limit: int = MAX_PER_LEVEL) -> list[str]:
    """The summary notice first (it must survive the limit), then annotations within ``limit``
    per level, each level's last slot saying how many more there are; then those as plain lines."""
    planned: list[tuple[str, str]] = []  # (level, annotation)
    for fr in result.files:
        path = repo_path(fr.path)
        if fr.status is Status.ERROR:
            planned.append(
                (
                    "error",
                    command(
                        "error",
                        f"could not be read: {fr.error or 'unknown reason'}",
                        file=path,
                        title=TOOL,
                    ),
                )
            )
            continue
        planned.extend((COMMANDS[f.severity], _finding(f, path)) for f in fr.findings)
        skipped = skipped_items(fr)
        if skipped:
            names = join_limited(
                (f"{name} ({reason})" for name, reason in skipped), MAX_NAMES, sep="; "
            )
            planned.append(
                (
                    "warning",
                    command(
                        "warning",
                        f"{plural(len(skipped), 'tensor')} not analysed: {names}",
                        file=path,
                        title=f"{TOOL} skipped tensors",
                    ),
                )
            )
        elif fr.partial:
            planned.append(
                (
                    "warning",
                    command(
                        "warning",
                        "audit incomplete: part of the file was not analysed",
                        file=path,
                        title=f"{TOOL} incomplete",
                    ),
                )
            )
        if not quiet:
            planned.extend(
                ("notice", command("notice", note, file=path, title=f"{TOOL} note"))
                for note in fr.notes
            )
    out = [command("notice", _summary(result), title=TOOL)]
    used = {"error": 0, "warning": 0, "notice": 1}  # the summary takes one notice
    total = {level: sum(1 for lv, _ in planned if lv == level) for level in used}
    overflow: list[str] = []
    for level, annotation in planned:
        room = limit - used[level]
        left = total[level] - (used[level] - (1 if level == "notice" else 0))
        if room > 1 or (room == 1 and left == 1):
            out.append(annotation)
            used[level] += 1
        else:
            overflow.append(annotation)
    for level in ("error", "warning", "notice"):
        shown = used[level] - (1 if level == "notice" else 0)
        more = total[level] - shown
        if more:
            out.append(
                command(
                    level,
                    f"{more} more {level} annotation{'s' if more != 1 else ''} "
                    f"not shown (GitHub shows {limit} per level): see the job "
                    "summary or the log",
                    title=TOOL,
                )
            )
    # the rest in the log, readable, without the workflow-command prefix
    out += ["initaudit: " + _plain(a) for a in overflow]
    return out


def _plain(annotation: str) -> str:
    head, _, message = annotation[2:].partition("::")
    level, _, props = head.partition(" ")
    return f"{level} {props} {unescape(message)}".replace("  ", " ")


def unescape(text: str) -> str:
    return text.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


def _finding(f: Finding, path: str) -> str:
    what = subject(f)
    message = f"{what}: {f.message}" if what else f.message
    return command(COMMANDS[f.severity], message, file=path, title=f"{f.code} {f.name}")


def _summary(result: Report) -> str:
    c = result.counts()
    parts = [
        plural(c["files"], "file"),
        plural(c["errors"], "error"),
        plural(c["warnings"], "warning"),
        plural(c["infos"], "info"),
    ]
    if c["unreadable_files"]:
        parts.append(f"{plural(c['unreadable_files'], 'unreadable file')}")
    analysed_n = sum(len(analysed(fr)) for fr in result.files)
    skipped_n = sum(len(skipped_items(fr)) for fr in result.files if fr.status is not Status.ERROR)
    text = ", ".join(parts) + f"; {plural(analysed_n, 'tensor')} analysed"
    if skipped_n:
        text += f", {skipped_n} skipped"
    extra = accepted_parts(result)
    if extra:
        text += "; " + ", ".join(extra)
    return text


def command(name: str, message: str, **properties: str | None) -> str:
    """``::name key=value,...::message`` with GitHub's escaping (None-valued properties left out)."""
    props = ",".join(
        f"{key}={escape_property(value)}" for key, value in properties.items() if value is not None
    )
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def escape_data(text: str) -> str:
    # the order matters: '%' first, or the escapes themselves would be escaped
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
