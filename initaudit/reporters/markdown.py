"""Markdown reporter: a pull-request comment (GitHub/GitLab flavoured). Sample::

    ## ❌ initaudit: failed — 1 error at or above `--fail-on error`

    2 files · 1 error · 0 warnings · 0 infos · 1 unreadable file · 4 tensors analysed

    | file | status | errors | warnings | infos | tensors |
    |---|---|---:|---:|---:|---:|
    | sample\\_models/mlp\\_he\\_sigmoid.onnx | ok | 1 | 0 | 0 | 4 analysed |
    | bad.onnx | ❌ unreadable | – | – | – | – |

    ### sample\\_models/mlp\\_he\\_sigmoid.onnx

    onnx · framework pytorch · ok · 4 tensors analysed

    | severity | code | rule | tensor | message |
    |---|---|---|---|---|
    | ❌ error | IA101 | he-before-saturating | fc1.weight | He-scaled weights (std 0.08201 ...) feed a sigmoid; ... |

    <details><summary>Init schemes (2 tensors; --verbose adds biases and norms)</summary>

    | tensor | shape | fan in → out | activation | init scheme | std obs / exp | conf |
    |---|---|---:|---|---|---:|---:|
    | fc1.weight | 100×300 | 300 → 100 | sigmoid | He/Kaiming normal (fan_in) | 0.082 / 0.0816 | 100% |
    ...

    </details>

    ### bad.onnx

    ❌ could not be read: truncated protobuf (file cut short?)

The verdict says whether the run fails under ``--fail-on``; a file with skipped tensors or
left-out content is never called clean (its status reads "partial" and the skipped tensors are
listed with their reasons). Cells are escaped (``|``, Markdown punctuation, HTML) and newlines
become ``<br>``. ``quiet`` leaves out the scheme tables and notes; ``verbose`` lists every tensor
(biases and norms too) and every finding (otherwise at most 50 per file). The whole document
stays within the 65,536 characters GitHub accepts: past that, the summary, unreadable and
failing files come first and a last line says how many files were left out and where to see
the full report.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, TextIO

from ..model import SCHEMED_ROLE_NAMES as SCHEMED_ROLES
from ..report import FileReport, Finding, Report, Severity, Status, TensorReport
from ._ci import (
    accepted_parts,
    analysed,
    counts,
    coverage_text,
    fails,
    incomplete,
    plural,
    repo_path,
    skipped_items,
    subject,
)
from ._text import num as _num

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import AuditConfig

MAX_FINDINGS = 50  # per file, unless verbose
# GitHub refuses comment bodies (and job summaries) above 65,536 characters
MAX_CHARS = 65_536
_RESERVE = 600  # room for the truncation line
MAX_SKIPPED = 20
ICONS = {Severity.ERROR: "❌", Severity.WARNING: "⚠️", Severity.INFO: "ℹ️"}
# Markdown punctuation that could start emphasis, links, code, headings or HTML in a cell
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~!])")


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Write ``result`` as one Markdown document (``color`` does not apply)."""
    stream.write(render(result, fail_on=config.fail_on, verbose=verbose, quiet=quiet))


def render(
    result: Report,
    *,
    fail_on: Severity = Severity.ERROR,
    verbose: bool = False,
    quiet: bool = False,
    limit: int | None = MAX_CHARS,
) -> str:
    """The whole document, or, past ``limit`` characters (GitHub's 65,536 for a comment or a
    job summary), the heading, the summary and the unreadable and failing files first, then as
    many other sections as fit (without their tensor tables if need be), and a last line saying
    how many were left out and where to see them. ``limit=None``: no limit."""
    head: list[str] = [_heading(result, fail_on), "", _summary_line(result), ""]
    table = _summary_table(result)
    sections = [_file_section(fr, verbose=verbose, quiet=quiet) for fr in result.files]
    full = "\n".join(head + table + [line for sec in sections for line in ["", *sec]])
    if limit is None or len(full) + 1 <= limit:
        return full.rstrip("\n") + "\n"
    return _within(result, head, table, fail_on=fail_on, verbose=verbose, quiet=quiet, limit=limit)


