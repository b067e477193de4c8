"""The command line: a thin typer layer over :mod:`initaudit.engine` and the reporters.

``initaudit PATH...`` audits checkpoints (``check`` is the default command); ``initaudit rules``
lists the rules; ``initaudit explain NAME_OR_CODE`` shows one rule's page.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 a usage error or a
file that could not be read. ``--exit-zero`` turns 1 into 0 but never hides an unreadable file
(still 2): a CI job must not pass on a checkpoint nobody looked at.

Only the standard library, typer and the numpy-free :mod:`initaudit.report` are imported at
module level, so ``initaudit --version`` and ``--help`` stay fast; the engine (numpy, scipy,
onnx...) loads when a file is audited.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Iterable, Optional, TextIO

import typer

from . import __version__
from .report import Report, Severity, Status

if TYPE_CHECKING:  # pragma: no cover
    from .engine import AuditConfig
    from .rules.base import Rule

PROG = "initaudit"
SUBCOMMANDS = ("check", "rules", "explain")
DEBUG_ENV = "INITAUDIT_DEBUG"

# click rewraps paragraphs; \b keeps the lines of the next paragraph as written
_EPILOG = """\b
Commands:
  initaudit PATH...              audit checkpoints (same as `initaudit check PATH...`)
  initaudit rules                list the rules: codes, names, default severities
  initaudit explain NAME_OR_CODE show one rule's documentation page

\b
Exit codes:
  0  nothing at or above --fail-on
  1  findings at or above --fail-on (--exit-zero turns this into 0)
  2  a usage error, or a file that could not be read (also with --exit-zero)
"""

app = typer.Typer(
    name=PROG,
    help="Audit the weight initialization of neural-network checkpoints.",
    add_completion=False,
    no_args_is_help=True,
    # plain click help: it shows the options' metavars (FILE, RULES) where rich help shows types
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _CheckCommand(typer.core.TyperCommand):
    """Plain ``[OPTIONS] PATH...`` in the usage line (typer writes ``{PATH}...``)."""

    def collect_usage_pieces(self, ctx: "typer.Context") -> list[str]:
        return [self.options_metavar or "[OPTIONS]", "PATH..."]


class UsageError(Exception):
    """A mistake in the command line: one line on stderr, exit 2."""


# ------------------------------------------------------------------------------------ check


def _version_callback(value: bool) -> None:
    if value:
        print(f"{PROG} {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version_callback,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Audit the weight initialization of neural-network checkpoints (ONNX, PyTorch,
    safetensors, Keras, .npz). Files are parsed, never executed.

    Run `initaudit PATH...` to audit files; see `initaudit --help`.
    """


@app.command("check", cls=_CheckCommand, epilog=_EPILOG,
             context_settings={"help_option_names": ["-h", "--help"]})
def check(
    paths: Annotated[list[str], typer.Argument(
        metavar="PATH", show_default=False, hidden=True,  # described in the docstring
        help="Checkpoint files (or a folder of sharded safetensors) to audit.")],
    format: Annotated[str, typer.Option(
        "--format", "-f", metavar="FORMAT", help="Output format: human or json.")] = "human",
    output: Annotated[Optional[str], typer.Option(
        "--output", "-o", metavar="FILE", help="Write the report to FILE instead of stdout.",
        show_default=False)] = None,
    fail_on: Annotated[str, typer.Option(
        "--fail-on", metavar="SEVERITY",
        help="Exit 1 when a finding is at or above this severity: error, warning or info.")] = "error",
    select: Annotated[Optional[list[str]], typer.Option(
        "--select", metavar="RULES", show_default=False,
        help="Only these rules: comma-separated codes or names; a prefix like IA1 selects a "
             "family. Repeatable.")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option(
        "--ignore", metavar="RULES", show_default=False,
        help="Leave out these rules (codes, names or prefixes). Repeatable.")] = None,
    min_confidence: Annotated[float, typer.Option(
        "--min-confidence", metavar="FLOAT",
        help="Drop findings whose confidence is below this (0 to 1).")] = 0.0,
    activation: Annotated[Optional[list[str]], typer.Option(
        "--activation", metavar="PATTERN=ACT", show_default=False,
        help="The activation after the layers matching the glob PATTERN, for files without a "
             "graph (e.g. 'encoder.*.fc1=gelu'). Repeatable; the last match wins.")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="List every tensor, biases and norms included.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Only the findings and the summary.")] = False,
    exit_zero: Annotated[bool, typer.Option(
        "--exit-zero", help="Exit 0 even with findings (an unreadable file still exits 2).")] = False,
    no_color: Annotated[bool, typer.Option(
        "--no-color", help="No colours (also when NO_COLOR is set or output is not a terminal).")] = False,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version_callback, help="Print the version and exit.")] = False,
) -> None:
    """Audit checkpoints: which init scheme each layer's weights follow, and whether it fits
    the activation after it.

    PATH is a checkpoint file (ONNX, PyTorch .pt/.bin/TorchScript/.pt2, safetensors, Keras
    .keras/.h5, .npz) or a folder of sharded safetensors. Files are parsed, never executed."""
    try:
        config = _config(fail_on=fail_on, select=select, ignore=ignore,
                         min_confidence=min_confidence, activation=activation)
        reporter = _reporter(format)
        sink = _open_output(output)
    except UsageError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None

    result = Report(files=[_audit_one(path, config, show_progress=format == "human" and not quiet)
                           for path in paths])
    try:
        if sink is None:
            reporter(result, sys.stdout, config=config, color=_use_color(sys.stdout, no_color),
                     verbose=verbose, quiet=quiet)
        else:
            with sink:
                reporter(result, sink, config=config, color=False, verbose=verbose, quiet=quiet)
    except BrokenPipeError:
        raise  # the reader went away (`| head`): main() ends quietly
    except OSError as exc:
        _error(f"{output or 'stdout'}: cannot write the report ({exc.strerror or exc})")
        raise typer.Exit(2) from None

    code = result.exit_code(config.fail_on)
    if exit_zero and code == 1:
        code = 0
    raise typer.Exit(code)


