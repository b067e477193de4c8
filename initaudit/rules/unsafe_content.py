"""IA501 unsafe-content: the file references code or paths that loading it would run or reach.

A pickle GLOBAL outside the tensor-rebuild allow-list, a Keras Lambda layer (marshalled
bytecode), a custom module, an HDF5 external link or an ONNX external-data path outside the
model's folder. initaudit never runs or follows them; the rest of the file is still audited.
Loading such a file with its framework (torch.load without weights_only, keras.models.load_model
with safe_mode off, onnx with external data) may execute or read what it names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..model import UnsafeContent
from ..report import Finding, Severity
from .base import Rule, RuleContext, model_rule


@model_rule(
    code="IA501",
    name="unsafe-content",
    severity=Severity.ERROR,
    summary="the file references code or paths its framework would execute or follow",
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    yield from _findings(self, ctx.model.unsafe)


def _findings(self: Rule, unsafe: Iterable[UnsafeContent]) -> Iterator[Finding]:
    for item in unsafe:
        yield self.finding(
            f"{item.what}: never executed or followed by initaudit, but loading this file with its "
            "framework may run or read it. Do not load it outside a sandbox.",
            confidence=1.0,
            layer=item.location,
            what=item.what,
        )


def findings_for(unsafe: Iterable[UnsafeContent]) -> list[Finding]:
    """The IA501 findings of a file that failed to load *after* unsafe content was found in it
    (``UnsafeLoadError``): the framework would have run that content before failing."""
    return list(_findings(check, unsafe))
