"""The command line: thin typer commands over the API (:mod:`initaudit.api`, :mod:`initaudit.runner`).

One module per command, each registering itself on the one typer app (:mod:`._app`) when
imported; :func:`main` imports only the command it runs (start-up), ``initaudit.cli.app`` has
them all:

- :mod:`.check`   ``initaudit [check] PATH...``: audit checkpoints (the default command)
- :mod:`.rules`   ``initaudit rules``: list the rules
- :mod:`.explain` ``initaudit explain NAME_OR_CODE``: one rule's page
- :mod:`.config`  ``initaudit config [PATH]``: the effective configuration and its sources
- :mod:`.inspect` ``initaudit inspect PATH...``: every tensor's numbers
- :mod:`.diff`    ``initaudit diff A B``: two checkpoints compared tensor by tensor

The options several commands share are declared once in :mod:`.options` (with the one function
that validates them into settings); the error line, colours and the report sink are in
:mod:`._common`; :func:`main` (:mod:`._entry`) routes ``initaudit PATH`` to ``check``.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it; 2 a usage error or a
file that could not be read; 3 a file only partly audited (``--allow-partial`` turns it into 0).
Precedence 2 > 1 > 3 > 0. ``--exit-zero`` turns 1 into 0 but never hides an unreadable file
(still 2) nor an incomplete audit (still 3): a CI job must not pass on a checkpoint nobody
looked at. Settings come from the config nearest each audited file (:mod:`initaudit.config`).

Importing this package loads only the standard library (:mod:`._common`, :mod:`._entry`), so
``initaudit --version`` prints without typer; :func:`main` then loads typer and the one command
it runs, and the engine (numpy, and onnx, h5py... as the format needs) when a file is audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._common import PROG, UsageError
from ._entry import main, route

if TYPE_CHECKING:  # pragma: no cover
    from ._app import app

__all__ = ["PROG", "UsageError", "app", "main", "route"]


def __getattr__(name: str) -> Any:
    # `initaudit.cli.app` has every command; `main` registers only the one it runs (start-up)
    if name == "app":
        from ._app import with_commands

        return with_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
