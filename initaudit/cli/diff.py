"""``initaudit diff A B``: the command-line face of :mod:`initaudit.diff`.

Output: ``--format human`` (a table per tensor and the findings), ``json`` (``DiffReport.to_dict``)
or ``html`` (a self-contained page with a relative-change chart). Exit codes: 0 no finding;
1 a kernel that should have trained did not (``did-not-move``, ``dead-input``; ``--exit-zero``
turns it into 0); 2 a file that could not be read or a usage error. Sample (human)::

    A fresh.pt · pytorch-zip · initialized
    B trained.pt · pytorch-zip · trained
    tensor        shape    change      status     scheme A → B                         state A → B
    fc0.weight    32×16    0           unchanged  He/Kaiming uniform → He/Kaiming ...   initialized → initialized
    fc3.weight    4×32     0.0312      changed    torch default → unknown               initialized → trained
    ✗ did-not-move fc0.weight: fc0.weight did not change at all and neither did its bias ...
    4 changed, 3 unchanged, 0 added, 0 removed, 0 reshaped · 2 findings
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, NoReturn, TextIO

import typer

from ._app import app
from ._common import error, use_color
from .options import OutputOpt, PlainNoColorOpt

if TYPE_CHECKING:  # pragma: no cover
    from ..diff import DiffReport

# the diff module (numpy) is imported when the command runs: `initaudit --help` stays fast

FORMATS = ("human", "json", "html")


@app.command("diff")
def diff_command(
    path_a: Annotated[
        str,
        typer.Argument(
            metavar="A",
            show_default=False,
            help="The checkpoint before (e.g. freshly initialized).",
        ),
    ],
    path_b: Annotated[
        str,
        typer.Argument(
            metavar="B",
            show_default=False,
            help="The checkpoint after (e.g. after N steps, or another export).",
        ),
    ],
    format: Annotated[
        str, typer.Option("--format", "-f", metavar="FORMAT", help="human, json or html.")
    ] = "human",
    output: OutputOpt = None,
    frozen: Annotated[
        list[str] | None,
        typer.Option(
            "--frozen",
            metavar="GLOB",
            show_default=False,
            help="Tensors or layers frozen on purpose (e.g. 'encoder.*'): no finding when they did "
            "not change. Repeatable.",
        ),
    ] = None,
    exit_zero: Annotated[
        bool,
        typer.Option(
            "--exit-zero", help="Exit 0 even when a layer did not train (unreadable still exits 2)."
        ),
    ] = False,
    no_color: PlainNoColorOpt = False,
) -> None:
    """Compare two checkpoints of the same model tensor by tensor (by name, else by position
    and shape): the relative change ‖B−A‖/‖A‖ of each tensor, its init scheme and state before
    and after, tensors added, removed or reshaped. Exit 1 when something changed but a kernel
    did not (a frozen or dead layer after training), 2 when a file could not be read."""
    from ..diff import diff_paths

    fmt = format.strip().lower()
    if fmt not in FORMATS:
        _fail(f"--format: unknown format {format!r} for `diff` (use human, json or html)")
    sink: TextIO | None = None
    if output not in (None, "-"):
        try:
            sink = open(output, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        except OSError as exc:
            _fail(f"{output}: cannot write the report ({exc.strerror or exc})")
    report = diff_paths(path_a, path_b, frozen=tuple(frozen or ()))
    for fr in (report.a, report.b):
        if fr.error:
            error(f"{fr.path}: {fr.error}")
    stream = sink or sys.stdout
    try:
        write(report, stream, fmt=fmt, color=sink is None and use_color(sys.stdout, no_color))
    finally:
        if sink is not None:
            sink.close()
    code = report.exit_code()
    raise typer.Exit(0 if code == 1 and exit_zero else code)


def write(report: DiffReport, stream: TextIO, *, fmt: str, color: bool = False) -> None:
    if fmt == "json":
        import json

        stream.write(
            json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        )
    elif fmt == "html":
        from ..reporters.html import render_diff

        stream.write(render_diff(report))
    else:
        write_human(report, stream, color=color)


def write_human(report: DiffReport, stream: TextIO, *, color: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    from ..diff import ChangeStatus
    from ..reporters.human import print_renderables

    items: list[object] = []
    for tag, fr in (("A", report.a), ("B", report.b)):
        line = Text(f"{tag} ", style="bold")
        line.append(fr.path, style="bold")
        if fr.error:
            line.append(f" · could not be read: {fr.error}", style="bold red")
        else:
            line.append(f" · {fr.format}", style="dim")
            if fr.state is not None:
                line.append(f" · {fr.state.state.value}", style="dim")
        items.append(line)
    if report.changes:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col, justify in (
            ("tensor", "left"),
            ("shape", "left"),
            ("change", "right"),
            ("status", "left"),
            ("scheme A → B", "left"),
            ("state A → B", "left"),
        ):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        style = {
            ChangeStatus.UNCHANGED: "yellow",
            ChangeStatus.CHANGED: "green",
            ChangeStatus.UNREADABLE: "red",
        }
        for c in report.changes:
            name = (
                c.name
                if c.name_a == c.name_b or not (c.name_a and c.name_b)
                else f"{c.name_a} ↔ {c.name_b}"
            )
            shape = _shape(c.shape_a if c.shape_a is not None else c.shape_b)
            if c.status is ChangeStatus.RESHAPED:
                shape = f"{_shape(c.shape_a)} → {_shape(c.shape_b)}"
            table.add_row(
                name,
                shape,
                _rel(c.relative_change),
                Text(
                    c.status.value + (" (transposed)" if c.transposed else ""),
                    style=style.get(c.status, ""),
                ),
                _arrow(c.scheme_a, c.scheme_b),
                _arrow(c.state_a, c.state_b),
            )
        items.append(table)
    for f in report.findings:
        line = Text("✗ ", style="bold red")
        line.append(f.kind.value, style="bold")
        line.append(f" {f.tensor}: {f.message}")
        items.append(line)
    n = report.counts()
    items.append(
        Text(
            f"{n['changed']} changed, {n['unchanged']} unchanged, {n['added']} added, "
            f"{n['removed']} removed, {n['reshaped']} reshaped"
            + (f", {n['unreadable']} unreadable" if n["unreadable"] else "")
            + f" · {n['findings']} finding{'s' if n['findings'] != 1 else ''}"
        )
    )
    print_renderables(stream, color, *items)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "—" if shape is None else ("×".join(str(d) for d in shape) or "scalar")


def _rel(x: float | None) -> str:
    if x is None:
        return "—"
    return "0" if x == 0 else f"{x:.3g}"


def _arrow(a: str | None, b: str | None) -> str:
    if a == b:
        return a or "—"
    return f"{a or '—'} → {b or '—'}"


def _fail(message: str) -> NoReturn:
    error(message)
    raise typer.Exit(2)


__all__ = ["FORMATS", "diff_command", "write", "write_human"]
