"""The console-script entry point: ``check`` as the default command, ``help``, the fast
``--version``, and one line instead of a traceback (unless ``INITAUDIT_DEBUG=1``)."""

from __future__ import annotations

import os
import sys

from .. import __version__
from ._common import DEBUG_ENV, PROG, SUBCOMMANDS, end_gc, error, one_line, pause_gc, resume_gc


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
    import typer

    from ._app import with_commands

    group = typer.main.get_command(with_commands("check"))
    command = group.commands["check"]  # type: ignore[attr-defined]
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
        _one_blas_thread()
        pause_gc()  # start-up; check resumes it when the audit starts, the finally below always
        from ._app import COMMANDS, with_commands  # typer

        if args and args[0] == "help":  # `initaudit help [COMMAND]`, not a file named help
            rest = args[1:]
            if not rest or rest[0] == "check":
                return _show_main_help()
            args = [rest[0], "--help"]
        routed = route(args)
        if routed is None:
            if not args:
                error(
                    f"no checkpoint given: usage is `{PROG} [OPTIONS] PATH...` "
                    f"(`{PROG} --help` for more)"
                )
                return 2
            return _show_main_help()
        if routed[0] != "check":
            resume_gc()  # paused for the audit's start-up only
        try:
            # only the command that runs is registered (all of them if the first word is not one)
            app = with_commands(*[routed[0]] if routed[0] in COMMANDS else [])
            code = app(args=routed, prog_name=PROG, standalone_mode=False)
        except SystemExit as exc:
            return _exit_code(exc.code)
        except Exception as exc:
            if _is_a(exc, "ClickException"):  # bad option or argument: one line, exit 2
                hint = f"{PROG} {routed[0]} --help" if routed[0] != "check" else f"{PROG} --help"
                error(f"{exc.format_message()} (see `{hint}`)")  # type: ignore[attr-defined]
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
            f"{PROG}: internal error: {type(exc).__name__}: {one_line(str(exc))} "
            f"(re-run with {DEBUG_ENV}=1 to see the traceback, and please report it)",
            file=sys.stderr,
        )
        return 2
    finally:
        # argv None: the process's own command line (console script, -m), which ends next
        end_gc(process_ends=argv is None)


def _one_blas_thread() -> None:
    """Load OpenBLAS with one thread. When numpy loads, OpenBLAS starts a thread per core (0.06 s
    of an empty audit's 0.35 s on this 2-core machine; more cores, more threads), which the audit
    never uses: it pins OpenBLAS to one thread around all of its work (analysis/blas.py). Only
    when numpy is not loaded yet (the console script, not a caller's process) and the user has
    not chosen a number; child processes (``--jobs``, the Dask executor) inherit it."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


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