def _config(*, fail_on: str, select: Optional[list[str]], ignore: Optional[list[str]],
            min_confidence: float, activation: Optional[list[str]]) -> "AuditConfig":
    from .activations import ActivationHint
    from .engine import AuditConfig

    try:
        threshold = Severity.parse(fail_on)
    except ValueError as exc:
        raise UsageError(f"--fail-on: {exc}") from None
    if not 0.0 <= min_confidence <= 1.0:
        raise UsageError(f"--min-confidence must be between 0 and 1, not {min_confidence:g}")
    hints = []
    for text in activation or ():
        try:
            hints.append(ActivationHint.parse(text))
        except ValueError as exc:
            raise UsageError(f"--activation: {exc}") from None
    return AuditConfig(select=_selectors(select, "--select"), ignore=_selectors(ignore, "--ignore"),
                       fail_on=threshold, min_confidence=min_confidence, hints=tuple(hints))


def _selectors(values: Optional[Iterable[str]], option: str) -> tuple[str, ...]:
    """Split comma-separated codes/names and check each names at least one rule."""
    items = [item.strip() for value in values or () for item in value.split(",") if item.strip()]
    if not items:
        return ()
    rules = _rules()
    out: list[str] = []
    for item in items:
        resolved = _resolve_selector(item, rules)
        if resolved is None:
            raise UsageError(f"{option}: unknown rule {item!r} (run `{PROG} rules` to list them)")
        out.append(resolved)
    return tuple(dict.fromkeys(out))


def _resolve_selector(item: str, rules: Iterable["Rule"]) -> str | None:
    rules = list(rules)
    upper = item.upper()
    if upper.startswith("IA") and any(r.code.startswith(upper) for r in rules):
        return upper  # a code or a code prefix (family)
    lower = item.lower()
    for r in rules:
        if r.name == lower:
            return r.name
    return None


def _reporter(name: str):  # -> ReportFunction
    from .reporters import get_reporter

    try:
        return get_reporter(name.strip().lower())
    except ValueError as exc:
        raise UsageError(f"--format: {exc}") from None


