"""Human reporter: a terminal report drawn with rich. Sample (colours removed, width 100)::

    mlp_he_sigmoid.onnx ──────────────────────────────────────────────────────────────────────────────
    onnx · framework pytorch · ok · 4 tensors analysed
       tensor      fan in→out  activation  init scheme                       std obs / exp  conf
    ────────────────────────────────────────────────────────────────────────────────────────────
    ✗  fc1.weight   300 → 100  sigmoid     He/Kaiming normal (fan_in)       0.082 / 0.0816  100%
       fc2.weight    100 → 10  linear      Glorot/Xavier uniform (fan_avg)   0.135 / 0.135   99%
                                           ≈ He/Kaiming uniform (fan_in)
      + 2 biases not in the table (2 constant); --verbose lists them

    ✗ error   IA101 he-before-saturating fc1.weight: He-scaled weights (std 0.08201 ≈ sqrt(2/300) =
                    0.08165) feed a sigmoid; sigmoid saturates, and He's factor 2 (meant to offset ReLU
                    zeroing half the units) pushes more pre-activations into its flat tails where
                    gradients vanish. Use Glorot/Xavier (std 0.07071) or LeCun.

    1 file, 1 error, 0 warnings, 0 infos · 4 tensors analysed

Per file: a header (path, format, framework, status), a table of the kernels (every tensor with
``verbose``; a ``shape`` column from 110 columns up), one line for the biases and norms left out,
the findings grouped by severity, then notes (skipped tensors and why, unknown activations, what
the loader left out). A file with skipped tensors or left-out content never reads as clean: it
says "no findings in the N analysed tensors; M skipped (see above)". Not a terminal: no colour
and a fixed width of 120 (stable for tests, logs and ``--output`` files).
"""

from __future__ import annotations

import io
import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..report import FileReport, Finding, Report, Severity, Status, TensorReport
from ._text import num as _num

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import AuditConfig

# roles an init scheme is about: they get a row in the table; the rest are summarised
from ..model import SCHEMED_ROLE_NAMES as _SCHEMED_ROLES  # noqa: E402

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_STATUS_STYLE = {Status.OK: "green", Status.PARTIAL: "yellow", Status.ERROR: "bold red"}
_MAX_SKIPPED_SHOWN = 15  # longer lists are cut unless --verbose
# fixed width when not writing to a terminal: stable output for tests, logs and files
_PIPE_WIDTH = 120
# narrower terminals get a table without the shape column
_COMPACT_BELOW = 100


class _Glyphs:
    """Symbols, with ASCII fallbacks for streams that cannot encode them (cp1252 consoles)."""

    def __init__(self, unicode_ok: bool) -> None:
        u = unicode_ok
        self.mark = {Severity.ERROR: "✗" if u else "x", Severity.WARNING: "!", Severity.INFO: "i"}
        self.ok = "✓" if u else "ok"
        self.arrow = "→" if u else "->"
        self.times = "×" if u else "x"
        self.approx = "≈" if u else "~"
        self.dot = "·" if u else "-"
        self.bullet = "•" if u else "-"
        self.dash = "—" if u else "-"


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Print ``result`` for a person: per file a table, the findings, the notes; then a summary."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    buffer = _Buffer(encoding)  # rich picks ASCII boxes and rules from the buffer's encoding
    console = make_console(stream, color, file=buffer)
    g = _Glyphs(_can_encode(encoding, "✗✓→×≈·•—±√"))
    for index, fr in enumerate(result.files):
        if quiet:
            _quiet_file(console, fr, g)
        else:
            if index:
                console.print()
            _file(console, fr, g, verbose=verbose)
    if not quiet or result.files:
        console.print()
    console.print(summary_text(result, g))
    _write(stream, buffer.getvalue(), encoding)


