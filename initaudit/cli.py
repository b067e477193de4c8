"""The command line: a thin typer layer over :mod:`initaudit.engine` and the reporters.

``initaudit PATH...`` audits checkpoints (``check`` is the default command); ``initaudit rules``
lists the rules; ``initaudit explain NAME_OR_CODE`` shows one rule's page; ``initaudit config``
shows the effective configuration (:mod:`initaudit.config`) and where each value comes from;
``initaudit inspect PATH...`` shows every tensor's numbers (:mod:`initaudit.inspect_cmd`).
PATH may be a file, a folder or a quoted glob (:mod:`initaudit.discover`); files are audited in
``--jobs`` processes by :mod:`initaudit.runner`; baselines are :mod:`initaudit.baseline`.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 a usage error or a
file that could not be read; 3 a file only partly audited (``--allow-partial`` turns it into 0).
Precedence 2 > 1 > 3 > 0. ``--exit-zero`` turns 1 into 0 but never hides an unreadable file
(still 2) nor an incomplete audit (still 3): a CI job must not pass on a checkpoint nobody
looked at. Settings come from the config nearest each audited file (:mod:`initaudit.config`).

Only the standard library, typer and the numpy-free :mod:`initaudit.report` are imported at
module level, so ``initaudit --version`` and ``--help`` stay fast; the engine (numpy, scipy,
onnx...) loads when a file is audited.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO, cast

import typer

from . import __version__
from .report import EXIT_PARTIAL, Report, Severity, Status

if TYPE_CHECKING:  # pragma: no cover
    from .baseline import Baseline
    from .config import Settings
    from .discover import Input
    from .report import FileReport
    from .reporters import ReportFunction
    from .rules.base import Rule
    from .settings import AuditConfig, TensorProgress

PROG = "initaudit"
SUBCOMMANDS = ("check", "rules", "explain", "config", "inspect", "diff", "help")
DEBUG_ENV = "INITAUDIT_DEBUG"

# click rewraps paragraphs; \b keeps the lines of the next paragraph as written
_EPILOG = """\b
Commands:
  initaudit PATH...              audit checkpoints (same as `initaudit check PATH...`)
  initaudit help [COMMAND]       this help, or a command's
  initaudit rules                list the rules: codes, names, default severities
  initaudit explain NAME_OR_CODE show one rule's documentation page
  initaudit config [PATH]        the configuration that applies (to PATH) and where each
                                 value comes from
  initaudit inspect PATH...      every tensor's statistics, scheme and evidence (--layer GLOB)
  initaudit diff A B             compare two checkpoints tensor by tensor (frozen/dead layers)

