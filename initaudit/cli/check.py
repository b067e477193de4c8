"""``initaudit [check] PATH...``: audit checkpoints, the default command.

PATH may be a file, a folder or a quoted glob (:mod:`initaudit.discover`); each file is audited
with the config nearest to it (:mod:`initaudit.config`), in ``--jobs`` processes by
:mod:`initaudit.runner` (one file: :func:`initaudit.api.audit_one` with a spinner); baselines are
:mod:`initaudit.baseline`. Exit codes: see ``EPILOG``; precedence 2 > 1 > 3 > 0, and
``--exit-zero`` never hides an unreadable file (2) nor an incomplete audit (3).
"""

# No `from __future__ import annotations` here: typer reads check()'s annotations, and as strings
# (PEP 563) it would compile and eval every one of them on each run (~24 M instructions, 3% of a
# one-file audit, cachegrind); names imported for type checking only are quoted instead.
import dataclasses
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Optional, TextIO

import typer

from ..report import EXIT_PARTIAL, Report
from ._app import app
from ._common import (
    PROG,
    UsageError,
    error,
    open_output,
    report_unreadable,
    resume_gc,
    use_color,
    warn,
)
from .options import (
    ActivationOpt,
    ConfigOpt,
    ExcludeOpt,
    ExtendIgnoreOpt,
    ExtendSelectOpt,
    FailOnOpt,
    IgnoreOpt,
    IncludeOpt,
    JobsOpt,
    MinConfidenceOpt,
    NoColorOpt,
    SelectOpt,
    VersionOpt,
    overrides,
    reporter,
    settings_for,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..baseline import Baseline
    from ..discover import Input
    from ..report import FileReport
    from ..reporters import ReportFunction
    from ..settings import AuditConfig, TensorProgress

# click rewraps paragraphs; \b keeps the lines of the next paragraph as written
EPILOG = """\b
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


class _CheckCommand(typer.core.TyperCommand):
    """Plain ``[OPTIONS] PATH...`` in the usage line (typer writes ``{PATH}...``)."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [self.options_metavar or "[OPTIONS]", "PATH..."]


@app.command(
    "check",
    cls=_CheckCommand,
    epilog=EPILOG,
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
            "(GitLab Code Quality), html (a self-contained page with charts) or csv (one row "
            "per finding).",
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
    fail_on: FailOnOpt = None,
    select: SelectOpt = None,
    extend_select: ExtendSelectOpt = None,
    ignore: IgnoreOpt = None,
    extend_ignore: ExtendIgnoreOpt = None,
    min_confidence: MinConfidenceOpt = None,
    activation: ActivationOpt = None,
    config_file: ConfigOpt = None,
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
    jobs: JobsOpt = None,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
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
    no_color: NoColorOpt = False,
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
    version: VersionOpt = False,
) -> None:
    """Audit checkpoints: which init scheme each layer's weights follow, and whether it fits
    the activation after it.

    PATH is a checkpoint file (ONNX, PyTorch .pt/.bin/TorchScript/.pt2, safetensors, Keras
    .keras/.h5, .npz), a folder (searched recursively, checkpoints recognised by content; a
    folder of sharded safetensors is one model) or a quoted glob ('models/**/*.onnx'). Files
    are parsed, never executed. Settings come from [tool.initaudit] in pyproject.toml or from
    initaudit.toml (see `initaudit config`); options given here override them."""
    try:
        overrides_ = overrides(
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
            overrides_["allow-partial"] = True
        # run-wide settings (format, jobs, fail-on): --config, else the config nearest the first
        # path (ruff's rule), else the one found from the working directory
        settings = settings_for(paths[0] if paths else None, config_file, overrides_)
        config = settings.audit_config()
        if max_seconds is not None and not max_seconds > 0:
            raise UsageError(
                f"--max-seconds must be a positive number of seconds, not {max_seconds}"
            )
        fmt = settings.format
        write_report = None if statistics else reporter(fmt)
        if statistics and fmt not in ("human", "json"):
            raise UsageError(f"--statistics prints human or json, not {fmt!r}")
        accepted = _read_baseline(baseline)
        from ..discover import DiscoveryStats
        from ..runner import collect_inputs, configs_for

        stats = DiscoveryStats()
        if executor is not None and executor not in ("dask",):
            raise UsageError(
                f"--executor must be dask (or omitted for local processes), not {executor!r}"
            )
        if address is not None and executor is None:
            raise UsageError("--address needs --executor")
        if any("://" in p for p in paths):
            resume_gc()  # a remote listing (fsspec, asyncio) makes cyclic garbage: collect it
        inputs = collect_inputs(
            paths,
            config_file=config_file,
            overrides=overrides_,
            respect_ignore=not no_ignore,
            stats=stats,
        )
        # each file audited with the config nearest to it
        configs = configs_for(
            inputs,
            config_file=config_file,
            overrides=overrides_,
            max_seconds=max_seconds,
            probe=probe,
            sample_only=sample_only,
            cache_dir=cache,
        )
        sink = open_output(output)
    except _setup_errors() as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    config = dataclasses.replace(config, max_seconds=max_seconds, probe=probe)
    for path, kind in stats.not_regular:
        warn(f"{path}: {kind}, not a regular file: skipped (never opened)")
    if (
        stats.walked
        and stats.models
        and not quiet
        and fmt == "human"
        and (stats.looked_at > stats.models or stats.ignored)
    ):
        print(f"{PROG}: {stats.line()}", file=sys.stderr)

    resume_gc()  # paused by main() for the start-up (imports): the audit's garbage is collected
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
        from ..distributed import DistributedError

        if not isinstance(exc, DistributedError):
            raise
        error(str(exc))
        raise typer.Exit(2) from None
    if write_baseline is not None:
        try:
            from ..baseline import BaselineError, write

            n = write(result, write_baseline)
        except BaselineError as exc:
            error(str(exc))
            raise typer.Exit(2) from None
        print(
            f"{PROG}: wrote {n} finding{'s' if n != 1 else ''} to the baseline {write_baseline}",
            file=sys.stderr,
        )
    if accepted is not None:
        from ..baseline import apply

        result = apply(result, accepted)
        if result.stale:
            n = len(result.stale)
            first = result.stale[0]
            warn(
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
                color=use_color(sys.stdout, no_color),
                verbose=verbose,
                quiet=quiet,
                reporter=write_report,
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
                    reporter=write_report,
                )
    except BrokenPipeError:
        raise  # the reader went away (`| head`): main() ends quietly
    except OSError as exc:
        error(f"{output or 'stdout'}: cannot write the report ({exc.strerror or exc})")
        raise typer.Exit(2) from None

    code = result.exit_code(config.fail_on, allow_partial=settings.allow_partial)
    if (exit_zero or write_baseline is not None) and code == 1:
        # findings stop failing the run; an incomplete audit still does (documented: "still 3")
        partial = not settings.allow_partial and any(fr.partial for fr in result.files)
        code = EXIT_PARTIAL if partial else 0
    raise typer.Exit(code)


def _setup_errors() -> tuple[type[Exception], ...]:
    """The errors that are one line and exit 2: a bad option, config file, selector or baseline.
    Called in ``except``, i.e. only when something was raised, so the modules that define them
    load then and not on every run (a clean audit never imports the baseline module)."""
    from ..baseline import BaselineError
    from ..config import ConfigError
    from ..selector import SelectorError

    return (UsageError, ConfigError, BaselineError, SelectorError)


def _warn_stale_ignores(result: Report, configs: "Iterable[AuditConfig]") -> None:
    """A per-tensor ignore that matched nothing this run is said so: a stale suppression hides
    nothing today and may hide the wrong thing tomorrow."""
    ignores = [ig for config in configs for ig in config.tensor_ignores]
    if not ignores:  # the usual case: a walked folder without ignores loads no baseline module
        return
    from ..baseline import stale_ignores

    for ig in stale_ignores(result, ignores):
        rules = ", ".join(ig.rules) if ig.rules else "every rule"
        where = f" in {ig.path}" if ig.path else ""
        warn(
            f"per-tensor-ignores: pattern {ig.pattern!r}{where} ({rules}) matched no finding; "
            "remove it if it is no longer needed"
        )


def _read_baseline(path: Optional[str]) -> "Baseline | None":
    if path is None:
        return None
    from ..baseline import read

    return read(path)


def _audit_all(
    inputs: "list[Input]",
    configs: "dict[str, AuditConfig]",
    *,
    jobs: int,
    progress: bool,
    executor: Optional[str] = None,
    address: Optional[str] = None,
) -> Report:
    """Audit the discovered inputs (discover.Input) in input order, each with its own config.
    An argument that yielded nothing (an empty folder, a glob without match) is an unreadable
    input: exit 2."""
    from ..runner import audit_inputs

    paths = [i.path for i in inputs if i.problem is None]
    if (
        len(paths) == 1
        and len(inputs) == 1
        and jobs <= 1
        and executor is None
        and not configs[paths[0]].cache_dir
    ):
        return Report(files=[_audit_one(paths[0], configs[paths[0]], show_progress=progress)])
    files = audit_inputs(
        inputs, configs, jobs=jobs, progress=progress, executor=executor, address=address
    )
    for fr in files:  # after the progress bar, in input order: stderr is deterministic too
        report_unreadable(fr)
    return Report(files=files)


def _print_result(
    result: Report,
    stream: TextIO,
    config: "AuditConfig",
    *,
    fmt: str,
    statistics: bool,
    color: bool,
    verbose: bool,
    quiet: bool,
    reporter: "ReportFunction | None",
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

    from ..reporters.human import print_renderables, summary_text

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


def _audit_one(path: str, config: "AuditConfig", *, show_progress: bool) -> "FileReport":
    """One file through :func:`initaudit.api.audit_one`, with a spinner on a terminal."""
    from ..api import audit_one

    if show_progress and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        from rich.console import Console

        with Console(stderr=True).status(f"auditing {path}", spinner="dots") as status:

            def on_tensor(p: "TensorProgress") -> None:  # on the calling thread
                share = f" ({p.done_bytes / p.total_bytes:.0%} of bytes)" if p.total_bytes else ""
                status.update(f"auditing {path}: tensor {p.index}/{p.total} {p.name}{share}")

            result = audit_one(path, dataclasses.replace(config, progress=on_tensor))
    else:
        result = audit_one(path, config)
    report_unreadable(result)
    return result
