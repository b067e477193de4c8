"""IA201 constant-weights: every entry of a kernel is the same value (zeros included).

Units with identical incoming weights compute the same output and receive the same gradient, so
they stay identical through training: the layer behaves like a single unit. An all-zero kernel
also blocks the gradient to everything below it. Biases and norm parameters are constant by
design and are not checked. Zero-initialised LoRA "B" matrices are constant by design too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..report import Finding, Severity
from .base import Rule, RuleContext, tensor_rule

# adapters whose up-projection starts at zero on purpose (the sum starts as the base model)
_ZERO_BY_DESIGN = r"(^|[._])(lora_B|lora_b|lora_up|adapter_up)([._]|$)"  # compiled on first use (re's cache): start-up


def _is_float(dtype: str) -> bool:
    d = dtype.lower()
    return not (d.startswith(("int", "uint", "bool")) and "dequantized" not in d)


@tensor_rule(
    code="IA201",
    name="constant-weights",
    severity=Severity.ERROR,
    summary="kernel whose entries are all equal (zeros included): symmetry never breaks",
)
def check(self: Rule, ctx: RuleContext) -> Iterator[Finding]:
    from ..model import SCHEMED_ROLES

    a = ctx.current
    if a is None or a.tensor.role not in SCHEMED_ROLES or a.stats.size < 2:
        return
    if not a.units.constant:
        return
    if re.search(_ZERO_BY_DESIGN, a.tensor.name) and a.units.constant_value == 0.0:
        return
    if not _is_float(a.tensor.dtype):
        return  # integer buffers (token_type_ids, position_ids) are indices, not weights
    value = a.units.constant_value
    from ..analysis.convention_tables import by_design, model_type_of
    from ..analysis.conventions import output_layer

    # rows limited to some Hugging Face model types need the file's model_type (config.json)
    row = by_design(a.tensor.name, "zero", model_type_of(ctx.model.metadata), a.tensor.shape)
    # zero heads are a convention (timm, torchvision ViT); a constant non-zero head is not
    if row is None and value == 0.0 and output_layer(ctx.model, a.tensor, a.layer):
        from ..analysis.convention_tables import Why

        why: str | None = Why.HEAD.value
        source: str | None = "output projection"
    else:
        why = row.why.value if row is not None else None
        source = row.source if row is not None else None
    if why is not None:
        # zero by design where nothing downstream depends on symmetry breaking (a head, a
        # token, a LayerScale / GRN / gate): the position and role make it intentional
        what = "all zeros" if value == 0.0 else f"all {a.stats.size} entries equal {value:g}"
        yield self.finding(
            f"{what}, intentionally: {why}. Intentional by convention ({source}); "
            "only a hidden kernel with layers after it must start random.",
            confidence=0.8,
            tensor=a.tensor,
            severity=Severity.INFO,
            value=value,
            size=a.stats.size,
            convention=source,
        )
        return
    if value == 0.0 and a.layer is not None and a.layer.residual:
        # Fixup / SkipInit / ReZero: the last layer of a residual branch starts at zero so the
        # block starts as the identity; the skip path carries the signal and the gradient
        yield self.finding(
            "all zeros, and its output joins a residual Add: the Fixup / SkipInit convention "
            "(the block starts as the identity; the skip path carries signal and gradient). "
            "Intentional if you use it; otherwise initialize it with a random scheme.",
            confidence=0.8,
            tensor=a.tensor,
            severity=Severity.INFO,
            value=value,
            size=a.stats.size,
            convention="fixup",
        )
        return
    what = "all zeros" if value == 0.0 else f"all {a.stats.size} entries equal {value:g}"
    yield self.finding(
        f"{what}: every unit gets the same weights, computes the same output and receives the "
        f"same gradient, so the units never become different"
        + (" (and no gradient flows to the layers below)" if value == 0.0 else "")
        + ". Initialize it with a random scheme (He for ReLU, Glorot for tanh/sigmoid).",
        confidence=1.0,
        tensor=a.tensor,
        value=value,
        size=a.stats.size,
    )