\b
Exit codes:
  0  nothing at or above --fail-on
  1  findings at or above --fail-on (--exit-zero turns this into 0)
  2  a usage or configuration error, or an input that could not be read (also
     with --exit-zero)
  3  audit incomplete: a file was only partly analysed (skipped tensors, time
     budget, left-out content); --allow-partial turns this into 0
  Precedence: 2 > 1 > 3 > 0.
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

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
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
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version_callback,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Audit the weight initialization of neural-network checkpoints (ONNX, PyTorch,
    safetensors, Keras, .npz). Files are parsed, never executed.

    Run `initaudit PATH...` to audit files; see `initaudit --help`.
    """


# reusable option types: `check`, `config` and `inspect` share them
_ConfigOpt = Annotated[
    Optional[str],
    typer.Option(
        "--config",
        metavar="FILE",
        show_default=False,
        help="Read the configuration from FILE (initaudit.toml, or a pyproject.toml with "
        "[tool.initaudit]) instead of searching from the working directory upward.",
    ),
]
_SelectOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--select",
        metavar="RULES",
        show_default=False,
        help="Only these rules: comma-separated codes or names; a prefix like IA1 selects a "
        "family. Repeatable.",
    ),
]
_ExtendSelectOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--extend-select",
        metavar="RULES",
        show_default=False,
        help="Rules added to the configured --select. Repeatable.",
    ),
]
_IgnoreOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--ignore",
        metavar="RULES",
        show_default=False,
        help="Leave out these rules (codes, names or prefixes). Repeatable.",
    ),
]
_ExtendIgnoreOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--extend-ignore",
        metavar="RULES",
        show_default=False,
        help="Rules left out in addition to the configured ignore. Repeatable.",
    ),
]
_FailOnOpt = Annotated[
    Optional[str],
    typer.Option(
        "--fail-on",
        metavar="SEVERITY",
        show_default=False,
        help="Exit 1 when a finding is at or above this severity: error, warning or info "
        "(default: error).",
    ),
]
_MinConfidenceOpt = Annotated[
    Optional[float],
    typer.Option(
        "--min-confidence",
        metavar="FLOAT",
        show_default=False,
        help="Drop findings whose confidence is below this (0 to 1; default: 0).",
    ),
]
_ActivationOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--activation",
        metavar="PATTERN=ACT",
        show_default=False,
        help="The activation after the layers matching the glob PATTERN, for files without a "
        "graph (e.g. 'encoder.*.fc1=gelu'). Repeatable; the last match wins.",
    ),
]
_IncludeOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--include",
        metavar="GLOB",
        show_default=False,
        help="In directories and globs, only files matching GLOB (path or file name). Repeatable.",
    ),
]
_ExcludeOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--exclude",
        metavar="GLOB",
        show_default=False,
        help="In directories and globs, skip files and folders matching GLOB. Repeatable.",
    ),
]
_JobsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--jobs",
        "-j",
        metavar="N",
        show_default=False,
        help="Audit files in N parallel processes (0 = one per CPU; default: 1). The output "
        "order does not depend on it.",
    ),
]
_NoColorOpt = Annotated[
    bool,
    typer.Option(
        "--no-color", help="No colours (also when NO_COLOR is set or output is not a terminal)."
    ),
]


@app.command(
    "check",
    cls=_CheckCommand,
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def check(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            show_default=False,
            hidden=True,  # described in the docstring
            help="Checkpoint files, directories or quoted globs to audit.",
        ),
    ],
    format: Annotated[
        Optional[str],
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            show_default=False,
            help="Output format: human (default), json, sarif, github, junit, markdown, gitlab "
            "(GitLab Code Quality) or html (a self-contained page with charts).",
        ),
    ] = None,
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the report to FILE instead of stdout.",
            show_default=False,
        ),
    ] = None,
    fail_on: _FailOnOpt = None,
    select: _SelectOpt = None,
    extend_select: _ExtendSelectOpt = None,
    ignore: _IgnoreOpt = None,
    extend_ignore: _ExtendIgnoreOpt = None,
    min_confidence: _MinConfidenceOpt = None,
    activation: _ActivationOpt = None,
    config_file: _ConfigOpt = None,
    baseline: Annotated[
        Optional[str],
        typer.Option(
            "--baseline",
            metavar="FILE",
            show_default=False,
            help="Report and fail only on findings not recorded in FILE (see --write-baseline).",
        ),
    ] = None,
    write_baseline: Annotated[
        Optional[str],
        typer.Option(
            "--write-baseline",
            metavar="FILE",
            show_default=False,
            help="Record this run's findings in FILE and exit 0 (2 if a file could not be read).",
        ),
    ] = None,
    statistics: Annotated[
        bool,
        typer.Option(
            "--statistics", help="Print the number of findings per rule instead of the report."
        ),
    ] = False,
    max_seconds: Annotated[
        Optional[float],
        typer.Option(
            "--max-seconds",
            metavar="SECONDS",
            show_default=False,
            help="Time budget per file for the tensor analysis; tensors not reached are reported as "
            "skipped and the file as partial, never as clean.",
        ),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="For ONNX models, run the model with onnxruntime on random inputs and show "
            "the measured activation std per layer next to the prediction (needs "
            "the [probe] extra).",
        ),
    ] = False,
    jobs: _JobsOpt = None,
    include: _IncludeOpt = None,
    exclude: _ExcludeOpt = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every tensor, biases and norms included.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only the findings and the summary.")
    ] = False,
    exit_zero: Annotated[
        bool,
        typer.Option(
            "--exit-zero",
            help="Exit 0 even with findings (an unreadable file still exits 2, an "
            "incomplete audit 3).",
        ),
    ] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Do not fail (exit 3) when a file was only partly audited "
            "(skipped tensors, time budget, left-out content); config key "
            "allow-partial.",
        ),
    ] = False,
    no_ignore: Annotated[
        bool,
        typer.Option(
            "--no-ignore",
            help="In folders, also walk what .gitignore, hidden folders, virtualenvs "
            "and build/, dist/ would leave out.",
        ),
    ] = False,
    no_color: _NoColorOpt = False,
    sample_only: Annotated[
        bool,
        typer.Option(
            "--sample-only",
            help="Remote safetensors, torch zip, GGUF, ONNX external data (s3://, hf://, "
            "https://): fetch only sampled "
            "byte ranges of each tensor; the rules that need every element "
            "(nonfinite-weights, duplicate-neurons, dead-units) are reported "
            "as not applied.",
        ),
    ] = False,
    executor: Annotated[
        Optional[str],
        typer.Option(
            "--executor",
            metavar="ENGINE",
            show_default=False,
            help="Run one task per file on a distributed engine: dask (the [distributed] extra). "
            "Without --address a local cluster of --jobs workers is started. Default: local "
            "processes (--jobs).",
        ),
    ] = None,
    address: Annotated[
        Optional[str],
        typer.Option(
            "--address",
            metavar="ADDR",
            show_default=False,
            help="Scheduler address for --executor (e.g. tcp://10.0.0.5:8786).",
        ),
    ] = None,
    cache: Annotated[
        Optional[str],
        typer.Option(
            "--cache",
            metavar="DIR",
            show_default=False,
            help="Results cache: a file whose content key (ETag for remote objects, size, mtime "
            "and safetensors header for local files) is unchanged is not audited again.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_version_callback,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Audit checkpoints: which init scheme each layer's weights follow, and whether it fits
    the activation after it.

    PATH is a checkpoint file (ONNX, PyTorch .pt/.bin/TorchScript/.pt2, safetensors, Keras
    .keras/.h5, .npz), a folder (searched recursively, checkpoints recognised by content; a
    folder of sharded safetensors is one model) or a quoted glob ('models/**/*.onnx'). Files
    are parsed, never executed. Settings come from [tool.initaudit] in pyproject.toml or from
    initaudit.toml (see `initaudit config`); options given here override them."""
    from .baseline import BaselineError
    from .config import ConfigError
    from .selector import SelectorError

    try:
        overrides = _overrides(
            fail_on=fail_on,
            select=select,
            extend_select=extend_select,
            ignore=ignore,
            extend_ignore=extend_ignore,
            min_confidence=min_confidence,
            activation=activation,
            include=include,
            exclude=exclude,
            jobs=jobs,
            format=format,
        )
        if allow_partial:
            overrides["allow-partial"] = True
        # run-wide settings (format, jobs, fail-on): --config, else the config nearest the first
        # path (ruff's rule), else the one found from the working directory
        settings = _settings_for(paths[0] if paths else None, config_file, overrides)
        config = settings.audit_config()
        if max_seconds is not None and not max_seconds > 0:
            raise UsageError(
                f"--max-seconds must be a positive number of seconds, not {max_seconds}"
            )
        fmt = settings.format
        reporter = None if statistics else _reporter(fmt)
        if statistics and fmt not in ("human", "json"):
            raise UsageError(f"--statistics prints human or json, not {fmt!r}")
        accepted = _read_baseline(baseline)
        from .discover import DiscoveryStats, discover_inputs

        stats = DiscoveryStats()
        if executor is not None and executor not in ("dask",):
            raise UsageError(
                f"--executor must be dask (or omitted for local processes), not {executor!r}"
            )
        if address is not None and executor is None:
            raise UsageError("--address needs --executor")
        inputs = []
        for arg in paths:  # each argument walked with the include/exclude of its own config
            if _is_remote(arg):  # s3://, hf://, https://: listed by the object store
                inputs += _remote_inputs(arg)
                continue
            arg_settings = _settings_for(arg, config_file, overrides)
            inputs += discover_inputs(
                [arg],
                include=arg_settings.include,
                exclude=arg_settings.exclude,
                respect_ignore=not no_ignore,
                stats=stats,
            )
        inputs = _dedupe(inputs)
        # each file audited with the config nearest to it
        configs = {
            i.path: dataclasses.replace(
                _settings_for(i.path, config_file, overrides).audit_config(),
                max_seconds=max_seconds,
                probe=probe,
                sample_only=sample_only,
                cache_dir=cache,
            )
            for i in inputs
            if i.problem is None
        }
        sink = _open_output(output)
    except (UsageError, ConfigError, BaselineError, SelectorError) as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    config = dataclasses.replace(config, max_seconds=max_seconds, probe=probe)
    for path, kind in stats.not_regular:
        _warn(f"{path}: {kind}, not a regular file: skipped (never opened)")
    if (
        stats.walked
        and stats.models
        and not quiet
        and fmt == "human"
        and (stats.looked_at > stats.models or stats.ignored)
    ):
        print(f"{PROG}: {stats.line()}", file=sys.stderr)

    try:
        result = _audit_all(
            inputs,
            configs,
            jobs=settings.jobs,
            progress=not quiet and (fmt == "human" or output not in (None, "-")),
            executor=executor,
            address=address,
        )
    except Exception as exc:
        from .distributed import DistributedError

        if not isinstance(exc, DistributedError):
            raise
        _error(str(exc))
        raise typer.Exit(2) from None
    if write_baseline is not None:
        try:
            from .baseline import write

            n = write(result, write_baseline)
        except BaselineError as exc:
            _error(str(exc))
            raise typer.Exit(2) from None
        print(
            f"{PROG}: wrote {n} finding{'s' if n != 1 else ''} to the baseline {write_baseline}",
            file=sys.stderr,
        )
    if accepted is not None:
        from .baseline import apply

        result = apply(result, accepted)
        if result.stale:
            n = len(result.stale)
            first = result.stale[0]
            _warn(
                f"{baseline}: {n} baseline entr{'ies' if n != 1 else 'y'} of the audited files "
                f"match no finding (fixed or renamed? e.g. {first.get('code')} "
                f"{first.get('tensor') or first.get('layer') or ''} in {first.get('path')}); "
                "regenerate it with --write-baseline"
            )
    if stats.walked:  # on a few files (pre-commit) most ignores have nothing to match
        _warn_stale_ignores(result, configs.values())

    try:
        if sink is None:
            _print_result(
                result,
                sys.stdout,
                config,
                fmt=fmt,
                statistics=statistics,
                color=_use_color(sys.stdout, no_color),
                verbose=verbose,
                quiet=quiet,
                reporter=reporter,
            )
        else:
            with sink:
                _print_result(
                    result,
                    sink,
                    config,
                    fmt=fmt,
                    statistics=statistics,
                    color=False,
                    verbose=verbose,
                    quiet=quiet,
                    reporter=reporter,
                )
    except BrokenPipeError:
        raise  # the reader went away (`| head`): main() ends quietly
    except OSError as exc:
        _error(f"{output or 'stdout'}: cannot write the report ({exc.strerror or exc})")
        raise typer.Exit(2) from None

    code = result.exit_code(config.fail_on, allow_partial=settings.allow_partial)
    if (exit_zero or write_baseline is not None) and code == 1:
        # findings stop failing the run; an incomplete audit still does (documented: "still 3")
        partial = not settings.allow_partial and any(fr.partial for fr in result.files)
        code = EXIT_PARTIAL if partial else 0
    raise typer.Exit(code)


