"""GitHub Actions reporter: workflow-command annotations, one line each. Sample::

    ::error file=sample_models/mlp_he_sigmoid.onnx,title=IA101 he-before-saturating::fc1.weight: He-scaled weights (std 0.08201 ≈ sqrt(2/300) = 0.08165) feed a sigmoid; ...
    ::error file=bad.onnx,title=initaudit::could not be read: truncated protobuf (file cut short?)
    ::warning file=part.npz,title=initaudit skipped tensors::1 tensor not analysed: x (object array)
    ::notice file=models/mlp.onnx,title=initaudit note::activation unknown for 1 layer(s) (fc2): ...
    ::notice title=initaudit::2 files, 1 error, 0 warnings, 0 infos, 1 unreadable file; 4 tensors analysed, 1 skipped

Severity maps to the command (error -> ``::error``, warning -> ``::warning``, info ->
``::notice``). Values are escaped as the runner expects: in the message ``%`` -> ``%25``,
``\\r`` -> ``%0D``, ``\\n`` -> ``%0A``; in properties also ``:`` -> ``%3A`` and ``,`` -> ``%2C``.
A file with skipped tensors gets a warning saying so (never silently clean); notes (unknown
activations...) become notices unless ``quiet``, which also leaves out the summary line. No
colour and nothing else on the stream, so the step log stays machine-readable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from ..report import Finding, Report, Severity, Status
from ._ci import analysed, join_limited, plural, repo_path, skipped_items, subject

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import AuditConfig

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
TOOL = "initaudit"
MAX_NAMES = 50  # skipped tensors named in one annotation; the rest are counted


def report(result: Report, stream: TextIO, *, config: "AuditConfig", color: bool = False,
           verbose: bool = False, quiet: bool = False) -> None:
    """Write one annotation per finding, unreadable file and incomplete file."""
    for line in lines(result, quiet=quiet):
        stream.write(line + "\n")
    stream.flush()


def lines(result: Report, *, quiet: bool = False) -> list[str]:
    out: list[str] = []
    for fr in result.files:
        path = repo_path(fr.path)
        if fr.status is Status.ERROR:
            out.append(command("error", f"could not be read: {fr.error or 'unknown reason'}",
                               file=path, title=TOOL))
            continue
        out.extend(_finding(f, path) for f in fr.findings)
        skipped = skipped_items(fr)
        if skipped:
            names = join_limited((f"{name} ({reason})" for name, reason in skipped), MAX_NAMES,
                                 sep="; ")
            out.append(command("warning", f"{plural(len(skipped), 'tensor')} not analysed: {names}",
                               file=path, title=f"{TOOL} skipped tensors"))
        if not quiet:
            out.extend(command("notice", note, file=path, title=f"{TOOL} note")
                       for note in fr.notes)
    if not quiet:
        out.append(command("notice", _summary(result), title=TOOL))
    return out


def _finding(f: Finding, path: str) -> str:
    what = subject(f)
    message = f"{what}: {f.message}" if what else f.message
    return command(COMMANDS[f.severity], message, file=path, title=f"{f.code} {f.name}")


def _summary(result: Report) -> str:
    c = result.counts()
    parts = [plural(c["files"], "file"), plural(c["errors"], "error"),
             plural(c["warnings"], "warning"), plural(c["infos"], "info")]
    if c["unreadable_files"]:
        parts.append(f"{plural(c['unreadable_files'], 'unreadable file')}")
    analysed_n = sum(len(analysed(fr)) for fr in result.files)
    skipped_n = sum(len(skipped_items(fr)) for fr in result.files if fr.status is not Status.ERROR)
    text = ", ".join(parts) + f"; {plural(analysed_n, 'tensor')} analysed"
    if skipped_n:
        text += f", {skipped_n} skipped"
    return text


def command(name: str, message: str, **properties: str | None) -> str:
    """``::name key=value,...::message`` with GitHub's escaping (None-valued properties left out)."""
    props = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items()
                     if value is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def escape_data(text: str) -> str:
    # the order matters: '%' first, or the escapes themselves would be escaped
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