def _within(
    result: Report,
    head: list[str],
    table: list[str],
    *,
    fail_on: Severity,
    verbose: bool,
    quiet: bool,
    limit: int,
) -> str:
    budget = limit - _RESERVE
    out = list(head)
    used = len("\n".join(out)) + 1
    rows_left = 0
    for i, row in enumerate(table):  # the table too is cut if it alone would not fit
        if used + len(row) + 1 > budget // 2 and i >= 2:
            rows_left = len(table) - i
            break
        out.append(row)
        used += len(row) + 1
    if rows_left:
        out.append(f"| … {plural(rows_left, 'more file')} | | | | | |")
        used += 40

    def rank(fr: FileReport) -> int:  # unreadable, failing, incomplete, then the rest
        if fr.status is Status.ERROR:
            return 0
        if any(fails(f, fail_on) for f in fr.findings):
            return 1
        return 2 if incomplete(fr) or fr.findings else 3

    order = sorted(range(len(result.files)), key=lambda i: (rank(result.files[i]), i))
    chosen: dict[int, list[str]] = {}
    for i in order:
        fr = result.files[i]
        for variant in (
            _file_section(fr, verbose=verbose, quiet=quiet),
            _file_section(fr, verbose=False, quiet=True),
        ):
            size = len("\n".join(variant)) + 2
            if used + size <= budget:
                chosen[i] = variant
                used += size
                break
    for i in sorted(chosen):
        out += ["", *chosen[i]]
    left = len(result.files) - len(chosen)
    out += [
        "",
        f"**… this report is cut to fit the {limit:,} characters GitHub accepts"
        + (f": {plural(left, 'more file')} not shown" if left else "; tensor tables left out")
        + ".** The full report: `initaudit --format markdown --output FILE` (or the job "
        "summary, the SARIF or JSON report).",
    ]
    return "\n".join(out).rstrip("\n") + "\n"


# ------------------------------------------------------------------------------------ summary


def _heading(result: Report, fail_on: Severity) -> str:
    failing = sum(1 for f in result.findings if fails(f, fail_on))
    unreadable = sum(1 for fr in result.files if fr.status is Status.ERROR)
    partial = sum(1 for fr in result.files if fr.status is not Status.ERROR and incomplete(fr))
    threshold = f"`--fail-on {fail_on.value}`"
    if unreadable:
        return f"## ❌ initaudit: failed — {plural(unreadable, 'file')} could not be read" + (
            f", {plural(failing, 'finding')} at or above {threshold}" if failing else ""
        )
    if failing:
        return f"## ❌ initaudit: failed — {plural(failing, 'finding')} at or above {threshold}"
    if partial:
        return (
            f"## ⚠️ initaudit: passed, but {plural(partial, 'file')} not fully analysed — "
            f"nothing at or above {threshold} in what was analysed"
        )
    if result.findings:
        return f"## ✅ initaudit: passed — nothing at or above {threshold}"
    if not result.files:
        return "## ⚠️ initaudit: no files were audited"
    return "## ✅ initaudit: passed — no findings"


def _summary_line(result: Report) -> str:
    c = result.counts()
    parts = [
        plural(c["files"], "file"),
        plural(c["errors"], "error"),
        plural(c["warnings"], "warning"),
        plural(c["infos"], "info"),
    ]
    if c["unreadable_files"]:
        parts.append(plural(c["unreadable_files"], "unreadable file"))
    parts.append(f"{plural(sum(len(analysed(fr)) for fr in result.files), 'tensor')} analysed")
    skipped = sum(len(skipped_items(fr)) for fr in result.files if fr.status is not Status.ERROR)
    if skipped:
        parts.append(f"{skipped} skipped")
    parts += accepted_parts(result)
    return " · ".join(parts)