def _warn_stale_ignores(result: Report, configs: Iterable[AuditConfig]) -> None:
    """A per-tensor ignore that matched nothing this run is said so: a stale suppression hides
    nothing today and may hide the wrong thing tomorrow."""
    from .baseline import stale_ignores

    ignores = [ig for config in configs for ig in config.tensor_ignores]
    for ig in stale_ignores(result, ignores):
        rules = ", ".join(ig.rules) if ig.rules else "every rule"
        where = f" in {ig.path}" if ig.path else ""
        _warn(
            f"per-tensor-ignores: pattern {ig.pattern!r}{where} ({rules}) matched no finding; "
            "remove it if it is no longer needed"
        )


def _settings_for(
    path: Optional[str], config_file: Optional[str], overrides: dict[str, Any]
) -> Settings:
    from .config import settings_for

    return settings_for(path, config_file=config_file, overrides=overrides)


def _dedupe(inputs: list[Input]) -> list[Input]:
    seen: set[str] = set()
    out = []
    for item in inputs:
        key = (
            item.path if item.problem is not None else os.path.normcase(os.path.abspath(item.path))
        )
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _settings(
    config_file: Optional[str],
    *,
    fail_on: Optional[str] = None,
    select: Optional[list[str]] = None,
    extend_select: Optional[list[str]] = None,
    ignore: Optional[list[str]] = None,
    extend_ignore: Optional[list[str]] = None,
    min_confidence: Optional[float] = None,
    activation: Optional[list[str]] = None,
    include: Optional[list[str]] = None,
    exclude: Optional[list[str]] = None,
    jobs: Optional[int] = None,
    format: Optional[str] = None,
) -> Settings:
    """The effective settings: defaults < config file < these command-line values."""
    from .config import load_settings

    overrides = _overrides(
        fail_on=fail_on,
        select=select,
        extend_select=extend_select,
        ignore=ignore,
        extend_ignore=extend_ignore,
        min_confidence=min_confidence,
        activation=activation,
        include=include,
        exclude=exclude,
        jobs=jobs,
        format=format,
    )
    return load_settings(config_file, overrides)