def print_renderables(stream: TextIO, color: bool, *renderables: object) -> None:
    """Print rich renderables (tables, Markdown) on ``stream`` as the reporter does: the same
    width, colour and encoding rules, no trailing blanks. Used by ``rules`` and ``explain``."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    buffer = _Buffer(encoding)
    console = make_console(stream, color, file=buffer)
    for item in renderables:
        console.print(item)
    _write(stream, buffer.getvalue(), encoding)


def _write(stream: TextIO, text: str, encoding: str) -> None:
    text = _strip_trailing_blanks(text)
    if not _can_encode(encoding, text):  # a label or tensor name the stream cannot show
        text = text.encode(encoding, "replace").decode(encoding)
    stream.write(text)
    stream.flush()


def make_console(stream: TextIO, color: bool, *, file: TextIO | None = None) -> Console:
    """A console for ``stream`` (writing to ``file`` if given): ANSI only when ``color``; the
    terminal's width on a terminal, a fixed one otherwise (stable output for tests and logs)."""
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    width = None
    if is_tty:
        try:
            width = os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = None
    if width is None and os.environ.get("COLUMNS", "").isdigit():
        width = max(40, int(os.environ["COLUMNS"]))  # a CI log or a pipe at a chosen width
    return Console(
        file=file or stream,
        width=width or _PIPE_WIDTH,
        color_system="auto" if color else None,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
        legacy_windows=False,
    )


# ---------------------------------------------------------------------------------- per file


def _file(console: Console, fr: FileReport, g: _Glyphs, *, verbose: bool) -> None:
    """Findings first (what a person must act on), then the tensor table (repeated blocks
    collapsed unless ``verbose``), then the signal chart and the notes."""
    console.rule(Text(fr.path, style="bold"), align="left", style="dim")
    if fr.status is Status.ERROR:
        console.print(
            Text.assemble(
                (f"{g.mark[Severity.ERROR]} could not be read: ", "bold red"),
                fr.error or "unknown reason",
            )
        )
        if fr.findings:  # unsafe content found before the read failed (issue 11)
            console.print(_findings_grid(fr.findings, g))
        return
    console.print(_meta_line(fr, g))
    if fr.findings:
        console.print(_findings_grid(fr.findings, g, collapse=not verbose))
    else:
        console.print(_no_findings_line(fr, g))
    table = _tensor_table(
        fr, g, verbose=verbose, compact=console.width < _COMPACT_BELOW, width=console.width
    )
    if table.row_count:
        console.print()
        console.print(table)
    elif not fr.tensors:
        console.print(Text("no weight tensors found in this file", style="yellow"))
    if not verbose:
        line = _hidden_line(fr, g)
        if line is not None:
            console.print(line)
    if fr.signal:
        console.print(
            Text(render_signal(fr, verbose=verbose, unicode_ok=g.dot == "·"), style="dim")
        )
    notes = _notes(fr, verbose=verbose)
    if notes:
        console.print()
        console.print(Text("notes", style="bold"))
        console.print(_bullets(notes, g))


def _quiet_file(console: Console, fr: FileReport, g: _Glyphs) -> None:
    """--quiet: only what needs attention: findings, unreadable files, skipped counts."""
    if fr.status is Status.ERROR:
        console.print(
            Text.assemble(
                (fr.path, "bold"),
                ": ",
                ("could not be read: ", "bold red"),
                fr.error or "unknown reason",
            )
        )
        if fr.findings:
            console.print(_findings_grid(fr.findings, g))
        return
    if fr.findings:
        console.print(Text(fr.path, style="bold"))
        console.print(_findings_grid(fr.findings, g))
    if fr.skipped or fr.status is Status.PARTIAL:
        text = _incomplete_text(fr).replace("see above", "run without --quiet to see why")
        console.print(Text.assemble((fr.path, "bold"), ": ", (text, "yellow")))


def _meta_line(fr: FileReport, g: _Glyphs) -> Text:
    sep = f" {g.dot} "
    parts: list[Text | str] = [Text(fr.format or "unknown format", style="cyan")]
    if fr.framework:
        parts.append(f"framework {fr.framework}")
    parts.append(Text(fr.status.value, style=_STATUS_STYLE[fr.status]))
    if fr.state is not None and fr.state.state.value != "unknown":
        parts.append(f"looks {fr.state.state.value}")
    if fr.status is not Status.ERROR:
        analysed = _analysed(fr)
        text = f"{analysed} tensor{'s' if analysed != 1 else ''} analysed"
        if fr.skipped:
            text += f", {len(fr.skipped)} skipped"
        parts.append(text)
        from ._ci import coverage_text

        coverage = coverage_text(fr)
        if coverage:
            assert fr.coverage is not None  # coverage_text gives a line only for a coverage
            parts.append(Text(coverage, style="" if fr.coverage.complete else "yellow"))
        if fr.suppressed:
            parts.append(f"{len(fr.suppressed)} suppressed")
    out = Text(style="dim")
    for i, part in enumerate(parts):
        if i:
            out.append(sep)
        out.append(part)
    return out


