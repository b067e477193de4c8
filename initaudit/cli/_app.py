"""The typer application every command registers on, the root callback (``--version``), and
:func:`with_commands`, which registers them (a command registers when its module is imported)."""

from __future__ import annotations

import importlib

import typer

from ._common import PROG
from .options import VersionOpt

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


@app.callback()
def _root(version: VersionOpt = False) -> None:
    """Audit the weight initialization of neural-network checkpoints (ONNX, PyTorch,
    safetensors, Keras, .npz). Files are parsed, never executed.

    Run `initaudit PATH...` to audit files; see `initaudit --help`.
    """


# the command modules, in the order of `--help`
COMMANDS = ("check", "rules", "explain", "config", "inspect", "diff")


def with_commands(*names: str) -> typer.Typer:
    """``app`` with the named commands registered (every command without names). The console
    script registers only the command it runs: the others' modules and typer's building of their
    options are start-up cost an audit does not need. Registration order is kept canonical
    whatever order they were loaded in."""
    for name in names or COMMANDS:
        importlib.import_module(f"{__package__}.{name}")
    app.registered_commands.sort(key=lambda c: COMMANDS.index(c.name or ""))
    return app