def _overrides(
    *,
    fail_on: Optional[str],
    select: Optional[list[str]],
    extend_select: Optional[list[str]],
    ignore: Optional[list[str]],
    extend_ignore: Optional[list[str]],
    min_confidence: Optional[float],
    activation: Optional[list[str]],
    include: Optional[list[str]],
    exclude: Optional[list[str]],
    jobs: Optional[int],
    format: Optional[str],
) -> dict[str, Any]:
    """Validate the command-line values (UsageError naming the option) and key them like the
    config file. Options not given are None: the file (or the default) decides."""
    from .activations import ActivationHint

    out: dict[str, object] = {}
    if fail_on is not None:
        try:
            out["fail-on"] = Severity.parse(fail_on)
        except ValueError as exc:
            raise UsageError(f"--fail-on: {exc}") from None
    if min_confidence is not None:
        if not 0.0 <= min_confidence <= 1.0:
            raise UsageError(f"--min-confidence must be between 0 and 1, not {min_confidence:g}")
        out["min-confidence"] = float(min_confidence)
    for key, values, option in (
        ("select", select, "--select"),
        ("ignore", ignore, "--ignore"),
        ("extend-select", extend_select, "--extend-select"),
        ("extend-ignore", extend_ignore, "--extend-ignore"),
    ):
        if values is not None:
            out[key] = _selectors(values, option)
    if activation is not None:
        hints = []
        for text in activation:
            try:
                ActivationHint.parse(text)
            except ValueError as exc:
                raise UsageError(f"--activation: {exc}") from None
            hints.append(text)
        out["activation"] = tuple(hints)  # merged after the file's hints below
    if include is not None:
        out["include"] = tuple(include)
    if exclude is not None:
        out["exclude"] = tuple(exclude)
    if jobs is not None:
        if jobs < 0:
            raise UsageError(f"--jobs must be 0 (one per CPU) or more, not {jobs}")
        out["jobs"] = jobs
    if format is not None:
        name = format.strip().lower()
        _reporter(name)  # UsageError for an unknown format
        out["format"] = name
    return out