def _tensor_table(
    fr: FileReport, g: _Glyphs, *, verbose: bool, compact: bool = False, width: int = _PIPE_WIDTH
) -> Table:
    """One row per kernel (every tensor with --verbose); without --verbose, tensors that repeat
    block after block with the same shape, activation and scheme are one row
    (``h.{0..11}.mlp.c_fc.weight ×12`` with the range of their std). ``compact`` (narrow
    terminals) leaves out the shape and the fans and keeps every cell on one line: names are
    shortened in the middle (never broken mid-word), scheme labels at the end."""
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
        padding=(0, 1, 0, 0),
        expand=False,
    )
    by_tensor, by_layer = _worst_by_tensor(fr.findings)
    rows = [t for t in fr.tensors if verbose or _in_table(t)]
    groups = [[t] for t in rows] if verbose else _collapse(rows, by_tensor, by_layer)
    # a prefix every row shares ("transformer.") goes to the header: the names keep their room
    prefix = "" if verbose else _common_prefix([t.name for t in rows])
    # compact widths: mark 1+1, act 6+1, scheme 16+1, std 15+1: the name gets the rest
    name_width = max(24, width - 44) if compact else 44
    table.add_column("", no_wrap=True, width=1)
    table.add_column(
        f"tensor ({prefix}…)" if prefix else "tensor", no_wrap=True, max_width=name_width
    )
    if not compact:
        table.add_column("shape", no_wrap=True)
        table.add_column(f"fan in{g.arrow}out", no_wrap=True, justify="right")
    table.add_column(
        "act" if compact else "activation",
        no_wrap=True,
        min_width=6 if compact else None,
        max_width=7 if compact else None,
        overflow="ellipsis",
    )
    table.add_column(
        "init scheme",
        no_wrap=compact,
        overflow="ellipsis" if compact else "fold",
        max_width=16 if compact else None,
    )
    table.add_column(
        "std" if compact else "std obs / exp",
        no_wrap=True,
        justify="right",
        min_width=15 if compact else None,
    )
    if not compact:
        table.add_column("conf", no_wrap=True, justify="right", min_width=4)
    for group in groups:
        t = group[0]
        worst = _worse(by_tensor.get(t.name), by_layer.get(t.layer) if _in_table(t) else None)
        name = (
            _name_cell(t, verbose=verbose)
            if len(group) == 1
            else Text(f"{_pattern_name(group)} {g.times}{len(group)}")
        )
        name = Text(name.plain[len(prefix) :], style=name.style) if prefix else name
        row: list[Text | str] = [_mark(worst, g), _middle_ellipsis(name, name_width)]
        if not compact:
            row += [_shape(t.shape, g), _fans(t, g)]
        row += [
            _activation_cell(t, verbose=verbose),
            _scheme_cell(t, g, short=compact),
            _std_cell_group(group, g, observed_only=compact),
        ]
        if not compact:
            row.append(_confidence_cell(t))
        table.add_row(*row)
    return table


def _common_prefix(names: list[str]) -> str:
    """The dotted prefix every name shares (``transformer.``), or ""."""
    if len(names) < 2:
        return ""
    first = names[0].split(".")
    n = 0
    while n < len(first) - 1 and all(
        name.split(".")[n] == first[n] and name.count(".") > n for name in names
    ):
        n += 1
    return ".".join(first[:n]) + "." if n else ""


_INDEX = re.compile(r"(?<=[._/])(\d+)(?=[._/])")


def _block_key(name: str) -> tuple[str, int] | None:
    """``transformer.h.7.mlp.c_fc.weight`` -> (``transformer.h.{}.mlp.c_fc.weight``, 7)."""
    m = _INDEX.search(name)
    if m is None:
        return None
    return name[: m.start()] + "{}" + name[m.end() :], int(m.group(1))