def _open_output(output: Optional[str]) -> TextIO | None:
    if output is None or output == "-":
        return None
    try:
        # opened before the audit so that a typo in the path fails before minutes of work
        return open(output, "w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise UsageError(f"{output}: cannot write the report ({exc.strerror or exc})") from None


def _audit_one(path: str, config: "AuditConfig", *, show_progress: bool):
    from .engine import audit_path

    if show_progress and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        from rich.console import Console

        with Console(stderr=True).status(f"auditing {path}", spinner="dots"):
            result = audit_path(path, config)
    else:
        result = audit_path(path, config)
    if result.status is Status.ERROR:
        # the other files are still audited and reported; this line is the one to grep for
        _error(f"{path}: {_one_line(result.error or 'could not be read')}")
    return result


def _use_color(stream: TextIO, no_color: bool) -> bool:
    if no_color or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


# ------------------------------------------------------------------------------------ rules


@app.command("rules")
def rules_command(
    format: Annotated[str, typer.Option(
        "--format", "-f", metavar="FORMAT", help="human or json.")] = "human",
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours.")] = False,
) -> None:
    """List the rules: code, name, default severity and what each one checks."""
    rules = _rules()
    fmt = format.strip().lower()
    if fmt == "json":
        import json

        data = [{"code": r.code, "name": r.name, "severity": r.severity.value,
                 "scope": r.scope, "summary": r.summary} for r in rules]
        print(json.dumps(data, indent=2))
        return
    if fmt != "human":
        _error(f"--format: unknown format {format!r} for `rules` (use human or json)")
        raise typer.Exit(2)
    from rich.table import Table
    from rich.text import Text

    from .reporters.human import print_renderables

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("code", no_wrap=True, style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("summary")
    styles = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
    for r in rules:
        table.add_row(r.code, r.name, Text(r.severity.value, style=styles[r.severity]), r.summary)
    hint = Text(f"\n`{PROG} explain NAME_OR_CODE` shows a rule's page; --select and --ignore take "
                "codes, names or code prefixes (IA1).", style="dim")
    print_renderables(sys.stdout, _use_color(sys.stdout, no_color), table, hint)


# ---------------------------------------------------------------------------------- explain


@app.command("explain")
def explain_command(
    rule: Annotated[str, typer.Argument(metavar="NAME_OR_CODE",
                                        help="A rule code (IA101) or name (he-before-saturating).")],
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours.")] = False,
) -> None:
    """Explain a rule: what it checks, why it matters, how to fix it."""
    found = find_rule(rule)
    if found is None:
        _error(f"unknown rule {rule!r} (run `{PROG} rules` to list them)")
        raise typer.Exit(2)
    from rich.markdown import Markdown
    from rich.text import Text

    from .reporters.human import print_renderables
    from .rules.docs import read_page

    page = read_page(found)
    title = Text(f"{found.code} {found.name}", style="bold")
    title.append(f"  (default severity: {found.severity.value})", style="dim")
    if page is None:
        body: list[object] = [Text(found.summary),
                              Text("\n(no documentation page ships with this rule)", style="dim")]
    else:
        body = [Markdown(page)]
    print_renderables(sys.stdout, _use_color(sys.stdout, no_color), title, Text(""), *body)


def find_rule(text: str) -> "Rule | None":
    from .rules import find_rule as _find

    return _find(text)


def _rules() -> list["Rule"]:
    from .rules import registry

    return list(registry().values())


# ------------------------------------------------------------------------------------ main


def _error(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def route(argv: list[str]) -> list[str] | None:
    """Make ``check`` the default command: ``initaudit a.onnx`` -> ``initaudit check a.onnx``.

    Returns None for a bare ``--help`` (the caller shows the audit usage)."""
    if not argv:
        return None
    first = argv[0]
    if first in SUBCOMMANDS or first == "--version":
        return argv
    if first in ("-h", "--help"):
        return None
    return ["check", *argv]


def _wants_version(argv: list[str]) -> bool:
    head = argv[: argv.index("--")] if "--" in argv else argv
    return "--version" in head and (not head or head[0] not in ("rules", "explain"))


def _show_main_help() -> int:
    """``initaudit --help``: the audit usage (it is the default command) and the subcommands."""
    command = typer.main.get_command(app).commands["check"]  # type: ignore[attr-defined]
    try:
        command.main(args=["--help"], prog_name=PROG, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. Never lets a traceback reach the user unless
    ``INITAUDIT_DEBUG=1`` is set."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if _wants_version(args):  # fast path: no typer, no numpy
            print(f"{PROG} {__version__}")
            return 0
        routed = route(args)
        if routed is None:
            if not args:
                _error(f"no checkpoint given: usage is `{PROG} [OPTIONS] PATH...` "
                       f"(`{PROG} --help` for more)")
                return 2
            return _show_main_help()
        try:
            code = app(args=routed, prog_name=PROG, standalone_mode=False)
        except SystemExit as exc:
            return _exit_code(exc.code)
        except Exception as exc:
            if _is_a(exc, "ClickException"):  # bad option or argument: one line, exit 2
                hint = f"{PROG} {routed[0]} --help" if routed[0] != "check" else f"{PROG} --help"
                _error(f"{exc.format_message()} (see `{hint}`)")  # type: ignore[attr-defined]
                return int(getattr(exc, "exit_code", 2))
            if _is_a(exc, "Abort"):
                raise KeyboardInterrupt from exc
            raise
        return code if isinstance(code, int) else 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `initaudit ... | head`: the reader left; say nothing more
        _silence_stdout()
        return 1
    except Exception as exc:  # an internal bug: one line, unless debugging
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{PROG}: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
              f"(re-run with {DEBUG_ENV}=1 to see the traceback, and please report it)",
              file=sys.stderr)
        return 2


def _is_a(exc: BaseException, class_name: str) -> bool:
    # typer vendors click in recent releases and depends on it in older ones: match the
    # exception classes by name so that both work
    return any(cls.__name__ == class_name for cls in type(exc).__mro__)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 2


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