def _read_baseline(path: Optional[str]) -> Baseline | None:
    if path is None:
        return None
    from .baseline import read

    return read(path)


def _is_remote(arg: str) -> bool:
    from .remote import is_remote

    return is_remote(arg)


def _remote_inputs(arg: str) -> list[Input]:
    """A remote argument as discovery Inputs: its checkpoints, or one Input with the problem."""
    from .discover import Input
    from .model import LoadError
    from .remote import expand

    try:
        return [Input(url) for url in expand(arg)]
    except LoadError as exc:
        return [Input(arg, str(exc))]


def _audit_all(
    inputs: list[Input],
    configs: dict[str, AuditConfig],
    *,
    jobs: int,
    progress: bool,
    executor: Optional[str] = None,
    address: Optional[str] = None,
) -> Report:
    """Audit the discovered inputs (discover.Input) in input order, each with its own config.
    An argument that yielded nothing (an empty folder, a glob without match) is an unreadable
    input: exit 2."""
    from .report import FileReport
    from .runner import audit_all

    paths = [i.path for i in inputs if i.problem is None]
    if (
        len(paths) == 1
        and len(inputs) == 1
        and jobs <= 1
        and executor is None
        and not configs[paths[0]].cache_dir
    ):
        return Report(files=[_audit_one(paths[0], configs[paths[0]], show_progress=progress)])
    audited = iter(
        audit_all(
            paths,
            [configs[p] for p in paths],
            jobs=jobs,
            progress=progress,
            executor=executor,
            address=address,
        )
    )
    files = [
        next(audited)
        if item.problem is None
        else FileReport(path=item.path, format=None, status=Status.ERROR, error=item.problem)
        for item in inputs
    ]
    for fr in files:  # after the progress bar, in input order: stderr is deterministic too
        _report_unreadable(fr)
    return Report(files=files)