def _summary_table(result: Report) -> list[str]:
    rows = [
        "| file | status | errors | warnings | infos | tensors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for fr in result.files:
        if fr.status is Status.ERROR:
            rows.append(f"| {cell(repo_path(fr.path))} | ❌ unreadable | – | – | – | – |")
            continue
        c = counts(fr)
        tensors = f"{len(analysed(fr))} analysed"
        skipped = len(skipped_items(fr))
        if skipped:
            tensors += f", {skipped} skipped"
        status = "⚠️ partial" if incomplete(fr) else fr.status.value
        rows.append(
            f"| {cell(repo_path(fr.path))} | {status} | {c[Severity.ERROR]} "
            f"| {c[Severity.WARNING]} | {c[Severity.INFO]} | {tensors} |"
        )
    return rows


# ----------------------------------------------------------------------------------- per file


def _file_section(fr: FileReport, *, verbose: bool, quiet: bool) -> list[str]:
    out = [f"### {cell(repo_path(fr.path))}", ""]
    if fr.status is Status.ERROR:
        out.append(f"❌ could not be read: {cell(fr.error or 'unknown reason')}")
        return out
    out += [_meta_line(fr), ""]
    if fr.findings:
        out += _findings_table(fr.findings, verbose=verbose)
    elif incomplete(fr):
        out.append(
            f"No findings in the {plural(len(analysed(fr)), 'analysed tensor')}; "
            "**not everything was analysed** (see below)."
        )
    else:
        out.append(f"✅ No findings in the {plural(len(analysed(fr)), 'analysed tensor')}.")
    skipped = skipped_items(fr)
    if skipped:
        out += ["", f"**{plural(len(skipped), 'tensor')} not analysed:**", ""]
        shown = skipped if verbose else skipped[:MAX_SKIPPED]
        out += [f"- {cell(name)}: {cell(reason)}" for name, reason in shown]
        if len(shown) < len(skipped):
            out.append(f"- … and {len(skipped) - len(shown)} more")
    if fr.status is Status.PARTIAL and not skipped:
        out += ["", "**Part of this file was left out of the analysis** (see the findings)."]
    if not quiet:
        if fr.notes:
            out += ["", "**Notes:**", ""]
            out += [f"- {cell(note)}" for note in fr.notes]
        table = _tensor_table(fr, verbose=verbose)
        if table:
            n = len(table) - 2  # minus the header and the delimiter row
            summary = (
                f"Every tensor ({n})"
                if verbose
                else f"Init schemes ({plural(n, 'tensor')}; --verbose adds biases and norms)"
            )
            out += ["", f"<details><summary>{summary}</summary>", ""] + table + ["", "</details>"]
    return out


def _meta_line(fr: FileReport) -> str:
    parts = [fr.format or "unknown format"]
    if fr.framework:
        parts.append(f"framework {fr.framework}")
    parts.append("partial" if incomplete(fr) else fr.status.value)
    text = f"{plural(len(analysed(fr)), 'tensor')} analysed"
    skipped = len(skipped_items(fr))
    if skipped:
        text += f", {skipped} skipped"
    parts.append(text)
    coverage = coverage_text(fr)
    if coverage:
        parts.append(coverage)
    if fr.suppressed:
        parts.append(f"{len(fr.suppressed)} suppressed")
    return cell(" · ".join(parts))


def _findings_table(findings: list[Finding], *, verbose: bool) -> list[str]:
    rows = ["| severity | code | rule | tensor | message |", "|---|---|---|---|---|"]
    shown = findings if verbose else findings[:MAX_FINDINGS]
    for f in shown:
        rows.append(
            f"| {ICONS[f.severity]} {f.severity.value} | {cell(f.code)} | {cell(f.name)} "
            f"| {cell(subject(f) or '(file)')} | {cell(f.message)} |"
        )
    if len(shown) < len(findings):
        rows += [
            "",
            f"… and {len(findings) - len(shown)} more findings (`--verbose` lists all, "
            "`--format json` gives every detail).",
        ]
    return rows


def _tensor_table(fr: FileReport, *, verbose: bool) -> list[str]:
    rows = [
        _tensor_row(t)
        for t in fr.tensors
        if verbose or t.role in SCHEMED_ROLES or t.scheme is not None
    ]
    if not rows:
        return []
    return [
        "| tensor | shape | fan in → out | activation | init scheme | std obs / exp | conf |",
        "|---|---|---:|---|---|---:|---:|",
    ] + rows


def _tensor_row(t: TensorReport) -> str:
    fans = (
        "–" if t.fan_in is None and t.fan_out is None else f"{_int(t.fan_in)} → {_int(t.fan_out)}"
    )
    if t.activation is None:
        activation = "unknown" if t.role in SCHEMED_ROLES else ""
    else:
        activation = t.activation
    return (
        "| "
        + " | ".join(
            [
                cell(t.name),
                "×".join(str(d) for d in t.shape) or "scalar",
                fans,
                cell(activation),
                _scheme(t),
                _std(t),
                _confidence(t),
            ]
        )
        + " |"
    )


def _scheme(t: TensorReport) -> str:
    if t.skipped:
        return f"skipped: {cell(t.skipped)}"
    s = t.scheme
    if s is None:
        return "–"
    if not s.known:
        return cell(s.label or "unknown")
    alternatives = list(dict.fromkeys(c.label for c in s.alternatives if c.label != s.label))
    text = cell(s.label)
    if alternatives:
        text += "<br>≈ " + cell(", ".join(alternatives))
    return text


def _std(t: TensorReport) -> str:
    if t.stats is None:
        return "–"
    expected = t.scheme.expected_std if t.scheme is not None else None
    observed = _num(t.stats.std)
    return observed if expected is None else f"{observed} / {_num(expected)}"


def _confidence(t: TensorReport) -> str:
    if t.scheme is None or t.skipped or not t.scheme.known:
        return ""
    return f"{round(float(t.scheme.confidence) * 100):d}%"


# ------------------------------------------------------------------------------------ helpers


def cell(text: object) -> str:
    """Text safe inside a table cell (and in headings and list items): Markdown punctuation and
    HTML are backslash-escaped, ``&`` spelled as an entity, newlines become ``<br>``."""
    s = str(text).replace("&", "&amp;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return "<br>".join(s.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


def _int(x: int | None) -> str:
    return "–" if x is None else str(x)