def _collapse(
    rows: list[TensorReport], by_tensor: dict[str, Severity], by_layer: dict[str, Severity]
) -> list[list[TensorReport]]:
    """Group tensors of repeated blocks: same name pattern, role, shape, activation, scheme and
    worst finding (a tensor flagged unlike its siblings keeps its own row)."""
    groups: dict[tuple[Any, ...], list[TensorReport]] = {}
    out: list[list[TensorReport]] = []
    for t in rows:
        key = _block_key(t.name)
        if key is None or t.skipped:
            out.append([t])
            continue
        scheme = t.scheme.label if t.scheme is not None else None
        # the worst finding is part of the key: a flagged tensor never hides among clean ones
        worst = _worse(by_tensor.get(t.name), by_layer.get(t.layer))
        k = (key[0], t.role, tuple(t.shape), t.activation, scheme, worst)
        if k not in groups:
            groups[k] = []
            out.append(groups[k])
        groups[k].append(t)
    return out


def _pattern_name(group: list[TensorReport]) -> str:
    key = _block_key(group[0].name)
    assert key is not None
    numbers = sorted({k[1] for k in (_block_key(t.name) for t in group) if k is not None})
    return key[0].replace("{}", "{" + _ranges(numbers) + "}", 1)


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 3, 5, 6] -> ``0..3,5..6``."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(f"{r[0]}..{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def _middle_ellipsis(text: Text, width: int) -> Text:
    """Shorten ``text`` to ``width`` cells by cutting its middle: both ends of a tensor name say
    which block and which weight it is."""
    plain = text.plain
    if len(plain) <= width:
        return text
    keep = width - 1
    head = keep // 2
    tail = keep - head
    return Text(plain[:head] + "…" + plain[len(plain) - tail :], style=text.style)


def _std_cell_group(group: list[TensorReport], g: _Glyphs, *, observed_only: bool = False) -> Text:
    if len(group) == 1 and not observed_only:
        return _std_cell(group[0], g)
    stds = [t.stats.std for t in group if t.stats is not None and _finite(t.stats.std)]
    if not stds:
        return Text(g.dash, style="dim")
    lo, hi = min(stds), max(stds)
    observed = _num(lo) if _num(lo) == _num(hi) else f"{_num(lo)}-{_num(hi)}"
    expected = group[0].scheme.expected_std if group[0].scheme is not None else None
    if expected is None or observed_only:
        return Text(observed)
    return Text.assemble(observed, (f" / {_num(expected)}", "dim"))


def _in_table(t: TensorReport) -> bool:
    return t.role in _SCHEMED_ROLES or t.scheme is not None


def _name_cell(t: TensorReport, *, verbose: bool) -> Text:
    text = Text(t.name)
    # ONNX initializer names often do not say which layer they feed: show it
    if t.layer and t.layer not in t.name:
        text.append(f" ({t.layer})", style="dim")
    if verbose:
        text.append(f" {t.role}", style="dim italic")
    return text


def _shape(shape: Iterable[int], g: _Glyphs) -> str:
    dims = list(shape)
    return g.times.join(str(d) for d in dims) if dims else "scalar"


def _fans(t: TensorReport, g: _Glyphs) -> str:
    if t.fan_in is None and t.fan_out is None:
        return g.dash
    return f"{_int(t.fan_in, g)} {g.arrow} {_int(t.fan_out, g)}"


def _int(x: int | None, g: _Glyphs) -> str:
    return g.dash if x is None else str(x)


def _activation_cell(t: TensorReport, *, verbose: bool) -> Text:
    if t.activation is None:
        if t.role not in _SCHEMED_ROLES:
            return Text("")
        return Text("unknown", style="dim yellow")
    text = Text(t.activation)
    if verbose and t.activation_source:
        text.append(f" ({t.activation_source})", style="dim")
    return text


def _scheme_cell(t: TensorReport, g: _Glyphs, *, short: bool = False) -> Text:
    if t.skipped:
        return Text("skipped", style="yellow")
    s = t.scheme
    if s is None:
        if t.stats is not None and t.role not in _SCHEMED_ROLES:
            return _constant_or_spread(t, g)
        return Text(g.dash, style="dim")
    if not s.known:
        return Text(s.label or "unknown", style="yellow")
    if short:  # "N(0, 0.02) (BERT/GPT-2/LLaMA/ViT)" -> "N(0, 0.02)": one line per row
        return Text(_short_label(s.label))
    text = Text(s.label)
    alternatives = list(dict.fromkeys(c.label for c in s.alternatives if c.label != s.label))
    if alternatives:
        text.append(f"\n{g.approx} " + ", ".join(alternatives), style="dim")
    return text


def _short_label(label: str) -> str:
    """The scheme's formula without the parenthesised provenance."""
    depth = 0
    for i, c in enumerate(label):
        if c == "(":
            if depth == 0 and i > 0 and label[i - 1] == " ":
                return label[: i - 1]
            depth += 1
        elif c == ")":
            depth -= 1
    return label


def _constant_or_spread(t: TensorReport, g: _Glyphs) -> Text:
    st = t.stats
    assert st is not None
    if _is_constant(t):
        return Text(f"constant {_num(st.min)}", style="dim")
    return Text(f"mean {_num(st.mean)}", style="dim")


def _std_cell(t: TensorReport, g: _Glyphs) -> Text:
    if t.stats is None:
        return Text(g.dash, style="dim")
    observed = _num(t.stats.std)
    expected = t.scheme.expected_std if t.scheme is not None else None
    if expected is None:
        return Text(observed)
    return Text.assemble(observed, (f" / {_num(expected)}", "dim"))


def _confidence_cell(t: TensorReport) -> Text:
    if t.scheme is None or t.skipped:
        return Text("")
    if not t.scheme.known:  # the confidence of "nothing fits" says nothing to a reader
        return Text("")
    c = float(t.scheme.confidence)
    style = "green" if c >= 0.9 else ("" if c >= 0.5 else "dim")
    return Text(f"{round(c * 100):d}%", style=style)


def _hidden_line(fr: FileReport, g: _Glyphs) -> Text | None:
    """One line for the biases/norms left out of the table (they are constant or tiny by design)."""
    hidden = [t for t in fr.tensors if not _in_table(t)]
    if not hidden:
        return None
    kinds = Counter(_kind(t.role) for t in hidden)
    what = ", ".join(f"{n} {_plural(kind, n)}" for kind, n in sorted(kinds.items()))
    analysed = [t for t in hidden if not t.skipped and t.stats is not None]
    constant = sum(1 for t in analysed if _is_constant(t))
    detail = []
    if constant:
        detail.append(f"{constant} constant")
    if len(analysed) - constant:
        detail.append(f"{len(analysed) - constant} random")
    skipped = len(hidden) - len(analysed)
    if skipped:
        detail.append(f"{skipped} skipped")
    return Text(
        f"  + {what} not in the table ({', '.join(detail)}); --verbose lists them", style="dim"
    )


def _kind(role: str) -> str:
    if role == "bias":
        return "bias"
    if role.startswith("norm"):
        return "norm tensor"
    return "other tensor"


def _plural(word: str, n: int) -> str:
    if n == 1:
        return word
    return word + ("es" if word.endswith("s") else "s")


def _is_constant(t: TensorReport) -> bool:
    st = t.stats
    return st is not None and _finite(st.min) and st.min == st.max


def _findings_grid(findings: list[Finding], g: _Glyphs, *, collapse: bool = False) -> Table:
    """One entry per finding; with ``collapse``, the same rule on the same tensor of repeated
    blocks is one entry (``h.{0..11}.attn.c_proj.weight ×12``, the first one's message)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=9)  # severity: same width in every file's list
    grid.add_column(no_wrap=True)  # code
    grid.add_column(ratio=1, overflow="fold")  # name, tensor, message: wraps with a hanging indent
    previous: Severity | None = None
    for group in _collapse_findings(findings) if collapse else [[f] for f in findings]:
        f = group[0]
        if previous is not None and f.severity is not previous:
            grid.add_row("", "", "")  # a blank line between severity groups
        previous = f.severity
        body = Text.assemble((f.name, "bold"), " ")
        where = f.tensor or f.layer
        if len(group) > 1:
            body.append(f"{_finding_pattern(group)} {g.times}{len(group)}", style="magenta")
            body.append(": ")
            body.append(f"first: {f.message}")
        else:
            if where:
                body.append(where, style="magenta")
                body.append(": ")
            body.append(f.message)
        if f.confidence < 0.95:
            body.append(f" (confidence {round(f.confidence * 100)}%)", style="dim")
        grid.add_row(
            Text(f"{g.mark[f.severity]} {f.severity.value}", style=_SEVERITY_STYLE[f.severity]),
            Text(f.code, style="bold"),
            body,
        )
    return grid


def _collapse_findings(findings: list[Finding]) -> list[list[Finding]]:
    groups: dict[tuple[Any, ...], list[Finding]] = {}
    out: list[list[Finding]] = []
    for f in findings:
        key = _block_key(f.tensor) if f.tensor else None
        if key is None:
            out.append([f])
            continue
        k = (f.code, f.severity, key[0])
        if k not in groups:
            groups[k] = []
            out.append(groups[k])
        groups[k].append(f)
    return out


def _finding_pattern(group: list[Finding]) -> str:
    key = _block_key(group[0].tensor or "")
    assert key is not None
    numbers = sorted({k[1] for k in (_block_key(f.tensor or "") for f in group) if k is not None})
    return key[0].replace("{}", "{" + _ranges(numbers) + "}", 1)


def _notes(fr: FileReport, *, verbose: bool) -> list[Text]:
    notes: list[Text] = []
    skipped = fr.skipped if verbose else fr.skipped[:_MAX_SKIPPED_SHOWN]
    for item in skipped:
        notes.append(
            Text.assemble(
                ("skipped ", "yellow"),
                (item.name, "magenta"),
                ": ",
                item.reason,
            )
        )
    if len(skipped) < len(fr.skipped):
        notes.append(
            Text(
                f"... and {len(fr.skipped) - len(skipped)} more skipped tensors "
                "(--verbose lists them all)",
                style="yellow",
            )
        )
    notes.extend(Text(n) for n in fr.notes)
    return notes


def _bullets(lines: list[Text], g: _Glyphs) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    for line in lines:
        grid.add_row(Text(f" {g.bullet}", style="dim"), line)
    return grid


def _no_findings_line(fr: FileReport, g: _Glyphs) -> Text:
    if fr.skipped or fr.status is Status.PARTIAL:
        return Text(_incomplete_text(fr), style="yellow")
    n = _analysed(fr)
    return Text(f"{g.ok} no findings in {n} analysed tensor{'s' if n != 1 else ''}", style="green")


def _incomplete_text(fr: FileReport) -> str:
    """Never "clean" for a file we did not fully read: say what was left out."""
    n = _analysed(fr)
    head = (
        f"no findings in the {n} analysed tensor{'s' if n != 1 else ''}"
        if not fr.findings
        else f"{n} tensor{'s' if n != 1 else ''} analysed"
    )
    if fr.skipped:
        return f"{head}; {len(fr.skipped)} skipped (see above)"
    return f"{head}; part of the file was left out (see above)"


# ---------------------------------------------------------------------------------- summary


def summary_text(result: Report, g: _Glyphs | None = None) -> Text:
    """``N files, E errors, W warnings, I infos`` (+ unreadable files, tensors analysed/skipped)."""
    g = g or _Glyphs(True)
    c = result.counts()
    out = Text()
    out.append(f"{c['files']} {_word('file', c['files'])}", style="bold")
    for key, word, style in (
        ("errors", "error", "bold red"),
        ("warnings", "warning", "yellow"),
        ("infos", "info", "cyan"),
    ):
        out.append(", ")
        out.append(f"{c[key]} {_word(word, c[key])}", style=style if c[key] else "")
    if c["unreadable_files"]:
        out.append(", ")
        out.append(
            f"{c['unreadable_files']} unreadable {_word('file', c['unreadable_files'])}",
            style="bold red",
        )
    analysed = sum(_analysed(fr) for fr in result.files)
    skipped = sum(len(fr.skipped) for fr in result.files)
    out.append(f" {g.dot} {analysed} {_word('tensor', analysed)} analysed", style="dim")
    if skipped:
        out.append(f", {skipped} skipped", style="yellow")
    from ._ci import accepted_parts

    extra = accepted_parts(result)
    if extra:
        out.append(f" {g.dot} " + ", ".join(extra), style="yellow")
    return out


def _word(word: str, n: int) -> str:
    return word if n == 1 else word + "s"


# ---------------------------------------------------------------------------------- helpers


def _analysed(fr: FileReport) -> int:
    return sum(1 for t in fr.tensors if not t.skipped)


def _worst_by_tensor(findings: list[Finding]) -> tuple[dict[str, Severity], dict[str, Severity]]:
    """The worst severity per tensor name, and per layer for findings about a whole layer."""
    by_tensor: dict[str, Severity] = {}
    by_layer: dict[str, Severity] = {}
    for f in findings:
        if f.tensor:
            by_tensor[f.tensor] = _worse(by_tensor.get(f.tensor), f.severity)  # type: ignore[assignment]
        elif f.layer:
            by_layer[f.layer] = _worse(by_layer.get(f.layer), f.severity)  # type: ignore[assignment]
    return by_tensor, by_layer


def _worse(a: Severity | None, b: Severity | None) -> Severity | None:
    if a is None or b is None:
        return a or b
    return a if a.rank >= b.rank else b


def _mark(severity: Severity | None, g: _Glyphs) -> Text:
    if severity is None:
        return Text("")
    return Text(g.mark[severity], style=_SEVERITY_STYLE[severity])


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(float(x))


_TRAILING = re.compile(r"[ \t]+(?=(?:\x1b\[[0-9;]*m)*$)", re.MULTILINE)


def _strip_trailing_blanks(text: str) -> str:
    """rich pads table cells to the full width; trailing blanks only get in the way of diffs."""
    return _TRAILING.sub("", text)


class _Buffer(io.StringIO):
    """A string buffer that reports the encoding of the stream it stands in for."""

    def __init__(self, encoding: str) -> None:
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding


def _can_encode(encoding: str, sample: str) -> bool:
    try:
        sample.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def render_signal(fr: FileReport, *, verbose: bool = False, unicode_ok: bool = True) -> str:
    """The signal-propagation chart: one character per weighted layer (log10 of the predicted
    second moment, input = 1), the end points and where the signal leaves the band; with
    ``verbose`` one line per layer (gain, q, backward figure, probe measurement)."""
    from ..analysis.signal import sparkline

    sig = fr.signal
    layers = sig.layers if sig is not None else []
    if sig is None or not layers:
        return ""
    # a non-finite figure is drawn and printed as unknown (nan)
    qs = [layer.q_out if math.isfinite(layer.q_out) else float("nan") for layer in layers]
    chart = sparkline(qs)
    if not unicode_ok:
        chart = "".join(
            "_.-=+*#@"[("▁▂▃▄▅▆▇█".index(c))] if c in "▁▂▃▄▅▆▇█" else "?" for c in chart
        )
    lo, hi = sig.band
    head = f"signal (log10 of the predicted second moment per layer, input = 1): {chart} "
    head += f"final {qs[-1]:.2g}"
    exit_layer = sig.forward_exit
    if exit_layer:
        q = next(layer.q_out for layer in layers if layer.layer == exit_layer)
        head += f"; leaves [{lo:g}, {hi:g}] at {exit_layer} (q {q:.2g})"
    else:
        head += f"; stays within [{lo:g}, {hi:g}]"
    probe = sig.probe
    if probe and probe.get("worst_ratio") is not None:
        head += (
            f"; probe {'agrees' if probe['agrees'] else 'DIFFERS'} (worst measured/predicted "
            f"{probe['worst_ratio']:.3g}, tolerance x{probe['tolerance_factor']:g})"
        )
    if not verbose:
        return head
    lines = [head]
    for layer in layers:
        measured = layer.measured_std
        grad = layer.grad_in
        lines.append(
            f"  {layer.layer[:40]:40s} {str(layer.activation or '?'):10s} "
            f"gain {layer.forward_gain:8.3g}  q {layer.q_out:9.3g}"
            + (f"  grad {grad:9.3g}" if grad is not None and math.isfinite(grad) else "")
            + (
                f"  measured std {measured:.3g} (predicted {layer.q_out**0.5:.3g})"
                if measured is not None
                else ""
            )
        )
    return "\n".join(lines)