def _print_result(
    result: Report,
    stream: TextIO,
    config: AuditConfig,
    *,
    fmt: str,
    statistics: bool,
    color: bool,
    verbose: bool,
    quiet: bool,
    reporter: ReportFunction | None,
) -> None:
    if statistics or reporter is None:  # no reporter is made for --statistics
        _print_statistics(result, stream, fmt=fmt, color=color)
    else:
        reporter(result, stream, config=config, color=color, verbose=verbose, quiet=quiet)
    baselined = getattr(result, "baselined", None)
    if baselined is not None and fmt == "human":
        # the human summary line is the reporter's; the baseline is the CLI's business
        stream.write(
            f"{baselined} finding{'s' if baselined != 1 else ''} accepted by the baseline "
            f"{getattr(result, 'baseline_path', '')} (not shown)\n"
        )


def statistics_rows(result: Report) -> list[dict[str, object]]:
    """Findings per rule, most frequent first: ``{"code", "name", "count"}``."""
    from collections import Counter

    counts = Counter((f.code, f.name) for f in result.findings)
    return [
        {"code": code, "name": name, "count": n}
        for (code, name), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0]))
    ]


def _print_statistics(result: Report, stream: TextIO, *, fmt: str, color: bool) -> None:
    rows = statistics_rows(result)
    if fmt == "json":
        import json

        stream.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    from .reporters.human import print_renderables, summary_text

    if rows:
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("count", justify="right")
        table.add_column("code", style="bold")
        table.add_column("name")
        for r in rows:
            table.add_row(str(r["count"]), str(r["code"]), str(r["name"]))
        print_renderables(stream, color, table, Text(""), summary_text(result))
    else:
        print_renderables(stream, color, Text("no findings"), summary_text(result))


def _selectors(values: Optional[Iterable[str]], option: str) -> tuple[str, ...]:
    """Split comma-separated codes/names and check each names at least one rule."""
    from .selector import SelectorError, parse

    try:
        return parse(list(values or ()), what=option)
    except SelectorError as exc:
        raise UsageError(str(exc)) from None


def _reporter(name: str) -> ReportFunction:
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


def _audit_one(path: str, config: AuditConfig, *, show_progress: bool) -> FileReport:
    from .engine import audit_file

    if show_progress and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        from rich.console import Console

        with Console(stderr=True).status(f"auditing {path}", spinner="dots") as status:

            def on_tensor(p: TensorProgress) -> None:  # on the calling thread
                share = f" ({p.done_bytes / p.total_bytes:.0%} of bytes)" if p.total_bytes else ""
                status.update(f"auditing {path}: tensor {p.index}/{p.total} {p.name}{share}")

            result = audit_file(
                path, dataclasses.replace(config, progress=on_tensor, tensor_ignores=())
            )
    else:
        result = audit_file(path, dataclasses.replace(config, tensor_ignores=()))
    from .baseline import apply_ignores

    result = apply_ignores(result, config.tensor_ignores)
    _report_unreadable(result)
    return result


def _report_unreadable(result: FileReport) -> None:
    if result.status is Status.ERROR:
        # the other files are still audited and reported; this line is the one to grep for
        _error(f"{result.path}: {_one_line(result.error or 'could not be read')}")


