"""The typer application every command registers on, and the root callback (``--version``)."""

from __future__ import annotations

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