def _use_color(stream: TextIO, no_color: bool) -> bool:
    if no_color or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


# ------------------------------------------------------------------------------------ rules


@app.command("rules")
def rules_command(
    format: Annotated[
        str, typer.Option("--format", "-f", metavar="FORMAT", help="human or json.")
    ] = "human",
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours.")] = False,
) -> None:
    """List the rules: code, name, default severity and what each one checks."""
    rules = _rules()
    fmt = format.strip().lower()
    if fmt == "json":
        import json

        data = [
            {
                "code": r.code,
                "name": r.name,
                "severity": r.severity.value,
                "scope": r.scope,
                "summary": r.summary,
            }
            for r in rules
        ]
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
    hint = Text(
        f"\n`{PROG} explain NAME_OR_CODE` shows a rule's page; --select and --ignore take "
        "codes, names or code prefixes (IA1).",
        style="dim",
    )
    print_renderables(sys.stdout, _use_color(sys.stdout, no_color), table, hint)


# ---------------------------------------------------------------------------------- explain


@app.command("explain")
def explain_command(
    rule: Annotated[
        str,
        typer.Argument(
            metavar="NAME_OR_CODE", help="A rule code (IA101) or name (he-before-saturating)."
        ),
    ],
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
        body: list[object] = [
            Text(found.summary),
            Text("\n(no documentation page ships with this rule)", style="dim"),
        ]
    else:
        body = [Markdown(page)]
    print_renderables(sys.stdout, _use_color(sys.stdout, no_color), title, Text(""), *body)


# ----------------------------------------------------------------------------------- config


@app.command("config")
def config_command(
    path: Annotated[
        Optional[str],
        typer.Argument(
            metavar="[PATH]",
            show_default=False,
            help="Show the configuration that applies to this file or folder (the nearest "
            "initaudit.toml / pyproject.toml with [tool.initaudit] above it).",
        ),
    ] = None,
    config_file: _ConfigOpt = None,
    format: Annotated[
        str, typer.Option("--format", "-f", metavar="FORMAT", help="human or json.")
    ] = "human",
    fail_on: _FailOnOpt = None,
    select: _SelectOpt = None,
    extend_select: _ExtendSelectOpt = None,
    ignore: _IgnoreOpt = None,
    extend_ignore: _ExtendIgnoreOpt = None,
    min_confidence: _MinConfidenceOpt = None,
    activation: _ActivationOpt = None,
    include: _IncludeOpt = None,
    exclude: _ExcludeOpt = None,
    jobs: _JobsOpt = None,
    no_color: _NoColorOpt = False,
) -> None:
    """Print the effective configuration and where each value comes from (default, the
    config file, or the command line). Takes the audit's options to show their effect."""
    from .config import ConfigError

    fmt = format.strip().lower()
    try:
        if fmt not in ("human", "json"):
            raise UsageError(
                f"--format: unknown format {format!r} for `config` (use human or json)"
            )
        overrides = _overrides(
            fail_on=fail_on,
            select=select,
            extend_select=extend_select,
            ignore=ignore,
            extend_ignore=extend_ignore,
            min_confidence=min_confidence,
            activation=activation,
            include=include,
            exclude=exclude,
            jobs=jobs,
            format=None,
        )
        settings = _settings_for(path, config_file, overrides)
    except (UsageError, ConfigError) as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    data = settings.to_dict()
    if fmt == "json":
        import json

        print(json.dumps(data, indent=2))
        return
    from rich.table import Table
    from rich.text import Text

    from .reporters.human import print_renderables

    where = data["config_file"]
    origin = f"{path} and its parent folders, then the working directory" if path else "here upward"
    title = Text(
        f"config file: {where}"
        if where
        else "config file: none found (looked for initaudit.toml and [tool.initaudit] in "
        f"pyproject.toml from {origin})",
        style="bold",
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("key", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    table.add_column("from", no_wrap=True, style="dim")
    for key, item in data["settings"].items():
        table.add_row(key, _config_value(key, item["value"]), item["source"])
    print_renderables(sys.stdout, _use_color(sys.stdout, no_color), title, Text(""), table)


def _config_value(key: str, value: object) -> str:
    if key == "per-tensor-ignores":
        if not value:
            return "[]"
        lines = []
        for ig in cast("list[dict[str, Any]]", value):
            rules = ", ".join(ig["rules"]) or "every rule"
            path = f" in {ig['path']}" if ig["path"] else ""
            lines.append(f"{ig['pattern']}{path}: {rules} ({ig['reason']})")
        return "\n".join(lines)
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "[]"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {v}" for k, v in value.items()) if value else "{}"
    return str(value)


# ---------------------------------------------------------------------------------- inspect


@app.command("inspect")
def inspect_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH...",
            show_default=False,
            help="Checkpoint files, directories or quoted globs.",
        ),
    ],
    layer: Annotated[
        Optional[str],
        typer.Option(
            "--layer",
            "-l",
            metavar="GLOB",
            show_default=False,
            help="Only tensors whose name or layer matches GLOB (e.g. 'fc*').",
        ),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", "-f", metavar="FORMAT", help="human or json.")
    ] = "human",
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            show_default=False,
            help="Write to FILE instead of stdout.",
        ),
    ] = None,
    activation: _ActivationOpt = None,
    config_file: _ConfigOpt = None,
    include: _IncludeOpt = None,
    exclude: _ExcludeOpt = None,
    jobs: _JobsOpt = None,
    no_color: _NoColorOpt = False,
    plot: Annotated[
        bool,
        typer.Option(
            "--plot",
            help="Draw each kernel's histogram against the identified scheme's density "
            "(and the one a finding recommends) in the terminal.",
        ),
    ] = False,
) -> None:
    """Show every tensor (biases and norms included) with its statistics, role, fans,
    activation, identified init scheme, confidence and evidence. Exit 2 if a file could not be
    read or --layer matches no tensor."""
    from .config import ConfigError
    from .discover import DiscoveryError, discover
    from .inspect_cmd import run

    fmt = format.strip().lower()
    try:
        if fmt not in ("human", "json"):
            raise UsageError(
                f"--format: unknown format {format!r} for `inspect` (use human or json)"
            )
        if plot and fmt != "human":
            raise UsageError("--plot draws in the terminal: use it with --format human")
        settings = _settings(
            config_file, activation=activation, include=include, exclude=exclude, jobs=jobs
        )
        inputs = discover(paths, include=settings.include, exclude=settings.exclude)
        sink = _open_output(output)
    except (UsageError, ConfigError, DiscoveryError) as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    config = settings.audit_config()
    stream = sink or sys.stdout
    try:
        files, matched = run(
            inputs,
            config,
            layer=layer,
            fmt=fmt,
            stream=stream,
            jobs=settings.jobs,
            color=False if sink else _use_color(sys.stdout, no_color),
            plot=plot,
        )
    finally:
        if sink is not None:
            sink.close()
    for fr in files:
        _report_unreadable(fr)
    if any(fr.status is Status.ERROR for fr in files):
        raise typer.Exit(2)
    if layer and not matched:
        _error(f"--layer: no tensor or layer matches {layer!r}")
        raise typer.Exit(2)


# `initaudit diff A B` (initaudit.diff_cmd): compare two checkpoints tensor by tensor
from .diff_cmd import diff_command as _diff_command  # noqa: E402  (typer only, no numpy)

app.command("diff")(_diff_command)


def find_rule(text: str) -> Rule | None:
    from .rules import find_rule as _find

    return _find(text)


def _rules() -> list[Rule]:
    from .rules import registry

    return list(registry().values())


# ------------------------------------------------------------------------------------ main


def _error(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)


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
    return "--version" in head and (not head or head[0] not in SUBCOMMANDS[1:])


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
        if args and args[0] == "help":  # `initaudit help [COMMAND]`, not a file named help
            rest = args[1:]
            if not rest or rest[0] == "check":
                return _show_main_help()
            args = [rest[0], "--help"]
        routed = route(args)
        if routed is None:
            if not args:
                _error(
                    f"no checkpoint given: usage is `{PROG} [OPTIONS] PATH...` "
                    f"(`{PROG} --help` for more)"
                )
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
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            f"(re-run with {DEBUG_ENV}=1 to see the traceback, and please report it)",
            file=sys.stderr,
        )
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
